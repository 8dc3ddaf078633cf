"""The paging kit: one cursor format, bound to its query, refused when reused or tampered with."""

from __future__ import annotations

import base64
import json

import pytest

from common.errors import InvalidInput
from common.paging import Page, decode_cursor, encode_cursor, fingerprint, keyset_page, page_of, slice_page


def _forge(body: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def test_paging_through_a_list_returns_every_item_once() -> None:
    items = list(range(23))
    fp = fingerprint("q", {"tag": "x"})
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = slice_page(items, cursor=cursor, limit=5, fp=fp)
        seen += page.items
        pages += 1
        assert page.total == 23
        if not page.truncated:
            assert page.next_cursor is None
            break
        cursor = page.next_cursor
    assert seen == items
    assert pages == 5


def test_a_cursor_from_another_query_is_refused() -> None:
    cursor = slice_page(list(range(10)), cursor=None, limit=3, fp=fingerprint("a")).next_cursor
    with pytest.raises(InvalidInput, match="repeat the call without it"):
        decode_cursor(cursor, fingerprint("b"))


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !!",
        "",
        "x" * 600,
        _forge([1, 2]),
        _forge({"q": "FP", "o": -1}),
        _forge({"q": "FP", "o": True}),
        _forge({"q": "FP", "o": 2**63}),
        _forge({"q": "FP", "o": "3"}),
        _forge({"q": "FP", "o": 1.5}),
        _forge({"q": "FP", "o": 0, "a": {"x": 1}}),
        _forge({"q": "FP", "o": 0, "a": "k" * 300}),
    ],
)
def test_tampered_cursors_are_refused_with_a_short_clear_error(cursor: str) -> None:
    fp = "FP"
    with pytest.raises(InvalidInput) as err:
        decode_cursor(cursor, fp)
    assert len(str(err.value)) < 200


def test_keyset_pages_carry_the_last_key() -> None:
    fp = fingerprint("names")
    rows = [{"name": n} for n in ("a", "b", "c")]
    page = keyset_page(rows, total=10, limit=2, fp=fp, key=lambda r: r["name"])
    assert page.items == rows[:2]
    assert page.truncated
    assert decode_cursor(page.next_cursor, fp).after == "b"
    last = keyset_page(rows[:1], total=10, limit=2, fp=fp, key=lambda r: r["name"])
    assert last.next_cursor is None


def test_a_page_past_the_end_is_empty_and_final() -> None:
    fp = fingerprint("x")
    page: Page[int] = page_of([], total=4, offset=10, limit=5, fp=fp)
    assert page == Page[int](items=[], total=4, truncated=False, next_cursor=None)
    assert decode_cursor(encode_cursor(fp, offset=7), fp).offset == 7
