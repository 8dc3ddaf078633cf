"""HTTP caching rules (RFC 9111) for a private cache of whole pages: store or not, fresh until when.

hishel's storage contract keeps many entries per key under random ids; this server keeps exactly
one row per normalised URL that also holds the extracted document, and needs per-call ``max_age``
and a ``force_refresh`` that downloads without validators. So the few rules it needs live here:

- ``no-store`` (request or response): never answered from the cache (the document is still kept
  for paging the answer just fetched).
- freshness lifetime: ``max-age``, else ``Expires`` minus ``Date``, else (for heuristically
  cacheable statuses with ``Last-Modified``) 10 % of the time since it, capped at one day;
  ``no-cache`` makes it zero (revalidate every time). ``s-maxage`` is ignored: this cache is
  private to its user. The ``Age`` header counts against the lifetime.
- validators for revalidation: ``ETag`` and ``Last-Modified``; a 304 merges its headers into the
  stored ones (RFC 9111 section 4.3.4) and the freshness is computed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = timedelta(days=1)
#: Stored response headers (lower-case names) that the freshness rules and the caller need.
KEPT_HEADERS = ("cache-control", "expires", "date", "age", "etag", "last-modified", "content-type", "vary")
#: Headers a 304 must not overwrite in the stored set (RFC 9111 section 3.2).
_NOT_UPDATED = frozenset({"content-length", "content-encoding", "content-type", "transfer-encoding"})


def cache_control(value: str | None) -> dict[str, str | None]:
    """Directives of a Cache-Control value: lower-case names, unquoted arguments (None when bare)."""
    out: dict[str, str | None] = {}
    for part in (value or "").split(","):
        name, eq, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name:
            out[name] = arg.strip().strip('"') if eq else None
    return out


def _seconds(arg: str | None) -> int | None:
    if arg is None or not arg.strip().isdigit():
        return None
    return min(int(arg.strip()), 2**31)


def http_date(value: str | None) -> datetime | None:
    """A parsed HTTP date (UTC), or None when missing or invalid (an invalid Expires means expired)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth storing, lower-cased."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return {name: lowered[name] for name in KEPT_HEADERS if name in lowered}


def merge_304(stored: Mapping[str, str], fresh: Mapping[str, str]) -> dict[str, str]:
    """Stored headers updated by a 304's headers (content headers excepted)."""
    merged = dict(stored)
    for name, value in kept_headers(fresh).items():
        if name not in _NOT_UPDATED:
            merged[name] = value
    return merged


@dataclass(frozen=True)
class Policy:
    """What the rules say about one stored response."""

    storable: bool  # may be answered from the cache at all
    fresh_until: datetime | None  # None: must be revalidated before reuse
    etag: str | None
    last_modified: str | None


def evaluate(status: int, headers: Mapping[str, str], received_at: datetime) -> Policy:
    """Freshness of a response received at ``received_at`` with ``headers`` (lower-case names)."""
    h = {k.lower(): v for k, v in headers.items()}
    cc = cache_control(h.get("cache-control"))
    etag = h.get("etag") or None
    last_modified = h.get("last-modified") or None
    if "no-store" in cc:
        return Policy(False, None, etag, last_modified)
    lifetime = _lifetime(status, h, cc)
    age = _seconds(h.get("age")) or 0
    fresh_until = None
    if lifetime is not None and lifetime.total_seconds() - age > 0:
        fresh_until = received_at + lifetime - timedelta(seconds=age)
    return Policy(True, fresh_until, etag, last_modified)


def _lifetime(status: int, h: Mapping[str, str], cc: Mapping[str, str | None]) -> timedelta | None:
    if "no-cache" in cc:
        return None
    max_age = _seconds(cc.get("max-age")) if "max-age" in cc else None
    if max_age is not None:
        return timedelta(seconds=max_age)
    if "expires" in h:
        expires = http_date(h.get("expires"))
        date = http_date(h.get("date"))
        if expires is None or date is None:
            return None
        return max(expires - date, timedelta(0))
    modified = http_date(h.get("last-modified"))
    date = http_date(h.get("date"))
    if status in HEURISTIC_STATUSES and modified is not None and date is not None and date > modified:
        return min((date - modified) * HEURISTIC_FRACTION, HEURISTIC_CAP)
    return None


def reusable(
    *,
    fresh_until: datetime | None,
    checked_at: datetime,
    storable: bool,
    now: datetime,
    max_age_s: float | None,
) -> bool:
    """Whether a stored copy may answer without asking the origin.

    ``max_age_s`` (the caller's own limit) overrides the response's freshness: a copy checked with
    the origin at most that many seconds ago is reused; 0 always asks.
    """
    if not storable:
        return False
    if max_age_s is not None:
        return (now - checked_at).total_seconds() <= max_age_s
    return fresh_until is not None and now < fresh_until
