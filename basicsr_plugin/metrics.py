"""Register the face-restoration metrics BasicSR lacks in its ``METRIC_REGISTRY``.

BasicSR already registers ``calculate_psnr``, ``calculate_ssim`` and ``calculate_niqe`` (all called
with ``img``/``img2`` as HWC BGR arrays). This module adds, with the same calling convention:

- ``calculate_lpips``: LPIPS (VGG) distance, lower is better;
- ``calculate_identity_deg``: ArcFace identity angle in degrees, lower is better;
- ``calculate_lmd``: 98-point (WFLW) landmark distance in pixels at 512, lower is better;
- ``calculate_fid_ffhq``: FID against FFHQ Inception statistics. FID is a set-level metric, so it
  takes ``imgs`` (a list of HWC BGR images or a folder) instead of one ``img``; the ``FaceBenchModel``
  of :mod:`basicsr_plugin.bench_model` collects the restored images and calls it once per dataset.

Networks are built once per (weights, device) and cached by :mod:`sgpn_arch.eval.metrics`; their weights
come from the weights zoo (``weights`` option: a local path, else the zoo's override/download rules).

:class:`ValidationMetrics` is what :class:`~basicsr_plugin.models.SGPNModel` validates with: FID over the
whole set, NIQE at any size, no-reference metrics on LQ-only sets, and a metric whose weights are missing
skipped with a note instead of aborting the run.
"""

from __future__ import annotations

import logging

import numpy as np

from . import compat  # noqa: F401  (must run before the first basicsr import)

from basicsr.utils.registry import METRIC_REGISTRY  # noqa: E402

from sgpn_arch.eval import metrics as _metrics  # noqa: E402
from sgpn_arch.eval.metrics.fid import (cached_fid_inception, fid_against_ffhq, inception_features,  # noqa: E402
                                        load_fid_stats)

logger = logging.getLogger("basicsr")
NO_REFERENCE_TYPES = ("calculate_niqe", "calculate_fid_ffhq")
LOWER_IS_BETTER_TYPES = ("calculate_lpips", "calculate_identity_deg", "calculate_lmd", "calculate_niqe",
                         "calculate_fid_ffhq")


class ValidationMetrics:
    """``val.metrics`` accumulated over one validation set (per-image means; FID from all the images).

    ``add(result, gt)`` takes HWC BGR uint8 images (``gt`` None for LQ-only sets); ``results()`` gives
    ``{name: value}`` without the metrics that were skipped (``skipped``: name -> reason).
    """

    def __init__(self, metrics_opt: dict):
        self.opts = {name: dict(opt) for name, opt in metrics_opt.items()}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.features: dict[str, list[np.ndarray]] = {}
        self.skipped: dict[str, str] = {}

    def add(self, result: np.ndarray, gt: np.ndarray | None) -> None:
        for name, opt in self.opts.items():
            if name in self.skipped:
                continue
            kind, args = opt["type"], {k: v for k, v in opt.items() if k not in ("type", "better")}
            try:
                if kind == "calculate_fid_ffhq":
                    self._add_fid_features(name, result, args)
                    continue
                if gt is None and kind not in NO_REFERENCE_TYPES:
                    self._skip(name, "it needs ground truth and this set is LQ only")
                    continue
                value = self._per_image(kind, args, result, gt)
            except FileNotFoundError as err:   # missing metric weights (WeightsError)
                self._skip(name, str(err))
                continue
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
            self.counts[name] = self.counts.get(name, 0) + 1

    @staticmethod
    def _per_image(kind: str, args: dict, result: np.ndarray, gt: np.ndarray | None) -> float:
        if kind == "calculate_niqe":          # the project's NIQE: any image size (BasicSR's needs 192 px)
            return _metrics.calculate_niqe(result, args.get("crop_border", 0), args.get("convert_to", "y"))
        return METRIC_REGISTRY.get(kind)(img=result, img2=gt, **args)

    def _add_fid_features(self, name: str, result: np.ndarray, args: dict) -> None:
        if name not in self.features:
            load_fid_stats(args.get("stats"))   # missing statistics: skipped now, not after the whole set
            self.features[name] = []
        model = cached_fid_inception(args.get("weights"), args.get("device"))
        self.features[name].append(inception_features([result], model)[0])

    def _skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        self.sums.pop(name, None)
        self.features.pop(name, None)
        logger.warning("validation metric %s skipped: %s", name, reason)

    def results(self) -> dict[str, float]:
        out = {name: self.sums[name] / self.counts[name] for name in self.sums}
        for name, feats in self.features.items():
            if len(feats) < 2:
                self._skip(name, "FID needs at least 2 images")
                continue
            out[name] = fid_against_ffhq(np.stack(feats), self.opts[name].get("stats"))
        return {name: out[name] for name in self.opts if name in out}

    def better(self, name: str) -> str:
        """``higher`` or ``lower``: the metric's ``better`` option, else its known direction."""
        default = "lower" if self.opts[name]["type"] in LOWER_IS_BETTER_TYPES else "higher"
        return self.opts[name].get("better", default)


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
