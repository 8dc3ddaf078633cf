"""Workers kit: periodic background loops (sweeps, embedders, heartbeats) written once.

A :class:`Periodic` runs ``fn`` every ``interval_s`` seconds, or sooner when :meth:`Periodic.wake`
is called, until it is stopped. A failing pass is logged and retried after a growing pause (up to
``max_backoff_s``), so a database outage never kills a loop and never turns it into a busy loop.
It is an async context manager: ``async with Periodic(...)`` starts it and stops it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from common.logging import get_logger

log = get_logger(__name__)


class Periodic:
    """One background loop; see the module docstring."""

    def __init__(
        self,
        name: str,
        fn: Callable[[], Awaitable[Any]],
        *,
        interval_s: float,
        run_first: bool = False,
        max_backoff_s: float = 60.0,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.name = name
        self._fn = fn
        self.interval_s = interval_s
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self._run_first = run_first
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Passes completed, failed, and failures in a row (for tests and health reports).
        self.runs = 0
        self.failures = 0
        self.failing = 0

    def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Run the next pass now instead of at the end of the interval."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop; a pass under way is cancelled."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def run_once(self) -> bool:
        """One pass now, with the loop's logging; true if it succeeded."""
        try:
            await self._fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a pass must never stop the loop: log it and back off
            self.failures += 1
            self.failing += 1
            log.warning(
                "worker_pass_failed", worker=self.name, failing=self.failing, error=str(exc)[:300] or type(exc).__name__
            )
            return False
        self.runs += 1
        self.failing = 0
        return True

    def _pause(self) -> float:
        if not self.failing:
            return self.interval_s
        return float(min(self.interval_s * 2 ** min(self.failing, 10), self.max_backoff_s))

    async def _loop(self) -> None:
        if self._run_first:
            await self.run_once()
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands just
            # after wake(), and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._pause()):
                    await self._wake.wait()
            self._wake.clear()
            await self.run_once()

    async def __aenter__(self) -> Periodic:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
