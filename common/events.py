"""Events between processes and servers: Redis pub/sub, with PostgreSQL LISTEN/NOTIFY as the fallback.

A server publishes "what changed" (so other processes drop cache entries or send MCP resource-updated
notifications). Publishing goes over Redis while it is up and over ``pg_notify`` while it is not;
subscribers listen on both paths at once and drop duplicates by event id, so an event is seen once
whichever path carried it, including across the moments Redis goes down or comes back.

Neither path can be forged by another local user or process: a NOTIFY is delivered only if the role
that sent it is the server's own (PostgreSQL names the sending backend), and Redis, which says
nothing about senders, carries events signed with an HMAC key that only the suite's processes can
read (:func:`sign`); unsigned, forged or stale ones are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import random
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import SecretStr
from redis.exceptions import RedisError

from common.logging import get_logger, redact
from common.redis_conn import RedisConnection, RedisUnavailable, is_connection_error

log = get_logger(__name__)

Handler = Callable[["Event"], Awaitable[None]]
Path = Literal["redis", "pg"]

_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SERVER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EVENT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_PG_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: PostgreSQL rejects NOTIFY payloads of 8000 bytes or more.
PG_PAYLOAD_LIMIT = 8000
#: After Redis comes back, events also go over NOTIFY this long: other processes' subscribers may
#: not have re-subscribed to Redis yet, while this process's own subscription already counts as a receiver.
REDIS_SETTLE_S = 10.0
#: How long a sending backend's role is trusted without asking again.
SENDER_TTL_S = 30.0
#: The role of the backend that sent a notification.
#: Signed Redis payloads: ``v1:<hex HMAC-SHA256 of the envelope JSON>:<envelope JSON>``.
SIGNED_PREFIX = "v1:"
_MAC_HEX_CHARS = 64
#: A signed event whose ``at`` is further than this from now is a replay (Redis delivers at once).
REPLAY_WINDOW_S = 300.0
SENDER_ROLE = """
SELECT r.rolname, r.rolsuper FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid WHERE a.pid = $1
"""


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        raise ValueError(f"invalid {kind} {value!r}: use letters, digits, '_' or '-' (events may also use '.')")
    return value


def pg_channel_for(prefix: str) -> str:
    """The PostgreSQL NOTIFY channel for ``prefix`` (``mcp_events_<prefix>``), validated as an identifier."""
    channel = "mcp_events_" + prefix.lower().replace("-", "_")
    if not _PG_IDENT.match(channel):
        raise ValueError(f"redis prefix {prefix!r} does not make a valid PostgreSQL channel name ({channel!r})")
    return channel


@dataclass(frozen=True)
class Event:
    """The envelope every event travels in: ``{event, server, id, at, data}``."""

    event: str
    server: str
    id: str
    at: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, server: str, event: str, data: Mapping[str, Any] | None = None) -> Event:
        """A fresh event with a random id and the current UTC time."""
        return cls(
            event=event,
            server=server,
            id=uuid.uuid4().hex,
            at=datetime.now(UTC).isoformat(),
            data=dict(data or {}),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """Parse an envelope; raises ValueError when it is not one."""
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"event is not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ValueError("event envelope must be a JSON object")
        for name in ("event", "server", "id", "at"):
            if not isinstance(obj.get(name), str):
                raise ValueError(f"event envelope lacks a string {name!r}")
        data = obj.get("data", {})
        if not isinstance(data, dict):
            raise ValueError("event envelope 'data' must be an object")
        return cls(event=obj["event"], server=obj["server"], id=obj["id"], at=obj["at"], data=data)


def sign(key: bytes, envelope_json: str) -> str:
    """The Redis payload of an envelope: its HMAC-SHA256 under ``key``, then the envelope."""
    mac = hmac.new(key, envelope_json.encode(), hashlib.sha256).hexdigest()
    return f"{SIGNED_PREFIX}{mac}:{envelope_json}"


def verify(key: bytes, payload: str | bytes) -> Event:
    """The event in a signed payload; raises ValueError when it is unsigned, forged or stale."""
    text = payload.decode(errors="replace") if isinstance(payload, bytes) else str(payload)
    if not text.startswith(SIGNED_PREFIX):
        raise ValueError("event is not signed")
    mac, sep, body = text[len(SIGNED_PREFIX) :].partition(":")
    if not sep or len(mac) != _MAC_HEX_CHARS:
        raise ValueError("event signature is malformed")
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected):
        raise ValueError("event signature does not match")
    event = Event.from_json(body)
    try:
        age = abs(time.time() - datetime.fromisoformat(event.at).timestamp())
    except (ValueError, TypeError) as exc:
        raise ValueError("event time is not an ISO timestamp") from exc
    if age > REPLAY_WINDOW_S:
        raise ValueError(f"event is {age:.0f}s away from now (a replay)")
    return event


def _set_event(event: asyncio.Event, _conn: Any) -> None:
    event.set()


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.5, 1.0)


class Subscription:
    """One handler listening for matching events; delivers each event once, in arrival order.

    Counters (``delivered``, ``via_redis``, ``via_pg``, ``duplicates``, ``handler_errors``, ``dropped``)
    and ``redis_listening`` are for health checks and tests.
    """

    def __init__(
        self,
        bus: EventBus,
        handler: Handler,
        *,
        server: str | None,
        event: str | None,
        max_queue: int,
        dedup_size: int,
    ) -> None:
        self.bus = bus
        self.handler = handler
        self.server = server
        self.event = event
        self.pattern = f"{bus.prefix}:{server or '*'}.{event or '*'}"
        self.redis_listening = False
        self.delivered = 0
        self.via_redis = 0
        self.via_pg = 0
        self.duplicates = 0
        self.handler_errors = 0
        self.dropped = 0
        #: Redis messages dropped as unsigned, forged, stale or malformed.
        self.rejected = 0
        self._queue: asyncio.Queue[tuple[Event, Path]] = asyncio.Queue(max_queue)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedup_size = dedup_size
        self._subscribed = asyncio.Event()
        self._closed = False
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name=f"events-dispatch-{self.pattern}"),
            asyncio.create_task(self._redis_loop(), name=f"events-redis-{self.pattern}"),
        ]

    def matches(self, event: Event) -> bool:
        """Whether ``event`` is one this subscription asked for."""
        return (self.server is None or event.server == self.server) and (
            self.event is None or event.event == self.event
        )

    def offer(self, event: Event, via: Path) -> None:
        """Queue ``event`` for the handler if it matches (duplicates are dropped when dispatched)."""
        if self._closed or not self.matches(event):
            return
        try:
            self._queue.put_nowait((event, via))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event_queue_full", pattern=self.pattern, event_name=event.event, event_id=event.id)

    async def wait_redis_listening(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until the Redis PSUBSCRIBE is confirmed; returns whether it is."""
        if not self.redis_listening:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        return self.redis_listening

    async def close(self) -> None:
        """Stop listening; the handler is not called again."""
        if self._closed:
            return
        self._closed = True
        self.bus._forget(self)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _dispatch_loop(self) -> None:
        while True:
            event, via = await self._queue.get()
            if event.id in self._seen:
                self.duplicates += 1
                continue
            self._seen[event.id] = None
            if len(self._seen) > self._dedup_size:
                self._seen.popitem(last=False)
            self.delivered += 1
            if via == "redis":
                self.via_redis += 1
            else:
                self.via_pg += 1
            try:
                await self.handler(event)
            except Exception:
                self.handler_errors += 1
                log.exception("event_handler_failed", pattern=self.pattern, event_name=event.event, event_id=event.id)

    async def _redis_loop(self) -> None:
        """Keep a PSUBSCRIBE alive: after any failure, wait for Redis, back off, subscribe again."""
        conn = self.bus.conn
        backoff = 0.05
        while True:
            if not conn.available:
                await conn.wait_available(1.0)
                continue
            pubsub = conn.client.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    kind = message.get("type")
                    if kind == "psubscribe":
                        self.redis_listening = True
                        self._subscribed.set()
                        backoff = 0.05
                    elif kind == "pmessage":
                        self._on_redis_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_connection_error(exc):
                    conn.report_failure(exc)
                else:
                    log.warning("events_redis_listener_error", pattern=self.pattern, error=redact(str(exc)))
            finally:
                self.redis_listening = False
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(_jitter(backoff))
            backoff = min(backoff * 2, 1.0)

    def _on_redis_message(self, data: Any) -> None:
        key = self.bus.signing_key
        try:
            event = verify(key, data) if key is not None else Event.from_json(data)
        except (ValueError, TypeError) as exc:
            self.rejected += 1
            log.warning("event_rejected", path="redis", pattern=self.pattern, error=str(exc)[:200])
            return
        self.offer(event, "redis")


class EventBus:
    """Publishes this server's events and runs subscriptions; one per process and server."""

    def __init__(
        self,
        conn: RedisConnection,
        *,
        prefix: str,
        server: str,
        pg_url: str | None,
        max_queue: int = 10_000,
        dedup_size: int = 4096,
        signing_key: bytes | None = None,
    ) -> None:
        self.conn = conn
        #: Signs what goes over Redis and is required of what comes from it; None: plain, unchecked JSON.
        self.signing_key = signing_key
        self.prefix = _check("prefix", prefix, _PREFIX)
        self.server = _check("server", server, _SERVER)
        self.pg_url = pg_url
        self.pg_channel = pg_channel_for(prefix)
        self.max_queue = max_queue
        self.dedup_size = dedup_size
        self.pg_listening = False
        self.published_redis = 0
        self.published_pg = 0
        self.dropped = 0
        self._subs: list[Subscription] = []
        self._pg_task: asyncio.Task[None] | None = None
        self._pg_listen_ready = asyncio.Event()
        self._pg_pub: asyncpg.Connection | None = None
        self._pg_pub_lock = asyncio.Lock()
        self._closed = False
        #: Sending backends' roles by pid, briefly (a pid can be reused once its backend has ended).
        self._senders: dict[int, tuple[tuple[str, bool], float]] = {}
        self._checks: set[asyncio.Task[None]] = set()
        self._listen_lock = asyncio.Lock()
        #: NOTIFY payloads received (before the sender check), for health reports and tests.
        self.notified = 0

    @classmethod
    async def start(
        cls,
        conn: RedisConnection,
        *,
        prefix: str,
        server: str,
        pg_url: str | SecretStr | None,
        max_queue: int = 10_000,
        dedup_size: int = 4096,
        signing_key: bytes | SecretStr | None = None,
    ) -> EventBus:
        """A bus for ``server``; ``pg_url`` (any role may LISTEN/NOTIFY) enables the PostgreSQL fallback.

        With ``signing_key`` (every server process of the suite passes the same one) Redis carries
        only HMAC-signed events; without it, plain JSON that anyone who can publish could forge.
        """
        raw = pg_url.get_secret_value() if isinstance(pg_url, SecretStr) else pg_url
        key = signing_key.get_secret_value().encode() if isinstance(signing_key, SecretStr) else signing_key
        return cls(
            conn,
            prefix=prefix,
            server=server,
            pg_url=raw,
            max_queue=max_queue,
            dedup_size=dedup_size,
            signing_key=key,
        )

    def channel(self, server: str, event: str) -> str:
        """The Redis channel of ``event`` from ``server``: ``<prefix>:<server>.<event>``."""
        return f"{self.prefix}:{_check('server', server, _SERVER)}.{_check('event', event, _EVENT)}"

    async def publish(self, event: str, data: Mapping[str, Any] | None = None) -> Event:
        """Send ``event`` with ``data`` to every subscriber of every process; returns the envelope sent.

        Never raises for an unreachable Redis or PostgreSQL: events are advisory, so a lost one is
        logged and counted in ``dropped``.
        """
        channel = self.channel(self.server, event)
        envelope = Event.new(self.server, event, data)
        payload = envelope.to_json()
        if self.signing_key is not None:
            payload = sign(self.signing_key, payload)
        if self.conn.available:
            try:
                receivers = await self.conn.run(lambda r: r.publish(channel, payload))
                self.published_redis += 1
                # Nobody listening on Redis, or Redis just back, may mean a subscriber is between
                # reconnects; NOTIFY covers it (subscribers drop the duplicate by event id).
                back = self.conn.recovered_at
                settled = back is None or time.monotonic() - back >= REDIS_SETTLE_S
                if (int(receivers) > 0 and settled) or self.pg_url is None:
                    return envelope
            except RedisUnavailable:
                pass
            except RedisError as exc:
                log.warning("event_publish_redis_error", event_name=event, error=redact(str(exc)))
        if self.pg_url is not None and await self._notify(envelope):
            return envelope
        self.dropped += 1
        log.warning(
            "event_dropped", event_name=event, event_id=envelope.id, reason="neither Redis nor PostgreSQL reachable"
        )
        return envelope

    async def subscribe(
        self,
        handler: Handler,
        *,
        server: str | None = None,
        event: str | None = None,
        ready_timeout_s: float = 2.0,
    ) -> Subscription:
        """Call ``handler`` for each event from ``server`` (None: any) named ``event`` (None: any).

        Returns once both paths listen (bounded by ``ready_timeout_s``; a path that is down is
        picked up in the background), so an event published after this returns is not missed.
        """
        if server is not None:
            _check("server", server, _SERVER)
        if event is not None:
            _check("event", event, _EVENT)
        if self._closed:
            raise RuntimeError("event bus is closed")
        sub = Subscription(
            self, handler, server=server, event=event, max_queue=self.max_queue, dedup_size=self.dedup_size
        )
        self._subs.append(sub)
        waits: list[Awaitable[Any]] = []
        if self.pg_url is not None:
            if self._pg_task is None:
                self._pg_task = asyncio.create_task(self._pg_listen_loop(), name=f"events-pg-{self.pg_channel}")
            waits.append(self._wait_pg_listening(ready_timeout_s))
        if self.conn.available:
            waits.append(sub.wait_redis_listening(ready_timeout_s))
        await asyncio.gather(*waits)
        return sub

    async def close(self) -> None:
        """Close every subscription, the PostgreSQL listener and publisher; cancels all background tasks."""
        self._closed = True
        for check in list(self._checks):
            check.cancel()
        for sub in list(self._subs):
            await sub.close()
        task, self._pg_task = self._pg_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._pg_pub_lock:
            if self._pg_pub is not None:
                with contextlib.suppress(Exception):
                    await self._pg_pub.close(timeout=2)
                self._pg_pub = None

    def health(self) -> dict[str, Any]:
        """Which paths work and the counters, for ``doctor`` and health tools."""
        return {
            "redis": self.conn.available,
            "pg_listening": self.pg_listening if self.pg_url else None,
            "subscriptions": len(self._subs),
            "published_redis": self.published_redis,
            "published_pg": self.published_pg,
            "dropped": self.dropped,
        }

    def _forget(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    async def _wait_pg_listening(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._pg_listen_ready.wait(), timeout_s)

    async def _notify(self, envelope: Event) -> bool:
        payload = envelope.to_json()
        if len(payload.encode()) >= PG_PAYLOAD_LIMIT:
            # Subscribers see that data is missing and re-read the source of truth.
            payload = replace(envelope, data={"truncated": True}).to_json()
        assert self.pg_url is not None
        last: BaseException | None = None
        async with self._pg_pub_lock:
            for _ in range(2):  # a second try on a fresh connection if the kept one died
                try:
                    if self._pg_pub is None or self._pg_pub.is_closed():
                        self._pg_pub = await asyncpg.connect(self.pg_url, timeout=5)
                    await self._pg_pub.execute("SELECT pg_notify($1, $2)", self.pg_channel, payload)
                    self.published_pg += 1
                    return True
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    last = exc
                    if self._pg_pub is not None:
                        self._pg_pub.terminate()
                    self._pg_pub = None
        log.warning("event_notify_failed", event_name=envelope.event, error=redact(str(last)))
        return False

    def _on_notify(self, conn: Any, pid: int, _channel: str, payload: object) -> None:
        try:
            event = Event.from_json(str(payload))
        except ValueError as exc:
            log.warning("event_malformed", path="pg", error=str(exc))
            return
        self.notified += 1
        task = asyncio.get_running_loop().create_task(self._deliver_if_genuine(conn, pid, event))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _deliver_if_genuine(self, conn: asyncpg.Connection, pid: int, event: Event) -> None:
        """Deliver a NOTIFY only if the role that sent it may speak for ``event.server``.

        Any role may NOTIFY any channel, but PostgreSQL tells the listener which backend sent each
        notification: its role must be the server's own role (or a superuser, which can do anything
        anyway), so one server's role cannot forge another server's events.
        """
        cached = self._senders.get(pid)
        role = cached[0] if cached is not None and time.monotonic() - cached[1] < SENDER_TTL_S else None
        if role is None:
            try:
                # The LISTEN connection answers one statement at a time (its keep-alive shares it).
                async with self._listen_lock:
                    row = await conn.fetchrow(SENDER_ROLE, pid, timeout=5)
            except Exception as exc:  # the listener reconnects; an unverified event is dropped, not trusted
                log.warning("event_sender_unknown", error=redact(str(exc))[:200])
                return
            if row is None:  # the sender has already disconnected: nothing vouches for it
                log.warning("event_sender_gone", event_name=event.event, server=event.server)
                return
            role = (str(row["rolname"]), bool(row["rolsuper"]))
            if len(self._senders) > 1024:
                self._senders.clear()
            self._senders[pid] = (role, time.monotonic())
        name, superuser = role
        if not superuser and name != event.server:
            log.warning("event_forged", event_name=event.event, claimed=event.server, sender_role=name)
            return
        for sub in list(self._subs):
            sub.offer(event, "pg")

    async def _pg_listen_loop(self) -> None:
        """Keep one LISTEN connection open for every subscription; reconnect with backoff when it is lost."""
        assert self.pg_url is not None
        backoff = 0.1
        warned = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.pg_url, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(self.pg_channel, self._on_notify)
                self.pg_listening = True
                self._pg_listen_ready.set()
                if warned:
                    log.info("events_pg_listener_recovered", channel=self.pg_channel)
                    warned = False
                backoff = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        # A silently dropped TCP connection never fires the termination listener.
                        async with self._listen_lock:
                            await conn.execute("SELECT 1", timeout=5)
                raise ConnectionError("the LISTEN connection was closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not warned:
                    warned = True
                    log.warning("events_pg_listener_lost", channel=self.pg_channel, error=redact(str(exc)))
            finally:
                self.pg_listening = False
                self._pg_listen_ready.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(_jitter(backoff))
            backoff = min(backoff * 2, 2.0)
