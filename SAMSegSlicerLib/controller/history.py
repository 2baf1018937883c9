"""One undo history for everything SAMSeg does: prompts, accepts, propagations, auto-segmentations and erased
slices.

A command knows both of its sides: the annotation session's (one session action, undone and redone by
the session's own history, which stays in step because only commands drive it) and the segment's (a
block of the segmentation, before and after).  Undoing a segment edit is refused when the block no
longer holds what SAMSeg left there, so another effect's later edit is never reverted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import PromptError
from .segment_region import Block, RegionSnapshot, capture, restore
from .target import AnnotationTarget, SliceKey


class CommandKind(enum.Enum):
    PROMPT = "prompt"
    ACCEPT = "accept"
    PROPAGATION = "propagation"
    AUTO = "auto-segmentation"
    ERASE = "erase"


@dataclass
class SegmentEdit:
    """A change SAMSeg made to a block of a segmentation (``full``: the source volume's whole grid)."""

    segmentation_node: object
    block: Block
    full: Block
    before: RegionSnapshot
    after: RegionSnapshot

    def undo(self) -> None:
        self._put(expected=self.after, wanted=self.before, verb="undo")

    def redo(self) -> None:
        self._put(expected=self.before, wanted=self.after, verb="redo")

    def _put(self, expected: RegionSnapshot, wanted: RegionSnapshot, verb: str) -> None:
        if self.segmentation_node.GetScene() is None:
            raise PromptError(f"cannot {verb}: the segmentation was removed from the scene")
        current = capture(self.segmentation_node, self.block)
        if current.digest != expected.digest:
            raise PromptError(f"cannot {verb}: the segment was edited after SAMSeg changed it", None,
                              "use the Segment Editor's Undo/Redo for those edits first")
        restore(self.segmentation_node, self.block, wanted, self.full)


@dataclass
class Command:
    """One entry of the history.  ``session_action``: the annotation session recorded one action for it."""

    kind: CommandKind
    target: AnnotationTarget
    key: SliceKey | None
    session_action: bool
    segment_edit: SegmentEdit | None = None


class UndoHistory:
    """Done and undone commands; the controller runs them (the session side needs the worker)."""

    def __init__(self):
        self.done: list[Command] = []
        self.undone: list[Command] = []

    def push(self, command: Command) -> None:
        self.done.append(command)
        self.undone.clear()

    def clear(self) -> None:
        self.done.clear()
        self.undone.clear()

    def accepted_indices(self, segment_id: str, axis: str) -> list[int]:
        """Slices of a segment accepted on ``axis`` and not undone."""
        return sorted({c.key.index for c in self.done if c.kind is CommandKind.ACCEPT
                       and c.key.segment_id == segment_id and c.key.axis == axis})
