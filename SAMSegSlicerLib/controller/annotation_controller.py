"""The annotation controller: SAMSeg's behaviour on MRML, without Qt.

It turns MRML nodes and world (RAS) points into calls of the Lib's annotation session, runs the model
on the one torch thread (``SAMSegSlicerLib.worker.shared_worker``) and brings the results back on the
host's main thread -- the only thread that touches MRML and VTK -- when the host's scheduler calls
:meth:`AnnotationController.poll`.  It shows the candidate in a preview segmentation, writes accepted
slices and propagations into segments through the host's :class:`~.host.SegmentWriter`, and keeps one
undo history of commands for both the session and the segments.

Prompt methods take the target (volume node, segmentation node, segment ID), the slice node of the view
and world points; they raise :class:`~SAMSegSlicerLib.errors.PromptError` at once for what can be checked
on the main thread (rotated view, no segment) and return the worker job's future otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import vtk

from ..assist import AnnotatedSlice, adapter_applied, learn_prompts
from ..auto import auto_segment
from ..cache import EmbeddingCache
from ..errors import Cancelled, InputError, PromptError, SamSegError
from ..factory import EngineOptions, make_cache, make_engine
from ..geometry import ViewSlice, slice_axes
from ..models import checkpoint_path, load_model, resolve_spec
from ..models.sam_model import SamModel
from ..presence import build_presence
from ..prompts import Box, Lasso
from ..propagation import propagate, propagation_range
from ..session import AnnotationSession, ras_to_slice_rc, slice_rc_to_ras
from ..volume import Volume
from ..worker import CancelToken, TorchWorker, shared_worker
from .candidate_preview import CandidatePreview
from .history import Command, CommandKind, SegmentEdit, UndoHistory
from .host import ManualScheduler, Scheduler, SegmentWriter
from .job_queue import JobQueue
from .mrml_geometry import (
    ijk_to_segmentation,
    ijk_to_world,
    matrix_to_array,
    slab_extent,
    slab_labelmap,
    slider_sign,
    view_slice,
    volume_from_node,
)
from .segment_region import Block, RegionSnapshot, capture, restore, segment_block
from .settings import AnnotationSettings
from .target import AnnotationTarget, PromptDisplay, SliceKey, SliceUpdate

TOOLS = ("positive_point", "negative_point", "box", "positive_stroke", "negative_stroke", "lasso")
# Tools used by dragging (press, move, release); the others act on the press.
DRAG_TOOLS = ("box", "positive_stroke", "negative_stroke", "lasso")


class _Annotation:
    """One source volume being annotated: its Lib Volume and, once built on the worker, engine and session."""

    def __init__(self, key: tuple, volume: Volume):
        self.key = key
        self.volume = volume
        self.session: AnnotationSession | None = None
        self.labels: dict[str, int] = {}
        # Prompt embeddings learned from a segment's accepted slices (SAM^assist), by Lib label;
        # read and written on the worker thread only.
        self.learned_prompts: dict = {}

    def label(self, segment_id: str) -> int:
        """The Lib's integer label for a Slicer segment ID."""
        return self.labels.setdefault(segment_id, len(self.labels) + 1)


class AnnotationController:
    """SAMSeg on one MRML scene; see the module docstring.

    ``writer``: how accepted masks reach segments; ``scheduler``: how ``poll`` gets called;
    ``settings``: returns the user's current choices; ``worker``: the torch thread (the shared one);
    ``model`` and ``cache``: an already loaded model (used while the settings name it) and an embedding
    cache to share (both made on first use otherwise).
    Listeners (plain lists of callables) hear status lines, progress ``(done, total, text)`` and changes
    of prompts or candidates.
    """

    def __init__(self, scene, writer: SegmentWriter, scheduler: Scheduler | None = None,
                 settings: Callable[[], AnnotationSettings] = AnnotationSettings,
                 worker: TorchWorker | None = None, model: SamModel | None = None,
                 cache: EmbeddingCache | None = None):
        self.scene = scene
        self.writer = writer
        self.scheduler = scheduler or ManualScheduler()
        self.settings = settings
        self.tool = TOOLS[0]
        self.history = UndoHistory()
        self.status_listeners: list[Callable[[str], None]] = []
        self.change_listeners: list[Callable[[], None]] = []
        self.progress_listeners: list[Callable[[int, int, str], None]] = []
        self.last_slice: SliceKey | None = None
        self.last_slice_node = None
        self.last_prompt_seconds = 0.0  # the session's time for the last slice action (decoding included)
        self._worker = worker
        self.jobs = JobQueue()
        self._cache = cache
        self._model = model
        self._model_key = None if model is None else (model.spec.name, settings().device)
        self._annotation: _Annotation | None = None
        self._candidates: dict[SliceKey, np.ndarray] = {}
        self._prompts: dict[SliceKey, PromptDisplay] = {}
        self._pending_edits = 0
        self._progress: tuple[int, int, str] | None = None
        self._worker_notes: list[str] = []  # lines for the status, written on the worker, shown by poll()
        self._cancel = CancelToken()
        self._preview = CandidatePreview(scene)
        self._close_observer = scene.AddObserver(scene.StartCloseEvent, lambda caller, event: self.reset())

    def close(self) -> None:
        """Stop observing the scene (the host is going away)."""
        self.scene.RemoveObserver(self._close_observer)

    # --- volumes and views ----------------------------------------------------------------------
    def _annotation_for(self, volume_node) -> _Annotation:
        """The annotation of this volume; a new one when the volume, its geometry, the model or the window changed."""
        if volume_node is None or volume_node.GetImageData() is None:
            raise InputError("no source volume selected", None, "select a source volume in the segment editor")
        settings = self.settings()
        key = (volume_node.GetID(), volume_node.GetImageData().GetMTime(),
               np.round(ijk_to_world(volume_node), 6).tobytes(), settings.model, settings.device, settings.window)
        if self._annotation is None or self._annotation.key != key:
            if self._annotation is not None:
                self.show_status("New annotation session: the volume, its position, the model or the window changed.")
            self._annotation = _Annotation(key, volume_from_node(volume_node))
            self._forget_slices()
        return self._annotation

    def _forget_slices(self) -> None:
        self._candidates.clear()
        self._prompts.clear()
        self.history.clear()
        self.last_slice = None
        self._preview.clear()

    def view_slice(self, volume_node, slice_node) -> ViewSlice:
        """Which slice of the volume a view shows (or why none), in the annotation's geometry."""
        return view_slice(self._annotation_for(volume_node).volume, slice_node)

    def _resolve_view(self, target: AnnotationTarget, slice_node) -> tuple[_Annotation, ViewSlice]:
        annotation = self._annotation_for(target.volume_node)
        view = view_slice(annotation.volume, slice_node)
        if not view.ok:
            raise PromptError(view.reason)
        if not target.segment_id or target.segmentation_node is None \
                or target.segmentation_node.GetSegmentation().GetSegment(target.segment_id) is None:
            raise PromptError("no segment selected", None, "add or select a segment in the segment editor")
        self.last_slice = SliceKey(target.segment_id, view.axis, view.index)
        self.last_slice_node = slice_node
        return annotation, view

    def _resolve_view_or_last(self, target: AnnotationTarget, slice_node, no_view: str):
        """The view an action on accepted slices runs in: ``slice_node``, else the last prompted view
        (``no_view`` says what could not be done when there is none)."""
        slice_node = slice_node or self.last_slice_node
        if slice_node is None:
            raise PromptError(no_view, None, "accept a slice in a slice view first")
        annotation, view = self._resolve_view(target, slice_node)
        return annotation, view, slice_node

    # --- the worker -----------------------------------------------------------------------------
    def _worker_thread(self) -> TorchWorker:
        if self._worker is None:
            self._worker = shared_worker()
        return self._worker

    def _submit(self, fn: Callable, on_done: Callable, edit: bool = False) -> Future:
        """Run ``fn`` on the worker; ``on_done(result)`` (or the error report) then runs on the main thread.
        ``edit``: the job changes the session or a segment, so undo and redo wait until it is finished."""
        on_finished = None
        if edit:
            self._pending_edits += 1

            def on_finished():
                self._pending_edits -= 1

        future = self._worker_thread().submit(fn)
        was_busy = self.jobs.busy
        self.jobs.add(future, on_done, self._report_error, on_finished)
        if not was_busy:
            self.scheduler.start(self.poll)
        return future

    def poll(self) -> None:
        """Main thread: finish the jobs that are done and pass the latest progress to the listeners."""
        while self._worker_notes:
            self.show_status(self._worker_notes.pop(0))
        self.jobs.poll()
        progress = self._progress
        if progress is not None:
            for listener in self.progress_listeners:
                listener(*progress)
        if not self.jobs.busy:
            self.scheduler.stop()
            self._progress = None
            for listener in self.progress_listeners:
                listener(0, 0, "")

    def wait_for_jobs(self, timeout_s: float = 600.0) -> None:
        """Wait for all queued work and apply its results (scripts and tests)."""
        self.jobs.wait(timeout_s)
        self.poll()

    def cancel(self) -> None:
        """Stop the running download, encoding, propagation or learning; finished work is kept."""
        self._cancel.cancel()

    def _new_cancel_token(self) -> CancelToken:
        self._cancel = CancelToken()
        return self._cancel

    def _set_progress(self, done: int, total: int, text: str) -> None:
        """Called on the worker; ``poll`` hands the latest value to the listeners."""
        self._progress = (int(done), int(total), text)

    def _report_error(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.show_status("Cancelled.")
        elif isinstance(error, SamSegError):
            self.show_status(error.one_line())
        else:
            logging.error("SAMSeg: %s", error, exc_info=error)
            self.show_status(f"Error: {error}")

    def show_status(self, text: str) -> None:
        logging.info("SAMSeg: %s", text)
        for listener in self.status_listeners:
            listener(text)

    def _changed(self) -> None:
        for listener in self.change_listeners:
            listener()

    # --- model and session (worker side) --------------------------------------------------------
    def _model_for(self, options: EngineOptions, cancel: CancelToken):
        spec = resolve_spec(options.model)
        key = (spec.name, options.device)
        if self._model is None or self._model_key != key:

            def downloaded(done: int, total: int | None) -> None:
                self._set_progress(done, total or 0, f"Downloading {spec.name}")

            checkpoint_path(spec, progress=downloaded, cancel=lambda: cancel.cancelled)
            self._set_progress(0, 0, f"Loading {spec.name}")
            self._model = load_model(spec, options.device, download=False)
            self._model_key = key
        return self._model

    def _session_for(self, annotation: _Annotation, options: EngineOptions, cancel: CancelToken) -> AnnotationSession:
        if annotation.session is None:
            if self._cache is None:
                # an unusable disk cache is said once; the annotation goes on with the memory cache
                self._cache = make_cache(options, on_disk_problem=self._worker_notes.append)
            engine = make_engine(annotation.volume, options, model=self._model_for(options, cancel),
                                 cache=self._cache, worker=self._worker_thread())
            annotation.session = AnnotationSession(engine)
        return annotation.session

    def load_model(self) -> Future:
        """Download (first time, checksum-verified) and load the chosen model on the worker."""
        options = self.settings().engine_options()
        cancel = self._new_cancel_token()

        def job():
            model = self._model_for(options, cancel)
            return f"{model.spec.name} on {model.device} ({model.precision})"

        return self._submit(job, lambda text: self.show_status(f"Model loaded: {text}."))

    def model_description(self) -> str:
        return "not loaded" if self._model is None else f"{self._model.spec.name} on {self._model.device}"

    # --- prompts --------------------------------------------------------------------------------
    def prompt(self, target: AnnotationTarget, slice_node, tool: str, points_ras) -> Future:
        """A gesture of ``tool`` in a slice view, as every host's effect reports it: the pressed point for a point
        tool, the dragged path (world RAS) for the others -- a box spans its first and last points."""
        if tool not in TOOLS:
            raise PromptError(f"unknown tool {tool!r}", None, f"use one of {', '.join(TOOLS)}")
        points_ras = [np.asarray(p, dtype=float) for p in points_ras]
        if tool in DRAG_TOOLS and len(points_ras) < 2:
            raise PromptError(f"a {tool.replace('_', ' ')} needs a drag, not a click", None,
                              "press, drag and release in the view")
        if tool in ("positive_point", "negative_point"):
            return self.add_point(target, slice_node, points_ras[0], tool == "positive_point")
        if tool == "box":
            return self.set_box(target, slice_node, points_ras[0], points_ras[-1])
        if tool == "lasso":
            return self.add_lasso(target, slice_node, points_ras)
        return self.add_stroke(target, slice_node, points_ras, tool == "positive_stroke")

    def add_point(self, target: AnnotationTarget, slice_node, point_ras, positive: bool) -> Future:
        """A click at a world point in a slice view."""
        annotation, view = self._resolve_view(target, slice_node)

        def action(session, label):
            point_rc = ras_to_slice_rc(session.engine.volume, view.axis, view.index, [point_ras])[0]
            session.add_point(label, view.axis, view.index, point_rc, positive)

        return self._slice_job(target, annotation, view, action)

    def set_box(self, target: AnnotationTarget, slice_node, corner_a_ras, corner_b_ras) -> Future:
        """A box dragged from one world point to another in a slice view; replaces the slice's box."""
        annotation, view = self._resolve_view(target, slice_node)

        def action(session, label):
            corners_rc = ras_to_slice_rc(session.engine.volume, view.axis, view.index, [corner_a_ras, corner_b_ras])
            session.set_box(label, view.axis, view.index,
                            np.concatenate([corners_rc.min(axis=0), corners_rc.max(axis=0)]))

        return self._slice_job(target, annotation, view, action)

    def add_stroke(self, target: AnnotationTarget, slice_node, points_ras, positive: bool) -> Future:
        """A scribble through world points in a slice view."""
        annotation, view = self._resolve_view(target, slice_node)

        def action(session, label):
            points_rc = ras_to_slice_rc(session.engine.volume, view.axis, view.index, points_ras)
            session.add_stroke(label, view.axis, view.index, points_rc, positive)

        return self._slice_job(target, annotation, view, action)

    def add_lasso(self, target: AnnotationTarget, slice_node, outline_ras) -> Future:
        """A closed outline drawn around the object through world points in a slice view."""
        annotation, view = self._resolve_view(target, slice_node)

        def action(session, label):
            outline_rc = ras_to_slice_rc(session.engine.volume, view.axis, view.index, outline_ras)
            session.add_lasso(label, view.axis, view.index, outline_rc)

        return self._slice_job(target, annotation, view, action)

    def clear_slice(self, target: AnnotationTarget, slice_node=None) -> Future:
        """Remove the prompts and the candidate of a slice (the last prompted one by default)."""
        annotation, view = self._action_slice(target, slice_node)

        def action(session, label):
            if not session.prompts(label, view.axis, view.index).items \
                    and session.candidate_mask(label, view.axis, view.index) is None:
                raise PromptError(f"nothing to clear on {view.axis} slice {view.index}", None, "place a prompt first")
            session.clear_slice(label, view.axis, view.index)

        return self._slice_job(target, annotation, view, action)

    def accept(self, target: AnnotationTarget, slice_node=None) -> Future:
        """Add the slice's candidate to the segment (the last prompted slice by default)."""
        annotation, view = self._action_slice(target, slice_node)
        return self._slice_job(target, annotation, view,
                               lambda session, label: session.accept(label, view.axis, view.index),
                               CommandKind.ACCEPT)

    def erase_slice(self, target: AnnotationTarget, slice_node=None) -> Future:
        """Remove the segment from a slice (the last prompted one by default), whoever drew it there."""
        annotation, view = self._action_slice(target, slice_node)
        return self._slice_job(target, annotation, view,
                               lambda session, label: session.erase(label, view.axis, view.index), CommandKind.ERASE)

    def _action_slice(self, target: AnnotationTarget, slice_node) -> tuple[_Annotation, ViewSlice]:
        if slice_node is not None:
            return self._resolve_view(target, slice_node)
        if self.last_slice is None or self.last_slice.segment_id != target.segment_id:
            raise PromptError("no slice prompted yet for this segment", None, "place a prompt in a slice view first")
        return self._annotation_for(target.volume_node), ViewSlice(self.last_slice.axis, self.last_slice.index)

    def _slice_job(self, target: AnnotationTarget, annotation: _Annotation, view: ViewSlice, action: Callable,
                   kind: CommandKind = CommandKind.PROMPT) -> Future:
        """Run a session action on the worker; then, on the main thread, change the segment as ``kind`` says
        (accept: add the candidate; erase: clear the slice) and record one command for both."""
        options = self.settings().engine_options()
        cancel = self._new_cancel_token()
        label = annotation.label(target.segment_id)
        key = SliceKey(target.segment_id, view.axis, view.index)

        def job() -> SliceUpdate:
            session = self._session_for(annotation, options, cancel)
            encoded_before = session.engine.is_encoded(view.axis, view.index)
            if not encoded_before:
                self._set_progress(0, 0, f"Encoding {view.axis} slice {view.index}")
            accepted = session.candidate_mask(label, view.axis, view.index) if kind is CommandKind.ACCEPT else None
            started = time.perf_counter()
            # The segment's learned prompts are used for this call only: the model is shared.
            with adapter_applied(session.engine, annotation.learned_prompts.get(label)):
                action(session, label)
            seconds = time.perf_counter() - started
            update = self._slice_update(session, key, label)
            update.accepted_rc, update.encoded_before, update.seconds = accepted, encoded_before, seconds
            return update

        def done(update: SliceUpdate) -> None:
            edit = None
            if kind is not CommandKind.PROMPT:
                try:
                    edit = self._add_to_segment(target, key.axis, {key.index: update.accepted_rc}) \
                        if kind is CommandKind.ACCEPT else self._erase_from_segment(target, key.axis, key.index)
                except Exception:
                    # the segment refused the change: the session takes its action back
                    self._submit_session_step(target, key, label, options, cancel, undo=True)
                    raise
            self.history.push(Command(kind, target, key, session_action=True, segment_edit=edit))
            self.last_prompt_seconds = update.seconds
            self._apply_slice_update(target, update)
            if kind is CommandKind.PROMPT:
                encoded = "was encoded" if update.encoded_before else "encoded now"
                self.show_status(f"{key.axis} slice {key.index} {encoded}; last prompt {1000 * update.seconds:.0f} ms.")
            else:
                verb = "Accepted {} into" if kind is CommandKind.ACCEPT else "Erased {} from"
                self.show_status(f"{verb.format(f'{key.axis} slice {key.index}')} the segment.")

        return self._submit(job, done, edit=True)

    @staticmethod
    def _slice_update(session: AnnotationSession, key: SliceKey, label: int) -> SliceUpdate:
        """Worker: the slice's candidate and prompts (in world coordinates) after an action."""
        prompts = session.prompts(label, key.axis, key.index)
        volume = session.engine.volume

        def to_ras(points_rc):
            return slice_rc_to_ras(volume, key.axis, key.index, np.asarray(points_rc, dtype=float).reshape(-1, 2))

        # the box in force is drawn unless it is a lasso's (the lasso itself is drawn)
        box_or_lasso = next((p for p in reversed(prompts.items) if isinstance(p, (Box, Lasso))), None)
        display = PromptDisplay(
            positive_points_ras=[to_ras([p.point_rc])[0] for p in prompts.points if p.positive],
            negative_points_ras=[to_ras([p.point_rc])[0] for p in prompts.points if not p.positive],
            boxes_ras=[to_ras(_box_outline_rc(box_or_lasso.box_rc))] if isinstance(box_or_lasso, Box) else [],
            positive_strokes_ras=[to_ras(s.points_rc) for s in prompts.strokes if s.positive],
            negative_strokes_ras=[to_ras(s.points_rc) for s in prompts.strokes if not s.positive],
            lassos_ras=[to_ras(np.vstack([p.array_rc, p.array_rc[:1]])) for p in prompts.items if isinstance(p, Lasso)],
        )
        return SliceUpdate(key, session.candidate_mask(label, key.axis, key.index), display)

    def _apply_slice_update(self, target: AnnotationTarget, update: SliceUpdate) -> None:
        """Main thread: remember the slice's candidate and prompts, show the candidate, tell the listeners."""
        key = update.key
        if update.candidate_rc is None:
            self._candidates.pop(key, None)
        else:
            self._candidates[key] = update.candidate_rc
        self._prompts[key] = update.prompts
        self._show_candidate(target, key if update.candidate_rc is not None else None)
        self._changed()

    def prompts_for(self, target: AnnotationTarget, slice_node) -> PromptDisplay | None:
        """Prompts to draw in a view: those of the slice it shows, for the target's segment."""
        if self._annotation is None or target.volume_node is None:
            return None
        view = view_slice(self._annotation.volume, slice_node)
        if not view.ok:
            return None
        return self._prompts.get(SliceKey(target.segment_id, view.axis, view.index))

    def candidate_for(self, key: SliceKey) -> np.ndarray | None:
        return self._candidates.get(key)

    # --- candidate preview ----------------------------------------------------------------------
    def _show_candidate(self, target: AnnotationTarget | None, key: SliceKey | None) -> None:
        """Show the candidate of ``key`` (or nothing) in the preview segmentation; only that slice is written."""
        if key is None or target is None:
            self._preview.clear()
            return
        volume_node = target.volume_node
        ijk_to_ras = vtk.vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(ijk_to_ras)
        labelmap = slab_labelmap(self._annotation.volume, key.axis, key.index, self._candidates[key][None],
                                 matrix_to_array(ijk_to_ras))
        self._preview.show(labelmap, volume_node.GetTransformNodeID())

    # --- writing into segments ------------------------------------------------------------------
    def _block(self, target: AnnotationTarget, axis: str, first: int, count: int) -> Block:
        volume = self._annotation_for(target.volume_node).volume
        return Block(tuple(slab_extent(volume, axis, first, count)),
                     ijk_to_segmentation(target.volume_node, target.segmentation_node))

    def _add_to_segment(self, target: AnnotationTarget, axis: str, masks_by_index: dict) -> SegmentEdit:
        """Add masks (slice index -> mask_rc on ``axis``) to the segment through the writer; only the slab
        from the first to the last index can change.  Returns the edit, for the history."""
        volume = self._annotation_for(target.volume_node).volume
        first, last = min(masks_by_index), max(masks_by_index)
        masks_rc = np.zeros((last - first + 1, *volume.axes(axis).slice_shape), dtype=bool)
        for index, mask_rc in masks_by_index.items():
            masks_rc[index - first] = mask_rc
        block = self._block(target, axis, first, last - first + 1)
        before = capture(target.segmentation_node, block)
        self.writer.add(target, slab_labelmap(volume, axis, first, masks_rc, block.ijk_to_segmentation))
        full = self._block(target, axis, 0, volume.axes(axis).n_slices)
        return SegmentEdit(target.segmentation_node, block, full, before, capture(target.segmentation_node, block))

    def _erase_from_segment(self, target: AnnotationTarget, axis: str, index: int) -> SegmentEdit:
        """Clear the segment on one slice (other segments keep theirs).  Returns the edit, for the history."""
        volume = self._annotation_for(target.volume_node).volume
        block = self._block(target, axis, index, 1)
        full = self._block(target, axis, 0, volume.axes(axis).n_slices)
        before = capture(target.segmentation_node, block)
        cleared = dict(before.masks_kji)
        cleared[target.segment_id] = np.zeros(block.shape_kji, dtype=bool)
        restore(target.segmentation_node, block, RegionSnapshot(cleared, ""), full)
        return SegmentEdit(target.segmentation_node, block, full, before, capture(target.segmentation_node, block))

    def segment_slices(self, target: AnnotationTarget, axis: str, indices: list[int]) -> dict[int, np.ndarray]:
        """What the segment holds on some slices of ``axis`` (slice index -> mask_rc), read from the segmentation."""
        volume = self._annotation_for(target.volume_node).volume
        return {index: _slice_of_block(volume, axis, segment_block(target.segmentation_node, target.segment_id,
                                                                    self._block(target, axis, index, 1)))
                for index in indices}

    # --- undo and redo --------------------------------------------------------------------------
    def undo(self) -> Future | None:
        """Undo SAMSeg's last action: a prompt, an accept (prompts and candidate come back and the segment is as
        before) or a propagation.  Refused when someone else edited that part of the segment since."""
        return self._step(undo=True)

    def redo(self) -> Future | None:
        return self._step(undo=False)

    def _step(self, undo: bool) -> Future | None:
        if self._pending_edits:
            raise PromptError("SAMSeg is still answering a prompt", None, "undo or redo once it is done")
        source, destination = (self.history.done, self.history.undone) if undo \
            else (self.history.undone, self.history.done)
        if not source:
            self.show_status("Nothing to undo." if undo else "Nothing to redo.")
            return None
        command = source[-1]
        if command.segment_edit is not None:
            command.segment_edit.undo() if undo else command.segment_edit.redo()
        destination.append(source.pop())
        if not command.session_action:
            self.show_status(f"{command.kind.value.capitalize()} {'undone' if undo else 'redone'}.")
            self._changed()
            return None
        label = self._annotation.label(command.key.segment_id)
        return self._submit_session_step(command.target, command.key, label, self.settings().engine_options(),
                                         self._new_cancel_token(), undo)

    def _submit_session_step(self, target: AnnotationTarget, key: SliceKey, label: int, options: EngineOptions,
                             cancel: CancelToken, undo: bool) -> Future:
        """Undo or redo the session's last action on the worker, then show the slice as it left it."""
        annotation = self._annotation

        def job() -> SliceUpdate:
            session = self._session_for(annotation, options, cancel)
            session.undo() if undo else session.redo()
            return self._slice_update(session, key, label)

        return self._submit(job, lambda update: self._apply_slice_update(target, update), edit=True)

    # --- propagation, auto-segmentation, encoding and learned prompts ----------------------------
    def propagate(self, target: AnnotationTarget, slice_node=None, direction: str | None = None) -> Future:
        """Carry the segment's slices accepted on the axis of ``slice_node`` (the last prompted view by default) to
        their neighbours and add the result to the segment (one undoable command).  The seeds are what the
        segment holds on those slices; the model is the stock one, whatever prompts the segment learned.  With
        the ``presence_guard`` setting (the default) a presence model learned from the seeds trims leaks and
        stops a chain that drifts onto another structure."""
        annotation, view, slice_node = self._resolve_view_or_last(target, slice_node, "no view to propagate in")
        settings = self.settings()
        seeds, n_slices = self._seed_masks(target, annotation, view, "propagating")
        index_range = propagation_range(sorted(seeds), direction or settings.direction,
                                        slider_sign(annotation.volume, view, slice_node), settings.max_slices,
                                        n_slices)
        options = settings.engine_options()
        config = settings.propagation_config()
        guard = settings.presence_guard
        cancel = self._new_cancel_token()

        def job():
            session = self._session_for(annotation, options, cancel)

            def progressed(step):
                self._set_progress(step.slices_done, step.slices_max, f"Propagating: {view.axis} slice "
                                                                      f"{step.current_index}")

            with adapter_applied(session.engine, None):
                presence = self._presence_of(session, view.axis, seeds, cancel) if guard else None
                return propagate(session.engine, seeds, view.axis, config, index_range=index_range,
                                 progress=progressed, cancel=cancel, presence=presence)

        def done(result) -> None:
            added = self._add_predicted(target, result, CommandKind.PROPAGATION)
            kept = "cancelled, kept" if result.cancelled else "added"
            guarded = " with the presence guard" if guard else ""
            self.show_status(f"Propagation {kept} {added} {result.axis} slices{guarded}: {_chain_ends(result)}.")
            self._changed()

        return self._submit(job, done, edit=True)

    def auto_segment_rest(self, target: AnnotationTarget, slice_node=None) -> Future:
        """SAM^auto for the selected segment: learn where it is from its slices accepted on the axis of
        ``slice_node`` (the last prompted view by default), then segment the whole axis from them (guided
        propagation: the presence model trims leaks and ends every chain where the structure ends, whatever the
        direction and range settings say), and add the new slices to the segment as one undoable command.
        Cancel keeps the slices finished so far, as propagation does."""
        annotation, view, slice_node = self._resolve_view_or_last(target, slice_node, "no view to auto-segment in")
        settings = self.settings()
        seeds, _ = self._seed_masks(target, annotation, view, "auto-segmenting the rest")
        options = settings.engine_options()
        config = settings.propagation_config()
        cancel = self._new_cancel_token()

        def job():
            session = self._session_for(annotation, options, cancel)

            def progressed(done: int, total: int) -> None:
                self._set_progress(done, total, f"Auto-segmenting {view.axis} slices")

            # the stock model, as for propagation: learned prompts belong to the segment's clicks only
            with adapter_applied(session.engine, None):
                presence = self._presence_of(session, view.axis, seeds, cancel)
                return auto_segment(session.engine, view.axis, presence, seeds, mode="guided", config=config,
                                    progress=progressed, cancel=cancel)

        def done(result) -> None:
            added = self._add_predicted(target, result.propagation, CommandKind.AUTO)
            kept = "cancelled, kept" if result.cancelled else "added"
            self.show_status(f"Auto-segmentation from {len(result.annotated)} accepted {result.axis} slices {kept} "
                             f"{added} slices: {_chain_ends(result.propagation)}.")
            self._changed()

        return self._submit(job, done, edit=True)

    def _seed_masks(self, target: AnnotationTarget, annotation: _Annotation, view: ViewSlice,
                    purpose: str) -> tuple[dict[int, np.ndarray], int]:
        """Main thread: what the segment holds on its accepted slices of the view's axis (the seeds of propagation
        and auto-segmentation), and the axis' slice count; one clear error when there is nothing to start from."""
        seed_indices = self._accepted_indices(target, view.axis, f"before {purpose}")
        n_slices = annotation.volume.axes(view.axis).n_slices
        if n_slices < 2:
            raise PromptError(f"the volume has a single {view.axis} slice", None, "there is nothing to propagate to")
        seeds = {index: mask for index, mask in self.segment_slices(target, view.axis, seed_indices).items()
                 if mask.any()}
        if not seeds:
            raise PromptError(f"the segment is empty on its accepted {view.axis} slices", None,
                              f"accept a slice again before {purpose}")
        return seeds, n_slices

    def _presence_of(self, session: AnnotationSession, axis: str, seeds: dict, cancel: CancelToken):
        """Worker: the presence model of the segment, learned from its seeds.  Their embeddings are already cached
        (the seeds were prompted), so this takes a fraction of a second; progress is still shown, since an
        unencoded seed (another effect drew it) is encoded first."""
        self._set_progress(0, 0, f"Learning where the segment is from {len(seeds)} {axis} slices")

        def progressed(done: int, total: int) -> None:
            self._set_progress(done, total, f"Learning where the segment is from {len(seeds)} {axis} slices")

        return build_presence(session.engine, axis, seeds, progress=progressed, cancel=cancel)

    def _add_predicted(self, target: AnnotationTarget, result, kind: CommandKind) -> int:
        """Main thread: add a propagation's predicted slices (not its seeds) to the segment as one command;
        returns how many slices were added."""
        predicted = {index: mask for index, mask in result.masks.items() if index not in result.seeds and mask.any()}
        if predicted:
            edit = self._add_to_segment(target, result.axis, predicted)
            self.history.push(Command(kind, target, None, session_action=False, segment_edit=edit))
        return len(predicted)

    def _accepted_indices(self, target: AnnotationTarget, axis: str, purpose: str) -> list[int]:
        indices = self.history.accepted_indices(target.segment_id, axis)
        if not indices:
            raise PromptError(f"no accepted {axis} slice in this segment", None,
                              f"accept at least one slice on this axis {purpose}")
        return indices

    def learn_prompts(self, target: AnnotationTarget, slice_node=None) -> Future:
        """Learn prompt embeddings for the segment from its slices accepted on the axis of ``slice_node`` (the last
        prompted view by default), on the worker with progress and cancel.  From then on that segment's clicks
        and strokes use them; other segments, boxes and propagation keep the stock model."""
        annotation, view, slice_node = self._resolve_view_or_last(target, slice_node, "no view to learn from")
        masks = self.segment_slices(target, view.axis, self._accepted_indices(target, view.axis, "to learn from"))
        options = self.settings().engine_options()
        cancel = self._new_cancel_token()
        label = annotation.label(target.segment_id)

        def job() -> int:
            session = self._session_for(annotation, options, cancel)
            slices = [AnnotatedSlice(view.axis, index, mask) for index, mask in masks.items()]

            def progressed(step: int, steps: int) -> None:
                self._set_progress(step, steps, f"Learning prompts from {len(slices)} {view.axis} slices")

            annotation.learned_prompts[label] = learn_prompts(session.engine, slices, progress=progressed,
                                                              cancel=cancel)
            return len(slices)

        def done(count: int) -> None:
            self.show_status(f"Learned prompts from {count} accepted {view.axis} slices: "
                             "clicks and strokes on this segment use them now.")
            self._changed()

        return self._submit(job, done)

    def forget_learned_prompts(self, target: AnnotationTarget) -> Future:
        """Switch the segment back to the stock prompt embeddings."""
        annotation = self._annotation_for(target.volume_node)
        label = annotation.label(target.segment_id)

        def job() -> bool:
            return annotation.learned_prompts.pop(label, None) is not None

        def done(forgotten: bool) -> None:
            self.show_status("Forgot the prompts learned for this segment." if forgotten
                             else "This segment has no learned prompts.")
            self._changed()

        return self._submit(job, done)

    def has_learned_prompts(self, target: AnnotationTarget) -> bool:
        """Whether the segment has learned prompts in the current annotation (a question: it starts nothing)."""
        annotation = self._annotation
        if annotation is None or target.volume_node is None or annotation.key[0] != target.volume_node.GetID():
            return False
        return annotation.labels.get(target.segment_id) in annotation.learned_prompts

    def pre_encode(self, target: AnnotationTarget, axis: str | None = None) -> Future:
        """Encode every slice of the source volume along ``axis`` in the background (cancellable)."""
        annotation = self._annotation_for(target.volume_node)
        settings = self.settings()
        axis = axis or settings.encode_axis
        options = settings.engine_options()
        cancel = self._new_cancel_token()

        def job():
            engine = self._session_for(annotation, options, cancel).engine

            def progressed(done: int, total: int) -> None:
                self._set_progress(done, total, f"Encoding {axis} slices")

            return engine.prefetch(axis, range(engine.n_slices(axis)), cancel=cancel, progress=progressed)

        def started(prefetch: Future) -> None:
            self.jobs.add(prefetch, lambda count: self.show_status(f"Encoded all {count} {axis} slices."),
                          self._report_error)

        return self._submit(job, started)

    def describe_slice(self, target: AnnotationTarget, slice_node) -> str | None:
        """A short line about the slice a view shows (rotated, encoded or not), for the current annotation only."""
        annotation = self._annotation
        if annotation is None or annotation.session is None or target.volume_node is None \
                or annotation.key[0] != target.volume_node.GetID():
            return None
        view = view_slice(annotation.volume, slice_node)
        if not view.ok:
            return view.reason
        encoded = annotation.session.engine.is_encoded(view.axis, view.index)
        return f"{view.axis} slice {view.index}: " + (
            "encoded, prompts are answered at once" if encoded else "not encoded yet (the first prompt encodes it)")

    def reset(self) -> None:
        """Forget the annotation (the scene is closing); the model and the embedding cache stay."""
        self.cancel()
        self._annotation = None
        self._preview.forget()
        self._forget_slices()
        self.last_slice_node = None
        self._changed()


def _chain_ends(result) -> str:
    """How every chain of a propagation ended, for the status line."""
    return "; ".join(f"the chain from slice {s.seed} stopped after slice {s.last} ({s.reason})" for s in result.stops)


def _slice_of_block(volume: Volume, axis: str, block_kji: np.ndarray) -> np.ndarray:
    """The one slice of a one-slice block of ``axis``, in slice (row, col) orientation."""
    shape_ijk = list(volume.shape_ijk)
    shape_ijk[volume.axes(axis).normal_ijk] = 1
    return np.array(slice_axes(volume.ijk_to_ras, tuple(shape_ijk), axis).stack(block_kji)[0])


def _box_outline_rc(box_rc) -> list:
    r0, c0, r1, c1 = (float(v) for v in box_rc)
    return [(r0, c0), (r0, c1), (r1, c1), (r1, c0), (r0, c0)]
