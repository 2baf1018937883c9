"""The content of every segment of a segmentation over one block of the source volume's grid.

An accept or a propagation changes a known block (a slice, a slab).  Keeping what every segment held
there before and after is enough to undo and redo it exactly -- also what "overwrite other segments"
took from the others -- at the cost of that block only, so the history can be unlimited.  The digest
tells whether anyone changed the block since.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import slicer

from .mrml_geometry import image_block_kji, oriented_image


@dataclass(frozen=True)
class Block:
    """A block of the volume's grid: its IJK ``extent`` and where its voxels lie in the segmentation's frame."""

    extent: tuple[int, int, int, int, int, int]
    ijk_to_segmentation: np.ndarray

    @property
    def shape_kji(self) -> tuple[int, int, int]:
        e = self.extent
        return (e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)

    def image(self, block_kji: np.ndarray):
        return oriented_image(block_kji, list(self.extent), self.ijk_to_segmentation)


@dataclass(frozen=True)
class RegionSnapshot:
    """Each segment's voxels (bool, k j i) over a block, and a digest of all of them."""

    masks_kji: dict[str, np.ndarray]
    digest: str


def segment_block(segmentation_node, segment_id: str, block: Block) -> np.ndarray:
    """One segment's voxels over ``block`` (bool, k j i), read through its binary labelmap.

    The labelmap is the segment's layer, which other segments may share with other label values."""
    label_value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    labelmap = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, labelmap, False)
    empty = labelmap.GetPointData().GetScalars() is None or any(
        labelmap.GetExtent()[2 * a] > labelmap.GetExtent()[2 * a + 1] for a in range(3))
    if empty:
        return np.zeros(block.shape_kji, dtype=bool)
    reference = block.image(np.zeros(block.shape_kji, dtype=np.uint8))
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled, False, False)
    return image_block_kji(resampled) == label_value


def capture(segmentation_node, block: Block) -> RegionSnapshot:
    segmentation = segmentation_node.GetSegmentation()
    masks = {segment_id: segment_block(segmentation_node, segment_id, block)
             for segment_id in segmentation.GetSegmentIDs()}
    return RegionSnapshot(masks, _digest(masks))


def _digest(masks_kji: dict[str, np.ndarray]) -> str:
    hasher = hashlib.sha256()
    for segment_id in sorted(masks_kji):
        hasher.update(segment_id.encode())
        hasher.update(np.packbits(masks_kji[segment_id]).tobytes())
    return hasher.hexdigest()


def restore(segmentation_node, block: Block, snapshot: RegionSnapshot, full: Block) -> None:
    """Put every segment of ``snapshot`` back as it was over ``block``; nothing outside it changes.

    ``full``: the whole source volume's grid.  A segment is rewritten whole (read on that grid, the block
    replaced, written back): Slicer's replace mode on a labelmap layer shared by several segments clears
    the segment everywhere, not only inside the given extent.
    """
    e, f = block.extent, full.extent
    inside = (slice(e[4] - f[4], e[5] - f[4] + 1), slice(e[2] - f[2], e[3] - f[2] + 1),
              slice(e[0] - f[0], e[1] - f[0] + 1))
    for segment_id, mask_kji in snapshot.masks_kji.items():
        whole_kji = segment_block(segmentation_node, segment_id, full)
        if np.array_equal(whole_kji[inside], mask_kji):
            continue
        whole_kji[inside] = mask_kji
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            full.image(whole_kji), segmentation_node, segment_id,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
