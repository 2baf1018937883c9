"""Assemble a :class:`~.engine.SliceEngine` from user-level choices (used by the CLI and the Slicer module)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import DEFAULT_DISK_BYTES, DEFAULT_MEMORY_BYTES, DiskStore, EmbeddingCache, disk_problem_line
from .engine import SliceEngine
from .models import load_model, resolve_spec
from .models.download import Progress
from .models.sam_model import SamModel
from .paths import embedding_cache_dir
from .volume import Volume
from .window import resolve_window
from .worker import TorchWorker, shared_worker


@dataclass(frozen=True)
class EngineOptions:
    """What a user can choose about the model, its device and the embedding cache."""

    model: str | None = None
    checkpoint: str | None = None
    arch: str | None = None
    device: str = "auto"
    precision: str = "auto"
    window: str = "auto"
    disk_cache: bool = True
    cache_dir: str | None = None
    cache_disk_bytes: int = DEFAULT_DISK_BYTES
    cache_memory_bytes: int = DEFAULT_MEMORY_BYTES


def open_model(options: EngineOptions, download: bool = True, progress: Progress | None = None,
               worker: TorchWorker | None = None) -> SamModel:
    """Resolve, verify and load the model on the torch thread (``worker``, default the shared one)."""
    spec = resolve_spec(options.model, options.checkpoint, options.arch)
    worker = worker if worker is not None else shared_worker()
    return worker.run(lambda: load_model(spec, options.device, options.precision, download=download,
                                         progress=progress))


def make_cache(options: EngineOptions, on_disk_problem: Callable[[str], None] | None = None) -> EmbeddingCache:
    """The memory cache over the disk store; a disk store that cannot be used is reported through
    ``on_disk_problem`` (once) and left out."""
    disk = None
    if options.disk_cache:
        folder = options.cache_dir or "the default cache folder"
        try:  # no home folder raises RuntimeError
            folder = Path(options.cache_dir).expanduser() if options.cache_dir else embedding_cache_dir()
            disk = DiskStore(folder, options.cache_disk_bytes)
        except (OSError, RuntimeError) as error:
            if on_disk_problem is not None:
                on_disk_problem(disk_problem_line(folder, error))
    return EmbeddingCache(options.cache_memory_bytes, disk, on_disk_problem)


def make_engine(volume: Volume, options: EngineOptions, model: SamModel | None = None,
                cache: EmbeddingCache | None = None, worker: TorchWorker | None = None) -> SliceEngine:
    """An engine for ``volume``; pass ``model``/``cache``/``worker`` to share them between volumes."""
    window = resolve_window(options.window, volume.voxels_kji, volume.modality)  # a bad window fails before the load
    worker = worker if worker is not None else shared_worker()
    model = model if model is not None else open_model(options, worker=worker)
    return SliceEngine(model, volume, window, cache if cache is not None else make_cache(options), worker)
