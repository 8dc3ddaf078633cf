"""robots.txt rules per origin, fetched through a callable and cached with a TTL.

Status policy, after RFC 9309 section 2.3.1 and what major crawlers do:
- 2xx: the file's rules apply (first 500 KiB parsed, as the RFC allows).
- 4xx other than 429 (and more than five redirects): "unavailable", so everything is allowed.
- 429, 5xx, or no answer at all (DNS, connect, TLS, timeout): "unreachable", so nothing is
  allowed. A model-initiated fetch errs on the side of the site: a broken server is not consent.
  These answers are cached for a shorter time (``error_ttl_s``) so a recovered site is seen soon.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
import httpx
from protego import Protego

from common.errors import InvalidInput
from common.netguard import BlockedURL, NetPolicy
from servers.web_access.fetcher import FetchFailed, TooManyRedirects, fetch

MAX_ROBOTS_BYTES = 500 * 1024


@dataclass(frozen=True)
class RobotsAnswer:
    """What fetching /robots.txt gave: an HTTP status and body, or ``status=None`` when unreachable."""

    status: int | None
    body: bytes = b""


RobotsFetch = Callable[[str], Awaitable[RobotsAnswer]]


@dataclass
class RobotsRules:
    """The rules of one origin and how they were decided."""

    origin: str
    policy: Literal["rules", "allow_all", "disallow_all"]
    reason: str
    expires_at: float
    parser: Protego | None = None
    sitemaps: list[str] = field(default_factory=list)

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.policy == "allow_all":
            return True
        if self.policy == "disallow_all" or self.parser is None:
            return False
        return bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        return float(delay) if delay is not None else None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, default ports left out."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidInput(f"{url[:80]!r} is not a valid URL.") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput(f"{url[:80]!r} is not an absolute http(s) URL.")
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.raw_host.decode("ascii")
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{host}{port}"


def decide(origin: str, answer: RobotsAnswer, *, now: float, ttl_s: float, error_ttl_s: float) -> RobotsRules:
    """The rules an answer implies, under the status policy in this module's docstring."""
    status = answer.status
    if status is None:
        return RobotsRules(origin, "disallow_all", "robots.txt unreachable: nothing allowed", now + error_ttl_s)
    if 200 <= status < 300:
        text = answer.body[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        parser = Protego.parse(text)
        return RobotsRules(origin, "rules", f"robots.txt (HTTP {status})", now + ttl_s, parser, list(parser.sitemaps))
    if status == 429 or status >= 500:
        return RobotsRules(origin, "disallow_all", f"robots.txt answered HTTP {status}: nothing allowed", now + error_ttl_s)  # fmt: skip
    return RobotsRules(origin, "allow_all", f"no robots.txt (HTTP {status}): everything allowed", now + ttl_s)


class RobotsCache:
    """Rules per origin, fetched once per TTL; concurrent asks for one origin share one fetch."""

    def __init__(
        self,
        fetch_robots: RobotsFetch,
        *,
        ttl_s: float = 3600.0,
        error_ttl_s: float = 300.0,
        max_origins: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch_robots
        self._ttl_s = ttl_s
        self._error_ttl_s = error_ttl_s
        self._max_origins = max_origins
        self._clock = clock
        self._rules: dict[str, RobotsRules] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def rules(self, url: str) -> RobotsRules:
        origin = origin_of(url)
        cached = self._rules.get(origin)
        if cached is not None and cached.expires_at > self._clock():
            return cached
        lock = self._locks.setdefault(origin, anyio.Lock())
        async with lock:
            cached = self._rules.get(origin)
            if cached is not None and cached.expires_at > self._clock():
                return cached
            answer = await self._fetch(origin + "/robots.txt")
            rules = decide(origin, answer, now=self._clock(), ttl_s=self._ttl_s, error_ttl_s=self._error_ttl_s)
            self._rules.pop(origin, None)
            self._rules[origin] = rules
            while len(self._rules) > self._max_origins:
                oldest = next(iter(self._rules))
                del self._rules[oldest]
                self._locks.pop(oldest, None)
            return rules

    async def allowed(self, url: str, user_agent: str) -> bool:
        """Whether ``user_agent`` may fetch ``url`` under its origin's robots.txt."""
        return (await self.rules(url)).allowed(url, user_agent)

    async def crawl_delay(self, url: str, user_agent: str) -> float | None:
        """The Crawl-delay (seconds) robots.txt sets for ``user_agent`` on ``url``'s origin, if any."""
        return (await self.rules(url)).crawl_delay(user_agent)


def robots_fetcher(
    client: httpx.AsyncClient,
    policy: NetPolicy,
    *,
    user_agent: str | None = None,
    timeout_s: float = 10.0,
) -> RobotsFetch:
    """A ``RobotsFetch`` over ``fetcher.fetch``: five redirects at most, 500 KiB at most."""

    async def get(robots_url: str) -> RobotsAnswer:
        try:
            result = await fetch(
                robots_url, client=client, policy=policy, timeout_s=timeout_s, max_bytes=MAX_ROBOTS_BYTES,
                max_redirects=5, user_agent=user_agent,
            )  # fmt: skip
        except TooManyRedirects:
            return RobotsAnswer(404)
        except (FetchFailed, BlockedURL):
            return RobotsAnswer(None)
        return RobotsAnswer(result.status, result.body)

    return get
