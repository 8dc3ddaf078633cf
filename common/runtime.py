"""Turns a server definition (a service class and a :class:`~common.tools.ToolSet`) into an MCPServer.

One frozen :class:`Deps` per process (database pool in the server's own role and schema, Redis
cache and event bus with their fallbacks, a lazy embedder, the vector index), connected by a
:class:`DepsGate` once the client's handshake is over. The gate then enters the server's service
(an async context manager made from the Deps) and tools reach it with ``await service(ctx)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import SecretStr

from common.background import Background
from common.errors import MigrationError, SuiteError
from common.logging import get_logger, redact
from common.settings import BaseServerSettings
from common.tools import Catalog, ToolSet

if TYPE_CHECKING:
    from common.cache import Cache
    from common.db import Database
    from common.embeddings import Embedder
    from common.events import EventBus
    from common.redis_conn import RedisConnection
    from common.vectors import VectorIndex

from common.sdk_adapter import serve_resource_subscriptions
from common.subscriptions import EventBridgeBus, HandshakeSubscriptions

log = get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

MAX_TOOL_NAME = 40


@dataclass(frozen=True)
class Deps:
    """Everything a tool needs, built once per process by the lifespan."""

    name: str
    settings: BaseServerSettings
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


def role_password(settings: BaseServerSettings, name: str) -> str | None:
    """The password of server ``name``'s role: ``DB_ROLE_PASSWORD`` with a ``DATABASE_URL``, else its own.

    The embedded PostgreSQL checks a password per role (see ``common.embedded_pg.secure``), kept in
    the data directory's secrets file.
    """
    if settings.database_url is not None:
        return settings.db_role_password.get_secret_value() if settings.db_role_password else None
    from common.embedded_pg import role_password as embedded_role_password

    return embedded_role_password(settings.data_dir, name)


#: The name of the event-signing key in the data directory's secrets file.
EVENTS_KEY_NAME = "events_hmac_key"


async def events_key(settings: BaseServerSettings) -> SecretStr:
    """The key that signs events on Redis: ``EVENTS_SIGNING_KEY``, else the data directory's own."""
    if settings.events_signing_key is not None:
        return settings.events_signing_key
    from common.suite_secrets import get_secret

    return SecretStr(await asyncio.to_thread(get_secret, settings.data_dir, EVENTS_KEY_NAME))


@asynccontextmanager
async def open_deps(
    name: str, settings: BaseServerSettings, subscriptions: EventBridgeBus | None = None
) -> AsyncIterator[Deps]:
    """Connect everything a server needs, and close it all again in reverse order."""
    from common.cache import Cache
    from common.db import Database, DbConfig, role_url
    from common.embeddings import make_embedder, store_model
    from common.events import EventBus
    from common.migrate import ensure_migrated, set_role_password
    from common.redis_conn import RedisConnection
    from common.vectors import make_vector_index

    started = time.perf_counter()
    admin_url = await asyncio.to_thread(resolve_admin_url, settings)
    password = await asyncio.to_thread(role_password, settings, name)
    embedded = settings.database_url is None
    if settings.migrate_on_start:
        outcome = await ensure_migrated(admin_url, name, role_password=password, apply_password=embedded)
        log.info("migrations_checked", schema=name, outcome=outcome)
    elif embedded and password is not None:
        await set_role_password(admin_url, name, password)
    url = role_url(admin_url, name, password)
    on_lost = None
    if settings.database_url is None:  # the embedded PostgreSQL: a process that finds it dead restarts it
        from common.embedded_pg import connection_lost_handler

        on_lost = connection_lost_handler(settings.data_dir)
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
                on_connection_lost=on_lost,
            )
        )
        stack.push_async_callback(db.close)
        redis = await RedisConnection.connect(settings.redis_url.get_secret_value(), name=name)
        stack.push_async_callback(redis.close)
        cache = Cache(redis, prefix=settings.redis_prefix, server=name, default_ttl_s=settings.cache_ttl_s)
        events = await EventBus.start(
            redis, prefix=settings.redis_prefix, server=name, pg_url=url, signing_key=await events_key(settings)
        )
        stack.push_async_callback(events.close)
        bridge = subscriptions or EventBridgeBus()
        await bridge.attach(events)
        stack.push_async_callback(bridge.detach)
        background = Background()
        stack.push_async_callback(background.drain)
        # The store's recorded model wins over EMBEDDING_MODEL (common/embeddings/store_model.py).
        embedder = await store_model.bind(
            db,
            name,
            make_embedder(settings, cache=cache, background=background),
            lambda model: make_embedder(
                settings.model_copy(update={"embedding_model": model}), cache=cache, background=background
            ),
            settings.embedding_model_policy,
        )
        vectors = make_vector_index(settings, db, name)
        stack.push_async_callback(vectors.close)
        deps = Deps(
            name=name,
            settings=settings,
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


#: A server's service: an async context manager made from the Deps, entered after they are up and
#: exited before they close; the value it yields is what tools get from :func:`service`.
ServiceFactory = Callable[[Deps], AbstractAsyncContextManager[Any]]


class OpensWithSettings(Protocol):
    """A service class in the shape of docs/writing-a-server.md: ``Cls.open(deps, settings)``."""

    @classmethod
    def open(cls, deps: Deps, settings: Any) -> AbstractAsyncContextManager[Any]: ...


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


@dataclass(frozen=True)
class Running:
    """What a connected gate holds: the process's Deps and the server's service."""

    deps: Deps
    service: Any


def _preload(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in a worker thread, so the event loop keeps answering the handshake meanwhile."""
    for module in modules:
        importlib.import_module(module)


class DepsGate:
    """The lifespan's value: the process's :class:`Deps` and service, connected once the handshake is over.

    A client waits for ``initialize`` before it does anything else, and connecting (joining the
    embedded PostgreSQL, the migration check, Redis, the event bus) competes with the handshake for
    the CPU. So the connection starts when the client's first message after ``initialize`` arrives
    (normally ``notifications/initialized``; see :meth:`middleware`), or after
    :data:`START_FALLBACK_S` if none comes. A start that fails is reported to the calls waiting for
    it and tried again by the next call, so a server spawned before its database came up recovers
    by itself.
    """

    def __init__(
        self,
        name: str,
        settings: BaseServerSettings,
        subscriptions: EventBridgeBus | None = None,
        service: ServiceFactory | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.subscriptions = subscriptions
        self.service_factory = service
        self.attempts = 0
        self._ready: asyncio.Future[Running] | None = None
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

    async def _connect(self, ready: asyncio.Future[Running], stop: asyncio.Event) -> None:
        try:
            await asyncio.to_thread(_preload, _CONNECT_MODULES)
            async with open_deps(self.name, self.settings, self.subscriptions) as d:
                if self.service_factory is None:
                    ready.set_result(Running(d, None))
                    await stop.wait()
                else:
                    async with self.service_factory(d) as svc:
                        ready.set_result(Running(d, svc))
                        await stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(ServerStartFailed("The server is shutting down."))
            raise
        except Exception as exc:
            if ready.done():  # failed while closing: nothing waits for it any more
                log.warning("server_close_failed", error=str(exc)[:300] or type(exc).__name__)
                return
            log.error("server_start_failed", schema=self.name, attempt=self.attempts, exc_info=exc)
            ready.set_exception(_start_error(exc))

    async def running(self) -> Running:
        """The connected Deps and service; starts connecting if need be, and again after a failed attempt."""
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

    async def get(self) -> Deps:
        """The connected Deps (see :meth:`running`)."""
        return (await self.running()).deps

    @property
    def ready(self) -> Deps | None:
        """The Deps if connected by now, without waiting."""
        ready = self._ready
        if ready is None or not ready.done() or ready.cancelled() or ready.exception() is not None:
            return None
        return ready.result().deps

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
        return ServerStartFailed(f"{redact(str(exc))[:600]} The next call tries again.")
    return ServerStartFailed(
        f"The server could not connect its services ({type(exc).__name__}: {redact(str(exc))[:300]}). Check "
        "DATABASE_URL and REDIS_URL or run `mcp-suite doctor`; the next call tries again."
    )


_GATES: weakref.WeakKeyDictionary[MCPServer[Any], DepsGate] = weakref.WeakKeyDictionary()


def create_server(
    name: str,
    settings: BaseServerSettings,
    *,
    title: str,
    tools: ToolSet | Catalog | None = None,
    service: ServiceFactory | type[OpensWithSettings] | None = None,
    instructions: str | None = None,
    version: str = "0.1.0",
) -> MCPServer[Any]:
    """An MCPServer for schema ``name``: its tools, and a lifespan that connects Deps and enters ``service``.

    ``service`` is a service class (opened with ``Cls.open(deps, settings)``) or any factory of an async
    context manager. Tools reach the service with :func:`service` (and the Deps with :func:`deps`). Resources and
    prompts are added to the returned server with the SDK's decorators.
    """
    if service is None and isinstance(tools, ServiceTools):
        service = tools.kind
    if isinstance(tools, Catalog):
        tools = tools.build(settings)
    if isinstance(service, type):
        service = functools.partial(cast("type[OpensWithSettings]", service).open, settings=settings)
    bridge = EventBridgeBus()
    gate = DepsGate(name, settings, bridge, service)
    server: MCPServer[Any] = MCPServer(
        name=f"mcp-suite-{name.replace('_', '-')}",
        title=title,
        instructions=instructions,
        version=version,
        lifespan=gate.lifespan(),
        log_level=settings.log_level,
        subscriptions=bridge,
        tools=tools.built() if tools is not None else None,
        middleware=[gate.middleware],
    )
    _GATES[server] = gate
    handshake = HandshakeSubscriptions(bridge)
    serve_resource_subscriptions(server, handshake.subscribe, handshake.unsubscribe)
    return server


def _gate(ctx: Context[Any, Any]) -> DepsGate:
    value = ctx.request_context.lifespan_context
    if isinstance(value, DepsGate):
        return value
    raise ToolError("The server is not ready yet; retry in a moment.")


async def _call_begins(running: Running) -> Running:
    """A tool call begins: the embedder of a store with a recorded model sees a switch, then keeps its model."""
    begin = getattr(running.deps.embedder, "begin_call", None)
    if begin is not None:
        await begin()
    return running


async def deps(ctx: Context[Any, Any]) -> Deps:
    """The process's dependencies, from a tool's context (waits while they are still connecting)."""
    return (await _call_begins(await _gate(ctx).running())).deps


S = TypeVar("S")


async def service(ctx: Context[Any, Any], kind: type[S]) -> S:
    """The server's service instance (of class ``kind``), from a tool's context."""
    svc = (await _call_begins(await _gate(ctx).running())).service
    if not isinstance(svc, kind):
        raise ServerStartFailed(f"The server has no {kind.__name__} service.")
    return svc


class ServiceTools(Catalog, Generic[S]):
    """A :class:`Catalog` whose tools reach one service class: ``await TOOLS.service(ctx)``."""

    def __init__(self, kind: type[S], **options: bool) -> None:
        super().__init__(**options)
        self.kind = kind

    async def service(self, ctx: Context[Any, Any]) -> S:
        """The server's service instance, from a tool's context."""
        return await service(ctx, self.kind)


def service_factory(server: MCPServer[Any]) -> ServiceFactory | None:
    """The service factory a server made by :func:`create_server` enters (for commands that run it outside stdio)."""
    gate = _GATES.get(server)
    return None if gate is None else gate.service_factory


async def server_service(server: MCPServer[Any], kind: type[S]) -> S:
    """The service of a server made by :func:`create_server`, for handlers the SDK gives no context."""
    gate = _GATES.get(server)
    if gate is None:
        raise ServerStartFailed("The server is not running.")
    svc = (await _call_begins(await gate.running())).service
    if not isinstance(svc, kind):
        raise ServerStartFailed(f"The server has no {kind.__name__} service.")
    return svc


__all__ = [
    "Deps",
    "DepsGate",
    "ServiceTools",
    "create_server",
    "deps",
    "open_deps",
    "server_service",
    "service",
    "service_factory",
]
