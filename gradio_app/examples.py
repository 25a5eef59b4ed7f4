"""Degraded example photos with preset settings, made at start-up from the public-domain portraits that ship
inside installed packages (:mod:`sgpn_arch.pipeline.examples`) with the project's own degradation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sgpn_arch.eval.degradation import BlindDegradation
from sgpn_arch.pipeline.examples import find_example_images
from sgpn_arch.pipeline.image_io import read_image, to_bgr_uint8, write_image


@dataclass(frozen=True)
class ExamplePreset:
    """How one portrait is degraded and the settings it is shown with."""

    name: str
    blur_sigma: float
    shrink: int             # the degraded photo is this many times smaller than the portrait
    noise: float            # Gaussian noise sigma (0..255 scale)
    jpeg: int               # JPEG quality
    upscale: int
    face_parsing: bool
    visibility: float = 1.0


PRESETS = {
    "grace_hopper": ExamplePreset("grace_hopper", blur_sigma=3.0, shrink=2, noise=6.0, jpeg=60, upscale=2,
                                  face_parsing=False),
    "astronaut": ExamplePreset("astronaut", blur_sigma=4.0, shrink=2, noise=10.0, jpeg=50, upscale=2,
                               face_parsing=True, visibility=0.9),
}


def degrade(image: np.ndarray, preset: ExamplePreset, seed: int = 0) -> np.ndarray:
    """The portrait blurred, noised and JPEG-compressed (fixed settings, fixed seed), ``preset.shrink`` times smaller."""
    degradation = BlindDegradation(blur_sigma=(preset.blur_sigma,) * 2, anisotropic_prob=0.0,
                                   downsample_range=(preset.shrink,) * 2, noise_range=(preset.noise,) * 2,
                                   jpeg_range=(preset.jpeg,) * 2)
    lq = degradation(to_bgr_uint8(image).astype(np.float32) / 255.0, np.random.default_rng(seed))
    height, width = lq.shape[:2]
    small = cv2.resize(lq, (width // preset.shrink, height // preset.shrink), interpolation=cv2.INTER_AREA)
    return (small * 255.0 + 0.5).astype(np.uint8)


def degraded_examples(folder: str | Path, portraits: list[Path] | None = None) -> list[tuple[Path, ExamplePreset]]:
    """Write a degraded copy of every portrait that has a preset into ``folder``; return (path, preset) pairs."""
    examples = []
    for portrait in find_example_images() if portraits is None else portraits:
        preset = PRESETS.get(Path(portrait).stem)
        if preset is not None:
            path = write_image(Path(folder) / f"{preset.name}_degraded.png", degrade(read_image(portrait), preset))
            examples.append((path, preset))
    return examples
