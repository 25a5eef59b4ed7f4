"""SGPN nodes: model loader, face restoration (image + face mask), aligned crops and 3D shape-prior renders."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

import comfy.model_management as model_management
import comfy.utils

from . import model_paths
from .errors import user_errors
from .facerestore_model import SGPNFaceRestoreModel
from .sgpn_arch.nets.model import SGPN, build_sgpn
from .sgpn_arch.pipeline.restorer import DETECTORS, FIDELITY_MODES, FaceRestorer, NoFaceError
from .tensors import bgr_to_image_batch, black_image_batch, image_batch_to_bgr, masks_to_batch

logger = logging.getLogger(__name__)

CATEGORY = "SGPN"
TEMPLATES = ["sgpn", "ffhq"]
DEVICES = ["auto", "cpu"]
COMPILE = {"auto": "auto", "openvino": "openvino", "off": False}   # widget value -> FaceRestorer(compile=...)
DET_THRESHOLD_MAX = 0.99   # the detector needs a threshold strictly below 1


@dataclass
class SGPNModel:
    """The ``SGPN_MODEL`` value: the SGPN network, the detection settings and where to run.

    ``device="auto"`` runs on ComfyUI's torch device and parks the networks on ComfyUI's offload
    device between runs; ``"cpu"`` keeps everything on the CPU. The pipeline is built for the
    restore options of a run and reused while they stay the same.
    """

    network: SGPN
    detector: str
    template: str
    detector_rootpath: str
    device: str = "auto"
    compile: str = "auto"
    _restorer: FaceRestorer | None = field(default=None, repr=False)
    _settings: tuple | None = field(default=None, repr=False)

    @property
    def crop_size(self) -> int:
        return self.network.size

    def restorer(self, upscale: int, det_threshold: float, face_parsing: bool = False,
                 fidelity: str = "default") -> FaceRestorer:
        """The pipeline for these options, sharing the loaded network (only the detector is rebuilt)."""
        settings = (upscale, det_threshold, face_parsing, fidelity)
        if self._settings != settings:
            with user_errors("SGPN Restore Faces"):
                # parsing weights live beside the detector's (models/facedetection), fetched there if missing
                rootpath = model_paths.facexlib_folder("parsenet") if face_parsing else self.detector_rootpath
                self._restorer = FaceRestorer(self.network, device="cpu", upscale=upscale, det_threshold=det_threshold,
                                              detector=self.detector, template=self.template, use_parse=face_parsing,
                                              detector_rootpath=rootpath, allow_download=False, fidelity=fidelity,
                                              compile=COMPILE[self.compile])
            self._settings = settings
        return self._restorer

    def memory_required(self) -> int:
        """Bytes of weights and buffers, what ``free_memory`` has to make room for."""
        tensors = list(self.network.parameters()) + list(self.network.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class SGPNFaces:
    """The ``SGPN_FACES`` value: every face found in a batch, in batch order (BGR uint8 crops)."""

    crop_size: int
    cropped: list[np.ndarray] = field(default_factory=list)
    restored: list[np.ndarray] = field(default_factory=list)
    renders: list[np.ndarray] = field(default_factory=list)
    image_index: list[int] = field(default_factory=list)


@contextmanager
def _on_run_device(restorer: FaceRestorer, model: SGPNModel):
    """Move the pipeline to the device it runs on (after freeing room there) and back afterwards."""
    if model.device == "cpu":
        run_device = offload_device = torch.device("cpu")
    else:
        run_device = model_management.get_torch_device()
        offload_device = model_management.unet_offload_device()
    model_management.free_memory(model.memory_required(), run_device)
    restorer.to(run_device)
    try:
        yield
    finally:
        restorer.to(offload_device)
        model_management.soft_empty_cache()


def _passthrough(image: np.ndarray, upscale: int) -> np.ndarray:
    """The input at the output size, as the pipeline resizes a background without an upsampler."""
    if upscale == 1:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (width * upscale, height * upscale), interpolation=cv2.INTER_LANCZOS4)


class SGPN_ModelLoader:
    """Loads the SGPN generator, D3DFR and a BFM09 folder into one restoration pipeline."""

    @classmethod
    def INPUT_TYPES(cls):
        folders = ", ".join(model_paths.sgpn_folders())
        return {
            "required": {
                "generator": (model_paths.generator_choices(), {
                    "tooltip": f"SGPN generator weights (sgpn.pth), looked for in {folders}"}),
                "d3dfr": (model_paths.d3dfr_choices(), {
                    "tooltip": f"D3DFR weights (d3dfr_finetune_ours.pth), looked for in {folders}"}),
                "bfm": (model_paths.bfm_choices(), {
                    "tooltip": f"BFM09_model_info.mat (similarity_Lm3D_all.mat beside it), looked for in {folders}"}),
                "detector": (list(DETECTORS), {"default": "retinaface_resnet50",
                                               "tooltip": "facexlib face detector; weights in models/facedetection "
                                                          "(downloaded there once if missing)"}),
                "device": (DEVICES, {"default": "auto",
                                     "tooltip": "auto: ComfyUI's device, offloaded between runs; cpu: always CPU"}),
            },
            "optional": {
                "template": (TEMPLATES, {"default": "sgpn",
                                         "tooltip": "face alignment template the weights were trained with"}),
                "compile": (list(COMPILE), {"default": "auto",
                                            "tooltip": "auto: run the generator compiled where it pays (CPU, "
                                                       "~10% faster); the first run on a machine compiles it once "
                                                       "(about a minute); openvino: through OpenVINO on the CPU "
                                                       "(pip install openvino>=2026.4; ~20% faster again, ~0.9 GiB "
                                                       "more memory); off: never"}),
            },
        }

    RETURN_TYPES = ("SGPN_MODEL", "FACERESTORE_MODEL")
    RETURN_NAMES = ("sgpn_model", "facerestore_model")
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Builds the SGPN pipeline: face detector, 3D shape prior (D3DFR + BFM09) and SGPN generator. "
                   "facerestore_model: the same network for facerestore_cf-style nodes (FACERESTORE_MODEL).")

    def load(self, generator, d3dfr, bfm, detector, device, template="sgpn", compile="auto"):
        with user_errors("SGPN Model Loader"):
            # a file of another network is refused there with one message naming what it is
            network = build_sgpn(model_paths.weight_path(model_paths.GENERATOR, generator),
                                 model_paths.weight_path(model_paths.D3DFR, d3dfr), model_paths.bfm_folder(bfm),
                                 device="cpu")
            rootpath = model_paths.facexlib_folder(detector)
        offload = torch.device("cpu") if device == "cpu" else model_management.unet_offload_device()
        network = network.to(offload)
        model = SGPNModel(network=network, detector=detector, template=template, detector_rootpath=rootpath,
                          device=device, compile=compile)
        return (model, SGPNFaceRestoreModel(network, template).eval())


class SGPN_RestoreFaces:
    """Restores every face of every image in a batch and pastes it back."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "sgpn_model": ("SGPN_MODEL",),
                "image": ("IMAGE",),
                "upscale": ("INT", {"default": 1, "min": 1, "max": 4, "step": 1,
                                    "tooltip": "output size factor (the background is resized with Lanczos)"}),
                "only_center_face": ("BOOLEAN", {"default": False,
                                                 "tooltip": "restore only the face closest to the image centre"}),
                "paste_back": ("BOOLEAN", {"default": True,
                                           "tooltip": "off: the image passes through (face_mask still says where "
                                                      "the faces are) and only the faces output has the restorations"}),
                "visibility": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                         "tooltip": "blend of the restored face over the original (1 = restored only)"}),
                "det_threshold": ("FLOAT", {"default": 0.9, "min": 0.05, "max": DET_THRESHOLD_MAX, "step": 0.01,
                                            "tooltip": "face detector confidence threshold"}),
            },
            "optional": {
                "face_parsing": ("BOOLEAN", {"default": False,
                                             "tooltip": "paste back only the face (ParseNet face-parsing mask, "
                                                        "weights in models/facedetection) instead of the whole crop"}),
                "fidelity": (list(FIDELITY_MODES), {"default": "default",
                                                    "tooltip": "official: the official SGPN demo's crop, rounding "
                                                               "and paste-back, pixel for pixel"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK", "SGPN_FACES")
    RETURN_NAMES = ("image", "face_mask", "faces")
    FUNCTION = "restore"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Detects, aligns and restores faces with SGPN, pastes them back, and outputs where the faces "
                   "are as a soft mask (for compositing, or MASK to SEGS / detailer nodes). Images without a face "
                   "pass through unchanged.")

    def restore(self, sgpn_model, image, upscale, only_center_face, paste_back, visibility, det_threshold,
                face_parsing=False, fidelity="default"):
        outputs, masks = [], []
        faces = SGPNFaces(crop_size=sgpn_model.crop_size)
        restorer = sgpn_model.restorer(upscale, det_threshold, face_parsing, fidelity)
        with user_errors("SGPN Restore Faces"):
            images = image_batch_to_bgr(image)
        progress = comfy.utils.ProgressBar(len(images))
        with _on_run_device(restorer, sgpn_model):
            for index, bgr in enumerate(images):
                model_management.throw_exception_if_processing_interrupted()
                with user_errors("SGPN Restore Faces"):
                    try:   # always pasted: the mask says where the faces are even when the image passes through
                        result = restorer.restore(
                            bgr, only_center_face=only_center_face, paste_back=True, visibility=visibility,
                            on_face=lambda i, n: model_management.throw_exception_if_processing_interrupted())
                    except NoFaceError:
                        logger.warning("SGPN: no face found in image %d of the batch (det_threshold %.2f): it "
                                       "passes through unchanged; lower det_threshold if it shows a face",
                                       index, det_threshold)
                        result = None
                if result is None:
                    outputs.append(_passthrough(bgr, upscale))
                    masks.append(np.zeros(outputs[-1].shape[:2], np.float32))
                else:
                    outputs.append(result.restored_image if paste_back else _passthrough(bgr, upscale))
                    masks.append(result.face_mask)
                    faces.cropped += result.cropped_faces
                    faces.restored += result.restored_faces
                    faces.renders += result.renders
                    faces.image_index += [index] * len(result.restored_faces)
                progress.update(1)
        return (bgr_to_image_batch(outputs), masks_to_batch(masks), faces)


class SGPN_FaceCrops:
    """The aligned faces of a restoration as IMAGE batches: input crops, restorations, 3D shape-prior renders."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"faces": ("SGPN_FACES",)}}

    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE")
    RETURN_NAMES = ("cropped_faces", "restored_faces", "shape_renders")
    FUNCTION = "crops"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Aligned face crops, their SGPN restorations and the 3D shape prior rendered in the crop frame, "
                   "one image per face in batch order (one black image when no face was found).")

    def crops(self, faces):
        if not faces.restored:
            logger.warning("SGPN: no face was restored; the face outputs hold one black image")
            return tuple(black_image_batch(faces.crop_size) for _ in range(3))
        return (bgr_to_image_batch(faces.cropped), bgr_to_image_batch(faces.restored),
                bgr_to_image_batch(faces.renders))


NODE_CLASS_MAPPINGS = {
    "SGPN_ModelLoader": SGPN_ModelLoader,
    "SGPN_RestoreFaces": SGPN_RestoreFaces,
    "SGPN_FaceCrops": SGPN_FaceCrops,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "SGPN_ModelLoader": "SGPN Model Loader",
    "SGPN_RestoreFaces": "SGPN Restore Faces",
    "SGPN_FaceCrops": "SGPN Face Crops and 3D Renders",
}
