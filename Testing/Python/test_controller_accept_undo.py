"""Accepting into a segment under the Segment Editor's settings (editable area, overwrite, intensity range), and
one undo history for prompts, accepts and propagations -- on Slicer's MRML (slicer-core), real LiteMedSAM."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from conftest_mrml import KIDNEY_RIGHT, LIVER, SPLEEN, segment_array
from SAMSegScenarios import PROPAGATION_MIN_DICE, dice, largest_slice, prompt_points_rc
from test_controller_prompts import place, scroll_to

from SAMSegSlicerLib.controller import AnnotationTarget, SliceKey
from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node
from SAMSegSlicerLib.errors import PromptError


def box_on(controller, slicer_scene, target, reference_kji, axis="axial", view="Red", index=None):
    """A box around the structure on its largest (or the given) slice; returns (index, reference mask)."""
    volume = volume_from_node(target.volume_node)
    if index is None:
        index, reference_rc = largest_slice(volume, reference_kji, axis)
    else:
        reference_rc = volume.axes(axis).take(reference_kji, index)
    points_ras = scroll_to(slicer_scene, volume, view, axis, index, prompt_points_rc("bounding_box", reference_rc))
    place(controller, slicer_scene, target, view, "box", points_ras)
    controller.wait_for_jobs()
    return index, reference_rc


def accept(controller, target):
    controller.accept(target)
    controller.wait_for_jobs()


@pytest.fixture
def a_spleen_target(a_liver_target, a_segmentation):
    node, ids = a_segmentation
    return AnnotationTarget(a_liver_target.volume_node, node, ids[1])


def test_accept_stays_inside_the_editable_area(a_controller, a_slicer_scene, a_liver_target, an_editor_writer,
                                                a_segmentation, ct_reference):
    """Editable area 'inside kidney': a liver box accepted with it changes only voxels the kidney segment holds."""
    node, ids = a_segmentation
    kidney = AnnotationTarget(a_liver_target.volume_node, node, ids[2])
    volume = volume_from_node(a_liver_target.volume_node)
    liver_index, _ = largest_slice(volume, ct_reference == LIVER, "axial")
    # the kidney segment: a half-plane of that slice (as if drawn with another effect)
    half_kji = np.zeros(ct_reference.shape, dtype=bool)
    volume.axes("axial").stack(half_kji)[liver_index][:, : volume.axes("axial").slice_shape[1] // 2] = True
    box_on(a_controller, a_slicer_scene, kidney, half_kji, index=liver_index)
    accept(a_controller, kidney)
    kidney_voxels = segment_array(kidney)

    editor = an_editor_writer.editor_node
    editor.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    editor.SetMaskSegmentID(ids[2])
    editor.SetOverwriteMode(editor.OverwriteNone)
    box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER, index=liver_index)
    candidate = a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", liver_index))
    accept(a_controller, a_liver_target)
    liver = segment_array(a_liver_target)
    assert liver.any()
    assert not (liver & ~kidney_voxels).any(), "accept wrote outside the editable area"
    expected = volume.axes("axial").take(kidney_voxels, liver_index) & candidate
    np.testing.assert_array_equal(volume.axes("axial").take(liver, liver_index), expected)


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite-on", "overwrite-off"])
def test_accept_takes_or_keeps_other_segments_voxels_by_the_overwrite_setting(
        overwrite, a_controller, a_slicer_scene, a_liver_target, a_spleen_target, an_editor_writer, ct_reference):
    """The spleen box's candidate overlaps nothing of the liver; a liver box accepted second over a spleen made
    deliberately large must take its voxels with overwrite on and leave them with it off."""
    volume = volume_from_node(a_liver_target.volume_node)
    index, _ = largest_slice(volume, ct_reference == LIVER, "axial")
    big_kji = np.zeros(ct_reference.shape, dtype=bool)
    big_kji[ct_reference == LIVER] = True  # the "spleen" segment is given the liver's slice: a full overlap
    box_on(a_controller, a_slicer_scene, a_spleen_target, big_kji, index=index)
    accept(a_controller, a_spleen_target)
    spleen_before = segment_array(a_spleen_target)
    assert spleen_before.sum() > 500

    editor = an_editor_writer.editor_node
    editor.SetOverwriteMode(editor.OverwriteAllSegments if overwrite else editor.OverwriteNone)
    box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER, index=index)
    accept(a_controller, a_liver_target)
    liver, spleen = segment_array(a_liver_target), segment_array(a_spleen_target)
    if overwrite:
        assert not (liver & spleen).any()
        assert spleen.sum() < 0.1 * spleen_before.sum(), "overwrite on left the other segment's voxels"
    else:
        np.testing.assert_array_equal(spleen, spleen_before)
        assert (liver & spleen).sum() > 0.8 * liver.sum(), "overwrite off: the segments should overlap"


def test_accept_keeps_to_the_intensity_range(a_controller, a_slicer_scene, a_liver_target, an_editor_writer,
                                             ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, _ = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    candidate = a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index))
    voxels = volume.axes("axial").take(volume.voxels_kji, index)
    low = float(np.median(voxels[candidate]))  # the denser half of the liver
    editor = an_editor_writer.editor_node
    editor.SetSourceVolumeIntensityMask(True)
    editor.SetSourceVolumeIntensityMaskRange(low, 3000.0)
    accept(a_controller, a_liver_target)
    written = volume.axes("axial").take(segment_array(a_liver_target), index)
    np.testing.assert_array_equal(written, candidate & (voxels >= low) & (voxels <= 3000))
    assert 0 < written.sum() < candidate.sum()


def test_undo_and_redo_walk_prompts_and_accepts_back_and_forth(a_controller, a_slicer_scene, a_liver_target,
                                                               ct_reference):
    index, reference_rc = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    key = SliceKey(a_liver_target.segment_id, "axial", index)
    candidate = a_controller.candidate_for(key)
    accept(a_controller, a_liver_target)
    accepted = segment_array(a_liver_target)
    assert accepted.sum() == candidate.sum()
    assert a_controller.candidate_for(key) is None

    a_controller.undo()  # the accept: segment empty again, the candidate back
    a_controller.wait_for_jobs()
    assert not segment_array(a_liver_target).any()
    np.testing.assert_array_equal(a_controller.candidate_for(key), candidate)
    a_controller.undo()  # the box
    a_controller.wait_for_jobs()
    assert a_controller.candidate_for(key) is None
    a_controller.undo()
    assert "Nothing to undo." in a_controller.statuses

    a_controller.redo()
    a_controller.wait_for_jobs()
    np.testing.assert_array_equal(a_controller.candidate_for(key), candidate)
    a_controller.redo()
    a_controller.wait_for_jobs()
    np.testing.assert_array_equal(segment_array(a_liver_target), accepted)


def test_erasing_a_slice_clears_the_segment_there_only_and_undo_brings_it_back(
        a_controller, a_slicer_scene, a_liver_target, a_spleen_target, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, _ = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    accept(a_controller, a_liver_target)
    box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER, index=index - 3)
    accept(a_controller, a_liver_target)
    box_on(a_controller, a_slicer_scene, a_spleen_target, ct_reference == SPLEEN, index=index)
    accept(a_controller, a_spleen_target)
    liver, spleen = segment_array(a_liver_target), segment_array(a_spleen_target)
    assert volume.axes("axial").take(spleen, index).any()

    a_controller.erase_slice(a_liver_target, a_slicer_scene.slice_node("Red"))
    a_controller.wait_for_jobs()
    erased = segment_array(a_liver_target)
    assert not volume.axes("axial").take(erased, index).any()
    expected = liver.copy()
    volume.axes("axial").stack(expected)[index] = False
    np.testing.assert_array_equal(erased, expected)
    np.testing.assert_array_equal(segment_array(a_spleen_target), spleen)
    assert a_controller.statuses[-1] == f"Erased axial slice {index} from the segment."
    a_controller.undo()
    a_controller.wait_for_jobs()
    np.testing.assert_array_equal(segment_array(a_liver_target), liver)
    a_controller.redo()
    a_controller.wait_for_jobs()
    np.testing.assert_array_equal(segment_array(a_liver_target), erased)


def test_the_editor_logic_undo_reverts_an_accept_and_samseg_then_refuses_its_own_undo(
        a_controller, a_slicer_scene, a_liver_target, an_editor_writer, ct_reference):
    box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    accept(a_controller, a_liver_target)
    assert segment_array(a_liver_target).any()
    assert an_editor_writer.logic.CanUndo()
    an_editor_writer.logic.Undo()
    assert not segment_array(a_liver_target).any(), "the Segment Editor's undo did not revert SAMSeg's accept"
    with pytest.raises(PromptError, match="edited after SAMSeg changed it"):
        a_controller.undo()
    an_editor_writer.logic.Redo()
    a_controller.undo()  # the segment holds SAMSeg's result again: undo goes through
    a_controller.wait_for_jobs()
    assert not segment_array(a_liver_target).any()


def test_undo_is_refused_after_another_effect_painted_on_the_slice(a_controller, a_slicer_scene, a_liver_target,
                                                                     an_editor_writer, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, _ = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    accept(a_controller, a_liver_target)
    accepted = segment_array(a_liver_target)
    # a paint stroke of another effect, on the accepted slice
    paint_rc = np.zeros(volume.axes("axial").slice_shape, dtype=bool)
    paint_rc[5:9, 5:9] = True
    from SAMSegSlicerLib.controller.mrml_geometry import ijk_to_segmentation, slab_labelmap

    an_editor_writer.add(a_liver_target, slab_labelmap(volume, "axial", index, paint_rc[None], ijk_to_segmentation(
        a_liver_target.volume_node, a_liver_target.segmentation_node)))
    painted = segment_array(a_liver_target)
    assert painted.sum() == accepted.sum() + 16
    with pytest.raises(PromptError, match="edited after SAMSeg changed it"):
        a_controller.undo()
    np.testing.assert_array_equal(segment_array(a_liver_target), painted)


def test_propagation_writes_the_liver_into_the_segment_as_one_undoable_step(
        a_controller, a_slicer_scene, a_liver_target, ct_reference):
    index, _ = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    accept(a_controller, a_liver_target)
    seed = segment_array(a_liver_target)
    a_controller.propagate(a_liver_target, a_slicer_scene.slice_node("Red"), "both")
    a_controller.wait_for_jobs()
    propagated = segment_array(a_liver_target)
    score = dice(propagated, ct_reference == LIVER)
    print(f"propagation into the segment: 3-D Dice {score:.3f}, {a_controller.statuses[-1]}")
    assert score >= PROPAGATION_MIN_DICE
    a_controller.undo()
    np.testing.assert_array_equal(segment_array(a_liver_target), seed)
    a_controller.redo()
    np.testing.assert_array_equal(segment_array(a_liver_target), propagated)


def test_propagation_after_learning_prompts_equals_stock_propagation_bit_for_bit(
        a_controller, a_slicer_scene, a_liver_target, a_spleen_target, ct_reference):
    """Learned prompts belong to their segment's clicks: propagation always runs the stock model."""
    volume = volume_from_node(a_liver_target.volume_node)
    index, _ = largest_slice(volume, ct_reference == SPLEEN, "axial")
    for learned in (index - 2, index + 2):
        box_on(a_controller, a_slicer_scene, a_spleen_target, ct_reference == SPLEEN, index=learned)
        accept(a_controller, a_spleen_target)
    stock_before = segment_array(a_spleen_target)
    a_controller.propagate(a_spleen_target, a_slicer_scene.slice_node("Red"), "both")
    a_controller.wait_for_jobs()
    stock = segment_array(a_spleen_target)
    a_controller.undo()
    np.testing.assert_array_equal(segment_array(a_spleen_target), stock_before)

    a_controller.learn_prompts(a_spleen_target, a_slicer_scene.slice_node("Red"))
    a_controller.wait_for_jobs()
    assert a_controller.has_learned_prompts(a_spleen_target), a_controller.statuses
    a_controller.propagate(a_spleen_target, a_slicer_scene.slice_node("Red"), "both")
    a_controller.wait_for_jobs()
    np.testing.assert_array_equal(segment_array(a_spleen_target), stock)
    assert dice(stock, ct_reference == SPLEEN) >= PROPAGATION_MIN_DICE


def test_closing_the_scene_clears_the_controller(a_controller, a_slicer_scene, a_liver_target, ct_reference):
    index, _ = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == KIDNEY_RIGHT)
    assert a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index)) is not None
    a_slicer_scene.scene.Clear(0)
    assert a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index)) is None
    assert not a_controller.history.done and a_controller.last_slice is None
    a_controller.undo()
    assert a_controller.statuses[-1] == "Nothing to undo."


def test_an_unusable_disk_cache_is_said_once_and_prompts_still_work(
        monkeypatch, tmp_path, a_slicer_scene, an_editor_writer, model, worker, a_liver_target, ct_reference):
    from SAMSegSlicerLib.controller import AnnotationController

    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    monkeypatch.setenv("SAMSEG_CACHE_DIR", str(not_a_folder))
    controller = AnnotationController(a_slicer_scene.scene, an_editor_writer, model=model, worker=worker)
    statuses = []
    controller.status_listeners.append(statuses.append)
    index, _ = box_on(controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    assert controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index)) is not None
    problems = [line for line in statuses if str(not_a_folder) in line]
    assert len(problems) == 1, statuses
    assert not_a_folder.read_text() == "a file where the cache folder should be"
    controller.close()
