"""Driving the ``samseg web`` page in a real browser (Debian's chromium through Playwright) as a person would:
choose a tool, scroll a view to a slice with its slider, click or drag at the pixel where a world point lies
(computed from the view's geometry, which the page publishes), press the page's buttons.  Shared by the browser
tests and the latency benchmark."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The order of the views' images on the page (the SAMSeg layout: axial, then coronal and sagittal beside it).
VIEW_ORDER = ("Red", "Green", "Yellow")
# trame's remote views drop events that follow each other within their 10 ms throttle: a hand is slower.
HAND_PAUSE_MS = 80


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebServer:
    """``samseg web IMAGE --data-dir DIR`` in a child process, on a free port of 127.0.0.1 (``cache_dir``: its own
    embedding cache, so that what it encodes does not depend on earlier runs)."""

    def __init__(self, image: Path, data_dir: Path, log_path: Path, cache_dir: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._log = open(log_path, "wb")
        code = "import sys; from SAMSegSlicerLib.cli import main; sys.exit(main())"
        self.process = subprocess.Popen([sys.executable, "-c", code, "web", str(image), "--port", str(self.port),
                                         "--data-dir", str(data_dir)], stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1",
                                             **({"SAMSEG_CACHE_DIR": str(cache_dir)} if cache_dir else {})})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"samseg web exited with {self.process.returncode}: see {log_path}")
            try:
                urllib.request.urlopen(self.url, timeout=2).read()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"samseg web did not answer within 120 s: see {log_path}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class SamSegPage:
    """One browser page on the app; ``errors`` collects what the browser console reports as errors."""

    def __init__(self, page, url: str):
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(url)
        self.wait_until(lambda: self.state("samseg_loaded") and (self.state("samseg_views") or {}).get("Red"),
                        "the volume")

    # --- reading the page -----------------------------------------------------------------------
    def state(self, key: str):
        return self.page.evaluate(f"window.trame && window.trame.state ? window.trame.state.get('{key}') : null")

    def wait_until(self, condition, what: str, timeout_s: float = 120.0, poll_ms: int = 50):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            self.page.wait_for_timeout(poll_ms)
        raise AssertionError(f"timed out waiting for {what}; status: {self.state('samseg_status')}")

    def _image_rect(self, view: str) -> dict:
        return json.loads(self.page.evaluate(
            f"JSON.stringify(document.querySelectorAll('img.image-display-area')[{VIEW_ORDER.index(view)}]"
            ".getBoundingClientRect())"))

    def _geometry(self, view: str) -> dict:
        """The view's published geometry, once it matches the size of the frame the page shows."""
        index = VIEW_ORDER.index(view)

        def matching():
            geometry = self.state("samseg_views")[view]
            natural = self.page.evaluate(f"(() => {{ const img = document.querySelectorAll('img.image-display-area')"
                                         f"[{index}]; return [img.naturalWidth, img.naturalHeight]; }})()")
            return geometry if list(geometry["dims"]) == list(natural) else None

        return self.wait_until(matching, f"the {view} view's geometry", 30)

    def to_page(self, view: str, point_ras) -> tuple[float, float, float]:
        """Where a world point lies on the page (CSS pixels), and how many slices it lies off the view's plane."""
        geometry = self._geometry(view)
        xy_to_ras = np.array(geometry["xy_to_ras"]).reshape(4, 4)
        width, height = geometry["dims"]
        x, y, slices_off, _ = np.linalg.inv(xy_to_ras) @ np.append(np.asarray(point_ras, dtype=float), 1.0)
        rect = self._image_rect(view)
        return rect["left"] + x * rect["width"] / width, rect["top"] + (height - y) * rect["height"] / height, \
            slices_off

    # --- acting on the page ---------------------------------------------------------------------
    def press(self, button_id: str) -> None:
        self.page.click(f"#samseg-{button_id}")
        self.page.wait_for_timeout(HAND_PAUSE_MS)

    def choose_tool(self, tool: str) -> None:
        self.press(f"tool-{tool}")
        self.wait_until(lambda: self.state("samseg_tool") == tool, f"the {tool} tool")

    def show_slice(self, view: str, index: int) -> None:
        """Move the view's slice slider with the arrow keys until the view shows slice ``index``."""
        self.page.locator(".v-slider-thumb").nth(VIEW_ORDER.index(view)).focus()
        for _ in range(400):
            current = self.state("samseg_views")[view]["index"]
            if current == index:
                self.page.wait_for_timeout(500)  # arrow presses still on their way would move it on
                if self.state("samseg_views")[view]["index"] == index:
                    return
                continue
            step = (1 if current < index else -1) * (1 if self._slider_grows_index(view) else -1)
            self.page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")
            self.page.wait_for_timeout(40 if abs(current - index) > 3 else 250)
        raise AssertionError(f"the {view} view did not reach slice {index}")

    def _slider_grows_index(self, view: str) -> bool:
        if not hasattr(self, "_slider_sign"):
            self._slider_sign = {}
        if view not in self._slider_sign:
            before = self.state("samseg_views")[view]["index"]
            self.page.keyboard.press("ArrowRight")
            after = self.wait_until(lambda: self.state("samseg_views")[view]["index"] != before and
                                    self.state("samseg_views")[view]["index"], "the slider", 10) or before
            self._slider_sign[view] = after > before
        return self._slider_sign[view]

    def gesture(self, view: str, points_ras, drag: bool) -> int:
        """A click (``drag`` False: the first point) or a drag through the points; returns the page's change count
        before it, to wait for the answer with :meth:`wait_for_change`."""
        changes = self.state("samseg_changes")
        spots = [self.to_page(view, p) for p in points_ras]
        for _, _, slices_off in spots:
            assert abs(slices_off) < 0.5, f"the point is {slices_off:.2f} slices off the {view} view"
        rect = self._image_rect(view)
        assert rect["left"] <= spots[0][0] <= rect["right"] and rect["top"] <= spots[0][1] <= rect["bottom"], \
            f"the press at {spots[0][:2]} would miss the {view} view's image {rect}"
        mouse = self.page.mouse
        mouse.move(spots[0][0], spots[0][1])
        self.page.wait_for_timeout(HAND_PAUSE_MS)
        mouse.down()
        self.page.wait_for_timeout(HAND_PAUSE_MS)
        for x, y, _ in spots[1:] if drag else []:
            mouse.move(x, y)
            self.page.wait_for_timeout(HAND_PAUSE_MS)
        mouse.up()
        return changes

    def wait_for_change(self, since: int, timeout_s: float = 120.0) -> None:
        self.wait_until(lambda: self.state("samseg_changes") > since, "the page to show the result", timeout_s)

    def act(self, button_id: str, timeout_s: float = 300.0) -> None:
        """Press a button that changes the candidate or the segment, and wait until the page shows it."""
        changes = self.state("samseg_changes")
        self.press(button_id)
        self.wait_for_change(changes, timeout_s)

    def save_as(self, name: str) -> str:
        field = self.page.locator("#samseg-save-name input") if self.page.locator("#samseg-save-name input").count() \
            else self.page.locator("#samseg-save-name")
        field.fill(name)
        self.wait_until(lambda: self.state("samseg_save_name") == name, "the file name")
        self.press("save")
        return self.wait_until(lambda: self.state("samseg_status") if "Saved" in self.state("samseg_status")
                               and name in self.state("samseg_status") else None, f"{name} to be saved")
