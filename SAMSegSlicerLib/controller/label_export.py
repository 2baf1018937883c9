"""A segmentation as one label map on the source volume's grid, for writers of label files."""

from __future__ import annotations

import numpy as np

from .mrml_geometry import ijk_to_segmentation
from .segment_region import Block, segment_block


def labels_of(segmentation_node, volume_node) -> tuple[np.ndarray, dict[int, str]]:
    """Each segment as one label value (1, 2, ... in the segmentation's order) on the volume's grid (k, j, i),
    and the segment names by value.  Where segments overlap, the later one's value is kept."""
    shape_ijk = volume_node.GetImageData().GetDimensions()
    block = Block((0, shape_ijk[0] - 1, 0, shape_ijk[1] - 1, 0, shape_ijk[2] - 1),
                  ijk_to_segmentation(volume_node, segmentation_node))
    segmentation = segmentation_node.GetSegmentation()
    labels_kji = np.zeros(block.shape_kji, dtype=np.uint16)
    names = {}
    for value, segment_id in enumerate(segmentation.GetSegmentIDs(), start=1):
        labels_kji[segment_block(segmentation_node, segment_id, block)] = value
        names[value] = segmentation.GetSegment(segment_id).GetName()
    return labels_kji, names
