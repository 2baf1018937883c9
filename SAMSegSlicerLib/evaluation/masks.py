"""Mask and label-map measures shared by the protocols and the report.

Stacks are (slice, row, col) bool arrays along the evaluated axis (``VolumeAxes.stack``); the
bounding box of a mask is :func:`SAMSegSlicerLib.geometry.bbox_rc`.
"""

from __future__ import annotations

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def label_slices(truth_stack: np.ndarray) -> list[int]:
    """Indices of the slices (first axis of a (slice, row, col) stack) that hold the label."""
    return [int(i) for i in np.flatnonzero(truth_stack.reshape(truth_stack.shape[0], -1).any(axis=1))]


def largest_slice(truth_stack: np.ndarray) -> int:
    return int(np.argmax(truth_stack.reshape(truth_stack.shape[0], -1).sum(axis=1)))


def reach_beyond(truth_slices: list[int], predicted_slices: list[int]) -> int:
    """How far (in slices) the prediction reaches past either end of the label."""
    if not predicted_slices:
        return 0
    return max(0, truth_slices[0] - predicted_slices[0], predicted_slices[-1] - truth_slices[-1])
