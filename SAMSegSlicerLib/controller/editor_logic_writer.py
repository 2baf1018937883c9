"""Writes into segments through Slicer's ``vtkSlicerSegmentEditorLogic``: no Qt, same rules as the editor."""

from __future__ import annotations

import slicer

from .target import AnnotationTarget


class EditorLogicWriter:
    """A :class:`~.host.SegmentWriter` over a segment editor node and its logic.

    The editor node holds the user's settings (mask mode and mask segment, intensity range, overwrite
    mode); the logic applies them exactly as the Segment Editor does, and saves an undo state in its own
    history first, so the editor's Undo also reverts a SAMSeg write.
    """

    def __init__(self, scene, application_logic, editor_node=None):
        self.editor_node = editor_node or scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetMRMLApplicationLogic(application_logic)
        self.logic.SetSegmentEditorNode(self.editor_node)

    def select(self, target: AnnotationTarget) -> None:
        """Point the editor at the target (as choosing them in the Segment Editor does)."""
        if self.editor_node.GetSegmentationNode() is not target.segmentation_node:
            self.editor_node.SetAndObserveSegmentationNode(target.segmentation_node)
        if self.editor_node.GetSourceVolumeNode() is not target.volume_node:
            self.logic.SetSourceVolumeNode(target.volume_node)
        self.editor_node.SetSelectedSegmentID(target.segment_id)

    def add(self, target: AnnotationTarget, modifier_labelmap) -> None:
        self.select(target)
        self.logic.UpdateAlignedSourceVolume()
        self.logic.SaveStateForUndo()
        self.logic.ModifySegmentByLabelmap(target.segmentation_node, target.segment_id, modifier_labelmap,
                                           self.logic.ModificationModeAdd, modifier_labelmap.GetExtent(), True,
                                           False)
