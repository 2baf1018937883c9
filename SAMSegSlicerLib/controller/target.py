"""What a prompt acts on, and what a slice shows: the small values the controller and its hosts exchange."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class AnnotationTarget:
    """The source volume node, the segmentation node and the segment a result goes to."""

    volume_node: object
    segmentation_node: object
    segment_id: str


@dataclass(frozen=True)
class SliceKey:
    """A slice of a segment: the Slicer segment ID, the anatomical axis and the slice index."""

    segment_id: str
    axis: str
    index: int


@dataclass
class PromptDisplay:
    """The prompts of one slice in world (RAS) coordinates, for a host to draw."""

    positive_points_ras: list = field(default_factory=list)
    negative_points_ras: list = field(default_factory=list)
    boxes_ras: list = field(default_factory=list)
    positive_strokes_ras: list = field(default_factory=list)
    negative_strokes_ras: list = field(default_factory=list)
    lassos_ras: list = field(default_factory=list)  # closed outlines (the first point repeated at the end)


@dataclass
class SliceUpdate:
    """What one worker job left on a slice: its candidate and its prompts (and, for an accept, the mask)."""

    key: SliceKey
    candidate_rc: np.ndarray | None
    prompts: PromptDisplay
    accepted_rc: np.ndarray | None = None
    encoded_before: bool = True
    seconds: float = 0.0
