"""Cache-aside over Redis, shared by every process of a server, with an in-process fallback.

Keys are ``<prefix>:<server>:<key>`` (callers pass ``noun:id``); values are JSON. While Redis is
down every method quietly uses a bounded in-process LRU with TTLs, so a Redis outage costs hit rate,
never a failed tool call. The fallback is emptied whenever the backend changes, because what it
holds was never seen by the other processes and may be stale by the time Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from common.logging import get_logger
from common.redis_conn import RedisConnection, RedisUnavailable

log = get_logger(__name__)

T = TypeVar("T")
Backend = Literal["redis", "memory"]

_MISSING: Any = object()

# Deletes the lock only if we still own it, so a slow computation never releases someone else's lock.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was created.

    ``hits`` counts every hit, ``fallback_hits`` the part of them served from the in-process fallback;
    ``errors`` counts Redis calls that failed and were answered from the fallback instead;
    ``coalesced`` counts ``get_or_compute`` callers that joined a computation already running in this
    process, ``lock_waits`` those that waited for another process's computation.
    """

    hits: int
    misses: int
    fallback_hits: int
    errors: int
    backend: Backend
    coalesced: int = 0
    lock_waits: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemoryStore:
    """A bounded LRU with per-entry TTL: the cache while Redis is down. Values are JSON text."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires_at, value = item
        if expires_at <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: str, value: str, ttl_s: float) -> None:
        self._data[key] = (time.monotonic() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    def delete_pattern(self, pattern: str) -> int:
        doomed = [k for k in self._data if fnmatch.fnmatchcase(k, pattern)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def incr(self, key: str, amount: int, ttl_s: float) -> int:
        item = self._data.get(key)
        now = time.monotonic()
        if item is None or item[0] <= now:
            expires_at, current = now + ttl_s, 0
        else:
            expires_at, current = item[0], int(json.loads(item[1]))
        current += amount
        self._data[key] = (expires_at, json.dumps(current))
        self._data.move_to_end(key)
        return current

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class Cache:
    """Namespaced JSON cache with TTLs, batch calls, counters and single-flight ``get_or_compute``."""

    def __init__(
        self,
        conn: RedisConnection,
        *,
        prefix: str,
        server: str,
        default_ttl_s: float = 300,
        max_memory_entries: int = 10_000,
        lock_ttl_s: float = 10.0,
        lock_wait_s: float = 5.0,
        lock_poll_s: float = 0.05,
    ) -> None:
        if not prefix or not server or ":" in prefix or ":" in server:
            raise ValueError(
                f"cache prefix and server must be non-empty and contain no ':' (got {prefix!r}, {server!r})"
            )
        if default_ttl_s <= 0:
            raise ValueError("default_ttl_s must be > 0: every cached value needs an expiry")
        self.conn = conn
        self.prefix = prefix
        self.server = server
        self.namespace = f"{prefix}:{server}:"
        self.default_ttl_s = default_ttl_s
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.lock_poll_s = lock_poll_s
        self.memory = MemoryStore(max_memory_entries)
        self._last_backend: Backend = "redis"
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._hits = 0
        self._misses = 0
        self._fallback_hits = 0
        self._errors = 0
        self._coalesced = 0
        self._lock_waits = 0

    # -- keys and backend -------------------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The Redis key for ``key`` (``<prefix>:<server>:<key>``)."""
        if not key:
            raise ValueError("cache key must be non-empty, e.g. 'note:42'")
        return self.namespace + key

    @property
    def backend(self) -> Backend:
        """Where calls go right now."""
        return "redis" if self.conn.available else "memory"

    def _use_redis(self) -> bool:
        backend = self.backend
        if backend != self._last_backend:
            # Entries in the fallback were never visible to other processes; drop them on every switch.
            self.memory.clear()
            self._last_backend = backend
        return backend == "redis"

    async def _redis(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``fn`` on Redis; raise RedisUnavailable for any Redis failure so callers fall back."""
        try:
            return await self.conn.run(fn)
        except RedisUnavailable:
            self._errors += 1
            self._use_redis()  # switch now, so the fallback starts clean
            raise
        except RedisError as exc:
            self._errors += 1
            log.warning("cache_redis_error", error=str(exc), error_type=type(exc).__name__)
            raise RedisUnavailable(str(exc)) from exc

    def _ttl(self, ttl_s: float | None) -> float:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            raise ValueError(f"ttl_s must be > 0 (got {ttl_s})")
        return ttl

    def _count(self, raw: str | None, *, fallback: bool) -> None:
        if raw is None:
            self._misses += 1
        else:
            self._hits += 1
            if fallback:
                self._fallback_hits += 1

    # -- single keys ------------------------------------------------------------------------

    async def _get_raw(self, key: str) -> str | None:
        full = self.full_key(key)
        if self._use_redis():
            try:
                raw = cast("str | None", await self._redis(lambda r: r.get(full)))
                self._count(raw, fallback=False)
                return raw
            except RedisUnavailable:
                pass
        raw = self.memory.get(full)
        self._count(raw, fallback=True)
        return raw

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value for ``key``, or ``default`` when absent or expired."""
        raw = await self._get_raw(key)
        return default if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_s: float | None = None) -> None:
        """Store ``value`` (JSON-serialisable) for ``ttl_s`` seconds (default: the cache's TTL)."""
        await self._set_raw(self.full_key(key), json.dumps(value), self._ttl(ttl_s))

    async def _set_raw(self, full: str, raw: str, ttl: float) -> None:
        if self._use_redis():
            try:
                await self._redis(lambda r: r.set(full, raw, px=max(1, int(ttl * 1000))))
                return
            except RedisUnavailable:
                pass
        self.memory.set(full, raw, ttl)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether it existed."""
        full = self.full_key(key)
        if self._use_redis():
            try:
                return bool(await self._redis(lambda r: r.unlink(full)))
            except RedisUnavailable:
                pass
        return self.memory.delete(full)

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys present (absent ones are left out), in one round trip."""
        keys = list(keys)
        if not keys:
            return {}
        fulls = [self.full_key(k) for k in keys]
        raws: list[str | None] | None = None
        fallback = False
        if self._use_redis():
            try:
                raws = cast("list[str | None]", await self._redis(lambda r: r.mget(fulls)))
            except RedisUnavailable:
                raws = None
        if raws is None:
            fallback = True
            raws = [self.memory.get(f) for f in fulls]
        out: dict[str, Any] = {}
        for key, raw in zip(keys, raws, strict=True):
            self._count(raw, fallback=fallback)
            if raw is not None:
                out[key] = json.loads(raw)
        return out

    async def set_many(self, mapping: Mapping[str, Any], ttl_s: float | None = None) -> None:
        """Store every item of ``mapping`` with the same TTL, in one pipelined round trip."""
        if not mapping:
            return
        ttl = self._ttl(ttl_s)
        items = [(self.full_key(k), json.dumps(v)) for k, v in mapping.items()]
        if self._use_redis():

            async def write(r: aioredis.Redis) -> None:
                async with r.pipeline(transaction=False) as pipe:
                    for full, raw in items:
                        pipe.set(full, raw, px=max(1, int(ttl * 1000)))
                    await pipe.execute()

            try:
                await self._redis(write)
                return
            except RedisUnavailable:
                pass
        for full, raw in items:
            self.memory.set(full, raw, ttl)

    async def delete_pattern(self, pattern: str, *, batch: int = 500) -> int:
        """Delete every key of this namespace matching the glob ``pattern`` (e.g. ``note:*``); returns how many.

        Walks the keyspace with SCAN and UNLINKs in batches, so it never blocks Redis the way KEYS would.
        """
        full_pattern = self.full_key(pattern)
        if self._use_redis():

            async def scan_and_unlink(r: aioredis.Redis) -> int:
                deleted = 0
                pending: list[str] = []
                async for key in r.scan_iter(match=full_pattern, count=1000):
                    pending.append(key)
                    if len(pending) >= batch:
                        deleted += int(await r.unlink(*pending))
                        pending.clear()
                if pending:
                    deleted += int(await r.unlink(*pending))
                return deleted

            try:
                return await self._redis(scan_and_unlink)
            except RedisUnavailable:
                pass
        return self.memory.delete_pattern(full_pattern)

    async def incr(self, key: str, amount: int = 1, *, ttl_s: float | None = None) -> int:
        """Add ``amount`` to the integer counter at ``key`` (created at 0); returns the new value.

        A new counter expires after ``ttl_s`` (default: the cache's TTL); incrementing does not extend it.
        """
        full = self.full_key(key)
        ttl = self._ttl(ttl_s)
        if self._use_redis():

            async def bump(r: aioredis.Redis) -> int:
                async with r.pipeline(transaction=True) as pipe:
                    pipe.incrby(full, amount)
                    pipe.pexpire(full, max(1, int(ttl * 1000)), nx=True)
                    value, _ = await pipe.execute()
                return int(value)

            try:
                return await self._redis(bump)
            except RedisUnavailable:
                pass
        return self.memory.incr(full, amount, ttl)

    # -- single flight ----------------------------------------------------------------------

    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[T]], ttl_s: float | None = None) -> T:
        """The cached value for ``key``, or ``await compute()`` stored for ``ttl_s``, computed once.

        Concurrent callers in this process share one computation; across processes a short Redis
        lock lets one compute while the others poll (bounded by ``lock_wait_s``) for its result, then
        compute themselves. An exception from ``compute`` reaches every caller that shared it.
        """
        raw = await self._get_raw(key)
        if raw is not None:
            return cast(T, json.loads(raw))
        ttl = self._ttl(ttl_s)
        full = self.full_key(key)
        while (running := self._inflight.get(full)) is not None:
            self._coalesced += 1
            try:
                return cast(T, await asyncio.shield(running))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if running.cancelled() and task is not None and not task.cancelling():
                    continue  # the computing caller was cancelled, not us: take over
                raise
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[full] = future
        try:
            value = await self._compute_once(full, compute, ttl)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: there may be no other caller waiting
            raise
        else:
            future.set_result(value)
            return value
        finally:
            self._inflight.pop(full, None)

    async def _compute_once(self, full: str, compute: Callable[[], Awaitable[T]], ttl: float) -> T:
        lock_key = f"{self.namespace}__lock__:{full[len(self.namespace) :]}"
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_wait_s
        waited = False
        while self._use_redis():
            try:
                got = await self._redis(
                    lambda r: r.set(lock_key, token, nx=True, px=max(1, int(self.lock_ttl_s * 1000)))
                )
            except RedisUnavailable:
                break
            if got:
                try:
                    # Another process may have finished between our miss and our lock.
                    raw = await self._redis(lambda r: r.get(full))
                    if raw is not None:
                        return cast(T, json.loads(raw))
                except RedisUnavailable:
                    pass
                try:
                    value = await compute()
                    await self._set_raw(full, json.dumps(value), ttl)
                    return value
                finally:
                    with contextlib.suppress(RedisUnavailable):
                        await self._redis(lambda r: r.eval(_RELEASE_LOCK, 1, lock_key, token))
            if not waited:
                waited = True
                self._lock_waits += 1
            if time.monotonic() >= deadline:
                log.info("cache_lock_wait_expired", key=full, waited_s=self.lock_wait_s)
                break
            await asyncio.sleep(self.lock_poll_s)
            try:
                raw = await self._redis(lambda r: r.get(full))
            except RedisUnavailable:
                break
            if raw is not None:
                return cast(T, json.loads(raw))
        value = await compute()
        await self._set_raw(full, json.dumps(value), ttl)
        return value

    # -- introspection ----------------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Hit/miss/fallback counters and the backend in use now."""
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            fallback_hits=self._fallback_hits,
            errors=self._errors,
            backend=self.backend,
            coalesced=self._coalesced,
            lock_waits=self._lock_waits,
        )

    async def health(self) -> dict[str, Any]:
        """Redis health plus the cache's backend, fallback size and counters."""
        redis_health = await self.conn.health()
        return {
            "ok": True,  # the cache always answers; Redis being down only lowers the hit rate
            "backend": self.backend,
            "redis": redis_health,
            "memory_entries": len(self.memory),
            "stats": self.stats().as_dict(),
        }
