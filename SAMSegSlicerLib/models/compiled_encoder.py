"""A compiled image encoder, built once per machine and model and kept in the per-user cache.

Why OpenVINO: measured on a 2-core Zen 4 (bf16) against our eager encoder, OpenVINO ran LiteMedSAM's
encoder 1.7-2x faster (with :mod:`.tinyvit_export`'s attention), built in ~30 s and loads in ~0.2 s;
``torch.compile`` with frozen weights gave 1.37x after a 40-65 s compile; AOTInductor
(``aoti_compile_and_package``) with autocast was slower than eager; ``max_autotune`` added nothing.

The artifact is OpenVINO's compiled model exported as a blob.  It lives in
``paths.compiled_encoder_dir()/<key digest>/`` with the embedding of a fixed check image computed by
the eager encoder and a manifest (written last) holding the key and the SHA-256 of each file.  The
key (:class:`ArtifactKey`) holds everything the compiled numbers depend on: the model's checksum,
architecture, precision and input size, the torch and OpenVINO versions and the CPU (instruction
set and flags).  Before use, a folder is checked: manifest key, file checksums, then the compiled
encoder runs the check image and must agree with the stored eager embedding.  A folder failing any
check is deleted and built again, never used.  Builds write into a temporary folder beside the
target and rename it into place, so a killed build leaves nothing half-written behind.

Compiled embeddings are close to the eager bf16 ones, not identical, so a model using the compiled
encoder gets another ``model_id`` (``...+openvino-<digest>``) and embeddings cached by one are never
served as the other's.

Nothing waits for a build: :func:`attach_ready` (called by ``load_model``) only uses a folder that is
already built; :func:`start_background_build` builds in a separate, low-priority process (torch run
on a second thread of the application would slow every later decode, see :mod:`..worker`) and
switches the model over on its torch thread when done.  ``samseg models prepare`` builds ahead of
time.  ``SAMSEG_COMPILED_ENCODER=0`` turns all of it off.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..paths import compiled_encoder_dir

if TYPE_CHECKING:
    from ..worker import TorchWorker
    from .sam_model import SamModel

FORMAT_VERSION = 2  # 2: TinyViT blocks exported as tinyvit_export.ChannelsLastBlock (another graph, other rounding)
BACKEND = "openvino"
ENABLE_ENV = "SAMSEG_COMPILED_ENCODER"
BLOB, REFERENCE, MANIFEST = "encoder.blob", "reference.npy", "manifest.json"
TEMP_PREFIX = ".build-"
STALE_TEMP_SECONDS = 3600.0
# The check: on the check image, the compiled encoder's relative L2 distance from the float32
# encoder may exceed the eager encoder's (same precision) by at most ERROR_MARGIN times or
# ERROR_SLACK, whichever allows more, and never ERROR_CEILING.  Measured in bf16: LiteMedSAM eager
# 4.9-5.9 %, OpenVINO 4.2-5.7 % (2.7-3.6 % from each other); SAM ViT-B with random weights eager
# 0.8 %, OpenVINO 1.0 %; in fp32 both ~4e-6.  A wrong or damaged build is off by tens of percent.
PRECISIONS = ("bf16", "fp32")
ERROR_MARGIN, ERROR_SLACK, ERROR_CEILING = 1.5, 0.01, 0.12


def error_limit(eager_error: float) -> float:
    return min(max(ERROR_MARGIN * eager_error, eager_error + ERROR_SLACK), ERROR_CEILING)
BUILD_STEPS = ("loading the model", "converting to OpenVINO", "compiling", "checking against the eager encoder",
               "saving")

Progress = Callable[[int, int, str], None]  # (step done, steps, text)
Status = Callable[[str], None]


class ArtifactProblem(Exception):
    """A compiled encoder folder that cannot be used; ``missing``: nothing was built there yet."""

    def __init__(self, what: str, missing: bool = False):
        super().__init__(what)
        self.missing = missing


# --- what the artifact depends on --------------------------------------------------------------------
def runtime_version() -> str | None:
    """The installed OpenVINO's version, or None."""
    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_signature() -> str:
    """What decides which kernels the compiler picks: machine, instruction set and the CPU's flags."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    described = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("flags", "model name")):
                    described += "|" + " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return f"{platform.machine()}-{capability}-{hashlib.sha256(described.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class ArtifactKey:
    """Everything a compiled encoder's numbers depend on; its digest names the folder."""

    arch: str
    model_checksum: str
    precision: str
    input_size: int
    torch: str
    runtime: str
    cpu: str
    format: int = FORMAT_VERSION

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()[:32]

    @property
    def variant(self) -> str:
        """What the model id gets appended when this compiled encoder answers."""
        return f"{BACKEND}-{self.digest()[:12]}"

    def same_model(self, other: ArtifactKey) -> bool:
        return (self.arch, self.model_checksum, self.precision, self.input_size) == \
            (other.arch, other.model_checksum, other.precision, other.input_size)


def artifact_key(model: SamModel, runtime: str | None = None, cpu: str | None = None) -> ArtifactKey:
    import torch

    return ArtifactKey(arch=model.spec.arch, model_checksum=model.weights_checksum, precision=model.precision,
                       input_size=int(model.input_size), torch=torch.__version__,
                       runtime=f"{BACKEND} {runtime or runtime_version()}", cpu=cpu or cpu_signature())


def unavailable_reason(model: SamModel) -> str | None:
    """Why ``model`` cannot get a compiled encoder here, or None."""
    if os.environ.get(ENABLE_ENV, "1") == "0":
        return f"turned off ({ENABLE_ENV}=0)"
    if model.device.type != "cpu":
        return f"it is for the CPU; on {model.device.type} the eager encoder is used"
    if model.precision not in PRECISIONS:
        return f"there is none for precision {model.precision} (only {' and '.join(PRECISIONS)})"
    if not model.weights_checksum:
        return "the model's checksum is unknown"
    if runtime_version() is None:
        return "OpenVINO is not installed (pip install openvino)"
    return None


def artifact_folder(key: ArtifactKey, root: Path | None = None) -> Path:
    return (root if root is not None else compiled_encoder_dir()) / key.digest()


# --- the check image -------------------------------------------------------------------------------------
def check_image(size: int) -> np.ndarray:
    """A fixed, CT-like [0, 1] test image: smooth background, bright and dark discs, fine noise."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = 0.35 + 0.15 * np.sin(6 * rows) * np.cos(4 * cols)
    for (r, c, radius, value) in ((0.5, 0.5, 0.35, 0.55), (0.4, 0.35, 0.08, 0.9), (0.6, 0.62, 0.1, 0.15),
                                  (0.3, 0.65, 0.05, 0.75)):
        image[(rows - r) ** 2 + (cols - c) ** 2 < radius ** 2] = value
    image += np.random.default_rng(17).normal(0.0, 0.02, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def check_input(model: SamModel) -> np.ndarray:
    """The check image as the encoder's (1, 3, S, S) float32 input: what ``model.preprocess`` makes of it
    (the image is already S x S), in numpy so that threads other than the torch thread can build it."""
    batch = np.repeat(check_image(model.input_size)[None, None], 3, axis=1)
    if model.spec.pixel_mean is not None:
        mean = np.asarray(model.spec.pixel_mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(model.spec.pixel_std, np.float32).reshape(1, 3, 1, 1)
        batch = (batch - mean) / std
    return np.ascontiguousarray(batch, dtype=np.float32)


def compare(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(max abs difference, relative L2 difference)."""
    got, expected = np.asarray(got, np.float32), np.asarray(expected, np.float32)
    if got.shape != expected.shape or not np.isfinite(got).all():
        return float("inf"), float("inf")
    difference = got - expected
    return float(np.abs(difference).max()), float(np.linalg.norm(difference) / max(np.linalg.norm(expected), 1e-12))


# --- the compiled encoder --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """What a build wrote and measured.  On the check image: ``max_abs_diff``/``relative_diff`` between
    the compiled and the eager encoder (same precision); ``compiled_error``/``eager_error``: each one's
    relative L2 distance from the float32 encoder, whose embedding is the stored reference."""

    key: dict
    files: dict
    build_seconds: float
    max_abs_diff: float
    relative_diff: float
    compiled_error: float
    eager_error: float
    created: str

    @property
    def error_limit(self) -> float:
        return error_limit(self.eager_error)

    def describe(self) -> str:
        return (f"built in {self.build_seconds:.0f} s; check image vs eager: max |diff| {self.max_abs_diff:.3g}; "
                f"error vs fp32 {self.compiled_error:.2%} (eager {self.eager_error:.2%})")


def runtime_config(precision: str, threads: int) -> dict:
    return {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}


class CompiledEncoder:
    """The compiled image encoder: ``encoder(batch)`` as the eager module, float32 (B, C, h, w) out.
    One slice per call (it is compiled for one); run it on the torch thread only."""

    def __init__(self, compiled_model, key: ArtifactKey, manifest: Manifest | None, load_seconds: float = 0.0):
        self._request = compiled_model.create_infer_request()
        self.key = key
        self.variant = key.variant
        self.manifest = manifest
        self.load_seconds = load_seconds

    def run_numpy(self, array: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: np.ascontiguousarray(array, dtype=np.float32)})
        return np.array(result[0], dtype=np.float32, copy=True)

    def __call__(self, batch):
        import torch

        batch = batch.float().contiguous().cpu()
        return torch.cat([torch.from_numpy(self.run_numpy(batch[n:n + 1].numpy())) for n in range(batch.shape[0])])

    def describe(self) -> str:
        return f"{self.variant}" + (f" ({self.manifest.describe()})" if self.manifest else "")


def _digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(folder: Path, key: ArtifactKey) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise ArtifactProblem("not built yet", missing=True)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(**{f.name: raw[f.name] for f in fields(Manifest)})
    except (OSError, ValueError, KeyError, TypeError):
        raise ArtifactProblem("its manifest is unreadable") from None
    if manifest.key != asdict(key):
        raise ArtifactProblem("it was built for another model, torch, OpenVINO or CPU")
    if set(manifest.files) != {BLOB, REFERENCE}:
        raise ArtifactProblem("its manifest lists other files")
    for name, expected in manifest.files.items():
        try:
            if _digest_file(folder / name) != expected:
                raise ArtifactProblem(f"{name} does not match its checksum")
        except OSError:
            raise ArtifactProblem(f"{name} is missing or unreadable") from None
    return manifest


def load_artifact(key: ArtifactKey, check: np.ndarray, threads: int, root: Path | None = None) -> CompiledEncoder:
    """The verified compiled encoder of ``key``; raises :class:`ArtifactProblem` (the folder is left
    as it is: see :func:`discard`).  ``check``: the check input (:func:`check_input`) as numpy."""
    import openvino as ov

    started = time.perf_counter()
    folder = artifact_folder(key, root)
    manifest = _read_manifest(folder, key)
    try:
        reference = np.load(folder / REFERENCE, allow_pickle=False)
        compiled = ov.Core().import_model(io.BytesIO((folder / BLOB).read_bytes()), "CPU",
                                          runtime_config(key.precision, threads))
        encoder = CompiledEncoder(compiled, key, manifest)
        got = encoder.run_numpy(check)
    except (OSError, ValueError, RuntimeError) as error:
        raise ArtifactProblem(f"it does not load ({type(error).__name__})") from None
    _, error = compare(got, reference)
    if not error <= manifest.error_limit:
        raise ArtifactProblem(f"its check embedding is off (relative error {error:.3g}, limit "
                              f"{manifest.error_limit:.3g})")
    encoder.load_seconds = time.perf_counter() - started
    return encoder


def discard(folder: Path) -> None:
    """Delete a compiled encoder folder: only the files this module writes, then the folder."""
    for name in (MANIFEST, BLOB, REFERENCE):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return
    try:
        folder.rmdir()
    except OSError:
        pass


def _prune(root: Path, key: ArtifactKey) -> None:
    """Remove folders of the same model built for an older torch/OpenVINO/CPU, and stale temporary folders."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(TEMP_PREFIX):
            try:
                if time.time() - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                    discard(entry)
            except OSError:
                pass
            continue
        if entry.name == key.digest() or not (entry / MANIFEST).is_file():
            continue
        try:
            other = ArtifactKey(**json.loads((entry / MANIFEST).read_text(encoding="utf-8"))["key"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if other.same_model(key):
            discard(entry)


# --- building ----------------------------------------------------------------------------------------------
def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _exportable_network(model: SamModel, rewrites: tuple[str, ...] | None = None):
    """The model's image encoder as a plain float32 module a converter can trace (no oneDNN-only ops);
    ``rewrites``: which of :mod:`.tinyvit_export`'s rewrites (default all; the benchmark compares them)."""
    from .download import checkpoint_path
    from .sam_model import _build_network, _fuse_conv_bn, _load_state
    from .tinyvit_export import REWRITES, exportable_encoder

    path = checkpoint_path(model.spec, download=False)
    network, _ = _build_network(model.spec, _load_state(path, model.spec), path)
    encoder = network.image_encoder.eval().requires_grad_(False)
    if model.spec.arch == "litemedsam":
        _fuse_conv_bn(encoder)
    return exportable_encoder(encoder, REWRITES if rewrites is None else rewrites)


def build_artifact(model: SamModel, progress: Progress | None = None, root: Path | None = None,
                   threads: int | None = None) -> Manifest:
    """Compile ``model``'s encoder (the eager one: ``model`` must not use a compiled encoder), check it
    against the eager encoder and save it atomically.  Runs torch: call it on the torch thread."""
    import openvino as ov
    import torch

    if model.compiled_encoder is not None:
        raise ValueError("build_artifact needs the model's eager encoder")
    reason = unavailable_reason(model)
    if reason is not None:
        raise ModelError(f"no compiled encoder: {reason}")
    started = time.perf_counter()
    threads = int(threads or torch.get_num_threads())
    key = artifact_key(model)
    root = root if root is not None else compiled_encoder_dir()

    def step(n: int) -> None:
        if progress is not None:
            progress(n, len(BUILD_STEPS), BUILD_STEPS[n] if n < len(BUILD_STEPS) else "done")

    step(0)
    encoder = _exportable_network(model)
    example = torch.from_numpy(check_input(model))
    step(1)
    import warnings

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(encoder, example_input=example)
    step(2)
    compiled = ov.Core().compile_model(converted, "CPU", runtime_config(model.precision, threads))
    step(3)
    with torch.inference_mode():
        reference = encoder(example).float().numpy()  # float32, the exact encoder
    eager = model.run_eager_encoder(example).float().numpy()
    got = CompiledEncoder(compiled, key, None).run_numpy(example.numpy())
    max_abs, relative = compare(got, eager)
    (_, compiled_error), (_, eager_error) = compare(got, reference), compare(eager, reference)
    if not compiled_error <= error_limit(eager_error):
        raise ModelError(f"the compiled encoder is less exact than the eager one (error vs fp32 {compiled_error:.3g}, "
                         f"eager {eager_error:.3g}); it was not saved", None, "the eager encoder stays in use")
    step(4)
    blob = io.BytesIO()
    compiled.export_model(blob)
    try:
        root.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{key.digest()[:8]}-", dir=root))
    except OSError as error:
        raise ModelError(f"cannot write the compiled encoder folder ({error.strerror})", str(root),
                         "set SAMSEG_COMPILED_DIR to a folder you can write to") from None
    try:
        _write_synced(temp / BLOB, blob.getvalue())
        reference_bytes = io.BytesIO()
        np.save(reference_bytes, reference.astype(np.float32), allow_pickle=False)
        _write_synced(temp / REFERENCE, reference_bytes.getvalue())
        manifest = Manifest(key=asdict(key), files={name: _digest_file(temp / name) for name in (BLOB, REFERENCE)},
                            build_seconds=round(time.perf_counter() - started, 2), max_abs_diff=max_abs,
                            relative_diff=relative, compiled_error=compiled_error, eager_error=eager_error,
                            created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        _write_synced(temp / MANIFEST, json.dumps(asdict(manifest), indent=1).encode())
        final = artifact_folder(key, root)
        if final.exists():  # a broken folder (verified before every use) or another builder's result
            discard(final)
        try:
            os.rename(temp, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
    except OSError as error:
        raise ModelError(f"cannot write the compiled encoder ({error.strerror or error})", str(root),
                         "free some space or set SAMSEG_COMPILED_DIR") from None
    finally:
        if temp.exists():
            discard(temp)
    _prune(root, key)
    step(5)
    return manifest


# --- using it ----------------------------------------------------------------------------------------------
def _load_verified(model: SamModel, threads: int, root: Path | None = None) -> CompiledEncoder:
    """Load ``model``'s built compiled encoder; a folder that fails its checks is deleted, and
    :class:`ArtifactProblem` says why.  Runs no torch operation (any thread may call it)."""
    key = artifact_key(model)
    try:
        return load_artifact(key, check_input(model), threads, root)
    except ArtifactProblem as problem:
        if not problem.missing:
            discard(artifact_folder(key, root))
        raise


def attach_ready(model: SamModel, root: Path | None = None) -> str:
    """Switch ``model`` to its compiled encoder when one is already built and passes its checks (called on
    the torch thread by ``load_model``; costs ~0.3 s).  Never builds.  Returns a status line."""
    reason = unavailable_reason(model)
    if reason is not None:
        return f"compiled encoder not used: {reason}"
    try:
        encoder = _load_verified(model, _threads(), root)
    except ArtifactProblem as problem:
        text = "not built yet" if problem.missing else f"deleted, it will be built again: {problem}"
        result = f"compiled encoder {text}"
    else:
        model.use_compiled_encoder(encoder)
        result = f"compiled encoder in use: {encoder.describe()}"
    if _background.enabled and model.compiled_encoder is None:
        start_background_build(model, on_status=_background.on_status, root=root)
    return result


@dataclass
class _BackgroundPolicy:
    enabled: bool = False
    on_status: Status | None = None


_background = _BackgroundPolicy()
_in_flight: dict[str, Future] = {}
_in_flight_lock = threading.Lock()
_processes: set[subprocess.Popen] = set()


def build_after_every_load(on_status: Status | None = None) -> None:
    """For applications (the Slicer module, the web app): from now on every model loaded in this process
    without a built compiled encoder gets one built in the background (:func:`start_background_build`).
    ``on_status`` receives progress lines from a helper thread."""
    _background.enabled = True
    _background.on_status = on_status


Builder = Callable[["SamModel", Progress, "Path | None"], None]


def start_background_build(model: SamModel, worker: TorchWorker | None = None, on_status: Status | None = None,
                           root: Path | None = None, builder: Builder | None = None) -> Future:
    """Build ``model``'s compiled encoder in a separate low-priority process and switch the model to it on
    ``worker`` (the shared torch thread by default) once it is built and verified.  Until then the eager
    encoder answers.  The future resolves with a status line (also given to ``on_status``); it never
    raises: a failed build leaves the eager encoder in use.  ``builder``: how to build (tests)."""
    from ..worker import URGENT, shared_worker

    say = on_status or (lambda line: None)
    done: Future = Future()
    reason = unavailable_reason(model)
    if reason is not None or model.compiled_encoder is not None:
        done.set_result(f"compiled encoder not built: {reason}" if reason else "compiled encoder already in use")
        return done
    worker = worker if worker is not None else shared_worker()
    digest = artifact_key(model).digest()
    with _in_flight_lock:
        if digest in _in_flight:
            return _in_flight[digest]
        _in_flight[digest] = done
    build = builder or run_builder_process
    threads = _threads()  # on the caller's thread: a new thread does not see torch.set_num_threads

    def progress(step: int, steps: int, text: str) -> None:
        say(f"Compiled encoder: {text} ({step}/{steps}); the eager encoder answers meanwhile")

    def run() -> None:
        try:
            try:
                encoder = _load_verified(model, threads, root)
            except ArtifactProblem:
                build(model, progress, root)
                encoder = _load_verified(model, threads, root)
            worker.submit(lambda: model.use_compiled_encoder(encoder), priority=URGENT).result()
            line = f"Compiled encoder in use: {encoder.describe()}"
        except Exception as error:  # the eager encoder stays; say why in one line
            what = error.one_line() if hasattr(error, "one_line") else f"{type(error).__name__}: {error}"
            line = f"Compiled encoder not built, the eager encoder stays in use: {what}"
        finally:
            with _in_flight_lock:
                _in_flight.pop(digest, None)
        say(line)
        done.set_result(line)

    threading.Thread(target=run, name="samseg-compile", daemon=True).start()
    return done


# --- the builder process -----------------------------------------------------------------------------------
PROGRESS_PREFIX, ERROR_PREFIX = "samseg-build-progress ", "samseg-build-error "


def _python_executable() -> str:
    """A Python that runs ``-m`` (inside 3D Slicer ``sys.executable`` may be the application itself)."""
    executable = Path(sys.executable)
    if executable.name.lower().startswith("python"):
        return str(executable)
    for candidate in (executable.parent / "PythonSlicer", executable.parent / "PythonSlicer.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("python3") or str(executable)


def _spec_json(model: SamModel) -> str:
    spec = model.spec
    return json.dumps({"name": spec.name, "checkpoint": spec.local_path, "arch": spec.arch,
                       "precision": model.precision})


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def run_builder_process(model: SamModel, progress: Progress, root: Path | None = None) -> None:
    """Build in ``python -m SAMSegSlicerLib.models.compiled_encoder`` (idle priority, one thread); raises
    :class:`ModelError` with the child's one-line reason when it fails."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"
    if root is not None:
        env["SAMSEG_COMPILED_DIR"] = str(root)
    process = subprocess.Popen([_python_executable(), "-m", "SAMSegSlicerLib.models.compiled_encoder",
                                _spec_json(model)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, text=True, env=env)
    _processes.add(process)
    error = None
    try:
        for line in process.stdout:
            if line.startswith(PROGRESS_PREFIX):
                step, steps, text = line[len(PROGRESS_PREFIX):].rstrip("\n").split(" ", 2)
                progress(int(step), int(steps), text)
            elif line.startswith(ERROR_PREFIX):
                error = line[len(ERROR_PREFIX):].strip()
        code = process.wait()
    finally:
        _processes.discard(process)
    if code != 0:
        raise ModelError(error or f"the build process stopped (exit code {code})")


@atexit.register
def _stop_builders() -> None:
    for process in list(_processes):
        process.terminate()


def _builder_main(argv: list[str]) -> int:
    """The builder process: build one model's compiled encoder, report progress lines on stdout."""
    from ..errors import SamSegError
    from .registry import resolve_spec
    from .sam_model import load_model

    # The application's clicks come first: on Linux this process only gets CPU time nobody else wants
    # (SCHED_IDLE); elsewhere the lowest nice level.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except (AttributeError, OSError):
            pass
    try:
        request = json.loads(argv[0])
        import torch

        torch.set_num_threads(1)
        spec = resolve_spec(request["name"] if not request["checkpoint"] else None, request["checkpoint"],
                            request["arch"] if request["checkpoint"] else None)
        model = load_model(spec, "cpu", request["precision"], download=False, compiled=False)
        build_artifact(model, lambda step, steps, text: print(f"{PROGRESS_PREFIX}{step} {steps} {text}", flush=True),
                       threads=1)
    except SamSegError as error:
        print(f"{ERROR_PREFIX}{error.one_line()}", flush=True)
        return 2
    except Exception as error:  # one line for the parent's status, not a traceback
        print(f"{ERROR_PREFIX}{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}",
              flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_builder_main(sys.argv[1:]))
