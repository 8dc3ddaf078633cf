"""One bounded HTTP fetch: redirects followed by us one hop at a time, a size ceiling, one deadline.

The client is expected to carry a ``GuardedTransport`` (possibly wrapped by a cache transport); this
module re-checks every hop's URL with ``check_url`` before sending it, so a cached or redirected
URL is judged by the same rules as the first one.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Literal

import anyio
import httpx

from common.errors import InvalidInput, SuiteError
from common.netguard import BlockedURL, NetPolicy, check_url
from servers.web_access.netguard import GuardedTransport

DEFAULT_USER_AGENT = "mcp-suite-web-access/0.1 (+model-initiated fetch)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Sent again to another origin they would leak credentials or session state.
_ORIGIN_BOUND_HEADERS = ("authorization", "cookie", "proxy-authorization")
_CONDITIONAL_HEADERS = ("if-none-match", "if-modified-since")


class FetchFailed(SuiteError):
    """The page could not be fetched (network, TLS, protocol); the message says what happened."""


class FetchTimeout(FetchFailed):
    """No complete answer arrived within the call's time limit."""


class TooManyRedirects(FetchFailed):
    """The redirect chain was longer than the ceiling."""


class ResponseTooLarge(FetchFailed):
    """The body is larger than the ceiling and the caller asked to refuse rather than truncate."""


@dataclass(frozen=True)
class Hop:
    url: str
    status: int


@dataclass
class FetchResult:
    """What one fetch returned; ``body`` holds at most ``max_bytes`` (``truncated`` says if more existed)."""

    url: str  # the URL asked for, canonical
    final_url: str
    status: int
    headers: httpx.Headers
    content_type: str | None
    body: bytes
    truncated: bool
    declared_length: int | None
    elapsed_s: float
    redirects: list[Hop] = field(default_factory=list)
    from_cache: bool = False
    revalidated: bool = False  # the cache asked the origin to confirm a stored response
    stored: bool = False  # the cache stored this response
    #: Set instead of ``body`` when a cached body was left unread (``defer_cached_body``): its sha256.
    body_sha256: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        value: str | None = self.headers.get("etag")
        return value

    @property
    def last_modified(self) -> str | None:
        value: str | None = self.headers.get("last-modified")
        return value


def build_client(
    policy: NetPolicy,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    user_agent: str = DEFAULT_USER_AGENT,
) -> httpx.AsyncClient:
    """An AsyncClient for ``fetch``: guarded transport, no env proxies or .netrc, redirects left to us,
    and no cookie jar, so one caller's fetch never carries another's session to a site."""
    return httpx.AsyncClient(
        transport=transport or GuardedTransport(policy),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": user_agent},
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


#: Put on a response the HTTP cache read back from storage: the sha256 its stored body is kept under.
BODY_SHA_HEADER = "x-web-access-body-sha256"


def _caching(response: httpx.Response) -> tuple[bool, bool, bool]:
    """(from_cache, revalidated, stored) as a cache transport (hishel's ``caching`` extension) reports them."""
    status = response.extensions.get("caching")
    if not isinstance(status, Mapping):
        return False, False, False
    return bool(status.get("from_cache")), bool(status.get("revalidated")), bool(status.get("stored"))


def _declared_length(headers: httpx.Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw.strip())


async def fetch(
    url: str,
    *,
    client: httpx.AsyncClient,
    policy: NetPolicy,
    method: Literal["GET", "HEAD"] = "GET",
    timeout_s: float = 30.0,
    max_bytes: int = 5_000_000,
    max_redirects: int = 5,
    user_agent: str | None = None,
    headers: Mapping[str, str] | None = None,
    if_none_match: str | None = None,
    if_modified_since: str | None = None,
    refuse_oversize: bool = False,
    extensions: Mapping[str, Any] | None = None,
    defer_cached_body: bool = False,
) -> FetchResult:
    """Fetch ``url`` within ``timeout_s`` seconds in total, reading at most ``max_bytes`` of body.

    Redirects (301/302/303/307/308) are followed up to ``max_redirects`` hops, each re-checked by
    ``check_url`` and, at connect, by the client's guarded transport. A body over ``max_bytes`` is
    cut there and marked ``truncated``, or refused with ``ResponseTooLarge`` when ``refuse_oversize``.
    The conditional headers go to the first hop only; a 304 comes back as a result with no body.
    ``extensions`` go with every hop's request (a cache transport reads its per-request settings there).
    With ``defer_cached_body`` a body the cache serves from storage is not read: ``body`` is empty and
    ``body_sha256`` names the stored body.
    """
    if timeout_s <= 0 or max_bytes <= 0 or max_redirects < 0:
        raise InvalidInput("timeout_s and max_bytes must be positive and max_redirects not negative.")
    checked = check_url(url, policy)
    base_headers = httpx.Headers(headers or {})
    if user_agent:
        base_headers["User-Agent"] = user_agent
    # Only encodings we can decode with a bound; br/zstd would need their own bounded decoders.
    base_headers["Accept-Encoding"] = "gzip, deflate"
    first_headers = httpx.Headers(base_headers)
    if if_none_match:
        first_headers["If-None-Match"] = if_none_match
    if if_modified_since:
        first_headers["If-Modified-Since"] = if_modified_since
    started = time.monotonic()
    try:
        with anyio.fail_after(timeout_s):
            return await _follow(
                checked.url, client, policy, method, timeout_s, max_bytes, max_redirects, first_headers, base_headers,
                refuse_oversize, started, dict(extensions or {}), defer_cached_body,
            )  # fmt: skip
    except TimeoutError:
        raise FetchTimeout(
            f"{checked.host} gave no complete answer within {timeout_s:g} s; try again later or raise timeout_s."
        ) from None


async def _follow(
    current: httpx.URL,
    client: httpx.AsyncClient,
    policy: NetPolicy,
    method: str,
    timeout_s: float,
    max_bytes: int,
    max_redirects: int,
    first_headers: httpx.Headers,
    base_headers: httpx.Headers,
    refuse_oversize: bool,
    started: float,
    extensions: dict[str, Any],
    defer_cached_body: bool,
) -> FetchResult:
    asked = str(current)
    first_origin = _origin(current)
    hops: list[Hop] = []
    send_headers = first_headers
    while True:
        request = client.build_request(
            method, current, headers=send_headers, timeout=httpx.Timeout(timeout_s), extensions=dict(extensions)
        )
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise FetchTimeout(f"{current.host} did not answer within {timeout_s:g} s.") from None
        except httpx.HTTPError as exc:
            raise FetchFailed(
                f"Fetching {str(current)[:80]!r} failed: {type(exc).__name__}: {str(exc)[:200]}"
            ) from None
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                hops.append(Hop(str(current), response.status_code))
                if len(hops) > max_redirects:
                    raise TooManyRedirects(
                        f"{asked[:80]!r} redirected more than {max_redirects} times; the last hop went to "
                        f"{location[:80]!r}. Fetch that URL directly if it is the page you want."
                    )
                try:
                    target = current.join(location)
                except httpx.InvalidURL:
                    raise FetchFailed(
                        f"{str(current)[:80]!r} redirected to an invalid URL {location[:80]!r}."
                    ) from None
                try:
                    next_url = check_url(str(target), policy).url
                except BlockedURL as exc:
                    raise BlockedURL(f"{str(current)[:80]!r} redirected to a refused destination. {exc}") from None
                send_headers = httpx.Headers(base_headers)
                if _origin(next_url) != first_origin:
                    for name in _ORIGIN_BOUND_HEADERS:
                        send_headers.pop(name, None)
                current = next_url
                continue
            from_cache, revalidated, stored = _caching(response)
            stored_sha = response.headers.get(BODY_SHA_HEADER) if defer_cached_body and from_cache else None
            if stored_sha is not None:
                body, truncated = b"", False
            else:
                body, truncated = await _read_bounded(response, max_bytes, refuse_oversize, str(current))
        finally:
            await response.aclose()
        return FetchResult(
            url=asked,
            final_url=str(current),
            status=response.status_code,
            headers=response.headers,
            content_type=response.headers.get("content-type"),
            body=body,
            truncated=truncated,
            declared_length=_declared_length(response.headers),
            elapsed_s=time.monotonic() - started,
            redirects=hops,
            from_cache=from_cache,
            revalidated=revalidated,
            stored=stored,
            body_sha256=stored_sha,
        )


async def _read_bounded(response: httpx.Response, max_bytes: int, refuse: bool, url: str) -> tuple[bytes, bool]:
    declared = _declared_length(response.headers)
    if refuse and declared is not None and declared > max_bytes:
        raise ResponseTooLarge(
            f"{url[:80]!r} declares {declared} bytes, over the {max_bytes}-byte ceiling; "
            "raise max_bytes or fetch a smaller resource."
        )
    body = BoundedBody(max_bytes, response.headers.get("content-encoding", ""), url)
    truncated = False
    try:
        async for chunk in response.aiter_raw():
            if body.feed(chunk):
                truncated = True
                break
        else:
            truncated = body.finish()
    except httpx.TimeoutException:
        raise FetchTimeout(f"{url[:80]!r} stopped sending its body before the time limit ran out.") from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"Reading {url[:80]!r} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if truncated and refuse:
        raise ResponseTooLarge(
            f"{url[:80]!r} sent more than the {max_bytes}-byte ceiling; raise max_bytes or fetch a smaller resource."
        )
    return body.value(), truncated


class BoundedBody:
    """Decodes gzip/deflate ourselves so a compression bomb never expands past the ceiling in memory."""

    def __init__(self, max_bytes: int, encoding: str, url: str) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.parts: list[bytes] = []
        encoding = encoding.strip().lower()
        self._raw_deflate_retry = False
        if encoding in ("", "identity"):
            self._decoder: Any = None
        elif encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
            self._raw_deflate_retry = True
        else:
            raise FetchFailed(f"{url[:80]!r} answered with content-encoding {encoding[:40]!r}, which is not supported.")

    def _keep(self, data: bytes) -> bool:
        room = self.max_bytes - self.size
        if len(data) > room:
            self.parts.append(data[:room])
            self.size = self.max_bytes
            return True
        self.parts.append(data)
        self.size += len(data)
        return False

    def feed(self, chunk: bytes) -> bool:
        """Add raw bytes; True once the decoded body passed the ceiling (the rest is not wanted)."""
        if self._decoder is None:
            return self._keep(chunk)
        data = chunk
        while data:
            try:
                out = self._decoder.decompress(data, self.max_bytes - self.size + 1)
            except zlib.error:
                if not self._raw_deflate_retry or self.size:
                    raise FetchFailed("The response body is not valid compressed data.") from None
                # Some servers send raw deflate without the zlib wrapper the name promises.
                self._raw_deflate_retry = False
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._raw_deflate_retry = False
            data = self._decoder.unconsumed_tail
            if self._keep(out):
                return True
        return False

    def finish(self) -> bool:
        if self._decoder is None:
            return False
        return self._keep(self._decoder.flush())

    def value(self) -> bytes:
        return b"".join(self.parts)
