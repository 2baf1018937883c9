"""SAM^assist in an evaluation (``--assist-slices K`` / ``--adapter``): any protocol run with a
prompt adapter learned from K of the label's slices, which are then left out of the Dice."""

from __future__ import annotations

import numpy as np

from ..assist import AnnotatedSlice, LearnOptions, adapter_applied, learn_prompts, training_slices
from ..engine import SliceEngine
from .protocol import EvalOptions, ProtocolFn, ProtocolOutcome


def assisted(protocol: ProtocolFn) -> ProtocolFn:
    """Wrap an evaluation protocol: per label, learn from ``options.assist_slices`` slices chosen by
    :func:`~SAMSegSlicerLib.assist.training_slices` (or use ``options.adapter``), run the protocol
    with the adapter in use, and leave the slices learned from out of the Dice (``evaluated_kji``)."""
    def run(engine: SliceEngine, truth_kji: np.ndarray, options: EvalOptions) -> ProtocolOutcome:
        axes = engine.volume.axes(options.axis)
        truth = axes.stack(truth_kji)
        evaluated_kji = np.ones(truth_kji.shape, dtype=bool)
        if options.adapter is not None:
            adapter, record = options.adapter, {"adapter": options.adapter.checksum}
        else:
            indices = training_slices(truth, options.assist_slices)
            adapter = learn_prompts(engine, [AnnotatedSlice(options.axis, i, np.array(truth[i])) for i in indices],
                                    options=LearnOptions(seed=options.seed))
            axes.stack(evaluated_kji)[indices] = False
            record = {"slices": indices, "held_back": adapter.info["held_back"],
                      "kinds": list(adapter.prompt_kinds), "steps": adapter.info["steps"],
                      "learn_seconds": adapter.info["seconds"]}
        with adapter_applied(engine, adapter):
            outcome = protocol(engine, truth_kji, options)
        if outcome.evaluated_kji is not None:
            evaluated_kji &= outcome.evaluated_kji
        return ProtocolOutcome(outcome.prediction_kji, {**outcome.extra, "assist": record}, evaluated_kji)

    return run
