"""What every protocol takes and returns.

A protocol is a function ``(engine, truth_kji, options) -> ProtocolOutcome``: it sees the
truth only the way a user would (where to click, where to draw a box) and returns a
predicted 3-D mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine import SliceEngine


@dataclass(frozen=True)
class EvalOptions:
    axis: str = "axial"
    clicks: int = 1
    jitter_px: float = 0.0
    seed: int = 0
    seed_slices: int = 1
    assist_slices: int = 0
    adapter: object | None = None
    guard: str = "rules"          # propagate: "rules" (today's stop rules), "presence" (+ the presence guard), "empty"
    auto_mode: str = "guided"     # auto: guided propagation or per-slice prompts from the presence model


@dataclass
class ProtocolOutcome:
    prediction_kji: np.ndarray
    extra: dict = field(default_factory=dict)
    evaluated_kji: np.ndarray | None = None


ProtocolFn = Callable[[SliceEngine, np.ndarray, EvalOptions], ProtocolOutcome]
