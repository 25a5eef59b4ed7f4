"""Metric values checked against independent computations on fixed inputs.

PSNR/SSIM against hand-computed cases and a plain numpy SSIM; NIQE against BasicSR's own; LPIPS,
Deg and LMD against their definitions re-implemented here, with randomly initialised networks
written to temporary files; FID's Fréchet distance against closed forms and its feature pipeline
against torchvision's own Inception-v3 forward. Nothing here touches the network: every weight
is a generated file, ``SGPN_WEIGHTS_DIR`` points to an empty temporary folder and the zoo's
download functions are replaced by ones that fail the test.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sgpn_arch.eval import metrics as M
from sgpn_arch.nets.arcface import ArcFaceResNet18, to_arcface_input
from sgpn_arch.zoo import weights as W
from sgpn_arch.zoo.checkpoints import CheckpointError

# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def offline_zoo(tmp_path, monkeypatch):
    """Empty weights folder, no weight env overrides, downloads forbidden, fresh metric networks."""
    for key in list(os.environ):
        if key.startswith("SGPN_WEIGHTS_") or key == "SGPN_HF_REPO":
            monkeypatch.delenv(key)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setenv("SGPN_WEIGHTS_DIR", str(zoo))
    attempts = []

    def no_download(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(W, "_download_url", no_download)
    monkeypatch.setattr(W, "_download_hub", no_download)
    M.clear_cache()
    yield zoo
    M.clear_cache()
    assert not attempts, f"a metric tried to download weights: {attempts}"


def smooth_image(seed: int, size: int = 64) -> np.ndarray:
    """A fixed uint8 HWC BGR image: low-frequency colour field plus mild texture."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def to_unit_rgb(img: np.ndarray, dtype=np.float32) -> torch.Tensor:
    """HWC BGR [0,255] → [1,3,H,W] RGB in [-1,1] (written here, not the project's helper)."""
    rgb = np.asarray(img, dtype=np.float64)[..., [2, 1, 0]] / 255.0 * 2.0 - 1.0
    return torch.from_numpy(rgb.astype(dtype).transpose(2, 0, 1).copy())[None]


# --------------------------------------------------------------------------------------------
# PSNR / SSIM


def test_psnr_constant_offset_and_identity():
    base = smooth_image(0).clip(20, 200)
    for d in (1, 3, 17):
        other = base + np.uint8(d)
        assert M.calculate_psnr(base, other) == pytest.approx(10 * math.log10(255.0**2 / d**2), abs=1e-9)
    assert M.calculate_psnr(base, base.copy()) == math.inf
    # one saturated channel value out of 4*4*3: MSE = 255²/48 → PSNR = 10·log10(48)
    zeros = np.zeros((4, 4, 3), np.uint8)
    one = zeros.copy()
    one[1, 2, 0] = 255
    assert M.calculate_psnr(zeros, one) == pytest.approx(10 * math.log10(48.0), abs=1e-9)


def test_psnr_y_channel_and_crop_border():
    base = smooth_image(1).clip(20, 200)
    d = 7
    # BT.601 luma on [0,255]: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 → ΔY = d·219/255
    dy = d * (65.481 + 128.553 + 24.966) / 255.0
    expected = 10 * math.log10(255.0**2 / dy**2)
    assert M.calculate_psnr(base, base + np.uint8(d), test_y_channel=True) == pytest.approx(expected, abs=1e-3)
    framed = base.copy()
    framed[:2] = 0
    framed[:, -2:] = 255
    assert M.calculate_psnr(base, framed, crop_border=2) == math.inf
    assert math.isfinite(M.calculate_psnr(base, framed, crop_border=1))


def numpy_ssim(img: np.ndarray, img2: np.ndarray) -> float:
    """Wang et al. SSIM: 11×11 Gaussian window σ=1.5, valid region, C1/C2 for [0,255], channel mean."""
    ax = np.arange(11) - 5.0
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def filt(x):
        return np.einsum("ijkl,kl->ij", np.lib.stride_tricks.sliding_window_view(x, (11, 11)), window)

    values = []
    for c in range(img.shape[2]):
        x, y = img[..., c].astype(np.float64), img2[..., c].astype(np.float64)
        mx, my = filt(x), filt(y)
        vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(smap.mean())
    return float(np.mean(values))


def test_ssim_hand_computed_cases():
    img = smooth_image(2)
    assert M.calculate_ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)
    # constant images a, b: σ terms vanish → SSIM = (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 100.0, 130.0, (0.01 * 255) ** 2
    flat_a, flat_b = np.full((32, 32, 3), a, np.uint8), np.full((32, 32, 3), b, np.uint8)
    assert M.calculate_ssim(flat_a, flat_b) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)


def test_ssim_matches_independent_implementations():
    img = smooth_image(3)
    noisy = np.clip(img + np.random.default_rng(4).normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    value = M.calculate_ssim(img, noisy)
    assert 0.2 < value < 0.99
    assert value == pytest.approx(numpy_ssim(img, noisy), abs=1e-6)
    skm = pytest.importorskip("skimage.metrics")
    reference = skm.structural_similarity(img, noisy, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255, channel_axis=2)
    assert value == pytest.approx(reference, abs=1e-4)
    # crop_border drops the border before the SSIM window
    assert M.calculate_ssim(img, noisy, crop_border=4) == pytest.approx(numpy_ssim(img[4:-4, 4:-4], noisy[4:-4, 4:-4]),
                                                                        abs=1e-6)


# --------------------------------------------------------------------------------------------
# NIQE


@pytest.fixture(scope="module")
def face_256(faces_dir):
    img = cv2.imread(str(sorted((faces_dir / "hq_aligned").glob("*.png"))[0]), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)


def test_niqe_equals_basicsr_and_rises_with_noise(face_256):
    import basicsr_plugin.compat  # noqa: F401  (before basicsr)
    from basicsr.metrics import calculate_niqe as basicsr_niqe

    value = M.calculate_niqe(face_256)
    assert value == pytest.approx(float(basicsr_niqe(face_256, 0, input_order="HWC", convert_to="y")), rel=1e-9)
    assert math.isfinite(value)
    noisy = np.clip(face_256 + np.random.default_rng(5).normal(0, 25, face_256.shape), 0, 255).astype(np.uint8)
    assert M.calculate_niqe(noisy) > value + 1.0


# --------------------------------------------------------------------------------------------
# LPIPS (VGG)

LPIPS_SHIFT = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
LPIPS_SCALE = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16.features
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


@pytest.fixture(scope="module")
def lpips_files(module_mktemp):
    """Random VGG-16 features (torchvision key layout) and random positive calibration layers."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(10)
    features = make_layers(cfgs["D"], batch_norm=False)
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(layer.bias, 0.0, 0.05)
    lins = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}
    folder = module_mktemp("lpips")
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, folder / "vgg16.pth")
    torch.save(lins, folder / "vgg.pth")
    return {"backbone": folder / "vgg16.pth", "lins": folder / "vgg.pth",
            "features": features.double().eval(),
            "lin_weights": [lins[f"lin{k}.model.1.weight"].double() for k in range(5)]}


def reference_lpips(files, img, img2) -> float:
    """LPIPS v0.1 by its definition, in float64."""
    taps_per_image = []
    with torch.no_grad():
        for x in (to_unit_rgb(img, np.float64), to_unit_rgb(img2, np.float64)):
            h = (x - LPIPS_SHIFT) / LPIPS_SCALE
            taps = []
            for i, layer in enumerate(files["features"]):
                h = layer(h)
                if i in VGG_TAPS:
                    taps.append(h.clone())
                if i == VGG_TAPS[-1]:
                    break
            taps_per_image.append(taps)
        total = 0.0
        for f0, f1, w in zip(*taps_per_image, files["lin_weights"]):
            n0 = f0 / (f0.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            n1 = f1 / (f1.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += float(((n0 - n1) ** 2 * w).sum(1).mean())
    return total


def test_lpips_matches_definition(lpips_files):
    img, img2 = smooth_image(20, 48), smooth_image(21, 48)
    kwargs = dict(weights=lpips_files["lins"], backbone_weights=lpips_files["backbone"], device="cpu")
    value = M.calculate_lpips(img, img2, **kwargs)
    expected = reference_lpips(lpips_files, img, img2)
    assert expected > 1e-3
    assert value == pytest.approx(expected, rel=1e-4)
    assert M.calculate_lpips(img, img.copy(), **kwargs) == pytest.approx(0.0, abs=1e-7)
    assert M.calculate_lpips(img2, img, **kwargs) == pytest.approx(value, rel=1e-5)
    # crop_border: the distance of the cropped images; float input in [0,255] behaves like uint8
    cropped = M.calculate_lpips(img.astype(np.float32), img2.astype(np.float64), crop_border=8, **kwargs)
    assert cropped == pytest.approx(reference_lpips(lpips_files, img[8:-8, 8:-8], img2[8:-8, 8:-8]), rel=1e-4)
    with pytest.raises(ValueError):
        M.calculate_lpips(img, img2[:32], **kwargs)


# --------------------------------------------------------------------------------------------
# Identity angle (Deg)


@pytest.fixture(scope="module")
def arcface_file(module_mktemp):
    torch.manual_seed(30)
    model = ArcFaceResNet18()
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)
    path = module_mktemp("arcface") / "arcface_random.pth"
    torch.save(model.state_dict(), path)
    return path


def reference_deg(weights, img, img2) -> float:
    model = ArcFaceResNet18()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    with torch.no_grad():
        emb = model.eval()(to_arcface_input(torch.cat([to_unit_rgb(img), to_unit_rgb(img2)]))).double().numpy()
    cos = emb[0] @ emb[1] / (np.linalg.norm(emb[0]) * np.linalg.norm(emb[1]))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def test_arcface_input_is_luma_at_128():
    bgr = np.zeros((40, 40, 3), np.uint8)
    bgr[...] = (200, 50, 10)  # B, G, R
    grey = to_arcface_input(to_unit_rgb(bgr))
    assert grey.shape == (1, 1, 128, 128)
    r, g, b = (np.array([10.0, 50.0, 200.0]) / 255 * 2 - 1)
    assert torch.allclose(grey, torch.full_like(grey, 0.299 * r + 0.587 * g + 0.114 * b), atol=1e-6)


def test_identity_deg_matches_embedding_angle(arcface_file):
    img, img2 = smooth_image(31, 96), smooth_image(32, 96)
    deg = M.calculate_identity_deg(img, img2, weights=arcface_file, device="cpu")
    expected = reference_deg(arcface_file, img, img2)
    assert expected > 1.0
    assert deg == pytest.approx(expected, abs=1e-3)
    assert M.calculate_identity_deg(img, img.copy(), weights=arcface_file, device="cpu") == pytest.approx(0.0, abs=1e-3)
    assert M.calculate_identity_deg(img2, img, weights=arcface_file, device="cpu") == pytest.approx(deg, abs=1e-4)


def test_embedding_angle_known_vectors():
    e1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 2.0], [1.0, 0.0]])
    e2 = torch.tensor([[0.0, 3.0], [-1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    assert M.embedding_angle(e1, e2).tolist() == pytest.approx([90.0, 180.0, 45.0, 0.0], abs=1e-6)


def test_identity_deg_weights_from_zoo_folder(arcface_file, offline_zoo):
    img, img2 = smooth_image(33, 64), smooth_image(34, 64)
    explicit = M.calculate_identity_deg(img, img2, weights=arcface_file, device="cpu")
    (offline_zoo / "arcface_resnet18.pth").write_bytes(arcface_file.read_bytes())
    M.clear_cache()
    assert M.calculate_identity_deg(img, img2, device="cpu") == pytest.approx(explicit, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Landmark distance (LMD)


def numpy_decode(heatmaps: np.ndarray, image_size: int) -> np.ndarray:
    """facexlib's rule: arg-max, a quarter pixel towards the higher neighbour (missing neighbour =
    the peak itself at the border), plus half a pixel, scaled to the image."""
    b, n, h, w = heatmaps.shape
    out = np.zeros((b, n, 2))
    for i in range(b):
        for j in range(n):
            hm = heatmaps[i, j]
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            left, right = hm[y, max(x - 1, 0)], hm[y, min(x + 1, w - 1)]
            up, down = hm[max(y - 1, 0), x], hm[min(y + 1, h - 1), x]
            out[i, j] = (x + 0.25 * np.sign(right - left) + 0.5) * image_size / w, \
                        (y + 0.25 * np.sign(down - up) + 0.5) * image_size / h
    return out


def test_decode_heatmaps_known_peaks():
    hm = torch.zeros(2, 3, 64, 64)
    hm[0, 0, 20, 10] = 1.0                      # isolated peak: no shift
    hm[0, 1, 30, 40] = 1.0
    hm[0, 1, 30, 41] = 0.5                      # right neighbour higher → +¼ in x
    hm[0, 1, 29, 40] = 0.3                      # upper neighbour higher → −¼ in y
    hm[0, 2, 5, 50] = 1.0
    hm[0, 2, 5, 49] = 0.2                       # left higher → −¼ in x
    hm[0, 2, 6, 50] = 0.2                       # down higher → +¼ in y
    # border peaks: the missing neighbour counts as the peak's own value (replicate padding)
    hm[1, 0, 63, 63] = 1.0                      # corner: outer neighbours higher than inner → +¼, +¼
    hm[1, 1, 0, 0] = 1.0
    hm[1, 1, 0, 1] = 0.9                        # inner neighbours lower → −¼, −¼
    hm[1, 2, 12, 33] = 1.0
    hm[1, 2, 12, 32] = hm[1, 2, 12, 34] = 0.7   # equal neighbours: no shift
    pts = M.decode_heatmaps(hm, 64)
    assert pts.dtype == torch.float64 and pts.shape == (2, 3, 2)
    expected = [[[10.5, 20.5], [40.75, 30.25], [50.25, 5.75]], [[63.75, 63.75], [0.25, 0.25], [33.5, 12.5]]]
    np.testing.assert_allclose(pts.numpy(), np.array(expected))
    np.testing.assert_allclose(M.decode_heatmaps(hm, 512).numpy(), np.array(expected) * 8)
    rand = torch.rand(2, 5, 64, 64, generator=torch.Generator().manual_seed(40))
    np.testing.assert_allclose(M.decode_heatmaps(rand, 256).numpy(), numpy_decode(rand.numpy(), 256))


def test_landmark_distance_known_points():
    a = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0], [4.0, 5.0]])
    assert M.landmark_distance(a, b) == pytest.approx((0 + 5 + 5) / 3)
    assert M.landmark_distance(a, a) == 0.0


@pytest.fixture(scope="module")
def fan_file(module_mktemp):
    from facexlib.alignment.awing_arch import FAN

    torch.manual_seed(50)
    model = FAN(num_modules=4, num_landmarks=98, device="cpu")
    path = module_mktemp("fan") / "fan_random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
def test_lmd_matches_decoded_fan_heatmaps(fan_file, monkeypatch):
    """LMD from the FAN's own heatmaps (recorded at its forward), decoded and averaged here."""
    import basicsr_plugin  # noqa: F401  (registers the BasicSR wrappers)
    from basicsr.utils.registry import METRIC_REGISTRY
    from facexlib.alignment.awing_arch import FAN

    calls = []
    original_forward = FAN.forward

    def recording_forward(self, x):
        out = original_forward(self, x)
        calls.append((self, x.detach().clone(), out[0][-1].detach().clone()))
        return out

    monkeypatch.setattr(FAN, "forward", recording_forward)
    img, img2 = smooth_image(51, 256), smooth_image(52, 256)   # already at the FAN's input size
    value = M.calculate_lmd(img, img2, weights=fan_file, device="cpu")
    assert len(calls) == 2
    saved = torch.load(fan_file, map_location="cpu", weights_only=True)
    net = calls[0][0]
    assert not net.training and all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    points = []
    for (_, x, heatmaps), source in zip(calls, (img, img2)):
        rgb01 = torch.from_numpy(source[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy() / 255.0)[None]
        assert torch.allclose(x, rgb01, atol=1e-6)                      # RGB in [0, 1] at 256
        assert heatmaps.shape == (1, 99, 64, 64)                        # 98 landmarks + background map
        points.append(numpy_decode(heatmaps[:, :98].numpy(), 512)[0])  # coordinates at 512
    expected = float(np.linalg.norm(points[0] - points[1], axis=1).mean())
    assert expected > 0
    assert value == pytest.approx(expected, rel=1e-6)
    # an image against itself, through BasicSR's registry wrapper
    assert METRIC_REGISTRY.get("calculate_lmd")(img, img.copy(), weights=fan_file, device="cpu") == 0.0


# --------------------------------------------------------------------------------------------
# FID


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(60)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.2, 3.0, d), rng.uniform(0.2, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    assert M.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # full covariances: tr((Σ1 Σ2)^½) = tr((Σ1^½ Σ2 Σ1^½)^½), computed with symmetric eigendecompositions
    x, y = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = x @ x.T + np.eye(d), y @ y.T + 0.5 * np.eye(d)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner))
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert M.frechet_distance(mu1, s1, mu1.copy(), s1.copy()) == pytest.approx(0.0, abs=1e-7)


def test_load_fid_stats(tmp_path):
    rng = np.random.default_rng(61)
    mean, cov = rng.normal(size=2048).astype(np.float32), np.diag(rng.uniform(0.1, 1.0, 2048))
    torch.save({"mean": mean, "cov": cov}, tmp_path / "stats.pth")
    got_mean, got_cov = M.load_fid_stats(tmp_path / "stats.pth")
    assert got_mean.dtype == np.float64 and got_cov.dtype == np.float64
    np.testing.assert_array_equal(got_mean, mean.astype(np.float64))
    np.testing.assert_array_equal(got_cov, cov)
    torch.save({"mean": mean}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="mean"):
        M.load_fid_stats(tmp_path / "bad.pth")


@pytest.fixture(scope="module")
def fid_files(module_mktemp):
    torch.manual_seed(70)
    model = M.FIDInception()
    folder = module_mktemp("fid")
    torch.save(model.net.state_dict(), folder / "inception_random.pth")
    rng = np.random.default_rng(71)
    torch.save({"mean": rng.normal(size=2048), "cov": np.diag(rng.uniform(0.1, 1.0, 2048))}, folder / "stats.pth")
    return {"weights": folder / "inception_random.pth", "stats": folder / "stats.pth"}


def reference_fid_features(weights, imgs) -> np.ndarray:
    """pytorch-fid's pool3 features through torchvision's own ``Inception3.forward`` (fc removed)."""
    net = M.FIDInception().net
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.fc = nn.Identity()
    net.eval()
    with torch.no_grad():
        x = torch.cat([to_unit_rgb(img) for img in imgs])
        x = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return net(x).double().numpy()


@pytest.fixture
def fid_images():
    return [smooth_image(80 + i, 48) for i in range(2)]


def test_fid_pipeline_features_and_stats(fid_files, fid_images, tmp_path, monkeypatch):
    """Features, their mean/covariance and the reference statistics handed to the Fréchet distance.

    The distance itself (a 2048×2048 matrix square root, 12-45 s on two shared cores) is replaced by
    a recorder here; :func:`test_frechet_distance_closed_forms` checks it on small dimensions.
    """
    import sgpn_arch.eval.metrics.fid as fid_module

    captured = []
    monkeypatch.setattr(fid_module, "frechet_distance", lambda *args: captured.append(args) or 123.5)
    kwargs = dict(stats=fid_files["stats"], weights=fid_files["weights"], device="cpu")
    assert M.calculate_fid_ffhq(fid_images, batch_size=1, **kwargs) == 123.5
    feats = reference_fid_features(fid_files["weights"], fid_images)
    assert feats.shape == (2, 2048) and np.abs(feats[0] - feats[1]).max() > 0
    mu1, sigma1, mu2, sigma2 = captured[0]
    scale = np.abs(feats).max()
    np.testing.assert_allclose(mu1, feats.mean(0), rtol=1e-4, atol=1e-6 * scale)
    centred = feats - feats.mean(0)
    np.testing.assert_allclose(sigma1, centred.T @ centred / (len(feats) - 1), rtol=1e-3, atol=1e-5 * scale**2)
    real = torch.load(fid_files["stats"], weights_only=False)
    np.testing.assert_array_equal(mu2, real["mean"])
    np.testing.assert_array_equal(sigma2, real["cov"])
    with pytest.raises(ValueError, match="at least 2"):
        M.calculate_fid_ffhq(fid_images[:1], **kwargs)

    # a folder: its image files, sorted by name, other files skipped
    seen = []
    monkeypatch.setattr(fid_module, "inception_features",
                        lambda imgs, model, batch_size: seen.append(list(imgs)) or feats)
    for i, img in enumerate(reversed(fid_images)):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), img)
    (tmp_path / "notes.txt").write_text("not an image")
    assert M.calculate_fid_ffhq(tmp_path, **kwargs) == 123.5
    assert len(seen[0]) == 2 and all(np.array_equal(a, b) for a, b in zip(seen[0], reversed(fid_images)))


# --------------------------------------------------------------------------------------------
# BasicSR registry wrappers


def test_registry_wrappers_equal_direct_functions(lpips_files, arcface_file, face_256):
    import basicsr_plugin  # noqa: F401  (registers the wrappers)
    from basicsr.utils.registry import METRIC_REGISTRY

    img, img2 = smooth_image(90), smooth_image(91)
    assert METRIC_REGISTRY.get("calculate_psnr")(img, img2, crop_border=0) == pytest.approx(M.calculate_psnr(img, img2))
    assert METRIC_REGISTRY.get("calculate_ssim")(img, img2, crop_border=0) == pytest.approx(M.calculate_ssim(img, img2))
    assert METRIC_REGISTRY.get("calculate_niqe")(face_256, crop_border=0) == pytest.approx(M.calculate_niqe(face_256))
    lp = dict(weights=lpips_files["lins"], backbone_weights=lpips_files["backbone"], device="cpu")
    assert METRIC_REGISTRY.get("calculate_lpips")(img, img2, crop_border=2, better="lower", **lp) == \
        pytest.approx(M.calculate_lpips(img, img2, crop_border=2, **lp), rel=1e-6)
    deg = METRIC_REGISTRY.get("calculate_identity_deg")(img, img2, weights=arcface_file, device="cpu", better="lower")
    assert deg == pytest.approx(M.calculate_identity_deg(img, img2, weights=arcface_file, device="cpu"), abs=1e-6)


def test_registry_lmd_and_fid_delegate(monkeypatch):
    """The network-heavy wrappers pass every option through and return the direct function's value."""
    import basicsr_plugin  # noqa: F401
    from basicsr.utils.registry import METRIC_REGISTRY

    calls = []
    monkeypatch.setattr(M, "calculate_lmd", lambda *a, **k: calls.append(("lmd", a, k)) or 1.25)
    monkeypatch.setattr(M, "calculate_fid_ffhq", lambda *a, **k: calls.append(("fid", a, k)) or 7.5)
    img, img2, imgs = smooth_image(92, 16), smooth_image(93, 16), [smooth_image(94, 16)] * 2
    assert METRIC_REGISTRY.get("calculate_lmd")(img, img2, weights="fan.pth", device="cpu", better="lower") == 1.25
    assert METRIC_REGISTRY.get("calculate_fid_ffhq")(imgs, stats="s.pth", weights="i.pth", device="cpu",
                                                     batch_size=3, better="lower") == 7.5
    (_, lmd_args, lmd_kwargs), (_, fid_args, fid_kwargs) = calls
    assert lmd_args[0] is img and lmd_args[1] is img2 and lmd_kwargs == dict(weights="fan.pth", device="cpu")
    assert fid_args[0] is imgs and fid_kwargs == dict(stats="s.pth", weights="i.pth", device="cpu", batch_size=3)


# --------------------------------------------------------------------------------------------
# missing weights


@pytest.mark.parametrize("build, filename", [
    (lambda: M.build_arcface(None, allow_download=False), "arcface_resnet18.pth"),
    (lambda: M.build_fan(None, allow_download=False), "alignment_WFLW_4HG.pth"),
    (lambda: M.build_fid_inception(None, allow_download=False), "pt_inception-2015-12-05-6726825d.pth"),
    (lambda: M.load_fid_stats(None, allow_download=False), "inception_FFHQ_512.pth"),
    (lambda: M.load_fid_stats(None), "inception_FFHQ_512.pth"),  # no download source exists
], ids=["arcface", "fan", "inception", "stats", "stats-no-source"])
def test_missing_metric_weights_raise_weights_error(build, filename, offline_zoo):
    with pytest.raises(W.WeightsError) as info:
        build()
    assert filename in str(info.value) and str(offline_zoo) in str(info.value)


def test_missing_lpips_backbone_raises(lpips_files):
    with pytest.raises(W.WeightsError, match="vgg16-397923af.pth"):
        M.build_lpips(lpips_files["lins"], None, allow_download=False)


def test_missing_env_override_raises_naming_the_path(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "arcface.pth"
    monkeypatch.setenv("SGPN_WEIGHTS_ARCFACE", str(missing))
    img = smooth_image(95, 32)
    with pytest.raises(W.WeightsError) as info:
        M.calculate_identity_deg(img, img, device="cpu")
    assert str(missing) in str(info.value) and "SGPN_WEIGHTS_ARCFACE" in str(info.value)
