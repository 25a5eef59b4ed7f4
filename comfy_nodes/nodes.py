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
from sgpn_arch.model import SGPN, build_sgpn
from sgpn_arch.restorer import FaceRestorer, NoFaceError

from . import model_paths
from .tensors import bgr_to_image_batch, empty_image_batch, image_batch_to_bgr, masks_to_batch

logger = logging.getLogger(__name__)

CATEGORY = "SGPN"
DETECTORS = ["retinaface_resnet50", "retinaface_mobile0.25"]
TEMPLATES = ["sgpn", "ffhq"]
DEVICES = ["auto", "cpu"]


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
    _restorer: FaceRestorer | None = field(default=None, repr=False)
    _settings: tuple | None = field(default=None, repr=False)

    @property
    def crop_size(self) -> int:
        return self.network.size

    def restorer(self, upscale: int, det_threshold: float) -> FaceRestorer:
        """The pipeline for these options, sharing the loaded network (only the detector is rebuilt)."""
        settings = (upscale, det_threshold)
        if self._settings != settings:
            self._restorer = FaceRestorer(self.network, device="cpu", upscale=upscale, det_threshold=det_threshold,
                                          detector=self.detector, template=self.template,
                                          detector_rootpath=self.detector_rootpath)
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
        return {
            "required": {
                "generator": (model_paths.generator_choices(), {
                    "tooltip": "SGPN generator weights (sgpn.pth) in models/facerestore_models or models/sgpn"}),
                "d3dfr": (model_paths.d3dfr_choices(), {
                    "tooltip": "D3DFR weights (d3dfr_finetune_ours.pth) in models/sgpn"}),
                "bfm": (model_paths.bfm_choices(), {
                    "tooltip": "BFM09_model_info.mat under models/sgpn; similarity_Lm3D_all.mat must sit beside it"}),
                "detector": (DETECTORS, {"default": "retinaface_resnet50",
                                         "tooltip": "facexlib face detector (weights in models/facedetection)"}),
                "device": (DEVICES, {"default": "auto",
                                     "tooltip": "auto: ComfyUI's device, offloaded between runs; cpu: always CPU"}),
            },
            "optional": {
                "template": (TEMPLATES, {"default": "sgpn",
                                         "tooltip": "face alignment template the weights were trained with"}),
            },
        }

    RETURN_TYPES = ("SGPN_MODEL",)
    RETURN_NAMES = ("sgpn_model",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Builds the SGPN pipeline: face detector, 3D shape prior (D3DFR + BFM09) and SGPN generator."

    def load(self, generator, d3dfr, bfm, detector, device, template="sgpn"):
        network = build_sgpn(model_paths.generator_path(generator), model_paths.d3dfr_path(d3dfr),
                             model_paths.bfm_folder(bfm), device="cpu")
        offload = torch.device("cpu") if device == "cpu" else model_management.unet_offload_device()
        return (SGPNModel(network=network.to(offload), detector=detector, template=template,
                          detector_rootpath=model_paths.detector_folder(detector), device=device),)


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
                                           "tooltip": "off: the image passes through and only the faces output has the restorations"}),
                "visibility": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                         "tooltip": "blend of the restored face over the original (1 = restored only)"}),
                "det_threshold": ("FLOAT", {"default": 0.9, "min": 0.05, "max": 1.0, "step": 0.01,
                                            "tooltip": "face detector confidence threshold"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK", "SGPN_FACES")
    RETURN_NAMES = ("image", "face_mask", "faces")
    FUNCTION = "restore"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Detects, aligns and restores faces with SGPN, pastes them back, and outputs where faces "
                   "were pasted as a mask. Images without a face pass through unchanged.")

    def restore(self, sgpn_model, image, upscale, only_center_face, paste_back, visibility, det_threshold):
        outputs, masks = [], []
        faces = SGPNFaces(crop_size=sgpn_model.crop_size)
        restorer = sgpn_model.restorer(upscale, det_threshold)
        images = image_batch_to_bgr(image)
        progress = comfy.utils.ProgressBar(len(images))
        with _on_run_device(restorer, sgpn_model):
            for index, bgr in enumerate(images):
                model_management.throw_exception_if_processing_interrupted()
                try:
                    result = restorer.restore(
                        bgr, only_center_face=only_center_face, paste_back=paste_back, visibility=visibility,
                        on_face=lambda i, n: model_management.throw_exception_if_processing_interrupted())
                except NoFaceError as err:
                    logger.warning("SGPN: image %d of the batch passes through unchanged: %s", index, err)
                    result = None
                if result is None or result.restored_image is None:
                    outputs.append(_passthrough(bgr, upscale))
                    masks.append(np.zeros(outputs[-1].shape[:2], np.float32))
                else:
                    outputs.append(result.restored_image)
                    masks.append(result.face_mask)
                if result is not None:
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
                   "one image per face in batch order.")

    def crops(self, faces):
        if not faces.restored:
            logger.warning("SGPN: no face was restored; the face batches are empty")
            empty = empty_image_batch(faces.crop_size)
            return (empty, empty.clone(), empty.clone())
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
