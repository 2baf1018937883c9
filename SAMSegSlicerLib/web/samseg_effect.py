"""The SAMSeg segmentation effect of the web app: a press, or a press-drag-release, in a slice view becomes a
gesture handed to the app, which passes it to ``AnnotationController.prompt`` exactly as the desktop effect does."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from slicer import vtkMRMLInteractionEventData, vtkMRMLSliceNode
from trame_slicer.segmentation import SegmentationEffect, SegmentationEffectPipeline
from vtkmodules.vtkCommonCore import vtkCommand

from ..controller import DRAG_TOOLS, PromptDisplay
from ..controller.prompt_drawing import PromptDrawing

# (slice node, tool, world points) -> None
GestureHandler = Callable[[object, str, list], None]


class SamSegEffect(SegmentationEffect):
    """Active while a SAMSeg tool is chosen; ``tool``, ``on_gesture`` and ``prompts_for`` (slice node -> the
    controller's PromptDisplay of the slice it shows) are set by the app."""

    def __init__(self) -> None:
        super().__init__()
        self.tool = "positive_point"
        self.on_gesture: GestureHandler | None = None
        self.prompts_for: Callable[[object], PromptDisplay | None] = lambda slice_node: None

    def redraw(self) -> None:
        """Draw each view's prompts again (they changed, or the view moved)."""
        for weak_pipeline in self.pipelines:
            pipeline = weak_pipeline()
            if pipeline is not None and pipeline.GetViewNode() is not None:
                pipeline.draw_prompts(self.prompts_for(pipeline.GetViewNode()))

    def _create_pipeline(self, view_node, _parameter):
        return SamSegPipeline() if isinstance(view_node, vtkMRMLSliceNode) else None

    def gesture(self, slice_node, points_ras: list) -> None:
        if self.on_gesture is not None:
            self.on_gesture(slice_node, self.tool, points_ras)


class SamSegPipeline(SegmentationEffectPipeline[SamSegEffect]):
    """One slice view's events -- a point tool acts on the press, a drag tool collects the path until release --
    and its drawing: the prompts of the slice it shows and the path being dragged (as the desktop effect draws)."""

    def __init__(self) -> None:
        super().__init__()
        self._path_ras: list | None = None
        self.drawing = PromptDrawing()
        self._drawn_in = None
        self._handlers = {
            int(vtkCommand.LeftButtonPressEvent): self._press,
            int(vtkCommand.MouseMoveEvent): self._move,
            int(vtkCommand.LeftButtonReleaseEvent): self._release,
        }

    def CanProcessInteractionEvent(self, event_data: vtkMRMLInteractionEventData) -> tuple[bool, float]:  # noqa: N802
        event = event_data.GetType()
        wanted = event == vtkCommand.LeftButtonPressEvent or (self._path_ras is not None and event in self._handlers)
        return bool(self.IsActive() and wanted), 0

    def ProcessInteractionEvent(self, event_data: vtkMRMLInteractionEventData) -> bool:  # noqa: N802
        handler = self._handlers.get(event_data.GetType())
        return handler(np.array(event_data.GetWorldPosition(), dtype=float)) if handler else False

    def _renderer_with_marks(self):
        renderer = self.GetRenderer()
        if renderer is not None and renderer is not self._drawn_in:
            for actor in self.drawing.actors():
                renderer.AddActor2D(actor)
            self._drawn_in = renderer
        return renderer

    def draw_prompts(self, prompts) -> None:
        if self._renderer_with_marks() is not None:
            self.drawing.show_prompts(prompts, self.GetViewNode())
            self.RequestRender()

    def _draw_path(self) -> None:
        if self._renderer_with_marks() is not None:
            self.drawing.show_drag(None if self._path_ras is None else self._effect.tool, self._path_ras or [],
                                   self.GetViewNode())
            self.RequestRender()

    def _press(self, point_ras) -> bool:
        if self._effect.tool in DRAG_TOOLS:
            self._path_ras = [point_ras]
            self._draw_path()
        else:
            self._effect.gesture(self.GetViewNode(), [point_ras])
        return True

    def _move(self, point_ras) -> bool:
        if self._path_ras is None:
            return False
        if np.linalg.norm(point_ras - self._path_ras[-1]) > 0:
            self._path_ras.append(point_ras)
            self._draw_path()
        return True

    def _release(self, point_ras) -> bool:
        if self._path_ras is None:
            return False
        self._move(point_ras)
        path, self._path_ras = self._path_ras, None
        self._draw_path()
        if len(path) >= 2:
            self._effect.gesture(self.GetViewNode(), path)
        return True

    def LoseFocus(self, event_data) -> None:  # noqa: N802
        super().LoseFocus(event_data)
        self._path_ras = None
        self._draw_path()
