"""Honest evaluation: simulated users prompt the model slice by slice; 3-D Dice against a label map.

A protocol is a function ``(engine, truth_kji, options) -> ProtocolOutcome``: it sees the
truth only the way a user would (where to click, where to draw a box) and returns a
predicted 3-D mask.  :func:`run_evaluation` runs one protocol for several labels and
collects a JSON-ready report.  The ``box`` protocol lives here; interactive and propagation
protocols live beside the features they exercise and are listed in :data:`PROTOCOLS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .assist import assisted
from .engine import ModelPrompt, SliceEngine
from .errors import InputError
from .geometry import bbox_rc
from .propagation import propagate_protocol
from .simulated_user import clicks_protocol, lasso_protocol, scribbles_protocol

LabelProgress = Callable[[str], None]


@dataclass(frozen=True)
class EvalOptions:
    axis: str = "axial"
    clicks: int = 1
    jitter_px: float = 0.0
    seed: int = 0
    seed_slices: int = 1
    assist_slices: int = 0
    adapter: object | None = None


@dataclass
class ProtocolOutcome:
    prediction_kji: np.ndarray
    extra: dict = field(default_factory=dict)
    evaluated_kji: np.ndarray | None = None


ProtocolFn = Callable[[SliceEngine, np.ndarray, EvalOptions], ProtocolOutcome]


@dataclass
class LabelResult:
    label: int
    dice: float
    slices_with_label: int
    seconds: float
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        out = {"label": self.label, "dice": round(self.dice, 4), "slices_with_label": self.slices_with_label,
               "seconds": round(self.seconds, 3)}
        out.update(self.extra)
        return out


@dataclass
class EvalReport:
    image: str
    model: str
    protocol: str
    axis: str
    results: list[LabelResult]
    seconds: float
    encode_seconds: float
    slices_encoded: int
    options: dict

    @property
    def mean_dice(self) -> float:
        return float(np.mean([r.dice for r in self.results])) if self.results else float("nan")

    def as_json(self) -> dict:
        return {"image": self.image, "model": self.model, "protocol": self.protocol, "axis": self.axis,
                "results": [r.as_json() for r in self.results], "mean_dice": round(self.mean_dice, 4),
                "seconds": round(self.seconds, 3), "encode_seconds": round(self.encode_seconds, 3),
                "slices_encoded": self.slices_encoded, "options": self.options}

    def table(self) -> str:
        lines = [f"{'label':>6} {'dice':>7} {'slices':>7} {'seconds':>8}"]
        lines += [f"{r.label:>6} {r.dice:>7.4f} {r.slices_with_label:>7} {r.seconds:>8.2f}" for r in self.results]
        lines.append(f"{'mean':>6} {self.mean_dice:>7.4f}   ({self.protocol}, {self.axis}, {self.model}; "
                     f"{self.seconds:.1f} s; encoded {self.slices_encoded} slices in {self.encode_seconds:.1f} s)")
        return "\n".join(lines)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def label_slices(truth_stack: np.ndarray) -> list[int]:
    """Indices of the slices (first axis of a (slice, row, col) stack) that hold the label."""
    return [int(i) for i in np.flatnonzero(truth_stack.reshape(truth_stack.shape[0], -1).any(axis=1))]


def largest_slice(truth_stack: np.ndarray) -> int:
    return int(np.argmax(truth_stack.reshape(truth_stack.shape[0], -1).sum(axis=1)))


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


PROTOCOLS: dict[str, ProtocolFn] = {
    "box": box_protocol,
    "clicks": clicks_protocol,
    "scribbles": scribbles_protocol,
    "lasso": lasso_protocol,
    "propagate": propagate_protocol,
}


def check_label_values(labels_kji: np.ndarray, label_values: list[int]) -> None:
    present = set(int(v) for v in np.unique(labels_kji))
    missing = [v for v in label_values if v not in present]
    if missing:
        raise InputError(f"label value(s) {', '.join(map(str, missing))} not in the label map", None,
                         f"the label map holds {', '.join(str(v) for v in sorted(present - {0})[:20])}")


def run_evaluation(engine: SliceEngine, labels_kji: np.ndarray, label_values: list[int], protocol: str,
                   options: EvalOptions, progress: LabelProgress | None = None) -> EvalReport:
    """Run ``protocol`` for each label value and measure 3-D Dice (over ``evaluated_kji`` when given)."""
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
        results.append(LabelResult(value, score, len(slices), time.perf_counter() - label_started, outcome.extra))
    options_json = {k: v for k, v in asdict(options).items() if k != "adapter"}
    return EvalReport(engine.volume.source, engine.model.model_id, protocol, options.axis, results,
                      time.perf_counter() - started, engine.stats.encode_seconds - encode_before,
                      engine.stats.slices_encoded - encoded_before, options_json)
