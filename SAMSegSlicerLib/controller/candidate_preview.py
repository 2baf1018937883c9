"""The candidate of the slice being prompted, shown as a segmentation node of its own (not saved)."""

from __future__ import annotations

import slicer

PREVIEW_NAME = "SAMSeg candidate"
PREVIEW_SEGMENT = "candidate"
PREVIEW_COLOR = (1.0, 0.85, 0.1)


class CandidatePreview:
    def __init__(self, scene):
        self.scene = scene
        self.node = None

    def _segmentation(self):
        if self.node is None or self.node.GetScene() is None:
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
            node.SetHideFromEditors(True)
            node.SetSaveWithScene(False)
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            display.SetOpacity2DFill(0.35)
            display.SetOpacity2DOutline(1.0)
            display.SetVisibility3D(False)
            node.GetSegmentation().AddEmptySegment(PREVIEW_SEGMENT, PREVIEW_SEGMENT, PREVIEW_COLOR)
            self.node = node
        return self.node

    def show(self, labelmap, transform_node_id: str | None) -> None:
        """Show ``labelmap`` (a slice on the volume's grid, in the volume's own frame) under the volume's transform."""
        node = self._segmentation()
        node.SetAndObserveTransformNodeID(transform_node_id)
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, node, PREVIEW_SEGMENT, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)

    def clear(self) -> None:
        if self.node is not None and self.node.GetScene() is not None:
            slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(self.node, PREVIEW_SEGMENT)

    def forget(self) -> None:
        """The scene closed: the node is gone with it."""
        self.node = None
