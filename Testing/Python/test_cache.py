"""Embedding cache: bounded memory, signed disk entries, corrupt or foreign entries recomputed, never used."""

from __future__ import annotations

import numpy as np
import pytest

from SAMSegSlicerLib.cache import CacheKey, DiskStore, EmbeddingCache


def _key(index: int, model: str = "m@1/fp32", window: str = "40,400") -> CacheKey:
    return CacheKey("volumehash", "axial", index, model, window, (4, 8, 8))


def _array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 8, 8)).astype(np.float16)


def test_memory_lru_is_bounded():
    one = _array(0).nbytes
    cache = EmbeddingCache(memory_bytes=3 * one)
    for n in range(5):
        cache.put(_key(n), _array(n))
    assert cache.memory_used_bytes <= 3 * one
    assert len(cache) == 3
    assert cache.get(_key(0)) is None and cache.get(_key(1)) is None
    cache.get(_key(2))
    cache.put(_key(5), _array(5))
    assert cache.in_memory(_key(2)) and not cache.in_memory(_key(3))


def test_disk_round_trip_and_reuse_across_instances(tmp_path):
    store = DiskStore(tmp_path)
    EmbeddingCache(disk=store).put(_key(1), _array(1))
    fresh = EmbeddingCache(disk=DiskStore(tmp_path))
    got = fresh.get(_key(1))
    assert np.array_equal(got, _array(1)) and fresh.stats.disk_hits == 1
    assert fresh.get(_key(1, window="-600,1500")) is None
    assert fresh.get(_key(1, model="other@2/fp32")) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign"])
def test_damaged_entries_are_rejected_and_removed(tmp_path, damage):
    store = DiskStore(tmp_path)
    EmbeddingCache(disk=store).put(_key(1), _array(1))
    path = store.path(_key(1))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[:-10]))
    elif damage == "flip":
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04 not an entry")
    else:  # a valid entry for another key copied under this key's name
        EmbeddingCache(disk=store).put(_key(2), _array(2))
        path.write_bytes(store.path(_key(2)).read_bytes())
    cache = EmbeddingCache(disk=DiskStore(tmp_path))
    assert cache.get(_key(1)) is None
    assert cache.stats.rejected == 1
    assert not path.exists()


def test_disk_store_is_bounded(tmp_path):
    one = len(_array(0).tobytes())
    store = DiskStore(tmp_path, max_bytes=4 * one)
    cache = EmbeddingCache(memory_bytes=0, disk=store)
    for n in range(8):
        cache.put(_key(n), _array(n))
    assert store.total_bytes <= 4 * one
    assert store.total_bytes == sum(p.stat().st_size for p in tmp_path.glob("*.emb"))
    assert cache.get(_key(7)) is not None and cache.get(_key(0)) is None


def test_entries_hold_no_pickle(tmp_path):
    store = DiskStore(tmp_path)
    EmbeddingCache(disk=store).put(_key(1), _array(1))
    data = store.path(_key(1)).read_bytes()
    assert data.startswith(b"SAMSEG-EMBEDDING-1\n")
    assert b"\x80\x04" not in data[:200]
