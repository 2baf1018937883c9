"""Futures of worker jobs whose callbacks must run on the host's main thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass


@dataclass
class _Job:
    future: Future
    on_done: Callable
    on_error: Callable
    on_finished: Callable | None = None


class JobQueue:
    """``poll`` (main thread) runs ``on_done(result)`` after success, ``on_error(error)`` after a failure of
    the job or of ``on_done``, and ``on_finished()`` once after either."""

    def __init__(self):
        self._jobs: list[_Job] = []

    def add(self, future: Future, on_done: Callable, on_error: Callable,
            on_finished: Callable | None = None) -> Future:
        self._jobs.append(_Job(future, on_done, on_error, on_finished))
        return future

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def poll(self) -> None:
        finished = [job for job in self._jobs if job.future.done()]
        self._jobs = [job for job in self._jobs if not job.future.done()]
        for job in finished:
            try:
                error = job.future.exception()
                if error is None:
                    job.on_done(job.future.result())
                else:
                    job.on_error(error)
            except Exception as error:  # a failing callback must not stop the other jobs' callbacks
                job.on_error(error)
            finally:
                if job.on_finished is not None:
                    job.on_finished()

    def wait(self, timeout_s: float = 600.0) -> None:
        """Block until every job (and every job their callbacks add) is finished; for tests and scripts."""
        deadline = time.monotonic() + timeout_s
        while self._jobs:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"SAMSeg jobs still running after {timeout_s:g} s")
            self._jobs[0].future.exception(timeout=remaining)
            self.poll()
