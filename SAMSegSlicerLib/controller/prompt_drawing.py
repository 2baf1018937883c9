"""The prompts of one slice view drawn over it, as the Draw effect draws its outline: VTK 2-D actors, one polydata
per colour, kept in world (RAS) coordinates and placed in the view's XY whenever the view moves.  Used by the
desktop effect and by the web app's effect, so both show the same marks."""

from __future__ import annotations

import numpy as np
import vtk

from .mrml_geometry import matrix_to_array
from .target import PromptDisplay

POSITIVE_COLOR = (0.25, 0.9, 0.45)
NEGATIVE_COLOR = (0.95, 0.3, 0.3)
BOX_COLOR = (1.0, 0.85, 0.1)
POINT_DIAMETER_PX = 12
LINE_WIDTH_PX = 2


class PolylineLayer:
    """Marks of one colour in one view: polylines (or, with ``glyphs``, filled dots at their points)."""

    def __init__(self, color, glyphs: bool):
        self.polylines_ras: list[np.ndarray] = []
        self.points_xy = vtk.vtkPoints()
        self.lines = vtk.vtkCellArray()
        self.polydata = vtk.vtkPolyData()
        self.polydata.SetPoints(self.points_xy)
        self.polydata.SetLines(self.lines)
        self.mapper = vtk.vtkPolyDataMapper2D()
        if glyphs:
            source = vtk.vtkGlyphSource2D()
            source.SetGlyphTypeToCircle()
            source.SetResolution(16)
            source.FilledOn()
            source.SetScale(POINT_DIAMETER_PX)
            self.glyph = vtk.vtkGlyph2D()
            self.glyph.SetSourceConnection(source.GetOutputPort())
            self.glyph.SetInputData(self.polydata)
            self.mapper.SetInputConnection(self.glyph.GetOutputPort())
        else:
            self.mapper.SetInputData(self.polydata)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(self.mapper)
        self.actor.GetProperty().SetColor(*color)
        self.actor.GetProperty().SetLineWidth(LINE_WIDTH_PX)

    def set(self, polylines_ras) -> None:
        self.polylines_ras = [np.asarray(p, dtype=float).reshape(-1, 3) for p in polylines_ras]

    def position(self, ras_to_xy: np.ndarray) -> None:
        self.points_xy.Reset()
        self.lines.Reset()
        for polyline_ras in self.polylines_ras:
            polyline_xy = polyline_ras @ ras_to_xy[:3, :3].T + ras_to_xy[:3, 3]
            ids = vtk.vtkIdList()
            for x, y, _ in polyline_xy:
                ids.InsertNextId(self.points_xy.InsertNextPoint(x, y, 0.0))
            if ids.GetNumberOfIds() > 1:
                self.lines.InsertNextCell(ids)
        self.points_xy.Modified()
        self.lines.Modified()
        self.polydata.Modified()


class PromptDrawing:
    """The marks of one slice view: the prompts of the slice it shows, and the box or path being dragged."""

    def __init__(self):
        self.positive_points = PolylineLayer(POSITIVE_COLOR, glyphs=True)
        self.negative_points = PolylineLayer(NEGATIVE_COLOR, glyphs=True)
        self.boxes = PolylineLayer(BOX_COLOR, glyphs=False)
        self.positive_strokes = PolylineLayer(POSITIVE_COLOR, glyphs=False)
        self.negative_strokes = PolylineLayer(NEGATIVE_COLOR, glyphs=False)
        self.lassos = PolylineLayer(BOX_COLOR, glyphs=False)
        self.drag = PolylineLayer(BOX_COLOR, glyphs=False)

    def layers(self) -> tuple[PolylineLayer, ...]:
        return (self.positive_points, self.negative_points, self.boxes, self.positive_strokes,
                self.negative_strokes, self.lassos, self.drag)

    def actors(self) -> list:
        return [layer.actor for layer in self.layers()]

    def show_prompts(self, prompts: PromptDisplay | None, slice_node) -> None:
        """Draw the prompts of the shown slice (None: none)."""
        self.positive_points.set([[p] for p in prompts.positive_points_ras] if prompts else [])
        self.negative_points.set([[p] for p in prompts.negative_points_ras] if prompts else [])
        self.boxes.set(prompts.boxes_ras if prompts else [])
        self.positive_strokes.set(prompts.positive_strokes_ras if prompts else [])
        self.negative_strokes.set(prompts.negative_strokes_ras if prompts else [])
        self.lassos.set(prompts.lassos_ras if prompts else [])
        self.position(slice_node)

    def show_drag(self, tool: str | None, points_ras: list, slice_node) -> None:
        """The rubber band of a box, or the path of a scribble or lasso being drawn; ``tool`` None clears it."""
        color = NEGATIVE_COLOR if tool == "negative_stroke" else POSITIVE_COLOR if tool == "positive_stroke" \
            else BOX_COLOR
        self.drag.actor.GetProperty().SetColor(*color)
        if tool is None:
            self.drag.set([])
        elif tool == "box":
            self.drag.set([rubber_band_ras(points_ras[0], points_ras[-1], slice_node)])
        else:
            self.drag.set([points_ras])
        self.position(slice_node)

    def position(self, slice_node) -> None:
        """Place every mark in the view's XY (after the view moved, zoomed or changed size)."""
        ras_to_xy = np.linalg.inv(matrix_to_array(slice_node.GetXYToRAS()))
        for layer in self.layers():
            layer.position(ras_to_xy)


def rubber_band_ras(start_ras, end_ras, slice_node) -> np.ndarray:
    """The outline of the view-aligned box with these two corners, in world coordinates."""
    xy_to_ras = matrix_to_array(slice_node.GetXYToRAS())
    ras_to_xy = np.linalg.inv(xy_to_ras)
    start = ras_to_xy @ np.append(np.asarray(start_ras, dtype=float), 1.0)
    end = ras_to_xy @ np.append(np.asarray(end_ras, dtype=float), 1.0)
    corners_xy = [(start[0], start[1]), (end[0], start[1]), (end[0], end[1]), (start[0], end[1]),
                  (start[0], start[1])]
    return np.array([(xy_to_ras @ np.array([x, y, start[2], 1.0]))[:3] for x, y in corners_xy])
