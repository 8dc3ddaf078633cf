"""hishel's cache transport sits on the guarded transport; the fetcher's rules still hold through it.

The storage here is a small in-memory one that follows ``AsyncBaseStorage``'s contract; the server
will use a PostgreSQL storage behind the same interface.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from hishel import AsyncBaseStorage, Entry, Headers, Request, Response
from hishel.httpx import AsyncCacheTransport

from common.netguard import BlockedURL, NetPolicy
from servers.web_access.fetcher import build_client, fetch
from servers.web_access.netguard import GuardedTransport
from tests.servers.web_access.conftest import LocalServer, LoopbackDial, text
from tests.servers.web_access.test_fetcher import endless

LOOPBACK = NetPolicy.from_entries(["127.0.0.1/32"])


class MemoryStorage(AsyncBaseStorage):
    def __init__(self) -> None:
        super().__init__()
        self.complete: dict[str, list[tuple[Entry, bytes]]] = {}

    async def create_entry(
        self, request: Request, response: Response, key: str, *, ttl: float | None = None, tti: float | None = None
    ) -> Entry:
        entry = Entry(uuid.uuid4(), request, response)
        source = response.stream
        assert isinstance(source, AsyncIterator)

        async def saving() -> AsyncIterator[bytes]:
            parts = []
            async for part in source:
                parts.append(part)
                yield part
            self.complete.setdefault(key, []).append((entry, b"".join(parts)))

        return Entry(entry.id, request, Response(response.status_code, response.headers, saving()))

    async def get_entries(self, key: str) -> list[Entry]:
        async def replay(body: bytes) -> AsyncIterator[bytes]:
            yield body

        return [
            Entry(e.id, e.request, Response(e.response.status_code, e.response.headers, replay(body)))
            for e, body in self.complete.get(key, [])
        ]

    async def update_headers(self, id: uuid.UUID, headers: Headers) -> None:
        pass

    async def remove_entry(self, id: uuid.UUID) -> None:
        for key, entries in self.complete.items():
            self.complete[key] = [(e, b) for e, b in entries if e.id != id]


def _client(storage: MemoryStorage, policy: NetPolicy = LOOPBACK) -> httpx.AsyncClient:
    guard = GuardedTransport(policy, dial=LoopbackDial())
    return build_client(policy, transport=AsyncCacheTransport(next_transport=guard, storage=storage))


@pytest.mark.anyio
async def test_a_second_fetch_is_answered_from_the_cache_over_the_guard(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/page": text("cached body")})
    storage = MemoryStorage()
    client = _client(storage)
    async with client:
        first = await fetch(server.url("/page"), client=client, policy=LOOPBACK)
        second = await fetch(server.url("/page"), client=client, policy=LOOPBACK)
    assert (first.body, first.from_cache) == (b"cached body", False)
    assert (second.body, second.from_cache) == (b"cached body", True)
    assert len(server.seen) == 1


@pytest.mark.anyio
async def test_a_body_cut_at_the_ceiling_is_not_stored_and_the_ceiling_holds_through_the_cache(
    serve: Callable[..., LocalServer],
) -> None:
    server = serve({"/endless": endless})
    storage = MemoryStorage()
    client = _client(storage)
    async with client:
        result = await fetch(server.url("/endless"), client=client, policy=LOOPBACK, max_bytes=50_000)
    assert result.truncated
    assert len(result.body) == 50_000
    assert storage.complete == {}


@pytest.mark.anyio
async def test_the_cache_never_answers_for_a_url_the_rules_refuse(serve: Callable[..., LocalServer]) -> None:
    server = serve({"/page": text("secret")})
    storage = MemoryStorage()
    opened = _client(storage)
    async with opened:
        await fetch(server.url("/page"), client=opened, policy=LOOPBACK)
    strict = NetPolicy()
    closed = _client(storage, strict)
    async with closed:
        with pytest.raises(BlockedURL):
            await fetch(server.url("/page"), client=closed, policy=strict)
    assert len(server.seen) == 1
