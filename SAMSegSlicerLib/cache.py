"""Embedding cache: a bounded in-memory LRU in front of a signed on-disk store.

Key: (volume content hash, axis, slice index, model id, window, embedding shape).  The disk format
is plain bytes, no pickle: a magic line, a JSON header that repeats the full key, the array's dtype
and shape and a BLAKE2b digest of the payload, then the payload.  An entry whose key, dtype, shape,
size or digest does not match is deleted and reported as a miss, so a corrupt, truncated or foreign
file is recomputed, never used.  The disk store is bounded too: the least recently used entries go
first, and it counts its temporary files toward the bound.  It owns only the files it can prove it
wrote (an entry's name is a 40-digit hex digest and its content starts with the magic line; a
temporary file is ``.tmp-*.part``); nothing else in its folder is ever read as an entry or deleted.

The disk store is optional: when its folder cannot be used (read-only, full, not a folder...) the
cache says so once through ``on_disk_problem`` and goes on in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MAGIC = b"SAMSEG-EMBEDDING-1\n"
ENTRY_SUFFIX = ".emb"
ENTRY_NAME = re.compile(r"[0-9a-f]{40}\.emb")
TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".part"
STALE_TEMP_SECONDS = 600.0
EMBEDDING_DTYPE = np.dtype(np.float16)
DEFAULT_MEMORY_BYTES = 1 << 30
DEFAULT_DISK_BYTES = 5 << 30


@dataclass(frozen=True)
class CacheKey:
    volume: str
    axis: str
    index: int
    model: str
    window: str
    shape: tuple[int, ...]

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def file_name(self) -> str:
        return hashlib.blake2b(self.text().encode(), digest_size=20).hexdigest() + ENTRY_SUFFIX


@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    rejected: int = 0
    stores: int = 0


def is_entry(path: Path) -> bool:
    """Whether ``path`` is an entry this store wrote: its name scheme and its magic line."""
    if not ENTRY_NAME.fullmatch(path.name):
        return False
    try:
        with open(path, "rb") as stream:
            return stream.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class DiskStore:
    """Signed embedding files in one folder, bounded to ``max_bytes``.  Start-up removes temporary
    files left by a killed process (older than ``STALE_TEMP_SECONDS``); raises ``OSError`` when the
    folder cannot be used."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int = DEFAULT_DISK_BYTES):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.folder)
        os.close(handle)
        os.unlink(probe)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        now = time.time()
        for temp in self._temporary_files():
            if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                temp.unlink(missing_ok=True)
        self._bytes = sum(p.stat().st_size for p in (*self._entries(), *self._temporary_files()))

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def _entries(self) -> list[Path]:
        return [p for p in self.folder.glob("*" + ENTRY_SUFFIX) if is_entry(p)]

    def _temporary_files(self) -> list[Path]:
        return [p for p in self.folder.glob(TEMP_PREFIX + "*" + TEMP_SUFFIX) if p.is_file()]

    def path(self, key: CacheKey) -> Path:
        return self.folder / key.file_name()

    def contains(self, key: CacheKey) -> bool:
        return self.path(key).is_file()

    def load(self, key: CacheKey) -> np.ndarray | None:
        """The stored array, or None when absent or not trustworthy (then it is deleted)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        array = _decode_entry(data, key)
        if array is None:
            self._remove(path)  # its name is this key's digest: nobody else's file
            raise _Rejected()
        os.utime(path)
        return array

    def save(self, key: CacheKey, array: np.ndarray) -> None:
        data = _encode_entry(key, array)
        handle, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            target = self.path(key)
            previous = target.stat().st_size if is_entry(target) else 0
            os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        with self._lock:
            self._bytes += len(data) - previous
        self._evict()

    def clear(self) -> None:
        for path in self._entries():
            self._remove(path)

    def _remove(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
        with self._lock:
            self._bytes -= size

    def _evict(self) -> None:
        if self._bytes <= self.max_bytes:
            return
        for path in sorted(self._entries(), key=lambda p: p.stat().st_mtime):
            if self._bytes <= self.max_bytes:
                break
            self._remove(path)


class _Rejected(Exception):
    """A disk entry failed its checks."""


def _encode_entry(key: CacheKey, array: np.ndarray) -> bytes:
    if array.dtype != EMBEDDING_DTYPE or array.shape != tuple(key.shape):
        raise ValueError(f"embedding {array.dtype} {array.shape} does not match its key "
                         f"({EMBEDDING_DTYPE} {key.shape})")
    payload = np.ascontiguousarray(array).tobytes()
    header = {
        "key": json.loads(key.text()),
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "payload_bytes": len(payload),
        "blake2b": hashlib.blake2b(payload, digest_size=32).hexdigest(),
    }
    header_bytes = json.dumps(header, sort_keys=True).encode()
    return MAGIC + len(header_bytes).to_bytes(4, "little") + header_bytes + payload


def _decode_entry(data: bytes, key: CacheKey) -> np.ndarray | None:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        return None
    start = len(MAGIC) + 4
    header_len = int.from_bytes(data[len(MAGIC):start], "little")
    try:
        header = json.loads(data[start:start + header_len])
        dtype = np.dtype(header["dtype"])
        shape = tuple(int(n) for n in header["shape"])
        expected_bytes = int(header["payload_bytes"])
        digest = header["blake2b"]
        stored_key = header["key"]
    except (ValueError, KeyError, TypeError):
        return None
    if stored_key != json.loads(key.text()) or dtype != EMBEDDING_DTYPE or shape != tuple(key.shape):
        return None
    payload = data[start + header_len:]
    if len(payload) != expected_bytes or expected_bytes != dtype.itemsize * int(np.prod(shape)):
        return None
    if hashlib.blake2b(payload, digest_size=32).hexdigest() != digest:
        return None
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


class EmbeddingCache:
    """RAM LRU (``memory_bytes``) over an optional :class:`DiskStore`; thread-safe.

    When the disk store fails (``OSError``: full, read-only, an entry that is a folder...), the cache
    calls ``on_disk_problem`` once with one line and goes on in memory only."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, disk: DiskStore | None = None,
                 on_disk_problem: Callable[[str], None] | None = None):
        self.memory_bytes = int(memory_bytes)
        self.disk = disk
        self.on_disk_problem = on_disk_problem
        self.stats = CacheStats()
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def memory_used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def contains(self, key: CacheKey) -> bool:
        with self._lock:
            if key in self._entries:
                return True
        return self.disk is not None and self.disk.contains(key)

    def in_memory(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._entries

    def get(self, key: CacheKey) -> np.ndarray | None:
        with self._lock:
            array = self._entries.get(key)
            if array is not None:
                self._entries.move_to_end(key)
                self.stats.memory_hits += 1
                return array
        disk = self.disk
        if disk is not None:
            try:
                array = disk.load(key)
            except _Rejected:
                self.stats.rejected += 1
                array = None
            except OSError as error:
                self._drop_disk(disk, error)
                array = None
            if array is not None:
                self.stats.disk_hits += 1
                self._remember(key, array)
                return array
        self.stats.misses += 1
        return None

    def put(self, key: CacheKey, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        array.setflags(write=False)
        self._remember(key, array)
        disk = self.disk
        if disk is not None:
            try:
                disk.save(key, array)
            except OSError as error:
                self._drop_disk(disk, error)
        self.stats.stores += 1

    def _drop_disk(self, disk: DiskStore, error: OSError) -> None:
        with self._lock:
            if self.disk is not disk:
                return
            self.disk = None
        if self.on_disk_problem is not None:
            self.on_disk_problem(disk_problem_line(disk.folder, error))

    def _remember(self, key: CacheKey, array: np.ndarray) -> None:
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key).nbytes
            if array.nbytes > self.memory_bytes:
                return
            self._entries[key] = array
            self._bytes += array.nbytes
            while self._bytes > self.memory_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes


def disk_problem_line(folder: str | os.PathLike, error: Exception) -> str:
    return (f"the embedding cache in {folder} cannot be used ({getattr(error, 'strerror', None) or error}); "
            "going on without it (slices are encoded again next time)")
