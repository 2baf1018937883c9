"""Propagation benchmark: seconds per slice, split into encoding, decoding and the rest.

    python Testing/benchmarks/bench_propagation.py [--labels 2,3] [--device cpu] [--json OUT]

On ``ct_abdomen_3mm`` (from ``$SAMSEG_DATA`` or ``../shared/data``), axial, for each label: one
seed slice (the label's largest, its true mask), propagated both ways with the default
:class:`PropagationConfig` until the stop rules end it.

* cold: an engine with an empty memory-only cache (a new one per label), so every slice the
  propagation reaches is really encoded (lazily, with the default prefetch), as on a volume
  nobody has opened before;
* warm: the same propagation again on the now-encoded slices -- what a re-run with other
  settings costs.

Per run: slices visited, seconds per slice for encoding, decoding (all candidate boxes of a
slice, prompt to full-resolution mask) and the rest (distance transforms, stop rules,
book-keeping), and the decode share of the time.  The reference, measured in the same run, is
the encoder itself: the decode/encode ratio shows where the time goes.  Encoding runs on the
worker thread while the caller post-processes, so the three parts may add up to slightly more
than the wall time.  This script prints figures and ratios; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, data_dir, format_table, progress  # noqa: E402

AXIS = "axial"


def run_once(engine, seed_index, seed_mask) -> dict:
    from SAMSegSlicerLib.propagation import propagate

    stats = engine.stats
    before = (stats.encode_seconds, stats.slices_encoded, stats.decode_seconds, stats.decodes)
    started = time.perf_counter()
    result = propagate(engine, {seed_index: seed_mask}, AXIS)
    wall = time.perf_counter() - started
    encode = stats.encode_seconds - before[0]
    decode = stats.decode_seconds - before[2]
    visited = result.slices_visited
    return {
        "slices_visited": visited, "slices_encoded": stats.slices_encoded - before[1],
        "decodes": stats.decodes - before[3], "wall_s": wall,
        "encode_s_per_slice": encode / visited, "decode_s_per_slice": decode / visited,
        "other_s_per_slice": max(0.0, wall - encode - decode) / visited, "s_per_slice": wall / visited,
        "extent": list(result.extent), "stops": [stop.reason for stop in result.stops],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default="2,3", help="label values of ct_abdomen_3mm (default 2,3: the kidneys)")
    parser.add_argument("--device", default="cpu", help="model device (default cpu)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import numpy as np

    from SAMSegSlicerLib.cache import EmbeddingCache
    from SAMSegSlicerLib.evaluation.masks import largest_slice
    from SAMSegSlicerLib.factory import EngineOptions, make_engine
    from SAMSegSlicerLib.volume import read_labelmap, read_volume

    folder = data_dir() / "ct_abdomen_3mm"
    volume = read_volume(folder / "image.nii.gz")
    labels_kji = read_labelmap(folder / "labels.nii.gz", volume)
    options = EngineOptions(device=args.device)
    first = make_engine(volume, options, cache=EmbeddingCache())
    progress(f"model {first.model.model_id} on {first.model.device}; {cpu_name()}")

    rows, figures = [], {}
    for value in (int(v) for v in args.labels.split(",")):
        truth = volume.axes(AXIS).stack(labels_kji == value)
        seed = largest_slice(truth)
        engine = make_engine(volume, options, model=first.model, cache=EmbeddingCache(), worker=first.worker)
        for run in ("cold", "warm"):
            progress(f"label {value}: {run} propagation from slice {seed}")
            figure = run_once(engine, seed, np.array(truth[seed]))
            figures[f"{value}/{run}"] = figure
            busy = figure["encode_s_per_slice"] + figure["decode_s_per_slice"] + figure["other_s_per_slice"]
            rows.append([
                f"label {value} {run}", figure["slices_visited"], figure["slices_encoded"],
                f"{figure['encode_s_per_slice']:.3f}", f"{figure['decode_s_per_slice']:.3f}",
                f"{figure['other_s_per_slice']:.3f}", f"{figure['s_per_slice']:.3f}",
                f"{100 * figure['decode_s_per_slice'] / busy:.0f} %",
                f"{figure['decode_s_per_slice'] / figure['encode_s_per_slice']:.2f}"
                if figure["encode_s_per_slice"] else "-",
            ])
    print(format_table(["run", "slices", "encoded", "encode s/sl", "decode s/sl", "other s/sl", "total s/sl",
                        "decode share", "decode/encode"], rows))
    first.worker.shutdown()  # drops the cancelled prefetches before the interpreter exits
    if args.json:
        Path(args.json).write_text(json.dumps({"model": first.model.model_id, "cpu": cpu_name(),
                                               "runs": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
