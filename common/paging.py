"""Paging kit: one result shape and one opaque cursor for every list and search tool.

A cursor carries a position (an offset, or the last key seen for keyset paging) and a fingerprint
of the query and filters that produced it, so a cursor reused with another query is refused with a
clear error instead of silently paging through something else. Cursors are opaque to clients but
not secret; a tampered one (negative, non-integer or out-of-range offset, foreign fingerprint) is
refused the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from common.errors import InvalidInput

T = TypeVar("T")

#: Largest offset a cursor may carry; deeper paging is a sign of a query that should be narrowed.
MAX_OFFSET = 1_000_000
#: Longest cursor accepted (a cursor is a few dozen characters; anything longer is not ours).
MAX_CURSOR_CHARS = 512
#: Scalar types a keyset cursor may carry as its last key.
_KEY_TYPES = (str, int, float)

_REFUSED = "cursor is not a next_cursor of this call with these arguments; repeat the call without it."


class Paged(BaseModel):
    """The paging fields of a list or search result; a tool's result model adds its items under its own name."""

    total: int = 0
    truncated: bool = False
    next_cursor: str | None = None


class Page(BaseModel, Generic[T]):
    """One page of a list or search result."""

    items: list[T]
    total: int = Field(description="Items matching the query (before paging).")
    truncated: bool = Field(description="More items exist after this page.")
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page.")


def fingerprint(*parts: Any) -> str:
    """A short hash of a query and its filters; a cursor is accepted only by the query that made it."""
    raw = json.dumps(parts, default=str, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Position:
    """Where a page starts: an offset, or (keyset paging) the last key of the previous page."""

    offset: int = 0
    after: str | int | float | None = None


def encode_cursor(fp: str, *, offset: int = 0, after: str | int | float | None = None) -> str:
    """An opaque cursor for the page starting at ``offset`` (or after key ``after``) of query ``fp``."""
    body: dict[str, Any] = {"q": fp, "o": offset}
    if after is not None:
        body["a"] = after
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, fp: str) -> Position:
    """The position in ``cursor`` (the start when it is None); InvalidInput when it is not ours or not this query's."""
    if cursor is None:
        return Position()
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidInput(_REFUSED)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(_REFUSED) from None
    if not isinstance(body, dict) or body.get("q") != fp:
        raise InvalidInput(_REFUSED)
    offset = body.get("o")
    after = body.get("a")
    # bool is an int subclass: a cursor claiming offset `true` is tampered, not page one.
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(_REFUSED)
    if after is not None and (type(after) not in _KEY_TYPES or (isinstance(after, str) and len(after) > 256)):
        raise InvalidInput(_REFUSED)
    return Position(offset=offset, after=after)


def page_of(items: Sequence[T], *, total: int, offset: int, limit: int, fp: str) -> Page[T]:
    """A :class:`Page` of ``items`` (at most ``limit``) found at ``offset`` of ``total``, with its next cursor."""
    shown = list(items[:limit])
    more = offset + len(shown) < total
    return Page[T](
        items=shown,
        total=total,
        truncated=more,
        next_cursor=encode_cursor(fp, offset=offset + len(shown)) if more and shown else None,
    )


def slice_page(items: Sequence[T], *, cursor: str | None, limit: int, fp: str) -> Page[T]:
    """Page through a list held in memory (a ranked search result): decode, slice, encode."""
    offset = decode_cursor(cursor, fp).offset
    return page_of(items[offset : offset + limit], total=len(items), offset=offset, limit=limit, fp=fp)


def keyset_page(rows: Sequence[T], *, total: int, limit: int, fp: str, key: Any) -> Page[T]:
    """A page from ``limit + 1`` rows fetched after a key; ``key(row)`` gives the next cursor's key."""
    more = len(rows) > limit
    shown = list(rows[:limit])
    cursor = encode_cursor(fp, after=key(shown[-1])) if more and shown else None
    return Page[T](items=shown, total=total, truncated=more, next_cursor=cursor)
