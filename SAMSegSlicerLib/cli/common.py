"""Options and helpers shared by the ``samseg`` commands."""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from ..cache import DEFAULT_DISK_BYTES
from ..engine import SliceEngine
from ..errors import InputError
from ..factory import EngineOptions, make_cache, make_engine
from ..geometry import AXES
from ..models import ARCHITECTURES, DEVICE_CHOICES, MODEL_SPECS, PRECISION_CHOICES
from ..output import check_output, write_bytes
from ..volume import Volume, read_volume


def report(message: str) -> None:
    """A progress or status line for the user (stderr, so stdout stays machine-readable)."""
    print(message, file=sys.stderr, flush=True)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None, help=f"registered model ({', '.join(MODEL_SPECS)}); default litemedsam")
    group.add_argument("--checkpoint", default=None, help="a user checkpoint file of a known architecture")
    group.add_argument("--arch", default=None, choices=ARCHITECTURES, help="architecture of --checkpoint")
    group.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} (default auto: cuda, mps, cpu)")
    group.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                       help="encoder precision (default auto: bf16 where the hardware runs it natively)")


def add_volume_args(parser: argparse.ArgumentParser, axis: bool = True) -> None:
    group = parser.add_argument_group("volume")
    group.add_argument("--window", default="auto",
                       help="intensity window: auto (default), abdomen, soft_tissue, lung, bone, brain, percentile "
                            "or LEVEL,WIDTH")
    if axis:
        group.add_argument("--axis", default="axial", choices=AXES, help="slicing axis (default axial)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk embedding cache")
    group.add_argument("--cache-dir", default=None,
                       help="embedding cache folder (default $SAMSEG_CACHE_DIR or ~/.cache/samseg/embeddings)")
    group.add_argument("--cache-size-gb", type=finite_number(minimum=0.0), default=DEFAULT_DISK_BYTES / 2**30,
                       help="disk cache size cap in GiB (least recently used entries go first; default 5)")


def finite_number(minimum: float):
    """An argparse type: a finite number >= ``minimum`` (NaN and infinities are refused where parsed)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= {minimum:g}")
        return value

    return parse


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(model=args.model, checkpoint=args.checkpoint, arch=args.arch, device=args.device,
                         precision=args.precision, window=args.window, disk_cache=not args.no_cache,
                         cache_dir=args.cache_dir, cache_disk_bytes=int(args.cache_size_gb * 2**30))


def engine_from_args(args: argparse.Namespace, volume: Volume) -> SliceEngine:
    """The command's engine; its worker thread is stopped at exit, after dropping cancelled prefetches
    (a torch call still running in a daemon thread at interpreter exit aborts the process)."""
    options = engine_options(args)
    cache = make_cache(options, lambda line: report(f"warning: {line}"))
    engine = make_engine(volume, options, cache=cache)
    atexit.register(engine.worker.shutdown)
    report(f"model {engine.model.model_id} on {engine.model.device}; window {engine.window.describe()}")
    return engine


def open_volume(path: str) -> Volume:
    volume = read_volume(path)
    for note in volume.notes:
        report(f"note: {note}")
    return volume


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be integers separated by commas, got {text!r}", None,
                         f"e.g. --{what} 1,2,3") from None
    if not values:
        raise InputError(f"no {what} given", None, f"e.g. --{what} 1,2,3")
    return values


def check_output_path(path: str, inputs: Iterable[str | os.PathLike] = (),
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """Fail before any work when the output cannot be written or would overwrite one of ``inputs``."""
    return check_output(path, inputs, suffixes)


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    return write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())
