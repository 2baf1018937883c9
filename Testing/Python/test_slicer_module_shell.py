"""The Slicer module's Qt shell (SAMSegSlicer/SAMSegSlicer.py and SAMSegSlicerHost) on slicer-core, with small
stand-ins for what only the Slicer application has: ``qt`` (a QTimer polled by hand), ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper`` and a Segment Editor effect that writes through the editor logic as the desktop effect
does.  It checks the wiring the desktop relies on -- the module imports, its Logic builds the controller on
``slicer.mrmlScene`` with the parameter node's settings, the QTimer scheduler drives ``poll``, and accepted masks
go through the effect (one editor undo state each); and, read from the .ui and the module's source, that every panel
button is connected (Auto-segment the rest beside Propagate) and every bound parameter (the Presence guard check box)
reaches the controller's settings -- not Qt itself, which only the self-tests in Slicer run."""

from __future__ import annotations

import ast
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import slicer
from conftest_mrml import LIVER, segment_array
from SAMSegScenarios import dice, largest_slice, prompt_points_rc

from SAMSegSlicerLib.controller import AnnotationTarget, EditorLogicWriter, SliceKey
from SAMSegSlicerLib.controller.mrml_geometry import volume_from_node

MODULE_FOLDER = Path(__file__).resolve().parents[2] / "SAMSegSlicer"
UI_FILE = MODULE_FOLDER / "Resources" / "UI" / "SAMSegSlicer.ui"


class _Timer:
    """qt.QTimer stand-in: the test fires ``timeout()`` by hand."""

    timers: list = []

    def __init__(self):
        self.active, self.slot = False, None
        _Timer.timers.append(self)

    def setInterval(self, ms):  # noqa: N802 - Qt's name
        pass

    def connect(self, signal, slot):
        self.slot = slot

    def isActive(self):  # noqa: N802
        return self.active

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


def _stand_ins(scene) -> dict:
    qt = types.ModuleType("qt")
    qt.QTimer = _Timer
    loadable = types.ModuleType("slicer.ScriptedLoadableModule")

    class Logic:
        def __init__(self):
            self._node = types.SimpleNamespace()

        def getParameterNode(self):  # noqa: N802
            return self._node

    loadable.ScriptedLoadableModuleLogic = Logic
    loadable.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {})
    loadable.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    loadable.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.Choice = wrapper.Decimals = wrapper.SingleStep = wrapper.WithinRange = lambda *args: None

    def parameterNodeWrapper(cls):  # noqa: N802 - Slicer's name
        defaults = {name: getattr(cls, name) for name in cls.__annotations__}

        class Wrapped:
            """Reads and writes the parameters on the node it wraps, as Slicer's wrapper does (defaults first)."""

            def __init__(self, node):
                object.__setattr__(self, "_node", node)
                for name, value in defaults.items():
                    if not hasattr(node, name):
                        setattr(node, name, value)

            def __getattr__(self, name):
                return getattr(self._node, name)

            def __setattr__(self, name, value):
                setattr(self._node, name, value)

        return Wrapped

    wrapper.parameterNodeWrapper = parameterNodeWrapper
    return {"qt": qt, "slicer.ScriptedLoadableModule": loadable, "slicer.parameterNodeWrapper": wrapper}


class _Effect:
    """The SAMSeg effect as the desktop runs it: its parameter set node, an undo state, then the editor's write."""

    def __init__(self, writer: EditorLogicWriter):
        self.writer = writer
        self.undo_states = 0

    def parameterSetNode(self):  # noqa: N802
        return self.writer.editor_node

    def saveStateForUndo(self):  # noqa: N802
        self.undo_states += 1

    def modifySegmentByLabelmap(self, segmentation_node, segment_id, modifier, mode):  # noqa: N802
        assert mode == slicer.qSlicerSegmentEditorAbstractEffect.ModificationModeAdd
        self.writer.add(AnnotationTarget(None, segmentation_node, segment_id), modifier)


@pytest.fixture
def the_slicer_module(monkeypatch, a_slicer_scene):
    for name, module in _stand_ins(a_slicer_scene.scene).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "mrmlScene", a_slicer_scene.scene, raising=False)
    monkeypatch.setattr(slicer, "qSlicerSegmentEditorAbstractEffect",
                        types.SimpleNamespace(ModificationModeAdd=1), raising=False)
    monkeypatch.syspath_prepend(str(MODULE_FOLDER))
    for name in ("SAMSegSlicer", "SAMSegSlicerHost", "SAMSegSlicerHost.QtHost", "SAMSegSlicerHost.Dependencies"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import SAMSegSlicer

    yield SAMSegSlicer
    SAMSegSlicer.sharedLogic().controller.close()
    monkeypatch.setattr(SAMSegSlicer, "_sharedLogic", None)


def test_the_module_logic_runs_a_box_and_an_accept_through_its_timer_and_effect(
        the_slicer_module, a_slicer_scene, a_liver_target, ct_reference):
    logic = the_slicer_module.sharedLogic()
    controller = logic.controller
    assert controller.scene is a_slicer_scene.scene
    assert controller.settings().model == "litemedsam" and controller.settings().min_iou == 0.5
    writer = EditorLogicWriter(a_slicer_scene.scene, a_slicer_scene.app_logic)
    writer.select(a_liver_target)
    effect = _Effect(writer)

    volume = volume_from_node(a_liver_target.volume_node)
    index, reference_rc = largest_slice(volume, ct_reference == LIVER, "axial")
    corners_ras = volume.ijk_to_ras_points(volume.axes("axial").rc_to_ijk(
        index, prompt_points_rc("bounding_box", reference_rc)))
    a_slicer_scene.move_to("Red", corners_ras[0])
    timer = _Timer.timers[-1]
    controller.set_box(a_liver_target, a_slicer_scene.slice_node("Red"), *corners_ras)
    assert timer.active, "a job must start the poll timer"
    controller.jobs.wait()
    timer.slot()  # the timer fires once the job is done: the result lands and the timer stops
    assert not timer.active
    candidate = controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index))
    assert dice(candidate, reference_rc) >= 0.93

    statuses = []
    controller.status_listeners.append(statuses.append)
    controller.accept(a_liver_target)  # no SAMSeg effect active: refused, the segment untouched
    controller.wait_for_jobs()
    assert "the SAMSeg effect is not active on this segmentation" in statuses[-1]
    assert not segment_array(a_liver_target).any()
    np.testing.assert_array_equal(controller.candidate_for(SliceKey(a_liver_target.segment_id, "axial", index)),
                                  candidate)  # the session took its accept back: the candidate is still there
    assert [c.kind.value for c in controller.history.done] == ["prompt"]
    logic.attachEffect(effect)
    controller.accept(a_liver_target)
    controller.wait_for_jobs()
    assert effect.undo_states == 1
    np.testing.assert_array_equal(volume.axes("axial").take(segment_array(a_liver_target), index), candidate)
    logic.detachEffect(effect)
    assert logic.writer.effect is None


def _clicked_connections() -> dict[str, str]:
    """What each ``self.ui.<button>.connect("clicked()", ...)`` of the module calls: button name -> the first
    attribute named in the slot (``auto_segment_rest`` for ``lambda: self.run(self.controller.auto_segment_rest)``),
    read from the module's source (the widget itself needs Qt, which only the self-tests in Slicer have)."""
    connections = {}
    for node in ast.walk(ast.parse((MODULE_FOLDER / "SAMSegSlicer.py").read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "clicked()" \
                and isinstance(node.func.value, ast.Attribute):
            slot = node.args[1]
            names = [n.attr for n in ast.walk(slot)
                     if isinstance(n, ast.Attribute) and n.attr not in ("run", "controller")]
            connections[node.func.value.attr] = names[0] if names else ""
    return connections


def test_every_panel_button_is_connected_and_auto_segment_sits_beside_propagate():
    ui = ET.parse(UI_FILE).getroot()
    buttons = {w.get("name") for w in ui.iter("widget") if w.get("class") == "QPushButton"}
    connections = _clicked_connections()
    assert buttons <= set(connections), f"buttons of the .ui never connected: {sorted(buttons - set(connections))}"
    assert connections["autoSegmentButton"] == "auto_segment_rest"
    assert connections["propagateButton"] == "propagate"
    # the layout whose own items are the two buttons: a row of its own in the Propagation panel
    beside = next(layout for layout in ui.iter("layout")
                  if [item.find("widget").get("name") for item in layout.findall("item")
                      if item.find("widget") is not None] == ["propagateButton", "autoSegmentButton"])
    assert beside.get("class") == "QHBoxLayout"
    panel = next(w for w in ui.iter("widget") if w.get("name") == "propagationCollapsibleButton")
    assert beside in list(panel.iter("layout"))
    assert "presenceGuardCheckBox" in {w.get("name") for w in panel.iter("widget")}


def test_every_bound_parameter_is_a_parameter_node_field_and_the_presence_guard_reaches_the_settings(
        the_slicer_module):
    ui = ET.parse(UI_FILE).getroot()
    bound = {w.get("name"): p.find("string").text for w in ui.iter("widget") for p in w.findall("property")
             if p.get("name") == "SlicerParameterName"}
    logic = the_slicer_module.sharedLogic()
    node = logic.getParameterNode()
    missing = [name for name in bound.values() if not hasattr(node, name)]
    assert not missing, f"the .ui binds parameters the parameter node lacks: {missing}"
    assert bound["presenceGuardCheckBox"] == "presenceGuard"
    assert node.presenceGuard is True and logic.controller.settings().presence_guard is True
    node.presenceGuard = False  # the check box unticked
    assert logic.controller.settings().presence_guard is False
    assert logic.controller.settings().max_growth == node.maxGrowth
