"""Anatomical slicing and slice <-> IJK <-> RAS mapping on flipped, permuted and oblique grids."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from SAMSegSlicerLib.geometry import AXES, slice_axes, view_plane_to_slice


def _rotation(degrees_about_z: float, degrees_about_x: float) -> np.ndarray:
    a, b = np.radians(degrees_about_z), np.radians(degrees_about_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _grids():
    """Permuted and flipped axis-aligned grids plus an oblique one: (ijk_to_ras, shape_ijk)."""
    shape = (7, 9, 11)
    for perm in itertools.permutations(range(3)):
        for signs in ((1, 1, 1), (-1, -1, 1), (1, -1, -1)):
            matrix = np.eye(4)
            matrix[:3, :3] = 0
            for voxel_axis, ras_axis in enumerate(perm):
                matrix[ras_axis, voxel_axis] = signs[voxel_axis] * (0.5 + voxel_axis)
            matrix[:3, 3] = (10, -20, 5)
            yield matrix, shape
    oblique = np.eye(4)
    oblique[:3, :3] = _rotation(20, 15) @ np.diag([0.9, 0.9, 1.2])
    yield oblique, shape


@pytest.mark.parametrize("ijk_to_ras, shape", list(_grids()))
def test_display_orientation_and_round_trip(ijk_to_ras, shape):
    frames = {"axial": ((-1, 0, 0), (0, -1, 0)), "coronal": ((-1, 0, 0), (0, 0, -1)),
              "sagittal": ((0, -1, 0), (0, 0, -1))}
    for axis in AXES:
        axes = slice_axes(ijk_to_ras, shape, axis)
        assert sorted((axes.normal_ijk, axes.row_ijk, axes.col_ijk)) == [0, 1, 2]
        # Moving one column / one row on screen goes (mostly) the way Slicer's view shows it.
        origin = axes.rc_to_ijk(1, [[2, 2]])
        col_step = (ijk_to_ras[:3, :3] @ (axes.rc_to_ijk(1, [[2, 3]]) - origin)[0])
        row_step = (ijk_to_ras[:3, :3] @ (axes.rc_to_ijk(1, [[3, 2]]) - origin)[0])
        assert np.dot(col_step, frames[axis][0]) > 0.5 * np.linalg.norm(col_step)
        assert np.dot(row_step, frames[axis][1]) > 0.5 * np.linalg.norm(row_step)
        rc = np.array([[0.0, 0.0], [1.5, 2.25], [axes.slice_shape[0] - 1, axes.slice_shape[1] - 1]])
        index, back = axes.ijk_to_index_rc(axes.rc_to_ijk(3, rc))
        assert np.allclose(index, 3) and np.allclose(back, rc)
        array = np.arange(np.prod(shape)).reshape(shape[::-1])
        stack = axes.stack(array)
        assert stack.shape == (axes.n_slices, *axes.slice_shape)
        i, j, k = np.rint(axes.rc_to_ijk(2, [[1, 2]])[0]).astype(int)
        assert stack[2, 1, 2] == array[k, j, i]


def test_view_plane_maps_to_slice_or_explains():
    ijk_to_ras = np.diag([-0.8, -0.8, 2.5, 1.0])
    ijk_to_ras[:3, 3] = (100, 50, -30)
    shape = (64, 64, 20)
    point_ras = ijk_to_ras[:3, :3] @ np.array([10, 20, 7]) + ijk_to_ras[:3, 3]
    view = view_plane_to_slice(ijk_to_ras, shape, (0, 0, 1), point_ras)
    assert (view.axis, view.index) == ("axial", 7)
    assert view_plane_to_slice(ijk_to_ras, shape, (0, 1, 0), point_ras).axis == "coronal"
    assert view_plane_to_slice(ijk_to_ras, shape, (1, 0, 0), point_ras).axis == "sagittal"
    tilted = view_plane_to_slice(ijk_to_ras, shape, (0, 0.2, 1), point_ras)
    assert not tilted.ok and "rotated" in tilted.reason
    between = view_plane_to_slice(ijk_to_ras, shape, (0, 0, 1), point_ras + (0, 0, 1.25))
    assert not between.ok and "between" in between.reason
