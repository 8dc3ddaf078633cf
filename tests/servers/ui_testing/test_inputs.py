"""Tool arguments turned into domain values, without a browser or a database."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from common.paging import decode_cursor, fingerprint
from servers.ui_testing.inputs import default_page_key, fit, parse_viewport, sent_bytes, viewport_key, wait_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "1366x768@1"),
        ("phone", "390x844@3"),
        ("Desktop", "1920x1080@1"),
        ("800x600", "800x600@1"),
        ("390x844@2.5", "390x844@2.5"),
    ],
)
def test_viewports_are_presets_or_sizes_with_an_optional_scale(text: str | None, expected: str) -> None:
    assert viewport_key(parse_viewport(text)) == expected


@pytest.mark.parametrize("text", ["tiny", "99x600", "800x4001", "800x600@5", "800 x 600", "x600"])
def test_invalid_viewports_are_refused_with_what_is_allowed(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"(WIDTHxHEIGHT|must be)"):
        parse_viewport(text)


def test_page_keys_default_to_host_and_path_or_the_file_name() -> None:
    assert default_page_key("http://127.0.0.1:8000/shop/cart?x=1#top") == "127.0.0.1:8000/shop/cart"
    assert default_page_key("https://example.org") == "example.org/"
    assert default_page_key("file:///srv/site/index%20page.html") == "file:index page.html"
    inline = default_page_key("data:text/html,<h1>Hi</h1>")
    assert inline.startswith("inline:")
    assert inline == default_page_key("data:text/html,<h1>Hi</h1>")


def test_wait_for_is_a_load_state_or_a_selector() -> None:
    assert wait_spec("networkidle", 0, 1000).until == "networkidle"
    spec = wait_spec("#ready", 50, 1000)
    assert (spec.until, spec.selector, spec.delay_ms) == ("load", "#ready", 50)
    assert wait_spec(None, 0, 1000).selector is None
    with pytest.raises(InvalidInput, match="delay_ms"):
        wait_spec(None, 20_000, 1000)


def test_a_page_that_would_be_too_large_shrinks_and_its_cursor_continues_after_the_last_item() -> None:
    fp = fingerprint("t")
    items = ["x" * 300 for _ in range(10)]
    page = fit(items, total=25, offset=5, limit=10, fp=fp, room=1500)
    assert 1 <= len(page.items) < 10
    assert sent_bytes(page) <= 1500  # as sent: the structured content and its text copy
    assert page.truncated
    assert decode_cursor(page.next_cursor, fp).offset == 5 + len(page.items)
