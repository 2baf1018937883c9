"""The user's choices the controller reads for each action (the Slicer module keeps them in its parameter node)."""

from __future__ import annotations

from dataclasses import dataclass

from ..factory import EngineOptions
from ..propagation import PropagationConfig

_DEFAULT_PROPAGATION = PropagationConfig()


@dataclass(frozen=True)
class AnnotationSettings:
    """model, device, window: what the engine is built from; encode_axis: what pre-encoding encodes;
    direction, max_slices (0: no limit), min_iou, min_overlap, max_growth (0 switches a rule off): propagation;
    presence_guard: propagation first learns where the segment is from its accepted slices (a presence model) and
    uses it to trim leaks and stop a chain that drifts onto another structure (README "Auto-segment the rest")."""

    model: str | None = None
    device: str = "auto"
    window: str = "auto"
    encode_axis: str = "axial"
    direction: str = "both"
    max_slices: int = 0
    min_iou: float = _DEFAULT_PROPAGATION.min_iou
    min_overlap: float = _DEFAULT_PROPAGATION.min_overlap
    max_growth: float = _DEFAULT_PROPAGATION.max_growth
    presence_guard: bool = True

    def engine_options(self) -> EngineOptions:
        return EngineOptions(model=self.model, device=self.device, window=self.window)

    def propagation_config(self) -> PropagationConfig:
        return PropagationConfig(min_iou=self.min_iou or None, min_overlap=self.min_overlap or None,
                                 max_growth=self.max_growth or None)
