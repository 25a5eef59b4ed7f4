"""Reading and writing images: EXIF orientation against PIL, bit depth and alpha against the output format,
grey+alpha kept, permissions of atomically written files, what non-image files are called."""

from __future__ import annotations

import os
import stat

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from sgpn_arch.pipeline.image_io import describe_file, looks_like_image, read_image, write_image

# How to store an upright photo so that EXIF orientation N displays it upright again (inverse of exif_transpose).
STORED_AS = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
             7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


@pytest.fixture(scope="module")
def photo(faces_dir) -> np.ndarray:
    return cv2.imread(str(faces_dir / "real_lq_whole" / "sgpn_0022.jpg"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(photo, tmp_path, orientation):
    """Issue 18 item 2: orientation 7 was read rotated 180° (as 5). Every tag must display as PIL shows it."""
    upright = Image.fromarray(photo[..., ::-1])
    stored = upright if STORED_AS[orientation] is None else upright.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"orientation_{orientation}.jpg"
    stored.save(path, exif=exif, quality=95)

    ours = read_image(path)[..., ::-1].astype(int)
    with Image.open(path) as img:
        pil = np.asarray(ImageOps.exif_transpose(img)).astype(int)
    assert ours.shape == pil.shape == photo.shape
    assert np.abs(ours - pil).mean() < 1.0                      # same decoder family: same pixels, same way up
    assert np.abs(ours - photo[..., ::-1]).mean() < 4.0         # and upright: the photo we started from


def test_16bit_into_8bit_formats_is_converted_not_saturated(photo, tmp_path, caplog):
    """Issue 18 item 3: a 16-bit image written as .jpg/.webp came out 95 % saturated."""
    deep = photo.astype(np.uint16) * 257
    for ext in (".jpg", ".webp"):
        path = write_image(tmp_path / f"deep{ext}", deep)
        back = cv2.imread(str(path)).astype(int)
        assert (back == 255).mean() < 0.05
        assert np.abs(back - photo).mean() < 3.0
    assert "8 bits" in caplog.text                               # said, not silent
    path = write_image(tmp_path / "deep.png", deep)               # PNG keeps 16 bits
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), deep)


def test_alpha_into_jpeg_is_refused_and_grey_alpha_stays_grey_alpha(photo, tmp_path):
    """Issue 18 item 3: RGBA → .jpg dropped alpha silently; grey+alpha was read (and written) as 4-channel colour."""
    rgba = np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)])
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "rgba.jpg", rgba)
    assert not list(tmp_path.iterdir())                           # nothing half written

    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    alpha = np.linspace(0, 255, grey.size).reshape(grey.shape).astype(np.uint8)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.shape == grey.shape + (2,)
    assert np.array_equal(image[..., 0], grey) and np.array_equal(image[..., 1], alpha)
    out = write_image(tmp_path / "copy.png", image)
    with Image.open(out) as img:
        assert img.mode == "LA" and np.array_equal(np.asarray(img), image)
    deep = image.astype(np.uint16) * 257                          # 16-bit grey+alpha round trip
    assert np.array_equal(read_image(write_image(tmp_path / "deep_la.png", deep)), deep)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_write_keeps_umask_permissions(photo, tmp_path, umask):
    """Issue 17: tempfile.mkstemp made every result 0600; a normal file gets 0666 less the umask."""
    old = os.umask(umask)
    try:
        path = write_image(tmp_path / "out" / "photo.png", photo[:32, :32])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["photo.png"]   # no temporary file left


def test_non_image_files_are_named(tmp_path, faces_dir):
    (tmp_path / "README.md").write_text("# my photos\n")
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    (tmp_path / "noext").write_bytes((faces_dir / "real_lq_whole" / "sgpn_0022.jpg").read_bytes())
    assert describe_file(tmp_path / "README.md") == "a text file"
    video = describe_file(tmp_path / "clip.mp4")
    assert video.startswith("a video") and "ffmpeg" in video
    assert looks_like_image(tmp_path / "noext") and not looks_like_image(tmp_path / "README.md")
    with pytest.raises(ValueError, match="text file"):
        read_image(tmp_path / "README.md")
