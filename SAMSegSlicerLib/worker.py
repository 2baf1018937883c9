"""One persistent thread that owns the model, and cancel tokens for long operations.

All torch work (encoding, decoding, propagation, learning) runs on the worker thread: cuDNN
and oneDNN plans are per thread, and a GUI stays responsive while the worker is busy.
Interactive requests jump ahead of queued background work (prefetching).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .errors import Cancelled

INTERACTIVE = 0
BACKGROUND = 1


class CancelToken:
    """Set by the caller, polled by long operations between steps."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


class TorchWorker:
    """A single daemon thread running submitted calls, interactive ones first."""

    def __init__(self, name: str = "samseg-torch"):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as error:  # handed to the caller through the future
                future.set_exception(error)

    @property
    def on_worker_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[], Any], priority: int = INTERACTIVE) -> Future:
        future: Future = Future()
        self._queue.put((priority, next(self._order), (fn, future)))
        return future

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker and wait; inline when already on the worker thread."""
        if self.on_worker_thread:
            return fn()
        return self.submit(fn).result()

    def shutdown(self) -> None:
        self._queue.put((BACKGROUND + 1, next(self._order), None))
        if not self.on_worker_thread:
            self._thread.join(timeout=5)
