"""Volumes loaded by Slicer's volumes logic (NIfTI, NRRD, the DICOM series and the oblique MPRAGE) and slice views
set up as Slicer sets them: which slice a view shows, where a click lands, and what is refused -- on slicer-core."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from conftest_mrml import LIVER, segment_array
from SAMSegScenarios import dice, largest_slice, prompt_points_rc
from test_controller_accept_undo import accept, box_on
from test_controller_prompts import place, scroll_to

from SAMSegSlicerLib.controller import AnnotationTarget, SliceKey
from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node
from SAMSegSlicerLib.errors import PromptError
from SAMSegSlicerLib.volume import read_labelmap, read_volume, resample_nearest

VIEW_AXES = {"Red": "axial", "Yellow": "sagittal", "Green": "coronal"}


def assert_views_show_their_axes(controller, slicer_scene, volume_node):
    volume = volume_from_node(volume_node)
    for view, axis in VIEW_AXES.items():
        for index in (0, volume.axes(axis).n_slices // 2, volume.axes(axis).n_slices - 1):
            point_ras = volume.ijk_to_ras_points(volume.axes(axis).rc_to_ijk(index, [[1.0, 1.0]]))[0]
            slicer_scene.move_to(view, point_ras)
            shown = controller.view_slice(volume_node, slicer_scene.slice_node(view))
            assert (shown.axis, shown.index) == (axis, index), f"{view}: {shown}"


@pytest.mark.parametrize("case", ["ct_abdomen_3mm/image.nii.gz", "ct_lung_nodule/image.nrrd",
                                  "mr_brain_tumor/image.nrrd"])
def test_slicer_and_the_lib_read_a_file_onto_the_same_grid_and_views_map_to_its_slices(
        case, a_slicer_scene, a_controller, data_dir):
    node = a_slicer_scene.load_volume(data_dir / case, "volume")
    a_slicer_scene.show(node)
    in_slicer, in_lib = volume_from_node(node), read_volume(data_dir / case)
    # Slicer turns a left-handed grid (mr_brain_tumor's NRRD) right-handed by reversing k: the same voxels in the
    # same places, indexed the other way, so compare them where they lie.
    lib_ijk_from_slicer_ijk = np.linalg.inv(in_lib.ijk_to_ras) @ in_slicer.ijk_to_ras
    np.testing.assert_allclose(np.abs(lib_ijk_from_slicer_ijk[:3, :3]), np.eye(3), atol=1e-4)
    assert np.linalg.det(in_slicer.ijk_to_ras[:3, :3]) > 0
    np.testing.assert_array_equal(in_slicer.voxels_kji,
                                  resample_nearest(in_lib.voxels_kji, in_lib.ijk_to_ras, in_slicer))
    assert_views_show_their_axes(a_controller, a_slicer_scene, node)


def dicom_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file())


def test_the_dicom_series_loads_as_slicer_loads_it_and_a_box_segments_its_liver(
        a_slicer_scene, a_controller, data_dir):
    folder = data_dir / "ct_3slice_dicom"
    node = a_slicer_scene.load_dicom_series(dicom_files(folder / "series"), "ct_3slice")
    a_slicer_scene.show(node)
    volume = volume_from_node(node)
    assert volume.shape_ijk == (512, 512, 3)
    np.testing.assert_allclose(volume.ijk_to_ras, read_volume(folder / "series").ijk_to_ras, atol=1e-3)
    assert_views_show_their_axes(a_controller, a_slicer_scene, node)
    liver = read_labelmap(folder / "labels" / "liver_seg.nrrd", volume) > 0
    segmentation, ids = a_slicer_scene.add_segmentation(node, ["liver"])
    target = AnnotationTarget(node, segmentation, ids[0])
    index, reference_rc = box_on(a_controller, a_slicer_scene, target, liver)
    score = dice(a_controller.candidate_for(SliceKey(ids[0], "axial", index)), reference_rc)
    print(f"DICOM 3-slice CT liver box: Dice {score:.3f}")
    assert score >= 0.90
    accept(a_controller, target)
    assert dice(volume.axes("axial").take(segment_array(target), index), reference_rc) >= 0.90


def test_the_oblique_mprage_series_maps_its_views_after_rotate_to_volume_planes(a_slicer_scene, a_controller,
                                                                               data_dir):
    node = a_slicer_scene.load_dicom_series(dicom_files(data_dir / "mr_brain_mprage_dicom"), "mprage")
    a_slicer_scene.show(node)
    volume = volume_from_node(node)
    assert volume.shape_ijk == (256, 256, 130)
    directions = volume.ijk_to_ras[:3, :3] / np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)
    assert np.degrees(np.arccos(np.abs(directions).max(axis=0).min())) > 1.0, "the series should be oblique"
    assert_views_show_their_axes(a_controller, a_slicer_scene, node)
    # a box over the middle of the head on the middle axial slice gives a candidate, on that slice
    segmentation, ids = a_slicer_scene.add_segmentation(node, ["brain"])
    target = AnnotationTarget(node, segmentation, ids[0])
    axes = volume.axes("axial")
    index = axes.n_slices // 2
    rows, cols = axes.slice_shape
    box_rc = np.array([[rows * 0.3, cols * 0.3], [rows * 0.7, cols * 0.7]])
    points_ras = scroll_to(a_slicer_scene, volume, "Red", "axial", index, box_rc)
    place(a_controller, a_slicer_scene, target, "Red", "box", points_ras)
    a_controller.wait_for_jobs()
    candidate = a_controller.candidate_for(SliceKey(ids[0], "axial", index))
    assert candidate is not None and candidate.sum() > 100, a_controller.statuses


def test_a_view_rotated_by_20_degrees_is_refused_with_the_reason(a_controller, a_slicer_scene, a_liver_target,
                                                                ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, reference_rc = largest_slice(volume, ct_reference == LIVER, "axial")
    centre_ras = scroll_to(a_slicer_scene, volume, "Red", "axial", index, prompt_points_rc("centre", reference_rc))[0]
    slice_node = a_slicer_scene.slice_node("Red")
    rotation = vtk.vtkTransform()
    rotation.RotateX(20.0)
    tilted = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(slice_node.GetSliceToRAS(), rotation.GetMatrix(), tilted)
    slice_node.GetSliceToRAS().DeepCopy(tilted)
    slice_node.UpdateMatrices()
    with pytest.raises(PromptError, match=r"rotated 20\.0° from the volume's voxel planes"):
        a_controller.add_point(a_liver_target, slice_node, centre_ras, True)
    a_controller.wait_for_jobs()
    assert a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index)) is None
    assert not segment_array(a_liver_target).any()


@pytest.mark.parametrize("segmentation_transformed", [False, True], ids=["segmentation-in-world",
                                                                          "segmentation-transformed-too"])
def test_a_volume_under_a_translated_and_rotated_transform_is_prompted_and_written_in_place(
        segmentation_transformed, a_controller, a_slicer_scene, a_liver_target, ct_reference):
    """Rotated 90° about R and moved: the volume's axial slices become world coronal ones, so the Green view shows
    them; the prompt, the candidate and the voxels written land on the liver of the volume's own grid."""
    transform = a_slicer_scene.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkTransform()
    matrix.Translate(40.0, -25.0, 60.0)
    matrix.RotateX(90.0)
    transform.SetMatrixTransformToParent(matrix.GetMatrix())
    a_liver_target.volume_node.SetAndObserveTransformNodeID(transform.GetID())
    if segmentation_transformed:
        a_liver_target.segmentation_node.SetAndObserveTransformNodeID(transform.GetID())
    a_slicer_scene.show(a_liver_target.volume_node)

    volume = volume_from_node(a_liver_target.volume_node)  # IJK -> world, the transform included
    assert volume.axes("coronal").normal_ijk == 2, "the volume's k axis should now be world anterior-posterior"
    index, reference_rc = largest_slice(volume, ct_reference == LIVER, "coronal")
    points_ras = scroll_to(a_slicer_scene, volume, "Green", "coronal", index,
                           prompt_points_rc("bounding_box", reference_rc))
    place(a_controller, a_slicer_scene, a_liver_target, "Green", "box", points_ras)
    a_controller.wait_for_jobs()
    candidate = a_controller.candidate_for(SliceKey(a_liver_target.segment_id, "coronal", index))
    assert dice(candidate, reference_rc) >= 0.90
    accept(a_controller, a_liver_target)
    written = segment_array(a_liver_target)
    np.testing.assert_array_equal(volume.axes("coronal").take(written, index), candidate)
    assert written.sum() == candidate.sum()
