"""The example server through the SDK's in-process client: every part of common/ in one flow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from mcp import Client

from common.testing import call_ok as _call
from servers.notes.server import build
from servers.notes.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> Settings:
    settings: Settings = make_settings(Settings)
    return settings


async def test_save_search_get_delete_round_trip(settings: Settings) -> None:
    async with Client(build(settings), raise_exceptions=True) as client:
        saved = await _call(
            client, "save_note", {"title": "Deploys", "body": "We ship to production every Tuesday.", "tags": ["ops"]}
        )
        assert saved["created"] is True
        await _call(client, "save_note", {"title": "Lunch", "body": "The canteen serves pasta on Fridays."})
        again = await _call(
            client, "save_note", {"title": "Deploys", "body": "Releases go out on Tuesdays.", "tags": ["ops"]}
        )
        assert again["created"] is False
        assert again["note"]["id"] == saved["note"]["id"]

        found = await _call(client, "search_notes", {"query": "when is the release day?", "limit": 1})
        assert [h["title"] for h in found["hits"]] == ["Deploys"]
        assert found["truncated"] is True

        tagged = await _call(client, "search_notes", {"query": "what is served to eat on Fridays", "tag": "ops"})
        assert [h["title"] for h in tagged["hits"]] == ["Deploys"]

        note = await _call(client, "get_note", {"title": "Deploys"})
        assert note["body"] == "Releases go out on Tuesdays."
        await _call(client, "delete_note", {"title": "Deploys"})
        gone = await client.call_tool("get_note", {"title": "Deploys"})
        assert gone.is_error
        assert "No note titled 'Deploys'" in gone.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"title": "", "body": "x"}, "title"),
        ({"title": "t", "body": ""}, "body"),
        ({"title": "t", "body": "x" * 200_001}, "limit"),
        ({"title": "t" * 201, "body": "x"}, "title"),
    ],
)
async def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(
    settings: Settings, args: dict[str, Any], expected: str
) -> None:
    async with Client(build(settings.model_copy(update={"max_body_chars": 200_000}))) as client:
        result = await client.call_tool("save_note", args)
        assert result.is_error
        assert expected in result.content[0].text  # type: ignore[union-attr]
        found = await client.call_tool("search_notes", {"query": "x"})
        assert found.structured_content == {"hits": [], "total": 0, "truncated": False}


async def test_limit_out_of_range_is_refused(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        result = await client.call_tool("search_notes", {"query": "x", "limit": 500})
        assert result.is_error
        assert "limit" in result.content[0].text  # type: ignore[union-attr]


async def test_allow_list_exposes_only_the_named_tools(make_settings: Callable[..., Any]) -> None:
    settings = make_settings(Settings, tools=["search_notes"])
    async with Client(build(settings)) as client:
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["search_notes"]


async def test_an_unexpected_failure_reaches_the_client_without_internals(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        await _call(client, "save_note", {"title": "a", "body": "b"})
        # Break the schema behind the server's back: the tool must answer with a generic message.
        import asyncpg

        from common.runtime import resolve_admin_url

        conn = await asyncpg.connect(resolve_admin_url(settings))
        try:
            await conn.execute("ALTER TABLE notes.notes RENAME COLUMN body TO body_gone")
        finally:
            await conn.close()
        result = await client.call_tool("get_note", {"title": "zzz"})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Internal error in get_note" in text
        assert "body" not in text
        assert "Traceback" not in text


async def test_concurrent_saves_from_two_server_instances_lose_nothing(settings: Settings) -> None:
    async with Client(build(settings)) as a, Client(build(settings)) as b:

        async def save(client: Client, i: int) -> None:
            await _call(client, "save_note", {"title": f"n{i}", "body": f"note number {i}"})

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(save, a if i % 2 else b, i)
                tg.start_soon(save, b if i % 2 else a, i)  # the same title from the other process
        for i in range(20):
            note = await _call(a, "get_note", {"title": f"n{i}"})
            assert note["body"] == f"note number {i}"


async def test_a_subscriber_in_one_process_hears_of_a_change_made_by_another(settings: Settings) -> None:
    from mcp.client.subscriptions import ResourceUpdated

    from servers.notes.server import note_uri

    uri = note_uri("Shared plan")
    async with Client(build(settings)) as watcher, Client(build(settings)) as writer:
        async with watcher.listen(resource_subscriptions=[uri]) as sub:
            await _call(writer, "save_note", {"title": "Shared plan", "body": "v1"})
            with anyio.fail_after(15):
                async for event in sub:
                    assert event == ResourceUpdated(uri=uri)
                    break
        read = await watcher.read_resource(uri)
        assert '"body":"v1"' in read.contents[0].text  # type: ignore[union-attr]
