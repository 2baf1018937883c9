"""The SAMSeg Segment Editor effect: clicks and drags in the slice views become SAMSeg prompts.

The effect only routes events and draws.  Prompts go to the annotation controller of
``SAMSegSlicer.sharedLogic()`` (``SAMSegSlicerLib.controller``), which runs the model on its worker thread
and writes accepted masks back through this effect (undoable, and respecting the editable area, intensity
range and overwrite settings).  Each slice view gets its own drawing (``SAMSegSlicerLib.controller.prompt_drawing``,
shared with the web app): the prompts of the slice the view shows, the rubber band while a box is dragged and the
path while a scribble or lasso is drawn.  The drawings follow slice changes.
"""

import os

import numpy as np
import qt
import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from SAMSegSlicerLib.controller import DRAG_TOOLS
from SAMSegSlicerLib.controller.prompt_drawing import PromptDrawing


def _logic():
    import SAMSegSlicer

    return SAMSegSlicer.sharedLogic()


def _controller():
    return _logic().controller


class SegmentEditorSAMSegEffect(AbstractScriptedSegmentEditorEffect):
    """SAMSeg: points, box and scribbles for Segment Anything models."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "SAMSeg"
        scriptedEffect.title = "SAMSeg"
        scriptedEffect.perSegment = True
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.pipelines = {}
        self.drag = None
        self.sliceDescription = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        iconPath = os.path.join(os.path.dirname(__file__), "SegmentEditorSAMSegEffect.png")
        return qt.QIcon(iconPath) if os.path.exists(iconPath) else qt.QIcon()

    def helpText(self):
        return """<html>Segment Anything prompts in the Red, Yellow and Green views.<br>
<ul style="margin: 0">
<li><b>Positive / negative point (A / S):</b> click on / beside the object.</li>
<li><b>Box (D):</b> press, drag and release around the object.</li>
<li><b>Positive / negative scribble (E / X):</b> drag inside / outside the object.</li>
<li><b>Lasso (L):</b> drag a closed outline around the object.</li>
<li><b>Enter:</b> accept the slice into the selected segment; <b>Backspace:</b> clear the slice's prompts;
<b>Delete:</b> erase the segment from the slice;
<b>U / Shift+U:</b> undo / redo; <b>P:</b> propagate.</li>
</ul>
Model, tools and propagation are in the SAMSeg module.</html>"""

    def setupOptionsFrame(self):
        label = qt.QLabel("Model, tools, accept/undo and propagation are in the SAMSeg module panel.")
        label.wordWrap = True
        self.scriptedEffect.addOptionsWidget(label)
        openButton = qt.QPushButton("Open SAMSeg module")
        openButton.connect("clicked()", lambda: slicer.util.selectModule("SAMSegSlicer"))
        self.scriptedEffect.addOptionsWidget(openButton)

    def setMRMLDefaults(self):
        pass

    def updateGUIFromMRML(self):
        pass

    def updateMRMLFromGUI(self):
        pass

    def activate(self):
        _logic().attachEffect(self.scriptedEffect)
        _controller().change_listeners.append(self.redraw)
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            for name in layoutManager.sliceViewNames():
                self.pipelineFor(layoutManager.sliceWidget(name))
        self.redraw()

    def deactivate(self):
        _logic().detachEffect(self.scriptedEffect)
        listeners = _controller().change_listeners
        if self.redraw in listeners:
            listeners.remove(self.redraw)
        for viewWidget, pipeline in self.pipelines.items():
            for actor in pipeline.actors():
                self.scriptedEffect.removeActor2D(viewWidget, actor)
        self.pipelines = {}
        self.drag = None

    def target(self):
        from SAMSegSlicerLib.controller import AnnotationTarget

        parameterSetNode = self.scriptedEffect.parameterSetNode()
        return AnnotationTarget(parameterSetNode.GetSourceVolumeNode(), parameterSetNode.GetSegmentationNode(),
                                parameterSetNode.GetSelectedSegmentID())

    def prompt(self, action, viewWidget):
        """Hand a prompt to the controller; a problem (oblique view, no segment...) becomes a message, not a mask."""
        from SAMSegSlicerLib.errors import SamSegError

        if not _logic().ensureDependencies():
            return
        try:
            action(self.target(), viewWidget.sliceLogic().GetSliceNode())
        except SamSegError as error:
            _controller().show_status(error.one_line())
            slicer.util.showStatusMessage(error.one_line(), 5000)

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if viewWidget.className() != "qMRMLSliceWidget":
            return False
        controller = _controller()
        tool = controller.tool
        anyModifier = callerInteractor.GetShiftKey() or callerInteractor.GetControlKey() or callerInteractor.GetAltKey()
        pipeline = self.pipelineFor(viewWidget)

        if eventId == vtk.vtkCommand.LeftButtonPressEvent and not anyModifier:
            confirmed = self.scriptedEffect.confirmCurrentSegmentVisible()
            if confirmed in (self.scriptedEffect.NotConfirmed, self.scriptedEffect.ConfirmedWithDialog):
                return True
            ras = self.xyToRas(callerInteractor.GetEventPosition(), viewWidget)
            if tool in DRAG_TOOLS:
                self.drag = _Drag(viewWidget, tool, [ras])
                self.scriptedEffect.cursorOff(viewWidget)
                pipeline.showDrag(self.drag)
            else:
                self.prompt(lambda target, sliceNode: controller.prompt(target, sliceNode, tool, [ras]), viewWidget)
            return True

        if self.drag is None or self.drag.viewWidget is not viewWidget:
            return False

        if eventId == vtk.vtkCommand.MouseMoveEvent:
            self.drag.add(self.xyToRas(callerInteractor.GetEventPosition(), viewWidget))
            pipeline.showDrag(self.drag)
            return True

        if eventId == vtk.vtkCommand.LeftButtonReleaseEvent:
            drag, self.drag = self.drag, None
            drag.add(self.xyToRas(callerInteractor.GetEventPosition(), viewWidget))
            self.scriptedEffect.cursorOn(viewWidget)
            pipeline.showDrag(None)
            if len(drag.points_ras) >= 2:
                self.prompt(lambda target, sliceNode: controller.prompt(target, sliceNode, drag.tool, drag.points_ras),
                            viewWidget)
            return True
        return False

    def processViewNodeEvents(self, callerViewNode, eventId, viewWidget):
        if callerViewNode and callerViewNode.IsA("vtkMRMLSliceNode"):
            self.redrawView(viewWidget)
            if self.scriptedEffect.parameterSetNode() is not None:
                description = _controller().describe_slice(self.target(), callerViewNode)
                if description and description != self.sliceDescription:
                    self.sliceDescription = description
                    _controller().show_status(description)

    def pipelineFor(self, viewWidget):
        pipeline = self.pipelines.get(viewWidget)
        if pipeline is None:
            pipeline = _ViewPipeline(viewWidget)
            for actor in pipeline.actors():
                self.scriptedEffect.addActor2D(viewWidget, actor)
            self.pipelines[viewWidget] = pipeline
        return pipeline

    def redraw(self):
        for viewWidget in list(self.pipelines):
            self.redrawView(viewWidget)

    def redrawView(self, viewWidget):
        pipeline = self.pipelines.get(viewWidget)
        if pipeline is None or self.scriptedEffect.parameterSetNode() is None:
            return
        prompts = _controller().prompts_for(self.target(), viewWidget.sliceLogic().GetSliceNode())
        pipeline.showPrompts(prompts)


class _Drag:
    """A box or scribble being drawn: its view, its tool and the world points so far."""

    def __init__(self, viewWidget, tool, points_ras):
        self.viewWidget = viewWidget
        self.tool = tool
        self.points_ras = [np.asarray(p, dtype=float) for p in points_ras]

    def add(self, point_ras):
        point_ras = np.asarray(point_ras, dtype=float)
        if self.tool == "box":
            self.points_ras = [self.points_ras[0], point_ras]
        elif np.linalg.norm(point_ras - self.points_ras[-1]) > 0:
            self.points_ras.append(point_ras)


class _ViewPipeline:
    """The drawing of one slice view (``SAMSegSlicerLib.controller.prompt_drawing``, shared with the web app)."""

    def __init__(self, viewWidget):
        self.viewWidget = viewWidget
        self.drawing = PromptDrawing()

    def actors(self):
        return self.drawing.actors()

    def sliceNode(self):
        return self.viewWidget.sliceLogic().GetSliceNode()

    def showPrompts(self, prompts):
        """``prompts``: the controller's PromptDisplay of the shown slice, or None to draw no prompt."""
        self.drawing.show_prompts(prompts, self.sliceNode())
        self.viewWidget.sliceView().scheduleRender()

    def showDrag(self, drag):
        """The rubber band of a box, or the path being drawn; None clears it."""
        if drag is None:
            self.drawing.show_drag(None, [], self.sliceNode())
        else:
            self.drawing.show_drag(drag.tool, drag.points_ras, self.sliceNode())
        self.viewWidget.sliceView().scheduleRender()
