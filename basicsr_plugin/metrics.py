"""Register the face-restoration metrics BasicSR lacks in its ``METRIC_REGISTRY``.

BasicSR already registers ``calculate_psnr``, ``calculate_ssim`` and ``calculate_niqe`` (all called
with ``img``/``img2`` as HWC BGR arrays). This module adds, with the same calling convention:

- ``calculate_lpips``: LPIPS (VGG) distance, lower is better;
- ``calculate_identity_deg``: ArcFace identity angle in degrees, lower is better;
- ``calculate_lmd``: 98-point (WFLW) landmark distance in pixels at 512, lower is better;
- ``calculate_fid_ffhq``: FID against FFHQ Inception statistics. FID is a set-level metric, so it
  takes ``imgs`` (a list of HWC BGR images or a folder) instead of one ``img``; the ``FaceBenchModel``
  of :mod:`basicsr_plugin.bench_model` collects the restored images and calls it once per dataset.

Networks are built once per (weights, device) and cached by :mod:`sgpn_arch.metrics`; their weights
come from the weights zoo (``weights`` option: a local path, else the zoo's override/download rules).
"""

from . import compat  # noqa: F401  (must run before the first basicsr import)

from basicsr.utils.registry import METRIC_REGISTRY  # noqa: E402

from sgpn_arch import metrics as _metrics  # noqa: E402


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, crop_border=0, weights=None, backbone_weights=None, device=None, **kwargs):
    """LPIPS (VGG) between two HWC BGR images (uint8 or float in [0, 255])."""
    return _metrics.calculate_lpips(img, img2, crop_border=crop_border, weights=weights,
                                    backbone_weights=backbone_weights, device=device)


@METRIC_REGISTRY.register()
def calculate_identity_deg(img, img2, weights=None, device=None, **kwargs):
    """Identity angle (degrees) between the ArcFace embeddings of two aligned HWC BGR faces."""
    return _metrics.calculate_identity_deg(img, img2, weights=weights, device=device)


@METRIC_REGISTRY.register()
def calculate_lmd(img, img2, weights=None, device=None, **kwargs):
    """Mean 98-landmark (WFLW) distance (pixels at 512) between two aligned HWC BGR faces."""
    return _metrics.calculate_lmd(img, img2, weights=weights, device=device)


@METRIC_REGISTRY.register()
def calculate_fid_ffhq(imgs, stats=None, weights=None, device=None, batch_size=8, **kwargs):
    """FID of a set of HWC BGR images (list or folder) against the FFHQ Inception statistics."""
    return _metrics.calculate_fid_ffhq(imgs, stats=stats, weights=weights, device=device,
                                       batch_size=batch_size)
