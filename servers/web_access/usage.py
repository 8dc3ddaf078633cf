"""The usage ledger: every outgoing request and cache answer as one row, and per-provider daily quotas.

A quota counts the requests that reached a provider today (UTC): network answers, revalidations
and errors, not cache answers. From ``warn`` on, calls still run and their answer carries a
warning; at ``hard`` the call is refused before anything is sent, with the figures.

Cache answers count toward no quota, so their rows are written after the answer (``record_later``):
collected for a moment and written together, before this process's usage report and when the
service closes. A killed process loses those of its last moment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.background import Background
from common.db import Database
from common.errors import Conflict
from common.logging import get_logger
from servers.web_access import store
from servers.web_access.settings import Quota

log = get_logger(__name__)

PROVIDERS = ("fetch", "crawl", "robots", "render", "screenshot", "searxng", "brave")


class QuotaExceeded(Conflict):
    """A provider's hard daily quota is used up; the message gives the figures."""


class Ledger:
    """Records requests in ``web_access.requests`` and enforces ``quotas``."""

    def __init__(self, db: Database, quotas: dict[str, Quota], background: Background) -> None:
        self.db = db
        self.quotas = quotas
        self._later = background.batcher("web_access-ledger", self._write)

    async def record(
        self,
        provider: str,
        host: str,
        outcome: str,
        *,
        status: int | None = None,
        size: int = 0,
        latency_ms: float = 0.0,
        error: str | None = None,
    ) -> None:
        """One ledger row; a failure to write it is logged, never raised over the caller's answer."""
        try:
            await store.insert_request(
                self.db, provider, host[:255], outcome, status, size, int(latency_ms), error[:300] if error else None
            )
        except Exception as exc:  # the ledger must not turn a good answer into an error
            log.warning("web_access.ledger_write_failed", provider=provider, error=str(exc)[:200])

    def record_later(self, provider: str, host: str, outcome: str, *, status: int | None = None, size: int = 0) -> None:
        """One ledger row written after the answer (see the module docstring)."""
        self._later.add([(provider, host[:255], outcome, status, size, 0, None, datetime.now(UTC))])

    async def flush(self) -> None:
        """Write the rows recorded for later now, after any write under way, so a read after it sees them."""
        try:
            await self._later.drain()
        except Exception as exc:  # as record(): the ledger never fails a call
            log.warning("web_access.ledger_write_failed", error=str(exc)[:200])

    async def _write(self, rows: list[tuple[Any, ...]]) -> None:
        await store.insert_requests(self.db, rows)

    async def check(self, provider: str, host: str = "") -> str | None:
        """A warning once ``provider`` is past its warning threshold; QuotaExceeded at the hard limit."""
        quota = self.quotas.get(provider)
        if quota is None or (quota.warn is None and quota.hard is None):
            return None
        used = await store.count_today(self.db, provider)
        if quota.hard is not None and used >= quota.hard:
            await self.record(provider, host or "-", "refused", error="hard quota reached")
            raise QuotaExceeded(
                f"The {provider} quota is used up: {used} requests today (UTC) of a hard limit of {quota.hard}. "
                "It resets at midnight UTC; raise WEB_ACCESS_QUOTAS to allow more."
            )
        if quota.warn is not None and used >= quota.warn:
            limit = f" of a hard limit of {quota.hard}" if quota.hard is not None else ""
            return f"{provider} quota warning: {used} requests today (UTC){limit}; warning from {quota.warn}."
        return None

    async def used_today(self, provider: str) -> int:
        return await store.count_today(self.db, provider)
