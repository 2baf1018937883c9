"""SAM^assist benchmark: how long learning a structure's prompts from 2 annotated slices takes.

    python Testing/benchmarks/bench_assist.py [--labels 1,2,3,5,6] [--slices 2] [--threads N] [--json OUT]

On ``ct_abdomen_3mm`` (from ``$SAMSEG_DATA`` or ``../shared/data``), for each label: the K slices
around its median slice (as ``samseg evaluate --assist-slices K`` chooses them) are encoded
beforehand through the default disk cache (not timed), then :func:`~SAMSegSlicerLib.assist.learn_prompts`
runs with its default options (the model's default prompt kinds; LiteMedSAM: ``box+points``).
Timed: the whole call (decoder contexts, prompt sampling, every optimisation step).

Reference, measured in the same run right before and after each label: one image-encoder pass
of one slice of the same volume through the same model (``SamModel.encode``, the work a new
slice costs), median of 3.  Printed: seconds, seconds per step, and learning time in encoder
passes.  Target (issue 6): <= 15 s per structure on the 2-core development CPU.  This script
prints figures and ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, data_dir, fail, format_table, progress  # noqa: E402

AXIS = "axial"
REFERENCE_REPEATS = 3


def encoder_pass_seconds(engine, index: int) -> float:
    image = [engine.slice_image(AXIS, index)]

    def once() -> float:
        started = time.perf_counter()
        engine.model.encode(image)
        return time.perf_counter() - started

    return statistics.median(engine.worker.run(once) for _ in range(REFERENCE_REPEATS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="1,2,3,5,6", help="label values of ct_abdomen_3mm (default 1,2,3,5,6)")
    parser.add_argument("--slices", type=int, default=2, help="annotated slices per structure (default 2)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    try:
        values = [int(v) for v in args.labels.split(",") if v.strip()]
    except ValueError:
        fail(f"--labels must be integers separated by commas, got {args.labels!r}")
    if args.slices < 1:
        fail(f"--slices must be at least 1, got {args.slices}")

    import torch

    from SAMSegSlicerLib.assist import AnnotatedSlice, learn_prompts, training_slices
    from SAMSegSlicerLib.factory import EngineOptions, make_engine
    from SAMSegSlicerLib.volume import read_labelmap, read_volume

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = data_dir() / "ct_abdomen_3mm"
    volume = read_volume(folder / "image.nii.gz")
    labels_kji = read_labelmap(folder / "labels.nii.gz", volume)
    missing = [v for v in values if not (labels_kji == v).any()]
    if missing:
        fail(f"label(s) {missing} not in {folder / 'labels.nii.gz'}")
    engine = make_engine(volume, EngineOptions(device="cpu"))
    rows, records = [], []
    for value in values:
        truth = volume.axes(AXIS).stack(labels_kji == value)
        indices = training_slices(truth, args.slices)
        engine.encode(AXIS, indices)
        slices = [AnnotatedSlice(AXIS, i, np.array(truth[i])) for i in indices]
        reference_before = encoder_pass_seconds(engine, indices[0])
        progress(f"label {value}: learning from {AXIS} slices {indices}")
        started = time.perf_counter()
        adapter = learn_prompts(engine, slices)
        seconds = time.perf_counter() - started
        reference = statistics.median([reference_before, encoder_pass_seconds(engine, indices[0])])
        steps = adapter.info["steps"]
        rows.append([str(value), ",".join(map(str, indices)), str(steps), f"{seconds:.2f}",
                     f"{1000 * seconds / steps:.0f}", f"{reference:.3f}", f"{seconds / reference:.1f}"])
        records.append({"label": value, "slices": indices, "steps": steps, "learn_seconds": round(seconds, 3),
                        "encoder_pass_seconds": round(reference, 4),
                        "learn_in_encoder_passes": round(seconds / reference, 2)})
    print(f"SAM^assist learning, ct_abdomen_3mm, {args.slices} slices per structure; model "
          f"{engine.model.model_id} on {cpu_name()}, torch threads {torch.get_num_threads()}")
    print(format_table(["label", "slices", "steps", "learn s", "ms/step", "encoder pass s", "learn/encoder"], rows))
    mean_seconds = float(np.mean([r["learn_seconds"] for r in records]))
    mean_ratio = float(np.mean([r["learn_in_encoder_passes"] for r in records]))
    print(f"mean: {mean_seconds:.2f} s per structure = {mean_ratio:.1f} encoder passes (target <= 15 s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": engine.model.model_id, "cpu": cpu_name(),
                                               "threads": torch.get_num_threads(), "slices": args.slices,
                                               "labels": records, "mean_learn_seconds": round(mean_seconds, 3),
                                               "mean_learn_in_encoder_passes": round(mean_ratio, 2)}, indent=2))


if __name__ == "__main__":
    main()
