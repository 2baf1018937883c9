"""Prompts placed through a slice view's XY, as the SAMSeg effect receives them, on Slicer's MRML (slicer-core)
with the real LiteMedSAM: each tool in each of Red, Yellow and Green reaches the reference Dice, and accepting
writes exactly the candidate into the segment."""

from __future__ import annotations

import numpy as np
import pytest
from conftest_mrml import LIVER, segment_array
from SAMSegScenarios import PROMPT_FIXTURES, STRUCTURES, dice, largest_slice, prompt_points_rc

from SAMSegSlicerLib.controller import AnnotationTarget, SliceKey
from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node


def place(controller, slicer_scene, target, view, tool, points_ras):
    """What an effect does for a click (point tools) or a drag (box, scribble) in ``view``: the clicked pixels,
    back in world coordinates, handed to ``controller.prompt``."""
    clicked = [slicer_scene.click_ras(view, p) for p in points_ras]
    return controller.prompt(target, slicer_scene.slice_node(view), tool, clicked)


def scroll_to(slicer_scene, volume, view, axis, index, points_rc):
    """Scroll the view onto the slice; return the prompt points in world RAS."""
    points_ras = volume.ijk_to_ras_points(volume.axes(axis).rc_to_ijk(index, points_rc))
    slicer_scene.move_to(view, points_ras[0])
    return points_ras


@pytest.mark.parametrize("fixture", PROMPT_FIXTURES, ids=lambda f: f"{f['tool']}-in-{f['view']}")
def test_a_prompt_in_a_slice_view_segments_its_organ_and_accept_writes_it(
        fixture, a_controller, a_slicer_scene, a_liver_target, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    axis = fixture["orientation"]
    index, reference_rc = largest_slice(volume, ct_reference == STRUCTURES[fixture["structure"]], axis)
    points_ras = scroll_to(a_slicer_scene, volume, fixture["view"], axis, index,
                           prompt_points_rc(fixture["at"], reference_rc))
    view = a_controller.view_slice(a_liver_target.volume_node, a_slicer_scene.slice_node(fixture["view"]))
    assert (view.axis, view.index) == (axis, index)

    place(a_controller, a_slicer_scene, a_liver_target, fixture["view"], fixture["tool"], points_ras)
    a_controller.wait_for_jobs()
    candidate = a_controller.candidate_for(SliceKey(a_liver_target.segment_id, axis, index))
    assert candidate is not None, a_controller.statuses
    score = dice(candidate, reference_rc)
    print(f"{fixture['tool']} on the {fixture['structure']} in {fixture['view']} ({axis} {index}): Dice {score:.3f}")
    assert score >= fixture["min_dice"]

    a_controller.accept(a_liver_target)
    a_controller.wait_for_jobs()
    written = segment_array(a_liver_target)
    np.testing.assert_array_equal(volume.axes(axis).take(written, index), candidate)
    assert written.sum() == candidate.sum(), "accept wrote outside its slice"


def test_the_candidate_is_shown_in_the_preview_segmentation_on_its_slice_only(
        a_controller, a_slicer_scene, a_liver_target, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, reference_rc = largest_slice(volume, ct_reference == LIVER, "axial")
    points_ras = scroll_to(a_slicer_scene, volume, "Red", "axial", index,
                           prompt_points_rc("bounding_box", reference_rc))
    place(a_controller, a_slicer_scene, a_liver_target, "Red", "box", points_ras)
    a_controller.wait_for_jobs()
    preview = a_slicer_scene.scene.GetFirstNodeByName("SAMSeg candidate")
    assert preview is not None and not preview.GetSaveWithScene()
    shown = segment_array(AnnotationTarget(a_liver_target.volume_node, preview, "candidate"))
    candidate = a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index))
    np.testing.assert_array_equal(volume.axes("axial").take(shown, index), candidate)
    assert shown.sum() == candidate.sum()
    assert not segment_array(a_liver_target).any(), "a candidate must not touch the segment before accept"
