"""The annotation controller: everything SAMSeg does on Slicer's MRML that needs no Qt.

Layer 2 of three: it imports the core Lib, MRML and VTK (Slicer's own, or the ``slicer-core`` wheel), never
``qt``, ``ctk``, ``slicer.app``, ``slicer.ScriptedLoadableModule`` or ``slicer.parameterNodeWrapper`` (ruff's
banned-import rule, ``ruff.toml`` beside this file).  Hosts -- the Slicer module and effect, tests, a web app --
inject how ``poll`` is scheduled and how segments are written (``host.py``).
"""

from .annotation_controller import DRAG_TOOLS, TOOLS, AnnotationController
from .editor_logic_writer import EditorLogicWriter
from .host import ManualScheduler, Scheduler, SegmentWriter
from .settings import AnnotationSettings
from .target import AnnotationTarget, PromptDisplay, SliceKey

__all__ = [
    "DRAG_TOOLS",
    "TOOLS",
    "AnnotationController",
    "AnnotationSettings",
    "AnnotationTarget",
    "EditorLogicWriter",
    "ManualScheduler",
    "PromptDisplay",
    "Scheduler",
    "SegmentWriter",
    "SliceKey",
]
