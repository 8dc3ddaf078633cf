"""One asyncpg pool per server: its own role, its own schema, and a fast, honest failure mode.

Every query goes through :meth:`Database.run`, which checks the circuit breaker, retries a lost
connection with exponential backoff and jitter, and turns a database that stays down into
:class:`~common.errors.DatabaseUnavailable` instead of a hang or a stack trace.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from pgvector.asyncpg import register_vector

from common.errors import DatabaseUnavailable, QueryTimeout, SuiteError
from common.logging import get_logger, redact

log = get_logger(__name__)

T = TypeVar("T")

#: Errors that mean "the connection or the server went away", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

BreakerState = Literal["closed", "open", "half_open"]


def is_connection_error(exc: BaseException) -> bool:
    """True for a lost or refused connection (worth a retry), false for an error in the query itself."""
    if isinstance(exc, asyncpg.exceptions.InterfaceError) and "another operation is in progress" in str(exc):
        return False
    return isinstance(exc, CONNECTION_ERRORS)


class CircuitBreaker:
    """Opens after ``threshold`` consecutive connection failures; lets one call probe after ``cooldown``."""

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.state: BreakerState = "closed"

    def before_call(self) -> None:
        """Raise at once while open; after the cool-down, let calls through as probes."""
        if self.state == "open":
            assert self.opened_at is not None
            remaining = self.cooldown_s - (time.monotonic() - self.opened_at)
            if remaining > 0:
                raise DatabaseUnavailable(
                    "PostgreSQL is unreachable, so the call was not run. "
                    f"Retry in about {max(remaining, 0.1):.1f}s; if it persists, run `mcp-suite doctor`."
                )
            self.state = "half_open"

    def on_success(self) -> None:
        if self.state != "closed":
            log.info("db_circuit_closed")
        self.failures = 0
        self.opened_at = None
        self.state = "closed"

    def on_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            if self.state != "open":
                log.warning("db_circuit_open", failures=self.failures, cooldown_s=self.cooldown_s)
            self.state = "open"
            self.opened_at = time.monotonic()


@dataclass(frozen=True)
class PoolMetrics:
    """A snapshot of the pool, for health checks, ``doctor`` and benchmarks."""

    size: int
    in_use: int
    idle: int
    min_size: int
    max_size: int
    acquires: int
    waits: int
    connection_failures: int
    breaker: BreakerState

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Defaults for every pooled connection. Iterative HNSW scans keep returning neighbours until a
#: filtered vector search has enough rows (pgvector >= 0.8). Custom plans always: the suite's search
#: statements depend on their parameters (a LIMIT, a filter's value), where PostgreSQL's generic plan
#: is much slower than planning afresh, which costs well under a millisecond.
SESSION_SETTINGS = {"hnsw.iterative_scan": "relaxed_order", "plan_cache_mode": "force_custom_plan"}


@dataclass(frozen=True)
class DbConfig:
    """How to connect: the URL (with the role's credentials) and the pool's limits."""

    url: str
    schema: str
    pool_min: int = 1
    pool_max: int = 5
    connect_timeout_s: float = 5.0
    statement_timeout_ms: int = 30_000
    idle_in_transaction_timeout_ms: int = 60_000
    retry_attempts: int = 3
    breaker_threshold: int = 3
    breaker_cooldown_s: float = 2.0
    application_name: str | None = None
    #: Session settings every pooled connection starts with (on top of search_path and the timeouts).
    session_settings: dict[str, str] = field(default_factory=lambda: dict(SESSION_SETTINGS))
    #: Awaited when a connection fails; true if it brought PostgreSQL back, so the call is retried at
    #: once (the embedded one: ``common.embedded_pg.connection_lost_handler``).
    on_connection_lost: Callable[[], Awaitable[bool]] | None = field(default=None, compare=False, repr=False)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    The default reset (unlock advisory locks, close cursors, UNLISTEN, RESET ALL) is one more round
    trip on every tool call. Pooled connections here only ever use transaction-scoped state
    (SET LOCAL, set_config(..., true), pg_advisory_xact_lock); LISTEN and session locks live on
    connections of their own. asyncpg still rolls back a transaction left open before this runs.
    """


def role_url(admin_url: str, role: str, password: str | None) -> str:
    """The admin URL with its user (and password) replaced by a server's role."""
    parts = urlsplit(admin_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    cred = quote(role, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


class Database:
    """A server's pool. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(self, config: DbConfig) -> None:
        self.config = config
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_cooldown_s)
        self._pool: asyncpg.Pool | None = None
        self._acquires = 0
        self._waits = 0
        self._conn_failures = 0
        self._recovery: asyncio.Future[bool] | None = None

    @classmethod
    async def open(cls, config: DbConfig) -> Database:
        """Create the pool, retrying a refused connection a few times (a database that is starting)."""
        db = cls(config)
        delay = 0.1
        for attempt in range(1, config.retry_attempts + 3):
            try:
                db._pool = await asyncpg.create_pool(
                    config.url,
                    min_size=config.pool_min,
                    max_size=config.pool_max,
                    timeout=config.connect_timeout_s,
                    # The server's statement_timeout cancels a slow query; this client-side bound only
                    # catches a server that stops answering altogether (0 = no limit, as in PostgreSQL).
                    command_timeout=(config.statement_timeout_ms / 1000 + 5) if config.statement_timeout_ms else None,
                    server_settings=db._server_settings(),
                    init=db._init_connection,
                    reset=_keep_session,
                )
                return db
            except Exception as exc:
                if not is_connection_error(exc) or attempt >= config.retry_attempts + 2:
                    raise DatabaseUnavailable(
                        f"Cannot connect to PostgreSQL for schema {config.schema!r}: "
                        f"{redact(str(exc)) or type(exc).__name__}. Check DATABASE_URL or run `mcp-suite doctor`."
                    ) from exc
                await asyncio.sleep(delay + random.uniform(0, delay))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _server_settings(self) -> dict[str, str]:
        c = self.config
        return {
            **c.session_settings,
            "search_path": f"{c.schema}, extensions",
            "application_name": c.application_name or f"mcp-{c.schema}",
            "statement_timeout": str(c.statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(c.idle_in_transaction_timeout_ms),
        }

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        await register_vector(conn, schema="extensions")

    async def open_background(self, name: str) -> Database:
        """A one-connection pool for work no caller waits for, so it never takes a caller's connection.

        Close it with :meth:`close`.
        """
        config = replace(
            self.config,
            pool_min=1,
            pool_max=1,
            application_name=f"{self.config.application_name or 'mcp-' + self.config.schema}-{name}",
        )
        return await Database.open(config)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseUnavailable("The database pool is closed; the server is shutting down.")
        return self._pool

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        """A pooled connection; counts a wait when every connection is busy."""
        pool = self.pool
        self._acquires += 1
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            self._waits += 1
        async with pool.acquire(timeout=self.config.connect_timeout_s) as conn:
            yield conn

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn`` on a pooled connection, retrying a lost connection with backoff and jitter.

        ``fn`` may run more than once, so it must be one statement or its own transaction.
        """
        attempts = self.config.retry_attempts if retry else 1
        delay = 0.05
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            if self._recovery is not None and not self._recovery.done() and await self._recover():
                self.breaker.on_success()  # PostgreSQL was being brought back: wait for it rather than fail fast
            self.breaker.before_call()
            try:
                async with self.acquire() as conn:
                    result = await fn(conn)
            except Exception as exc:
                if isinstance(exc, TimeoutError | asyncio.TimeoutError):
                    # No answer in time: rerunning a statement that may still be running would only pile up.
                    self.breaker.on_failure()
                    raise QueryTimeout(
                        "PostgreSQL did not answer in time, so the call was abandoned. Retry, or ask for less "
                        "(a smaller limit or batch)."
                    ) from exc
                if not is_connection_error(exc):
                    self.breaker.on_success()  # the server answered: it is up
                    raise
                last = exc
                self._conn_failures += 1
                self.breaker.on_failure()
                log.warning("db_connection_error", attempt=attempt, error=redact(str(exc)) or type(exc).__name__)
                if await self._recover():
                    self.breaker.on_success()
                if attempt < attempts and self.breaker.state != "open":
                    await asyncio.sleep(delay + random.uniform(0, delay))
                    delay = min(delay * 2, 1.0)
                    continue
                break
            else:
                self.breaker.on_success()
                return result
        raise DatabaseUnavailable(
            "PostgreSQL is unreachable, so the call was not completed. Retry shortly; "
            "if it persists, run `mcp-suite doctor`."
        ) from last

    async def _recover(self) -> bool:
        """Await ``on_connection_lost`` (one run shared by every failing call); a SuiteError from it reaches the caller."""
        hook = self.config.on_connection_lost
        if hook is None:
            return False
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.ensure_future(hook())
            self._recovery.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.shield(self._recovery)
        except SuiteError:
            raise
        except Exception as exc:
            log.warning("db_recovery_failed", error=redact(str(exc)) or type(exc).__name__)
            return False

    async def run_in_transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` inside one transaction, retried whole on a lost connection; rolled back on any error."""

        async def tx(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self.run(tx)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction that commits on exit and rolls back on error (no retry)."""
        self.breaker.before_call()
        try:
            async with self.acquire() as conn, conn.transaction():
                yield conn
        except Exception as exc:
            if is_connection_error(exc):
                self._conn_failures += 1
                self.breaker.on_failure()
                raise DatabaseUnavailable(
                    "PostgreSQL connection was lost; the transaction was rolled back. Retry the call."
                ) from exc
            raise
        else:
            self.breaker.on_success()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.run(lambda c: c.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(lambda c: c.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchval(sql, *args))

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.run(lambda c: c.execute(sql, *args))

    async def executemany(self, sql: str, args: list[tuple[Any, ...]]) -> None:
        await self.run_in_transaction(lambda c: c.executemany(sql, args))

    async def health(self) -> dict[str, Any]:
        """One round trip; never raises. Reports latency, the role, the schema and the pool."""
        started = time.perf_counter()
        try:
            row = await self.run(
                lambda c: c.fetchrow("SELECT current_user AS role, current_schema() AS schema"), retry=False
            )
            ok = True
            error = None
        except Exception as exc:
            row, ok, error = None, False, redact(str(exc)) or type(exc).__name__
        return {
            "ok": ok,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "role": row["role"] if row else None,
            "schema": row["schema"] if row else None,
            "error": error,
            "pool": self.metrics().as_dict() if self._pool else None,
        }

    def metrics(self) -> PoolMetrics:
        pool = self.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        return PoolMetrics(
            size=size,
            in_use=size - idle,
            idle=idle,
            min_size=pool.get_min_size(),
            max_size=pool.get_max_size(),
            acquires=self._acquires,
            waits=self._waits,
            connection_failures=self._conn_failures,
            breaker=self.breaker.state,
        )

    async def close(self, timeout_s: float = 5.0) -> None:
        """Wait for calls in flight (up to ``timeout_s``), then close every connection."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout_s)
        except TimeoutError:
            pool.terminate()
