"""One persistent thread that owns the model, and cancel tokens for long operations.

All torch work (loading, encoding, decoding, propagation, learning) runs on one worker thread,
:func:`shared_worker`: cuDNN and oneDNN plans are per thread, and a GUI stays responsive while
the worker is busy.  Interactive requests jump ahead of queued background work (prefetching).

One thread, not one per engine: on the CPU every thread that runs a parallel torch operation
keeps its own OpenMP team, and once a process's teams hold more threads than there are cores,
GNU OpenMP (torch's) stops spinning between parallel regions and every small operation pays a
thread wake-up: on a 2-core machine a 3-box decode took twice as long, on either thread, once a
single matrix product had run on a second thread.  So models load on this thread too
(``factory.open_model``), and nothing else should run torch.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .errors import Cancelled

URGENT = -1
INTERACTIVE = 0
BACKGROUND = 1
EXIT_WAIT_S = 30.0  # at interpreter exit, how long a running job may take to finish


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


_shared: TorchWorker | None = None
_live_workers: weakref.WeakSet[TorchWorker] = weakref.WeakSet()
_shared_lock = threading.Lock()


def shared_worker() -> TorchWorker:
    """The process's torch thread (started on first use), shared by every engine and model load."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = TorchWorker()
        return _shared


class TorchWorker:
    """A single daemon thread running submitted calls, interactive ones first."""

    def __init__(self, name: str = "samseg-torch"):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        _live_workers.add(self)

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
    def alive(self) -> bool:
        return not self._stopping and self._thread.is_alive()

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

    def shutdown(self, drop_pending: bool = False, timeout_s: float = 5.0) -> bool:
        """Stop after the queued jobs (``drop_pending``: after the running one only); wait up to
        ``timeout_s`` for the thread.  True when it has stopped."""
        self._stopping = True
        self._queue.put((URGENT if drop_pending else BACKGROUND + 1, next(self._order), None))
        if not self.on_worker_thread:
            self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()


def stop_shared_worker(timeout_s: float) -> bool:
    """On an interrupt: the shared worker drops its queued jobs and ends after the running one (which
    ends early when its cancel token is set).  True when it stopped within ``timeout_s`` (or never ran)."""
    with _shared_lock:
        worker = _shared
    return worker is None or worker.shutdown(drop_pending=True, timeout_s=timeout_s)


@atexit.register
def _stop_workers_at_exit() -> None:
    """Why: at interpreter exit Python 3.11 ends a daemon thread that wants the GIL back with
    ``pthread_exit``; when that thread is inside a torch call (a background prefetch still encoding,
    say), the forced unwind meets C++ ``noexcept`` frames and the whole process aborts with
    "terminate called without an active exception" (exit 134) after everything else succeeded.
    ``atexit`` runs before that, so each worker drops its queued jobs and finishes the running one."""
    for worker in list(_live_workers):
        worker.shutdown(drop_pending=True, timeout_s=EXIT_WAIT_S)
