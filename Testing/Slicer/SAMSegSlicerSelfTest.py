"""SAMSeg self-tests, run inside Slicer (``Slicer --no-main-window --testing``; see Testing/run_slicer_checks.sh).

The same scenarios and expectations as the controller tests on slicer-core (``SAMSegScenarios``): the CT of
``$SAMSEG_DATA/ct_abdomen_3mm`` loaded by Slicer, prompts placed in the Red, Yellow and Green views through the
application's controller (``SAMSegSlicer.sharedLogic().controller``) and accepted through the SAMSeg Segment Editor
effect, Dice against the reference organs; propagation with undo and redo; the left kidney auto-segmented from three
accepted slices as one undo step; a rotated view refused; prompts learned from two accepted slices answering a click
until forgotten.  Real LiteMedSAM: the Python packages must be installed.
"""

import os

import numpy as np
import slicer
import vtk
from SAMSegScenarios import (
    ASSISTED_CLICK_MIN_DICE,
    AUTO_MIN_DICE,
    AUTO_SEED_SLICES,
    PROMPT_FIXTURES,
    PROPAGATION_MIN_DICE,
    STRUCTURES,
    dice,
    largest_slice,
    prompt_points_rc,
    spread_slices,
)
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

ORIENTATIONS = {"axial": "Axial", "sagittal": "Sagittal", "coronal": "Coronal"}


def dataFolder() -> str:
    repositoryRoot = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.environ.get("SAMSEG_DATA") or os.path.join(os.path.dirname(repositoryRoot), "shared", "data")


class SAMSegSlicerSelfTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        for test in (self.test_prompts_in_each_view_reach_their_dice, self.test_propagation_undo_redo,
                     self.test_auto_segment_the_rest_undo_redo, self.test_rotated_view_is_refused,
                     self.test_learned_prompts_answer_clicks_on_their_segment):
            self.setUp()
            test()

    # --- fixtures ------------------------------------------------------------------------------
    def controller(self):
        import SAMSegSlicer

        logic = SAMSegSlicer.sharedLogic()
        self.assertEqual(logic.missingPythonPackages(), [], "install the SAMSeg Python packages first")
        return logic.controller

    def makeScene(self, segmentName):
        """The CT as Slicer loads it, its reference labels on its grid, a segmentation with one segment, and a
        segment editor with the SAMSeg effect active (accepted masks are written through it)."""
        import SAMSegSlicer
        from SAMSegSlicerLib.controller import AnnotationTarget
        from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node
        from SAMSegSlicerLib.volume import read_labelmap

        folder = os.path.join(dataFolder(), "ct_abdomen_3mm")
        self.assertTrue(os.path.isdir(folder), f"test data not found at {folder} (set SAMSEG_DATA)")
        volumeNode = slicer.util.loadVolume(os.path.join(folder, "image.nii.gz"))
        volume = volume_from_node(volumeNode)
        labels = read_labelmap(os.path.join(folder, "labels.nii.gz"), volume)
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        segmentId = segmentationNode.GetSegmentation().AddEmptySegment(segmentName)

        SAMSegSlicer.registerEffect()
        self.editor = slicer.qMRMLSegmentEditorWidget()
        self.editor.setMaximumNumberOfUndoStates(10)
        self.editor.setMRMLScene(slicer.mrmlScene)
        self.editor.setMRMLSegmentEditorNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode"))
        self.editor.setSegmentationNode(segmentationNode)
        self.editor.setSourceVolumeNode(volumeNode)
        self.editor.setCurrentSegmentID(segmentId)
        self.editor.setActiveEffectByName(SAMSegSlicer.EFFECT_NAME)
        self.assertIsNotNone(self.editor.activeEffect(), "the SAMSeg Segment Editor effect is not registered")
        return volume, labels, AnnotationTarget(volumeNode, segmentationNode, segmentId)

    def tearDown(self):
        self.editor.setActiveEffect(None)

    def sliceNodeAt(self, viewName, axis, point_ras):
        """The view's slice node (created when there is no main window), oriented as Slicer orients it and moved
        through ``point_ras``."""
        sliceNode = slicer.mrmlScene.GetNodeByID(f"vtkMRMLSliceNode{viewName}")
        if sliceNode is None:
            sliceNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSliceNode", f"SAMSeg test {viewName}")
        sliceNode.SetOrientation(ORIENTATIONS[axis])
        sliceNode.JumpSliceByOffsetting(*[float(v) for v in point_ras])
        return sliceNode

    def placePrompt(self, controller, target, sliceNode, tool, points_ras):
        if tool in ("positive_point", "negative_point"):
            controller.add_point(target, sliceNode, points_ras[0], tool == "positive_point")
        elif tool == "box":
            controller.set_box(target, sliceNode, points_ras[0], points_ras[-1])
        else:
            controller.add_stroke(target, sliceNode, points_ras, tool == "positive_stroke")
        controller.wait_for_jobs()

    def promptOnLargestSlice(self, controller, volume, structure_kji, target, view, axis, tool, at, index=None):
        if index is None:
            index, reference_rc = largest_slice(volume, structure_kji, axis)
        else:
            reference_rc = volume.axes(axis).take(structure_kji, index)
        points_ras = volume.ijk_to_ras_points(volume.axes(axis).rc_to_ijk(index, prompt_points_rc(at, reference_rc)))
        sliceNode = self.sliceNodeAt(view, axis, points_ras[0])
        shown = controller.view_slice(target.volume_node, sliceNode)
        self.assertEqual((shown.axis, shown.index), (axis, index), f"the {view} view maps to the wrong slice")
        self.placePrompt(controller, target, sliceNode, tool, points_ras)
        return index, reference_rc, sliceNode

    def assertUndoRedo(self, controller, target, before, after):
        """One undo gives the segment back as it was ``before`` the action, one redo as it was ``after`` it."""
        controller.undo()
        controller.wait_for_jobs()
        np.testing.assert_array_equal(self.segmentArray(target), before)
        controller.redo()
        controller.wait_for_jobs()
        np.testing.assert_array_equal(self.segmentArray(target), after)

    def segmentArray(self, target):
        return slicer.util.arrayFromSegmentBinaryLabelmap(target.segmentation_node, target.segment_id,
                                                          target.volume_node) > 0

    # --- tests ---------------------------------------------------------------------------------
    def test_prompts_in_each_view_reach_their_dice(self):
        from SAMSegSlicerLib.controller import SliceKey

        controller = self.controller()
        for fixture in PROMPT_FIXTURES:
            self.setUp()
            volume, labels, target = self.makeScene(fixture["structure"])
            axis = fixture["orientation"]
            self.delayDisplay(f"{fixture['tool']} on the {fixture['structure']} in the {fixture['view']} view")
            index, reference_rc, _ = self.promptOnLargestSlice(
                controller, volume, labels == STRUCTURES[fixture["structure"]], target, fixture["view"], axis,
                fixture["tool"], fixture["at"])
            candidate = controller.candidate_for(SliceKey(target.segment_id, axis, index))
            self.assertIsNotNone(candidate, "the prompt gave no candidate")
            controller.accept(target)
            controller.wait_for_jobs()
            written_rc = volume.axes(axis).take(self.segmentArray(target), index)
            np.testing.assert_array_equal(written_rc, candidate)
            score = dice(written_rc, reference_rc)
            self.assertGreaterEqual(score, fixture["min_dice"], f"{fixture} reached Dice {score:.3f}")
            self.tearDown()

    def test_propagation_undo_redo(self):
        controller = self.controller()
        volume, labels, target = self.makeScene("liver")
        _, _, sliceNode = self.promptOnLargestSlice(controller, volume, labels == STRUCTURES["liver"], target, "Red",
                                                    "axial", "box", "bounding_box")
        controller.accept(target)
        controller.wait_for_jobs()
        before = self.segmentArray(target)
        self.delayDisplay("Propagate the accepted axial slice")
        controller.propagate(target, sliceNode, "both")
        controller.wait_for_jobs()
        propagated = self.segmentArray(target)
        score = dice(propagated, labels == STRUCTURES["liver"])
        self.assertGreaterEqual(score, PROPAGATION_MIN_DICE, f"propagation reached 3-D Dice {score:.3f}")
        self.assertUndoRedo(controller, target, before, propagated)
        self.tearDown()

    def test_auto_segment_the_rest_undo_redo(self):
        """The left kidney (the right one looks the same to the model) from a few accepted axial boxes: the rest is
        segmented as one undoable step and stays on that kidney."""
        controller = self.controller()
        volume, labels, target = self.makeScene("kidney_left")
        kidney = labels == STRUCTURES["kidney_left"]
        sliceNode = None
        for index in spread_slices(volume, kidney, "axial", AUTO_SEED_SLICES):
            _, _, sliceNode = self.promptOnLargestSlice(controller, volume, kidney, target, "Red", "axial", "box",
                                                        "bounding_box", index=index)
            controller.accept(target)
            controller.wait_for_jobs()
        accepted = self.segmentArray(target)
        self.delayDisplay(f"Auto-segment the rest from {AUTO_SEED_SLICES} accepted axial slices")
        controller.auto_segment_rest(target, sliceNode)
        controller.wait_for_jobs()
        auto = self.segmentArray(target)
        score = dice(auto, kidney)
        self.assertGreaterEqual(score, AUTO_MIN_DICE["kidney_left"], f"auto-segmentation reached 3-D Dice {score:.3f}")
        self.assertUndoRedo(controller, target, accepted, auto)
        self.tearDown()

    def test_rotated_view_is_refused(self):
        from SAMSegSlicerLib.errors import PromptError

        controller = self.controller()
        volume, labels, target = self.makeScene("liver")
        index, reference_rc = largest_slice(volume, labels == STRUCTURES["liver"], "axial")
        centre_ras = volume.ijk_to_ras_points(volume.axes("axial").rc_to_ijk(
            index, prompt_points_rc("centre", reference_rc)))[0]
        sliceNode = self.sliceNodeAt("Red", "axial", centre_ras)
        rotation = vtk.vtkTransform()
        rotation.RotateX(20.0)
        tilted = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Multiply4x4(sliceNode.GetSliceToRAS(), rotation.GetMatrix(), tilted)
        sliceNode.GetSliceToRAS().DeepCopy(tilted)
        sliceNode.UpdateMatrices()
        with self.assertRaises(PromptError) as raised:
            controller.add_point(target, sliceNode, centre_ras, True)
        self.assertIn("rotated 20.0°", str(raised.exception))
        self.assertFalse(self.segmentArray(target).any(), "a rotated view changed the segment")
        self.tearDown()

    def test_learned_prompts_answer_clicks_on_their_segment(self):
        from SAMSegSlicerLib.controller import SliceKey

        controller = self.controller()
        volume, labels, target = self.makeScene("spleen")
        spleen = labels == STRUCTURES["spleen"]
        index, _ = largest_slice(volume, spleen, "axial")
        sliceNode = None
        for learned in (index - 2, index + 2):
            _, _, sliceNode = self.promptOnLargestSlice(controller, volume, spleen, target, "Red", "axial", "box",
                                                        "bounding_box", index=learned)
            controller.accept(target)
            controller.wait_for_jobs()
        self.delayDisplay("Learn prompts from the two accepted axial slices")
        self.assertFalse(controller.has_learned_prompts(target))
        controller.learn_prompts(target, sliceNode)
        controller.wait_for_jobs()
        self.assertTrue(controller.has_learned_prompts(target), "learning left no prompts for the segment")
        _, reference_rc, _ = self.promptOnLargestSlice(controller, volume, spleen, target, "Red", "axial",
                                                       "positive_point", "centre", index=index)
        score = dice(controller.candidate_for(SliceKey(target.segment_id, "axial", index)), reference_rc)
        self.assertGreaterEqual(score, ASSISTED_CLICK_MIN_DICE, f"an assisted click reached Dice {score:.3f}")
        controller.forget_learned_prompts(target)
        controller.wait_for_jobs()
        self.assertFalse(controller.has_learned_prompts(target), "forgetting kept the learned prompts")
        self.tearDown()
