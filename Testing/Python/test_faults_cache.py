"""Fault suite, embedding cache: it owns only what it wrote, never serves a wrong-shaped entry, and a
cache folder that cannot be used is one warning, not a failed run."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_run import run_cli

from SAMSegSlicerLib.cache import MAGIC, STALE_TEMP_SECONDS, CacheKey, DiskStore, EmbeddingCache

SHAPE = (4, 8, 8)


def _key(index: int) -> CacheKey:
    return CacheKey("volumehash", "axial", index, "m@1/fp32", "40,400", SHAPE)


def _array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float16)



def _user_files(folder: Path) -> dict[str, bytes]:
    files = {"notes.emb": b"my own notes",
             "0123456789abcdef0123456789abcdef01234567.emb": b"a user's file with an entry-like name",
             "scan.nii.gz": b"not the cache's", ".tmp-mine.txt": b"also not the cache's"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_eviction_and_clear_delete_only_entries_the_cache_wrote(tmp_path):
    user = _user_files(tmp_path)
    one = len(_array(0).tobytes())
    store = DiskStore(tmp_path, max_bytes=3 * one)
    assert store.total_bytes == 0
    cache = EmbeddingCache(memory_bytes=0, disk=store)
    for n in range(6):
        cache.put(_key(n), _array(n))
    assert store.total_bytes <= 3 * one
    store.clear()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == user
    assert store.total_bytes == 0


def _entry_bytes(key: CacheKey, array: np.ndarray) -> bytes:
    """A well-formed entry with the right key and digest, whatever the array (the cache's own writer
    refuses to write one that does not match its key)."""
    payload = array.tobytes()
    header = json.dumps({"key": json.loads(key.text()), "dtype": array.dtype.str, "shape": list(array.shape),
                         "payload_bytes": len(payload),
                         "blake2b": hashlib.blake2b(payload, digest_size=32).hexdigest()}, sort_keys=True).encode()
    return MAGIC + len(header).to_bytes(4, "little") + header + payload


@pytest.mark.parametrize("array", [
    np.zeros(SHAPE, np.float32),
    np.zeros((4, 8, 9), np.float16),
    np.zeros((2, 4, 8, 8), np.float16),
    np.zeros(SHAPE, np.int16),
], ids=["float32", "other-shape", "other-rank", "int16"])
def test_entry_with_the_right_key_and_digest_but_another_layout_is_rejected(tmp_path, array):
    store = DiskStore(tmp_path)
    store.path(_key(1)).write_bytes(_entry_bytes(_key(1), array))
    cache = EmbeddingCache(disk=store)
    assert cache.get(_key(1)) is None
    assert cache.stats.rejected == 1 and not store.path(_key(1)).exists()


def test_stale_temporary_files_are_removed_and_fresh_ones_counted(tmp_path):
    stale, fresh = tmp_path / ".tmp-killed.part", tmp_path / ".tmp-writing.part"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 700)
    old = time.time() - 2 * STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    store = DiskStore(tmp_path)
    assert not stale.exists() and fresh.exists()
    assert store.total_bytes == 700


def test_an_entry_that_is_a_folder_is_one_warning_and_the_cache_goes_on_in_memory(tmp_path):
    store = DiskStore(tmp_path)
    store.path(_key(1)).mkdir()
    warnings = []
    cache = EmbeddingCache(disk=store, on_disk_problem=warnings.append)
    assert cache.get(_key(1)) is None
    cache.put(_key(1), _array(1))
    cache.put(_key(2), _array(2))
    assert np.array_equal(cache.get(_key(1)), _array(1)) and cache.disk is None
    assert len(warnings) == 1 and str(tmp_path) in warnings[0]
    assert store.path(_key(1)).is_dir()


@pytest.fixture
def segment_args(tmp_path, data_dir):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"prompts": [{"label": 1, "box": [[30, 30, 15], [70, 60, 15]]}]}))
    return ["segment", data_dir / "ct_abdomen_small" / "image.nii.gz", "--prompts", prompts,
            "--out", tmp_path / "out.nii.gz"]


def _unusable_cache_folder(kind: str, tmp_path: Path, monkeypatch) -> list[str]:
    if kind == "a-file":
        (tmp_path / "cache").write_text("a file, not a folder")
        return ["--cache-dir", str(tmp_path / "cache")]
    if kind == "under-a-file":
        (tmp_path / "file").write_text("a file")
        return ["--cache-dir", str(tmp_path / "file" / "cache")]
    if kind == "no-writable-home":
        for name in ("SAMSEG_HOME", "SAMSEG_CACHE_DIR", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", "/sys/no-home" if os.geteuid() == 0 else "/proc/no-home")
        return []
    # a full file system: the first write of an entry fails with ENOSPC
    def full(self, key, array):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(DiskStore, "save", full)
    return ["--cache-dir", str(tmp_path / "cache")]


@pytest.mark.parametrize("kind", ["a-file", "under-a-file", "no-writable-home", "full"])
def test_an_unusable_cache_folder_is_one_warning_and_the_run_succeeds(capsys, tmp_path, monkeypatch, segment_args,
                                                                      kind):
    cache_args = _unusable_cache_folder(kind, tmp_path, monkeypatch)
    code, _, err = run_cli(capsys, *segment_args, *cache_args)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "embedding cache" in warnings[0] and "going on without it" in warnings[0], err
    assert "Traceback" not in err and "error" not in err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nii.gz")))
    assert (labels == 1).sum() > 100


def test_embed_with_an_unusable_cache_folder_is_an_error(capsys, tmp_path, data_dir):
    (tmp_path / "cache").write_text("a file, not a folder")
    code, _, err = run_cli(capsys, "embed", data_dir / "ct_abdomen_small" / "image.nii.gz",
                        "--cache-dir", tmp_path / "cache")
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("samseg: error:")][0].count("disk cache") == 1


@pytest.mark.parametrize("size", ["nan", "inf", "-1"])
def test_cache_size_must_be_a_finite_size(capsys, segment_args, size):
    code, _, err = run_cli(capsys, *segment_args, "--cache-size-gb", size)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--cache-size-gb" in lines[0] and lines[0].startswith("samseg: error:")
