"""Propagation on real data: a short stretch of the right kidney of ct_abdomen_3mm (its upper end
at axial slice 101), a few coronal and sagittal slices, and the brain tumour of mr_brain_tumor."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SAMSegSlicerLib.cli import main
from SAMSegSlicerLib.errors import InputError
from SAMSegSlicerLib.evaluation import EvalOptions, run_evaluation
from SAMSegSlicerLib.evaluation.masks import dice, label_slices, largest_slice
from SAMSegSlicerLib.factory import EngineOptions, make_engine
from SAMSegSlicerLib.propagation import (
    STOP_CANCELLED,
    STOP_COLLAPSE,
    STOP_EMPTY,
    STOP_GROWTH,
    STOP_INTENSITY,
    STOP_IOU,
    STOP_OVERLAP,
    STOP_RANGE,
    STOP_SEED,
    STOP_SLICE,
    STOP_VOLUME_END,
    PropagationConfig,
    propagate,
)
from SAMSegSlicerLib.volume import read_labelmap, read_volume, write_labelmap
from SAMSegSlicerLib.worker import CancelToken

KIDNEY = 2
KIDNEY_TOP = 101  # last axial slice holding the right kidney
RULES_OFF = dict(min_iou=None, min_overlap=None, max_growth=None, min_shrink=None, min_area_mm2=0.0,
                 min_intensity_match=None)
LIMITS = {STOP_RANGE, STOP_SLICE, STOP_VOLUME_END, STOP_SEED, STOP_CANCELLED}


@pytest.fixture(scope="module")
def kidney(engine_ct3mm, ct3mm_labels):
    return engine_ct3mm.volume.axes("axial").stack(ct3mm_labels == KIDNEY)


def _stop(result, seed, direction):
    return next(stop for stop in result.stops if stop.seed == seed and stop.direction == direction)


def test_both_directions_end_where_the_kidney_ends(engine_ct3mm, kidney):
    seen = []
    result = propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(93, 106), progress=seen.append)
    down, up = _stop(result, 97, -1), _stop(result, 97, +1)
    assert (down.reason, down.last) == (STOP_RANGE, 93)
    assert up.reason not in LIMITS and KIDNEY_TOP - 2 <= up.last <= KIDNEY_TOP + 1
    assert result.extent == (93, up.last)
    for index in range(93, 100):
        assert dice(result.masks[index], kidney[index]) > 0.85, index
    assert result.masks[97] is not None and np.array_equal(result.masks[97], kidney[97])
    assert [p.slices_done for p in seen] == list(range(1, len(seen) + 1)) == list(range(1, result.slices_visited + 1))
    assert {p.slices_max for p in seen} == {13} and seen[0].current_index == 96 and seen[0].direction == -1
    assert result.slices_predicted == up.last - 93


@pytest.mark.parametrize("reconcile", ["iou", "nearest"])
def test_fill_between_two_seeds_keeps_the_seeds(engine_ct3mm, kidney, reconcile):
    seeds = {94: kidney[94], 99: kidney[99]}
    result = propagate(engine_ct3mm, seeds, "axial", PropagationConfig(reconcile=reconcile), index_range=(94, 99))
    for index, mask in seeds.items():
        assert np.array_equal(result.masks[index], mask)
    for index in range(95, 99):
        assert dice(result.masks[index], kidney[index]) > 0.85, index
    assert _stop(result, 94, +1).reason == _stop(result, 99, -1).reason == STOP_SEED
    assert _stop(result, 94, -1).reason == _stop(result, 99, +1).reason == STOP_RANGE
    assert set(result.carried_from) == {95, 96, 97, 98}
    if reconcile == "nearest":
        assert [result.carried_from[i] for i in range(95, 99)] == [94, 94, 99, 99]
    else:
        forward = propagate(engine_ct3mm, {94: kidney[94]}, "axial", index_range=(94, 98))
        backward = propagate(engine_ct3mm, {99: kidney[99]}, "axial", index_range=(95, 99))
        for index in range(95, 99):
            winner = forward if forward.ious[index] >= backward.ious[index] else backward
            assert np.array_equal(result.masks[index], winner.masks[index]), index


def _baseline_signals(engine, kidney, seed, top):
    """Run from ``seed`` upwards with every rule off; per visited slice the signals the rules test."""
    result = propagate(engine, {seed: kidney[seed]}, "axial", PropagationConfig(**RULES_OFF), index_range=(seed, top))
    voxels = engine.volume.axes("axial").stack(engine.volume.voxels_kji).astype(np.float32)
    values = voxels[seed][kidney[seed]]
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    low, high = median - 1.3 * sigma, median + 1.3 * sigma
    rows, previous = [], kidney[seed]
    for index in range(seed + 1, top + 1):
        if index not in result.masks:
            break
        mask = result.masks[index]
        inside = voxels[index][mask]
        rows.append({
            "index": index, "iou": result.ious[index], "area": int(mask.sum()),
            "ratio": mask.sum() / previous.sum(), "overlap": (mask & previous).sum() / (mask | previous).sum(),
            "match": float(((inside >= low) & (inside <= high)).mean()),
        })
        previous = mask
    return rows


RULES = {
    # rule: (config field, signal, stop when the signal is below (True) or above (False) the threshold)
    STOP_IOU: ("min_iou", "iou", True),
    STOP_OVERLAP: ("min_overlap", "overlap", True),
    STOP_GROWTH: ("max_growth", "ratio", False),
    STOP_COLLAPSE: ("min_shrink", "ratio", True),
    STOP_EMPTY: ("min_area_mm2", "area", True),
    STOP_INTENSITY: ("min_intensity_match", "match", True),
}


@pytest.mark.parametrize("reason", sorted(RULES))
def test_each_stop_rule_fires_at_the_first_slice_that_breaks_it(engine_ct3mm, kidney, reason):
    field, signal, below = RULES[reason]
    rows = _baseline_signals(engine_ct3mm, kidney, 96, 104)
    values = sorted({row[signal] for row in rows})
    threshold = float(np.median(values))
    breaks = [row for row in rows if (row[signal] < threshold if below else row[signal] > threshold)]
    assert breaks, f"no slice breaks {reason} at {threshold}"
    if field == "min_area_mm2":
        threshold *= float(np.prod(engine_ct3mm.volume.axes("axial").spacing_rc(engine_ct3mm.volume.spacing_ijk)))
    config = PropagationConfig(**{**RULES_OFF, field: threshold})
    result = propagate(engine_ct3mm, {96: kidney[96]}, "axial", config, index_range=(96, 104))
    stop = _stop(result, 96, +1)
    assert (stop.reason, stop.stopped_at, stop.last) == (reason, breaks[0]["index"], breaks[0]["index"] - 1)
    assert max(result.masks) == breaks[0]["index"] - 1


def test_user_stop_slice_and_the_end_of_the_volume(engine_ct3mm, kidney, ct3mm_labels):
    result = propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(96, 106), stop_slices=[99])
    assert (_stop(result, 97, +1).reason, _stop(result, 97, +1).last) == (STOP_SLICE, 98)
    assert 99 not in result.masks
    spleen = engine_ct3mm.volume.axes("axial").stack(ct3mm_labels == 1)
    last = engine_ct3mm.n_slices("axial") - 1
    result = propagate(engine_ct3mm, {last - 2: spleen[last - 2]}, "axial", index_range=(last - 2, last))
    assert (_stop(result, last - 2, +1).reason, _stop(result, last - 2, +1).last) == (STOP_VOLUME_END, last)
    assert dice(result.masks[last], spleen[last]) > 0.9


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_other_axes(engine_ct3mm, ct3mm_labels, axis):
    truth = engine_ct3mm.volume.axes(axis).stack(ct3mm_labels == KIDNEY)
    seed = largest_slice(truth)
    result = propagate(engine_ct3mm, {seed: truth[seed]}, axis, index_range=(seed - 2, seed + 2))
    assert result.axis == axis and sorted(result.masks) == list(range(seed - 2, seed + 3))
    for index in (seed - 2, seed - 1, seed + 1, seed + 2):
        assert result.masks[index].shape == engine_ct3mm.slice_shape(axis)
        assert dice(result.masks[index], truth[index]) > 0.8, (axis, index)


@pytest.mark.parametrize("carry", [dict(mask_prompt=True), dict(positive_points=3), dict(negative_points=4),
                                   dict(box_margin_mm=(6.0,), select_by_intensity=False)])
def test_other_carry_strategies(engine_ct3mm, kidney, carry):
    result = propagate(engine_ct3mm, {97: kidney[97]}, "axial", PropagationConfig(**carry), index_range=(96, 98))
    for index in (96, 98):
        assert dice(result.masks[index], kidney[index]) > 0.85, (carry, index)


def test_interior_points_follow_the_consistency_rule(engine_ct3mm, kidney):
    from SAMSegSlicerLib.propagation import _interior_points, _State

    voxels = {i: engine_ct3mm.slice_voxels("axial", i).astype(np.float32) for i in (97, 98)}
    state = _State(97, kidney[97], None, voxels[97], int(kidney[97].sum()))
    spacing = engine_ct3mm.volume.axes("axial").spacing_rc(engine_ct3mm.volume.spacing_ijk)
    spread = voxels[97][kidney[97]].std()
    for lam in (0.5, 1.0):
        points = _interior_points(state, voxels[98], PropagationConfig(positive_points=5, consistency_lambda=lam),
                                  spacing)
        assert 1 <= len(points) <= 5
        for row, col in np.asarray(points, dtype=int):
            assert kidney[97][row, col]
            assert abs(voxels[98][row, col] - voxels[97][row, col]) < lam * spread
    assert _interior_points(state, voxels[98], PropagationConfig(positive_points=5, consistency_lambda=0.0),
                            spacing) == []


def test_cancel_midway_leaves_a_consistent_partial_result(engine_ct3mm, kidney):
    token = CancelToken()

    def cancel_after_two(progress):
        if progress.slices_done == 2:
            token.cancel()

    full = propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(93, 106))
    part = propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(93, 106), progress=cancel_after_two,
                     cancel=token)
    assert part.cancelled and part.slices_visited == 2
    assert sorted(part.masks) == [95, 96, 97]
    for index in (95, 96):
        assert np.array_equal(part.masks[index], full.masks[index])
    assert [(s.direction, s.last, s.reason) for s in part.stops] == [(-1, 95, STOP_CANCELLED), (1, 97, STOP_CANCELLED)]


def test_slices_are_encoded_only_as_propagation_reaches_them(ct3mm, model, worker, memory_only_cache, kidney):
    engine = make_engine(ct3mm, EngineOptions(), model=model, cache=memory_only_cache, worker=worker)
    config = PropagationConfig(prefetch=2)
    result = propagate(engine, {99: kidney[99]}, "axial", config, index_range=(97, 111))
    up = _stop(result, 99, +1)
    assert up.reason not in LIMITS
    worker.run(lambda: None)  # let a prefetch job that was already running finish
    visited = [i for i in range(97, up.stopped_at + 1) if i != 99]
    assert all(engine.is_encoded("axial", i) for i in visited)
    assert not any(engine.is_encoded("axial", i) for i in range(up.stopped_at + config.prefetch + 1, 112))


def test_bad_seeds_and_ranges_are_refused(engine_ct3mm, kidney):
    shape = engine_ct3mm.slice_shape("axial")
    with pytest.raises(InputError, match="empty"):
        propagate(engine_ct3mm, {97: np.zeros(shape, bool)}, "axial")
    with pytest.raises(InputError, match="seed mask on slice 97 is"):
        propagate(engine_ct3mm, {97: np.ones((5, 5), bool)}, "axial")
    with pytest.raises(InputError, match="outside the range"):
        propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(0, 50))
    with pytest.raises(InputError, match="slice range"):
        propagate(engine_ct3mm, {97: kidney[97]}, "axial", index_range=(50, 500))
    with pytest.raises(InputError, match="no seed"):
        propagate(engine_ct3mm, {}, "axial")
    with pytest.raises(InputError, match="box margin"):
        PropagationConfig(box_margin_mm=())


def test_a_single_slice_volume_has_nowhere_to_go(model, worker, memory_only_cache):
    from SAMSegSlicerLib.volume import Volume

    voxels = np.zeros((1, 40, 50), np.int16)
    voxels[0, 10:30, 15:35] = 200
    volume = Volume(voxels, np.diag([0.8, 0.8, 2.0, 1.0]))
    engine = make_engine(volume, EngineOptions(), model=model, cache=memory_only_cache, worker=worker)
    seed = voxels[0] > 0
    result = propagate(engine, {0: seed}, "axial")
    assert list(result.masks) == [0] and result.slices_visited == 0 and result.slices_predicted == 0
    assert [stop.reason for stop in result.stops] == [STOP_VOLUME_END, STOP_VOLUME_END]
    assert engine.stats.slices_encoded == 0


@pytest.fixture(scope="module")
def brain(data_dir, model, shared_cache, worker):
    volume = read_volume(data_dir / "mr_brain_tumor" / "image.nrrd")
    labels = read_labelmap(data_dir / "mr_brain_tumor" / "labels.nrrd", volume)
    return make_engine(volume, EngineOptions(), model=model, cache=shared_cache, worker=worker), labels


@pytest.mark.parametrize("seed_slices, minimum", [(1, 0.7), (2, 0.75)])
def test_propagate_protocol(brain, seed_slices, minimum):
    engine, labels = brain
    report = run_evaluation(engine, labels, [1], "propagate", EvalOptions(seed_slices=seed_slices))
    result = report.as_json()["results"][0]
    truth_slices = label_slices(engine.volume.axes("axial").stack(labels == 1))
    assert result["dice"] > minimum
    assert len(result["seed_slices"]) == seed_slices
    assert set(result["seed_slices"]) <= set(truth_slices)
    assert result["slices_predicted"] >= len(truth_slices) - seed_slices - 2
    assert result["slices_beyond_label"] <= 2
    assert {stop["reason"] for stop in result["stopped"]} - LIMITS


def test_cli_propagate(capsys, tmp_path, data_dir, ct3mm, kidney):
    seeds_kji = np.zeros(ct3mm.voxels_kji.shape, np.uint8)
    ct3mm.axes("axial").stack(seeds_kji)[97][kidney[97]] = KIDNEY
    seed_path = write_labelmap(tmp_path / "seed.nii.gz", seeds_kji, ct3mm)
    out = tmp_path / "out.nii.gz"
    image = data_dir / "ct_abdomen_3mm" / "image.nii.gz"
    code = main(["propagate", str(image), "--seed", str(seed_path), "--out", str(out), "--range", "93:106"])
    err = capsys.readouterr().err
    assert code == 0, err
    written = ct3mm.axes("axial").stack(sitk.GetArrayFromImage(sitk.ReadImage(str(out))))
    filled = label_slices(written == KIDNEY)
    assert filled[0] == 93 and KIDNEY_TOP - 2 <= filled[-1] <= KIDNEY_TOP + 1
    assert set(np.unique(written)) == {0, KIDNEY}
    assert np.array_equal(written[97] == KIDNEY, kidney[97])
    assert "from seed 97 down: stopped after slice 93: range" in err

    for argv, words in ((["--range", "93"], "--range must be Z0:Z1"), (["--label-value", "7"], "label 7 is not"),
                        (["--range", "0:500"], "slice range 0:500")):
        code = main(["propagate", str(image), "--seed", str(seed_path), "--out", str(tmp_path / "bad.nii.gz"), *argv])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("samseg: error:")]
        assert code == 2 and len(errors) == 1 and words in errors[0] and "Traceback" not in err
        assert not (tmp_path / "bad.nii.gz").exists()


@pytest.mark.parametrize("direction, forward_sign, max_slices, expected", [
    ("both", 1, 0, (0, 39)),
    ("both", 1, 5, (5, 25)),
    ("forward", 1, 0, (10, 39)),
    ("forward", -1, 0, (0, 20)),
    ("backward", 1, 3, (7, 20)),
    ("between", 1, 0, (10, 20)),
])
def test_propagation_range_for_a_gui_request(direction, forward_sign, max_slices, expected):
    from SAMSegSlicerLib.propagation import propagation_range

    assert propagation_range([10, 20], direction, forward_sign, max_slices, 40) == expected


def test_propagation_range_refuses_what_cannot_be_done():
    from SAMSegSlicerLib.propagation import propagation_range

    with pytest.raises(InputError, match="two annotated slices"):
        propagation_range([10], "between", 1, 0, 40)
    with pytest.raises(InputError, match="unknown propagation direction"):
        propagation_range([10], "sideways", 1, 0, 40)
    with pytest.raises(InputError, match="no annotated slice"):
        propagation_range([], "both", 1, 0, 40)
