"""The Gradio Blocks of the demo: upload, options, before/after slider, faces with their 3D priors, download."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from sgpn_arch.pipeline.bg_upsampler import check_bg_upsampler
from sgpn_arch.pipeline.image_io import read_image
from sgpn_arch.pipeline.restorer import FIDELITY_MODES, NoFaceError, RestoreResult

from .config import DemoConfig
from .examples import degraded_examples
from .images import (OversizeError, ResultStore, browser_shows, fit_to_limits, plan_scale, png_ready, resize_to,
                     shrink, to_display, to_uint8)
from .models import ModelLoader, ModelState, ModelUnavailableError, RestoreSettings, RestorerPool, sgpn_loader

READABLE = "Upload a JPEG, PNG, WebP, BMP or TIFF photo."

INTRO = """\
# SGPN face restoration
Blind face restoration with a **3D shape prior** and a **generative (StyleGAN2) prior**.
Upload a photo, press **Restore** and compare; every face is shown next to the 3D face the model
reconstructed from it. The SGPN weights are licensed for academic research only.
"""

CITATION = """\
**Paper**: [Blind Face Restoration via Integrating Face Shape and Generative Priors](https://openaccess.thecvf.com/content/CVPR2022/html/Zhu_Blind_Face_Restoration_via_Integrating_Face_Shape_and_Generative_Priors_CVPR_2022_paper.html)
(Zhu et al., CVPR 2022). **Official code and weights**:
[TencentYoutuResearch/FaceRestoration-sgpn](https://github.com/TencentYoutuResearch/FaceRestoration-sgpn).
This demo runs the `sgpn-restore` project's pure-PyTorch pipeline (Apache-2.0 code) on the official weights.

```bibtex
@inproceedings{zhu2022sgpn,
  title     = {Blind Face Restoration via Integrating Face Shape and Generative Priors},
  author    = {Zhu, Feida and Zhu, Junwei and Chu, Wenqing and Zhang, Xinyi and Ji, Xiaozhong and
               Wang, Chengjie and Tai, Ying},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}
```
"""

def user_error(title: str, message: str) -> gr.Error:
    """A ``gr.Error`` titled ``title`` for API clients, whose text starts with the title too: the browser's toast
    shows only the message under a fixed "Error" heading."""
    return gr.Error(f"{title}: {message}", title=title, print_exception=False)


class PhotoInput(gr.Image):
    """``gr.Image`` that hands the uploaded file over untouched (a path) and reports an unreadable file clearly."""

    is_template = True  # the frontend renders it as a plain Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Image.DecompressionBombError as error:
            raise user_error("Photo too large", f"{error} Resize the photo and upload it again.") from error
        except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
            name = Path(payload.orig_name or payload.path or "the file").name
            raise user_error("Bad file", f"{name} is not an image the demo can read. {READABLE}") from error


def _read_photo(path: str, config: DemoConfig) -> tuple[np.ndarray, str | None]:
    """The photo as a BGR(A) array within the configured size, and the downscaling notice if any."""
    try:
        photo = read_image(path)
    except (ValueError, OSError) as error:   # name the file, never the server's temporary path
        raise user_error("Bad file", f"{Path(path).name} could not be read: it is not an image or it is damaged "
                                     f"(e.g. cut short). {READABLE}") from error
    try:
        return fit_to_limits(photo, config.max_side, config.max_pixels, config.oversize)
    except OversizeError as error:
        raise user_error("Photo too large", str(error)) from error


def _face_gallery(result: RestoreResult) -> list[tuple[np.ndarray, str]]:
    """Input crop, 3D shape-prior render and restored face of every face, in that order."""
    gallery = []
    for index, (crop, render, restored) in enumerate(
            zip(result.cropped_faces, result.renders, result.restored_faces), start=1):
        gallery += [(to_display(crop), f"face {index}: input"),
                    (to_display(render), f"face {index}: 3D shape prior"),
                    (to_display(restored), f"face {index}: restored")]
    return gallery


def _realesrgan_installed() -> bool:
    """Whether the optional Real-ESRGAN package is there (the background option is shown only then)."""
    try:
        check_bg_upsampler("realesrgan")
    except ImportError:
        return False
    return True


def build_demo(load: ModelLoader | None = None, *, config: DemoConfig | None = None,
               examples: list[str | Path] | None = None) -> gr.Blocks:
    """Build the demo with its queue configured (not launched); launch it with ``config.launch_options()``.

    ``load(report)`` loads the model and returns the factory of :class:`~sgpn_arch.pipeline.restorer.FaceRestorer`
    objects (default: :func:`~gradio_app.models.sgpn_loader` with the settings of ``config``, default
    :meth:`DemoConfig.from_env`). It runs in a background thread started here: the page is served at once and
    shows the loading state, or why the model is not available. ``examples`` are the portraits degraded into
    the example photos (default: the public-domain portraits of the installed packages). The API endpoints are
    documented in gradio_app/README.md.
    """
    config = config or DemoConfig.from_env()
    pool = RestorerPool(load or sgpn_loader(config), config.concurrency).start()
    store = ResultStore()
    background_available = _realesrgan_installed()
    example_rows = degraded_examples(store.kept, None if examples is None else [Path(p) for p in examples])

    def model_status() -> str:
        """The model's state in Markdown: loading progress, why it is not available, or '' when it is ready."""
        return pool.banner()

    def refresh_banner():
        text = pool.banner()
        return gr.Markdown(text, visible=bool(text)), gr.Timer(active=pool.state is ModelState.LOADING)

    def check_upload(payload: dict | None):
        """Tell at once when an upload is not a readable image, and give TIFFs a preview browsers can show."""
        if not payload or not payload.get("path"):
            return gr.skip()
        name = Path(payload.get("orig_name") or payload["path"]).name
        try:
            photo = read_image(payload["path"])
        except (ValueError, OSError):
            gr.Warning(f"Bad file: {name} is not an image the demo can read (or it is damaged). {READABLE}",
                       title="Bad file")
            return None
        if browser_shows(Path(name)):
            return gr.skip()
        return str(store.save(png_ready(photo), f"{Path(name).stem}.png"))   # lossless: Restore gets the same pixels

    def restore(image: str | None, upscale: float, only_center_face: bool, paste_back: bool, visibility: float,
                face_parsing: bool, fidelity: str, background: bool, progress=gr.Progress()):
        """Restore every face of a photo with SGPN.

        Parameters:
            image: the photo (JPEG, PNG, WebP, BMP, TIFF; grey, RGB or RGBA; 8 or 16 bit)
            upscale: output size factor, 1 to the configured maximum (lowered for large photos)
            only_center_face: restore only the face closest to the centre
            paste_back: paste the restored faces into the (upscaled) photo
            visibility: 1 shows the restored faces, lower values blend in the original faces
            face_parsing: paste back through a face-parsing mask (skin, eyes, brows, nose, mouth) instead of the
                whole aligned square
            fidelity: "default" (this project's crop and paste-back) or "official" (the official demo's)
            background: upscale the background with Real-ESRGAN instead of resizing it (needs the realesrgan
                package; slow on CPU)
        Returns:
            slider: (before, after) previews at the output size, at most the preview size on the longer side
            restored: the restored photo: the download itself when it fits the preview size, else a preview
            faces: for each face: input crop, 3D shape-prior render, restored face
            download: the full-resolution restored photo as PNG (alpha and 16 bit kept)
            status: what was done, and any change to the input or the upscale factor
        """
        if image is None:
            raise user_error("No photo", "Upload a photo (or pick an example) first.")
        progress(0.0, desc="Reading the photo")
        photo, notice = _read_photo(image, config)
        height, width = photo.shape[:2]
        plan = plan_scale(height, width, int(upscale), config.min_side, config.max_output_side)
        notices = ([notice] if notice else []) + list(plan.notices)
        for text in notices:
            gr.Warning(text)
        work = resize_to(photo, width * plan.pre, height * plan.pre)
        settings = RestoreSettings(plan.restorer_upscale, bool(face_parsing), fidelity, bool(background))
        try:
            if pool.state is ModelState.LOADING:
                progress(0.05, desc="Waiting for the model to load")
            progress(0.1, desc="Waiting for a free slot")
            with pool.use(settings) as restorer:
                progress(0.2, desc="Detecting faces")
                start = time.perf_counter()
                result = restorer.restore(
                    work, only_center_face=only_center_face, paste_back=paste_back, visibility=float(visibility),
                    on_face=lambda done, total: progress(0.2 + 0.6 * done / total,
                                                         desc=f"Restoring face {done + 1} of {total}"))
                seconds = time.perf_counter() - start
        except ModelUnavailableError as error:
            raise user_error("Model not available", error.reason) from error
        except NoFaceError as error:
            raise user_error("No face found", "try a photo in which a face is clearly visible (roughly frontal, "
                                              "not too small).") from error
        except ValueError as error:   # options the pipeline refuses (e.g. official fidelity with face parsing)
            raise user_error("Cannot restore this photo", str(error)) from error

        progress(0.8, desc="Preparing the results")
        faces = len(result.restored_faces)
        status = [f"Restored {faces} face{'' if faces == 1 else 's'} in {seconds:.1f} s."] + notices
        if result.restored_image is None:
            status.append("Paste-back is off: only the faces are shown.")
            return None, None, _face_gallery(result), None, "\n\n".join(status)
        restored = resize_to(result.restored_image, width * plan.upscale, height * plan.upscale)
        stem = f"{Path(image).stem}_sgpn_x{plan.upscale}"
        download = store.save(restored, f"{stem}.png")   # encoded once, full resolution
        preview = shrink(restored, config.preview_max_side)
        after = download if preview is restored else store.save(to_uint8(preview), f"{stem}_preview.png")
        before = store.save(to_uint8(resize_to(photo, preview.shape[1], preview.shape[0])), f"{Path(image).stem}_input.png")
        return (str(before), str(after)), str(after), _face_gallery(result), str(download), "\n\n".join(status)

    with gr.Blocks(title="SGPN face restoration", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        banner_text = pool.banner()
        banner = gr.Markdown(banner_text, visible=bool(banner_text), elem_id="sgpn-setup")
        timer = gr.Timer(1.0, active=pool.state is ModelState.LOADING)
        with gr.Row():
            with gr.Column():
                image = PhotoInput(type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                   label="Photo", height=420, elem_id="sgpn-input")
                upscale = gr.Slider(1, config.max_upscale, value=config.default_upscale, step=1, label="Upscale",
                                    info=f"output size factor (lowered when the output would exceed "
                                         f"{config.max_output_side} px)")
                only_center_face = gr.Checkbox(False, label="Only the centre face")
                paste_back = gr.Checkbox(True, label="Paste the faces back into the photo")
                face_parsing = gr.Checkbox(False, label="Face-parsing mask",
                                           info="paste back only skin, eyes, brows, nose and mouth (keeps hair and "
                                                "background from the photo)")
                visibility = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Visibility",
                                       info="1: restored faces; lower values blend in the original faces")
                fidelity = gr.Radio(list(FIDELITY_MODES), value="default", label="Crop and paste-back",
                                    info="default: this project's; official: the official SGPN demo's")
                background = gr.Checkbox(False, label="Upscale the background with Real-ESRGAN",
                                         visible=background_available, info="slow on CPU; otherwise Lanczos resizing")
                button = gr.Button("Restore", variant="primary", elem_id="sgpn-restore")
            with gr.Column():
                status = gr.Markdown(label="Status", elem_id="sgpn-status")
                slider = gr.ImageSlider(label="Before / after", type="filepath", format="png", max_height=420,
                                        elem_id="sgpn-slider")
                restored = gr.Image(label="Restored", type="filepath", format="png", interactive=False,
                                    height=420, elem_id="sgpn-restored")
                download = gr.File(label="Download (full resolution PNG)", elem_id="sgpn-download")
        if example_rows:
            gr.Examples([[str(path), preset.upscale, False, True, preset.visibility, preset.face_parsing, "default",
                          False] for path, preset in example_rows],
                        inputs=[image, upscale, only_center_face, paste_back, visibility, face_parsing, fidelity,
                                background],
                        label="Degraded public-domain examples (blur, noise, JPEG, half size) with preset settings")
        # two faces a row, so that four faces fit without scrolling; click a picture to see it large
        gallery = gr.Gallery(label="Faces", columns=6, height="auto", format="png", elem_id="sgpn-faces")
        gr.Markdown("For each face in **Faces**: the aligned input crop, the 3D shape prior (the face reconstructed "
                    "with the 3D morphable model and rendered), and the restored face.")
        with gr.Accordion("Paper, code and citation", open=False):
            gr.Markdown(CITATION)

        image.upload(check_upload, inputs=image, outputs=image, preprocess=False, api_visibility="private",
                     show_progress="hidden")
        button.click(restore, inputs=[image, upscale, only_center_face, paste_back, visibility, face_parsing, fidelity,
                                      background],
                     outputs=[slider, restored, gallery, download, status], api_name="restore")
        timer.tick(refresh_banner, outputs=[banner, timer], api_visibility="private", show_progress="hidden",
                   concurrency_limit=None)
        demo.load(refresh_banner, outputs=[banner, timer], api_visibility="private", show_progress="hidden",
                  concurrency_limit=None)
        gr.api(model_status, api_name="model_status", concurrency_limit=None)
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    return demo
