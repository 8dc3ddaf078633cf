"""The lifespan connects after the handshake (common.runtime.DepsGate), and recovers from a failed start."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from common import runtime
from common.testing import call_ok, wait_until
from servers.notes.server import build
from servers.notes.settings import Settings

pytestmark = pytest.mark.anyio

UNREACHABLE = "postgresql://mcp@127.0.0.1:1/nothing"


async def _passthrough(ctx: Any) -> str:
    return "handled"


async def test_the_connection_starts_after_initialize_and_tools_wait_for_it(make_settings: Callable[..., Any]) -> None:
    settings: Settings = make_settings(Settings)
    server = build(settings)
    gate = runtime._GATES[server]
    async with gate.lifespan()(server):
        # The handshake itself does not start it; the client's next message does.
        assert await gate.middleware(SimpleNamespace(method="initialize"), _passthrough) == "handled"
        assert gate.attempts == 0
        assert gate.ready is None
        await gate.middleware(SimpleNamespace(method="notifications/initialized"), _passthrough)
        assert gate.attempts == 1
        d = await gate.get()
        assert gate.ready is d
    with pytest.raises(runtime.ServerStartFailed, match="shutting down"):
        await gate.get()

    # Through a real session: the first tool call is answered (it waited for the connection if need be).
    async with Client(build(settings)) as client:
        saved = await call_ok(client, "save_note", {"title": "gate", "body": "connected after the handshake"})
        assert saved["note"]["title"] == "gate"


async def test_without_any_message_the_connection_starts_by_itself(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "START_FALLBACK_S", 0.05)
    server = build(make_settings(Settings))
    gate = runtime._GATES[server]
    async with gate.lifespan()(server):
        await wait_until(lambda: gate.ready is not None, timeout_s=30, what="the fallback start")
        assert gate.attempts == 1


async def test_an_unreachable_database_is_a_clear_error_and_the_next_call_tries_again(
    make_settings: Callable[..., Any],
) -> None:
    good: Settings = make_settings(Settings)
    bad = good.model_copy(
        update={"database_url": SecretStr(UNREACHABLE), "db_connect_timeout_s": 1.0, "db_retry_attempts": 1}
    )
    server = build(bad)
    gate = runtime._GATES[server]
    async with Client(server) as client:
        listed = await client.list_tools()  # the handshake and listing need no database
        assert any(t.name == "save_note" for t in listed.tools)
        failed = await client.call_tool("save_note", {"title": "t", "body": "b"})
        assert failed.is_error
        text = failed.content[0].text  # type: ignore[union-attr]
        assert "PostgreSQL" in text
        assert "DATABASE_URL" in text
        assert "Traceback" not in text
        assert gate.attempts == 1
        # The database "comes up": the next call starts again and succeeds.
        gate.settings = good
        saved = await call_ok(client, "save_note", {"title": "t", "body": "b"})
        assert saved["note"]["title"] == "t"
        assert gate.attempts == 2
