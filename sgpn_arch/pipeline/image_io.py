"""Reading and writing images the way users hand them to us: grey, grey+alpha, RGBA, 16-bit, EXIF-rotated."""

from __future__ import annotations

import logging
import os
import struct
import uuid
import zlib
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# What each writable format holds: sample types, and whether it keeps an alpha channel.
OUTPUT_FORMATS: dict[str, tuple[tuple[type, ...], bool]] = {
    ".png": ((np.uint8, np.uint16), True),
    ".jpg": ((np.uint8,), False),
    ".jpeg": ((np.uint8,), False),
    ".webp": ((np.uint8,), True),
    ".bmp": ((np.uint8,), False),
    ".tif": ((np.uint8, np.uint16, np.float32), True),
    ".tiff": ((np.uint8, np.uint16, np.float32), True),
}
# First bytes of the image files we read, and of files people leave next to them.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", 0), (b"\xff\xd8\xff", 0), (b"BM", 0), (b"WEBP", 8), (b"II*\x00", 0),
                (b"MM\x00*", 0))
_VIDEO_MAGIC = ((b"ftyp", 4), (b"AVI ", 8), (b"\x1aE\xdf\xa3", 0))
_VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".3gp")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` by extension, sorted by name, hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _head(path: Path, size: int = 4096) -> bytes:
    with open(path, "rb") as fin:
        return fin.read(size)


def looks_like_image(path: str | os.PathLike) -> bool:
    """True for a file with an image extension or image content (PNG, JPEG, BMP, WebP, TIFF signature)."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return True
    head = _head(path, 16)
    return any(head[at:at + len(magic)] == magic for magic, at in _IMAGE_MAGIC)


def describe_file(path: str | os.PathLike) -> str:
    """What a file that is not a readable image is, for messages ("a text file", "a video (.mp4)", ...)."""
    path = Path(path)
    head = _head(path)
    if not head:
        return "an empty file"
    if path.suffix.lower() in _VIDEO_EXTENSIONS or any(head[at:at + len(m)] == m for m, at in _VIDEO_MAGIC):
        return (f"a video ({path.suffix or 'no extension'}): extract its frames first, "
                f"e.g. ffmpeg -i {path.name} frames/%05d.png")
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError:
            pass
    if any(head[at:at + len(magic)] == magic for magic, at in _IMAGE_MAGIC):
        return "a damaged or unsupported image"
    return "not an image"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Image as numpy (BGR/BGRA/grey/grey+alpha H×W×2, original bit depth), EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise ValueError(f"cannot read {path}: {describe_file(path)}")
    if image.ndim == 3 and image.shape[2] == 4 and _is_grey_alpha(path, data):
        image = np.ascontiguousarray(image[..., [0, 3]])
    return apply_exif_orientation(image, _exif_orientation(path))


def _is_grey_alpha(path: Path, data: np.ndarray) -> bool:
    """OpenCV decodes grey+alpha files as BGRA; tell them from colour ones (PNG colour type 4, PIL mode LA)."""
    head = data[:26].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26:
        return head[25] == 4
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode in ("LA", "La")
    except Exception:   # formats PIL cannot open
        return False


def _exif_orientation(path: Path) -> int:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return int(img.getexif().get(0x0112, 1))
    except Exception:   # formats without EXIF support
        return 1


def apply_exif_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip pixels as EXIF orientation tag 1–8 says, so the image displays upright (as PIL shows it)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
           8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](image)) if orientation in ops else image


def channels(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else image.shape[2]


def has_alpha(image: np.ndarray) -> bool:
    return channels(image) in (2, 4)


def check_format(image: np.ndarray, ext: str) -> None:
    """Raise ``ValueError`` when format ``ext`` cannot be written or cannot hold ``image`` (alpha into JPEG)."""
    ext = ext.lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"cannot write {ext or 'files without extension'}: choose one of "
                         f"{', '.join(e[1:] for e in OUTPUT_FORMATS)}")
    if has_alpha(image) and not OUTPUT_FORMATS[ext][1]:
        raise ValueError(f"{ext} cannot hold this image's alpha (transparency) channel; "
                         f"write it as .png, .webp or .tif instead")


def fit_to_format(image: np.ndarray, ext: str) -> tuple[np.ndarray, list[str]]:
    """``image`` converted to what format ``ext`` holds, and notes of what changed (e.g. 16 → 8 bits)."""
    check_format(image, ext)
    ext = ext.lower()
    depths, _ = OUTPUT_FORMATS[ext]
    notes = []
    if channels(image) == 2 and ext != ".png":   # grey+alpha: only PNG stores it as such
        grey = image[..., 0]
        image = np.dstack([grey, grey, grey, image[..., 1]])
    if image.dtype not in depths:
        if np.issubdtype(image.dtype, np.floating) and np.float32 in depths:
            return image.astype(np.float32), notes
        target = np.uint16 if np.uint16 in depths else np.uint8
        if target == np.uint8:
            notes.append(f"{image.dtype} samples reduced to 8 bits: {ext} holds 8 bits per sample")
        image = from_float(image.astype(np.float32) / scale_of(image.dtype), target)
    return image, notes


def encode_image(image: np.ndarray, ext: str) -> bytes:
    """Encoded bytes of ``image`` (OpenCV channel order) as format ``ext``; conversions are logged as warnings."""
    image, notes = fit_to_format(image, ext)
    for note in notes:
        logger.warning(note)
    if channels(image) == 2:
        return _encode_grey_alpha_png(image)
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} and type {image.dtype} as {ext}")
    return buf.tobytes()


def _encode_grey_alpha_png(image: np.ndarray) -> bytes:
    """PNG colour type 4 (grey + alpha), 8 or 16 bits: OpenCV writes only 1, 3 or 4 channels."""
    height, width, _ = image.shape
    depth = 16 if image.dtype == np.uint16 else 8
    samples = image.astype(">u2") if depth == 16 else image
    rows = np.concatenate([np.zeros((height, 1), np.uint8), samples.reshape(height, -1).view(np.uint8)], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + chunk(b"IEND", b""))


@contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; renamed onto ``path`` when the block succeeds, removed otherwise.

    The temporary file is created like any new file (mode 0666 less the umask, e.g. 0644), so the result
    is readable by whoever could read a file the user writes normally.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + rename), creating parent folders."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fout:
            fout.write(data)
    return Path(path)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Encode by extension (converted to what the format holds) and write atomically; creates parent folders."""
    path = Path(path)
    return write_bytes_atomic(path, encode_image(image, path.suffix or ".png"))


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(colour, alpha)``: colour is H×W×3 (grey expanded), alpha None when absent."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), None
    if image.shape[2] == 4:
        return image[..., :3], image[..., 3]
    if image.shape[2] == 2:
        return cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2BGR), image[..., 1]
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
