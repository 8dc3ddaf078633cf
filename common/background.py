"""Work a tool call starts but need not wait for: events, cache fills, access statistics.

A client waits for every millisecond of a tool call, so what only others need (a change event,
a cache entry, an access count) runs after the answer. The tasks are held here, so none is
garbage-collected mid-flight, failures are logged instead of lost, and the lifespan drains them
before the connections they use close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from common.logging import get_logger

log = get_logger(__name__)

AFTER_ANSWER_S = 0.002


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed = 0

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._after_answer(coro), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _after_answer(self, coro: Coroutine[Any, Any, Any]) -> Any:
        # The SDK writes the tool's answer a few event-loop turns after the tool returns; a short
        # pause keeps this work from going ahead of that write.
        await asyncio.sleep(AFTER_ANSWER_S)
        return await coro

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed += 1
            exc = task.exception()
            log.warning("background_task_failed", task=task.get_name(), error=str(exc) or type(exc).__name__)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for the tasks started so far (at most ``timeout_s``), then cancel what is left."""
        if not self._tasks:
            return
        _done, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
