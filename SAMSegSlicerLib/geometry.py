"""Slice geometry: anatomical slicing of a voxel array and exact slice <-> IJK <-> RAS mapping.

Frames used throughout the project:

* ``ijk`` -- voxel index in the file's storage order (i fastest); arrays are held as ``voxels_kji``.
* ``ras`` -- patient millimetres, Right-Anterior-Superior (Slicer's world frame).
* ``slice_rc`` -- (row, col) inside a 2-D slice shown in display orientation.

A slice is displayed as Slicer's default slice views show it (``vtkMRMLSliceNode``'s
``Get{Axial,Coronal,Sagittal}SliceToRASMatrix`` with patient right on screen left):

* axial: columns run to patient Left, rows run to Posterior;
* coronal: columns run to patient Left, rows run to Inferior;
* sagittal: columns run to Posterior, rows run to Inferior.

For volumes whose axes are not aligned with RAS (oblique acquisitions), each anatomical
axis is served by the closest voxel axis, so a slice is always a plane of voxels and no
resampling ever happens.  The slice index along an axis is the voxel index along the
voxel axis that serves it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

AXES = ("axial", "coronal", "sagittal")

# Unit RAS directions: (normal, column direction, row direction) of each display frame.
_DISPLAY_FRAMES_RAS = {
    "axial": ((0, 0, 1), (-1, 0, 0), (0, -1, 0)),
    "coronal": ((0, 1, 0), (-1, 0, 0), (0, 0, -1)),
    "sagittal": ((1, 0, 0), (0, -1, 0), (0, 0, -1)),
}


def check_axis(axis: str) -> str:
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; use one of {', '.join(AXES)}")
    return axis


def closest_axis_permutation(ijk_to_ras: np.ndarray) -> tuple[int, int, int]:
    """For each RAS axis (R, A, S) the voxel axis (0=i, 1=j, 2=k) that is closest to it.

    Chosen jointly over all six permutations so that every voxel axis serves exactly one
    anatomical axis, even for strongly oblique volumes.
    """
    directions = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0, keepdims=True)
    best = max(
        itertools.permutations(range(3)),
        key=lambda perm: sum(abs(directions[ras, perm[ras]]) for ras in range(3)),
    )
    return tuple(int(a) for a in best)


@dataclass(frozen=True)
class SliceAxes:
    """How the slices of one anatomical axis sit in a voxel grid.

    ``normal_ijk``, ``row_ijk`` and ``col_ijk`` name the voxel axes (0=i, 1=j, 2=k) that the
    slice index, the slice rows and the slice columns run along; a flip means the slice
    coordinate runs against the voxel index.
    """

    axis: str
    shape_ijk: tuple[int, int, int]
    normal_ijk: int
    row_ijk: int
    col_ijk: int
    row_flip: bool
    col_flip: bool

    @property
    def n_slices(self) -> int:
        return self.shape_ijk[self.normal_ijk]

    @property
    def slice_shape(self) -> tuple[int, int]:
        return (self.shape_ijk[self.row_ijk], self.shape_ijk[self.col_ijk])

    def stack(self, array_kji: np.ndarray) -> np.ndarray:
        """A (slice, row, col) view of a (k, j, i) array; writable if the array is."""
        view = np.transpose(array_kji, (2 - self.normal_ijk, 2 - self.row_ijk, 2 - self.col_ijk))
        if self.row_flip:
            view = view[:, ::-1, :]
        if self.col_flip:
            view = view[:, :, ::-1]
        return view

    def take(self, array_kji: np.ndarray, index: int) -> np.ndarray:
        self.check_index(index)
        return self.stack(array_kji)[index]

    def check_index(self, index: int) -> int:
        if not 0 <= index < self.n_slices:
            raise IndexError(f"{self.axis} slice {index} is outside 0..{self.n_slices - 1}")
        return index

    def rc_to_ijk(self, index: float, slice_rc: np.ndarray) -> np.ndarray:
        """Slice (row, col) coordinates on slice ``index`` -> continuous voxel (i, j, k)."""
        slice_rc = np.atleast_2d(np.asarray(slice_rc, dtype=float))
        n_rows, n_cols = self.slice_shape
        rows = slice_rc[:, 0]
        cols = slice_rc[:, 1]
        point_ijk = np.empty((slice_rc.shape[0], 3), dtype=float)
        point_ijk[:, self.normal_ijk] = index
        point_ijk[:, self.row_ijk] = (n_rows - 1 - rows) if self.row_flip else rows
        point_ijk[:, self.col_ijk] = (n_cols - 1 - cols) if self.col_flip else cols
        return point_ijk

    def ijk_to_index_rc(self, point_ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous voxel (i, j, k) -> (slice index, slice (row, col)); no rounding."""
        point_ijk = np.atleast_2d(np.asarray(point_ijk, dtype=float))
        n_rows, n_cols = self.slice_shape
        rows = point_ijk[:, self.row_ijk]
        cols = point_ijk[:, self.col_ijk]
        slice_rc = np.stack(
            [(n_rows - 1 - rows) if self.row_flip else rows, (n_cols - 1 - cols) if self.col_flip else cols],
            axis=1,
        )
        return point_ijk[:, self.normal_ijk], slice_rc

    def spacing_rc(self, spacing_ijk: tuple[float, float, float]) -> tuple[float, float]:
        """Millimetres per slice row and per slice column."""
        return (float(spacing_ijk[self.row_ijk]), float(spacing_ijk[self.col_ijk]))


def slice_axes(ijk_to_ras: np.ndarray, shape_ijk: tuple[int, int, int], axis: str) -> SliceAxes:
    """The :class:`SliceAxes` of ``axis`` for a grid with the given geometry."""
    check_axis(axis)
    directions = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    perm = closest_axis_permutation(ijk_to_ras)
    normal_ras, col_ras, row_ras = (np.asarray(v) for v in _DISPLAY_FRAMES_RAS[axis])

    def serve(direction_ras: np.ndarray) -> tuple[int, bool]:
        ras = int(np.argmax(np.abs(direction_ras)))
        voxel_axis = perm[ras]
        flip = np.sign(directions[ras, voxel_axis]) != np.sign(direction_ras[ras])
        return voxel_axis, bool(flip)

    normal_ijk, _ = serve(normal_ras)
    row_ijk, row_flip = serve(row_ras)
    col_ijk, col_flip = serve(col_ras)
    return SliceAxes(axis, tuple(int(n) for n in shape_ijk), normal_ijk, row_ijk, col_ijk, row_flip, col_flip)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.atleast_2d(np.asarray(points, dtype=float))
    return points @ matrix[:3, :3].T + matrix[:3, 3]


@dataclass(frozen=True)
class ViewSlice:
    """Where a slice view's plane lies in a volume: an axis and a slice index, or why not."""

    axis: str | None
    index: int | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.axis is not None


def view_plane_to_slice(
    ijk_to_ras: np.ndarray,
    shape_ijk: tuple[int, int, int],
    normal_ras: np.ndarray,
    point_ras: np.ndarray,
    angle_tolerance_deg: float = 0.5,
    offset_tolerance_voxels: float = 0.25,
) -> ViewSlice:
    """Decide which slice of the volume a view plane (normal and a point on it, RAS) shows.

    The plane must be parallel to a voxel plane (within ``angle_tolerance_deg``) and pass
    within ``offset_tolerance_voxels`` of a voxel centre; otherwise the view is oblique or
    between slices, and the reason says what the user can do.
    """
    normal_ras = np.asarray(normal_ras, dtype=float)
    normal_ras = normal_ras / np.linalg.norm(normal_ras)
    directions = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    unit = directions / np.linalg.norm(directions, axis=0, keepdims=True)
    cosines = np.abs(unit.T @ normal_ras)
    voxel_axis = int(np.argmax(cosines))
    angle = float(np.degrees(np.arccos(np.clip(cosines[voxel_axis], -1.0, 1.0))))
    if angle > angle_tolerance_deg:
        return ViewSlice(
            None,
            None,
            f"the view is rotated {angle:.1f}° from the volume's voxel planes; "
            "align it with the volume (Slicer: 'Rotate to volume plane') to place prompts",
        )
    axis = next(a for a in AXES if slice_axes(ijk_to_ras, shape_ijk, a).normal_ijk == voxel_axis)
    point_ijk = apply_affine(np.linalg.inv(ijk_to_ras), point_ras)[0]
    position = point_ijk[voxel_axis]
    index = int(round(position))
    if abs(position - index) > offset_tolerance_voxels:
        return ViewSlice(None, None, f"the view lies between {axis} slices {int(np.floor(position))} and "
                                     f"{int(np.ceil(position))}; move it onto a slice to place prompts")
    if not 0 <= index < shape_ijk[voxel_axis]:
        return ViewSlice(None, None, f"the view is outside the volume ({axis} slice {index})")
    return ViewSlice(axis, index)


def bbox_rc(mask_rc: np.ndarray) -> np.ndarray:
    """Inclusive (row_min, col_min, row_max, col_max) of a non-empty 2-D mask."""
    rows = np.flatnonzero(mask_rc.any(axis=1))
    cols = np.flatnonzero(mask_rc.any(axis=0))
    return np.array([rows[0], cols[0], rows[-1], cols[-1]], dtype=np.float32)
