"""What the model can give on ``ct_abdomen_3mm`` 1,2,3,5,6 when the box on every slice comes from the
reference label: the ceiling that propagation from a few seeds is measured against.

    python Testing/benchmarks/bench_ceiling.py [--labels 1,2,3,5,6] [--margins=-2,-1,0,1,2,3,5]

For each label, on every slice it covers, the model segments the label's bounding box grown by each
margin (pixels; 0 is the tight box, the ``box`` protocol's prompt).  Printed per label and as the mean
over labels: 3-D Dice per margin; *best per slice* (on each slice the margin whose mask scores the
best Dice against the reference -- an oracle that knows the answer, so an upper bound for any choice
of one box per slice); and the tight boxes' masks with a 3-slice majority vote (each voxel kept when
it is predicted on at least two of its slice and the two beside it; a post-processing that uses the
neighbouring slices).  Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, format_table, progress  # noqa: E402
from bench_presence import MAIN_LABELS, structures  # noqa: E402


def grown_box(box_rc, margin_px: int, shape_rc):
    """``box_rc`` grown by ``margin_px`` on every side, inside the slice; the tight box when a
    negative margin would invert it."""
    import numpy as np

    rows, cols = shape_rc
    grown = np.clip(np.asarray(box_rc, float) + np.array([-margin_px, -margin_px, margin_px, margin_px]),
                    0, [rows - 1, cols - 1, rows - 1, cols - 1])
    if grown[2] < grown[0] or grown[3] < grown[1]:
        return np.asarray(box_rc, float)
    return grown


def majority_of_three(stack):
    """Each voxel kept when it is set on at least two of its own slice and the two beside it."""
    import numpy as np

    votes = stack.astype(np.int8)
    total = votes.copy()
    total[1:] += votes[:-1]
    total[:-1] += votes[1:]
    return total >= 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=",".join(str(v) for v in MAIN_LABELS))
    parser.add_argument("--margins", default="-2,-1,0,1,2,3,5")
    args = parser.parse_args()

    import numpy as np

    from SAMSegSlicerLib.engine import ModelPrompt
    from SAMSegSlicerLib.evaluation.masks import dice
    from SAMSegSlicerLib.factory import EngineOptions, make_engine
    from SAMSegSlicerLib.geometry import bbox_rc

    margins = [int(v) for v in args.margins.split(",")]
    values = [int(v) for v in args.labels.split(",")]
    volume, labels, chosen = structures("ct_abdomen_3mm")
    names = {value: name for value, name, _ in chosen}
    engine = make_engine(volume, EngineOptions(device="cpu"))
    axes = volume.axes("axial")
    label_stack = axes.stack(labels)
    columns = [f"margin {m:+d} px" for m in margins] + ["best per slice", "tight + 3-slice vote"]
    table, per_column = [], {column: [] for column in columns}
    for value in values:
        truth = label_stack == value
        progress(f"label {value}: {int(truth.any(axis=(1, 2)).sum())} slices x {len(margins)} boxes")
        by_margin = {m: np.zeros_like(truth) for m in margins}
        best = np.zeros_like(truth)
        for index in np.flatnonzero(truth.any(axis=(1, 2))):
            box_rc = bbox_rc(truth[index])
            masks = [engine.predict("axial", int(index), ModelPrompt(box_rc=grown_box(box_rc, m, truth[index].shape)))
                     .mask_rc for m in margins]
            for m, mask in zip(margins, masks):
                by_margin[m][index] = mask
            best[index] = max(masks, key=lambda mask: dice(mask, truth[index]))
        scores = [dice(by_margin[m], truth) for m in margins]
        scores += [dice(best, truth), dice(majority_of_three(by_margin[0]), truth) if 0 in margins else float("nan")]
        for column, score in zip(columns, scores):
            per_column[column].append(score)
        table.append([f"{value} {names.get(value, '')}"] + [f"{s:.3f}" for s in scores])
    table.append(["mean"] + [f"{np.mean(per_column[c]):.4f}" for c in columns])
    print(f"ct_abdomen_3mm, axial, model {engine.model.spec.name} ({engine.model.precision}); {cpu_name()}")
    print(format_table(["label"] + columns, table))
    engine.worker.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
