"""The prompt marks both hosts draw over a slice view (controller/prompt_drawing.py), on slicer-core: each mark lies
where its world point shows in the view, and follows the view when it moves."""

from __future__ import annotations

import numpy as np
from conftest_mrml import LIVER
from SAMSegScenarios import largest_slice, prompt_points_rc
from test_controller_accept_undo import box_on
from test_controller_prompts import place, scroll_to

from SAMSegSlicerLib.controller.mrml_geometry import matrix_to_array, volume_from_node
from SAMSegSlicerLib.controller.prompt_drawing import PromptDrawing


def drawn_xy(layer) -> np.ndarray:
    points = layer.polydata.GetPoints()
    return np.array([points.GetPoint(i)[:2] for i in range(points.GetNumberOfPoints())])


def xy_of(slice_node, points_ras) -> np.ndarray:
    ras_to_xy = np.linalg.inv(matrix_to_array(slice_node.GetXYToRAS()))
    return (np.c_[np.asarray(points_ras), np.ones(len(points_ras))] @ ras_to_xy.T)[:, :2]


def test_a_box_and_a_click_are_drawn_where_they_were_placed_and_follow_the_view(
        a_controller, a_slicer_scene, a_liver_target, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, reference_rc = box_on(a_controller, a_slicer_scene, a_liver_target, ct_reference == LIVER)
    click_ras = volume.ijk_to_ras_points(volume.axes("axial").rc_to_ijk(index, prompt_points_rc("centre",
                                                                                               reference_rc)))
    place(a_controller, a_slicer_scene, a_liver_target, "Red", "positive_point", click_ras)
    a_controller.wait_for_jobs()
    slice_node = a_slicer_scene.slice_node("Red")
    prompts = a_controller.prompts_for(a_liver_target, slice_node)
    drawing = PromptDrawing()
    drawing.show_prompts(prompts, slice_node)

    np.testing.assert_allclose(drawn_xy(drawing.positive_points), xy_of(slice_node, prompts.positive_points_ras),
                               atol=1e-6)
    box_xy = drawn_xy(drawing.boxes)
    assert len(box_xy) == 5 and np.allclose(box_xy[0], box_xy[-1]), "a box is a closed outline of 4 corners"
    corners_rc = prompt_points_rc("bounding_box", reference_rc)
    corners_xy = xy_of(slice_node, volume.ijk_to_ras_points(volume.axes("axial").rc_to_ijk(index, corners_rc)))
    # the clicked corners are the view's nearest pixels: within one pixel of the exact corners
    assert np.abs(np.sort(box_xy[:4], axis=0)[[0, -1]] - np.sort(corners_xy, axis=0)).max() <= 1.0
    assert drawing.negative_points.polydata.GetPoints().GetNumberOfPoints() == 0

    slice_node.SetFieldOfView(*[2.0 * v for v in slice_node.GetFieldOfView()[:2]], slice_node.GetFieldOfView()[2])
    drawing.position(slice_node)  # zoomed out: the marks move with the view
    np.testing.assert_allclose(drawn_xy(drawing.positive_points), xy_of(slice_node, prompts.positive_points_ras),
                               atol=1e-6)


def test_a_dragged_box_shows_a_view_aligned_rubber_band_and_a_lasso_its_closed_outline(
        a_controller, a_slicer_scene, a_liver_target, ct_reference):
    volume = volume_from_node(a_liver_target.volume_node)
    index, reference_rc = largest_slice(volume, ct_reference == LIVER, "axial")
    corners_ras = scroll_to(a_slicer_scene, volume, "Red", "axial", index,
                            prompt_points_rc("bounding_box", reference_rc))
    slice_node = a_slicer_scene.slice_node("Red")
    drawing = PromptDrawing()
    drawing.show_drag("box", [corners_ras[0], corners_ras[1]], slice_node)
    band_xy = drawn_xy(drawing.drag)
    corners_xy = xy_of(slice_node, corners_ras)
    assert len(band_xy) == 5
    for column in (0, 1):  # the band's corners take their x and y from the two dragged corners (float32 points)
        np.testing.assert_allclose(np.unique(band_xy[:, column].round(3)), np.sort(corners_xy[:, column]), atol=1e-3)
    drawing.show_drag(None, [], slice_node)
    assert drawing.drag.polydata.GetPoints().GetNumberOfPoints() == 0

    outline_ras = scroll_to(a_slicer_scene, volume, "Red", "axial", index, prompt_points_rc("outline", reference_rc))
    place(a_controller, a_slicer_scene, a_liver_target, "Red", "lasso", outline_ras)
    a_controller.wait_for_jobs()
    prompts = a_controller.prompts_for(a_liver_target, slice_node)
    assert prompts.boxes_ras == [], "a lasso's own box is not drawn"
    drawing.show_prompts(prompts, slice_node)
    lasso_xy = drawn_xy(drawing.lassos)
    assert len(lasso_xy) == len(outline_ras) + 1 and np.allclose(lasso_xy[0], lasso_xy[-1])
