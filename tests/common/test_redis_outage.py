"""Redis going away (and coming back) must cost hit rate and latency, never a failed call or a lost event.

Each test runs its own redis-server on a free port, so it can be killed without touching the
machine's Redis.
"""

import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import anyio
import anyio.abc
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from common.cache import Cache
from common.events import Event, EventBus
from common.redis_conn import RedisConnection
from common.testing import free_port

pytestmark = pytest.mark.anyio

REDIS_SERVER = "/usr/bin/redis-server"


class PrivateRedis:
    """A redis-server this test owns: started, SIGKILLed and restarted on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: anyio.abc.Process | None = None

    async def start(self) -> None:
        assert self.proc is None
        self.proc = await anyio.open_process(
            [REDIS_SERVER, "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", self.port)
            except OSError:
                assert self.proc.returncode is None, "redis-server exited at start"
                assert time.monotonic() < deadline, "redis-server did not start listening"
                await anyio.sleep(0.02)
            else:
                await stream.aclose()
                return

    async def kill(self) -> None:
        """SIGKILL, like a crash: no goodbye to connected clients."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            proc.kill()
            with anyio.fail_after(10):
                await proc.wait()
            await proc.aclose()


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port())
    try:
        yield server
    finally:
        await server.kill()


async def wait_until(predicate, timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)


async def direct_get(url: str, key: str) -> str | None:
    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return cast("str | None", await r.get(key))
    finally:
        await r.aclose()


def count(logs: Sequence[Mapping[str, Any]], event: str, name: str) -> int:
    return sum(1 for e in logs if e["event"] == event and e.get("redis") == name)


async def test_cache_and_events_keep_working_through_a_redis_outage_and_return_to_redis(
    private_redis: PrivateRedis, redis_prefix: str, database_url: str
) -> None:
    await private_redis.start()
    with capture_logs() as logs:
        conn = await RedisConnection.connect(private_redis.url, name="publisher")
        listener_conn = await RedisConnection.connect(private_redis.url, name="listener")
        cache = Cache(conn, prefix=redis_prefix, server="notes", default_ttl_s=60)
        key = b"the suite's events key"  # signed, as the servers' events are
        bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=database_url, signing_key=key)
        listener_bus = await EventBus.start(
            listener_conn, prefix=redis_prefix, server="docs", pg_url=database_url, signing_key=key
        )
        got: list[Event] = []

        async def handler(ev: Event) -> None:
            got.append(ev)

        try:
            sub = await listener_bus.subscribe(handler, server="notes")
            assert sub.redis_listening
            assert listener_bus.pg_listening

            await cache.set("note:1", "before")
            sent = [await bus.publish("changed", {"n": 1})]
            await wait_until(lambda: len(got) == 1, what="event before the outage")
            assert sub.via_redis == 1

            await private_redis.kill()

            # The first call finds Redis gone and falls back; none of them raises.
            await cache.set("note:2", "during")
            assert await cache.get("note:2") == "during"
            for _ in range(20):
                await cache.set("note:3", {"x": 1})
                assert await cache.get("note:3") == {"x": 1}
            assert await cache.get_many(["note:2", "note:3"]) == {"note:2": "during", "note:3": {"x": 1}}
            assert await cache.incr("count:1") == 1
            assert await cache.get_or_compute("answer:1", _compute_41) == 41
            stats = cache.stats()
            assert stats.backend == "memory"
            assert stats.fallback_hits >= 22
            assert stats.errors >= 1
            health = await cache.health()
            assert health["backend"] == "memory"
            assert health["redis"]["ok"] is False
            assert health["redis"]["error"]

            pg_before = bus.published_pg
            sent.append(await bus.publish("changed", {"n": 2}))
            await wait_until(lambda: len(got) == 2, what="event during the outage (via PostgreSQL)")
            assert sub.via_pg == 1
            assert bus.published_pg == pg_before + 1
            await wait_until(lambda: not listener_conn.available, what="listener to notice the outage")

            await private_redis.start()
            await wait_until(lambda: cache.stats().backend == "redis", what="cache back on Redis")
            await cache.set("note:4", "after")
            assert await direct_get(private_redis.url, f"{redis_prefix}:notes:note:4") == '"after"'
            assert await cache.get("note:2") is None  # the fallback's entries do not outlive the outage

            await sub.wait_redis_listening(5)
            assert sub.redis_listening
            sent.append(await bus.publish("changed", {"n": 3}))
            await wait_until(lambda: len(got) == 3, what="event after recovery")
            assert sub.via_redis == 2
            assert got == sent  # each event once, although NOTIFY carried copies while Redis settled
            assert sub.rejected == 0
        finally:
            await bus.close()
            await listener_bus.close()
            await conn.close()
            await listener_conn.close()

    assert conn.outages == 1
    assert listener_conn.outages == 1
    assert count(logs, "redis_unavailable", "publisher") == 1
    assert count(logs, "redis_recovered", "publisher") == 1
    assert count(logs, "redis_unavailable", "listener") == 1
    assert [e["log_level"] for e in logs if e["event"] == "redis_unavailable"] == ["warning", "warning"]


async def _compute_41() -> int:
    return 41


async def test_a_server_starts_with_redis_down_serves_from_fallbacks_and_moves_to_redis_when_it_appears(
    private_redis: PrivateRedis, redis_prefix: str, database_url: str
) -> None:
    with capture_logs() as logs:
        started = time.monotonic()
        conn = await RedisConnection.connect(private_redis.url, name="cold")
        assert time.monotonic() - started < 2
        assert conn.available is False
        cache = Cache(conn, prefix=redis_prefix, server="notes", default_ttl_s=60)
        bus = await EventBus.start(conn, prefix=redis_prefix, server="notes", pg_url=database_url)
        got: list[Event] = []

        async def handler(ev: Event) -> None:
            got.append(ev)

        try:
            sub = await bus.subscribe(handler, event="changed")
            assert not sub.redis_listening
            await cache.set("note:1", [1, 2])
            assert await cache.get("note:1") == [1, 2]
            assert cache.stats().backend == "memory"
            first = await bus.publish("changed", {"n": 1})
            await wait_until(lambda: len(got) == 1, what="event over PostgreSQL")
            assert got == [first]
            assert sub.via_pg == 1

            await private_redis.start()
            await wait_until(lambda: cache.stats().backend == "redis", what="cache on Redis")
            await cache.set("note:2", {"ok": True})
            assert await direct_get(private_redis.url, f"{redis_prefix}:notes:note:2") == '{"ok": true}'
            assert (await conn.health())["ok"] is True

            await sub.wait_redis_listening(5)
            assert sub.redis_listening
            second = await bus.publish("changed", {"n": 2})
            await wait_until(lambda: len(got) == 2, what="event over Redis")
            assert got == [first, second]
            assert sub.via_redis == 1
            # Redis has only just come back, so NOTIFY carried a copy too (dropped as a duplicate).
            assert bus.published_pg == 2
        finally:
            await bus.close()
            await conn.close()

    assert count(logs, "redis_unavailable", "cold") == 1
    assert count(logs, "redis_recovered", "cold") == 1
