"""SAM^auto: segment every slice of a volume from a few annotated ones, with no further prompt.

Two modes (:data:`AUTO_MODES`):

* ``guided`` (the default, measured best on ``ct_abdomen_3mm``): prompt propagation from the
  annotated slices with the presence model as its guard (:func:`~.propagation.propagate` with
  ``presence``) -- the carried masks end where the structure ends.
* ``prompts``: the paper's SAM^auto proper: on every slice the presence model's coarse map gives
  a box (its strongest component), the model segments it, and a slice counts only where the
  map's presence score is high enough.  Only the run of such slices connected to the annotated
  ones is kept (a structure is one piece along the axis).  This is also the mode for *another
  volume* of the same kind (the next patient), where nothing is annotated: the presence model
  is applied without its position term and the longest run of present slices is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .engine import ModelPrompt, SliceEngine
from .errors import InputError
from .presence import PresenceModel, check_model, presence_on_slice
from .propagation import PropagationConfig, PropagationResult, check_range, propagate
from .worker import CancelToken

AUTO_MODES = ("guided", "prompts")
ProgressCallback = Callable[[int, int], None]  # (slices done, slices planned)


@dataclass
class AutoResult:
    """Masks per slice along ``axis`` (annotated slices included), how the slices were decided.

    ``scores``: the presence score of every slice the model looked at (``prompts`` mode);
    ``propagation``: the guided propagation's result (``guided`` mode; its stops say why every
    chain ended).
    """

    axis: str
    mode: str
    masks: dict[int, np.ndarray]
    annotated: tuple[int, ...]
    cancelled: bool = False
    scores: dict[int, float] = field(default_factory=dict)
    propagation: PropagationResult | None = None

    def stack(self, n_slices: int, shape_rc: tuple[int, int]) -> np.ndarray:
        out = np.zeros((n_slices, *shape_rc), dtype=bool)
        for index, mask in self.masks.items():
            out[index] = mask
        return out


def auto_segment(engine: SliceEngine, axis: str, presence: PresenceModel,
                 annotated: Mapping[int, np.ndarray] | None = None, mode: str = "guided",
                 config: PropagationConfig | None = None, min_score: float = 0.1,
                 index_range: tuple[int, int] | None = None, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> AutoResult:
    """Segment the structure of ``presence`` on every slice of ``axis`` (inside ``index_range``).

    ``annotated``: slice index -> bool mask the user finished (kept as they are); without any,
    only ``prompts`` mode can run (another volume).  ``min_score``: the presence score a slice
    needs in ``prompts`` mode.
    """
    if mode not in AUTO_MODES:
        raise InputError(f"unknown auto mode {mode!r}", None, f"use one of {', '.join(AUTO_MODES)}")
    check_model(engine, presence)
    annotated = {int(k): np.asarray(v, bool) for k, v in (annotated or {}).items() if np.asarray(v).any()}
    if mode == "guided":
        if not annotated:
            raise InputError("guided auto-segmentation needs annotated slices of this volume", None,
                             "annotate a slice, or use --mode prompts with a saved presence model")
        result = propagate(engine, annotated, axis, config, index_range=index_range, cancel=cancel,
                           progress=None if progress is None else
                           (lambda p: progress(p.slices_done, p.slices_max)), presence=presence)
        return AutoResult(axis, mode, dict(result.masks), tuple(sorted(annotated)), result.cancelled,
                          propagation=result)
    lo, hi = check_range(index_range, engine.n_slices(axis))
    planned = [z for z in range(lo, hi + 1) if z not in annotated]
    masks: dict[int, np.ndarray] = {}
    scores: dict[int, float] = {}
    cancelled = False
    for done, index in enumerate(planned):
        if cancel is not None and cancel.cancelled:
            cancelled = True
            break
        slice_presence = presence_on_slice(engine, presence, axis, index)
        scores[index] = slice_presence.score
        if slice_presence.present and slice_presence.score >= min_score:
            mask = engine.predict(axis, index, ModelPrompt(box_rc=slice_presence.box_rc)).mask_rc
            if mask.any():
                masks[index] = mask
        if progress is not None:
            progress(done + 1, len(planned))
    kept = _connected_run(set(masks), set(annotated))
    masks = {index: masks[index] for index in kept}
    masks.update(annotated)
    return AutoResult(axis, mode, dict(sorted(masks.items())), tuple(sorted(annotated)), cancelled, scores)


def _connected_run(found: set[int], annotated: set[int]) -> set[int]:
    """The slices of ``found`` in runs (consecutive slices) that touch an annotated slice; without
    annotated slices, the longest run."""
    runs, current = [], []
    for index in sorted(found | annotated):
        if current and index != current[-1] + 1:
            runs.append(current)
            current = []
        current.append(index)
    if current:
        runs.append(current)
    if annotated:
        kept = [run for run in runs if annotated & set(run)]
    else:
        kept = [max(runs, key=len)] if runs else []
    return {index for run in kept for index in run} & found
