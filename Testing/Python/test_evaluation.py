"""The evaluation report's leak metric: the share of predicted voxels inside other labels of the
reference, and the predicted slices beyond the label's extent."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from SAMSegSlicerLib.cli import main
from SAMSegSlicerLib.engine import EngineStats
from SAMSegSlicerLib.evaluation import PROTOCOLS, EvalOptions, ProtocolOutcome, run_evaluation
from SAMSegSlicerLib.evaluation.masks import leak_share, reach_beyond, slices_beyond
from SAMSegSlicerLib.volume import Volume


def _label_map() -> np.ndarray:
    """8 axial slices of 10 x 10: label 1 a 4 x 4 block and label 2 a 4 x 3 block beside it, on slices 2-4."""
    labels = np.zeros((8, 10, 10), dtype=np.uint8)
    labels[2:5, 2:6, 2:6] = 1
    labels[2:5, 2:6, 6:9] = 2
    return labels


def _spilling_prediction(labels: np.ndarray) -> np.ndarray:
    """Label 1 exactly, 10 voxels of label 2 on slice 3, and 3 background voxels on slices 1 and 7."""
    prediction = labels == 1
    prediction[3, 2:6, 6:8] = True   # 8 voxels of label 2
    prediction[3, 2:4, 8] = True     # 2 more
    prediction[1, 0, 0:3] = True     # below the label's first slice (2)
    prediction[7, 9, 0:3] = True     # above its last slice (4)
    return prediction


def _evaluate(monkeypatch, labels, prediction, evaluated=None):
    volume = Volume(np.zeros(labels.shape, np.float32), np.eye(4), source="synthetic")
    engine = SimpleNamespace(volume=volume, stats=EngineStats(), model=SimpleNamespace(model_id="none"))

    def fixed(engine, truth_kji, options):
        return ProtocolOutcome(prediction if truth_kji[labels == 1].all() else truth_kji.copy(), {}, evaluated)

    monkeypatch.setitem(PROTOCOLS, "fixed", fixed)
    return run_evaluation(engine, labels, [1, 2], "fixed", EvalOptions())


def test_leak_share_and_slices_beyond_by_hand(monkeypatch):
    labels = _label_map()
    prediction = _spilling_prediction(labels)
    assert int(prediction.sum()) == 48 + 10 + 6
    report = _evaluate(monkeypatch, labels, prediction)
    spilled, exact = report.results
    assert spilled.leak_share == 10 / 64
    assert spilled.slices_beyond == 2  # slices 1 and 7
    assert spilled.dice == 2 * 48 / (64 + 48)
    assert (exact.leak_share, exact.slices_beyond, exact.dice) == (0.0, 0, 1.0)
    assert report.mean_leak_share == 10 / 128 and report.mean_slices_beyond == 1.0
    out = report.as_json()
    assert out["results"][0]["leak_share"] == round(10 / 64, 4) and out["results"][0]["slices_beyond"] == 2
    assert out["mean_leak_share"] == round(10 / 128, 4) and out["mean_slices_beyond"] == 1.0
    mean_line = report.table().splitlines()[-1].split()
    assert mean_line[:4] == ["mean", f"{report.mean_dice:.4f}", f"{10 / 128:.4f}", "1.0"]


def test_leak_is_measured_where_the_dice_is(monkeypatch):
    labels = _label_map()
    evaluated = np.ones(labels.shape, dtype=bool)
    evaluated[3] = False  # the slice with the spill is left out (as the slices learned from with --assist-slices)
    spilled, _ = _evaluate(monkeypatch, labels, _spilling_prediction(labels), evaluated).results
    assert (spilled.leak_share, spilled.slices_beyond) == (0.0, 2)


def test_mask_measures():
    others = np.zeros((2, 3), dtype=bool)
    others[0] = True
    assert leak_share(np.zeros((2, 3), dtype=bool), others) == 0.0
    assert leak_share(np.ones((2, 3), dtype=bool), others) == 0.5
    assert slices_beyond([3, 4, 5], [1, 3, 4, 5, 7, 8]) == 3
    assert slices_beyond([3, 4, 5], []) == 0 and slices_beyond([], [2, 3]) == 2
    assert reach_beyond([3, 4, 5], [1, 3, 4, 5, 7, 8]) == 3  # how far: the propagate protocol's slices_beyond_label


def test_evaluate_json_has_the_leak_fields(capsys, tmp_path, data_dir):
    out = tmp_path / "box.json"
    code = main(["evaluate", str(data_dir / "ct_abdomen_small" / "image.nii.gz"),
                 str(data_dir / "ct_abdomen_small" / "labels.nii.gz"), "--labels", "1,2", "--protocol", "box",
                 "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    for result in report["results"]:
        assert 0.0 <= result["leak_share"] < 0.1
        assert result["slices_beyond"] == 0  # a box only on the slices holding the label
    assert report["mean_leak_share"] == pytest.approx(np.mean([r["leak_share"] for r in report["results"]]), abs=1e-4)
    assert report["mean_slices_beyond"] == 0
    assert printed.splitlines()[0].split() == ["label", "dice", "leak", "beyond", "slices", "seconds"]
