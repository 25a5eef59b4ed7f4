"""Reading and writing images the way users hand them to us: grey, RGBA, 16-bit, EXIF-rotated."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` by extension, sorted by name, hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Image as numpy (BGR/BGRA/grey, original bit depth), EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise ValueError(f"cannot read {path}: not an image or the file is damaged")
    return apply_exif_orientation(image, _exif_orientation(path))


def _exif_orientation(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.getexif().get(0x0112, 1))
    except Exception:   # formats without EXIF support
        return 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels as EXIF orientation tag 1–8 says, so the image displays upright."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](image)) if orientation in ops else image


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode by extension and write atomically (temporary file + rename); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} and type {image.dtype} as {path.suffix}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fout:
            fout.write(buf.tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(colour, alpha)``: colour is H×W×3 (grey expanded), alpha None when absent."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.shape[2] == 4:
        return image[..., :3], image[..., 3]
    if image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR), None
    if image.shape[2] != 3:
        raise ValueError(f"unsupported image with {image.shape[2]} channels")
    return image, None


def scale_of(dtype: np.dtype) -> float:
    """Value of full white for an image dtype (uint8 255, uint16 65535, float 1)."""
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"unsupported image dtype {dtype}; use uint8, uint16 or float")


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Any supported image → BGR uint8 (alpha dropped)."""
    colour, _ = split_alpha(image)
    return np.clip(colour.astype(np.float32) / scale_of(image.dtype) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def from_float(image01: np.ndarray, like_dtype: np.dtype) -> np.ndarray:
    """Float image in [0, 1] → the dtype of the input it came from."""
    if np.issubdtype(like_dtype, np.floating):
        return np.clip(image01, 0, 1).astype(like_dtype)
    return np.clip(image01 * scale_of(like_dtype) + 0.5, 0, scale_of(like_dtype)).astype(like_dtype)
