"""Image handling around the pipeline: input size limits, display conversion and the downloadable result."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

from sgpn_arch.image_io import write_image


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


def to_display(image: np.ndarray, max_side: int | None = None) -> np.ndarray:
    """A BGR(A) image of any supported dtype as RGB(A) uint8 for the browser, optionally shrunk to ``max_side``."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if max_side is not None and max(image.shape[:2]) > max_side:
        scale = max_side / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def resize_like(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``image`` resized (Lanczos) to the height and width of ``reference``: the 'before' side of the slider."""
    height, width = reference.shape[:2]
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LANCZOS4)


class ResultStore:
    """A private temporary folder for the full-resolution results offered for download.

    Each result is written atomically into its own sub-folder (so names may repeat across users);
    sub-folders older than ``max_age_s`` are removed when a new result is saved.
    """

    def __init__(self, max_age_s: float = 3600.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="sgpn_gradio_")
        self.root = Path(self._tmp.name)
        self.max_age_s = max_age_s

    def save(self, image: np.ndarray, name: str) -> Path:
        """Write ``image`` (BGR(A), uint8/uint16) as PNG named ``name`` and return its path."""
        self._prune()
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        path = folder / name
        write_image(path, image)
        return path

    def _prune(self) -> None:
        deadline = time.time() - self.max_age_s
        for folder in self.root.iterdir():
            if folder.stat().st_mtime < deadline:
                shutil.rmtree(folder, ignore_errors=True)
