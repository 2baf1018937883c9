"""``samseg evaluate IMAGE LABELS --labels N,M --protocol P``: a simulated user, 3-D Dice per label."""

from __future__ import annotations

from pathlib import Path

from ..assist import PromptAdapter, load_adapter
from ..auto import AUTO_MODES
from ..errors import InputError, ModelError
from ..evaluation import PROTOCOLS, EvalOptions, check_label_values, run_evaluation
from ..evaluation.propagate import GUARDS
from ..models.registry import ModelSpec, resolve_spec
from ..models.sam_model import model_identity
from ..volume import read_labelmap
from .common import (
    add_model_args,
    add_volume_args,
    check_output_path,
    engine_from_args,
    finite_number,
    open_volume,
    parse_int_list,
    report,
    write_json,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="simulate a user on labelled data and report 3-D Dice")
    parser.add_argument("image")
    parser.add_argument("labels", help="label map (may be on another grid: resampled nearest-neighbour)")
    parser.add_argument("--labels", dest="label_values", required=True, help="label values, e.g. 1,2,3,5,6")
    parser.add_argument("--protocol", default="box", choices=sorted(PROTOCOLS), help="simulated user (default box)")
    parser.add_argument("--clicks", type=int, default=1, help="prompts per slice for clicks/scribbles/lasso (K)")
    parser.add_argument("--jitter", type=finite_number(minimum=0.0), default=0.0,
                        help="box protocol: move each box edge up to PX pixels")
    parser.add_argument("--seed-slices", type=int, default=1,
                        help="propagate and auto protocols: seed slices per label")
    parser.add_argument("--guard", default="rules", choices=GUARDS,
                        help="propagate protocol: rules (default stop rules), presence (plus the presence guard "
                             "built from the seeds), empty (carry until the mask is empty)")
    parser.add_argument("--auto-mode", default="guided", choices=AUTO_MODES,
                        help="auto protocol: guided (propagation guarded by the presence model, default) or "
                             "prompts (a box from the presence model on every slice)")
    parser.add_argument("--random-seed", type=int, default=0, help="seed of the simulated user's randomness")
    parser.add_argument("--assist-slices", type=int, default=0,
                        help="SAM^assist: per label, learn prompts from K slices around its median slice and "
                             "evaluate on the other slices (default 0: off)")
    parser.add_argument("--adapter", default=None, help="use this learned prompt adapter (samseg assist learn)")
    parser.add_argument("--json", default=None, help="write the report as JSON here")
    add_model_args(parser)
    add_volume_args(parser)
    parser.set_defaults(handler=run)


def run(args) -> int:
    json_out = check_output_path(args.json, [args.image, args.labels, *([args.adapter] if args.adapter else [])]) \
        if args.json else None
    for flag, value in (("--clicks", args.clicks), ("--seed-slices", args.seed_slices)):
        if value < 1:
            raise InputError(f"{flag} must be at least 1, got {value}", None, f"e.g. {flag} 3")
    if args.assist_slices < 0 or (args.assist_slices and args.adapter):
        raise InputError("--assist-slices must be a positive count, and not given with --adapter", None,
                         "e.g. --assist-slices 2, or --adapter FILE alone")
    adapter = load_adapter(args.adapter) if args.adapter else None
    if adapter is not None:
        check_adapter_model(adapter, args.adapter, resolve_spec(args.model, args.checkpoint, args.arch))
    values = parse_int_list(args.label_values, "labels")
    volume = open_volume(args.image)
    labels_kji = read_labelmap(args.labels, volume)
    check_label_values(labels_kji, values)
    engine = engine_from_args(args, volume)
    options = EvalOptions(axis=args.axis, clicks=args.clicks, jitter_px=args.jitter,
                          seed=args.random_seed, seed_slices=args.seed_slices,
                          assist_slices=args.assist_slices, adapter=adapter, guard=args.guard,
                          auto_mode=args.auto_mode)
    evaluation = run_evaluation(engine, labels_kji, values, args.protocol, options, report)
    print(evaluation.table())
    if json_out:
        write_json(json_out, evaluation.as_json())
        report(f"wrote {json_out}")
    return 0


def check_adapter_model(adapter: PromptAdapter, path: str, spec: ModelSpec) -> None:
    """An adapter learned with other weights than a registered model's is refused before the model loads
    (a registered model's identity comes from its published checksum; a user checkpoint's is checked
    once it is loaded)."""
    if spec.checksum is None:
        return
    weights = model_identity(spec, Path(), "").rsplit("/", 1)[0]
    if adapter.model_weights != weights:
        raise ModelError(f"the prompt adapter was learned with {adapter.model_weights}, not with {weights}", path,
                         "learn it again with this model, or give the model it was learned with")
