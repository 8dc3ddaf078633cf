"""What a write tells the world: a ``memory.changed`` domain event, and MCP resource updates.

The resource updates go through the runtime's EventBridgeBus, which relays them to the other
processes of this server, so a client listening on process A hears about a memory changed through
process B.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from common.logging import get_logger
from common.runtime import Deps

if TYPE_CHECKING:  # redis (the event bus) is slow to import; the server connects it after initialize
    from common.events import Event

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

    Both go out after the tool has answered, collected for a moment (``common.background.Batcher``):
    the writer's client is not kept waiting for Redis round trips that only others care about, and
    a burst of writes sends one event per action. ``d.subscriptions``
    (common.subscriptions.EventBridgeBus) delivers the updates to this process's listen streams
    and, through the event bus, to every other process's.
    """
    if ids:
        d.background.batcher("memory-changed", functools.partial(_send, d)).add([(action, list(ids), list(workspaces))])


async def _send(d: Deps, changes: list[tuple[str, list[str], list[str]]]) -> None:
    by_action: dict[str, tuple[list[str], set[str]]] = {}
    for action, ids, workspaces in changes:
        got = by_action.setdefault(action, ([], set()))
        got[0].extend(ids)
        got[1].update(workspaces)
    uris: list[str] = []
    for action, (changed, spaces) in by_action.items():
        await d.events.publish(EVENT, change(action, changed, sorted(spaces)))
        uris.extend(memory_uri(str(i)) for i in changed)
        if spaces:
            uris.append(WORKSPACES_URI)
    await d.subscriptions.resources_updated(uris)
