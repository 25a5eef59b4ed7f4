"""The restoration pipeline every front end calls: detect → align to the SGPN template → SGPN → paste back."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch

from ..nets.model import SGPN, build_sgpn
from ..zoo.weights import resolve_bfm_folder, resolve_weights, stage_for_facexlib
from . import official_pipeline as official
from .align import get_template, similarity_transform
from .compilation import compile_devices
from .image_io import from_float, scale_of, split_alpha

logger = logging.getLogger(__name__)

DETECTORS = ("retinaface_resnet50", "retinaface_mobile0.25")
MIN_IMAGE_SIDE = 8   # pixels: anything smaller cannot show a face
FIDELITY_MODES = ("default", "official")
BORDER_GREY = (135 / 255, 133 / 255, 132 / 255)
# ParseNet classes kept in the paste-back mask (skin, brows, eyes, ears, nose, mouth, lips; no hair/neck/cloth)
PARSE_FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15)


NO_FACE = ("no face found in the image; try a lower detection threshold, or --aligned if the image is an aligned "
           "face crop")


class NoFaceError(ValueError):
    """No face was found in a whole photo."""


@dataclass
class RestoreResult:
    """Everything one restore produces (images are numpy, BGR)."""

    cropped_faces: list[np.ndarray] = field(default_factory=list)     # uint8 aligned crops
    restored_faces: list[np.ndarray] = field(default_factory=list)    # uint8
    renders: list[np.ndarray] = field(default_factory=list)           # uint8 3D shape-prior renders
    landmarks: list[np.ndarray] = field(default_factory=list)         # (5, 2) in the input image
    affine_matrices: list[np.ndarray] = field(default_factory=list)   # (2, 3) input → crop
    restored_image: np.ndarray | None = None    # input size × upscale, input's channels and dtype
    face_mask: np.ndarray | None = None         # float32 [H·up, W·up] in 0..1
    notes: list[str] = field(default_factory=list)   # warnings about this input (e.g. an FFHQ-aligned crop)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA, then MPS, then CPU; a named device must exist here (else ``ValueError``)."""
    if str(device) != "auto":
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and (not torch.cuda.is_available() or (chosen.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"device {device!r} is not available: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s); use --device cpu or auto")
        if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {device!r} is not available here (no Apple MPS); use --device cpu or auto")
        if chosen.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class FaceRestorer:
    """Load once, restore many. ``model`` is used as given; otherwise weights come from the zoo.

    ``fidelity``: ``"default"`` (this project's crop and paste-back) or ``"official"`` (the official SGPN
    demo's pre- and post-processing, pixel for pixel; README "Fidelity to the official demo").
    ``detection_size``: faces are detected on a copy of larger photos reduced to this shorter side (None:
    full resolution); ``min_eye_distance`` / ``min_face_size``: smaller faces are skipped (pixels).
    ``compile``: run the generator compiled (:meth:`SGPN.accelerate`): ``"auto"`` where it pays (on CPU;
    the first run on a machine compiles it once, ~40 s on 2 cores, later ones load it), ``True``, ``False``.
    """

    def __init__(self, model: SGPN | None = None, *, generator=None, d3dfr=None, bfm_folder=None,
                 device: str | torch.device = "auto", upscale: int = 2, detector: str = "retinaface_resnet50",
                 template="sgpn", use_parse: bool = False, det_threshold: float = 0.9, min_face_size: int = 0,
                 min_eye_distance: float = 5.0, detection_size: int | None = 800,
                 bg_upsampler: Callable[[np.ndarray], np.ndarray] | None = None,
                 detector_rootpath: str | os.PathLike | None = None, allow_download: bool = True,
                 batch_size: int | None = None, fidelity: str = "default", compile: bool | str = "auto"):
        if fidelity not in FIDELITY_MODES:
            raise ValueError(f"unknown fidelity {fidelity!r}; choose one of {FIDELITY_MODES} ('official' reproduces "
                             "the official SGPN demo's crop, rounding and paste-back)")
        if fidelity == "official" and use_parse:
            raise ValueError("fidelity='official' pastes with the official demo's rectangle mask; "
                             "turn face parsing (use_parse / --parse) off")
        if not (isinstance(upscale, int) and 1 <= upscale <= 8):
            raise ValueError(f"upscale must be an integer from 1 to 8, got {upscale!r}")
        if not 0 < det_threshold < 1:
            raise ValueError(f"det_threshold must be between 0 and 1, got {det_threshold}")
        if detector not in DETECTORS:
            raise ValueError(f"unknown detector {detector!r}; choose one of {DETECTORS}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if min_face_size < 0 or min_eye_distance < 0:
            raise ValueError(f"min_face_size and min_eye_distance must be 0 or more pixels, got {min_face_size} "
                             f"and {min_eye_distance}")
        if detection_size is not None and detection_size < 64:
            raise ValueError(f"detection_size must be at least 64 pixels (or None: full resolution), "
                             f"got {detection_size}")
        compile_devices(compile)   # validates before anything loads
        self.device = pick_device(device)
        if batch_size is None:   # faces per forward: batching pays on GPUs, not on CPU cores (benchmarks/RESULTS.md)
            batch_size = 1 if self.device.type == "cpu" else 4
        if model is None:
            model = build_sgpn(resolve_weights("sgpn", generator, allow_download),
                               resolve_weights("d3dfr", d3dfr, allow_download),
                               resolve_bfm_folder(bfm_folder, allow_download))
        self.model = model.to(self.device).eval().accelerate(compile=compile)
        self.size = model.size
        # official mode aligns in float64 like the demo (its crops are bicubic: tiny matrix errors show)
        self.template = get_template(template, self.size, np.float64 if fidelity == "official" else np.float32)
        self.upscale, self.det_threshold, self.min_face_size = upscale, det_threshold, min_face_size
        self.min_eye_distance, self.detection_size = min_eye_distance, detection_size
        self._template_warned = False
        self.bg_upsampler, self.batch_size, self.fidelity = bg_upsampler, batch_size, fidelity

        from facexlib.detection import init_detection_model

        root = stage_for_facexlib(detector, detector_rootpath, allow_download)
        self.detector = init_detection_model(detector, half=False, device=self.device, model_rootpath=str(root))
        self.parser = None
        if use_parse:   # only then: facexlib would otherwise download ParseNet behind the user's back
            from facexlib.parsing import init_parsing_model

            parse_root = stage_for_facexlib("parsenet", detector_rootpath, allow_download)
            self.parser = init_parsing_model("parsenet", device=self.device, model_rootpath=str(parse_root))

    def to(self, device: str | torch.device) -> "FaceRestorer":
        """Move every network (SGPN, detector, parser) to ``device``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        self.detector.to(self.device)
        self.detector.device = self.device
        # facexlib's RetinaFace keeps its pixel mean in a plain attribute, which Module.to does not move
        self.detector.mean_tensor = self.detector.mean_tensor.to(self.device)
        if self.parser is not None:
            self.parser.to(self.device)
        return self

    # --- detection and alignment ----------------------------------------------------------

    def detect(self, image_bgr: np.ndarray, only_center_face: bool = False) -> list[np.ndarray]:
        """5-point landmarks ``(5,2)`` of the faces in a BGR uint8 image, largest first.

        Photos whose shorter side exceeds ``detection_size`` are searched on a reduced copy (RetinaFace finds
        faces up to ~512 px; larger ones come out as several partial faces) and the boxes and landmarks are
        mapped back. Faces smaller than ``min_face_size`` or with eyes closer than ``min_eye_distance`` pixels
        are skipped.
        """
        scale, (height, width) = 1.0, image_bgr.shape[:2]
        if self.detection_size is not None and min(height, width) > self.detection_size:
            scale = self.detection_size / min(image_bgr.shape[:2])
            size = (max(1, round(image_bgr.shape[1] * scale)), max(1, round(image_bgr.shape[0] * scale)))
            image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        with torch.no_grad():
            found = self.detector.detect_faces(image_bgr, conf_threshold=self.det_threshold)
        rows = np.asarray(found, np.float64).reshape(-1, 15)
        # pixel centres: x_full = (x_small + 0.5) / scale - 0.5 (the resize maps centres onto centres)
        boxes = (rows[:, :4] + 0.5) / scale - 0.5
        points = ((rows[:, 5:15].reshape(-1, 5, 2) + 0.5) / scale - 0.5).astype(np.float32)
        faces = []
        for box, landmarks in zip(boxes, points):
            x0, y0, x1, y1 = box
            eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
            if min(x1 - x0, y1 - y0) >= self.min_face_size and eye_distance >= self.min_eye_distance:
                faces.append((box, landmarks))
        faces.sort(key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        if only_center_face and faces:
            centre = np.array([width / 2, height / 2])
            faces = [min(faces, key=lambda f: np.linalg.norm((f[0][:2] + f[0][2:]) / 2 - centre))]
        return [landmarks for _, landmarks in faces]

    def detect_aligned(self, crop_bgr8: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Landmarks of an aligned ``size``² crop (the template when no face is found), and a note when the
        face looks aligned to the FFHQ template of GFPGAN/CodeFormer crops rather than to the weights'
        template (logged as a warning once per restorer).

        The test is the scale of the best similarity from the landmarks to the template: about 0.89 for
        FFHQ crops against SGPN's template, about 1 for SGPN crops; faces below 0.92 are reported.
        """
        found = self.detect(crop_bgr8, only_center_face=True)
        if not found:
            return self.template, None
        scale_of_fit = lambda points: float(np.sqrt(abs(np.linalg.det(  # noqa: E731
            similarity_transform(points, self.template)[:, :2]))))
        ffhq_scale = scale_of_fit(get_template("ffhq", self.size))
        if ffhq_scale > 0.97 or scale_of_fit(found[0]) >= ffhq_scale + 0.3 * (1 - ffhq_scale):
            return found[0], None
        note = ("this aligned crop looks aligned to the FFHQ template (GFPGAN/CodeFormer crops), not to the template "
                f"the SGPN weights expect (the face is about {1 / ffhq_scale - 1:.0%} larger): restore the original "
                "photo, or this crop without --aligned so that the face is re-aligned")
        if not self._template_warned:
            logger.warning(note)
            self._template_warned = True
        return found[0], note

    def align(self, image01: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Crop (float BGR, ``size``²) aligned to the template, and the input → crop affine."""
        affine = similarity_transform(landmarks, self.template)
        crop = cv2.warpAffine(image01, affine, (self.size, self.size), flags=cv2.INTER_CUBIC,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_GREY)
        return np.clip(crop, 0, 1, out=crop), affine

    # --- restoration -----------------------------------------------------------------------

    def restore_crops(self, crops01: list[np.ndarray], crop_landmarks: list[np.ndarray],
                      on_face: Callable[[int, int], None] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run SGPN on aligned float BGR crops in batches → (restored, renders), float BGR in [0, 1]."""
        restored, renders = [], []
        for start in range(0, len(crops01), self.batch_size):
            if on_face is not None:
                on_face(start, len(crops01))
            batch = np.stack(crops01[start:start + self.batch_size])[..., ::-1]        # RGB
            lq = torch.from_numpy(batch.copy()).permute(0, 3, 1, 2).float() * 2 - 1
            lm = torch.from_numpy(np.stack(crop_landmarks[start:start + self.batch_size])).float()
            out = self.model.restore(lq, lm)
            to_np = lambda t: ((t.float().cpu().permute(0, 2, 3, 1).numpy()[..., ::-1] + 1) / 2).clip(0, 1)  # noqa: E731
            restored += list(to_np(out.restored))
            renders += list(to_np(out.render))
        return restored, renders

    def restore(self, image: np.ndarray, *, aligned: bool = False, only_center_face: bool = False,
                paste_back: bool = True, visibility: float = 1.0,
                on_face: Callable[[int, int], None] | None = None) -> RestoreResult:
        """Restore every face of ``image`` (numpy BGR/BGRA/grey, uint8/uint16/float).

        ``aligned``: the image is one face crop already aligned to the template (any size).
        ``visibility``: blend of restored (1) and original (0) faces. ``on_face(i, n)`` is called before
        each batch of faces (progress, cancellation).
        """
        if not 0 <= visibility <= 1:
            raise ValueError(f"visibility must be between 0 and 1, got {visibility}")
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.ndim == 3 and image.shape[2] > 4:
            raise ValueError("expected an image array of shape H×W or H×W×C (C: 1 grey, 2 grey+alpha, 3 BGR, 4 BGRA)")
        if min(image.shape[:2]) < MIN_IMAGE_SIDE:
            raise ValueError(f"the image is only {image.shape[1]}×{image.shape[0]} pixels: too small to hold a face "
                             f"(at least {MIN_IMAGE_SIDE} pixels a side)")
        colour, alpha = split_alpha(image)
        image01 = colour.astype(np.float32) / scale_of(image.dtype)
        bgr8 = np.clip(image01 * 255 + 0.5, 0, 255).astype(np.uint8)
        if self.fidelity == "official":
            return self._restore_official(bgr8, alpha, image, aligned, only_center_face, paste_back, visibility,
                                          on_face)
        result = RestoreResult()
        if aligned:
            crop = cv2.resize(image01, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
            landmarks, note = self.detect_aligned(cv2.resize(bgr8, (self.size, self.size)))
            crop_lms, result.notes = [landmarks], [note] if note else []
            crops, affines = [crop], [np.array([[self.size / image.shape[1], 0, 0], [0, self.size / image.shape[0], 0]],
                                               np.float32)]
            result.landmarks = [crop_lms[0] / [self.size / image.shape[1], self.size / image.shape[0]]]
        else:
            result.landmarks = self.detect(bgr8, only_center_face)
            if not result.landmarks:
                raise NoFaceError(NO_FACE)
            crops, affines = zip(*(self.align(image01, lm) for lm in result.landmarks))
            crop_lms = [lm @ a[:, :2].T + a[:, 2] for lm, a in zip(result.landmarks, affines)]
        restored, renders = self.restore_crops(list(crops), list(crop_lms), on_face)
        restored = [visibility * r + (1 - visibility) * c for r, c in zip(restored, crops)]
        to8 = lambda x: np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)  # noqa: E731
        result.cropped_faces = [to8(c) for c in crops]
        result.restored_faces = [to8(r) for r in restored]
        result.renders = [to8(r) for r in renders]
        result.affine_matrices = [np.asarray(a, np.float32) for a in affines]
        if aligned:
            h, w = image.shape[0] * self.upscale, image.shape[1] * self.upscale
            canvas = cv2.resize(restored[0], (w, h), interpolation=cv2.INTER_LINEAR)
            result.face_mask = np.ones((h, w), np.float32)
            result.restored_image = self._finish(canvas, alpha, image)
        elif paste_back:
            canvas, result.face_mask = self.paste_back(image01, restored, result.affine_matrices)
            result.restored_image = self._finish(canvas, alpha, image)
        return result

    # --- the official demo's pre- and post-processing (fidelity="official") -------------------

    def _restore_official_face(self, crop8: np.ndarray, crop_landmarks: np.ndarray, mask: torch.Tensor | None,
                               visibility: float) -> tuple[np.ndarray, np.ndarray]:
        """One uint8 crop → (restored crop, render), uint8 BGR, truncated as the demo does."""
        lq = official.to_signed(crop8).to(self.device)
        out = self.model.restore(lq, torch.from_numpy(np.asarray(crop_landmarks, np.float32))[None])
        restored = out.restored
        if visibility < 1:
            restored = visibility * restored + (1 - visibility) * lq
        if mask is not None:
            restored = official.blend(restored, lq, mask)
        return official.to_uint8(restored), official.to_uint8(out.render)

    def _restore_official(self, bgr8: np.ndarray, alpha: np.ndarray | None, like: np.ndarray, aligned: bool,
                          only_center_face: bool, paste_back: bool, visibility: float,
                          on_face: Callable[[int, int], None] | None) -> RestoreResult:
        """:meth:`restore` with the official demo's steps (:mod:`.official_pipeline`) around the same networks."""
        result = RestoreResult()
        if aligned:
            crop = official.resize_aligned(bgr8, self.size)
            crop_lm, note = self.detect_aligned(crop)
            result.notes = [note] if note else []
            if on_face is not None:
                on_face(0, 1)
            face, render = self._restore_official_face(crop, crop_lm, None, visibility)
            scale = np.array([self.size / like.shape[1], self.size / like.shape[0]])
            result.landmarks = [(crop_lm / scale).astype(np.float32)]
            result.affine_matrices = [np.array([[scale[0], 0, 0], [0, scale[1], 0]], np.float32)]
            result.cropped_faces, result.restored_faces, result.renders = [crop], [face], [render]
            h, w = like.shape[0] * self.upscale, like.shape[1] * self.upscale
            canvas = face.astype(np.float32) / 255
            if (h, w) != canvas.shape[:2]:
                canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_LINEAR)
            result.face_mask = np.ones((h, w), np.float32)
            result.restored_image = self._finish(canvas, alpha, like)
            return result
        result.landmarks = self.detect(bgr8, only_center_face)
        if not result.landmarks:
            raise NoFaceError(NO_FACE)
        mask = official.paste_mask(self.size)
        mask_t = torch.from_numpy(mask).to(self.device).view(1, 1, self.size, self.size)
        canvas = bgr8.copy()
        h, w = canvas.shape[:2]
        union = np.zeros((h, w), np.float32)
        for i, landmarks in enumerate(result.landmarks):
            if on_face is not None:
                on_face(i, len(result.landmarks))
            affine = similarity_transform(landmarks, self.template, np.float64)
            crop = official.crop_face(canvas, affine, self.size)      # earlier faces are already pasted in
            face, render = self._restore_official_face(crop, landmarks @ affine[:, :2].T + affine[:, 2], mask_t,
                                                       visibility)
            official.paste_face(canvas, face, affine)
            region = cv2.warpAffine(mask, affine, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            union = np.maximum(union, region)
            result.cropped_faces.append(crop)
            result.restored_faces.append(face)
            result.renders.append(render)
            result.affine_matrices.append(affine.astype(np.float32))
        if paste_back:
            canvas = canvas.astype(np.float32) / 255
            if self.upscale > 1 or self.bg_upsampler is not None:   # the demo has no upscale: resize its result
                canvas = self.upsample_background(canvas)
                union = cv2.resize(union, canvas.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            result.face_mask = union
            result.restored_image = self._finish(canvas, alpha, like)
        return result

    # --- paste-back --------------------------------------------------------------------------

    def upsample_background(self, image01: np.ndarray) -> np.ndarray:
        h, w = image01.shape[:2]
        if self.bg_upsampler is not None:
            up = self.bg_upsampler(image01)
            if up.shape[:2] != (h * self.upscale, w * self.upscale):
                up = cv2.resize(up, (w * self.upscale, h * self.upscale), interpolation=cv2.INTER_LINEAR)
            return up.astype(np.float32)
        if self.upscale == 1:
            return image01.copy()
        return cv2.resize(image01, (w * self.upscale, h * self.upscale), interpolation=cv2.INTER_LANCZOS4)

    def face_region(self, restored01: np.ndarray) -> np.ndarray:
        """Soft mask of the crop to paste: the whole crop, or the face-parsing mask when enabled."""
        if self.parser is None:
            return np.ones((self.size, self.size), np.float32)
        rgb = cv2.resize(restored01, (512, 512))[..., ::-1]
        x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().to(self.device) * 2 - 1
        with torch.no_grad():
            labels = self.parser(x)[0].argmax(dim=1)[0].cpu().numpy()
        mask = np.isin(labels, PARSE_FACE_CLASSES).astype(np.float32)
        mask = cv2.GaussianBlur(mask, (101, 101), 11)
        return cv2.resize(mask, (self.size, self.size))

    def paste_back(self, image01: np.ndarray, faces01: list[np.ndarray],
                   affines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Warp restored crops back with the inverse affines and blend them in with soft masks."""
        canvas = self.upsample_background(image01)
        h, w = canvas.shape[:2]
        u = self.upscale
        union = np.zeros((h, w), np.float32)
        for face, affine in zip(faces01, affines):
            inverse = cv2.invertAffineTransform(affine) * u
            inverse[:, 2] += 0.5 * (u - 1)            # pixel centres: p_out = u·p_in + (u − 1)/2
            (x0, y0, x1, y1), window = self._paste_window(inverse, w, h)
            if window is None:
                continue                              # the face lies outside the photo
            warped = np.clip(cv2.warpAffine(face, window, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC), 0, 1)
            region = cv2.warpAffine(self.face_region(face), window, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
            edge = max(1, int(np.sqrt(region.sum())) // 20)
            core = cv2.erode((region > 0.999).astype(np.float32), np.ones((2 * edge + 1,) * 2, np.uint8))
            soft = cv2.GaussianBlur(core, (2 * edge + 1, 2 * edge + 1), 0) * np.clip(region, 0, 1)
            part = canvas[y0:y1, x0:x1]
            part[:] = soft[..., None] * warped + (1 - soft[..., None]) * part
            np.maximum(union[y0:y1, x0:x1], soft, out=union[y0:y1, x0:x1])
        return canvas, union

    def _paste_window(self, inverse: np.ndarray, w: int, h: int):
        """The part of the canvas a face is pasted into, and the inverse affine relative to it.

        Pasting only there (not over the whole, possibly upscaled, photo) keeps a 6000 px photo at the cost of its
        faces. The window holds the warped crop plus a margin wider than the blend's blur and erosion, so every
        operation gives exactly what it gives on the whole canvas (zeros around the face either way).
        """
        corners = np.array([[0, 0, 1], [self.size, 0, 1], [0, self.size, 1], [self.size, self.size, 1]], np.float64)
        points = corners @ inverse.T
        area = abs(np.linalg.det(inverse[:, :2])) * self.size ** 2
        margin = int(np.sqrt(area * 1.2)) // 20 + 8
        x0, y0 = np.floor(points.min(axis=0)).astype(int) - margin
        x1, y1 = np.ceil(points.max(axis=0)).astype(int) + margin
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:
            return (0, 0, 0, 0), None
        window = inverse.copy()
        window[:, 2] -= (x0, y0)
        return (x0, y0, x1, y1), window

    def _finish(self, canvas01: np.ndarray, alpha: np.ndarray | None, like: np.ndarray) -> np.ndarray:
        """Back to the input's channel layout and dtype (alpha resized and re-attached)."""
        out = from_float(canvas01, like.dtype)
        if like.ndim == 2 or like.shape[2] in (1, 2):
            out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
            if like.ndim == 2 or like.shape[2] == 1:
                return out if like.ndim == 2 else out[..., None]
            out = out[..., None]   # grey + alpha
        if alpha is not None:
            alpha = cv2.resize(alpha, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
            out = np.dstack([out, alpha])
        return out
