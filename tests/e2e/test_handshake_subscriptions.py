"""Resource subscriptions for clients on the initialize handshake (protocol 2025-11-25), over real stdio.

The SDK serves only ``subscriptions/listen`` (2026-07-28); these clients send ``resources/subscribe``
and wait for ``notifications/resources/updated`` on their session.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceUpdatedNotification

from common.testing import call_ok as call
from common.testing import server_params
from servers.notes.service import note_uri

pytestmark = [
    pytest.mark.anyio,
    # The client warns that resources/(un)subscribe is gone from 2026-07-28; this test is about the older protocol.
    pytest.mark.filterwarnings(
        "ignore:resources/(un)?subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
]


class Updates:
    """The URIs of the ``notifications/resources/updated`` a client received, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.send, self.recv = anyio.create_memory_object_stream[str](100)

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            await self.send.send(str(message.params.uri))

    def close(self) -> None:
        self.send.close()
        self.recv.close()

    async def next(self, timeout_s: float = 20) -> str:
        with anyio.fail_after(timeout_s):
            return await self.recv.receive()


async def test_a_2025_11_25_client_subscribes_and_hears_changes_made_by_another_process(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    params = server_params("notes", database_url, redis_url, redis_prefix, tmp_path)
    updates = Updates()
    async with (
        contextlib.AsyncExitStack() as stack,
        Client(params, mode="legacy", message_handler=updates, read_timeout_seconds=120) as watcher,
        Client(params, read_timeout_seconds=120) as writer,
    ):
        stack.callback(updates.close)
        assert watcher.protocol_version == "2025-11-25"
        caps = watcher.session.initialize_result.capabilities  # type: ignore[union-attr]
        assert caps.resources is not None
        assert caps.resources.subscribe is True
        plan, other = note_uri("Plan"), note_uri("Other")
        await watcher.subscribe_resource(plan)
        await watcher.subscribe_resource(other)

        await call(writer, "save_note", {"title": "Plan", "body": "v1"})
        assert await updates.next() == plan
        await call(watcher, "save_note", {"title": "Other", "body": "from the watcher's own process"})
        assert await updates.next() == other

        # After unsubscribing from Plan, its next change is not sent; Other's, made after it, is.
        await watcher.unsubscribe_resource(plan)
        await call(writer, "save_note", {"title": "Plan", "body": "v2"})
        await call(writer, "save_note", {"title": "Other", "body": "v2"})
        assert await updates.next() == other
        assert updates.uris == [plan, other, other]

        with pytest.raises(MCPError, match="over 2048 characters"):
            await watcher.subscribe_resource("note://" + "x" * 3000)
