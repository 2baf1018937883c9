"""Run one protocol for several labels and collect an :class:`~.report.EvalReport`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from ..engine import SliceEngine
from ..errors import InputError
from .assisted import assisted
from .box import box_protocol
from .masks import dice, label_slices, leak_share, slices_beyond
from .propagate import auto_protocol, propagate_protocol
from .protocol import EvalOptions, ProtocolFn
from .report import EvalReport, LabelResult
from .simulated_user import clicks_protocol, lasso_protocol, scribbles_protocol

LabelProgress = Callable[[str], None]

PROTOCOLS: dict[str, ProtocolFn] = {
    "box": box_protocol,
    "clicks": clicks_protocol,
    "scribbles": scribbles_protocol,
    "lasso": lasso_protocol,
    "propagate": propagate_protocol,
    "auto": auto_protocol,
}


def check_label_values(labels_kji: np.ndarray, label_values: list[int]) -> None:
    present = set(int(v) for v in np.unique(labels_kji))
    missing = [v for v in label_values if v not in present]
    if missing:
        raise InputError(f"label value(s) {', '.join(map(str, missing))} not in the label map", None,
                         f"the label map holds {', '.join(str(v) for v in sorted(present - {0})[:20])}")


def run_evaluation(engine: SliceEngine, labels_kji: np.ndarray, label_values: list[int], protocol: str,
                   options: EvalOptions, progress: LabelProgress | None = None) -> EvalReport:
    """Run ``protocol`` for each label value and measure 3-D Dice and the leak (over ``evaluated_kji`` when given)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}", None, f"use one of {', '.join(PROTOCOLS)}")
    check_label_values(labels_kji, label_values)
    started = time.perf_counter()
    encode_before, encoded_before = engine.stats.encode_seconds, engine.stats.slices_encoded
    axes = engine.volume.axes(options.axis)
    results = []
    for value in label_values:
        truth_kji = labels_kji == value
        slices = label_slices(axes.stack(truth_kji))
        if progress:
            progress(f"label {value}: {protocol} on {len(slices)} {options.axis} slices")
        label_started = time.perf_counter()
        run_protocol = PROTOCOLS[protocol]
        if options.assist_slices or options.adapter is not None:
            run_protocol = assisted(run_protocol)
        outcome = run_protocol(engine, truth_kji, options)
        scope = outcome.evaluated_kji
        score = dice(outcome.prediction_kji, truth_kji) if scope is None else \
            dice(outcome.prediction_kji[scope], truth_kji[scope])
        predicted_kji = outcome.prediction_kji if scope is None else outcome.prediction_kji & scope
        leak = leak_share(predicted_kji, (labels_kji != 0) & ~truth_kji)
        beyond = slices_beyond(slices, label_slices(axes.stack(predicted_kji)))
        results.append(LabelResult(value, score, len(slices), time.perf_counter() - label_started, leak, beyond,
                                   outcome.extra))
    options_json = {k: v for k, v in asdict(options).items() if k != "adapter"}
    return EvalReport(engine.volume.source, engine.model.model_id, protocol, options.axis, results,
                      time.perf_counter() - started, engine.stats.encode_seconds - encode_before,
                      engine.stats.slices_encoded - encoded_before, options_json)
