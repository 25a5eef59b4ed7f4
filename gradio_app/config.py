"""Settings of the web demo, read from environment variables (a Space sets them as variables/secrets)."""

from __future__ import annotations

import os
from dataclasses import dataclass

OVERSIZE_POLICIES = ("downscale", "refuse")


def _env_number(name: str, default: int | float, minimum: int | float, kind: type = int) -> int | float:
    """``kind(os.environ[name])``, or ``default`` when unset; a value that is not a number or below ``minimum``
    raises one message saying what to set."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    what, wanted = ("an integer", "a whole number") if kind is int else ("a number", "a number")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not {what}; set it to {wanted} >= {minimum} or unset it") from None
    if value < minimum:
        raise ValueError(f"{name}={value} is too small; set it to {wanted} >= {minimum} or unset it")
    return value


def _env_str(name: str, default: str | None = None) -> str | None:
    raw = os.environ.get(name, "").strip()
    return raw or default


def _env_flag(name: str, default: bool) -> bool:
    """``1``/``true``/``yes``/``on`` (any case) is set; any other value is unset."""
    return _env_str(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo can be told from outside (each field's variable is listed in gradio_app/README.md).

    Input size limits: a photo whose longer side exceeds ``max_side`` or whose pixel count exceeds
    ``max_pixels`` is downscaled to fit (``oversize="downscale"``) or refused (``"refuse"``); a photo whose
    shorter side is below ``min_side`` is enlarged before detection. The upscale factor is lowered so that the
    output's longer side stays within ``max_output_side``. ``concurrency`` restorations run at once (each with
    its own detector, sharing one SGPN), ``queue_size`` requests wait; ``max_file_size`` bounds uploads (Gradio
    size string). The model settings go to :class:`sgpn_arch.pipeline.restorer.FaceRestorer`; weights left ``None`` are
    resolved by the weights zoo (:func:`sgpn_arch.zoo.weights.resolve_weights`), each network wait bounded by
    ``download_timeout`` seconds.
    """

    max_side: int = 2048
    max_pixels: int = 4_000_000
    oversize: str = "downscale"
    min_side: int = 256
    max_upscale: int = 4
    default_upscale: int = 2
    max_output_side: int = 4096
    preview_max_side: int = 2048
    concurrency: int = 2
    queue_size: int = 16
    max_file_size: str = "32mb"
    device: str = "auto"
    detector: str = "retinaface_resnet50"
    generator: str | None = None
    d3dfr: str | None = None
    bfm_dir: str | None = None
    allow_download: bool = True
    download_timeout: float = 20.0
    keep_memory: bool = True

    def __post_init__(self):
        if self.oversize not in OVERSIZE_POLICIES:
            raise ValueError(f"oversize policy {self.oversize!r} is unknown; use one of {', '.join(OVERSIZE_POLICIES)}")
        if not 1 <= self.default_upscale <= self.max_upscale:
            raise ValueError(f"default upscale {self.default_upscale} must lie in 1..{self.max_upscale}")
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} is above max_side {self.max_side}")

    def launch_options(self) -> dict:
        """The settings that belong to ``Blocks.launch`` rather than to the page (upload size limit)."""
        return {"max_file_size": self.max_file_size}

    @classmethod
    def from_env(cls) -> "DemoConfig":
        """Read the ``SGPN_*`` environment variables (listed in gradio_app/README.md).

        ``HF_HUB_OFFLINE`` is left to ``huggingface_hub`` (a mirror's files are then served from the Hugging
        Face cache); ``SGPN_ALLOW_DOWNLOAD=0`` turns off every download.
        """
        oversize = _env_str("SGPN_OVERSIZE", cls.oversize).lower()
        if oversize not in OVERSIZE_POLICIES:
            raise ValueError(f"SGPN_OVERSIZE={oversize!r} is unknown; set it to one of {', '.join(OVERSIZE_POLICIES)}")
        max_upscale = _env_number("SGPN_MAX_UPSCALE", cls.max_upscale, 1)
        return cls(
            max_side=_env_number("SGPN_MAX_SIDE", cls.max_side, 64),
            max_pixels=_env_number("SGPN_MAX_PIXELS", cls.max_pixels, 64 * 64),
            oversize=oversize,
            min_side=_env_number("SGPN_MIN_SIDE", cls.min_side, 1),
            max_upscale=max_upscale,
            default_upscale=min(_env_number("SGPN_DEFAULT_UPSCALE", cls.default_upscale, 1), max_upscale),
            max_output_side=_env_number("SGPN_MAX_OUTPUT_SIDE", cls.max_output_side, 64),
            preview_max_side=_env_number("SGPN_PREVIEW_MAX_SIDE", cls.preview_max_side, 64),
            concurrency=_env_number("SGPN_CONCURRENCY", cls.concurrency, 1),
            queue_size=_env_number("SGPN_QUEUE_SIZE", cls.queue_size, 1),
            max_file_size=_env_str("SGPN_MAX_FILE_SIZE", cls.max_file_size),
            device=_env_str("SGPN_DEVICE", cls.device),
            detector=_env_str("SGPN_DETECTOR", cls.detector),
            allow_download=_env_flag("SGPN_ALLOW_DOWNLOAD", True),
            download_timeout=_env_number("SGPN_DOWNLOAD_TIMEOUT", cls.download_timeout, 0.1, float),
            keep_memory=_env_flag("SGPN_KEEP_MEMORY", True),
        )
