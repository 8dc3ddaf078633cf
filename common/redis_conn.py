"""One Redis client per process, and the single place that decides whether Redis is up.

Redis down is not an outage for the suite: callers (cache, event bus) ask :class:`RedisConnection`
whether Redis is available and use their fallback while it is not. Because every caller shares this
one flag, an outage produces one warning, not one per call, and one background probe (not one per
caller) notices when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.logging import get_logger, redact

log = get_logger(__name__)

T = TypeVar("T")

#: Errors that mean "Redis went away" (as opposed to a bad command).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


class RedisUnavailable(Exception):
    """Redis is down (or was just found down); the caller should use its fallback. Never reaches a client."""


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means Redis cannot be reached (so the fallback applies), false for a bad command."""
    return isinstance(exc, CONNECTION_ERRORS)


class RedisConnection:
    """A ``redis.asyncio.Redis`` plus an availability flag kept honest by failures and a recovery probe."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        socket_timeout_s: float = 0.5,
        connect_timeout_s: float = 0.25,
        probe_interval_s: float = 0.5,
        retries: int = 1,
    ) -> None:
        self.name = name
        self.url_redacted = redact(url)
        self.probe_interval_s = probe_interval_s
        self.socket_timeout_s = socket_timeout_s
        # Few, short retries: a blip is absorbed, a dead server is declared dead in well under a second.
        retry = Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), retries)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=retry,
            client_name=f"mcp-{name}",
        )
        self._available = False
        #: When Redis last came back after an outage (monotonic seconds); None if it never went down.
        self.recovered_at: float | None = None
        self._up = asyncio.Event()
        self._probe_task: asyncio.Task[None] | None = None
        self._closed = False
        #: How many times Redis was found down (each logged one ``redis_unavailable`` warning).
        self.outages = 0
        #: How many times Redis came back (each logged one ``redis_recovered``).
        self.recoveries = 0
        self.last_error: str | None = None

    @classmethod
    async def connect(
        cls,
        url: str | SecretStr,
        *,
        name: str,
        socket_timeout_s: float = 0.5,
        connect_timeout_s: float = 0.25,
        probe_interval_s: float = 0.5,
        retries: int = 1,
    ) -> RedisConnection:
        """Connect to Redis at ``url``; when it is down, start unavailable and keep probing instead of failing.

        A server must start (and serve from its fallbacks) even if Redis is not up yet.
        """
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        self = cls(
            raw,
            name=name,
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=connect_timeout_s,
            probe_interval_s=probe_interval_s,
            retries=retries,
        )
        try:
            await self._ping()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self.outages += 1
            self.last_error = redact(str(exc))
            log.warning("redis_unavailable", redis=self.name, url=self.url_redacted, error=self.last_error)
            self._start_probe()
        else:
            self._set_up()
        return self

    @property
    def available(self) -> bool:
        """Whether callers should use Redis now (false means: use your fallback)."""
        return self._available

    async def run(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``fn(client)``; raise :class:`RedisUnavailable` (and mark Redis down) if Redis is unreachable.

        Fails at once while Redis is known to be down, so a fallback costs no timeout per call.
        """
        if not self._available:
            raise RedisUnavailable(self.last_error or "redis is unavailable")
        try:
            return await fn(self.client)
        except Exception as exc:
            if is_connection_error(exc):
                self.report_failure(exc)
                raise RedisUnavailable(redact(str(exc))) from exc
            raise

    def report_failure(self, exc: BaseException) -> None:
        """Record that Redis was found unreachable; logs only on the first failure of an outage."""
        self.last_error = redact(str(exc)) or type(exc).__name__
        if not self._available or self._closed:
            return
        self._available = False
        self._up.clear()
        self.outages += 1
        log.warning(
            "redis_unavailable",
            redis=self.name,
            url=self.url_redacted,
            error=self.last_error,
            hint="serving from in-process cache and PostgreSQL events until Redis is back",
        )
        self._start_probe()

    async def wait_available(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for Redis to be available; returns whether it is."""
        if self._available:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout_s)
        return self._available

    async def health(self) -> dict[str, Any]:
        """``{ok, latency_ms, error, available, outages}`` from a live PING (bounded by the socket timeout)."""
        start = time.perf_counter()
        try:
            await self._ping()
        except Exception as exc:
            return {
                "ok": False,
                "latency_ms": None,
                "error": redact(str(exc)) or type(exc).__name__,
                "available": self._available,
                "outages": self.outages,
            }
        return {
            "ok": True,
            "latency_ms": round((time.perf_counter() - start) * 1000, 2),
            "error": None,
            "available": self._available,
            "outages": self.outages,
        }

    async def close(self) -> None:
        """Stop the probe and close every connection; the object is unusable afterwards."""
        self._closed = True
        self._available = False
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()

    async def _ping(self) -> None:
        await asyncio.wait_for(self.client.ping(), self.socket_timeout_s * 2)

    def _set_up(self) -> None:
        self._available = True
        self.last_error = None
        self._up.set()

    def _start_probe(self) -> None:
        if self._closed or (self._probe_task is not None and not self._probe_task.done()):
            return
        self._probe_task = asyncio.create_task(self._probe(), name=f"redis-probe-{self.name}")

    async def _probe(self) -> None:
        """Ping every ``probe_interval_s`` until Redis answers, then flip back to available."""
        while not self._closed:
            await asyncio.sleep(self.probe_interval_s)
            try:
                # Connections idle in the pool died with the old server; drop them rather than fail on them.
                await self.client.connection_pool.disconnect(inuse_connections=False)
                await self._ping()
            except Exception as exc:
                self.last_error = redact(str(exc)) or type(exc).__name__
                continue
            self.recoveries += 1
            self.recovered_at = time.monotonic()
            self._set_up()
            log.info("redis_recovered", redis=self.name, url=self.url_redacted)
            return
