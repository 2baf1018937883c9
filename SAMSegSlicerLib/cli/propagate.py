"""``samseg propagate IMAGE --seed SEEDS --out OUT``: carry annotated slices through the volume.

The seed label map holds the object annotated on one or more slices of the chosen axis; every
slice of it that holds the label is a seed.  Each label is propagated on its own; seeds are
kept as they are, and where two labels' predictions meet, the first label listed keeps the voxel.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..propagation import PropagationConfig, PropagationProgress, check_range, propagate
from ..volume import LABELMAP_SUFFIXES, read_labelmap, write_labelmap
from .common import add_model_args, add_volume_args, check_output_path, engine_from_args, open_volume, report

PROGRESS_EVERY = 10


def register(subparsers) -> None:
    parser = subparsers.add_parser("propagate", help="propagate annotated slices through the volume")
    parser.add_argument("image")
    parser.add_argument("--seed", required=True,
                        help="label map with the object annotated on one or more slices (any grid: resampled)")
    parser.add_argument("--out", required=True, help="output label map (.nii.gz, .nrrd, .seg.nrrd, .mha)")
    parser.add_argument("--label-value", type=int, default=None,
                        help="propagate only this label of the seed map (default: every label in it)")
    parser.add_argument("--range", dest="index_range", default=None, metavar="Z0:Z1",
                        help="only predict slices Z0..Z1 (inclusive) of the axis")
    parser.add_argument("--margins-mm", default=",".join(f"{m:g}" for m in PropagationConfig.box_margin_mm),
                        help="margins around the previous slice's mask for the next slice's candidate boxes "
                             "(default %(default)s mm)")
    add_model_args(parser)
    add_volume_args(parser)
    parser.set_defaults(handler=run)


def parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        lo, hi = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"--range must be Z0:Z1 (two slice numbers), got {text!r}", None, "e.g. --range 40:90") \
            from None
    return lo, hi


def parse_margins(text: str) -> tuple[float, ...]:
    try:
        margins = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        margins = ()
    if not margins or not all(math.isfinite(m) and m >= 0 for m in margins):
        raise InputError(f"--margins-mm must be millimetres >= 0 separated by commas, got {text!r}", None,
                         "e.g. --margins-mm 3,6,9")
    return margins


def run(args) -> int:
    out = check_output_path(args.out, [args.image, args.seed], LABELMAP_SUFFIXES)
    index_range = parse_range(args.index_range)
    config = PropagationConfig(box_margin_mm=parse_margins(args.margins_mm))
    volume = open_volume(args.image)
    seeds_kji = read_labelmap(args.seed, volume)
    values = _label_values(seeds_kji, args.label_value, args.seed)
    axes = volume.axes(args.axis)
    check_range(index_range, axes.n_slices)
    seed_stack = axes.stack(seeds_kji)
    engine = engine_from_args(args, volume)
    labels_kji = np.zeros(volume.voxels_kji.shape, dtype=seeds_kji.dtype)
    labels = axes.stack(labels_kji)
    for value in values:
        seeds = {int(z): seed_stack[z] == value for z in np.flatnonzero((seed_stack == value).any(axis=(1, 2)))}
        report(f"label {value}: {len(seeds)} seed slice(s) on the {args.axis} axis: {_ranges(sorted(seeds))}")
        result = propagate(engine, seeds, args.axis, config, index_range=index_range,
                           progress=_progress_printer(value))
        free = labels == 0
        for index, mask in result.masks.items():
            labels[index][mask & free[index]] = value
        for index, mask in seeds.items():
            labels[index][mask] = value
        extent = result.extent
        report(f"label {value}: slices {extent[0]}..{extent[1]}, {result.slices_predicted} predicted")
        for stop in result.stops:
            where = f"after slice {stop.last}" + (f" (slice {stop.stopped_at} rejected)" if stop.stopped_at is not None
                                                  else "")
            report(f"  from seed {stop.seed} {'up' if stop.direction > 0 else 'down'}: stopped {where}: {stop.reason}")
    write_labelmap(out, labels_kji, volume)
    report(f"wrote {out}")
    return 0


def _label_values(seeds_kji: np.ndarray, label_value: int | None, path: str) -> list[int]:
    present = [int(v) for v in np.unique(seeds_kji) if v != 0]
    if not present:
        raise InputError("seed label map is empty", path, "annotate the object on at least one slice")
    if label_value is None:
        return present
    if label_value not in present:
        raise InputError(f"label {label_value} is not in the seed label map", path,
                         f"it holds {', '.join(map(str, present[:20]))}")
    return [label_value]


def _ranges(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices[:12]) + (" ..." if len(indices) > 12 else "")


def _progress_printer(value: int):
    def show(progress: PropagationProgress) -> None:
        if progress.slices_done % PROGRESS_EVERY == 0:
            report(f"label {value}: {progress.slices_done} slices done, now slice {progress.current_index}")

    return show
