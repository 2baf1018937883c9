"""What a host provides to the controller, as small protocols.

* :class:`Scheduler`: calls the controller's ``poll`` on the main thread while worker jobs run
  (a QTimer in Slicer, the event loop in a web server, nothing in tests, which call ``wait_for_jobs``).
* :class:`SegmentWriter`: adds a labelmap to a segment the way the host's Segment Editor would, so the
  editable area, the intensity range and the overwrite setting apply (the SAMSeg effect's
  ``modifySegmentByLabelmap`` in Slicer; :class:`~.editor_logic_writer.EditorLogicWriter` elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .target import AnnotationTarget


class Scheduler(Protocol):
    def start(self, poll: Callable[[], None]) -> None:
        """Call ``poll`` on the main thread every few milliseconds until :meth:`stop`."""

    def stop(self) -> None:
        ...


class SegmentWriter(Protocol):
    def add(self, target: AnnotationTarget, modifier_labelmap) -> None:
        """Add the 1-voxels of ``modifier_labelmap`` (a vtkOrientedImageData in the segmentation's frame)
        to the target's segment under the segment editor's masking and overwrite settings."""


class ManualScheduler:
    """No timer: the caller polls (``AnnotationController.wait_for_jobs`` in scripts and tests)."""

    def start(self, poll: Callable[[], None]) -> None:
        pass

    def stop(self) -> None:
        pass
