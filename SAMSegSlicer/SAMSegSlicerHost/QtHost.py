"""The controller's host protocols (``SAMSegSlicerLib.controller.host``) in the Slicer application."""

import qt
import slicer

from SAMSegSlicerLib.errors import PromptError


class QTimerScheduler:
    """Polls the controller on Qt's main thread while worker jobs run."""

    def __init__(self, intervalMs: int):
        self._poll = None
        self._timer = qt.QTimer()
        self._timer.setInterval(intervalMs)
        self._timer.connect("timeout()", self._tick)

    def start(self, poll) -> None:
        self._poll = poll
        if not self._timer.isActive():
            self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        if self._poll is not None:
            self._poll()


class EffectSegmentWriter:
    """Adds masks to a segment through the active SAMSeg effect: one Segment Editor step (its Undo reverts it),
    with the editor's editable area, intensity range and overwrite settings applied."""

    def __init__(self):
        self.effect = None

    def add(self, target, modifierLabelmap) -> None:
        effect = self.effect
        parameterSetNode = effect.parameterSetNode() if effect is not None else None
        editedNode = parameterSetNode.GetSegmentationNode() if parameterSetNode is not None else None
        if editedNode is None or editedNode.GetID() != target.segmentation_node.GetID():
            raise PromptError("the SAMSeg effect is not active on this segmentation",
                              target.segmentation_node.GetName(),
                              "select the SAMSeg effect in the segment editor of this segmentation")
        effect.saveStateForUndo()
        effect.modifySegmentByLabelmap(target.segmentation_node, target.segment_id, modifierLabelmap,
                                       slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd)
