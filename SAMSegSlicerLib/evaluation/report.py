"""The result of an evaluation: per label and mean, as a table and as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelResult:
    """One label's scores: ``dice`` (3-D, over the evaluated voxels), ``leak_share`` (the share of
    predicted voxels inside other labels of the reference) and ``slices_beyond`` (predicted slices
    outside the label's extent along the evaluated axis)."""

    label: int
    dice: float
    slices_with_label: int
    seconds: float
    leak_share: float
    slices_beyond: int
    extra: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        out = {"label": self.label, "dice": round(self.dice, 4), "leak_share": round(self.leak_share, 4),
               "slices_beyond": self.slices_beyond, "slices_with_label": self.slices_with_label,
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

    def _mean(self, name: str) -> float:
        return float(np.mean([getattr(r, name) for r in self.results])) if self.results else float("nan")

    @property
    def mean_dice(self) -> float:
        return self._mean("dice")

    @property
    def mean_leak_share(self) -> float:
        return self._mean("leak_share")

    @property
    def mean_slices_beyond(self) -> float:
        return self._mean("slices_beyond")

    def as_json(self) -> dict:
        return {"image": self.image, "model": self.model, "protocol": self.protocol, "axis": self.axis,
                "results": [r.as_json() for r in self.results], "mean_dice": round(self.mean_dice, 4),
                "mean_leak_share": round(self.mean_leak_share, 4),
                "mean_slices_beyond": round(self.mean_slices_beyond, 2),
                "seconds": round(self.seconds, 3), "encode_seconds": round(self.encode_seconds, 3),
                "slices_encoded": self.slices_encoded, "options": self.options}

    def table(self) -> str:
        lines = [f"{'label':>6} {'dice':>7} {'leak':>7} {'beyond':>7} {'slices':>7} {'seconds':>8}"]
        lines += [f"{r.label:>6} {r.dice:>7.4f} {r.leak_share:>7.4f} {r.slices_beyond:>7} {r.slices_with_label:>7} "
                  f"{r.seconds:>8.2f}" for r in self.results]
        lines.append(f"{'mean':>6} {self.mean_dice:>7.4f} {self.mean_leak_share:>7.4f} {self.mean_slices_beyond:>7.1f}"
                     f"   ({self.protocol}, {self.axis}, {self.model}; {self.seconds:.1f} s; "
                     f"encoded {self.slices_encoded} slices in {self.encode_seconds:.1f} s)")
        return "\n".join(lines)
