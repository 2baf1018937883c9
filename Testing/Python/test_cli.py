"""The samseg command line on real files: outputs, JSON, and one clear line (exit 2) for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from cli_run import one_error_line, run_cli


def test_info(capsys, data_dir):
    code, out, _ = run_cli(capsys, "info", data_dir / "mr_brain_tumor" / "image.nrrd")
    info = json.loads(out)
    assert code == 0 and info["shape_ijk"] == [256, 256, 25] and "percentile" in info["window"]


def test_models_list(capsys):
    code, out, _ = run_cli(capsys, "models", "list")
    assert code == 0 and "litemedsam" in out and "installed (package)" in out and "sam_vit_h" in out


def test_segment_from_ijk_and_ras_prompts_agree(capsys, tmp_path, data_dir, ct3mm):
    image = data_dir / "ct_abdomen_3mm" / "image.nii.gz"
    axes = ct3mm.axes("axial")
    truth_rc = axes.stack(sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "ct_abdomen_3mm" / "labels.nii.gz"))))
    rows, cols = np.nonzero(truth_rc[106] == 5)  # the liver on its largest axial slice
    corners_ijk = axes.rc_to_ijk(106, [[rows.min(), cols.min()], [rows.max(), cols.max()]]).tolist()
    (tmp_path / "ijk.json").write_text(json.dumps(
        {"frame": "ijk", "prompts": [{"label": 5, "axis": "axial", "box": corners_ijk}]}))
    corners_ras = ct3mm.ijk_to_ras_points(np.array(corners_ijk, float)).tolist()
    (tmp_path / "ras.json").write_text(json.dumps(
        {"frame": "ras", "prompts": [{"label": 5, "box": corners_ras}]}))
    results = []
    for name in ("ijk", "ras"):
        out = tmp_path / f"{name}.nii.gz"
        code, _, err = run_cli(capsys, "segment", image, "--prompts", tmp_path / f"{name}.json", "--out", out)
        assert code == 0, err
        results.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    assert np.array_equal(results[0], results[1])
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "ct_abdomen_3mm" / "labels.nii.gz")))
    predicted, expected = results[0][106] == 5, truth[106] == 5
    assert 2 * (predicted & expected).sum() / (predicted.sum() + expected.sum()) > 0.93
    assert set(np.unique(results[0])) == {0, 5} and (results[0] > 0).sum() == predicted.sum()


def test_segment_from_one_click_on_a_box_only_model(capsys, tmp_path, data_dir, ct3mm):
    from scipy import ndimage

    axes = ct3mm.axes("axial")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(data_dir / "ct_abdomen_3mm" / "labels.nii.gz")))
    spleen_rc = axes.stack(labels == 1)[107]
    depth = ndimage.distance_transform_edt(spleen_rc)
    inner_rc = np.unravel_index(int(np.argmax(depth)), depth.shape)
    click_ijk = axes.rc_to_ijk(107, [inner_rc]).tolist()
    (tmp_path / "click.json").write_text(json.dumps({"prompts": [{"label": 1, "positive": click_ijk}]}))
    out = tmp_path / "click.nii.gz"
    code, _, err = run_cli(capsys, "segment", data_dir / "ct_abdomen_3mm" / "image.nii.gz",
                        "--prompts", tmp_path / "click.json", "--out", out)
    assert code == 0, err
    predicted = axes.stack(sitk.GetArrayFromImage(sitk.ReadImage(str(out))) == 1)[107]
    assert 2 * (predicted & spleen_rc).sum() / (predicted.sum() + spleen_rc.sum()) > 0.8


def test_evaluate_box_writes_json_and_reuses_the_disk_cache(capsys, tmp_path, data_dir):
    args = ["evaluate", data_dir / "ct_abdomen_small" / "image.nii.gz",
            data_dir / "ct_abdomen_small" / "labels.nii.gz", "--labels", "2", "--protocol", "box",
            "--cache-dir", tmp_path / "cache"]
    reports = []
    for run in range(2):
        code, out, err = run_cli(capsys, *args, "--json", tmp_path / f"run{run}.json")
        assert code == 0, err
        reports.append(json.loads((tmp_path / f"run{run}.json").read_text()))
    first, second = reports
    assert set(first) >= {"image", "model", "protocol", "axis", "results", "mean_dice", "seconds"}
    assert first["results"][0]["label"] == 2 and first["results"][0]["dice"] > 0.85
    assert first["results"][0]["slices_with_label"] == first["slices_encoded"] > 0
    assert second["slices_encoded"] == 0 and second["mean_dice"] == first["mean_dice"]
    assert "mean" in out


def _bad_inputs(data_dir, tmp_path):
    image = data_dir / "ct_abdomen_3mm" / "image.nii.gz"
    labels = data_dir / "ct_abdomen_3mm" / "labels.nii.gz"
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    four_d = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.Image(4, 4, 4, sitk.sitkInt16)] * 2), str(four_d))
    far = tmp_path / "far.nii.gz"
    far_image = sitk.Image(8, 8, 8, sitk.sitkUInt8) + 1
    far_image.SetOrigin((5000.0, 0.0, 0.0))
    sitk.WriteImage(far_image, str(far))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"frame": "ijk", "prompts": [{"label": 1, "box": [[1, 1, 500], [5, 5, 500]]}]}))
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    out = tmp_path / "out.nii.gz"
    return [
        (["info", text], "not an image file"),
        (["info", empty], "no DICOM series"),
        (["info", tmp_path / "missing.nii.gz"], "no such file"),
        (["info", four_d], "4-D"),
        (["evaluate", image, far, "--labels", "1"], "does not overlap"),
        (["evaluate", image, labels, "--labels", "250"], "not in the label map"),
        (["evaluate", image, labels, "--labels", "1,x"], "integers"),
        (["segment", image, "--prompts", outside, "--out", out], "outside the image"),
        (["segment", image, "--prompts", broken, "--out", out], "not valid JSON"),
        (["segment", image, "--prompts", outside, "--out", tmp_path / "nofolder" / "x.nii.gz"], "does not exist"),
        (["info", image, "--window", "bright"], "unknown window"),
        (["embed", image, "--model", "sam_vit_q"], "unknown model"),
        (["embed", image, "--model", "sam_vit_b", "--cache-dir", tmp_path / "c"], "could not download sam_vit_b"),
        (["evaluate", image, labels, "--labels", "1", "--clicks", "0"], "--clicks"),
    ]


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("SAMSEG_MODEL_DIR", str(tmp_path / "models"))
    for argv, message in _bad_inputs(data_dir, tmp_path):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert message in one_error_line(err), (argv, err)
    assert not (tmp_path / "out.nii.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("argv", [["demo", "--out", "{tmp}/demo"]])
def test_demo_offline_uses_the_phantom(capsys, tmp_path, argv, monkeypatch):
    import SAMSegSlicerLib.sample as sample

    monkeypatch.setattr(sample, "SAMPLE_URL", "http://127.0.0.1:9/example_ct.nii.gz")
    monkeypatch.setenv("SAMSEG_HOME", str(tmp_path / "home"))
    code, out, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 0, err
    assert "phantom" in err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "demo" / "labels.nii.gz")))
    assert labels.sum() > 200
    assert (tmp_path / "demo" / "overlay.png").stat().st_size > 1000
