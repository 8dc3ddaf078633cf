"""Turns a server definition into a running stdio process.

One frozen :class:`Deps` per process (database pool in the server's own role and schema, Redis
cache and event bus with their fallbacks, a lazy embedder, the vector index), connected by a
:class:`DepsGate` once the client's handshake is over; tools reach it with ``await deps(ctx)``. :func:`add_tool` registers a tool with explicit annotations and wraps it so every call is
logged once and every failure reaches the client as a ``ToolError`` that says what to fix, never
as a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import sys
import time
import typing
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from common.background import Background
from common.errors import MigrationError, SuiteError
from common.logging import configure_logging, get_logger, redact
from common.settings import BaseServerSettings, SettingsError
from common.stdio import run_stdio

if TYPE_CHECKING:
    from common.cache import Cache
    from common.db import Database
    from common.embeddings import Embedder
    from common.events import EventBus
    from common.redis_conn import RedisConnection
    from common.vectors import VectorIndex

from common.subscriptions import EventBridgeBus
from common.tool_schema import compact_tool

log = get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

MAX_TOOL_NAME = 40


@dataclass(frozen=True)
class Deps:
    """Everything a tool needs, built once per process by the lifespan."""

    name: str
    settings: BaseServerSettings
    admin_url: str
    db: Database
    redis: RedisConnection
    cache: Cache
    events: EventBus
    embedder: Embedder
    vectors: VectorIndex
    #: MCP change notifications; ``await deps.subscriptions.resource_updated(uri)`` reaches every process's clients.
    subscriptions: EventBridgeBus
    #: Work that runs after a tool has answered (events, statistics); drained before shutdown.
    background: Background = field(default_factory=Background)


def resolve_admin_url(settings: BaseServerSettings) -> str:
    """``DATABASE_URL``, or the embedded PostgreSQL (started or joined) when it is unset."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from common.embedded_pg import ensure_embedded

    return ensure_embedded(settings.data_dir)


@asynccontextmanager
async def open_deps(
    name: str, settings: BaseServerSettings, subscriptions: EventBridgeBus | None = None
) -> AsyncIterator[Deps]:
    """Connect everything a server needs, and close it all again in reverse order."""
    from common.cache import Cache
    from common.db import Database, DbConfig, role_url
    from common.embeddings import make_embedder
    from common.events import EventBus
    from common.migrate import ensure_migrated
    from common.redis_conn import RedisConnection
    from common.vectors import make_vector_index

    started = time.perf_counter()
    admin_url = await asyncio.to_thread(resolve_admin_url, settings)
    password = settings.db_role_password.get_secret_value() if settings.db_role_password else None
    if settings.migrate_on_start:
        outcome = await ensure_migrated(admin_url, name, role_password=password)
        log.info("migrations_checked", schema=name, outcome=outcome)
    url = role_url(admin_url, name, password)
    async with AsyncExitStack() as stack:
        db = await Database.open(
            DbConfig(
                url=url,
                schema=name,
                pool_min=settings.db_pool_min,
                pool_max=settings.db_pool_max,
                connect_timeout_s=settings.db_connect_timeout_s,
                statement_timeout_ms=settings.db_statement_timeout_ms,
                idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
                retry_attempts=settings.db_retry_attempts,
                breaker_threshold=settings.db_breaker_threshold,
                breaker_cooldown_s=settings.db_breaker_cooldown_s,
            )
        )
        stack.push_async_callback(db.close)
        redis = await RedisConnection.connect(settings.redis_url.get_secret_value(), name=name)
        stack.push_async_callback(redis.close)
        cache = Cache(redis, prefix=settings.redis_prefix, server=name, default_ttl_s=settings.cache_ttl_s)
        events = await EventBus.start(redis, prefix=settings.redis_prefix, server=name, pg_url=url)
        stack.push_async_callback(events.close)
        bridge = subscriptions or EventBridgeBus()
        await bridge.attach(events)
        stack.push_async_callback(bridge.detach)
        background = Background()
        stack.push_async_callback(background.drain)
        embedder = make_embedder(settings, cache=cache, background=background)
        vectors = make_vector_index(settings, db, name)
        stack.push_async_callback(vectors.close)
        deps = Deps(
            name=name,
            settings=settings,
            admin_url=admin_url,
            db=db,
            redis=redis,
            cache=cache,
            events=events,
            embedder=embedder,
            vectors=vectors,
            subscriptions=bridge,
            background=background,
        )
        log.info("server_ready", schema=name, startup_ms=round((time.perf_counter() - started) * 1000, 1))
        yield deps
        log.info("server_stopping", schema=name)


#: A server's own start-up/shutdown work (background sweeps, extra subscriptions), run inside the lifespan.
OnStart = Callable[[Deps], AbstractAsyncContextManager[None]]

#: Modules :func:`open_deps` needs, imported in a worker thread by :meth:`DepsGate._connect`.
_CONNECT_MODULES = (
    "common.cache",
    "common.db",
    "common.embeddings",
    "common.events",
    "common.migrate",
    "common.redis_conn",
    "common.vectors",
)


#: Seconds after the lifespan opens at which the connection starts even if no client message came.
START_FALLBACK_S = 1.0


class ServerStartFailed(SuiteError):
    """The server's services could not be reached when it started; the next call tries again."""


def _preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` (run in a worker thread, so the event loop keeps answering meanwhile).

    Imports hold the GIL; a short switch interval while they run lets the event loop thread get it
    back within a millisecond instead of five, so ``initialize`` is answered without waiting.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, 0.0005))
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        sys.setswitchinterval(previous)


class DepsGate:
    """The lifespan's value: the process's :class:`Deps`, connected once the handshake is over.

    Connecting (joining the embedded PostgreSQL, the migration check, Redis, the event bus) and
    importing what that needs took about a quarter of a second, and a client waits for
    ``initialize`` before it does anything else; on two cores, connecting beside the handshake
    slowed the handshake by as much. So the connection starts when the client's first message
    after ``initialize`` arrives (normally ``notifications/initialized``; see :meth:`middleware`),
    or after :data:`START_FALLBACK_S` if none comes. Every tool awaits it through :func:`deps`. A
    start that fails is reported to the calls waiting for it and tried again by the next call, so a
    server spawned before its database came up recovers by itself.
    """

    def __init__(
        self,
        name: str,
        settings: BaseServerSettings,
        subscriptions: EventBridgeBus | None = None,
        on_start: OnStart | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.subscriptions = subscriptions
        self.on_start = on_start
        self.attempts = 0
        self._ready: asyncio.Future[Deps] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._fallback: asyncio.TimerHandle | None = None
        self._closed = True

    def open(self) -> None:
        """Arm the gate (the lifespan calls this); connecting begins on :meth:`start_soon` or the fallback."""
        loop = asyncio.get_running_loop()
        self._closed = False
        self._fallback = loop.call_later(START_FALLBACK_S, self.start_soon)

    def start_soon(self) -> None:
        """Begin connecting unless that has begun already (or the gate is closed)."""
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if self._task is None and not self._closed:
            self.start()

    def start(self) -> None:
        """Begin connecting in the background (again, after a failed start)."""
        loop = asyncio.get_running_loop()
        self.attempts += 1
        self._stop = asyncio.Event()
        self._ready = loop.create_future()
        self._ready.add_done_callback(_mark_retrieved)
        self._task = loop.create_task(self._connect(self._ready, self._stop), name=f"{self.name}-connect")

    async def middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Server middleware: any message after ``initialize`` means the handshake is over; connect."""
        if self._task is None and getattr(ctx, "method", "initialize") != "initialize":
            self.start_soon()
        return await call_next(ctx)

    async def _connect(self, ready: asyncio.Future[Deps], stop: asyncio.Event) -> None:
        try:
            await asyncio.to_thread(_preload, _CONNECT_MODULES)
            async with open_deps(self.name, self.settings, self.subscriptions) as d:
                if self.on_start is None:
                    ready.set_result(d)
                    await stop.wait()
                else:
                    async with self.on_start(d):
                        ready.set_result(d)
                        await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(ServerStartFailed("The server is shutting down."))
            raise
        except Exception as exc:
            if ready.done():  # failed while closing: nothing waits for it any more
                log.warning("server_close_failed", error=str(exc) or type(exc).__name__)
                return
            log.error("server_start_failed", schema=self.name, attempt=self.attempts, exc_info=exc)
            ready.set_exception(_start_error(exc))

    async def get(self) -> Deps:
        """The connected Deps; starts connecting if need be, and again after a failed attempt."""
        if self._closed:
            raise ServerStartFailed("The server is shutting down.")
        self.start_soon()
        ready = self._ready
        assert ready is not None
        failed = ready.done() and not ready.cancelled() and ready.exception() is not None
        if failed and self._task is not None and self._task.done():
            self.start()
            ready = self._ready
            assert ready is not None
        return await asyncio.shield(ready)

    @property
    def ready(self) -> Deps | None:
        """The Deps if connected by now, without waiting."""
        ready = self._ready
        if ready is None or not ready.done() or ready.cancelled() or ready.exception() is not None:
            return None
        return ready.result()

    async def close(self) -> None:
        """Close everything the connection opened (or abandon a connection still under way)."""
        self._closed = True
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if self._stop is not None:
            self._stop.set()
        task = self._task
        if task is None:
            return
        if self._ready is not None and not self._ready.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task

    def lifespan(self) -> Callable[[MCPServer[Any]], AbstractAsyncContextManager[DepsGate]]:
        """An MCPServer lifespan that starts this gate and closes it at shutdown."""

        @asynccontextmanager
        async def lifespan(_: MCPServer[Any]) -> AsyncIterator[DepsGate]:
            self.open()
            try:
                yield self
            finally:
                await self.close()

        return lifespan


def _mark_retrieved(future: asyncio.Future[Any]) -> None:
    """A failed start nobody asked for yet is not an "exception was never retrieved" warning."""
    if not future.cancelled():
        future.exception()


def _start_error(exc: BaseException) -> SuiteError:
    if isinstance(exc, SuiteError):
        return exc
    if isinstance(exc, MigrationError):  # written for the user already (it names the file or the URL)
        return ServerStartFailed(f"{redact(str(exc))} The next call tries again.")
    return ServerStartFailed(
        f"The server could not connect its services ({type(exc).__name__}: {redact(str(exc))[:300]}). Check "
        "DATABASE_URL and REDIS_URL or run `mcp-suite doctor`; the next call tries again."
    )


_GATES: weakref.WeakKeyDictionary[MCPServer[Any], DepsGate] = weakref.WeakKeyDictionary()


def create_server(
    name: str,
    settings: BaseServerSettings,
    *,
    instructions: str | None = None,
    version: str = "0.1.0",
    on_start: OnStart | None = None,
) -> MCPServer[Any]:
    """An MCPServer whose tools reach :class:`Deps` through :func:`deps`; tools are added with :func:`add_tool`.

    ``on_start`` is an async context manager factory for the server's own background work; it is
    entered after the dependencies are up and exited before they close.
    """
    from servers.registry import get

    spec = get(name)
    bridge = EventBridgeBus()
    gate = DepsGate(name, settings, bridge, on_start)
    server: MCPServer[Any] = MCPServer(
        name=f"mcp-suite-{name.replace('_', '-')}",
        title=spec.title,
        instructions=instructions,
        version=version,
        lifespan=gate.lifespan(),
        log_level=settings.log_level,
        subscriptions=bridge,
    )
    server.middleware.append(gate.middleware)
    _GATES[server] = gate
    return server


async def deps(ctx: Context[Any, Any]) -> Deps:
    """The process's dependencies, from a tool's context (waits while they are still connecting)."""
    value = ctx.request_context.lifespan_context
    if isinstance(value, Deps):
        return value
    if isinstance(value, DepsGate):
        return await value.get()
    raise ToolError("The server is not ready yet; retry in a moment.")


async def server_deps(server: MCPServer[Any]) -> Deps:
    """The dependencies of a server made by :func:`create_server`, for handlers the SDK gives no context."""
    gate = _GATES.get(server)
    if gate is None:
        raise ServerStartFailed("The server is not running.")
    return await gate.get()


def _to_tool_error(tool: str, exc: BaseException) -> ToolError:
    if isinstance(exc, ToolError):
        return exc
    if isinstance(exc, SuiteError):
        return ToolError(str(exc))
    incident = uuid.uuid4().hex[:8]
    log.error("tool_crashed", tool=tool, incident=incident, exc_info=exc)
    return ToolError(
        f"Internal error in {tool} (incident {incident}); nothing was changed by the failed step. "
        "The details are in the server's log."
    )


def add_tool(
    server: MCPServer[Any],
    settings: BaseServerSettings,
    fn: F,
    *,
    title: str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
    name: str | None = None,
) -> F:
    """Register ``fn`` as a tool with all four annotation hints, call logging and error mapping.

    Tools not in the server's ``<NAME>_TOOLS`` allow-list (when set) are not registered at all, so
    they cost the client no context.
    """
    tool_name = name or fn.__name__
    if len(tool_name) > MAX_TOOL_NAME or not tool_name.replace("_", "").isalnum() or tool_name.lower() != tool_name:
        raise ValueError(f"tool name {tool_name!r} must be snake_case and at most {MAX_TOOL_NAME} characters")
    if not fn.__doc__:
        raise ValueError(f"tool {tool_name!r} needs a docstring saying when to use it")
    if settings.tools is not None and tool_name not in settings.tools:
        return fn

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await fn(*args, **kwargs)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                outcome = "cancelled"
                raise
            outcome = "error" if isinstance(exc, SuiteError | ToolError) else "crash"
            raise _to_tool_error(tool_name, exc) from None
        finally:
            log.info(
                "tool_call",
                tool=tool_name,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                outcome=outcome,
            )

    # The wrapper lives in this module, so string annotations (``from __future__ import annotations``
    # in the server) must be resolved against the tool's own module before the SDK reads them.
    hints = typing.get_type_hints(fn, include_extras=True)
    signature = inspect.signature(fn)
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()],
        return_annotation=hints.get("return", signature.return_annotation),
    )
    wrapper.__annotations__ = hints
    server.add_tool(
        wrapper,
        name=tool_name,
        title=title,
        description=inspect.cleandoc(fn.__doc__),
        annotations=ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive,
            idempotent_hint=idempotent,
            open_world_hint=open_world,
        ),
    )
    compact_tool(server, tool_name)
    return fn


@dataclass(frozen=True)
class Hints:
    """The four MCP tool annotation hints, always set explicitly."""

    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool = False


#: The usual kinds of tool. WRITE is an idempotent write (upsert, set); APPEND is not idempotent.
READ = Hints(read_only=True, destructive=False, idempotent=True)
WRITE = Hints(read_only=False, destructive=False, idempotent=True)
APPEND = Hints(read_only=False, destructive=False, idempotent=False)
DELETE = Hints(read_only=False, destructive=True, idempotent=True)
EXTERNAL = Hints(read_only=False, destructive=False, idempotent=True, open_world=True)


def tool_registrar(server: MCPServer[Any], settings: BaseServerSettings) -> Callable[[Any, str, Hints], None]:
    """``register(fn, title, hints)``: :func:`add_tool` for one server, so ``build`` reads as a list of tools."""

    def register(fn: Any, title: str, hints: Hints) -> None:
        add_tool(
            server,
            settings,
            fn,
            title=title,
            read_only=hints.read_only,
            destructive=hints.destructive,
            idempotent=hints.idempotent,
            open_world=hints.open_world,
        )

    return register


def serve(name: str) -> int:
    """Entry point of ``mcp-suite serve NAME``: settings, logging, then the stdio loop."""
    from servers.registry import get

    try:
        spec = get(name)
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2
    try:
        settings = spec.load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"{exc.code}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, server=name)
    from common.embedded_pg import install_sigterm_exit

    install_sigterm_exit()
    server = spec.build(settings)
    # The SDK installs its own stdlib handler when the server is built; ours goes back on top.
    configure_logging(settings.log_level, settings.log_format, server=name)
    try:
        asyncio.run(run_stdio(server))
    except KeyboardInterrupt:
        return 130
    except SuiteError as exc:
        log.error("server_failed", error=str(exc))
        return 1
    return 0
