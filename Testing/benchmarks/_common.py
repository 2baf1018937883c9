"""Small helpers shared by the benchmarks: where the data is, timing, peak memory, child processes, tables.

Benchmarks print figures and ratios against a reference measured in the same run; they never
pass or fail on absolute times (the machines they run on are shared and noisy).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSWER_PREFIX = "BENCH-ANSWER "


def fail(message: str) -> None:
    """Stop with one clear line on stderr and exit code 2 (bad input, as the ``samseg`` CLI does)."""
    print(f"benchmark: error: {message}", file=sys.stderr)
    sys.exit(2)


def data_dir() -> Path:
    """``$SAMSEG_DATA``, or ``../shared/data`` beside the repository; exits with one clear line if absent."""
    folder = Path(os.environ.get("SAMSEG_DATA") or REPO.parent / "shared" / "data").resolve()
    if not (folder / "PROVENANCE.md").is_file():
        fail(f"test data not found at {folder} (set SAMSEG_DATA to the data folder)")
    return folder


def timed(fn: Callable[..., object], *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call ``fn(*args, **kwargs)``."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss`` is in KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class Child:
    """A measuring object living in its own Python process (so its peak memory is its own), called
    from the parent one method at a time.  Calls to two children can then alternate, so that a
    change in the machine's load hits both sides alike.

    The child runs ``script`` with ``args``; that script must hand an object to :func:`serve`.
    Requests and answers are JSON lines; the child's stderr (progress lines) passes through.
    """

    def __init__(self, script: Path, args: Sequence[str], env: Mapping[str, str] | None = None):
        self.name = f"{script.name} {' '.join(args)}"
        self._process = subprocess.Popen([sys.executable, str(script), *args], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=None if env is None else dict(env))

    def call(self, method: str, *args):
        self._process.stdin.write(json.dumps([method, list(args)]) + "\n")
        self._process.stdin.flush()
        for line in self._process.stdout:
            if line.startswith(ANSWER_PREFIX):
                return json.loads(line[len(ANSWER_PREFIX):])
        sys.exit(f"benchmark: error: {self.name} stopped (exit code {self._process.wait()})")

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait()


def serve(target: object) -> None:
    """Child side of :class:`Child`: answer ``[method, args]`` lines on stdin until stdin closes."""
    for line in sys.stdin:
        method, args = json.loads(line)
        print(ANSWER_PREFIX + json.dumps(getattr(target, method)(*args)), flush=True)


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo) and how many logical CPUs there are."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with the first column left-aligned and the others right-aligned."""
    widths = [max(len(str(row[n])) for row in [header, *rows]) for n in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if n == 0 else str(c).rjust(w)
                         for n, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])
