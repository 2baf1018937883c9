"""Embedding cache: a bounded in-memory LRU in front of a signed on-disk store.

Key: (volume content hash, axis, slice index, model id, window).  The disk format is plain
bytes, no pickle: a magic line, a JSON header that repeats the full key, the array's dtype
and shape and a BLAKE2b digest of the payload, then the payload.  An entry whose key,
size or digest does not match is deleted and reported as a miss, so a corrupt, truncated or
foreign file is recomputed, never used.  The disk store is bounded too: the least recently
used entries go first.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MAGIC = b"SAMSEG-EMBEDDING-1\n"
ENTRY_SUFFIX = ".emb"
DEFAULT_MEMORY_BYTES = 1 << 30
DEFAULT_DISK_BYTES = 5 << 30


@dataclass(frozen=True)
class CacheKey:
    volume: str
    axis: str
    index: int
    model: str
    window: str

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


class DiskStore:
    """Signed embedding files in one folder, bounded to ``max_bytes``."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int = DEFAULT_DISK_BYTES):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._bytes = sum(p.stat().st_size for p in self.folder.glob("*" + ENTRY_SUFFIX))

    @property
    def total_bytes(self) -> int:
        return self._bytes

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
            self._remove(path)
            raise _Rejected()
        os.utime(path)
        return array

    def save(self, key: CacheKey, array: np.ndarray) -> None:
        data = _encode_entry(key, array)
        handle, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            target = self.path(key)
            previous = target.stat().st_size if target.exists() else 0
            os.replace(tmp_name, target)
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        with self._lock:
            self._bytes += len(data) - previous
        self._evict()

    def clear(self) -> None:
        for path in self.folder.glob("*" + ENTRY_SUFFIX):
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
        entries = sorted(self.folder.glob("*" + ENTRY_SUFFIX), key=lambda p: p.stat().st_mtime)
        for path in entries:
            if self._bytes <= self.max_bytes:
                break
            self._remove(path)


class _Rejected(Exception):
    """A disk entry failed its checks."""


def _encode_entry(key: CacheKey, array: np.ndarray) -> bytes:
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
    if stored_key != json.loads(key.text()) or dtype.hasobject:
        return None
    payload = data[start + header_len:]
    if len(payload) != expected_bytes or expected_bytes != dtype.itemsize * int(np.prod(shape)):
        return None
    if hashlib.blake2b(payload, digest_size=32).hexdigest() != digest:
        return None
    return np.frombuffer(payload, dtype=dtype).reshape(shape)


class EmbeddingCache:
    """RAM LRU (``memory_bytes``) over an optional :class:`DiskStore`; thread-safe."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES, disk: DiskStore | None = None):
        self.memory_bytes = int(memory_bytes)
        self.disk = disk
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
        if self.disk is not None:
            try:
                array = self.disk.load(key)
            except _Rejected:
                self.stats.rejected += 1
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
        if self.disk is not None:
            self.disk.save(key, array)
        self.stats.stores += 1

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
