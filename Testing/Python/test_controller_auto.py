"""Auto-segment the rest (SAM^auto through the controller) and the presence guard of propagation, on Slicer's MRML
(slicer-core) with the real LiteMedSAM and ct_abdomen_3mm: the Dice and leak it reaches from three accepted slices,
one undo step, a cancel that leaves a consistent segment, one clear line without an accepted slice, and how much less
the guarded propagation leaks into other organs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest_mrml import LIVER, SPLEEN, segment_array
from SAMSegScenarios import AUTO_MIN_DICE, AUTO_SEED_SLICES, dice, spread_slices
from test_controller_accept_undo import accept, box_on

from SAMSegSlicerLib.controller import AnnotationSettings, AnnotationTarget
from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node
from SAMSegSlicerLib.errors import PromptError


def accept_slices(controller, slicer_scene, target, structure_kji, count: int = AUTO_SEED_SLICES) -> list[int]:
    """Box and accept the structure on ``count`` axial slices spread over its extent; returns their indices."""
    indices = spread_slices(volume_from_node(target.volume_node), structure_kji, "axial", count)
    for index in indices:
        box_on(controller, slicer_scene, target, structure_kji, index=index)
        accept(controller, target)
    return indices


def slices_holding(volume, mask_kji) -> list[int]:
    stack = volume.axes("axial").stack(mask_kji)
    return [int(i) for i in np.nonzero(stack.reshape(stack.shape[0], -1).any(axis=1))[0]]


@pytest.fixture
def a_spleen_target(a_liver_target, a_segmentation):
    node, ids = a_segmentation
    return AnnotationTarget(a_liver_target.volume_node, node, ids[1])


def test_auto_segmenting_the_rest_from_three_accepted_spleen_slices_reaches_the_dice_in_one_undo_step(
        a_controller, a_slicer_scene, a_spleen_target, ct_reference):
    spleen = ct_reference == SPLEEN
    accept_slices(a_controller, a_slicer_scene, a_spleen_target, spleen)
    seeds = segment_array(a_spleen_target)
    a_controller.auto_segment_rest(a_spleen_target, a_slicer_scene.slice_node("Red"))
    a_controller.wait_for_jobs()
    auto = segment_array(a_spleen_target)
    score = dice(auto, spleen)
    leak = float((auto & (ct_reference != 0) & ~spleen).sum() / auto.sum())  # inside other organs
    status = a_controller.statuses[-1]
    print(f"auto-segmented spleen from 3 slices: 3-D Dice {score:.3f}, leak share {leak:.4f}; {status}")
    assert score >= AUTO_MIN_DICE["spleen"]
    assert leak <= 0.01
    assert status.startswith("Auto-segmentation from 3 accepted axial slices added ")
    assert status.count("the chain from slice") == 6  # each seed carries both ways
    assert [c.kind.value for c in a_controller.history.done][-1] == "auto-segmentation"

    a_controller.undo()  # the whole auto-segmentation is one step: back to the three accepted slices exactly
    np.testing.assert_array_equal(segment_array(a_spleen_target), seeds)
    assert a_controller.statuses[-1] == "Auto-segmentation undone."
    a_controller.redo()
    np.testing.assert_array_equal(segment_array(a_spleen_target), auto)


def test_cancelling_auto_segmentation_midway_keeps_a_consistent_segment(
        monkeypatch, a_controller, a_slicer_scene, a_spleen_target, ct_reference):
    spleen = ct_reference == SPLEEN
    volume = volume_from_node(a_spleen_target.volume_node)
    indices = accept_slices(a_controller, a_slicer_scene, a_spleen_target, spleen)
    seeds = segment_array(a_spleen_target)
    reported = a_controller._set_progress

    def cancel_after_four_slices(done, total, text):  # the worker reports; the user presses Cancel then
        reported(done, total, text)
        if text.startswith("Auto-segmenting") and done >= 4:
            a_controller.cancel()

    monkeypatch.setattr(a_controller, "_set_progress", cancel_after_four_slices)
    a_controller.auto_segment_rest(a_spleen_target, a_slicer_scene.slice_node("Red"))
    a_controller.wait_for_jobs()
    kept = segment_array(a_spleen_target)
    status = a_controller.statuses[-1]
    print(f"cancelled auto-segmentation: {status}")
    assert "cancelled, kept" in status and "(cancelled)" in status
    added = int(status.split("cancelled, kept ")[1].split()[0])
    # the seeds are untouched, the kept slices are whole slices of the run (no half-written slab)
    for index in indices:
        np.testing.assert_array_equal(volume.axes("axial").take(kept, index), volume.axes("axial").take(seeds, index))
    new_slices = sorted(set(slices_holding(volume, kept)) - set(indices))
    assert 1 <= added == len(new_slices) <= 4
    new_voxels = kept & ~seeds
    precision = float((new_voxels & spleen).sum() / new_voxels.sum())
    print(f"the kept slices: {new_slices}, precision {precision:.3f} against the spleen")
    assert precision >= 0.85  # what was kept is spleen
    a_controller.undo()
    np.testing.assert_array_equal(segment_array(a_spleen_target), seeds)
    assert not a_controller.jobs.busy


def test_auto_segmenting_without_an_accepted_slice_is_refused_with_one_line(
        a_controller, a_slicer_scene, a_spleen_target):
    with pytest.raises(PromptError, match="no view to auto-segment in"):
        a_controller.auto_segment_rest(a_spleen_target)  # nothing prompted yet: no view to take the axis from
    with pytest.raises(PromptError) as refused:
        a_controller.auto_segment_rest(a_spleen_target, a_slicer_scene.slice_node("Red"))
    assert refused.value.one_line() == ("no accepted axial slice in this segment — accept at least one slice on this "
                                        "axis before auto-segmenting the rest")
    assert not segment_array(a_spleen_target).any() and not a_controller.jobs.busy


def test_the_presence_guard_makes_liver_propagation_leak_less_into_other_organs(
        a_controller, a_slicer_scene, a_liver_target, ct_reference):
    liver = ct_reference == LIVER
    box_on(a_controller, a_slicer_scene, a_liver_target, liver)
    accept(a_controller, a_liver_target)
    seed = segment_array(a_liver_target)
    measured = {}
    for guard in (False, True):
        a_controller.settings = lambda guard=guard: replace(AnnotationSettings(), presence_guard=guard)
        a_controller.propagate(a_liver_target, a_slicer_scene.slice_node("Red"), "both")
        a_controller.wait_for_jobs()
        segment = segment_array(a_liver_target)
        predicted = segment & ~seed
        leak = float((predicted & (ct_reference != 0) & ~liver).sum() / predicted.sum())
        measured[guard] = (dice(segment, liver), leak)
        print(f"liver from one slice, presence guard {'on' if guard else 'off'}: 3-D Dice {measured[guard][0]:.3f}, "
              f"leak share {leak:.4f}; {a_controller.statuses[-1]}")
        assert ("with the presence guard" in a_controller.statuses[-1]) == guard
        a_controller.undo()
        np.testing.assert_array_equal(segment_array(a_liver_target), seed)
    assert measured[True][1] <= 0.5 * measured[False][1]
    assert measured[True][0] >= measured[False][0] - 0.01
