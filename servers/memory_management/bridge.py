"""Change events across processes: common.events carries them, the SDK's subscription bus delivers them.

Every process of this server publishes ``memory.changed`` after a write and, in its lifespan,
subscribes to the same event from every process (itself included). Each event is turned into MCP
``ResourceUpdated`` events on the process's in-process SDK bus, so a client listening on process A
hears about a memory changed through process B. There is one delivery path for local and remote
changes alike, so a client never sees a change twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.subscriptions import ResourceUpdated

from common.events import Event, EventBus, Subscription
from common.logging import get_logger

log = get_logger(__name__)

SERVER = "memory_management"
EVENT = "memory.changed"
WORKSPACES_URI = "memory://workspaces"
MAX_IDS_PER_EVENT = 200


def memory_uri(memory_id: str) -> str:
    return f"memory://memories/{memory_id}"


def change(action: str, ids: Sequence[str], workspaces: Sequence[str]) -> dict[str, Any]:
    """The data of a ``memory.changed`` event; long id lists are cut (listeners then refetch the workspace)."""
    ids = list(ids)
    return {
        "action": action,
        "ids": ids[:MAX_IDS_PER_EVENT],
        "more": max(len(ids) - MAX_IDS_PER_EVENT, 0),
        "workspaces": sorted(set(workspaces)),
    }


def uris(event: Event) -> list[str]:
    """The resource URIs an event makes stale."""
    out = [memory_uri(str(i)) for i in event.data.get("ids", []) if isinstance(i, str)]
    if event.data.get("workspaces") or event.data.get("truncated"):
        out.append(WORKSPACES_URI)
    return out


async def publish(events: EventBus, action: str, ids: Sequence[str], workspaces: Sequence[str]) -> None:
    if ids:
        await events.publish(EVENT, change(action, ids, workspaces))


async def connect(events: EventBus, bus: SubscriptionBus) -> Subscription:
    """Forward every process's ``memory.changed`` events into ``bus``; close the returned subscription to stop."""

    async def forward(event: Event) -> None:
        for uri in uris(event):
            await bus.publish(ResourceUpdated(uri=uri))

    return await events.subscribe(forward, server=SERVER, event=EVENT)
