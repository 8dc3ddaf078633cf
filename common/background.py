"""Work a tool call starts but need not wait for: events, cache fills, access statistics.

A client waits for every millisecond of a tool call, so what only others need (a change event,
a cache entry, an access count) runs after the answer. The tasks are held here, so none is
garbage-collected mid-flight, failures are logged instead of lost, and the lifespan drains them
before the connections they use close.

Work that every call leaves behind goes through a :class:`Batcher`: run per call, it lands in the
middle of the next call (a client sends the next request at once) and on a small machine takes the
CPU from it; collected for a quarter of a second, N calls cost one round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar

from common.logging import get_logger

log = get_logger(__name__)

AFTER_ANSWER_S = 0.002
#: How long a Batcher collects before it hands its items over.
BATCH_DELAY_S = 0.25

T = TypeVar("T")


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._batchers: dict[str, Batcher[Any]] = {}
        self.failed = 0

    def batcher(
        self,
        name: str,
        flush: Callable[[list[T]], Awaitable[Any]],
        *,
        delay_s: float = BATCH_DELAY_S,
        keep_failed: bool = False,
        max_pending: int | None = None,
    ) -> Batcher[T]:
        """The batcher called ``name`` (made with these arguments on first use; see :class:`Batcher`)."""
        made = self._batchers.get(name)
        if made is None:
            made = self._batchers[name] = Batcher(
                self, name, flush, delay_s=delay_s, keep_failed=keep_failed, max_pending=max_pending
            )
        return made

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


class Batcher(Generic[T]):
    """Collects items from many calls and hands them to ``flush`` together, ``delay_s`` after the first.

    Items added while a flush runs go to the next one; ``flush`` gets at most ``max_items`` at a
    time, oldest first, one flush at a time. The collecting task is an ordinary background task, so
    draining the Background at shutdown flushes what is pending; :meth:`drain` flushes now, for a
    reader that must see every item added before it.

    A failed batch is logged and dropped, or with ``keep_failed`` put back in front of the queue for
    the next flush; ``max_pending`` bounds the queue (the oldest items go first, with a warning).
    """

    def __init__(
        self,
        background: Background,
        name: str,
        flush: Callable[[list[T]], Awaitable[Any]],
        *,
        delay_s: float = BATCH_DELAY_S,
        max_items: int = 1_000,
        keep_failed: bool = False,
        max_pending: int | None = None,
    ) -> None:
        self.background = background
        self.name = name
        self.flush = flush
        self.delay_s = delay_s
        self.max_items = max_items
        self.keep_failed = keep_failed
        self.max_pending = max_pending
        self._items: list[T] = []
        self._flushing = 0
        self._scheduled = False
        self._lock = asyncio.Lock()
        self.flushes = 0
        self.dropped = 0

    def add(self, items: Iterable[T]) -> None:
        self._items.extend(items)
        self._bound()
        if self._items and not self._scheduled:
            self._scheduled = True
            self.background.spawn(self._collect(), name=self.name)

    @property
    def pending(self) -> int:
        return len(self._items)

    @property
    def backlog(self) -> int:
        """Items not flushed yet: waiting, or in the flush that is running."""
        return len(self._items) + self._flushing

    async def drain(self) -> None:
        """Flush every item added so far, now (after a flush already running); a failed flush raises."""
        await self._flush_pending()

    def _bound(self) -> None:
        if self.max_pending is not None and len(self._items) > self.max_pending:
            over = len(self._items) - self.max_pending
            del self._items[:over]
            self.dropped += over
            log.warning("batch_items_dropped", batcher=self.name, items=over)

    async def _collect(self) -> None:
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self._scheduled = False
        try:
            await self._flush_pending()
        finally:
            if self._items and not self._scheduled:  # a flush failed or was cancelled: the next add retries
                log.warning("batch_not_flushed", batcher=self.name, items=len(self._items))

    async def _flush_pending(self) -> None:
        async with self._lock:
            while self._items:
                batch, self._items = self._items[: self.max_items], self._items[self.max_items :]
                self.flushes += 1
                self._flushing = len(batch)
                try:
                    await self.flush(batch)
                except BaseException:
                    if self.keep_failed:
                        self._items[:0] = batch
                        self._bound()
                    raise
                finally:
                    self._flushing = 0
