"""What a write tells the world: a ``memory.changed`` domain event, and MCP resource updates.

The resource updates go through the runtime's EventBridgeBus, which relays them to the other
processes of this server, so a client listening on process A hears about a memory changed through
process B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.events import Event
from common.logging import get_logger
from common.runtime import Deps

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


async def publish(d: Deps, action: str, ids: Sequence[str], workspaces: Sequence[str]) -> None:
    """After a write: the domain event for other servers, and resource updates for subscribed clients.

    Both go out after the tool has answered (``d.background``): the writer's client is not kept
    waiting for two more Redis round trips that only others care about. ``d.subscriptions``
    (common.subscriptions.EventBridgeBus) delivers the updates to this process's listen streams
    and, through the event bus, to every other process's.
    """
    if ids:
        d.background.spawn(_send(d, action, list(ids), list(workspaces)), name="memory-changed")


async def _send(d: Deps, action: str, ids: list[str], workspaces: list[str]) -> None:
    await d.events.publish(EVENT, change(action, ids, workspaces))
    uris = [memory_uri(str(i)) for i in ids]
    if workspaces:
        uris.append(WORKSPACES_URI)
    await d.subscriptions.resources_updated(uris)
