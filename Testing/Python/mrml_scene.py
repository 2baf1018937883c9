"""A Slicer scene on the slicer-core wheel, built the way Slicer's application builds one.

Application logic with colour, volumes, segmentations and subject hierarchy logics registered; slice
views Red, Yellow and Green each with their slice logic, showing a volume after ``FitSliceToAll``,
``RotateSliceToLowestVolumeAxes`` and ``SnapSliceOffsetToIJK`` (what Slicer does when a volume is shown).
Clicks go through a view's XY (pixels), as the Segment Editor effect receives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer
import vtk

from SAMSegSlicerLib.controller.mrml_geometry import ras_to_xy, xy_to_ras

VIEWS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}
VIEW_SIZE_PX = (512, 512)


@dataclass
class SlicerScene:
    scene: object
    app_logic: object
    volumes_logic: object
    segmentations_logic: object
    slice_logics: dict = field(default_factory=dict)

    def load_volume(self, path: Path, name: str = "volume"):
        node = self.volumes_logic.AddArchetypeVolume(str(path), name, 0)
        assert node is not None, f"Slicer could not load {path}"
        return node

    def load_dicom_series(self, files: list[Path], name: str = "series"):
        """As Slicer's DICOMScalarVolumePlugin loads a series: the archetype reader over the file list."""
        file_list = vtk.vtkStringArray()
        for file in files:
            file_list.InsertNextValue(str(file))
        node = self.volumes_logic.AddArchetypeVolume(str(files[0]), name, 0, file_list)
        assert node is not None, f"Slicer could not load the series {files[0].parent}"
        return node

    def show(self, volume_node) -> None:
        """Show the volume in every view, as selecting it in Slicer does."""
        for view, orientation in VIEWS.items():
            logic = self.slice_logics.get(view)
            if logic is None:
                logic = slicer.vtkMRMLSliceLogic()
                logic.SetMRMLScene(self.scene)
                logic.SetMRMLApplicationLogic(self.app_logic)
                node = logic.AddSliceNode(view)
                node.SetDimensions(*VIEW_SIZE_PX, 1)
                self.slice_logics[view] = logic
            node = logic.GetSliceNode()
            node.SetOrientation(orientation)
            logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume_node.GetID())
            logic.FitSliceToAll()
            logic.RotateSliceToLowestVolumeAxes()
            logic.SnapSliceOffsetToIJK()

    def slice_node(self, view: str):
        return self.slice_logics[view].GetSliceNode()

    def move_to(self, view: str, point_ras) -> None:
        """Scroll the view so that it shows the slice through ``point_ras`` (the slice slider, then snap)."""
        node = self.slice_node(view)
        node.JumpSliceByOffsetting(*[float(v) for v in point_ras])
        self.slice_logics[view].SnapSliceOffsetToIJK()

    def click_ras(self, view: str, point_ras) -> np.ndarray:
        """The world point a mouse click on ``point_ras`` gives: the nearest view pixel, back to RAS."""
        node = self.slice_node(view)
        xy = ras_to_xy(node, point_ras)
        assert abs(xy[2]) < 0.5, f"{point_ras} is not on the {view} view's slice ({xy[2]:.2f} slices away)"
        return xy_to_ras(node, np.round(xy[:2]))

    def add_segmentation(self, volume_node, names: list[str]):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        ids = [node.GetSegmentation().AddEmptySegment(name) for name in names]
        return node, ids


def new_scene() -> SlicerScene:
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()
    app_logic.SetSliceLogics(vtk.vtkCollection())
    app_logic.SetViewLogics(vtk.vtkCollection())

    def register(logic, name):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        return logic

    register(app_logic.GetColorLogic(), "Colors")
    volumes = register(slicer.vtkSlicerVolumesLogic(), "Volumes")
    segmentations = register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
    register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    return SlicerScene(scene, app_logic, volumes, segmentations)
