"""Fault suite, interruption: Ctrl-C (SIGINT) and SIGTERM while the torch thread is busy end the run
within a few seconds with exit 130/143 and one line, and leave nothing half-written.

Each case runs ``samseg`` in its own process (signals), waits until the long job has started, then
sends the signal."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from SAMSegSlicerLib.cache import MAGIC, TEMP_PREFIX

SAMSEG = [sys.executable, "-c", "import sys; from SAMSegSlicerLib.cli import main; sys.exit(main())"]
STARTUP_LIMIT_S = 240.0
STOP_LIMIT_S = 8.0  # one encoder step on a busy 2-core CPU, then the exit


def _interrupt_when(argv: list[str], marker: str, signum: int) -> tuple[int, str, float]:
    """Start samseg, send ``signum`` once a stderr line holds ``marker``; exit code, stderr, seconds to exit."""
    process = subprocess.Popen([*SAMSEG, *map(str, argv)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr] and None, daemon=True).start()
    seen = []
    deadline = time.monotonic() + STARTUP_LIMIT_S
    try:
        while not seen or marker not in seen[-1]:
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no {marker!r} line within {STARTUP_LIMIT_S} s:\n" + "".join(seen))
            assert process.poll() is None or not lines.empty(), "samseg ended early:\n" + "".join(seen)
        sent = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=STOP_LIMIT_S + 30)
        seconds = time.monotonic() - sent
        time.sleep(0.2)  # the reader thread drains the pipe
        while not lines.empty():
            seen.append(lines.get())
        return code, "".join(seen), seconds
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_embed_stops_promptly_and_leaves_only_whole_entries(tmp_path, data_dir, signum, code):
    cache = tmp_path / "cache"
    returned, err, seconds = _interrupt_when(
        ["embed", data_dir / "ct_abdomen_3mm" / "image.nii.gz", "--axes", "all", "--cache-dir", cache],
        "axial: 0/", signum)
    assert returned == code, err
    assert seconds < STOP_LIMIT_S, err
    assert "Traceback" not in err and "Abort" not in err
    assert err.strip().splitlines()[-1] == "samseg: interrupted; no output was written"
    assert all(p.read_bytes().startswith(MAGIC) for p in cache.glob("*.emb"))
    assert not list(cache.glob(TEMP_PREFIX + "*"))


def test_assist_learn_stops_promptly_and_writes_no_adapter(tmp_path, data_dir):
    out = tmp_path / "adapter.safetensors"
    case = data_dir / "ct_abdomen_small"
    returned, err, seconds = _interrupt_when(
        ["assist", "learn", case / "image.nii.gz", case / "labels.nii.gz", "--labels", "1", "--slices", "2",
         "--steps", "100000", "--out", out, "--no-cache"], "step 1/", signal.SIGTERM)
    assert returned == 143, err
    assert seconds < STOP_LIMIT_S, err
    assert "Traceback" not in err and "Abort" not in err
    assert err.strip().splitlines()[-1] == "samseg: interrupted; no output was written"
    assert sorted(Path(p).name for p in tmp_path.iterdir()) == []


def test_propagate_stops_promptly_and_writes_no_label_map(tmp_path, data_dir):
    out = tmp_path / "labels.nii.gz"
    case = data_dir / "ct_abdomen_3mm"
    returned, err, seconds = _interrupt_when(
        ["propagate", case / "image.nii.gz", "--seed", case / "labels.nii.gz", "--label-value", "5", "--out", out,
         "--no-cache"], "seed slice(s)", signal.SIGINT)
    assert returned == 130, err
    assert seconds < STOP_LIMIT_S, err
    assert "Traceback" not in err and "Abort" not in err
    assert err.strip().splitlines()[-1] == "samseg: interrupted; no output was written"
    assert sorted(Path(p).name for p in tmp_path.iterdir()) == []
