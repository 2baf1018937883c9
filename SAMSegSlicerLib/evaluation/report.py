"""The result of an evaluation: per label and mean, as a table and as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
