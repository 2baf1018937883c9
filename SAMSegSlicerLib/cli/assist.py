"""``samseg assist learn IMAGE LABELS --labels N --slices K --out ADAPTER``: learn a structure's prompts
from K of its annotated slices; ``samseg assist info ADAPTER``: what an adapter file holds."""

from __future__ import annotations

import json

import numpy as np

from ..assist import (
    PROMPT_KINDS,
    AnnotatedSlice,
    LearnOptions,
    check_kinds,
    learn_prompts,
    load_adapter,
    save_adapter,
    training_slices,
)
from ..errors import InputError
from ..evaluation import check_label_values
from ..volume import read_labelmap
from .common import (
    add_model_args,
    add_volume_args,
    check_output_path,
    engine_from_args,
    open_volume,
    parse_int_list,
    report,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("assist", help="learn a structure's prompts from a few annotated slices")
    commands = parser.add_subparsers(dest="assist_command", required=True, metavar="ACTION")
    learn = commands.add_parser("learn", help="learn a prompt adapter for one label from K of its slices")
    learn.add_argument("image")
    learn.add_argument("labels", help="label map (may be on another grid: resampled nearest-neighbour)")
    learn.add_argument("--labels", dest="label_value", type=int, required=True, help="the label value to learn")
    learn.add_argument("--slices", type=int, default=2,
                       help="learn from K slices around the label's median slice (default 2)")
    learn.add_argument("--indices", default=None,
                       help="learn from these slice indices instead (comma-separated, along --axis)")
    learn.add_argument("--kinds", default=None,
                       help=f"prompt kinds to learn, comma-separated from {', '.join(PROMPT_KINDS)} "
                            "(default: box+points for box-only models such as LiteMedSAM, else points)")
    learn.add_argument("--steps", type=int, default=LearnOptions().steps, help="optimisation steps")
    learn.add_argument("--seed", type=int, default=0, help="random seed (the result is deterministic)")
    learn.add_argument("--out", required=True, help="adapter file to write (.safetensors)")
    add_model_args(learn)
    add_volume_args(learn)
    learn.set_defaults(handler=run_learn)
    info = commands.add_parser("info", help="print an adapter file's model, kinds and learning facts as JSON")
    info.add_argument("adapter")
    info.set_defaults(handler=run_info)


def run_learn(args) -> int:
    out = check_output_path(args.out, [args.image, args.labels])
    if args.slices < 1:
        raise InputError(f"--slices must be at least 1, got {args.slices}", None, "e.g. --slices 2")
    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}", None, "e.g. --steps 60")
    kinds = None if args.kinds is None else check_kinds([k.strip() for k in args.kinds.split(",") if k.strip()])
    volume = open_volume(args.image)
    labels_kji = read_labelmap(args.labels, volume)
    check_label_values(labels_kji, [args.label_value])
    truth = volume.axes(args.axis).stack(labels_kji == args.label_value)
    if args.indices:
        indices = parse_int_list(args.indices, "indices")
        empty = [i for i in indices if not 0 <= i < len(truth) or not truth[i].any()]
        if empty:
            raise InputError(f"label {args.label_value} is not on {args.axis} slice(s) "
                             f"{', '.join(map(str, empty))}", args.labels, "give slices that hold the label")
    else:
        indices = training_slices(truth, args.slices)
    engine = engine_from_args(args, volume)
    slices = [AnnotatedSlice(args.axis, i, np.array(truth[i])) for i in indices]
    report(f"label {args.label_value}: learning from {args.axis} slices {', '.join(map(str, indices))}")
    options = LearnOptions(steps=args.steps, seed=args.seed)
    adapter = learn_prompts(engine, slices, kinds, options, progress=_progress(), cancel=args.cancel)
    save_adapter(adapter, out)
    report(f"learned {', '.join(adapter.prompt_kinds)} in {adapter.info['steps']} steps, "
           f"{adapter.info['seconds']:.1f} s; wrote {out}")
    return 0


def _progress():
    shown = {"tenth": -1}

    def show(done: int, planned: int) -> None:
        tenth = 10 * done // max(1, planned)
        if tenth != shown["tenth"]:
            shown["tenth"] = tenth
            report(f"  step {done}/{planned}")

    return show


def run_info(args) -> int:
    adapter = load_adapter(args.adapter)
    print(json.dumps({"model": adapter.model_weights, "prompt_kinds": list(adapter.prompt_kinds),
                      "box_half_mm": adapter.box_half_mm, "checksum": adapter.checksum, **adapter.info}, indent=2))
    return 0
