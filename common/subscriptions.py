"""MCP resource/list change notifications that reach clients of every process of a server.

A stdio client talks to one process, but the thing it subscribed to may be changed by another
process (a second Claude window) of the same server. :class:`EventBridgeBus` is the SDK's
``SubscriptionBus``: a change published in one process goes to its own listen streams at once and,
through the Redis/PostgreSQL :class:`~common.events.EventBus`, to the listen streams of the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import mcp.types as types
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError

from common.logging import get_logger
from common.sdk_adapter import connection_of

if TYPE_CHECKING:
    from common.events import Event, EventBus, Subscription

log = get_logger(__name__)

EVENT_NAME = "mcp.changed"
#: Keeps one relayed event well under PostgreSQL's 8000-byte NOTIFY limit (the Redis-down path).
MAX_URIS_PER_EVENT = 60

_KINDS: dict[str, Callable[[dict[str, Any]], ServerEvent]] = {
    "resource_updated": lambda d: ResourceUpdated(uri=str(d["uri"])),
    "resources_list_changed": lambda d: ResourcesListChanged(),
    "tools_list_changed": lambda d: ToolsListChanged(),
    "prompts_list_changed": lambda d: PromptsListChanged(),
}


def _encode(event: ServerEvent) -> dict[str, Any]:
    if isinstance(event, ResourceUpdated):
        return {"kind": "resource_updated", "uri": event.uri}
    if isinstance(event, ResourcesListChanged):
        return {"kind": "resources_list_changed"}
    if isinstance(event, ToolsListChanged):
        return {"kind": "tools_list_changed"}
    return {"kind": "prompts_list_changed"}


class EventBridgeBus:
    """A ``SubscriptionBus`` fanned out to the server's other processes through the event bus."""

    def __init__(self) -> None:
        self._local = InMemorySubscriptionBus()
        self._events: EventBus | None = None
        self._subscription: Subscription | None = None
        self.origin = uuid.uuid4().hex
        self.remote_delivered = 0

    async def attach(self, events: EventBus) -> None:
        """Start relaying: called by the lifespan once the event bus is up."""
        self._events = events
        self._subscription = await events.subscribe(self._on_remote, server=events.server, event=EVENT_NAME)

    async def detach(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        self._subscription = None
        self._events = None

    async def publish(self, event: ServerEvent) -> None:
        """Deliver to this process's listen streams, then to the other processes'."""
        await self._local.publish(event)
        if self._events is not None:
            await self._events.publish(EVENT_NAME, {**_encode(event), "origin": self.origin})

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        return self._local.subscribe(listener)

    async def resource_updated(self, uri: str) -> None:
        """Tell every subscribed client, in any process, that ``uri`` changed."""
        await self.publish(ResourceUpdated(uri=uri))

    async def resources_updated(self, uris: Sequence[str]) -> None:
        """Several changed resources in one relayed event (a batch write changes many at once)."""
        unique = list(dict.fromkeys(uris))
        for uri in unique:
            await self._local.publish(ResourceUpdated(uri=uri))
        if self._events is None:
            return
        for start in range(0, len(unique), MAX_URIS_PER_EVENT):
            chunk = unique[start : start + MAX_URIS_PER_EVENT]
            await self._events.publish(EVENT_NAME, {"kind": "resources_updated", "uris": chunk, "origin": self.origin})

    async def _on_remote(self, event: Event) -> None:
        data = event.data
        if data.get("origin") == self.origin:
            return
        if data.get("kind") == "resources_updated":
            self.remote_delivered += 1
            for uri in data.get("uris") or []:
                await self._local.publish(ResourceUpdated(uri=str(uri)))
            return
        make = _KINDS.get(str(data.get("kind")))
        if make is None:
            log.warning("subscription_event_unknown", kind=data.get("kind"))
            return
        self.remote_delivered += 1
        await self._local.publish(make(data))


#: The longest URI a handshake-era client may subscribe to, and how many one session may hold.
MAX_SUBSCRIBED_URI_CHARS = 2048
MAX_SUBSCRIBED_URIS = 1024
#: Notifications waiting for a slow client; past it the oldest-waiting ones are dropped, not buffered.
MAX_PENDING_UPDATES = 1024


class _ConnectionUris:
    """One client connection's subscribed URIs and the task that sends it their updates."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.uris: set[str] = set()
        self.send, self.recv = anyio.create_memory_object_stream[str](MAX_PENDING_UPDATES)
        self.unsubscribe: Callable[[], None] = lambda: None
        self.task: asyncio.Task[None] | None = None

    def deliver(self, event: ServerEvent) -> None:
        """Bus listener (synchronous): queue the update if this connection subscribed to its URI."""
        if not isinstance(event, ResourceUpdated) or event.uri not in self.uris:
            return
        try:
            self.send.send_nowait(event.uri)
        except anyio.WouldBlock:
            log.warning("resource_update_dropped", uri=event.uri[:200], reason="the client is not reading")
        except anyio.ClosedResourceError:
            pass

    async def pump(self) -> None:
        """Send the updates, in order, until the client unsubscribes from everything or goes away."""
        try:
            async with self.recv:
                async for uri in self.recv:
                    await self.connection.send_resource_updated(uri)  # drops it, never raises, once the client is gone
        finally:
            self.unsubscribe()

    async def close(self) -> None:
        self.send.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


#: Where a connection keeps its subscriptions (``Connection.state`` is the SDK's per-connection scratch space).
_STATE_KEY = "mcp_suite.resource_subscriptions"


class HandshakeSubscriptions:
    """``resources/subscribe`` and ``resources/unsubscribe`` for clients on the initialize handshake.

    The SDK serves resource subscriptions only as ``subscriptions/listen`` streams (2026-07-28);
    clients that negotiated 2025-11-25 or earlier subscribe per URI and expect
    ``notifications/resources/updated``. This serves those methods from the same
    :class:`EventBridgeBus`, so a change made in any process reaches them too. The subscriptions
    live with the client's connection and end with it.
    """

    def __init__(self, bus: EventBridgeBus) -> None:
        self.bus = bus

    async def subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        if len(uri) > MAX_SUBSCRIBED_URI_CHARS:
            raise MCPError(types.INVALID_PARAMS, f"uri is over {MAX_SUBSCRIBED_URI_CHARS} characters")
        await _connected(ctx)
        connection = connection_of(ctx)
        state = connection.state.get(_STATE_KEY)
        if state is None:
            state = _ConnectionUris(connection)
            state.unsubscribe = self.bus.subscribe(state.deliver)
            state.task = asyncio.create_task(state.pump(), name="resource-updates")
            connection.state[_STATE_KEY] = state
            connection.exit_stack.push_async_callback(state.close)
        if uri not in state.uris and len(state.uris) >= MAX_SUBSCRIBED_URIS:
            raise MCPError(
                types.INVALID_PARAMS, f"this client holds {MAX_SUBSCRIBED_URIS} subscriptions; unsubscribe some first"
            )
        state.uris.add(uri)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        state = connection_of(ctx).state.get(_STATE_KEY)
        if state is not None:
            state.uris.discard(str(params.uri))
        return types.EmptyResult()


async def _connected(ctx: Any) -> None:
    """Wait until the process listens for other processes' changes, so none made after this is missed.

    A server that cannot connect still delivers its own process's changes; its tools report the failure.
    """
    gate = getattr(ctx, "lifespan_context", None)
    running = getattr(gate, "running", None)
    if running is None:
        return
    try:
        await running()
    except Exception as exc:
        log.warning("resource_subscribe_not_connected", error=str(exc)[:200])
