import time
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis

from common.cache import Cache
from common.redis_conn import RedisConnection
from common.testing import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
async def raw(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield r
    finally:
        async for key in r.scan_iter(match=f"{redis_prefix}:*", count=1000):
            await r.unlink(key)
        await r.aclose()


@pytest.fixture
def cache(conn: RedisConnection, redis_prefix: str, raw: aioredis.Redis) -> Cache:
    return Cache(conn, prefix=redis_prefix, server="notes", default_ttl_s=60)


async def test_values_are_json_under_the_namespaced_key(cache: Cache, raw: aioredis.Redis, redis_prefix: str) -> None:
    await cache.set("note:1", {"title": "hi", "tags": ["a"]})
    assert await cache.get("note:1") == {"title": "hi", "tags": ["a"]}
    assert await raw.get(f"{redis_prefix}:notes:note:1") == '{"title": "hi", "tags": ["a"]}'
    assert 0 < await raw.pttl(f"{redis_prefix}:notes:note:1") <= 60_000
    assert await cache.get("note:2", "absent") == "absent"
    assert await cache.delete("note:1") is True
    assert await cache.delete("note:1") is False
    assert await cache.get("note:1") is None
    assert cache.stats().backend == "redis"


async def test_a_value_expires_after_its_ttl(cache: Cache, raw: aioredis.Redis, redis_prefix: str) -> None:
    await cache.set("note:short", 1, ttl_s=0.3)
    assert 0 < await raw.pttl(f"{redis_prefix}:notes:note:short") <= 300
    deadline = time.monotonic() + 3
    while await cache.get("note:short") is not None:
        assert time.monotonic() < deadline, "value did not expire"
        await anyio.sleep(0.05)


async def test_batch_set_and_get_return_only_present_keys(cache: Cache, raw: aioredis.Redis, redis_prefix: str) -> None:
    await cache.set_many({"note:1": 1, "note:2": [2], "note:3": {"x": 3}}, ttl_s=30)
    assert await cache.get_many(["note:1", "note:2", "note:3", "note:4"]) == {
        "note:1": 1,
        "note:2": [2],
        "note:3": {"x": 3},
    }
    assert 0 < await raw.pttl(f"{redis_prefix}:notes:note:2") <= 30_000
    assert await cache.get_many([]) == {}


async def test_delete_pattern_removes_thousands_of_keys_via_scan_and_spares_others(
    cache: Cache, raw: aioredis.Redis, redis_prefix: str
) -> None:
    await cache.set_many({f"note:{i}": i for i in range(1500)})
    await cache.set_many({f"tag:{i}": i for i in range(10)})
    assert await cache.delete_pattern("note:*") == 1500
    remaining = [k async for k in raw.scan_iter(match=f"{redis_prefix}:notes:*", count=1000)]
    assert sorted(remaining) == sorted(f"{redis_prefix}:notes:tag:{i}" for i in range(10))
    assert await cache.delete_pattern("note:*") == 0


async def test_counters_increment_atomically_and_expire(cache: Cache, raw: aioredis.Redis, redis_prefix: str) -> None:
    assert await cache.incr("hits:page") == 1
    assert await cache.incr("hits:page", 5) == 6
    assert await cache.incr("hits:page", -2) == 4
    assert await cache.get("hits:page") == 4
    assert 0 < await raw.pttl(f"{redis_prefix}:notes:hits:page") <= 60_000
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(cache.incr, "hits:concurrent")
    assert await cache.get("hits:concurrent") == 50


async def test_stats_count_hits_and_misses(cache: Cache) -> None:
    await cache.set("note:1", "x")
    await cache.get("note:1")
    await cache.get("note:1")
    await cache.get("note:missing")
    await cache.get_many(["note:1", "note:missing"])
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.fallback_hits, stats.errors) == (3, 2, 0, 0)
    assert stats.backend == "redis"
    health = await cache.health()
    assert health["ok"] is True
    assert health["redis"]["ok"] is True
    assert health["redis"]["latency_ms"] >= 0


async def test_get_or_compute_runs_once_for_twenty_concurrent_callers(cache: Cache) -> None:
    calls = 0
    gate = anyio.Event()
    results: list[dict[str, int]] = []

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return {"answer": 42}

    async def caller() -> None:
        results.append(await cache.get_or_compute("answer:1", compute))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(caller)
            await wait_until(lambda: cache.stats().coalesced == 19, what="19 callers to join the computation")
            gate.set()
    assert calls == 1
    assert results == [{"answer": 42}] * 20
    assert await cache.get_or_compute("answer:1", compute) == {"answer": 42}
    assert calls == 1


async def test_get_or_compute_runs_once_across_two_processes(
    cache: Cache, redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    other_conn = await RedisConnection.connect(redis_url, name="other")
    other = Cache(other_conn, prefix=redis_prefix, server="notes", default_ttl_s=60)
    calls = 0
    gate = anyio.Event()
    results: dict[str, int] = {}

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 7

    async def run(name: str, c: Cache) -> None:
        results[name] = await c.get_or_compute("expensive:1", compute)

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "a", cache)
                await wait_until(lambda: calls == 1, what="first process to start computing")
                assert await raw.exists(f"{redis_prefix}:notes:__lock__:expensive:1") == 1
                tg.start_soon(run, "b", other)
                await wait_until(lambda: other.stats().lock_waits == 1, what="second process to wait on the lock")
                gate.set()
    finally:
        await other_conn.close()
    assert calls == 1
    assert results == {"a": 7, "b": 7}
    assert await raw.exists(f"{redis_prefix}:notes:__lock__:expensive:1") == 0


async def test_get_or_compute_passes_the_error_to_every_waiting_caller_and_caches_nothing(cache: Cache) -> None:
    gate = anyio.Event()
    errors: list[str] = []

    async def compute() -> int:
        await gate.wait()
        raise ValueError("boom")

    async def caller() -> None:
        try:
            await cache.get_or_compute("bad:1", compute)
        except ValueError as exc:
            errors.append(str(exc))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(caller)
            await wait_until(lambda: cache.stats().coalesced == 2, what="callers to join")
            gate.set()
    assert errors == ["boom"] * 3
    assert await cache.get("bad:1") is None


async def test_ttl_must_be_positive(cache: Cache) -> None:
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        await cache.set("note:1", 1, ttl_s=0)
