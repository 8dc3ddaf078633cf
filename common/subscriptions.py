"""MCP resource/list change notifications that reach clients of every process of a server.

A stdio client talks to one process, but the thing it subscribed to may be changed by another
process (a second Claude window) of the same server. :class:`EventBridgeBus` is the SDK's
``SubscriptionBus``: a change published in one process goes to its own listen streams at once and,
through the Redis/PostgreSQL :class:`~common.events.EventBus`, to the listen streams of the others.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mcp import types
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)

from common.logging import get_logger

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


class LegacySubscriptions:
    """``resources/subscribe`` and ``resources/unsubscribe`` of the handshake-era protocol (2025 revisions).

    Clients of those revisions (most desktop clients today) subscribe per URI and expect
    ``notifications/resources/updated`` on their session; the 2026 revision's ``subscriptions/listen``
    is served by the SDK itself. Each subscribed session gets a listener on the server's
    :class:`EventBridgeBus`, so it hears changes made by any process. Registering these handlers is
    also what makes ``initialize`` advertise ``resources.subscribe``.
    """

    def __init__(self, bus: EventBridgeBus) -> None:
        self._bus = bus
        self._sessions: dict[int, tuple[set[str], Callable[[], None]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        session = ctx.session
        key = id(session)
        if key not in self._sessions:
            uris: set[str] = set()

            def listener(event: ServerEvent) -> None:
                if isinstance(event, ResourceUpdated) and event.uri in uris:
                    task = asyncio.get_running_loop().create_task(self._send(key, session, event.uri))
                    self._sending.add(task)
                    task.add_done_callback(self._sending.discard)

            self._sessions[key] = (uris, self._bus.subscribe(listener))
        self._sessions[key][0].add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        entry = self._sessions.get(id(ctx.session))
        if entry is not None:
            entry[0].discard(str(params.uri))
            if not entry[0]:
                self._drop(id(ctx.session))
        return types.EmptyResult()

    def _drop(self, key: int) -> None:
        entry = self._sessions.pop(key, None)
        if entry is not None:
            entry[1]()

    async def _send(self, key: int, session: Any, uri: str) -> None:
        try:
            await session.send_resource_updated(uri)
        except Exception as exc:  # the client went away: stop listening for it
            log.info("subscription_session_closed", error=type(exc).__name__)
            self._drop(key)
