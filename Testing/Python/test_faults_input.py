"""Fault suite, inputs: a damaged file, a NaN voxel or a non-finite argument is one clear error or a
noted, correct result, never a silently wrong one.  Broken files are made from the real data in tmp_path."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_run import one_error_line, run_cli

from SAMSegSlicerLib.cli import main


@pytest.fixture
def ct_path(data_dir) -> Path:
    return data_dir / "ct_abdomen_small" / "image.nii.gz"


@pytest.fixture
def box_prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"prompts": [{"label": 1, "box": [[30, 30, 15], [70, 60, 15]]}]}))
    return path


def _truncated(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[:int(len(data) * fraction)])
    return target


def _uncompressed_nifti(ct_path: Path, target: Path) -> Path:
    target.write_bytes(gzip.decompress(ct_path.read_bytes()))
    return target


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999])
@pytest.mark.parametrize("kind", ["nii.gz", "nii"])
def test_truncated_nifti_is_an_error_naming_the_file(capsys, tmp_path, ct_path, kind, fraction):
    full = ct_path if kind == "nii.gz" else _uncompressed_nifti(ct_path, tmp_path / "full.nii")
    broken = _truncated(full, tmp_path / f"cut.{kind}", fraction)
    code, _, err = run_cli(capsys, "info", broken)
    line = one_error_line(err)
    assert code == 2 and "truncated" in line and str(broken) in line


def test_segment_on_a_truncated_image_writes_nothing(capsys, tmp_path, ct_path, box_prompts):
    broken = _truncated(ct_path, tmp_path / "cut.nii.gz", 0.5)
    code, _, err = run_cli(capsys, "segment", broken, "--prompts", box_prompts, "--out", tmp_path / "out.nii.gz")
    assert code == 2 and "truncated" in one_error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.nii.gz", "prompts.json"]


@pytest.mark.parametrize("suffix, compressed", [(".nrrd", False), (".nrrd", True), (".mha", False), (".mha", True)])
def test_truncated_nrrd_and_metaimage_are_one_line_naming_the_file(capfd, tmp_path, ct_path, suffix, compressed):
    full = tmp_path / f"full{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(ct_path)), str(full), useCompression=compressed)
    broken = _truncated(full, tmp_path / f"cut{suffix}", 0.5)
    capfd.readouterr()
    code = main(["info", str(broken)])
    err = capfd.readouterr().err  # what the terminal shows, SimpleITK's own prints included
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "truncated" in one_error_line(err) and str(broken) in err


def test_nrrd_zero_voxel_size_is_an_error_naming_the_field(capsys, tmp_path, data_dir):
    path = tmp_path / "zero.nrrd"
    data = (data_dir / "mr_brain_tumor" / "image.nrrd").read_bytes()
    path.write_bytes(re.sub(rb"space directions: \([^)]*\)", b"space directions: (0,0,0)", data, count=1))
    code, _, err = run_cli(capsys, "info", path)
    line = one_error_line(err)
    assert code == 2 and "space directions" in line and str(path) in line


def _nifti_with_pixdim(ct_path: Path, target: Path, axis: int, value: float) -> Path:
    header = bytearray(gzip.decompress(ct_path.read_bytes()))
    struct.pack_into("<f", header, 76 + 4 * axis, value)
    target.write_bytes(header)
    return target


@pytest.mark.parametrize("axis, value", [(1, 0.0), (3, 0.0), (2, -3.0), (1, float("nan"))])
def test_nifti_voxel_size_zero_or_negative_is_an_error_naming_the_field(capsys, tmp_path, ct_path, axis, value):
    broken = _nifti_with_pixdim(ct_path, tmp_path / "pixdim.nii", axis, value)
    code, _, err = run_cli(capsys, "info", broken)
    line = one_error_line(err)
    assert code == 2 and f"pixdim[{axis}]" in line and str(broken) in line


@pytest.mark.parametrize("spacing", ["0 3 3", "-2 3 3"])
def test_metaimage_voxel_size_zero_or_negative_is_an_error_naming_the_field(capsys, tmp_path, ct_path, spacing):
    path = tmp_path / "spacing.mha"
    sitk.WriteImage(sitk.ReadImage(str(ct_path)), str(path))
    path.write_bytes(re.sub(rb"ElementSpacing = [^\n]*", f"ElementSpacing = {spacing}".encode(), path.read_bytes(),
                            count=1))
    code, _, err = run_cli(capsys, "info", path)
    line = one_error_line(err)
    assert code == 2 and "ElementSpacing" in line and str(path) in line


def _float_copy_with_nan(ct_path: Path, target: Path, where=(slice(0, 2), slice(0, 3), slice(0, 4))) -> Path:
    """A float copy of the CT with NaN voxels (NRRD: SimpleITK's NIfTI reader turns NaN into 0)."""
    image = sitk.ReadImage(str(ct_path))
    voxels = sitk.GetArrayFromImage(image).astype(np.float32)
    voxels[where] = np.nan
    copy = sitk.GetImageFromArray(voxels)
    copy.CopyInformation(image)
    sitk.WriteImage(copy, str(target))
    return target


def test_nan_voxels_are_noted_once_and_do_not_change_the_window(capsys, tmp_path, ct_path):
    code, out, _ = run_cli(capsys, "info", ct_path)
    clean = json.loads(out)
    code, out, err = run_cli(capsys, "info", _float_copy_with_nan(ct_path, tmp_path / "nan.nrrd"))
    info = json.loads(out)
    assert code == 0
    assert info["window"] == clean["window"] and "CT" in info["window"]
    assert info["intensity_range"] == clean["intensity_range"]
    assert len([n for n in info["notes"] if "NaN" in n]) == 1 and "24 voxel(s)" in info["notes"][0]


def test_nan_voxels_give_the_same_mask_as_the_clean_image(capsys, tmp_path, ct_path, box_prompts):
    results = []
    for name, where in (("clean", (slice(0, 0),)), ("nan", (slice(0, 2), slice(0, 3), slice(0, 4)))):
        image = _float_copy_with_nan(ct_path, tmp_path / f"{name}.nrrd", where)
        out = tmp_path / f"{name}-labels.nii.gz"
        code, _, err = run_cli(capsys, "segment", image, "--prompts", box_prompts, "--out", out, "--no-cache")
        assert code == 0, err
        results.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
        assert err.count("NaN") == (name == "nan")
    assert (results[1] == 1).sum() > 100 and np.array_equal(results[0], results[1])


def test_an_all_nan_image_is_an_error(capsys, tmp_path, ct_path):
    path = _float_copy_with_nan(ct_path, tmp_path / "all-nan.nrrd", (slice(None),))
    code, _, err = run_cli(capsys, "info", path)
    assert code == 2 and "no finite voxel" in one_error_line(err)


@pytest.mark.parametrize("argv, message", [
    (["info", "{ct}", "--window", "nan,400"], "finite"),
    (["info", "{ct}", "--window", "40,inf"], "finite"),
    (["info", "{ct}", "--window=-inf,400"], "finite"),
    (["propagate", "{ct}", "--seed", "{ct}", "--out", "{tmp}/o.nii.gz", "--margins-mm", "3,nan"], "--margins-mm"),
    (["propagate", "{ct}", "--seed", "{ct}", "--out", "{tmp}/o.nii.gz", "--margins-mm", "inf"], "--margins-mm"),
    (["evaluate", "{ct}", "{ct}", "--labels", "1", "--jitter", "nan"], "--jitter"),
    (["segment", "{ct}", "--prompts", "{tmp}/p.json", "--out", "{tmp}/o.nii.gz", "--cache-size-gb", "inf"],
     "--cache-size-gb"),
])
def test_non_finite_numbers_are_refused_where_parsed(capsys, tmp_path, ct_path, argv, message):
    code, _, err = run_cli(capsys, *[a.format(ct=ct_path, tmp=tmp_path) for a in argv])
    assert code == 2 and message in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    ({"prompts": [{"label": 1, "box": [[int("9" * 400), 0, 15], [5, 5, 15]]}]},
     "prompt 0: 'box' holds a number too large"),
    ('{"prompts": [{"label": 1, "box": [[NaN, 30, 15], [70, 60, 15]]}]}', "prompt 0: 'box' holds a non-finite"),
    ('{"prompts": [{"label": 1, "positive": [[40, Infinity, 15]]}]}', "prompt 0: 'positive' holds a non-finite"),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    (None, "cannot be read"),
])
def test_prompts_files_that_break_the_parser_are_one_line(capsys, tmp_path, ct_path, content, message):
    prompts = tmp_path / "prompts.json"
    if content is None:
        prompts.mkdir()
    else:
        prompts.write_text(content if isinstance(content, str) else json.dumps(content))
    code, _, err = run_cli(capsys, "segment", ct_path, "--prompts", prompts, "--out", tmp_path / "o.nii.gz")
    line = one_error_line(err)
    assert code == 2 and message in line and str(prompts) in line
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_one_voxel_image_is_an_error(capsys, tmp_path, box_prompts):
    path = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.Image(1, 1, 1, sitk.sitkInt16), str(path))
    code, _, err = run_cli(capsys, "segment", path, "--prompts", box_prompts, "--out", tmp_path / "o.nii.gz")
    assert code == 2 and "no slice of it is at least 2x2" in one_error_line(err)


@pytest.fixture
def dicom_copy(data_dir, tmp_path) -> Path:
    folder = tmp_path / "series"
    shutil.copytree(data_dir / "ct_3slice_dicom" / "series", folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_an_unreadable_dicom_file_is_an_error_naming_it(capsys, dicom_copy, damage):
    broken = dicom_copy / "02.dcm"
    broken.write_bytes(broken.read_bytes()[:len(broken.read_bytes()) // 3] if damage == "truncate" else b"")
    code, _, err = run_cli(capsys, "info", dicom_copy)
    line = one_error_line(err)
    assert code == 2 and "cannot be read" in line and str(broken) in line


def test_other_files_beside_a_dicom_series_are_ignored(capsys, dicom_copy):
    (dicom_copy / "README.txt").write_text("notes about this scan")
    code, out, err = run_cli(capsys, "info", dicom_copy)
    assert code == 0, err
    assert json.loads(out)["shape_ijk"] == [512, 512, 3]


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: what is checked here must be checked before the model loads."""
    import SAMSegSlicerLib.factory as factory

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(factory, "open_model", refuse)


@pytest.mark.parametrize("argv, message", [
    (["segment", "{ct}", "--prompts", "{tmp}/flat.json", "--out", "{tmp}/o.nii.gz"], "prompt 0: degenerate box"),
    (["segment", "{ct}", "--prompts", "{tmp}/box.json", "--out", "{tmp}/o.nii.gz", "--window", "40,0"],
     "window width must be positive"),
    (["segment", "{ct}", "--prompts", "{tmp}/box.json", "--out", "{tmp}/o.nii.gz", "--window", "bright"],
     "unknown window"),
    (["propagate", "{ct}", "--seed", "{labels}", "--out", "{tmp}/o.nii.gz", "--range", "0:999"],
     "slice range 0:999 is not inside 0:29"),
    (["propagate", "{ct}", "--seed", "{labels}", "--out", "{tmp}/o.nii.gz", "--range", "20:10"],
     "slice range 20:10"),
    (["assist", "learn", "{ct}", "{labels}", "--labels", "1", "--kinds", "points,circle", "--out",
      "{tmp}/o.nii.gz"], "unknown prompt kind(s) circle"),
])
def test_inputs_are_checked_before_the_model_loads(capsys, tmp_path, data_dir, ct_path, no_model_load, argv,
                                                   message):
    (tmp_path / "flat.json").write_text(json.dumps({"prompts": [{"label": 1, "box": [[30, 30, 15], [30, 60, 15]]}]}))
    (tmp_path / "box.json").write_text(json.dumps({"prompts": [{"label": 1, "box": [[30, 30, 15], [70, 60, 15]]}]}))
    labels = data_dir / "ct_abdomen_small" / "labels.nii.gz"
    code, _, err = run_cli(capsys, *[a.format(ct=ct_path, tmp=tmp_path, labels=labels) for a in argv])
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "o.nii.gz").exists()


def test_an_adapter_learned_with_other_weights_is_refused_before_the_model_loads(capsys, tmp_path, data_dir,
                                                                                   ct_path, no_model_load):
    from SAMSegSlicerLib.assist import TABLE_ROWS, PromptAdapter, save_adapter

    adapter = save_adapter(PromptAdapter("vit_b@0123456789abcdef", np.zeros((TABLE_ROWS, 256), np.float32),
                                         ("points",)), tmp_path / "vit_b.safetensors")
    code, _, err = run_cli(capsys, "evaluate", ct_path, data_dir / "ct_abdomen_small" / "labels.nii.gz",
                        "--labels", "1", "--adapter", adapter, "--json", tmp_path / "report.json")
    line = one_error_line(err)
    assert code == 2 and "learned with vit_b@0123456789abcdef, not with litemedsam@" in line and str(adapter) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vit_b.safetensors"]


def test_an_adapter_learned_with_the_same_weights_passes_the_early_check():
    from SAMSegSlicerLib.assist import TABLE_ROWS, PromptAdapter
    from SAMSegSlicerLib.cli.evaluate import check_adapter_model
    from SAMSegSlicerLib.models.registry import resolve_spec

    adapter = PromptAdapter("litemedsam@79d8c9dca6db4d69", np.zeros((TABLE_ROWS, 256), np.float32), ("points",))
    check_adapter_model(adapter, "same.safetensors", resolve_spec(None))
