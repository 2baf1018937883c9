"""SAM^auto benchmark: propagation with the presence guard against today's rules and carry-until-empty,
on every labelled structure of the data folder; auto from K slices; the presence model's costs.

    python Testing/benchmarks/bench_presence.py [--cases ct_abdomen_3mm,...] [--json OUT]

Structures: every label with >= 5 axial slices in ``ct_abdomen_3mm``, ``ct_abdomen_small`` and
``mr_abdomen_small``; the lung nodule; the brain tumour; the three labels of the 3-slice DICOM
series (the nodule also on the coronal axis, where it spans 26 thin slices: the small structure
whose ends stop rules tend to cut).  For each, one seed slice (the label's largest, segmented from its bounding box) is
propagated three ways (``samseg evaluate --protocol propagate --guard G``):

* ``empty``: the baseline, the box carried until the mask is empty (every other rule off);
* ``rules``: the default stop rules;
* ``presence``: the default rules plus the presence guard built from the seed slice.

Per structure: 3-D Dice and leak share (predicted voxels inside other labels) of each; the
summary counts the structures where the guard scores below the baseline.  Then, on
``ct_abdomen_3mm`` 1,2,3,5,6: propagation from 1 and 3 seeds with each guard, auto from 5 seed
slices (both modes), and the presence model's build time from 5 slices and its apply time per
slice against the encoder's time per slice measured in the same run (the reference).  Prints
figures and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, data_dir, format_table, progress  # noqa: E402

GUARDS = ("empty", "rules", "presence")
VOLUME_CASES = ("ct_abdomen_3mm", "ct_abdomen_small", "mr_abdomen_small", "ct_lung_nodule", "mr_brain_tumor")
MAIN_LABELS = [1, 2, 3, 5, 6]
MIN_SLICES = 5


def structures(case: str):
    """(volume, label map, [(label value, name, axis)]) of one case."""
    import numpy as np

    from SAMSegSlicerLib.volume import read_labelmap, read_volume

    folder = data_dir()
    if case == "ct_3slice_dicom":
        volume = read_volume(folder / case / "series")
        labels = np.zeros(volume.voxels_kji.shape, np.int16)
        for value, name in enumerate(("liver", "spine", "heart"), start=1):
            labels[read_labelmap(folder / case / "labels" / f"{name}_seg.nrrd", volume) > 0] = value
        return volume, labels, [(1, "liver", "axial"), (2, "spine", "axial"), (3, "heart", "axial")]
    suffix = ".nrrd" if case in ("ct_lung_nodule", "mr_brain_tumor") else ".nii.gz"
    volume = read_volume(folder / case / f"image{suffix}")
    labels = read_labelmap(folder / case / f"labels{suffix}", volume)
    names = {}
    class_map = folder / "totalsegmentator_class_map.json"
    if class_map.is_file():
        names = json.loads(class_map.read_text()).get("total_mr" if case.startswith("mr_abdomen") else "total", {})
    if case == "ct_lung_nodule":
        return volume, labels, [(1, "nodule", "axial"), (1, "nodule", "coronal")]
    if case == "mr_brain_tumor":
        return volume, labels, [(1, "tumour", "axial")]
    axes = volume.axes("axial")
    chosen = []
    for value in (int(v) for v in np.unique(labels) if v != 0):
        if int(axes.stack(labels == value).any(axis=(1, 2)).sum()) >= MIN_SLICES:
            chosen.append((value, names.get(str(value), str(value)), "axial"))
    return volume, labels, chosen


def table_rows(case, axis, on_axis, by_guard, rows, figures) -> list[str]:
    """Add one table row and one JSON figure per structure; return the structures where the guard
    scores below carry-until-empty."""
    below = []
    for n, (value, name) in enumerate(on_axis):
        scores = {guard: by_guard[guard][n] for guard in GUARDS}
        figures["structures"].append({
            "case": case, "label": value, "name": name, "axis": axis, "slices": scores["rules"].slices_with_label,
            **{f"{g}_dice": round(r.dice, 4) for g, r in scores.items()},
            **{f"{g}_leak": round(r.leak_share, 4) for g, r in scores.items()}})
        if scores["presence"].dice < scores["empty"].dice:
            below.append(f"{case} {value} {name} ({axis})")
        rows.append([case, value, name[:22], axis, scores["rules"].slices_with_label,
                     *(f"{scores[g].dice:.3f}" for g in GUARDS), *(f"{scores[g].leak_share:.3f}" for g in GUARDS)])
    return below


def evaluate(engine, labels, values, protocol, **options):
    from SAMSegSlicerLib.evaluation import EvalOptions, run_evaluation

    return run_evaluation(engine, labels, values, protocol, EvalOptions(**options)).results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(VOLUME_CASES + ("ct_3slice_dicom",)))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import numpy as np

    from SAMSegSlicerLib.cache import EmbeddingCache
    from SAMSegSlicerLib.factory import EngineOptions, make_engine
    from SAMSegSlicerLib.presence import build_presence, presence_on_slice

    options = EngineOptions(device=args.device)
    model = None
    rows, figures = [], {"structures": [], "cpu": cpu_name()}
    below = []
    for case in args.cases.split(","):
        volume, labels, chosen = structures(case)
        engine = make_engine(volume, options, model=model)
        model = engine.model
        for axis in sorted({axis for _, _, axis in chosen}):
            on_axis = [(value, name) for value, name, a in chosen if a == axis]
            progress(f"{case}: {len(on_axis)} structures on the {axis} axis")
            engine.encode(axis, range(engine.n_slices(axis)))
            values = [value for value, _ in on_axis]
            by_guard = {guard: evaluate(engine, labels, values, "propagate", guard=guard, axis=axis)
                        for guard in GUARDS}
            below += table_rows(case, axis, on_axis, by_guard, rows, figures)
    print(format_table(["case", "label", "name", "axis", "slices", "Dice empty", "Dice rules", "Dice presence",
                        "leak empty", "leak rules", "leak presence"], rows))
    everything = figures["structures"]
    means = {f"{g}_{m}": float(np.mean([f[f"{g}_{m}"] for f in everything])) for g in GUARDS for m in ("dice", "leak")}
    figures["means"] = means
    figures["below_baseline"] = below
    print(f"\n{len(everything)} structures; mean Dice empty/rules/presence "
          f"{means['empty_dice']:.4f}/{means['rules_dice']:.4f}/{means['presence_dice']:.4f}; mean leak share "
          f"{means['empty_leak']:.4f}/{means['rules_leak']:.4f}/{means['presence_leak']:.4f}; presence below the "
          f"carry-until-empty baseline on {len(below)}: {', '.join(below) or 'none'}")

    # ct_abdomen_3mm 1,2,3,5,6: seeds, auto, costs
    volume, labels, _ = structures("ct_abdomen_3mm")
    engine = make_engine(volume, options, model=model)
    main_rows = []
    for seeds in (1, 3):
        for guard in GUARDS:
            results = evaluate(engine, labels, MAIN_LABELS, "propagate", guard=guard, seed_slices=seeds)
            main_rows.append([f"propagate, {seeds} seed(s), guard {guard}", *(f"{r.dice:.3f}" for r in results),
                              f"{np.mean([r.dice for r in results]):.4f}",
                              f"{np.mean([r.leak_share for r in results]):.4f}"])
    for mode in ("guided", "prompts"):
        results = evaluate(engine, labels, MAIN_LABELS, "auto", seed_slices=5, auto_mode=mode)
        main_rows.append([f"auto, 5 seed slices, {mode}", *(f"{r.dice:.3f}" for r in results),
                          f"{np.mean([r.dice for r in results]):.4f}",
                          f"{np.mean([r.leak_share for r in results]):.4f}"])
    print()
    print(format_table(["ct_abdomen_3mm", *map(str, MAIN_LABELS), "mean Dice", "mean leak"], main_rows))
    figures["ct_abdomen_3mm"] = main_rows

    axes = volume.axes("axial")
    truth = axes.stack(labels == 5)
    from SAMSegSlicerLib.evaluation.propagate import evenly_spread_seeds

    annotated = {z: np.array(truth[z]) for z in evenly_spread_seeds(truth, 5)}
    build = []
    for _ in range(5):
        started = time.perf_counter()
        presence = build_presence(engine, "axial", annotated)
        build.append(time.perf_counter() - started)
    started = time.perf_counter()
    for index in range(axes.n_slices):
        presence_on_slice(engine, presence, "axial", index)
    apply_ms = 1000 * (time.perf_counter() - started) / axes.n_slices
    fresh = make_engine(volume, options, model=model, cache=EmbeddingCache())
    started = time.perf_counter()
    fresh.encode("axial", range(10))
    encode_ms = 1000 * (time.perf_counter() - started) / 10
    figures["costs"] = {"build_5_slices_s_median": float(np.median(build)), "apply_ms_per_slice": apply_ms,
                        "encode_ms_per_slice": encode_ms}
    print(f"\npresence model from 5 liver slices: build {np.median(build):.2f} s (median of 5); apply "
          f"{apply_ms:.1f} ms/slice; the encoder in the same run {encode_ms:.0f} ms/slice "
          f"(apply/encode {apply_ms / encode_ms:.3f}); {cpu_name()}")
    engine.worker.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
