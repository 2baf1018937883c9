"""Fixtures for the controller tests on real MRML (the slicer-core wheel): a scene built as Slicer builds one,
volumes loaded by Slicer's volumes logic, a segmentation, and a controller writing through the segment editor
logic -- chained as ``a_slicer_scene -> a_ct_volume_node -> a_segmentation -> a_controller``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Slicer"))

from mrml_scene import SlicerScene, new_scene  # noqa: E402

from SAMSegSlicerLib.controller import (  # noqa: E402
    AnnotationController,
    AnnotationTarget,
    EditorLogicWriter,
)
from SAMSegSlicerLib.controller.mrml_geometry import ijk_to_segmentation, volume_from_node  # noqa: E402
from SAMSegSlicerLib.controller.segment_region import Block, segment_block  # noqa: E402

LIVER, SPLEEN, KIDNEY_RIGHT = 5, 1, 2


@pytest.fixture
def a_slicer_scene() -> SlicerScene:
    return new_scene()


@pytest.fixture
def a_ct_volume_node(a_slicer_scene, data_dir):
    node = a_slicer_scene.load_volume(data_dir / "ct_abdomen_3mm" / "image.nii.gz", "ct_abdomen_3mm")
    a_slicer_scene.show(node)
    return node


@pytest.fixture
def a_segmentation(a_slicer_scene, a_ct_volume_node):
    """A segmentation on the CT with segments 'liver', 'spleen' and 'kidney'."""
    return a_slicer_scene.add_segmentation(a_ct_volume_node, ["liver", "spleen", "kidney"])


@pytest.fixture
def an_editor_writer(a_slicer_scene) -> EditorLogicWriter:
    return EditorLogicWriter(a_slicer_scene.scene, a_slicer_scene.app_logic)


@pytest.fixture
def a_controller(a_slicer_scene, an_editor_writer, model, shared_cache, worker) -> AnnotationController:
    controller = AnnotationController(a_slicer_scene.scene, an_editor_writer, model=model, cache=shared_cache,
                                      worker=worker)
    controller.statuses = []
    controller.status_listeners.append(controller.statuses.append)
    yield controller
    controller.cancel()
    controller.wait_for_jobs()
    controller.close()


@pytest.fixture
def a_liver_target(a_ct_volume_node, a_segmentation) -> AnnotationTarget:
    node, ids = a_segmentation
    return AnnotationTarget(a_ct_volume_node, node, ids[0])


@pytest.fixture
def ct_reference(data_dir, a_ct_volume_node) -> np.ndarray:
    """The CT's organ labels on the volume node's own grid (k, j, i)."""
    from SAMSegSlicerLib.volume import read_labelmap

    return read_labelmap(data_dir / "ct_abdomen_3mm" / "labels.nii.gz", volume_from_node(a_ct_volume_node))


def segment_array(target: AnnotationTarget, segment_id: str | None = None) -> np.ndarray:
    """A segment's voxels on the source volume's grid (bool, k j i), read back from the segmentation."""
    shape_ijk = target.volume_node.GetImageData().GetDimensions()
    block = Block((0, shape_ijk[0] - 1, 0, shape_ijk[1] - 1, 0, shape_ijk[2] - 1),
                  ijk_to_segmentation(target.volume_node, target.segmentation_node))
    return segment_block(target.segmentation_node, segment_id or target.segment_id, block)
