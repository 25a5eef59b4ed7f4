"""The restoration pipeline on real photos with the real facexlib detector, generated weights and a synthetic BFM."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sgpn_arch.pipeline.image_io import read_image
from sgpn_arch.pipeline.restorer import FaceRestorer, NoFaceError


@pytest.fixture(scope="module")
def restorer(tiny_sgpn, retinaface_dir):
    return FaceRestorer(tiny_sgpn, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                        detector_rootpath=retinaface_dir)


def _aligned_error(restorer, landmarks, affine):
    return np.abs(landmarks @ affine[:, :2].T + affine[:, 2] - restorer.template).mean()


def test_solvay_faces_found_and_aligned_to_sgpn_template(restorer, faces_dir):
    image = read_image(faces_dir / "real_lq_whole" / "gpen_Solvay_conference_1927.png")
    landmarks = restorer.detect(image[..., :3])
    assert len(landmarks) >= 25
    crops = [restorer.align(image[..., :3].astype(np.float32) / 255, lm) for lm in landmarks]
    errors = [_aligned_error(restorer, lm, affine) for lm, (_, affine) in zip(landmarks, crops)]
    assert np.median(errors) < 4.0 and max(errors) < 10.0     # pixels, in the 512 crop


def test_whole_photo_paste_back(restorer, faces_dir):
    image = read_image(faces_dir / "real_lq_whole" / "sgpn_0525.jpg")
    result = restorer.restore(image)
    assert len(result.restored_faces) == 3 and len(result.renders) == 3
    assert result.restored_image.shape == image.shape and result.restored_image.dtype == np.uint8
    far = cv2.dilate((result.face_mask > 0).astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert far.mean() > 0.2
    assert np.array_equal(result.restored_image[far], image[far])            # untouched far from faces
    assert not np.array_equal(result.restored_image[~far], image[~far])      # faces were replaced


def test_faces_one_per_forward_on_cpu_and_batched_alike(restorer, retinaface_dir, faces_dir):
    assert restorer.batch_size == 1   # batching is slower per face on CPU cores (benchmarks/RESULTS.md)
    batched = FaceRestorer(restorer.model, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                           detector_rootpath=retinaface_dir, batch_size=3)
    image = read_image(faces_dir / "real_lq_whole" / "sgpn_0525.jpg")
    one, three = restorer.restore(image), batched.restore(image)
    assert len(one.restored_faces) == len(three.restored_faces) == 3
    for a, b in zip(one.restored_faces, three.restored_faces):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_upscale_and_alpha_survive(tiny_sgpn, retinaface_dir, faces_dir):
    restorer = FaceRestorer(tiny_sgpn, device="cpu", upscale=2, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir)
    image = read_image(faces_dir / "real_lq_whole" / "codeformer_06.png")
    assert image.shape[2] == 4
    result = restorer.restore(image, only_center_face=True)
    h, w = image.shape[:2]
    assert result.restored_image.shape == (2 * h, 2 * w, 4) and len(result.restored_faces) == 1
    expected_alpha = cv2.resize(image[..., 3], (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(result.restored_image[..., 3], expected_alpha)


def test_geometric_round_trip(restorer):
    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.random((512, 512, 3)).astype(np.float32), (0, 0), 3)
    crop = (crop - crop.min()) / (crop.max() - crop.min())
    angle, scale, t = 0.2, 0.6, np.array([150.0, 90.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    crop_to_canvas = np.hstack([rot, t[:, None]]).astype(np.float32)
    canvas = cv2.warpAffine(crop, crop_to_canvas, (640, 560), flags=cv2.INTER_LINEAR, borderValue=(0.5, 0.5, 0.5))
    landmarks = restorer.template @ rot.T + t                       # where the template points went
    recovered, affine = restorer.align(canvas, landmarks)
    np.testing.assert_allclose(affine, cv2.invertAffineTransform(crop_to_canvas), atol=1e-3)
    inner = (slice(60, 450), slice(60, 450))
    assert np.abs(recovered[inner] - crop[inner]).mean() < 0.02  # resampled twice
    pasted, mask = restorer.paste_back(canvas, [crop], [affine])
    core = mask > 0.999
    assert core.sum() > 0.2 * (512 * scale) ** 2
    assert np.abs(pasted[core] - canvas[core]).mean() < 0.01
    assert np.array_equal(pasted[mask == 0], canvas[mask == 0])


def test_grey_16bit_and_exif_inputs(restorer, faces_dir, tmp_path):
    image = read_image(faces_dir / "real_lq_whole" / "sgpn_0022.jpg")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    out = restorer.restore(grey).restored_image
    assert out.shape == grey.shape and out.dtype == np.uint8
    deep = image.astype(np.uint16) * 257
    out16 = restorer.restore(deep).restored_image
    assert out16.dtype == np.uint16 and out16.shape == deep.shape
    # EXIF orientation 6: stored sideways, displayed upright
    rotated = np.ascontiguousarray(np.rot90(image[..., ::-1], 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rotated).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    upright = read_image(tmp_path / "sideways.jpg")
    assert upright.shape == image.shape
    assert len(restorer.restore(upright).restored_faces) == 1


def test_no_face_and_bad_options(restorer, tiny_sgpn):
    with pytest.raises(NoFaceError, match="no face"):
        restorer.restore(np.full((300, 300, 3), 128, np.uint8))
    with pytest.raises(ValueError, match="visibility"):
        restorer.restore(np.zeros((64, 64, 3), np.uint8), visibility=2)
    with pytest.raises(ValueError, match="upscale"):
        FaceRestorer(tiny_sgpn, upscale=0)
    with pytest.raises(ValueError, match="detector"):
        FaceRestorer(tiny_sgpn, detector="yolo")


def test_aligned_crop_mode(restorer, faces_dir):
    crop = read_image(faces_dir / "real_lq_cropped" / "sgpn_test.jpg")
    result = restorer.restore(crop, aligned=True)
    assert len(result.restored_faces) == 1 and result.restored_faces[0].shape == (512, 512, 3)
    assert result.restored_image.shape == crop.shape


def test_fidelity_is_validated(tiny_sgpn, retinaface_dir):
    kwargs = dict(device="cpu", detector="retinaface_mobile0.25", detector_rootpath=retinaface_dir)
    with pytest.raises(ValueError, match="unknown fidelity 'exact'.*'default', 'official'"):
        FaceRestorer(tiny_sgpn, fidelity="exact", **kwargs)
    with pytest.raises(ValueError, match="face parsing"):
        FaceRestorer(tiny_sgpn, fidelity="official", use_parse=True, **kwargs)
    assert FaceRestorer(tiny_sgpn, **kwargs).fidelity == "default"


def test_large_photo_is_detected_on_a_reduced_copy(restorer, tiny_sgpn, retinaface_dir, faces_dir):
    """Issue 18 item 1: at full resolution RetinaFace split a face larger than ~512 px into several partial faces
    (4 on this photo enlarged 6×); the landmarks found on the reduced copy are mapped back to the photo."""
    photo = read_image(faces_dir / "real_lq_whole" / "sgpn_0022.jpg")
    (small,) = restorer.detect(photo)
    large = cv2.resize(photo, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    found = restorer.detect(large)
    assert restorer.detection_size == 800 and len(found) == 1
    expected = (small + 0.5) * 6 - 0.5                     # pixel centres of the enlarged photo
    eyes = np.linalg.norm(expected[1] - expected[0])
    assert np.abs(found[0] - expected).max() < 0.2 * eyes  # the same face (landmarks move a little with scale)
    # the mapping back is exact: the same as detecting on the reduced copy by hand
    full_resolution = FaceRestorer(tiny_sgpn, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                                   detector_rootpath=retinaface_dir, detection_size=None)
    scale = 800 / min(large.shape[:2])
    reduced = cv2.resize(large, (round(large.shape[1] * scale), round(large.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    (by_hand,) = full_resolution.detect(reduced)
    np.testing.assert_allclose(found[0], (by_hand + 0.5) / scale - 0.5, atol=1e-3)


def test_tiny_faces_are_skipped_by_eye_distance(restorer, tiny_sgpn, retinaface_dir, faces_dir):
    """GFPGAN/CodeFormer skip faces whose eyes are under 5 px apart (nothing to restore there); so does SGPN now,
    with the threshold a setting."""
    photo = read_image(faces_dir / "real_lq_whole" / "gpen_Solvay_conference_1927.png")[..., :3]
    kwargs = dict(device="cpu", upscale=1, detector="retinaface_mobile0.25", detector_rootpath=retinaface_dir)
    everything = FaceRestorer(tiny_sgpn, min_eye_distance=0, **kwargs).detect(photo)
    large_only = FaceRestorer(tiny_sgpn, min_eye_distance=16, **kwargs).detect(photo)
    eyes = lambda faces: [np.linalg.norm(lm[1] - lm[0]) for lm in faces]  # noqa: E731
    assert restorer.min_eye_distance == 5
    assert 0 < len(large_only) == sum(d >= 16 for d in eyes(everything)) < len(everything)
    assert min(eyes(large_only)) >= 16


def test_ffhq_aligned_crops_are_reported(tiny_sgpn, retinaface_dir, faces_dir, caplog):
    """GFPGAN/CodeFormer crops follow the FFHQ template, whose face is ~12 % larger than SGPN's: say so."""
    restorer = FaceRestorer(tiny_sgpn, device="cpu", upscale=1, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir)
    ffhq_crop = read_image(faces_dir / "real_lq_cropped" / "codeformer_0342.png")
    result = restorer.restore(ffhq_crop, aligned=True)
    assert result.notes and "FFHQ template" in result.notes[0]
    assert "FFHQ template" in caplog.text
    photo = read_image(faces_dir / "real_lq_whole" / "sgpn_0022.jpg")
    sgpn_crop, _ = restorer.align(photo.astype(np.float32) / 255, restorer.detect(photo)[0])
    landmarks, note = restorer.detect_aligned((sgpn_crop * 255 + 0.5).astype(np.uint8))
    assert note is None and np.abs(landmarks - restorer.template).mean() < 10   # a crop on SGPN's own template


def test_grey_alpha_tiny_images_and_devices(restorer, faces_dir):
    """Issue 18 items 3, 4, 6: grey+alpha came out 4-channel colour; a 1×1 image and a wrong device gave
    messages that did not say what was wrong."""
    grey = cv2.cvtColor(read_image(faces_dir / "real_lq_whole" / "sgpn_0022.jpg"), cv2.COLOR_BGR2GRAY)
    alpha = np.full(grey.shape, 180, np.uint8)
    out = restorer.restore(np.dstack([grey, alpha])).restored_image
    assert out.shape == grey.shape + (2,) and np.array_equal(out[..., 1], alpha)
    with pytest.raises(ValueError, match="1×1 pixels: too small"):
        restorer.restore(np.zeros((1, 1, 3), np.uint8))
    from sgpn_arch.pipeline.restorer import pick_device

    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    with pytest.raises(ValueError, match="not available"):
        pick_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.slow
def test_real_esrgan_background(tiny_sgpn, retinaface_dir, faces_dir, tmp_path, monkeypatch):
    """--bg-upsampler realesrgan: the background comes from Real-ESRGAN x2plus (random weights here), the faces
    from SGPN; without the package the message says how to install it."""
    import basicsr_plugin.compat  # noqa: F401  (before realesrgan imports basicsr)

    pytest.importorskip("realesrgan")
    from basicsr.archs.rrdbnet_arch import RRDBNet

    from sgpn_arch.pipeline import bg_upsampler

    torch.manual_seed(0)
    network = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)
    torch.save({"params_ema": network.state_dict()}, tmp_path / "RealESRGAN_x2plus.pth")
    monkeypatch.setenv("SGPN_WEIGHTS_REALESRGAN_X2PLUS", str(tmp_path / "RealESRGAN_x2plus.pth"))
    upsampler = bg_upsampler.build_bg_upsampler("realesrgan", "cpu", outscale=2, allow_download=False)
    backgrounds = []

    def recorded(image01):
        backgrounds.append(upsampler(image01))
        return backgrounds[-1]

    restorer = FaceRestorer(tiny_sgpn, device="cpu", upscale=2, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir, bg_upsampler=recorded)
    photo = read_image(faces_dir / "real_lq_whole" / "codeformer_03.jpg")
    photo = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)   # 200×112: Real-ESRGAN is slow
    result = restorer.restore(photo)
    (background,) = backgrounds
    assert background.shape == (224, 400, 3) and background.dtype == np.float32
    lanczos = cv2.resize(photo, (400, 224), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(background * 255 - lanczos).mean() > 5         # random weights: clearly not a resize
    far = result.face_mask == 0
    assert result.restored_image.shape == (224, 400, 3) and far.mean() > 0.5
    expected = np.clip(background * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(result.restored_image[far].astype(int) - expected[far]).max() <= 1

    monkeypatch.setattr(bg_upsampler.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"sgpn-restore\[realesrgan\]"):
        bg_upsampler.build_bg_upsampler("realesrgan", "cpu")


def _paste_over_whole_canvas(restorer, image01, faces01, affines):
    """The paste-back blend computed over the whole (upscaled) canvas for every face: the reference."""
    canvas = restorer.upsample_background(image01)
    h, w = canvas.shape[:2]
    u = restorer.upscale
    for face, affine in zip(faces01, affines):
        inverse = cv2.invertAffineTransform(affine) * u
        inverse[:, 2] += 0.5 * (u - 1)
        warped = np.clip(cv2.warpAffine(face, inverse, (w, h), flags=cv2.INTER_CUBIC), 0, 1)
        region = cv2.warpAffine(np.ones(face.shape[:2], np.float32), inverse, (w, h), flags=cv2.INTER_LINEAR)
        edge = max(1, int(np.sqrt(region.sum())) // 20)
        core = cv2.erode((region > 0.999).astype(np.float32), np.ones((2 * edge + 1,) * 2, np.uint8))
        soft = cv2.GaussianBlur(core, (2 * edge + 1, 2 * edge + 1), 0) * np.clip(region, 0, 1)
        canvas = soft[..., None] * warped + (1 - soft[..., None]) * canvas
    return canvas


def test_paste_back_touches_only_each_face_window_and_equals_the_whole_canvas_blend(tiny_sgpn, retinaface_dir):
    restorer = FaceRestorer(tiny_sgpn, device="cpu", upscale=2, detector="retinaface_mobile0.25",
                            detector_rootpath=retinaface_dir, compile=False)
    rng = np.random.default_rng(0)

    def smooth(h, w):   # photo-like gradients (OpenCV quantises warp coordinates to 1/32 px: noise would show it)
        return cv2.resize(rng.uniform(0, 1, (h // 32, w // 32, 3)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC).clip(0, 1)

    image01 = smooth(900, 1400)
    faces = [smooth(512, 512) for _ in range(4)]
    affines = []
    for scale, angle, (cx, cy) in ((0.6, 0.1, (700, 450)), (0.5, -0.3, (60, 80)), (0.8, 0.5, (1380, 890)),
                                   (0.4, 0.0, (3000, 400))):          # centred, two over a corner, one outside
        rotation = cv2.getRotationMatrix2D((256, 256), np.degrees(angle), scale)
        rotation[:, 2] += (cx - 256, cy - 256)
        affines.append(cv2.invertAffineTransform(rotation))        # photo -> crop, as detection gives
    canvas, union = restorer.paste_back(image01, faces, affines)
    expected = _paste_over_whole_canvas(restorer, image01, faces, affines)
    np.testing.assert_allclose(canvas, expected, atol=1e-4)
    assert union.shape == canvas.shape[:2] and 0.01 < (union > 0.5).mean() < 0.5
