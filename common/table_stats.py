"""Fresh planner statistics after bulk writes, without making a writer wait for them.

autovacuum analyses a table only after a minute's nap and a 10% change, so a store filled by a
bulk import is queried for a while with no statistics: PostgreSQL then guesses that a filter keeps
one row, skips the vector and text indexes, and a 5 ms search takes 30. A server counts its own
writes here; past ``every`` rows it runs ``ANALYZE`` in the background (one at a time per process)
and then tells its listeners (a :class:`common.keywords.KeywordPlanner` re-reads word frequencies).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from common.logging import get_logger

log = get_logger(__name__)

DEFAULT_EVERY = 1_000


class StatsRefresher:
    def __init__(self, db: Any, tables: Sequence[str], *, every: int = DEFAULT_EVERY) -> None:
        self.db = db
        self.sql = "ANALYZE " + ", ".join(tables)
        self.every = every
        self.pending = 0
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []

    def on_refresh(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def wrote(self, rows: int) -> None:
        """Count ``rows`` written; schedules an ANALYZE once enough have accumulated."""
        self.pending += max(rows, 0)
        if self.pending >= self.every and (self._task is None or self._task.done()):
            self.pending = 0
            self._task = asyncio.create_task(self._analyze(), name="analyze")

    async def _analyze(self) -> None:
        try:
            await self.db.execute(self.sql)
        except Exception as exc:  # statistics are an optimisation; autovacuum catches up anyway
            log.warning("analyze_failed", error=str(exc) or type(exc).__name__)
            return
        self.runs += 1
        for listener in self._listeners:
            listener()

    async def wait(self) -> None:
        """Let a running ANALYZE finish (tests, and shutdown)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
