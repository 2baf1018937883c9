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


def slices_beyond(truth_slices: list[int], predicted_slices: list[int]) -> int:
    """How many predicted slices lie outside the label's extent (its first to its last slice),
    both ends together; every predicted slice when the label is on none."""
    if not truth_slices:
        return len(predicted_slices)
    first, last = truth_slices[0], truth_slices[-1]
    return sum(1 for index in predicted_slices if index < first or index > last)


def leak_share(prediction: np.ndarray, other_labels: np.ndarray) -> float:
    """The share of predicted voxels that lie inside other labels of the reference (0 for an
    empty prediction)."""
    prediction = np.asarray(prediction, bool)
    predicted = int(prediction.sum())
    return 0.0 if predicted == 0 else int(np.logical_and(prediction, other_labels).sum()) / predicted
