"""The ``propagate`` protocol: K seed slices per label segmented from an oracle box, then
:func:`SAMSegSlicerLib.propagation.propagate` with its default settings."""

from __future__ import annotations

import numpy as np

from ..engine import ModelPrompt, SliceEngine
from ..geometry import bbox_rc
from ..propagation import propagate
from .masks import label_slices, largest_slice, reach_beyond
from .protocol import EvalOptions, ProtocolOutcome


def evenly_spread_seeds(truth_stack: np.ndarray, count: int) -> list[int]:
    """``count`` seed slices for a label: its largest slice for one seed; otherwise the slices at
    the centres of ``count`` equal parts of the label's extent (so every stretch is short)."""
    if count <= 1:
        return [largest_slice(truth_stack)]
    slices = label_slices(truth_stack)
    return sorted({slices[min(len(slices) - 1, int((part + 0.5) * len(slices) / count))] for part in range(count)})


def propagate_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """``samseg evaluate --protocol propagate``: K seed slices per label (``options.seed_slices``),
    each segmented by the model from an oracle box, then propagated with the default settings."""
    axes = engine.volume.axes(options.axis)
    truth = axes.stack(truth_kji)
    seeds = {}
    for index in evenly_spread_seeds(truth, options.seed_slices):
        mask = engine.predict(options.axis, index, ModelPrompt(box_rc=bbox_rc(truth[index]))).mask_rc
        if mask.any():
            seeds[index] = mask
    prediction_kji = np.zeros(truth_kji.shape, dtype=bool)
    extra = {"seed_slices": sorted(seeds), "slices_predicted": 0, "stopped": []}
    if seeds:
        result = propagate(engine, seeds, options.axis)
        axes.stack(prediction_kji)[:] = result.stack(axes.n_slices, axes.slice_shape)
        extra["slices_predicted"] = result.slices_predicted
        extra["stopped"] = [{"seed": stop.seed, "direction": stop.direction, "last": stop.last,
                             "stopped_at": stop.stopped_at, "reason": stop.reason} for stop in result.stops]
    extra["slices_beyond_label"] = reach_beyond(label_slices(truth), label_slices(axes.stack(prediction_kji)))
    return ProtocolOutcome(prediction_kji, extra)
