"""The ``box`` protocol: one box per slice from the label's bounding box."""

from __future__ import annotations

import numpy as np

from ..engine import ModelPrompt, SliceEngine
from ..geometry import bbox_rc
from .masks import label_slices
from .protocol import EvalOptions, ProtocolOutcome


def jitter_box(box_rc: np.ndarray, jitter_px: float, shape_rc: tuple[int, int],
               rng: np.random.Generator) -> np.ndarray:
    """Move each edge by up to ``jitter_px`` pixels (uniform), keeping the box inside the slice and non-empty."""
    if jitter_px <= 0:
        return box_rc
    moved = box_rc + rng.uniform(-jitter_px, jitter_px, size=4).astype(np.float32)
    r0, c0, r1, c1 = moved
    r0, r1 = np.clip(min(r0, r1), 0, shape_rc[0] - 1), np.clip(max(r0, r1), 0, shape_rc[0] - 1)
    c0, c1 = np.clip(min(c0, c1), 0, shape_rc[1] - 1), np.clip(max(c0, c1), 0, shape_rc[1] - 1)
    return np.array([r0, c0, r1, c1], dtype=np.float32)


def box_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """On every slice holding the label: one box from the label's bounding box (optionally jittered)."""
    axes = engine.volume.axes(options.axis)
    truth = axes.stack(truth_kji)
    prediction_kji = np.zeros(truth_kji.shape, dtype=bool)
    prediction = axes.stack(prediction_kji)
    rng = np.random.default_rng(options.seed)
    for index in label_slices(truth):
        box = jitter_box(bbox_rc(truth[index]), options.jitter_px, truth.shape[1:], rng)
        prediction[index] = engine.predict(options.axis, index, ModelPrompt(box_rc=box)).mask_rc
    return ProtocolOutcome(prediction_kji)
