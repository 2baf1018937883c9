"""``samseg auto IMAGE --from LABELS --label N``: SAM^auto, the whole structure from a few annotated slices.

Every slice of ``--from`` (a label map or a ``.seg.nrrd`` segmentation, any grid: resampled) that
holds label N is an annotated slice.  A presence model is built from them on the cached image
embeddings, and every other slice is segmented with no further prompt: by propagation guarded
by the presence model (``--mode guided``, the default) or from the presence model's own boxes
(``--mode prompts``).  ``--save-presence`` keeps the presence model; ``--presence FILE`` applies
a saved one to another volume of the same kind (the next patient) with nothing annotated there:
its position term is dropped and ``prompts`` mode runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..auto import AUTO_MODES, auto_segment
from ..errors import InputError
from ..presence import PresenceOptions, build_presence, load_presence, save_presence
from ..volume import LABELMAP_SUFFIXES, labelmap_dtype, read_labelmap, write_labelmap
from .common import add_model_args, add_volume_args, check_output_path, engine_from_args, open_volume, report
from .propagate import parse_range

PROGRESS_EVERY = 10


def register(subparsers) -> None:
    parser = subparsers.add_parser("auto", help="segment a structure on every slice from a few annotated slices "
                                                "(SAM^auto: presence model + guided propagation)")
    parser.add_argument("image")
    parser.add_argument("--from", dest="annotated", default=None,
                        help="label map or segmentation holding the structure on a few slices of the axis")
    parser.add_argument("--label", type=int, required=True, help="the structure's label value (also the output's)")
    parser.add_argument("--out", default=None,
                        help="output label map (.nii.gz, .nrrd, .seg.nrrd, .mha; default IMAGE-NAME.auto-N.nii.gz "
                             "in the current folder)")
    parser.add_argument("--mode", default=None, choices=AUTO_MODES,
                        help="guided (propagation guarded by the presence model; default with --from) or prompts "
                             "(a box from the presence model on every slice; the only mode without --from)")
    parser.add_argument("--presence", default=None,
                        help="apply this saved presence model (from another volume: no position term)")
    parser.add_argument("--save-presence", default=None, help="write the presence model built from --from here")
    parser.add_argument("--presence-head", action="store_true",
                        help="also train the presence model's light linear head (off by default; see the README)")
    parser.add_argument("--min-score", type=float, default=0.1,
                        help="prompts mode: the presence score a slice needs (default 0.1)")
    parser.add_argument("--range", dest="index_range", default=None, metavar="Z0:Z1",
                        help="only segment slices Z0..Z1 (inclusive) of the axis")
    add_model_args(parser)
    add_volume_args(parser)
    parser.set_defaults(handler=run)


def default_out(image: str, label: int) -> Path:
    name = Path(image.rstrip("/")).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(f"{name}.auto-{label}.nii.gz")


def run(args) -> int:
    if args.annotated is None and args.presence is None:
        raise InputError("nothing to learn the structure from", None,
                         "give --from LABELS (annotated slices) or --presence FILE (a saved presence model)")
    mode = args.mode or ("guided" if args.annotated else "prompts")
    if mode == "guided" and args.annotated is None:
        raise InputError("--mode guided needs annotated slices of this volume", None,
                         "give --from LABELS, or use --mode prompts with --presence")
    if args.save_presence and args.annotated is None:
        raise InputError("--save-presence needs --from (a presence model is built from annotated slices)", None,
                         "give --from LABELS")
    inputs = [args.image, *(p for p in (args.annotated, args.presence) if p)]
    out = check_output_path(str(args.out or default_out(args.image, args.label)), inputs, LABELMAP_SUFFIXES)
    save_to = check_output_path(args.save_presence, inputs, (".safetensors",)) if args.save_presence else None
    index_range = parse_range(args.index_range)
    saved = load_presence(args.presence) if args.presence else None
    volume = open_volume(args.image)
    axes = volume.axes(args.axis)
    annotated = {}
    if args.annotated:
        stack = axes.stack(read_labelmap(args.annotated, volume) == args.label)
        annotated = {int(z): np.array(stack[z]) for z in np.flatnonzero(stack.any(axis=(1, 2)))}
        if not annotated:
            raise InputError(f"label {args.label} is on no {args.axis} slice", args.annotated,
                             "annotate the structure on at least one slice, or check --label and --axis")
        report(f"label {args.label}: {len(annotated)} annotated {args.axis} slice(s): "
               f"{', '.join(map(str, sorted(annotated)[:12]))}{' ...' if len(annotated) > 12 else ''}")
    engine = engine_from_args(args, volume)
    if saved is not None:
        if saved.axis != args.axis:
            raise InputError(f"the presence model was built on the {saved.axis} axis", args.presence,
                             f"run with --axis {saved.axis}")
        presence = saved.for_other_volume() if not annotated else saved
    else:
        started = time.perf_counter()
        presence = build_presence(engine, args.axis, annotated, PresenceOptions(head=args.presence_head),
                                  cancel=args.cancel)
        report(f"presence model built from {len(annotated)} slice(s) in {time.perf_counter() - started:.2f} s")
    if save_to:
        save_presence(presence, save_to)
        report(f"wrote {save_to}")

    def progressed(done: int, planned: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == planned:
            report(f"{done}/{planned} slices")

    result = auto_segment(engine, args.axis, presence, annotated, mode, min_score=args.min_score,
                          index_range=index_range, progress=progressed, cancel=args.cancel)
    if result.propagation is not None:
        for stop in result.propagation.stops:
            report(f"  from slice {stop.seed} {'up' if stop.direction > 0 else 'down'}: kept slices up to "
                   f"{stop.last}, stopped: {stop.reason}")
    filled = sorted(index for index, mask in result.masks.items() if mask.any())
    if not filled:
        raise InputError(f"the structure was found on no {args.axis} slice", args.image,
                         "annotate a slice of this volume (--from), or lower --min-score")
    labels_kji = np.zeros(volume.voxels_kji.shape, dtype=labelmap_dtype(np.array([args.label])))
    axes.stack(labels_kji)[:] = result.stack(axes.n_slices, axes.slice_shape) * args.label
    write_labelmap(out, labels_kji, volume)
    predicted = len([i for i in filled if i not in annotated])
    print(f"label {args.label}: {len(filled)} {args.axis} slices ({filled[0]}..{filled[-1]}), {predicted} predicted "
          f"({mode}); wrote {out}")
    return 0
