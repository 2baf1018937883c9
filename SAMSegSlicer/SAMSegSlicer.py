"""SAMSeg: Segment Anything prompts (points, boxes, scribbles) and propagation on Slicer's slice views.

The Qt shell of three layers (README "Architecture"): the module class, its parameter node, the panel, the install
dialogs and the keyboard shortcuts.  What SAMSeg does lives below it, without Qt:

* ``SAMSegSlicerLib.controller.AnnotationController`` (MRML and VTK only; tested on the slicer-core wheel) turns
  slice views and world points into prompts, runs the model on the Lib's one torch thread, shows candidates,
  writes segments and keeps one undo history.  This shell injects what only the application has
  (``SAMSegSlicerHost``): a QTimer that polls it, and writes through the SAMSeg Segment Editor effect.
* ``SAMSegSlicerLib`` (no Slicer, no VTK) holds volumes, models, the embedding cache, prompts and propagation.
* Clicks arrive through the "SAMSeg" Segment Editor effect (``SegmentEditorSAMSegLib``), which draws the prompts.

The Lib is installed next to this module like Slicer's ``DICOMLib``; in a source checkout it sits in the repository
root, which is then put on ``sys.path``.
"""

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

if sys.version_info < (3, 10):
    raise ImportError(f"SAMSeg needs Slicer 5.10 or later (Python 3.10+); this Slicer runs Python "
                      f"{sys.version_info.major}.{sys.version_info.minor}")


def _ensureLibImportable() -> None:
    """In a source checkout (Extension Wizard, additional module paths) the Lib is the folder next to ours."""
    if importlib.util.find_spec("SAMSegSlicerLib") is None:
        repositoryRoot = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if os.path.isfile(os.path.join(repositoryRoot, "SAMSegSlicerLib", "__init__.py")):
            sys.path.append(repositoryRoot)


_ensureLibImportable()

from SAMSegSlicerHost import Dependencies  # noqa: E402
from SAMSegSlicerHost.QtHost import EffectSegmentWriter, QTimerScheduler  # noqa: E402

from SAMSegSlicerLib.controller import AnnotationController, AnnotationSettings, AnnotationTarget  # noqa: E402
from SAMSegSlicerLib.errors import SamSegError  # noqa: E402
from SAMSegSlicerLib.geometry import AXES  # noqa: E402
from SAMSegSlicerLib.models import DEFAULT_MODEL, DEVICE_CHOICES, MODEL_SPECS  # noqa: E402
from SAMSegSlicerLib.models.compiled_encoder import build_after_every_load  # noqa: E402
from SAMSegSlicerLib.paths import embedding_cache_dir, model_dir  # noqa: E402
from SAMSegSlicerLib.propagation import DIRECTIONS  # noqa: E402
from SAMSegSlicerLib.window import WINDOW_CHOICES  # noqa: E402

EFFECT_NAME = "SAMSeg"
POLL_INTERVAL_MS = 25
DEFAULTS = AnnotationSettings()


#
# SAMSegSlicer
#


class SAMSegSlicer(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAMSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["SAMSegSlicer contributors"]
        self.parent.helpText = (
            "Segment CT and MR volumes with Segment Anything models (LiteMedSAM by default): place positive or "
            "negative points, a box or scribbles in the Red, Yellow or Green view, accept the slice, then "
            "propagate it through the volume, or accept a few slices and auto-segment the rest. "
            '<a href="https://github.com/samsegslicer/SAMSegSlicer#slicer-extension">Documentation</a>.'
        )
        self.parent.acknowledgementText = (
            "Uses LiteMedSAM / MedSAM (Ma et al., Nature Communications 2024) and Segment Anything "
            "(Kirillov et al., ICCV 2023)."
        )
        slicer.app.connect("startupCompleted()", registerEffect)


def registerEffect() -> None:
    """Register the SAMSeg Segment Editor effect (once per application)."""
    factory = slicer.qSlicerSegmentEditorEffectFactory.instance()
    if any(effect.name == EFFECT_NAME for effect in factory.registeredEffects()):
        return
    import qSlicerSegmentationsEditorEffectsPythonQt

    effectPath = os.path.join(os.path.dirname(__file__), "SegmentEditorSAMSegLib", "SegmentEditorSAMSegEffect.py")
    instance = qSlicerSegmentationsEditorEffectsPythonQt.qSlicerSegmentEditorScriptedEffect(None)
    instance.setPythonSource(effectPath.replace("\\", "/"))
    instance.self().register()


_sharedLogic = None


def sharedLogic() -> "SAMSegSlicerLogic":
    """The one logic of the application: the module panel and the effect share its controller, model and worker."""
    global _sharedLogic
    if _sharedLogic is None:
        _sharedLogic = SAMSegSlicerLogic()
    return _sharedLogic


#
# SAMSegSlicerParameterNode
#


@parameterNodeWrapper
class SAMSegSlicerParameterNode:
    """The user's choices, saved with the scene (see ``AnnotationSettings``; 0 switches a stop rule off)."""

    model: Annotated[str, Choice(tuple(MODEL_SPECS))] = DEFAULT_MODEL
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    window: Annotated[str, Choice(WINDOW_CHOICES)] = "auto"
    encodeAxis: Annotated[str, Choice(AXES)] = "axial"
    propagationDirection: Annotated[str, Choice(DIRECTIONS)] = "both"
    maxSlices: Annotated[int, WithinRange(0, 5000)] = 0
    minIou: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = DEFAULTS.min_iou
    minOverlap: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = DEFAULTS.min_overlap
    maxGrowth: Annotated[float, WithinRange(0.0, 20.0), Decimals(1), SingleStep(0.5)] = DEFAULTS.max_growth
    presenceGuard: bool = DEFAULTS.presence_guard


#
# SAMSegSlicerLogic
#


class SAMSegSlicerLogic(ScriptedLoadableModuleLogic):
    """The application's SAMSeg: the controller on ``slicer.mrmlScene`` with the application's hosts, and the
    installation of SAMSeg's Python packages.  Scripts and tests call ``logic.controller`` directly."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.writer = EffectSegmentWriter()
        self.controller = AnnotationController(slicer.mrmlScene, self.writer, QTimerScheduler(POLL_INTERVAL_MS),
                                               settings=self.settings)
        # Each model loaded gets its compiled CPU encoder built once per machine, in the background (the eager encoder
        # answers meanwhile); its progress lines reach the status line through the controller's poll.
        build_after_every_load(on_status=self.controller._worker_notes.append)

    def getParameterNode(self) -> SAMSegSlicerParameterNode:
        return SAMSegSlicerParameterNode(super().getParameterNode())

    def settings(self) -> AnnotationSettings:
        p = self.getParameterNode()
        return AnnotationSettings(model=p.model, device=p.device, window=p.window, encode_axis=p.encodeAxis,
                                  direction=p.propagationDirection, max_slices=p.maxSlices, min_iou=p.minIou,
                                  min_overlap=p.minOverlap, max_growth=p.maxGrowth, presence_guard=p.presenceGuard)

    @staticmethod
    def missingPythonPackages() -> list:
        return Dependencies.missingPythonPackages()

    @staticmethod
    def missingOptionalPackages() -> list:
        return Dependencies.missingOptionalPackages()

    def ensureDependencies(self, force: bool = False) -> bool:
        return Dependencies.ensureDependencies(self.controller.show_status, force)

    @staticmethod
    def folders() -> dict:
        """Where model files and the embedding cache live (per user, outside the extension)."""
        return {"models": str(model_dir()), "embeddings": str(embedding_cache_dir())}

    def attachEffect(self, scriptedEffect) -> None:
        """The SAMSeg effect became active in a segment editor: accepted masks are written through it."""
        self.writer.effect = scriptedEffect

    def detachEffect(self, scriptedEffect) -> None:
        if self.writer.effect is scriptedEffect:
            self.writer.effect = None


#
# SAMSegSlicerWidget
#


class SAMSegSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.controller = None
        self.editor = None
        self.segmentEditorNode = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._shortcuts = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMSegSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = sharedLogic()
        self.controller = self.logic.controller
        registerEffect()

        import qSlicerSegmentationsModuleWidgetsPythonQt

        self.editor = qSlicerSegmentationsModuleWidgetsPythonQt.qMRMLSegmentEditorWidget()
        self.editor.setMaximumNumberOfUndoStates(20)
        self.selectSegmentEditorNode()
        self.editor.setMRMLScene(slicer.mrmlScene)
        self.ui.segmentEditorLayout.addWidget(self.editor)

        self.toolButtons = {
            "positive_point": self.ui.positivePointButton,
            "negative_point": self.ui.negativePointButton,
            "box": self.ui.boxButton,
            "positive_stroke": self.ui.positiveStrokeButton,
            "negative_stroke": self.ui.negativeStrokeButton,
            "lasso": self.ui.lassoButton,
        }
        for tool, button in self.toolButtons.items():
            button.connect("clicked()", lambda tool=tool: self.selectTool(tool))
        self.ui.installButton.connect("clicked()", self.onInstall)
        self.ui.loadModelButton.connect("clicked()", self.onLoadModel)
        self.ui.acceptButton.connect("clicked()", lambda: self.run(self.controller.accept))
        self.ui.clearSliceButton.connect("clicked()", lambda: self.run(self.controller.clear_slice))
        self.ui.undoButton.connect("clicked()", lambda: self.run(lambda target: self.controller.undo()))
        self.ui.redoButton.connect("clicked()", lambda: self.run(lambda target: self.controller.redo()))
        self.ui.propagateButton.connect("clicked()", lambda: self.run(self.controller.propagate))
        self.ui.autoSegmentButton.connect("clicked()", lambda: self.run(self.controller.auto_segment_rest))
        self.ui.preEncodeButton.connect("clicked()", lambda: self.run(self.controller.pre_encode))
        self.ui.learnPromptsButton.connect("clicked()", lambda: self.run(self.controller.learn_prompts))
        self.ui.forgetPromptsButton.connect("clicked()", lambda: self.run(self.controller.forget_learned_prompts))
        self.ui.cancelButton.connect("clicked()", self.controller.cancel)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setVisible(False)
        folders = self.logic.folders()
        self.ui.foldersLabel.text = f"Models: {folders['models']}\nEmbedding cache: {folders['embeddings']}"

        self.controller.status_listeners.append(self.showStatus)
        self.controller.progress_listeners.append(self.showProgress)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateDependencies()

    def cleanup(self) -> None:
        self.removeObservers()
        self.removeShortcuts()
        if self.controller is not None:
            for listeners, callback in ((self.controller.status_listeners, self.showStatus),
                                        (self.controller.progress_listeners, self.showProgress)):
                if callback in listeners:
                    listeners.remove(callback)

    def enter(self) -> None:
        self.initializeParameterNode()
        self.selectSegmentEditorNode()
        self.editor.updateWidgetFromMRML()
        self.editor.installKeyboardShortcuts()
        self.installShortcuts()
        if not self.editor.segmentationNodeID():
            segmentationNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
            if segmentationNode is None:
                segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
            self.editor.setSegmentationNode(segmentationNode)
        if not self.editor.sourceVolumeNodeID():
            volumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volumeNode is not None:
                self.editor.setSourceVolumeNode(volumeNode)

    def exit(self) -> None:
        self.editor.setActiveEffect(None)
        self.editor.uninstallKeyboardShortcuts()
        self.editor.removeViewObservations()
        self.removeShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        """The panel lets go of the scene's nodes; the controller forgets its annotation by itself."""
        self.setParameterNode(None)
        self.segmentEditorNode = None
        self.editor.setSegmentationNode(None)
        self.editor.removeViewObservations()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
            self.selectSegmentEditorNode()
            self.editor.updateWidgetFromMRML()

    def selectSegmentEditorNode(self) -> None:
        """Our own segment editor node, so the panel keeps its selections apart from the Segment Editor module."""
        node = slicer.mrmlScene.GetSingletonNode("SAMSegSlicer", "vtkMRMLSegmentEditorNode")
        if node is None:
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag("SAMSegSlicer")
            node = slicer.mrmlScene.AddNode(node)
        if node is not self.segmentEditorNode:
            self.segmentEditorNode = node
            self.editor.setMRMLSegmentEditorNode(node)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode: SAMSegSlicerParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # --- actions --------------------------------------------------------------------------------
    def target(self) -> AnnotationTarget:
        return AnnotationTarget(self.editor.sourceVolumeNode(), self.editor.segmentationNode(),
                                self.editor.currentSegmentID())

    def run(self, action: Callable) -> None:
        """Run a controller action on the panel's target with the SAMSeg effect active (accepted masks are written
        through it); a problem becomes the status line, never a traceback."""
        if not self.ensureDependencies():
            return
        self.activateEffect()
        try:
            action(self.target())
        except SamSegError as error:
            self.showStatus(error.one_line())

    def activateEffect(self) -> None:
        if self.editor.activeEffect() is None or self.editor.activeEffect().name != EFFECT_NAME:
            self.editor.setActiveEffectByName(EFFECT_NAME)

    def selectTool(self, tool: str) -> None:
        self.controller.tool = tool
        self.toolButtons[tool].checked = True
        self.activateEffect()

    def onInstall(self) -> None:
        self.logic.ensureDependencies(force=True)
        self.updateDependencies()

    def ensureDependencies(self) -> bool:
        ready = self.logic.ensureDependencies()
        self.updateDependencies()
        return ready

    def onLoadModel(self) -> None:
        if self.ensureDependencies():
            self.controller.load_model()

    def updateDependencies(self) -> None:
        missing, optional = self.logic.missingPythonPackages(), self.logic.missingOptionalPackages()
        self.ui.dependenciesLabel.text = ("missing: " + ", ".join(missing) if missing else "installed") + \
            ("; optional, not installed: " + ", ".join(optional) if optional else "")
        self.ui.installButton.enabled = bool(missing or optional)

    # --- feedback -------------------------------------------------------------------------------
    def showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        self.ui.modelStateLabel.text = self.controller.model_description()

    def showProgress(self, done: int, total: int, text: str) -> None:
        busy = bool(text)
        self.ui.progressBar.setVisible(busy)
        self.ui.cancelButton.setVisible(busy)
        if busy:
            self.ui.progressBar.setMaximum(max(total, 0))
            self.ui.progressBar.setValue(min(done, total) if total else 0)
            self.ui.progressBar.setFormat(f"{text} %v/%m" if total else text)

    # --- keyboard shortcuts ---------------------------------------------------------------------
    def installShortcuts(self) -> None:
        """SAMSeg's keys; they avoid the Segment Editor's (digits, Q, W, Z, Y, I, Space, Escape...) and the
        slice views' (F, B, R, G, T, V, arrows)."""
        self.removeShortcuts()
        mainWindow = slicer.util.mainWindow()
        if mainWindow is None:
            return
        bindings = {
            "A": lambda: self.selectTool("positive_point"),
            "S": lambda: self.selectTool("negative_point"),
            "D": lambda: self.selectTool("box"),
            "E": lambda: self.selectTool("positive_stroke"),
            "X": lambda: self.selectTool("negative_stroke"),
            "L": lambda: self.selectTool("lasso"),
            "Return": lambda: self.run(self.controller.accept),
            "Backspace": lambda: self.run(self.controller.clear_slice),
            "Delete": lambda: self.run(self.controller.erase_slice),
            "U": lambda: self.run(lambda target: self.controller.undo()),
            "Shift+U": lambda: self.run(lambda target: self.controller.redo()),
            "P": lambda: self.run(self.controller.propagate),
        }
        for keys, callback in bindings.items():
            shortcut = qt.QShortcut(qt.QKeySequence(keys), mainWindow)
            shortcut.connect("activated()", callback)
            self._shortcuts.append(shortcut)

    def removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._shortcuts = []


#
# SAMSegSlicerTest
#


class SAMSegSlicerTest(ScriptedLoadableModuleTest):
    """Runs the self-tests of the source checkout (Testing/Slicer/SAMSegSlicerSelfTest.py)."""

    def runTest(self):
        testFolder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Testing", "Slicer")
        if not os.path.isfile(os.path.join(testFolder, "SAMSegSlicerSelfTest.py")):
            self.delayDisplay("SAMSeg self-tests come with the source checkout (Testing/Slicer); nothing to run here.")
            return
        if testFolder not in sys.path:
            sys.path.append(testFolder)
        import SAMSegSlicerSelfTest

        SAMSegSlicerSelfTest.SAMSegSlicerSelfTest().runTest()
