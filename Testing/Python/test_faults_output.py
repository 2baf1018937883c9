"""Fault suite, outputs: nothing a user has is overwritten or replaced by a broken file.

Each case asserts the exit code, one stderr line, the files left and the files untouched.  A full
disk is faked at the writer (SimpleITK's ``WriteImage`` returns normally on ENOSPC and leaves a short
file; Python's writes raise ``OSError(ENOSPC)``), since a small tmpfs cannot be mounted in CI.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_run import one_error_line, run_cli

from SAMSegSlicerLib.errors import OutputError
from SAMSegSlicerLib.output import write_bytes
from SAMSegSlicerLib.volume import read_volume, write_labelmap


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def small_ct(data_dir, tmp_path) -> Path:
    """A private copy of the small CT (so a test that broke the promise could not damage the data)."""
    return Path(shutil.copy(data_dir / "ct_abdomen_small" / "image.nii.gz", tmp_path / "ct.nii.gz"))


@pytest.fixture
def box_prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"frame": "ijk", "prompts": [{"label": 1, "box": [[30, 30, 15], [70, 60, 15]]}]}))
    return path


def _link(kind: str, target: Path, link: Path) -> Path:
    if kind == "symlink":
        link.symlink_to(target)
    else:
        os.link(target, link)
    return link


@pytest.mark.parametrize("case", ["image", "image-symlink", "image-hardlink", "prompts"])
def test_segment_refuses_an_output_that_is_an_input(capsys, tmp_path, small_ct, box_prompts, case):
    out = {"image": small_ct, "prompts": box_prompts,
           "image-symlink": lambda: _link("symlink", small_ct, tmp_path / "link.nii.gz"),
           "image-hardlink": lambda: _link("hardlink", small_ct, tmp_path / "link.nii.gz")}[case]
    out = out() if callable(out) else out
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "segment", small_ct, "--prompts", box_prompts, "--out", out)
    assert code == 2
    assert "output would overwrite an input" in one_error_line(err) and str(out) in err
    assert _snapshot(tmp_path) == before


def test_propagate_refuses_the_seed_as_output(capsys, tmp_path, data_dir, small_ct):
    seed = Path(shutil.copy(data_dir / "ct_abdomen_small" / "labels.nii.gz", tmp_path / "seed.nii.gz"))
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "propagate", small_ct, "--seed", seed, "--out", seed)
    assert code == 2 and "output would overwrite an input" in one_error_line(err)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/out.png"], "unsupported output file type"),
    (["--out", "{tmp}/folder.nii.gz"], "output path is a folder"),
    (["--out", "{tmp}/missing/out.nii.gz"], "output folder does not exist"),
])
def test_segment_output_problems_are_found_before_the_image_is_read(capsys, tmp_path, box_prompts, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    (tmp_path / "folder.nii.gz").mkdir()
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "segment", tmp_path / "not-read.nii.gz", "--prompts", box_prompts, *argv)
    assert code == 2 and message in one_error_line(err)
    assert _snapshot(tmp_path) == before


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:  # root writes anywhere a mode allows; sysfs refuses new files even to root
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    pytest.skip("no folder here refuses a new file")


def test_read_only_output_folder_is_reported_before_the_image_is_read(capsys, tmp_path, box_prompts):
    folder = _unwritable_folder(tmp_path)
    code, _, err = run_cli(capsys, "segment", tmp_path / "not-read.nii.gz", "--prompts", box_prompts,
                        "--out", folder / "out.nii.gz")
    assert code == 2 and "output folder is not writable" in one_error_line(err)
    assert not (folder / "out.nii.gz").exists()


def _short_write_image(fraction: float):
    """SimpleITK's WriteImage on a full disk: returns normally, the file holds only what fitted."""
    real_write = sitk.WriteImage

    def write(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[:int(len(data) * fraction)])

    return write


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.98])
def test_full_disk_keeps_the_earlier_label_map(tmp_path, data_dir, monkeypatch, suffix, fraction):
    volume = read_volume(data_dir / "ct_abdomen_small" / "image.nii.gz")
    labels = np.zeros(volume.voxels_kji.shape, np.uint8)
    labels[5:20, 30:60, 40:80] = 3
    out = write_labelmap(tmp_path / f"out{suffix}", labels, volume)
    earlier = out.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", _short_write_image(fraction))
    with pytest.raises(OutputError, match="could not write the file") as raised:
        write_labelmap(out, labels * 2, volume)
    assert str(out) in raised.value.one_line() and "earlier file there is kept" in raised.value.one_line()
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_full_disk_in_segment_exits_2_and_keeps_the_earlier_file(capsys, tmp_path, small_ct, box_prompts,
                                                                 monkeypatch):
    out = tmp_path / "labels.nii.gz"
    out.write_bytes(b"an earlier result")
    monkeypatch.setattr(sitk, "WriteImage", _short_write_image(0.5))
    before = _snapshot(tmp_path)
    code, _, err = run_cli(capsys, "segment", small_ct, "--prompts", box_prompts, "--out", out, "--no-cache")
    assert code == 2
    assert "could not write the file" in one_error_line(err) and str(out) in err
    assert "wrote" not in err
    assert _snapshot(tmp_path) == before


def _enospc_after(half: bool):
    """``Path.write_bytes`` on a full disk: part of the data lands, then ENOSPC."""
    real_write = Path.write_bytes

    def write_bytes(self, data):
        real_write(self, data[:len(data) // 2] if half else b"")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    return write_bytes


@pytest.mark.parametrize("half", [False, True])
def test_full_disk_keeps_the_earlier_bytes_file(tmp_path, monkeypatch, half):
    target = tmp_path / "report.json"
    target.write_text('{"earlier": true}\n')
    monkeypatch.setattr(Path, "write_bytes", _enospc_after(half))
    with pytest.raises(OutputError, match="no space left on device"):
        write_bytes(target, b'{"later": true}\n' * 1000)
    assert target.read_text() == '{"earlier": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(tmp_path, data_dir, umask):
    volume = read_volume(data_dir / "ct_abdomen_small" / "image.nii.gz")
    previous = os.umask(umask)
    try:
        label_map = write_labelmap(tmp_path / "labels.nrrd", np.zeros(volume.voxels_kji.shape, np.uint8), volume)
        report = write_bytes(tmp_path / "report.json", b"{}\n")
    finally:
        os.umask(previous)
    for path in (label_map, report):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("values, dtype", [([70000], np.uint32), ([-1, 3], np.int16), ([255], np.uint8),
                                           ([65535], np.uint16), ([-200, 5], np.int16)])
def test_label_values_are_never_wrapped(tmp_path, data_dir, values, dtype):
    volume = read_volume(data_dir / "ct_abdomen_small" / "image.nii.gz")
    labels = np.zeros(volume.voxels_kji.shape, np.int64)
    for n, value in enumerate(values):
        labels[n, :4, :4] = value
    written = sitk.ReadImage(str(write_labelmap(tmp_path / "labels.nii.gz", labels, volume)))
    array = sitk.GetArrayFromImage(written)
    assert array.dtype == dtype and np.array_equal(array, labels)
