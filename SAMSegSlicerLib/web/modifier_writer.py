"""The controller's :class:`~SAMSegSlicerLib.controller.host.SegmentWriter` through trame-slicer's segment modifier."""

from __future__ import annotations

from trame_slicer.core import SegmentationEditor
from trame_slicer.segmentation import ModificationMode

from ..controller import AnnotationTarget


class ModifierSegmentWriter:
    """Adds masks with trame-slicer's ``SegmentModifier.apply_labelmap``: the segment editor node's editable
    area, intensity range and overwrite settings apply (its ``vtkSlicerSegmentEditorLogic``).  The app gives the
    editor no undo stack of its own, so SAMSeg's history is the page's one history."""

    def __init__(self, editor: SegmentationEditor):
        self.editor = editor

    def add(self, target: AnnotationTarget, modifier_labelmap) -> None:
        if self.editor.active_segmentation_node is not target.segmentation_node \
                or self.editor.active_volume_node is not target.volume_node:
            self.editor.set_active_segmentation(target.segmentation_node, target.volume_node)
        self.editor.active_segment_modifier.apply_labelmap(
            modifier_labelmap, segment_id=target.segment_id, modification_mode=ModificationMode.Add,
            modifier_extent=list(modifier_labelmap.GetExtent()))
