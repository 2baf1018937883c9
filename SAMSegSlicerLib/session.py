"""The interactive annotation session: prompts per segment and slice, candidate masks, commits, undo/redo.

An :class:`AnnotationSession` works on one volume with one model (a :class:`~.engine.SliceEngine`)
and one label map.  For every (segment, axis, slice index) it keeps the prompts placed so far
and the current *candidate* mask; each new prompt is answered with an updated candidate
(:func:`~.prompts.decode_slice`, which refines the slice's previous result).  ``accept`` commits
a candidate into the label map, ``reject`` throws it away.

History: every action (prompt, clear, accept, reject, erase) is one entry holding the touched
slice's state before and after (immutable objects shared, never copied) and, for commits,
only the label-map pixels it changed.  ``undo``/``redo`` swap those back, so they never
decode or encode anything, and history is unlimited.

Threads: any number of reader calls and one caller may use a session while the engine's
worker thread runs the model; one lock guards the state, and slow encoding happens outside
it (announced through the hooks).  The hooks are plain callables, called on the thread that
made the change; a GUI forwards them to its main thread itself.

Mapping helpers for a GUI (:func:`slice_for_view`, :func:`ras_to_slice_rc`,
:func:`slice_rc_to_ras`) place a slice view and a click of a viewer (RAS millimetres) on a
slice of the volume.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, PromptError, SamSegError
from .geometry import ViewSlice, apply_affine, view_plane_to_slice
from .prompts import (
    DEFAULT_POLICY,
    Candidate,
    Prompt,
    PromptPolicy,
    SlicePrompts,
    decode_slice,
    make_box,
    make_lasso,
    make_point,
    make_stroke,
)
from .volume import Volume

OVERWRITE_POLICIES = ("overwrite", "keep_others")
ON_SLICE_TOLERANCE_VOXELS = 0.5


# --- GUI mapping helpers -----------------------------------------------------------------

def slice_for_view(volume: Volume, normal_ras, point_ras, angle_tolerance_deg: float = 0.5) -> ViewSlice:
    """Which axis and slice index of ``volume`` a view plane (normal and a point on it, RAS)
    shows, or, in ``reason``, why none (rotated/oblique view, between slices, outside)."""
    return view_plane_to_slice(volume.ijk_to_ras, volume.shape_ijk, normal_ras, point_ras,
                               angle_tolerance_deg=angle_tolerance_deg)


def ras_to_slice_rc(volume: Volume, axis: str, index: int, point_ras) -> np.ndarray:
    """RAS points (N, 3) lying on slice ``index`` of ``axis`` -> slice (row, col), (N, 2).

    :class:`PromptError` when a point is more than half a voxel off that slice.
    """
    axes = volume.axes(axis)
    axes.check_index(index)
    position, slice_rc = axes.ijk_to_index_rc(volume.ras_to_ijk(np.asarray(point_ras, dtype=float)))
    off = np.abs(position - index)
    if np.any(off > ON_SLICE_TOLERANCE_VOXELS):
        raise PromptError(f"the point is {float(off.max()):.2f} voxels off {axis} slice {index}", None,
                          "place prompts on the slice shown")
    return slice_rc


def slice_rc_to_ras(volume: Volume, axis: str, index: int, slice_rc) -> np.ndarray:
    """Slice (row, col) points (N, 2) on slice ``index`` of ``axis`` -> RAS millimetres (N, 3)."""
    axes = volume.axes(axis)
    axes.check_index(index)
    return apply_affine(volume.ijk_to_ras, axes.rc_to_ijk(index, slice_rc))


# --- state and history -------------------------------------------------------------------

SliceKey = tuple[int, str, int]  # (segment, axis, slice index)


@dataclass(frozen=True)
class SliceState:
    """One segment's prompts and candidate on one slice (immutable; shared between snapshots)."""

    prompts: SlicePrompts = SlicePrompts()
    candidate: Candidate | None = None


EMPTY = SliceState()


@dataclass(frozen=True)
class LabelChange:
    """The label-map pixels one commit changed on one slice: flat indices into the slice, old and new values."""

    flat_rc: np.ndarray
    before: np.ndarray
    after: np.ndarray


@dataclass(frozen=True)
class Action:
    """One undoable step; ``kind`` is point, box, stroke, lasso, clear, reject, accept or erase."""

    kind: str
    segment: int
    axis: str
    index: int
    before: SliceState
    after: SliceState
    labels: LabelChange | None = None


@dataclass
class SessionHooks:
    """Plain callbacks a GUI can set (each optional).

    ``mask_changed(segment, axis, index)``: the candidate of that slice changed (also on undo/redo);
    ``labels_changed(axis, index)``: committed labels on that slice changed;
    ``encoding_started(axis, index)`` / ``encoding_finished(axis, index, seconds)``: a prompt
    needs a slice that is not encoded yet;
    ``error(error)``: an action failed (the error is raised to the caller as well).
    """

    mask_changed: Callable[[int, str, int], None] | None = None
    labels_changed: Callable[[str, int], None] | None = None
    encoding_started: Callable[[str, int], None] | None = None
    encoding_finished: Callable[[str, int, float], None] | None = None
    error: Callable[[BaseException], None] | None = None


@dataclass
class _History:
    done: list[Action] = field(default_factory=list)
    undone: list[Action] = field(default_factory=list)


class AnnotationSession:
    """Interactive segmentation of one volume: see the module docstring.

    ``labels_kji``: the label map to start from (copied; zeros when None); ``overwrite``:
    what a commit does where another segment is already labelled -- ``overwrite`` takes the
    pixels, ``keep_others`` leaves them; ``log_path``: append one JSON line per action
    (prompt, slice, time, latency) to this file.
    """

    def __init__(self, engine, labels_kji: np.ndarray | None = None, overwrite: str = "overwrite",
                 log_path: str | Path | None = None, policy: PromptPolicy = DEFAULT_POLICY,
                 hooks: SessionHooks | None = None):
        if overwrite not in OVERWRITE_POLICIES:
            raise InputError(f"unknown overwrite policy {overwrite!r}", None,
                             f"use one of {', '.join(OVERWRITE_POLICIES)}")
        shape = engine.volume.voxels_kji.shape
        if labels_kji is None:
            labels = np.zeros(shape, dtype=np.uint16)
        else:
            labels = np.array(labels_kji, copy=True)
            if labels.shape != shape:
                raise InputError(f"label map shape {labels.shape} does not match the volume {shape}", None,
                                 "give a label map on the volume's grid")
            if not np.issubdtype(labels.dtype, np.integer):
                raise InputError("label map must hold integers", None, "give an integer label map")
        self.engine = engine
        self.overwrite = overwrite
        self.policy = policy
        self.hooks = hooks if hooks is not None else SessionHooks()
        self._labels = labels
        self._states: dict[SliceKey, SliceState] = {}
        self._history = _History()
        self._lock = threading.RLock()
        self._log_path = None if log_path is None else Path(log_path)
        if self._log_path is not None and not self._log_path.parent.is_dir():
            raise InputError("folder of the interaction log does not exist", str(self._log_path.parent),
                             "create it first")

    # --- reading ---------------------------------------------------------------------------
    @property
    def labels_kji(self) -> np.ndarray:
        """The committed label map (a read-only view; it changes as commits happen)."""
        view = self._labels.view()
        view.setflags(write=False)
        return view

    def labels_slice(self, axis: str, index: int) -> np.ndarray:
        """A copy of the committed labels on one slice, in slice (row, col) orientation."""
        with self._lock:
            return self.engine.volume.axes(axis).take(self._labels, index).copy()

    def candidate(self, segment: int, axis: str, index: int) -> Candidate | None:
        with self._lock:
            return self._states.get(self._key(segment, axis, index), EMPTY).candidate

    def candidate_mask(self, segment: int, axis: str, index: int) -> np.ndarray | None:
        """The slice's current (uncommitted) mask for ``segment``, read-only, or None."""
        candidate = self.candidate(segment, axis, index)
        return None if candidate is None else candidate.mask_rc

    def prompts(self, segment: int, axis: str, index: int) -> SlicePrompts:
        with self._lock:
            return self._states.get(self._key(segment, axis, index), EMPTY).prompts

    def slices_with_candidates(self, segment: int) -> list[tuple[str, int]]:
        with self._lock:
            return sorted((a, i) for (s, a, i), state in self._states.items()
                          if s == segment and state.candidate is not None)

    @property
    def can_undo(self) -> bool:
        return bool(self._history.done)

    @property
    def can_redo(self) -> bool:
        return bool(self._history.undone)

    # --- prompts ---------------------------------------------------------------------------
    def add_point(self, segment: int, axis: str, index: int, point_rc,
                  positive: bool = True) -> tuple[np.ndarray, float]:
        """Add a click; returns the updated candidate (mask_rc, iou estimate)."""
        return self._prompt("point", segment, axis, index, lambda shape: make_point(point_rc, positive, shape))

    def set_box(self, segment: int, axis: str, index: int, box_rc) -> tuple[np.ndarray, float]:
        """Set the slice's box (row_min, col_min, row_max, col_max), inclusive; replaces an earlier box."""
        return self._prompt("box", segment, axis, index, lambda shape: make_box(box_rc, shape))

    def add_stroke(self, segment: int, axis: str, index: int, points_rc,
                   positive: bool = True) -> tuple[np.ndarray, float]:
        """Add a free-hand stroke through ``points_rc`` (N, 2); returns the updated candidate."""
        return self._prompt("stroke", segment, axis, index, lambda shape: make_stroke(points_rc, positive, shape))

    def add_lasso(self, segment: int, axis: str, index: int, outline_rc) -> tuple[np.ndarray, float]:
        """Add a lasso: a closed outline through ``outline_rc`` (N, 2) drawn around the object.  Its
        bounding box becomes the slice's box (replacing an earlier one), its inside positive
        evidence, and the candidate keeps to its inside; returns the updated candidate."""
        return self._prompt("lasso", segment, axis, index, lambda shape: make_lasso(outline_rc, shape))

    def _prompt(self, kind: str, segment: int, axis: str, index: int,
                make: Callable[[tuple[int, int]], Prompt]) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        with self._reporting():
            key = self._key(segment, axis, index)
            prompt = make(self.engine.slice_shape(axis))
            self._ensure_encoded(axis, index)
            while True:  # decode without holding the lock; readers never wait for the model
                with self._lock:
                    before = self._states.get(key, EMPTY)
                prompts = before.prompts.add(prompt)
                candidate = decode_slice(self.engine, axis, index, prompts, before.candidate, self.policy)
                with self._lock:
                    if self._states.get(key, EMPTY) is before:
                        self._record(Action(kind, *key, before, SliceState(prompts, candidate)))
                        break
        latency = time.perf_counter() - started
        self._notify_mask(key)
        self._log(kind, key, prompt.describe(), latency, candidate)
        return candidate.mask_rc, candidate.iou

    def _ensure_encoded(self, axis: str, index: int) -> None:
        if self.engine.is_encoded(axis, index):
            return
        if self.hooks.encoding_started:
            self.hooks.encoding_started(axis, index)
        started = time.perf_counter()
        self.engine.encode(axis, [index])
        if self.hooks.encoding_finished:
            self.hooks.encoding_finished(axis, index, time.perf_counter() - started)

    # --- slice actions ---------------------------------------------------------------------
    def clear_slice(self, segment: int, axis: str, index: int) -> None:
        """Remove the slice's prompts and candidate for ``segment`` (committed labels stay)."""
        self._reset("clear", segment, axis, index)

    def reject(self, segment: int, axis: str, index: int) -> None:
        """Throw the slice's candidate and prompts away without committing."""
        self._reset("reject", segment, axis, index)

    def _reset(self, kind: str, segment: int, axis: str, index: int) -> None:
        with self._reporting():
            key = self._key(segment, axis, index)
        with self._lock:
            before = self._states.get(key, EMPTY)
            if before is EMPTY:
                return
            self._record(Action(kind, *key, before, EMPTY))
        self._notify_mask(key)
        self._log(kind, key, None, 0.0, None)

    def accept(self, segment: int, axis: str, index: int) -> int:
        """Commit the slice's candidate into the label map for ``segment`` (added to what the
        segment already has there, under the overwrite policy) and clear the slice's prompts.
        Returns the number of label pixels changed; :class:`PromptError` when there is no candidate."""
        with self._reporting(), self._lock:
            key = self._key(segment, axis, index)
            before = self._states.get(key, EMPTY)
            if before.candidate is None:
                raise PromptError(f"nothing to accept on {axis} slice {index} for segment {segment}", None,
                                  "place a prompt first")
            labels_rc = self.engine.volume.axes(axis).take(self._labels, index)
            target = before.candidate.mask_rc & self._writable(labels_rc, segment)
            change = self._apply(axis, index, np.flatnonzero(target & (labels_rc != segment)), segment)
            self._record(Action("accept", *key, before, EMPTY, change))
        self._notify_mask(key)
        self._notify_labels(axis, index)
        self._log("accept", key, None, 0.0, None, changed=int(change.flat_rc.size))
        return int(change.flat_rc.size)

    def erase(self, segment: int, axis: str, index: int) -> int:
        """Remove ``segment``'s committed labels from one slice; returns the pixels changed."""
        with self._reporting(), self._lock:
            key = self._key(segment, axis, index)
            labels_rc = self.engine.volume.axes(axis).take(self._labels, index)
            change = self._apply(axis, index, np.flatnonzero(labels_rc == segment), 0)
            state = self._states.get(key, EMPTY)
            self._record(Action("erase", *key, state, state, change))
        self._notify_labels(axis, index)
        self._log("erase", key, None, 0.0, None, changed=int(change.flat_rc.size))
        return int(change.flat_rc.size)

    def _writable(self, labels_rc: np.ndarray, segment: int) -> np.ndarray:
        if self.overwrite == "overwrite":
            return np.ones(labels_rc.shape, dtype=bool)
        return (labels_rc == 0) | (labels_rc == segment)

    def _apply(self, axis: str, index: int, flat_rc: np.ndarray, value: int) -> LabelChange:
        labels_rc = self.engine.volume.axes(axis).stack(self._labels)[index]
        shape = labels_rc.shape
        rows, cols = np.unravel_index(flat_rc, shape)
        before = labels_rc[rows, cols].copy()
        labels_rc[rows, cols] = value
        return LabelChange(flat_rc, before, np.full(flat_rc.shape, value, dtype=self._labels.dtype))

    # --- history ---------------------------------------------------------------------------
    def _record(self, action: Action) -> None:
        self._set_state(action, action.after)
        self._history.done.append(action)
        self._history.undone.clear()

    def _set_state(self, action: Action, state: SliceState) -> None:
        key = (action.segment, action.axis, action.index)
        if state is EMPTY or (not state.prompts.items and state.candidate is None):
            self._states.pop(key, None)
        else:
            self._states[key] = state

    def _put_labels(self, action: Action, values_name: str) -> None:
        change = action.labels
        labels_rc = self.engine.volume.axes(action.axis).stack(self._labels)[action.index]
        rows, cols = np.unravel_index(change.flat_rc, labels_rc.shape)
        labels_rc[rows, cols] = getattr(change, values_name)

    def undo(self) -> Action | None:
        """Undo the last action (no decoding, no encoding); returns it, or None if there is none."""
        return self._step(self._history.done, self._history.undone, "before", "undo")

    def redo(self) -> Action | None:
        """Redo the last undone action; returns it, or None if there is none."""
        return self._step(self._history.undone, self._history.done, "after", "redo")

    def _step(self, source: list, target: list, side: str, kind: str) -> Action | None:
        started = time.perf_counter()
        with self._lock:
            if not source:
                return None
            action = source.pop()
            self._set_state(action, getattr(action, side))
            if action.labels is not None:
                self._put_labels(action, side)
            target.append(action)
        key = (action.segment, action.axis, action.index)
        self._notify_mask(key)
        if action.labels is not None:
            self._notify_labels(action.axis, action.index)
        self._log(kind, key, {"action": action.kind}, time.perf_counter() - started, None)
        return action

    # --- plumbing --------------------------------------------------------------------------
    def _key(self, segment: int, axis: str, index: int) -> SliceKey:
        top = int(np.iinfo(self._labels.dtype).max)
        if not _is_whole_number(segment) or not 0 < int(segment) <= top:
            raise PromptError(f"segment {segment!r} is not a usable label value", None, f"use a whole number 1..{top}")
        if not _is_whole_number(index):
            raise PromptError(f"slice index {index!r} is not a whole number", None, "pick a slice of the volume")
        try:
            self.engine.volume.axes(axis).check_index(int(index))
        except (ValueError, IndexError) as error:
            raise PromptError(str(error), None, "pick a slice of the volume") from None
        return (int(segment), axis, int(index))

    @contextmanager
    def _reporting(self):
        """Hand a failing action's error to the ``error`` hook, then raise it to the caller."""
        try:
            yield
        except SamSegError as error:
            if self.hooks.error:
                self.hooks.error(error)
            raise

    def _notify_mask(self, key: SliceKey) -> None:
        if self.hooks.mask_changed:
            self.hooks.mask_changed(*key)

    def _notify_labels(self, axis: str, index: int) -> None:
        if self.hooks.labels_changed:
            self.hooks.labels_changed(axis, index)

    def _log(self, kind: str, key: SliceKey, prompt: dict | None, latency_s: float,
             candidate: Candidate | None, **extra) -> None:
        if self._log_path is None:
            return
        record = {"time": round(time.time(), 3), "action": kind, "segment": key[0], "axis": key[1],
                  "index": key[2], "prompt": prompt, "latency_ms": round(1000 * latency_s, 2)}
        if candidate is not None:
            record.update(iou=round(candidate.iou, 4), decodes=candidate.decodes,
                          mask_pixels=int(candidate.mask_rc.sum()))
        record.update(extra)
        with open(self._log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _is_whole_number(value) -> bool:
    """An int (numpy's too), not a bool, a float that would be truncated, a string or None."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
