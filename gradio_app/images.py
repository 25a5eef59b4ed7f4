"""Image handling around the pipeline: input size limits, display conversion and the downloadable result."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sgpn_arch.pipeline.image_io import from_float, scale_of, write_image

# What browsers display in an <img>; other formats (TIFF) get a lossless PNG copy for the page.
BROWSER_FORMATS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
MAX_PRE_UPSCALE = 8


class OversizeError(ValueError):
    """The input photo is larger than the demo accepts and the policy is to refuse it."""


def fit_to_limits(image: np.ndarray, max_side: int, max_pixels: int, policy: str) -> tuple[np.ndarray, str | None]:
    """Return ``image`` within ``max_side``/``max_pixels`` and a notice when it had to be downscaled.

    ``policy="refuse"`` raises :class:`OversizeError` instead of downscaling.
    """
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width), math.sqrt(max_pixels / (height * width)))
    if scale >= 1.0:
        return image, None
    limit = f"{max_side} px on the longer side and {max_pixels / 1e6:.2g} megapixels"
    if policy == "refuse":
        raise OversizeError(f"The photo is {width}×{height} pixels, larger than this demo accepts ({limit}). "
                            "Resize it and upload it again.")
    new_width, new_height = max(1, int(width * scale)), max(1, int(height * scale))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    return resized, f"The photo ({width}×{height}) was downscaled to {new_width}×{new_height} to fit this demo's limit ({limit})."


@dataclass(frozen=True)
class ScalePlan:
    """How a photo is scaled around the restorer.

    The photo is enlarged ``pre`` times (tiny photos: faces big enough to detect), restored with
    ``restorer_upscale``, and the result resized to ``upscale`` × the photo (the output factor, after the cap on
    output size). ``notices`` says what differs from what was asked.
    """

    upscale: int
    pre: int
    restorer_upscale: int
    notices: tuple[str, ...] = ()


def plan_scale(height: int, width: int, upscale: int, min_side: int, max_output_side: int) -> ScalePlan:
    """Cap ``upscale`` so the output's longer side stays within ``max_output_side``; enlarge a photo whose
    shorter side is below ``min_side`` before detection (at most ×8)."""
    notices = []
    longer, shorter = max(height, width), min(height, width)
    capped = max(1, min(upscale, max_output_side // longer))
    if capped < upscale:
        notices.append(f"Upscale lowered from ×{upscale} to ×{capped}: the output of this "
                       f"{width}×{height} photo would exceed {max_output_side} px.")
    pre = min(MAX_PRE_UPSCALE, math.ceil(min_side / shorter)) if shorter < min_side else 1
    if pre > 1:
        notices.append(f"The photo is small ({width}×{height}): it was enlarged ×{pre} before face detection.")
    return ScalePlan(capped, pre, max(1, math.ceil(capped / pre)), tuple(notices))


def resize_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` at ``width``×``height``: Lanczos to enlarge, area averaging to shrink (channels, dtype kept)."""
    if image.shape[:2] == (height, width):
        return image
    enlarge = width > image.shape[1]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4 if enlarge else cv2.INTER_AREA)
    return resized[..., None] if image.ndim == 3 and resized.ndim == 2 else resized


def browser_shows(path: Path) -> bool:
    """Whether browsers can display the file ``path`` as it is (by its format's extension)."""
    return path.suffix.lower() in BROWSER_FORMATS


def png_ready(image: np.ndarray) -> np.ndarray:
    """``image`` in a dtype PNG stores losslessly enough: uint8/uint16 as they are, float as uint16."""
    if image.dtype in (np.uint8, np.uint16):
        return image
    return from_float(image.astype(np.float32) / scale_of(image.dtype), np.uint16)


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` scaled down (area averaging) so its longer side is at most ``max_side``; as it is if it fits."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    return resize_to(image, max(1, round(width * scale)), max(1, round(height * scale)))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A BGR(A)/grey image of any supported dtype as uint8, channels kept."""
    if image.dtype == np.uint16:
        return (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    if image.dtype != np.uint8:
        return (np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return image


def to_display(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """A BGR(A) image of any supported dtype as RGB(A) uint8 for the browser, optionally shrunk to ``max_side``."""
    image = to_uint8(image if max_side is None else shrink(image, max_side))
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 2:                                   # grey + alpha (image_io keeps it as two channels)
        return np.dstack([image[..., :1].repeat(3, axis=2), image[..., 1:]])
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)


class ResultStore:
    """A private temporary folder for the images the demo serves: results, previews, upload copies (``save``),
    and files kept for the store's lifetime (``kept``, e.g. the example photos).

    Each saved image is written atomically into its own sub-folder of ``results`` (so names may repeat across
    users); sub-folders older than ``max_age_s`` are removed when a new image is saved.
    """

    def __init__(self, max_age_s: float = 3600.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="sgpn_gradio_")
        self.root = Path(self._tmp.name)
        self.results = self.root / "results"
        self.results.mkdir()
        self.kept = self.root / "kept"
        self.kept.mkdir()
        self.max_age_s = max_age_s

    def save(self, image: np.ndarray, name: str) -> Path:
        """Write ``image`` (BGR(A), uint8/uint16) as PNG named ``name`` and return its path."""
        self._prune()
        folder = self.results / uuid.uuid4().hex
        folder.mkdir()
        path = folder / name
        write_image(path, image)
        return path

    def _prune(self) -> None:
        deadline = time.time() - self.max_age_s
        for folder in self.results.iterdir():
            if folder.stat().st_mtime < deadline:
                shutil.rmtree(folder, ignore_errors=True)
