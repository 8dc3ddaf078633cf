"""hishel's cache transport with our PostgreSQL storage sits on the guarded transport; the fetcher's
rules still hold through it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from common.db import Database
from common.netguard import BlockedURL, NetPolicy
from servers.web_access.fetcher import build_client, fetch
from servers.web_access.http_cache import PostgresStorage, cache_transport
from servers.web_access.netguard import GuardedTransport
from tests.servers.web_access.conftest import LocalServer, LoopbackDial, reply
from tests.servers.web_access.test_fetcher import endless

LOOPBACK = NetPolicy.from_entries(["127.0.0.1/32"])


def _client(db: Database, policy: NetPolicy = LOOPBACK) -> httpx.AsyncClient:
    guard = GuardedTransport(policy, dial=LoopbackDial())
    return build_client(policy, transport=cache_transport(guard, PostgresStorage(db)))


async def _entries(db: Database) -> int:
    return int(await db.fetchval("SELECT count(*) FROM web_access.http_entries"))


def fresh(body: bytes) -> Callable[..., None]:
    return lambda h: reply(h, 200, body, [("Cache-Control", "max-age=600")])


@pytest.mark.anyio
async def test_a_second_fetch_is_answered_from_the_cache_over_the_guard(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/page": fresh(b"cached body")})
    async with open_service(web_settings()) as svc, _client(svc.deps.db) as client:
        first = await fetch(server.url("/page"), client=client, policy=LOOPBACK)
        second = await fetch(server.url("/page"), client=client, policy=LOOPBACK)
        entries = await _entries(svc.deps.db)
    assert (first.body, first.from_cache, first.stored) == (b"cached body", False, True)
    assert (second.body, second.from_cache) == (b"cached body", True)
    assert len(server.seen) == 1
    assert entries == 1


@pytest.mark.anyio
async def test_a_cached_body_can_be_left_unread_and_is_named_by_its_hash(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/page": fresh(b"kept body")})
    async with open_service(web_settings()) as svc, _client(svc.deps.db) as client:
        first = await fetch(server.url("/page"), client=client, policy=LOOPBACK, defer_cached_body=True)
        deferred = await fetch(server.url("/page"), client=client, policy=LOOPBACK, defer_cached_body=True)
        read = await fetch(server.url("/page"), client=client, policy=LOOPBACK)
    # A response from the network is always read; a stored one is only named unless asked for.
    assert (first.body, first.from_cache, first.body_sha256) == (b"kept body", False, None)
    assert (deferred.body, deferred.from_cache, deferred.body_sha256) == (
        b"",
        True,
        hashlib.sha256(b"kept body").hexdigest(),
    )
    assert (read.body, read.from_cache, read.body_sha256) == (b"kept body", True, None)
    assert len(server.seen) == 1


@pytest.mark.anyio
async def test_a_body_cut_at_the_ceiling_is_not_stored_and_the_ceiling_holds_through_the_cache(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/endless": endless})
    async with open_service(web_settings()) as svc, _client(svc.deps.db) as client:
        result = await fetch(server.url("/endless"), client=client, policy=LOOPBACK, max_bytes=50_000)
        entries = await _entries(svc.deps.db)
    assert result.truncated
    assert len(result.body) == 50_000
    assert entries == 0


@pytest.mark.anyio
async def test_the_cache_never_answers_for_a_url_the_rules_refuse(
    serve: Callable[..., LocalServer], web_settings: Callable[..., Any], open_service: Any
) -> None:
    server = serve({"/page": fresh(b"secret")})
    strict = NetPolicy()
    async with open_service(web_settings()) as svc:
        async with _client(svc.deps.db) as opened:
            await fetch(server.url("/page"), client=opened, policy=LOOPBACK)
        assert await _entries(svc.deps.db) == 1
        async with _client(svc.deps.db, strict) as closed:
            with pytest.raises(BlockedURL):
                await fetch(server.url("/page"), client=closed, policy=strict)
    assert len(server.seen) == 1
