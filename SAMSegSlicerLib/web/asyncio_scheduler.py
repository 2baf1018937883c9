"""The controller's :class:`~SAMSegSlicerLib.controller.host.Scheduler` on the web server's asyncio loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trame_server.utils import asynchronous

POLL_INTERVAL_S = 0.025


class AsyncioScheduler:
    """Calls ``poll`` every 25 ms on the server's event loop (the thread that owns MRML) while jobs run, then
    ``after_poll`` so that the host can push the state it changed to the browser."""

    def __init__(self, after_poll: Callable[[], None]):
        self._after_poll = after_poll
        self._task: asyncio.Task | None = None
        self._running = False

    def start(self, poll: Callable[[], None]) -> None:
        self._running = True
        if self._task is None or self._task.done():
            self._task = asynchronous.create_task(self._loop(poll))

    def stop(self) -> None:
        self._running = False

    async def _loop(self, poll: Callable[[], None]) -> None:
        while self._running:
            await asyncio.sleep(POLL_INTERVAL_S)
            poll()
            self._after_poll()
