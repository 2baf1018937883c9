"""The ``propagate`` and ``auto`` protocols: K seed slices per label segmented from an oracle box,
then carried through the volume.

``propagate`` runs :func:`SAMSegSlicerLib.propagation.propagate` with one of three guards
(:data:`GUARDS`): ``rules`` (the default stop rules), ``presence`` (the rules plus a presence
model built from the seeds: leak guard, identity and absence checks) and ``empty`` (the
baseline: carry the box until the mask is empty, every other rule off).  ``auto`` builds a
presence model from the K seed slices and segments every other slice with
:func:`SAMSegSlicerLib.auto.auto_segment` (``guided`` or ``prompts`` mode).
"""

from __future__ import annotations

import numpy as np

from ..auto import auto_segment
from ..engine import ModelPrompt, SliceEngine
from ..errors import InputError
from ..geometry import bbox_rc
from ..presence import build_presence
from ..propagation import PropagationConfig, propagate
from .masks import label_slices, largest_slice, reach_beyond
from .protocol import EvalOptions, ProtocolOutcome

GUARDS = ("rules", "presence", "empty")
CARRY_UNTIL_EMPTY = PropagationConfig(min_iou=None, min_overlap=None, max_growth=None, min_intensity_match=None)


def evenly_spread_seeds(truth_stack: np.ndarray, count: int) -> list[int]:
    """``count`` seed slices for a label: its largest slice for one seed; otherwise the slices at
    the centres of ``count`` equal parts of the label's extent (so every stretch is short)."""
    if count <= 1:
        return [largest_slice(truth_stack)]
    slices = label_slices(truth_stack)
    return sorted({slices[min(len(slices) - 1, int((part + 0.5) * len(slices) / count))] for part in range(count)})


def oracle_seeds(engine: SliceEngine, truth: np.ndarray, options: EvalOptions) -> dict[int, np.ndarray]:
    """The seed slices' masks as the model gives them from the label's bounding box."""
    seeds = {}
    for index in evenly_spread_seeds(truth, options.seed_slices):
        mask = engine.predict(options.axis, index, ModelPrompt(box_rc=bbox_rc(truth[index]))).mask_rc
        if mask.any():
            seeds[index] = mask
    return seeds


def _stops(result) -> list[dict]:
    return [{"seed": stop.seed, "direction": stop.direction, "last": stop.last,
             "stopped_at": stop.stopped_at, "reason": stop.reason} for stop in result.stops]


def propagate_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """``samseg evaluate --protocol propagate``: K seed slices per label (``options.seed_slices``),
    each segmented by the model from an oracle box, then propagated with ``options.guard``."""
    if options.guard not in GUARDS:
        raise InputError(f"unknown propagation guard {options.guard!r}", None, f"use one of {', '.join(GUARDS)}")
    axes = engine.volume.axes(options.axis)
    truth = axes.stack(truth_kji)
    seeds = oracle_seeds(engine, truth, options)
    prediction_kji = np.zeros(truth_kji.shape, dtype=bool)
    extra = {"seed_slices": sorted(seeds), "guard": options.guard, "slices_predicted": 0, "stopped": []}
    if seeds:
        config = CARRY_UNTIL_EMPTY if options.guard == "empty" else PropagationConfig()
        presence = build_presence(engine, options.axis, seeds) if options.guard == "presence" else None
        result = propagate(engine, seeds, options.axis, config, presence=presence)
        axes.stack(prediction_kji)[:] = result.stack(axes.n_slices, axes.slice_shape)
        extra["slices_predicted"] = result.slices_predicted
        extra["stopped"] = _stops(result)
    extra["slices_beyond_label"] = reach_beyond(label_slices(truth), label_slices(axes.stack(prediction_kji)))
    return ProtocolOutcome(prediction_kji, extra)


def auto_protocol(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
    """``samseg evaluate --protocol auto --seed-slices K``: a presence model from K seed slices
    (oracle boxes), then every other slice with no further prompt (``options.auto_mode``)."""
    axes = engine.volume.axes(options.axis)
    truth = axes.stack(truth_kji)
    seeds = oracle_seeds(engine, truth, options)
    prediction_kji = np.zeros(truth_kji.shape, dtype=bool)
    extra = {"seed_slices": sorted(seeds), "mode": options.auto_mode, "slices_predicted": 0}
    if seeds:
        presence = build_presence(engine, options.axis, seeds)
        result = auto_segment(engine, options.axis, presence, seeds, mode=options.auto_mode)
        axes.stack(prediction_kji)[:] = result.stack(axes.n_slices, axes.slice_shape)
        extra["slices_predicted"] = sum(1 for index in result.masks if index not in seeds)
        if result.propagation is not None:
            extra["stopped"] = _stops(result.propagation)
    extra["slices_beyond_label"] = reach_beyond(label_slices(truth), label_slices(axes.stack(prediction_kji)))
    return ProtocolOutcome(prediction_kji, extra)
