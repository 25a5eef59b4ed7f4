"""fidelity="official" against an independent re-statement of the official SGPN demo's steps.

The re-statement below is written from the documented steps of ``demo_face_restoration.py``
(TencentYoutuResearch/FaceRestoration-sgpn), with OpenCV, NumPy and SciPy only; it shares nothing with
``sgpn_arch`` except the networks themselves (``model.restore``) and the face detector (the official
demo's YOLOv5-face is replaced by facexlib's RetinaFace in both).
"""

import cv2
import numpy as np
import pytest
import torch
from scipy.io import loadmat
from scipy.ndimage import map_coordinates

from sgpn_arch.nets.model import IdentitySGPN
from sgpn_arch.pipeline.image_io import read_image
from sgpn_arch.pipeline.restorer import FaceRestorer

# ArcFace 96×112 points; the demo squares them to 112 (x + 8), pads by 0.25 (+ 28) and scales 168 → 512
ARCFACE = np.array([[30.29459953, 51.69630051], [65.53179932, 51.50139999], [48.02519989, 71.73660278],
                    [33.54930115, 92.3655014], [62.72990036, 92.20410156]])
REFERENCE_512 = (ARCFACE + [8, 0] + 28) * (512 / 168)


def umeyama(src, dst):
    """Least-squares similarity src → dst (Umeyama 1991, eqs. 38–43), float64, (2, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_c, dst_c = src - src.mean(0), dst - dst.mean(0)
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, 1.0 if np.linalg.det(dst_c.T @ src_c) >= 0 else -1.0])
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_c.var(0).sum()
    return np.hstack([scale * rotation, (dst.mean(0) - scale * rotation @ src.mean(0))[:, None]])


def five_point_reference(bfm_dir):
    """similarity_Lm3D_all.mat → 5×3 (eyes: mean of 37/40 and 43/46, nose 31, mouth 49 and 55; 1-based)."""
    lm = loadmat(str(bfm_dir / "similarity_Lm3D_all.mat"))["lm"].astype(np.float64)
    return np.stack([lm[[36, 39]].mean(0), lm[[42, 45]].mean(0), lm[30], lm[48], lm[54]])


def d3dfr_matrix(crop_pts, lm3d):
    """The demo's 512 → 224 matrix: y flipped, least-squares affine camera of the 3D reference (scale s,
    translation t), s = 102 / s, resize by s and centre-crop 224, y flipped back, then Umeyama."""
    lm = crop_pts.astype(np.float64).copy()
    lm[:, 1] = 511 - lm[:, 1]
    a = np.zeros((10, 8))
    a[0::2, 0:3], a[0::2, 3], a[1::2, 4:7], a[1::2, 7] = lm3d, 1, lm3d, 1
    k = np.linalg.lstsq(a, lm.reshape(-1), rcond=None)[0]
    s = 102 / ((np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2)
    resized = int(512 * s)
    target = (lm - k[[3, 7]] + 256) * s - (resized / 2 - 112)
    target[:, 1] = 223 - target[:, 1]
    return umeyama(crop_pts, target)


def d3dfr_input(crop8, matrix):
    """Bilinear warp of the crop in [-1, 1] with zero padding (kornia's default), then × 0.5 + 0.5."""
    signed = (crop8[..., ::-1].astype(np.float64) - 127.5) / 127.5
    inverse = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[0:224, 0:224].astype(np.float64)
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    warped = np.stack([map_coordinates(signed[..., c], [sy, sx], order=1, mode="grid-constant", cval=0.0)
                       for c in range(3)])
    return warped * 0.5 + 0.5


def demo_mask():
    mask = np.zeros((512, 512), np.float32)
    cv2.rectangle(mask, (26, 26), (512 - 26, 512 - 26), (1, 1, 1), -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (101, 101), 4)
    return cv2.GaussianBlur(mask, (101, 101), 4)


def network(restorer, crop8, crop_pts):
    """The SGPN networks on a uint8 BGR crop → restored RGB [3,512,512] in [-1, 1] (float32 numpy)."""
    lq = (torch.from_numpy(crop8[..., ::-1].copy()).permute(2, 0, 1).float() - 127.5) / 127.5
    out = restorer.model.restore(lq[None], torch.tensor(crop_pts, dtype=torch.float32)[None])
    return out.restored[0].numpy(), lq.numpy()


def truncate_bgr(signed_rgb):
    return (signed_rgb * 127.5 + 127.5).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]


def transparent_cubic_paste(img, face, tfm):
    """cv2.warpAffine(face, tfm, dst=img, INTER_CUBIC | WARP_INVERSE_MAP, BORDER_TRANSPARENT) as OpenCV 4.x
    does it: source positions in 1/32 px; a pixel whose integer source position is off the crop keeps its
    value, the others get the bicubic value with reflected taps at the crop edge."""
    h, w = img.shape[:2]
    values = cv2.warpAffine(face, tfm, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT_101)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    sx = np.floor(np.round((tfm[0, 0] * xs + tfm[0, 1] * ys + tfm[0, 2]) * 32) / 32)
    sy = np.floor(np.round((tfm[1, 0] * xs + tfm[1, 1] * ys + tfm[1, 2]) * 32) / 32)
    keep = (sx >= 0) & (sx <= face.shape[1] - 1) & (sy >= 0) & (sy <= face.shape[0] - 1)
    out = img.copy()
    out[keep] = values[keep]
    return out


def demo_whole_photo(restorer, image, landmarks, lm3d):
    """Faces one by one, each cropped from the image with the earlier faces pasted in."""
    img, mask = image.copy(), demo_mask()
    crops, inputs, faces = [], [], []
    for pts in landmarks:
        tfm = umeyama(pts, REFERENCE_512)
        crop_pts = np.hstack([pts, np.ones((5, 1))]) @ tfm.T
        crop = cv2.warpAffine(img, tfm, (512, 512), flags=cv2.INTER_CUBIC)       # black outside the photo
        restored, lq = network(restorer, crop, crop_pts)
        face = truncate_bgr(restored * mask + lq * (1 - mask))
        img = transparent_cubic_paste(img, face, tfm)
        crops.append(crop)
        inputs.append(d3dfr_input(crop, d3dfr_matrix(crop_pts, lm3d)))
        faces.append(face)
    return crops, inputs, faces, img


@pytest.fixture(scope="module")
def official(tiny_sgpn, retinaface_dir):
    restorer = FaceRestorer(tiny_sgpn, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir, fidelity="official")
    seen = []
    hook = restorer.model.shape_prior.d3dfr.register_forward_pre_hook(lambda module, args: seen.append(args[0][0]))
    yield restorer, seen
    hook.remove()


def grey_levels(a, b):
    return np.abs(a.astype(np.float64) - b.astype(np.float64))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["codeformer_01.jpg", "sgpn_0525.jpg"])
def test_whole_photo_matches_the_demo_steps(official, faces_dir, bfm_dir, name):
    restorer, seen = official
    image = read_image(faces_dir / "real_lq_whole" / name)
    seen.clear()
    result = restorer.restore(image)
    got_inputs = [x.numpy() for x in seen]
    crops, inputs, faces, pasted = demo_whole_photo(restorer, image, result.landmarks, five_point_reference(bfm_dir))
    assert len(result.cropped_faces) == len(crops) >= 3
    for i in range(len(crops)):
        assert grey_levels(result.cropped_faces[i], crops[i]).max() <= 1, f"crop {i}"
        assert grey_levels(got_inputs[i] * 255, inputs[i] * 255).max() <= 1, f"D3DFR input {i}"
        assert grey_levels(result.restored_faces[i], faces[i]).max() <= 1, f"restored crop {i}"
    assert grey_levels(result.restored_image, pasted).max() <= 1
    if name == "codeformer_01.jpg":   # small group photo: crops leave the photo and overlap each other
        assert max((c == 0).all(-1).mean() for c in result.cropped_faces) > 0.02
        first = cv2.warpAffine(image, result.affine_matrices[-1].astype(np.float64), (512, 512), flags=cv2.INTER_CUBIC)
        assert grey_levels(first, result.cropped_faces[-1]).max() > 10       # the last face saw earlier pastes


@pytest.mark.slow
def test_aligned_crop_matches_the_demo_steps(official, faces_dir, bfm_dir):
    restorer, seen = official
    image = read_image(faces_dir / "real_lq_cropped" / "codeformer_0368.png")   # tilted: window leaves the crop
    seen.clear()
    result = restorer.restore(image, aligned=True)
    got_input = seen[0].numpy()
    crop = cv2.resize(image, (512, 512))
    pts = result.landmarks[0] * [512 / image.shape[1], 512 / image.shape[0]]
    restored, _ = network(restorer, crop, pts)
    expected_input = d3dfr_input(crop, d3dfr_matrix(pts, five_point_reference(bfm_dir)))
    assert (np.abs(expected_input - 0.5) < 1e-9).all(0).mean() > 0.05            # grey outside the crop
    assert grey_levels(got_input * 255, expected_input * 255).max() <= 1
    assert grey_levels(result.cropped_faces[0], crop).max() <= 1
    assert grey_levels(result.restored_faces[0], truncate_bgr(restored)).max() <= 1
    assert grey_levels(result.restored_image, truncate_bgr(restored)).max() <= 1


def test_official_paste_mask_and_truncation():
    from sgpn_arch.pipeline import official_pipeline

    mask = official_pipeline.paste_mask(512)
    np.testing.assert_array_equal(mask, demo_mask())
    assert mask[256, 256] == pytest.approx(1, abs=1e-6) and mask[0, 0] < 1e-3 and 0.4 < mask[256, 26] < 0.6
    signed = torch.tensor([[[[0.99], [-1.0], [0.0]]]]).expand(1, 3, 3, 1)
    assert official_pipeline.to_uint8(signed)[:, 0, 0].tolist() == [253, 0, 127]   # truncated, not rounded


def test_cli_match_official_builds_an_official_restorer(tiny_sgpn, retinaface_dir):
    import argparse

    from sgpn_arch.cli import add_restore_arguments, build_restorer

    parser = argparse.ArgumentParser()
    add_restore_arguments(parser)
    common = ["-i", "in", "-o", "out", "--upscale", "1", "--device", "cpu", "--detector", "retinaface_mobile0.25",
              "--detector-dir", str(retinaface_dir)]
    assert build_restorer(parser.parse_args(common + ["--match-official"]), tiny_sgpn).fidelity == "official"
    assert build_restorer(parser.parse_args(common), tiny_sgpn).fidelity == "default"


def test_official_paste_leaves_pixels_off_the_crop_untouched():
    # OpenCV 5's cubic BORDER_TRANSPARENT path writes pixels up to ~10 px off the crop (opencv/opencv#29412)
    from sgpn_arch.pipeline import official_pipeline

    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    photo = rng.integers(0, 256, (700, 800, 3), dtype=np.uint8)
    angle, scale = 0.3, 1.52
    tfm = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -300.0],
                    [scale * np.sin(angle), scale * np.cos(angle), -500.0]])
    pasted = official_pipeline.paste_face(photo.copy(), face, tfm)
    np.testing.assert_array_equal(pasted, transparent_cubic_paste(photo, face, tfm))
    xs, ys = np.meshgrid(np.arange(800), np.arange(700))
    sx, sy = tfm[0, 0] * xs + tfm[0, 1] * ys + tfm[0, 2], tfm[1, 0] * xs + tfm[1, 1] * ys + tfm[1, 2]
    off = (sx < -0.1) | (sy < -0.1) | (sx > 512.1) | (sy > 512.1)
    assert off.mean() > 0.3 and (~off).mean() > 0.2
    np.testing.assert_array_equal(pasted[off], photo[off])


def test_official_mode_options_with_an_identity_network(faces_dir, retinaface_dir):
    image = read_image(faces_dir / "real_lq_whole" / "sgpn_test3.jpg")
    kwargs = dict(device="cpu", detector="retinaface_mobile0.25", detector_rootpath=retinaface_dir, fidelity="official")
    one = FaceRestorer(IdentitySGPN(), upscale=1, **kwargs).restore(image)
    assert len(one.restored_faces) == 2 and one.restored_image.shape == image.shape
    far = one.face_mask == 0
    assert far.mean() > 0.3 and np.abs(one.restored_image[far].astype(int) - image[far]).max() <= 1
    assert np.abs(one.restored_image.astype(float) - image).mean() < 0.5     # bicubic round trip, truncated
    two = FaceRestorer(IdentitySGPN(), upscale=2, **kwargs).restore(image)
    assert two.restored_image.shape == (2 * image.shape[0], 2 * image.shape[1], 3)
    assert two.face_mask.shape == two.restored_image.shape[:2]
    faces_only = FaceRestorer(IdentitySGPN(), upscale=1, **kwargs).restore(image, paste_back=False)
    assert faces_only.restored_image is None
    for a, b in zip(faces_only.restored_faces, one.restored_faces):
        np.testing.assert_array_equal(a, b)
