"""Intensity windows: computed once per volume, applied per slice into a new [0, 1] array.

``auto`` decides between CT and MR by itself: a DICOM modality tag when there is one,
otherwise Hounsfield-like intensities (air at about -1000) mean CT.  CT gets the abdominal
soft-tissue window, everything else a robust percentile window over the whole volume's
foreground.  No slice is ever rescaled on its own, so a mask does not change just because a
neighbouring slice holds brighter bone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

# (level, width) in Hounsfield units.
CT_PRESETS = {
    "abdomen": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
MR_PERCENTILES = (0.5, 99.5)
CT_AIR_PERCENTILE = 0.5
CT_AIR_THRESHOLD_HU = -500.0
WINDOW_CHOICES = ("auto", *CT_PRESETS, "percentile")


@dataclass(frozen=True)
class IntensityWindow:
    level: float
    width: float
    name: str

    @property
    def low(self) -> float:
        return self.level - self.width / 2.0

    @property
    def high(self) -> float:
        return self.level + self.width / 2.0

    @property
    def key(self) -> str:
        """Part of the embedding cache key: the numbers, not the name."""
        return f"{self.level:.6g},{self.width:.6g}"

    def apply(self, array: np.ndarray) -> np.ndarray:
        """A new float32 array in [0, 1]; ``array`` is left untouched."""
        out = np.asarray(array, dtype=np.float32) - np.float32(self.low)
        out *= np.float32(1.0 / self.width)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def describe(self) -> str:
        return f"{self.name} (level {self.level:g}, width {self.width:g})"


def looks_like_ct(voxels: np.ndarray, modality: str | None) -> bool:
    if modality:
        return modality.upper() == "CT"
    sample = _sample(voxels)
    return float(np.percentile(sample, CT_AIR_PERCENTILE)) <= CT_AIR_THRESHOLD_HU


def _sample(voxels: np.ndarray, limit: int = 2_000_000) -> np.ndarray:
    flat = voxels.reshape(-1)
    step = max(1, flat.size // limit)
    return flat[::step]


def percentile_window(voxels: np.ndarray, name: str = "percentile") -> IntensityWindow:
    """0.5-99.5 percentiles of the volume's foreground (voxels above its minimum)."""
    sample = _sample(voxels).astype(np.float64)
    foreground = sample[sample > sample.min()]
    if foreground.size < 0.01 * sample.size:
        foreground = sample
    low, high = np.percentile(foreground, MR_PERCENTILES)
    if high <= low:
        high = low + 1.0
    return IntensityWindow(level=(low + high) / 2.0, width=high - low, name=name)


def resolve_window(spec: str, voxels: np.ndarray, modality: str | None = None) -> IntensityWindow:
    """``auto`` | a CT preset name | ``percentile`` | ``LEVEL,WIDTH``."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if looks_like_ct(voxels, modality):
            level, width = CT_PRESETS["abdomen"]
            return IntensityWindow(level, width, "auto: CT abdomen")
        return percentile_window(voxels, "auto: percentile 0.5-99.5")
    if spec in CT_PRESETS:
        level, width = CT_PRESETS[spec]
        return IntensityWindow(level, width, spec)
    if spec == "percentile":
        return percentile_window(voxels)
    try:
        level_text, width_text = spec.split(",")
        level, width = float(level_text), float(width_text)
    except ValueError:
        raise InputError(f"unknown window {spec!r}", None,
                         f"use auto, {', '.join(WINDOW_CHOICES[1:])} or LEVEL,WIDTH (e.g. 40,400)") from None
    if not (np.isfinite(level) and np.isfinite(width)):
        raise InputError(f"window level and width must be finite numbers, got {spec!r}", None,
                         "use LEVEL,WIDTH, e.g. 40,400")
    if not width > 0:
        raise InputError(f"window width must be positive, got {width:g}", None, "use LEVEL,WIDTH with WIDTH > 0")
    return IntensityWindow(level, width, f"custom {level:g},{width:g}")
