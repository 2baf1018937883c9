"""MRML nodes and the Lib's geometry: volume node -> :class:`Volume`, slice node -> axis and slice,
slice masks -> a labelmap in a segmentation's frame.

Frames: ``ijk`` the volume's voxel index; ``world`` Slicer's RAS after every parent transform;
``segmentation`` the segmentation node's own (local) frame, in which its labelmaps are stored.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..errors import InputError
from ..geometry import ViewSlice, slice_axes
from ..session import slice_for_view, slice_rc_to_ras
from ..volume import Volume


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _linear_between(from_node, to_node, name: str) -> np.ndarray:
    """The matrix from ``from_node``'s parent frame to ``to_node``'s (None: world)."""
    matrix = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(from_node, to_node, matrix):
        raise InputError("a non-linear transform lies between the source volume and the segmentation or the "
                         "views", name, "harden the transform (Data module) or remove it")
    return matrix_to_array(matrix)


def ijk_to_world(volume_node) -> np.ndarray:
    """The volume node's IJK -> world RAS matrix, its linear parent transforms included."""
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    return _linear_between(volume_node.GetParentTransformNode(), None, volume_node.GetName()) \
        @ matrix_to_array(ijk_to_ras)


def ijk_to_segmentation(volume_node, segmentation_node) -> np.ndarray:
    """The volume's IJK -> the segmentation node's own frame (where its labelmaps live)."""
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    volume_to_segmentation = _linear_between(volume_node.GetParentTransformNode(),
                                             segmentation_node.GetParentTransformNode(), segmentation_node.GetName())
    return volume_to_segmentation @ matrix_to_array(ijk_to_ras)


def volume_from_node(volume_node) -> Volume:
    """The Lib's Volume of a scalar volume node: a copy of its voxels (k, j, i) and IJK -> world RAS."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError("no source volume selected", None, "select a source volume in the segment editor")
    image = volume_node.GetImageData()
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError("the source volume is not a scalar (grey-level) volume", volume_node.GetName(),
                         "select a scalar volume")
    voxels_kji = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(image.GetDimensions()[::-1])
    return Volume(np.array(voxels_kji), ijk_to_world(volume_node), source=volume_node.GetName())


def view_slice(volume: Volume, slice_node) -> ViewSlice:
    """Which slice of ``volume`` the slice view shows, or why none (rotated, between slices, outside)."""
    slice_to_ras = matrix_to_array(slice_node.GetSliceToRAS())
    return slice_for_view(volume, slice_to_ras[:3, 2], slice_to_ras[:3, 3])


def xy_to_ras(slice_node, point_xy) -> np.ndarray:
    """A view pixel (x, y from the view's lower left corner) -> world RAS on the view's plane."""
    return (matrix_to_array(slice_node.GetXYToRAS()) @ np.array([point_xy[0], point_xy[1], 0.0, 1.0]))[:3]


def ras_to_xy(slice_node, point_ras) -> np.ndarray:
    """World RAS -> the view's pixel (x, y) and the distance from its plane in slices (z)."""
    ras_to_xy_matrix = np.linalg.inv(matrix_to_array(slice_node.GetXYToRAS()))
    return (ras_to_xy_matrix @ np.append(np.asarray(point_ras, dtype=float), 1.0))[:3]


def slider_sign(volume: Volume, view: ViewSlice, slice_node) -> int:
    """+1 when the slice index grows the way the view's slice slider goes up, else -1."""
    previous, following = (0, 1) if view.index == 0 else (view.index - 1, view.index)
    step_ras = slice_rc_to_ras(volume, view.axis, following, [[0.0, 0.0]])[0] \
        - slice_rc_to_ras(volume, view.axis, previous, [[0.0, 0.0]])[0]
    normal_ras = matrix_to_array(slice_node.GetSliceToRAS())[:3, 2]
    return 1 if float(np.dot(step_ras, normal_ras)) > 0 else -1


def slab_extent(volume: Volume, axis: str, first: int, count: int) -> list[int]:
    """The IJK extent of ``count`` slices of ``axis`` from ``first``."""
    normal_ijk = volume.axes(axis).normal_ijk
    extent = [0, volume.shape_ijk[0] - 1, 0, volume.shape_ijk[1] - 1, 0, volume.shape_ijk[2] - 1]
    extent[2 * normal_ijk], extent[2 * normal_ijk + 1] = first, first + count - 1
    return extent


def oriented_image(block_kji: np.ndarray, extent: list[int], image_to_frame: np.ndarray) -> slicer.vtkOrientedImageData:
    """A vtkOrientedImageData (unsigned char) holding ``block_kji`` over ``extent`` of the grid ``image_to_frame``."""
    image = slicer.vtkOrientedImageData()
    image.SetExtent(extent)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(block_kji, dtype=np.uint8).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    image.SetImageToWorldMatrix(array_to_matrix(image_to_frame))
    return image


def image_block_kji(image) -> np.ndarray:
    """The voxels of an image as a (k, j, i) array (a copy)."""
    scalars = image.GetPointData().GetScalars()
    return numpy_support.vtk_to_numpy(scalars).reshape(image.GetDimensions()[::-1]).copy()


def slab_labelmap(volume: Volume, axis: str, first: int, masks_rc, ijk_to_frame: np.ndarray):
    """A labelmap (1 inside ``masks_rc``, one mask per slice from ``first`` on ``axis``) on the volume's grid,
    its voxels placed in a frame by ``ijk_to_frame`` (the segmentation's, for writes)."""
    masks_rc = np.asarray(masks_rc, dtype=bool)
    shape_ijk = list(volume.shape_ijk)
    shape_ijk[volume.axes(axis).normal_ijk] = masks_rc.shape[0]
    block_kji = np.zeros(shape_ijk[::-1], dtype=np.uint8)
    slice_axes(volume.ijk_to_ras, tuple(shape_ijk), axis).stack(block_kji)[:] = masks_rc
    return oriented_image(block_kji, slab_extent(volume, axis, first, masks_rc.shape[0]), ijk_to_frame)
