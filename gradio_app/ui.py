"""The Gradio Blocks of the demo: upload, options, before/after slider, faces with their 3D priors, download."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from sgpn_arch.image_io import read_image
from sgpn_arch.restorer import NoFaceError, RestoreResult

from .config import DemoConfig
from sgpn_arch.examples import find_example_images
from .images import OversizeError, ResultStore, fit_to_limits, resize_like, to_display
from .models import ModelUnavailableError, RestorerFactory, RestorerPool, default_restorer_factory

PREVIEW_MAX_SIDE = 2048  # the slider shows at most this; the restored image and the download are full size

INTRO = """\
# SGPN face restoration
Blind face restoration with a **3D shape prior** and a **generative (StyleGAN2) prior**
([Zhu et al., CVPR 2022](https://openaccess.thecvf.com/content/CVPR2022/html/Zhu_Blind_Face_Restoration_via_Integrating_Face_Shape_and_Generative_Priors_CVPR_2022_paper.html)).
Upload a photo, press **Restore** and compare; every face is shown next to the 3D face the model
reconstructed from it. The SGPN weights are licensed for academic research only.
"""


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the uploaded file over untouched (a path) and reports an unreadable file clearly."""

    is_template = True  # the frontend renders it as a plain Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError as error:
            raise gr.Error(f"{error} Resize the photo and upload it again.", title="Photo too large",
                           print_exception=False) from error
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            raise gr.Error("This file is not an image the demo can read. Upload a JPEG, PNG, WebP, BMP or TIFF "
                           "photo.", title="Bad file", print_exception=False) from error


def _read_photo(path: str, config: DemoConfig) -> tuple[np.ndarray, str | None]:
    """The photo as a BGR(A) array within the configured size, and the downscaling notice if any."""
    try:
        photo = read_image(path)
    except (ValueError, OSError) as error:
        raise gr.Error(f"This file could not be read as an image: {error}", title="Bad file",
                       print_exception=False) from error
    try:
        return fit_to_limits(photo, config.max_side, config.max_pixels, config.oversize)
    except OversizeError as error:
        raise gr.Error(str(error), title="Photo too large", print_exception=False) from error


def _face_gallery(result: RestoreResult) -> list[tuple[np.ndarray, str]]:
    """Input crop, 3D shape-prior render and restored face of every face, in that order."""
    gallery = []
    for index, (crop, render, restored) in enumerate(
            zip(result.cropped_faces, result.renders, result.restored_faces), start=1):
        gallery += [(to_display(crop), f"face {index}: input"),
                    (to_display(render), f"face {index}: 3D shape prior"),
                    (to_display(restored), f"face {index}: restored")]
    return gallery


def build_demo(restorer_factory: RestorerFactory | None = None, *, config: DemoConfig | None = None,
               examples: list[str | Path] | None = None) -> gr.Blocks:
    """Build the demo with its queue configured (not launched).

    ``restorer_factory(upscale)`` returns the :class:`~sgpn_arch.restorer.FaceRestorer` for an upscale
    factor; by default SGPN is loaded through the weights zoo with the settings of ``config``
    (default: :meth:`DemoConfig.from_env`). The model is loaded here, so a missing file is explained on
    the page instead of failing later. ``examples`` defaults to the public-domain portraits of the
    installed packages. The ``restore`` API endpoint is documented in gradio_app/README.md.
    """
    config = config or DemoConfig.from_env()
    pool = RestorerPool(restorer_factory or default_restorer_factory(config))
    setup_problem = pool.check(config.default_upscale)
    store = ResultStore()
    example_paths = [str(path) for path in (find_example_images() if examples is None else examples)]

    def restore(image: str | None, upscale: float, only_center_face: bool, paste_back: bool,
                visibility: float, progress=gr.Progress()):
        """Restore every face of a photo with SGPN.

        Parameters:
            image: the photo (JPEG, PNG, WebP, BMP, TIFF; grey, RGB or RGBA; 8 or 16 bit)
            upscale: output size factor, 1 to the configured maximum
            only_center_face: restore only the face closest to the centre
            paste_back: paste the restored faces into the (upscaled) photo
            visibility: 1 shows the restored faces, lower values blend in the original faces
        Returns:
            slider: (before, after) previews at the output size (at most 2048 px on the longer side)
            restored: the restored photo at full resolution (input size x upscale)
            faces: for each face: input crop, 3D shape-prior render, restored face
            download: the full-resolution restored photo as PNG (alpha and 16 bit kept)
            status: what was done, and any downscaling of the input
        """
        if image is None:
            raise gr.Error("Upload a photo (or pick an example) first.", title="No photo", print_exception=False)
        progress(0.0, desc="Reading the photo")
        photo, notice = _read_photo(image, config)
        if notice:
            gr.Warning(notice)
        upscale = int(upscale)
        try:
            progress(0.1, desc="Waiting for the model")
            with pool.use(upscale) as restorer:
                progress(0.2, desc="Detecting faces")
                start = time.perf_counter()
                result = restorer.restore(
                    photo, only_center_face=only_center_face, paste_back=paste_back, visibility=float(visibility),
                    on_face=lambda done, total: progress(0.2 + 0.7 * done / total,
                                                         desc=f"Restoring face {done + 1} of {total}"))
                seconds = time.perf_counter() - start
        except ModelUnavailableError as error:
            raise gr.Error(error.reason, title="Model not available", print_exception=False) from error
        except NoFaceError as error:
            raise gr.Error("No face was found in this photo. Try one in which a face is clearly visible "
                           "(roughly frontal, not too small).", title="No face found", print_exception=False) from error
        except ValueError as error:
            raise gr.Error(str(error), title="Cannot restore this photo", print_exception=False) from error

        progress(0.9, desc="Preparing the results")
        faces = len(result.restored_faces)
        status = [f"Restored {faces} face{'' if faces == 1 else 's'} in {seconds:.1f} s."]
        if notice:
            status.append(notice)
        if result.restored_image is None:
            status.append("Paste-back is off: only the faces are shown.")
            return None, None, _face_gallery(result), None, "\n\n".join(status)
        after_preview = to_display(result.restored_image, PREVIEW_MAX_SIDE)
        before_preview = resize_like(to_display(photo), after_preview)
        download = store.save(result.restored_image, f"{Path(image).stem}_sgpn_x{upscale}.png")
        return ((before_preview, after_preview), to_display(result.restored_image), _face_gallery(result),
                str(download), "\n\n".join(status))

    with gr.Blocks(title="SGPN face restoration", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(setup_problem or "", visible=setup_problem is not None, elem_id="sgpn-setup")
        with gr.Row():
            with gr.Column():
                image = PhotoInput(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                   label="Photo", height=420, elem_id="sgpn-input")
                upscale = gr.Slider(1, config.max_upscale, value=config.default_upscale, step=1, label="Upscale",
                                    info="output size factor (the background is resized)")
                only_center_face = gr.Checkbox(False, label="Only the centre face")
                paste_back = gr.Checkbox(True, label="Paste the faces back into the photo")
                visibility = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Visibility",
                                       info="1: restored faces; lower values blend in the original faces")
                button = gr.Button("Restore", variant="primary", elem_id="sgpn-restore")
                if example_paths:
                    gr.Examples([[path] for path in example_paths], inputs=[image], label="Public-domain examples")
            with gr.Column():
                status = gr.Markdown(label="Status", elem_id="sgpn-status")
                slider = gr.ImageSlider(label="Before / after", type="numpy", format="png", max_height=420,
                                        elem_id="sgpn-slider")
                restored = gr.Image(label="Restored", format="png", interactive=False, height=420,
                                    elem_id="sgpn-restored")
                download = gr.File(label="Download", elem_id="sgpn-download")
        gallery = gr.Gallery(label="Faces", columns=3, format="png", elem_id="sgpn-faces")
        gr.Markdown("Each row of **Faces**: the aligned input crop, the 3D shape prior (the face reconstructed "
                    "with the 3D morphable model and rendered), and the restored face.")
        button.click(restore, inputs=[image, upscale, only_center_face, paste_back, visibility],
                     outputs=[slider, restored, gallery, download, status], api_name="restore")
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return demo
