import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from common.db import role_url
from common.events import Event, EventBus, pg_channel_for, sign, verify
from common.redis_conn import RedisConnection
from common.testing import wait_until

pytestmark = pytest.mark.anyio


def collector() -> tuple[list[Event], Callable[[Event], Awaitable[None]]]:
    """A list and a handler that appends every event it is given to it."""
    got: list[Event] = []

    async def handler(ev: Event) -> None:
        got.append(ev)

    return got, handler


async def test_a_subscriber_receives_the_exact_envelope_over_redis(conn: RedisConnection, redis_prefix: str) -> None:
    notes = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=None)
    got: list[Event] = []

    async def handler(ev: Event) -> None:
        got.append(ev)

    try:
        sub = await notes.subscribe(handler)
        assert sub.redis_listening
        sent = await notes.publish("note.created", {"id": 7, "title": "é"})
        await wait_until(lambda: len(got) == 1, what="event delivery")
    finally:
        await notes.close()
    assert got == [sent]
    ev = got[0]
    assert (ev.event, ev.server, ev.data) == ("note.created", "notes", {"id": 7, "title": "é"})
    assert len(ev.id) == 32
    int(ev.id, 16)
    assert datetime.fromisoformat(ev.at).utcoffset() is not None
    assert json.loads(ev.to_json()) == {
        "event": "note.created",
        "server": "notes",
        "id": ev.id,
        "at": ev.at,
        "data": {"id": 7, "title": "é"},
    }
    assert Event.from_json(ev.to_json()) == ev
    assert sub.via_redis == 1
    assert sub.via_pg == 0
    assert notes.channel("notes", "note.created") == f"{redis_prefix}:notes.note.created"


async def test_subscriptions_filter_by_server_and_event(conn: RedisConnection, redis_prefix: str) -> None:
    notes = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=None)
    docs = await EventBus.start(conn, prefix=redis_prefix, server="docs", pg_url=None)
    seen: dict[str, list[str]] = {"all": [], "docs": [], "created": [], "docs_created": []}

    def recorder(name: str):
        async def handler(ev: Event) -> None:
            seen[name].append(f"{ev.server}.{ev.event}")

        return handler

    try:
        await notes.subscribe(recorder("all"))
        await notes.subscribe(recorder("docs"), server="docs")
        await notes.subscribe(recorder("created"), event="created")
        await notes.subscribe(recorder("docs_created"), server="docs", event="created")
        await notes.publish("created", {})
        await docs.publish("created", {})
        await docs.publish("deleted", {})
        await notes.publish("x.created", {})  # not "created": a glob must not over-match
        await notes.publish("done", {})
        await wait_until(lambda: len(seen["all"]) == 5, what="all events")
    finally:
        await notes.close()
        await docs.close()
    assert seen["all"] == ["notes.created", "docs.created", "docs.deleted", "notes.x.created", "notes.done"]
    assert seen["docs"] == ["docs.created", "docs.deleted"]
    assert seen["created"] == ["notes.created", "docs.created"]
    assert seen["docs_created"] == ["docs.created"]


async def test_a_failing_handler_does_not_stop_later_events(conn: RedisConnection, redis_prefix: str) -> None:
    bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=None)
    got: list[int] = []

    async def handler(ev: Event) -> None:
        if ev.data["n"] == 1:
            raise RuntimeError("handler bug")
        got.append(ev.data["n"])

    try:
        sub = await bus.subscribe(handler)
        for n in range(3):
            await bus.publish("tick", {"n": n})
        await wait_until(lambda: got == [0, 2], what="events after the failing one")
        assert sub.handler_errors == 1
    finally:
        await bus.close()


async def test_an_event_carried_by_both_paths_is_delivered_once(
    conn: RedisConnection, redis_prefix: str, database_url: str
) -> None:
    bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=database_url)
    got, handler = collector()
    try:
        sub = await bus.subscribe(handler)
        assert bus.pg_listening
        ev = Event.new("notes", "twice", {"k": 1})
        await conn.client.publish(bus.channel("notes", "twice"), ev.to_json())
        # The sender stays connected until the copy arrives: a listener checks who sent a NOTIFY.
        pg = await asyncpg.connect(database_url)
        try:
            await pg.execute("SELECT pg_notify($1, $2)", bus.pg_channel, ev.to_json())
            await wait_until(lambda: sub.duplicates == 1, what="second copy to arrive")
        finally:
            await pg.close()
    finally:
        await bus.close()
    assert got == [ev]


async def test_events_also_go_over_postgres_while_redis_has_just_come_back(
    conn: RedisConnection, redis_prefix: str, database_url: str
) -> None:
    bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=database_url)
    got, handler = collector()
    try:
        sub = await bus.subscribe(handler)
        assert conn.recovered_at is None
        # Redis just came back: a subscriber elsewhere may not be back on it yet, so NOTIFY too.
        conn.recovered_at = time.monotonic()
        await bus.publish("fresh")
        assert bus.published_pg == 1
        # Redis has been up a while and someone listens: Redis alone carries it.
        conn.recovered_at = time.monotonic() - 60
        await bus.publish("settled")
        assert bus.published_pg == 1
        await wait_until(lambda: len(got) == 2, what="both events")
        await wait_until(lambda: sub.duplicates == 1, what="the NOTIFY copy of the first event")
    finally:
        await bus.close()
    assert [e.event for e in got] == ["fresh", "settled"]


async def test_a_notify_claiming_another_servers_name_is_not_delivered(
    conn: RedisConnection, redis_prefix: str, database_url: str
) -> None:
    victim, forger = f"v{uuid.uuid4().hex[:10]}", f"f{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(database_url)
    try:
        for role in (victim, forger):
            await admin.execute(f"CREATE ROLE {role} LOGIN")
        bus = await EventBus.start(conn, prefix=redis_prefix, server=victim, pg_url=database_url)
        got, handler = collector()
        try:
            await bus.subscribe(handler)
            senders = [await asyncpg.connect(role_url(database_url, r, None)) for r in (forger, victim)]
            try:
                for pg, name in zip(senders, ("forged", "genuine"), strict=True):
                    await pg.execute("SELECT pg_notify($1, $2)", bus.pg_channel, Event.new(victim, name).to_json())
                await wait_until(lambda: bus.notified >= 2, what="both notifications to arrive")
                await wait_until(lambda: not bus._checks, what="every sender check to finish")
            finally:
                for pg in senders:
                    await pg.close()
        finally:
            await bus.close()
    finally:
        for role in (victim, forger):
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()
    assert [e.event for e in got] == ["genuine"]


async def test_an_oversized_event_reaches_postgres_listeners_truncated(
    conn: RedisConnection, redis_prefix: str, database_url: str
) -> None:
    bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=database_url)
    got, handler = collector()
    try:
        sub = await bus.subscribe(handler)
        # No Redis subscriber matches this bus's other prefix, so the publish falls through to NOTIFY too.
        await conn.close()
        sent = await bus.publish("big", {"blob": "x" * 10_000})
        await wait_until(lambda: len(got) == 1, what="truncated event")
    finally:
        await bus.close()
    assert got[0].id == sent.id
    assert got[0].data == {"truncated": True}
    assert sub.via_pg == 1


def test_the_postgres_channel_is_a_valid_identifier() -> None:
    assert pg_channel_for("mcp") == "mcp_events_mcp"
    assert pg_channel_for("my-suite") == "mcp_events_my_suite"
    with pytest.raises(ValueError, match="valid PostgreSQL channel"):
        pg_channel_for("x" * 60)


def test_malformed_envelopes_are_rejected() -> None:
    with pytest.raises(ValueError, match="lacks a string 'id'"):
        Event.from_json('{"event": "a", "server": "b", "at": "t", "data": {}}')
    with pytest.raises(ValueError, match="not JSON"):
        Event.from_json("nope")


async def test_a_forged_unsigned_or_replayed_publish_on_redis_is_not_delivered(
    conn: RedisConnection, redis_prefix: str
) -> None:
    key = b"k" * 32
    bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=None, signing_key=key)
    got, handler = collector()
    try:
        sub = await bus.subscribe(handler)
        channel = bus.channel("notes", "note.saved")
        fake = Event.new("notes", "note.saved", {"title": "forged"})
        stale = replace(Event.new("notes", "note.saved", {"title": "replayed"}), at="2020-01-01T00:00:00+00:00")
        forged = [
            fake.to_json(),  # unsigned: what anyone who can reach Redis could send
            sign(b"not the key", fake.to_json()),
            sign(key, fake.to_json()).replace("forged", "altered"),
            sign(key, stale.to_json()),
            "v1:" + "0" * 64,
        ]
        for payload in forged:
            await conn.run(functools.partial(_publish, channel=channel, payload=payload))
        genuine = await bus.publish("note.saved", {"title": "genuine"})
        await wait_until(lambda: len(got) == 1 and sub.rejected == len(forged), what="the genuine event")
    finally:
        await bus.close()
    assert got == [genuine]
    assert verify(key, sign(key, genuine.to_json())) == genuine


async def _publish(client: Any, *, channel: str, payload: str) -> Any:
    return await client.publish(channel, payload)
