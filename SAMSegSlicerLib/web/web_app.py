"""The ``samseg web`` page: Slicer's axial, coronal and sagittal views (trame-slicer), the segment list, SAMSeg's
tools and actions, settings and a status line -- one AnnotationController behind them, as in the desktop module."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from aiohttp import web as aiohttp_web
from trame.app import TrameApp
from trame.app.file_upload import ClientFile
from trame.widgets import client, html
from trame_slicer.app.logic.slice_view_logic import connect_slice_view_slider_to_state
from trame_slicer.app.ui.slider import Slider
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
from trame_vuetify.ui.vuetify3 import SinglePageWithDrawerLayout
from trame_vuetify.widgets import vuetify3 as v3
from vtkmodules.vtkCommonCore import vtkCommand

from ..controller import TOOLS, AnnotationController, AnnotationSettings, AnnotationTarget
from ..controller.label_export import labels_of
from ..controller.mrml_geometry import matrix_to_array, view_slice, volume_from_node
from ..errors import SamSegError
from ..geometry import AXES
from ..models import DEFAULT_MODEL, DEVICE_CHOICES, MODEL_SPECS
from ..propagation import DIRECTIONS
from ..window import WINDOW_CHOICES
from .asyncio_scheduler import AsyncioScheduler
from .data_folder import DataFolder
from .modifier_writer import ModifierSegmentWriter
from .samseg_effect import SamSegEffect

VIEWS = ("Red", "Green", "Yellow")
TOOL_ICONS = {"positive_point": "mdi-plus-circle", "negative_point": "mdi-minus-circle", "box": "mdi-vector-square",
              "positive_stroke": "mdi-draw", "negative_stroke": "mdi-eraser-variant", "lasso": "mdi-lasso"}
# The desktop module's keys (README "Annotating").
KEYS = {"a": "positive_point", "s": "negative_point", "d": "box", "e": "positive_stroke", "x": "negative_stroke",
        "l": "lasso"}
KEY_SCRIPT = """
document.addEventListener('keydown', (event) => {
  const tag = (event.target && event.target.tagName) || '';
  if (['INPUT', 'TEXTAREA', 'SELECT'].includes(tag)) { return; }
  window.trame.trigger('samseg_key', [event.key, event.shiftKey]);
});
"""
SEGMENT_COLORS = ((0.95, 0.45, 0.35), (0.35, 0.75, 0.45), (0.4, 0.55, 0.95), (0.95, 0.8, 0.3), (0.75, 0.45, 0.9))
DEFAULTS = AnnotationSettings(model=DEFAULT_MODEL)


def slice_view_ui(server, _view_id, view) -> None:
    """What each slice view shows over its image: the slice slider only.  (trame-slicer's default adds a column of
    buttons along the left edge, which would take the clicks meant for the image there.)"""
    with html.Div(classes="slice-slider-gutter",
                  style="position: absolute; bottom: 0; left: 0; width: 100%; background-color: transparent;"):
        Slider(classes="slice-slider", typed_state=connect_slice_view_slider_to_state(server, view), theme="dark",
               dense=True)


def samseg_layout(with_3d: bool) -> Layout:
    """The axial view large, coronal and sagittal beside it (and the 3-D view when asked for)."""
    side = [ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()]
    if with_3d:
        side.insert(0, ViewLayoutDefinition.threed_view())
    return Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), Layout(LayoutDirection.Vertical,
                                                                                         side)])


class SamSegWebApp(TrameApp):
    """One page, one scene, one controller.  ``image``: opened at start (a file or DICOM folder, read-only);
    ``data_dir``: the only folder read and written on the page's behalf; ``model``: the default model, loaded
    before the first render window (see ``cli/web.py``)."""

    def __init__(self, data_dir: Path, image: Path | None = None, with_3d: bool = False, model=None, server=None):
        super().__init__(server)
        self.data = DataFolder(data_dir)
        self.image = image
        self.slicer = SlicerApp()
        register_rca_factories(self.slicer.view_manager, self.server, slice_view_ui_f=slice_view_ui)
        self.layout_manager = LayoutManager(self.slicer.scene, self.slicer.view_manager, self.server)
        self.layout_manager.register_layout_dict({"SAMSeg": samseg_layout(with_3d)})
        self.layout_manager.set_layout("SAMSeg")
        self.editor = self.slicer.segmentation_editor
        self.volume_node = None
        self.volume = None  # the Lib's Volume of volume_node: its geometry, for the views' slices
        self.segmentation_node = None
        self._gesture_started: float | None = None
        self._observed_views: set[str] = set()
        self._view_sizes: dict[str, tuple] = {}
        self._changes = 0  # candidates and prompts shown so far: the page (and its tests) see each new one
        self.controller = AnnotationController(self.slicer.scene, ModifierSegmentWriter(self.editor),
                                               AsyncioScheduler(self._push_state), settings=self.settings,
                                               model=model)
        self.controller.status_listeners.append(self._show_status)
        self.controller.progress_listeners.append(self._show_progress)
        self.controller.change_listeners.append(self._on_change)
        self._init_state()
        self._build_ui()
        if image is not None:
            self.load(image)

    # --- state ----------------------------------------------------------------------------------
    def _init_state(self) -> None:
        s = self.state
        s.trame__title = "SAMSeg"
        s.samseg_tool = TOOLS[0]
        s.samseg_segments = []
        s.samseg_segment = None
        s.samseg_status = "Open a volume: choose one under the data folder or upload one."
        s.samseg_busy = False
        s.samseg_progress = [0, 0, ""]
        s.samseg_files = self.data.images()
        s.samseg_file = None
        s.samseg_save_name = "segmentation.seg.nrrd"
        s.samseg_loaded = False
        s.samseg_learned = False
        s.samseg_views = {}
        s.samseg_timing = {}
        s.samseg_changes = 0
        for name, value in (("direction", DEFAULTS.direction), ("max_slices", DEFAULTS.max_slices),
                            ("min_iou", DEFAULTS.min_iou), ("min_overlap", DEFAULTS.min_overlap),
                            ("max_growth", DEFAULTS.max_growth), ("presence_guard", DEFAULTS.presence_guard),
                            ("encode_axis", DEFAULTS.encode_axis),
                            ("model", DEFAULTS.model), ("device", DEFAULTS.device), ("window", DEFAULTS.window)):
            s[f"samseg_{name}"] = value
        s.change("samseg_tool")(self._on_tool)
        s.change("samseg_segment")(self._on_segment_selected)

    def settings(self) -> AnnotationSettings:
        s = self.state
        return AnnotationSettings(model=s.samseg_model, device=s.samseg_device, window=s.samseg_window,
                                  encode_axis=s.samseg_encode_axis, direction=s.samseg_direction,
                                  max_slices=int(s.samseg_max_slices or 0), min_iou=float(s.samseg_min_iou or 0),
                                  min_overlap=float(s.samseg_min_overlap or 0),
                                  max_growth=float(s.samseg_max_growth or 0),
                                  presence_guard=bool(s.samseg_presence_guard))

    def target(self) -> AnnotationTarget:
        return AnnotationTarget(self.volume_node, self.segmentation_node, self.state.samseg_segment or "")

    def _push_state(self) -> None:
        """After a poll: send what changed to the page."""
        self.state.flush()

    def _show_status(self, text: str) -> None:
        self.state.samseg_status = text

    def _show_progress(self, done: int, total: int, text: str) -> None:
        self.state.samseg_busy = bool(text)
        self.state.samseg_progress = [done, total, text]

    def _on_change(self) -> None:
        """A candidate or prompts changed (the views re-render on their own, from the MRML changes)."""
        self._changes += 1
        if self._gesture_started is not None:
            self.state.samseg_timing = {"server_ms": round(1000 * (time.perf_counter() - self._gesture_started), 1),
                                        "decode_ms": round(1000 * self.controller.last_prompt_seconds, 1)}
            self._gesture_started = None
        self.state.samseg_changes = self._changes
        self.state.samseg_learned = bool(self.volume_node and self.state.samseg_segment
                                         and self.controller.has_learned_prompts(self.target()))
        self._redraw_prompts()
        self._publish_views()

    def _redraw_prompts(self) -> None:
        effect = self.editor.active_effect
        if isinstance(effect, SamSegEffect):
            effect.redraw()

    def _publish_views(self) -> None:
        """Each slice view's geometry (XY -> RAS, size) and the slice it shows: the status bar, and what the browser
        tests use to click on a given world point."""
        views = {}
        for name in VIEWS:
            node = self.slicer.scene.GetNodeByID(f"vtkMRMLSliceNode{name}")
            if node is None or self.volume is None:
                continue
            shown = view_slice(self.volume, node)
            views[name] = {"xy_to_ras": matrix_to_array(node.GetXYToRAS()).ravel().tolist(),
                           "dims": list(node.GetDimensions()[:2]), "axis": shown.axis, "index": shown.index}
        self.state.samseg_views = views

    def _on_view_modified(self, slice_node, _event=None) -> None:
        """A view moved to another slice or changed size: the page's geometry follows.  When the browser gives a
        view a new size, the volume is fitted into it again (the whole slice stays in sight, as in Slicer)."""
        size = tuple(slice_node.GetDimensions()[:2])
        if self._view_sizes.get(slice_node.GetID()) != size:
            self._view_sizes[slice_node.GetID()] = size
            view = self.slicer.view_manager.get_view(slice_node)
            if view is not None:
                view.fit_view_to_content()
        self._redraw_prompts()
        self._publish_views()
        self.state.flush()

    # --- volumes and segments -------------------------------------------------------------------
    def load(self, path: Path) -> None:
        """Show a volume (file or DICOM folder) with a new segmentation of one segment."""
        files = sorted(str(p) for p in path.iterdir() if p.is_file()) if path.is_dir() else [str(path)]
        nodes = self.slicer.io_manager.load_volumes(files)
        if not nodes:
            raise SamSegError("Slicer could not read the volume", str(path), "give a NIfTI, NRRD, MHA or DICOM series")
        for node in (self.volume_node, self.segmentation_node):
            if node is not None:
                self.slicer.scene.RemoveNode(node)
        self.volume_node = nodes[0]
        self.volume = volume_from_node(self.volume_node)
        self.slicer.display_manager.show_volume(self.volume_node, do_reset_views=True)
        self.segmentation_node = self.editor.create_empty_segmentation_node()
        self.editor.set_active_segmentation(self.segmentation_node, self.volume_node)
        self.editor.set_surface_representation_enabled(False)
        effect = self.editor.set_active_effect_type(SamSegEffect)
        effect.on_gesture = self._on_gesture
        effect.prompts_for = lambda slice_node: self.controller.prompts_for(self.target(), slice_node)
        effect.tool = self.state.samseg_tool
        self.state.samseg_loaded = True
        for name in VIEWS:
            node = self.slicer.scene.GetNodeByID(f"vtkMRMLSliceNode{name}")
            if node is not None and name not in self._observed_views:
                node.AddObserver(vtkCommand.ModifiedEvent, self._on_view_modified)
                self._observed_views.add(name)
        self.add_segment()
        self._show_status(f"Opened {path.name}: {self.volume_node.GetImageData().GetDimensions()} voxels. "
                          "Pick a tool and click or drag in a view.")
        self._publish_views()

    def _refresh_segments(self) -> None:
        segmentation = self.segmentation_node.GetSegmentation()
        display = self.segmentation_node.GetDisplayNode()
        rows = []
        for segment_id in segmentation.GetSegmentIDs():
            segment = segmentation.GetSegment(segment_id)
            rgb = segment.GetColor()
            rows.append({"id": segment_id, "name": segment.GetName(),
                         "color": "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgb),
                         "visible": bool(display.GetSegmentVisibility(segment_id)) if display else True})
        self.state.samseg_segments = rows

    def add_segment(self) -> None:
        segmentation = self.segmentation_node.GetSegmentation()
        number = segmentation.GetNumberOfSegments() + 1
        segment_id = segmentation.AddEmptySegment("", f"Segment {number}",
                                                  SEGMENT_COLORS[(number - 1) % len(SEGMENT_COLORS)])
        self._refresh_segments()
        self.state.samseg_segment = segment_id

    def rename_segment(self, segment_id: str, name: str) -> None:
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
        if segment is not None and name.strip():
            segment.SetName(name.strip())
        self._refresh_segments()

    def recolor_segment(self, segment_id: str, color_hex: str) -> None:
        segment = self.segmentation_node.GetSegmentation().GetSegment(segment_id)
        if segment is not None and len(color_hex) == 7:
            segment.SetColor(*(int(color_hex[i:i + 2], 16) / 255 for i in (1, 3, 5)))
        self._refresh_segments()

    def toggle_segment(self, segment_id: str) -> None:
        display = self.segmentation_node.GetDisplayNode()
        display.SetSegmentVisibility(segment_id, not display.GetSegmentVisibility(segment_id))
        self._refresh_segments()

    def delete_segment(self, segment_id: str) -> None:
        segmentation = self.segmentation_node.GetSegmentation()
        segmentation.RemoveSegment(segment_id)
        self._refresh_segments()
        ids = list(segmentation.GetSegmentIDs())
        self.state.samseg_segment = ids[0] if ids else None

    def _on_segment_selected(self, samseg_segment=None, **_) -> None:
        if samseg_segment and self.segmentation_node is not None:
            self.editor.set_active_segment_id(samseg_segment)
            self._on_change()

    def _on_tool(self, samseg_tool=None, **_) -> None:
        effect = self.editor.active_effect
        if isinstance(effect, SamSegEffect):
            effect.tool = samseg_tool

    # --- prompts and actions --------------------------------------------------------------------
    def _on_gesture(self, slice_node, tool: str, points_ras: list) -> None:
        self._gesture_started = time.perf_counter()
        self.run(lambda target: self.controller.prompt(target, slice_node, tool, points_ras))

    def run(self, action) -> None:
        """Run a controller action on the current target; a problem becomes the status line."""
        try:
            if self.volume_node is None:
                raise SamSegError("no volume open", None, "open a volume first")
            action(self.target())
        except SamSegError as error:
            self._gesture_started = None
            self._show_status(error.one_line())
        self.state.flush()

    def on_key(self, key: str, shift: bool) -> None:
        """The desktop module's keys."""
        tool = KEYS.get(key.lower())
        if tool is not None:
            self.state.samseg_tool = tool
            return
        actions = {"Enter": self.controller.accept, "Backspace": self.controller.clear_slice,
                   "Delete": self.controller.erase_slice, "p": self.controller.propagate,
                   "u": (lambda target: self.controller.redo()) if shift else (lambda target: self.controller.undo()),
                   "U": lambda target: self.controller.redo()}
        if key in actions:
            self.run(actions[key])

    # --- files ----------------------------------------------------------------------------------
    def open_file(self) -> None:
        try:
            self.load(self.data.resolve(self.state.samseg_file or ""))
        except SamSegError as error:
            self._show_status(error.one_line())

    def upload(self, files: list) -> None:
        try:
            for file in files or []:
                upload = ClientFile(file)
                path = self.data.save_upload(upload.name, upload.content)
                self.state.samseg_files = self.data.images()
                self.load(path)
        except SamSegError as error:
            self._show_status(error.one_line())

    def save(self) -> Path | None:
        try:
            if self.volume_node is None:
                raise SamSegError("no volume open", None, "open a volume first")
            labels_kji, names = labels_of(self.segmentation_node, self.volume_node)
            path = self.data.save_segmentation(self.state.samseg_save_name, labels_kji,
                                               self.volume, names,
                                               inputs=() if self.image is None else (self.image,))
        except SamSegError as error:
            self._show_status(error.one_line())
            return None
        self._show_status(f"Saved {path.relative_to(self.data.root)} ({int(np.count_nonzero(labels_kji))} voxels "
                          f"in {len(names)} segments).")
        self.state.samseg_files = self.data.images()
        return path

    def save_here(self) -> None:
        self.save()

    def download(self):
        path = self.save()
        self.state.flush()
        return None if path is None else self.server.protocol.addAttachment(path.read_bytes())

    # --- the page -------------------------------------------------------------------------------
    @staticmethod
    def _bind_session_route(wslink_server) -> None:
        """Answer the page's session request (POST paraview/) with this server's websocket, as a launcher would:
        without it the page logs a 405 error before it falls back to the same address."""

        async def session(request):
            scheme = "wss" if request.secure else "ws"
            return aiohttp_web.json_response({"sessionURL": f"{scheme}://{request.host}/ws"})

        wslink_server.app.router.add_post("/paraview/", session)

    def _build_ui(self) -> None:
        ctrl = self.server.controller
        ctrl.on_server_bind.add(self._bind_session_route)
        ctrl.trigger("samseg_key")(self.on_key)
        with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
            layout.title.set_text("SAMSeg")
            layout.footer.hide()
            client.Script(KEY_SCRIPT)
            with layout.toolbar:
                v3.VSpacer()
                html.Div("{{ samseg_status }}", id="samseg-status", classes="text-body-2 mx-4",
                         style="max-width: 70%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;")
            with layout.drawer as drawer:
                drawer.width = 360
                self._files_panel()
                self._segments_panel()
                self._tools_panel()
                self._propagation_panel()
                self._settings_panel()
            with layout.content:
                with html.Div(style="position: relative; height: calc(100vh - 64px);"):
                    self.layout_manager.initialize_layout_grid(layout)

    def _files_panel(self) -> None:
        with v3.VCard(title="Volume", classes="ma-2", density="compact"):
            with v3.VCardText():
                v3.VSelect(label="Under the data folder", v_model=("samseg_file",), items=("samseg_files",),
                           density="compact", hide_details=True, id="samseg-file")
                v3.VBtn("Open", click=self.open_file, block=True, classes="mt-2", id="samseg-open")
                v3.VFileInput(label="Upload a volume", density="compact", hide_details=True, classes="mt-2",
                              __events=["change"], id="samseg-upload",
                              change=(f"trigger('{self.server.controller.trigger_name(self.upload)}', "
                                      "[$event.target.files])"))
                v3.VTextField(label="Save as (.seg.nrrd, .nii.gz)", v_model=("samseg_save_name",), density="compact",
                              hide_details=True, classes="mt-2", id="samseg-save-name")
                with html.Div(classes="d-flex mt-2"):
                    v3.VBtn("Save", click=self.save_here, disabled=("!samseg_loaded",), classes="mr-2",
                            id="samseg-save")
                    v3.VBtn("Download", disabled=("!samseg_loaded",), id="samseg-download",
                            click=("utils.download(samseg_save_name, trigger('"
                                   f"{self.server.controller.trigger_name(self.download)}'), "
                                   "'application/octet-stream')"))

    def _segments_panel(self) -> None:
        with v3.VCard(title="Segments", classes="ma-2", density="compact"):
            with v3.VList(density="compact"):
                with v3.VListItem(v_for="seg in samseg_segments", key="seg.id", active=("seg.id === samseg_segment",),
                                  click="samseg_segment = seg.id", classes="samseg-segment"):
                    with html.Div(classes="d-flex align-center"):
                        html.Input(type="color", value=("seg.color",), style="width: 28px; height: 24px;",
                                   change=(self.recolor_segment, "[seg.id, $event.target.value]"))
                        v3.VTextField(model_value=("seg.name",), density="compact", hide_details=True,
                                      variant="plain", classes="mx-2",
                                      update_modelValue=(self.rename_segment, "[seg.id, $event]"))
                        v3.VBtn(icon=("seg.visible ? 'mdi-eye' : 'mdi-eye-off'",), size="small", variant="text",
                                click=(self.toggle_segment, "[seg.id]"))
                        v3.VBtn(icon="mdi-delete", size="small", variant="text",
                                click=(self.delete_segment, "[seg.id]"))
            with v3.VCardActions():
                v3.VBtn("Add segment", click=self.add_segment, disabled=("!samseg_loaded",), id="samseg-add-segment")

    def _tools_panel(self) -> None:
        with v3.VCard(title="Prompts", classes="ma-2", density="compact"):
            with v3.VCardText():
                with v3.VBtnToggle(v_model=("samseg_tool",), mandatory=True, density="compact", divided=True):
                    for tool in TOOLS:
                        v3.VBtn(icon=TOOL_ICONS[tool], value=tool, id=f"samseg-tool-{tool}",
                                title=tool.replace("_", " "))
                with html.Div(classes="d-flex flex-wrap mt-2"):
                    for label, action, key in (
                            ("Accept", self.controller.accept, "accept"),
                            ("Clear slice", self.controller.clear_slice, "clear"),
                            ("Erase slice", self.controller.erase_slice, "erase"),
                            ("Undo", lambda target: self.controller.undo(), "undo"),
                            ("Redo", lambda target: self.controller.redo(), "redo")):
                        v3.VBtn(label, click=lambda action=action: self.run(action), size="small",
                                classes="mr-1 mb-1", id=f"samseg-{key}", disabled=("!samseg_loaded",))

    def _propagation_panel(self) -> None:
        with v3.VCard(title="Propagation and encoding", classes="ma-2", density="compact"):
            with v3.VCardText():
                with html.Div(classes="d-flex"):
                    v3.VSelect(label="Direction", v_model=("samseg_direction",), items=("samseg_directions",
                                                                                        list(DIRECTIONS)),
                               density="compact", hide_details=True, classes="mr-2")
                    v3.VTextField(label="Range (0: no limit)", v_model_number=("samseg_max_slices",), type="number",
                                  density="compact", hide_details=True)
                with html.Div(classes="d-flex mt-2"):
                    for name, label in (("min_iou", "Model IoU"), ("min_overlap", "Overlap"),
                                        ("max_growth", "Area growth")):
                        v3.VTextField(label=label, v_model_number=(f"samseg_{name}",), type="number", step=0.05,
                                      density="compact", hide_details=True, classes="mr-1")
                v3.VCheckbox(label="Presence guard", v_model=("samseg_presence_guard",), density="compact",
                             hide_details=True, id="samseg-presence-guard",
                             title="Learn where the segment is from its accepted slices before propagating: trims "
                                   "leaks into neighbours and stops a chain that drifts onto another structure")
                with html.Div(classes="d-flex mt-2"):
                    v3.VBtn("Propagate", click=lambda: self.run(self.controller.propagate), classes="mr-2 flex-grow-1",
                            id="samseg-propagate", disabled=("!samseg_loaded",))
                    v3.VBtn("Auto-segment the rest", click=lambda: self.run(self.controller.auto_segment_rest),
                            classes="flex-grow-1", id="samseg-auto", disabled=("!samseg_loaded",),
                            title="Segment the whole axis from the segment's accepted slices (one undo step)")
                with html.Div(classes="d-flex mt-2"):
                    v3.VSelect(label="Axis", v_model=("samseg_encode_axis",), items=("samseg_axes", list(AXES)),
                               density="compact", hide_details=True, classes="mr-2")
                    v3.VBtn("Pre-encode", click=lambda: self.run(self.controller.pre_encode), id="samseg-pre-encode",
                            disabled=("!samseg_loaded",))
                v3.VProgressLinear(v_show=("samseg_busy",), model_value=(
                    "samseg_progress[1] ? 100 * samseg_progress[0] / samseg_progress[1] : 0",),
                    indeterminate=("!samseg_progress[1]",), classes="mt-2")
                with html.Div(v_if=("samseg_busy",), classes="d-flex align-center"):  # d-flex would beat v_show
                    html.Div("{{ samseg_progress[2] }} {{ samseg_progress[1] ? samseg_progress[0] + '/' + "
                             "samseg_progress[1] : '' }}", classes="text-caption")
                    v3.VSpacer()
                    v3.VBtn("Cancel", click=self.controller.cancel, size="small", id="samseg-cancel")
                with html.Div(classes="d-flex mt-2"):
                    v3.VBtn("Learn from my slices", click=lambda: self.run(self.controller.learn_prompts),
                            size="small", classes="mr-1", disabled=("!samseg_loaded",), id="samseg-learn")
                    v3.VBtn("Forget", click=lambda: self.run(self.controller.forget_learned_prompts), size="small",
                            disabled=("!samseg_learned",), id="samseg-forget")

    def _settings_panel(self) -> None:
        with v3.VCard(title="Model", classes="ma-2", density="compact"):
            with v3.VCardText():
                v3.VSelect(label="Model", v_model=("samseg_model",), items=("samseg_models", list(MODEL_SPECS)),
                           density="compact", hide_details=True)
                with html.Div(classes="d-flex mt-2"):
                    v3.VSelect(label="Device", v_model=("samseg_device",), items=("samseg_devices",
                                                                                  list(DEVICE_CHOICES)),
                               density="compact", hide_details=True, classes="mr-2")
                    v3.VSelect(label="Window", v_model=("samseg_window",), items=("samseg_windows",
                                                                                  list(WINDOW_CHOICES)),
                               density="compact", hide_details=True)
