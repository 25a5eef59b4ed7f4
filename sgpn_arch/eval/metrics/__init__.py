"""Face-restoration metrics with the field's conventions, on BasicSR-style images (HWC BGR, [0, 255]).

| metric | function | better | network (zoo name) |
| --- | --- | --- | --- |
| PSNR, SSIM | :func:`calculate_psnr`, :func:`calculate_ssim` | higher | — (BasicSR) |
| LPIPS (VGG) | :func:`calculate_lpips` | lower | ``vgg16`` + ``lpips_vgg`` |
| NIQE | :func:`calculate_niqe` | lower | — (BasicSR pristine parameters) |
| FID vs FFHQ | :func:`calculate_fid_ffhq` (a set of images) | lower | ``inception_fid`` + ``fid_stats_ffhq512`` |
| Deg | :func:`calculate_identity_deg` | lower | ``arcface`` |
| LMD | :func:`calculate_lmd` | lower | ``awing_fan`` |

Every ``weights=`` argument is a local override; without it the weights zoo's rules apply
(environment variable, cache folder, download) and a missing file raises ``WeightsError``.
"""

from ._cache import clear_cache
from .fid import FIDInception, build_fid_inception, calculate_fid_ffhq, frechet_distance, inception_features, load_fid_stats
from .identity import build_arcface, calculate_identity_deg, embedding_angle
from .landmarks import build_fan, calculate_lmd, decode_heatmaps, landmark_distance, predict_landmarks
from .niqe import calculate_niqe
from .perceptual import build_lpips, calculate_lpips
from .psnr_ssim import calculate_psnr, calculate_ssim

FULL_REFERENCE = ("psnr", "ssim", "lpips", "deg", "lmd")
NO_REFERENCE = ("niqe",)
SET_LEVEL = ("fid",)
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "niqe": False, "fid": False, "deg": False, "lmd": False}

__all__ = [
    "FIDInception", "FULL_REFERENCE", "HIGHER_IS_BETTER", "NO_REFERENCE", "SET_LEVEL", "build_arcface", "build_fan",
    "build_fid_inception", "build_lpips", "calculate_fid_ffhq", "calculate_identity_deg", "calculate_lmd",
    "calculate_lpips", "calculate_niqe", "calculate_psnr", "calculate_ssim", "clear_cache", "decode_heatmaps",
    "embedding_angle", "frechet_distance", "inception_features", "landmark_distance", "load_fid_stats",
    "predict_landmarks",
]
