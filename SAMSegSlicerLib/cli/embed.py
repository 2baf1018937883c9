"""``samseg embed IMAGE``: encode slices into the disk cache ahead of time."""

from __future__ import annotations

from ..errors import InputError
from ..geometry import AXES
from .common import add_model_args, add_volume_args, engine_from_args, open_volume, report


def register(subparsers) -> None:
    parser = subparsers.add_parser("embed", help="fill the embedding cache for a volume (so prompts answer at once)")
    parser.add_argument("image")
    parser.add_argument("--axes", default="axial", help="comma-separated axes to encode (default axial), or all")
    add_model_args(parser)
    add_volume_args(parser, axis=False)
    parser.set_defaults(handler=run)


def run(args) -> int:
    if args.no_cache:
        raise InputError("embed with --no-cache would throw its work away", None, "drop --no-cache")
    axes = AXES if args.axes == "all" else tuple(a.strip() for a in args.axes.split(","))
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise InputError(f"unknown axis {unknown[0]!r}", None, f"use {', '.join(AXES)} or all")
    volume = open_volume(args.image)
    engine = engine_from_args(args, volume)
    for axis in axes:
        _check_disk_cache(engine)
        total = engine.n_slices(axis)

        def progress(done: int, total: int, axis=axis) -> None:
            if done == total or done % 10 == 0:
                report(f"{axis}: {done}/{total} slices")

        encoded = engine.encode(axis, range(total), progress, cancel=args.cancel)
        report(f"{axis}: {encoded} slices encoded, {total - encoded} already cached")
    _check_disk_cache(engine)
    report(f"cache: {engine.cache.disk.folder} ({engine.cache.disk.total_bytes / 2**20:.1f} MiB)")
    return 0


def _check_disk_cache(engine) -> None:
    if engine.cache.disk is None:
        raise InputError("embed fills the disk cache, which cannot be used (see the warning above)", None,
                         "give a writable --cache-dir with free space")
