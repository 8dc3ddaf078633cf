"""Screenshots through a real headless Chromium against pages served on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from common.errors import InvalidInput, NotFound
from common.testing import free_port
from servers.ui_testing.browser import Browser
from servers.ui_testing.capture import CaptureSpec, WaitSpec, capture
from servers.ui_testing.diff import compare
from servers.ui_testing.images import Rect
from servers.ui_testing.viewport import PRESETS, Viewport, resolve_viewport
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

SMALL = Viewport(width=800, height=600, scale=1)
ARTICLE = (
    "<h1>Release notes</h1>"
    '<p>The quick <span id="word">{word}</span> fox jumps over the lazy dog.</p>'
    "<p>Nothing else on this page changes.</p>"
)
CLOCK = (
    '<h1>Dashboard</h1><p>Now: <span id="clock" style="display:inline-block;width:12em">0</span></p>'
    "<script>setInterval(() => { document.getElementById('clock').textContent ="
    " String(performance.now()); }, 30);</script>"
)


def read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_capturing_the_same_page_twice_gives_identical_bytes(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/same", page(ARTICLE.format(word="brown") + '<input value="typed">'))
    first = await capture(browser, CaptureSpec(url=url, viewport=SMALL, thumbnail=True), tmp_path)
    second = await capture(browser, CaptureSpec(url=url, viewport=SMALL, thumbnail=True), tmp_path)

    assert first.sha256 == second.sha256
    assert first.status == 200
    assert read(first.path) == read(second.path)
    assert Path(first.path) == tmp_path / first.sha256[:2] / f"{first.sha256}.png"
    assert (first.width, first.height) == (800, 600)
    assert first.bytes == len(read(first.path))
    assert first.thumbnail is not None
    assert first.thumbnail.width <= 320
    assert read(first.thumbnail.path).startswith(b"\x89PNG")


async def test_a_one_word_change_is_found_in_a_box_around_that_word(browser: Browser, site: Site, tmp_path: Path):
    before = site.put("/word-a", page(ARTICLE.format(word="brown")))
    after = site.put("/word-b", page(ARTICLE.format(word="green")))
    a = await capture(browser, CaptureSpec(url=before, viewport=SMALL), tmp_path)
    b = await capture(browser, CaptureSpec(url=after, viewport=SMALL), tmp_path)
    rects = []
    for url in (before, after):
        async with browser.page(SMALL) as p:
            await p.goto(url)
            rects.append(await p.locator("#word").bounding_box())

    result = compare(Path(a.path), Path(b.path), tmp_path)

    assert not result.passed
    assert result.changed_pixels > 0
    assert result.diff_path is not None
    assert read(result.diff_path).startswith(b"\x89PNG")
    assert len(result.boxes) == 1
    box = result.boxes[0]
    for rect in rects:
        assert rect is not None
        assert box.contains(rect["x"], rect["y"], rect["width"], rect["height"]), (box, rect)
    assert box.height < 40  # the heading and the line below did not change


async def test_a_masked_live_clock_does_not_fail_the_comparison(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/clock", page(CLOCK))

    async def shot(spec: CaptureSpec) -> Path:
        return Path((await capture(browser, spec, tmp_path)).path)

    wait = WaitSpec(selector="#clock")
    unmasked = [await shot(CaptureSpec(url=url, viewport=SMALL, wait=wait)) for _ in range(2)]
    assert not compare(unmasked[0], unmasked[1], tmp_path).passed  # the clock really moves

    by_selector = CaptureSpec(url=url, viewport=SMALL, wait=wait, mask_selectors=["#clock"])
    masked = [await shot(by_selector) for _ in range(2)]
    assert compare(masked[0], masked[1], tmp_path).passed

    async with browser.page(SMALL) as p:
        await p.goto(url)
        box = await p.locator("#clock").bounding_box()
    assert box is not None
    rect = Rect(x=int(box["x"]) - 2, y=int(box["y"]) - 2, width=400, height=int(box["height"]) + 4)
    by_rect = CaptureSpec(url=url, viewport=SMALL, wait=wait, mask_rects=[rect])
    blanked = [await shot(by_rect) for _ in range(2)]
    result = compare(blanked[0], blanked[1], tmp_path)
    assert result.passed, result.summary


async def test_a_size_change_is_reported_with_both_sizes(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/sizes", page(ARTICLE.format(word="brown")))
    a = await capture(browser, CaptureSpec(url=url, viewport=SMALL), tmp_path)
    b = await capture(browser, CaptureSpec(url=url, viewport=PRESETS["phone"]), tmp_path)

    result = compare(Path(a.path), Path(b.path), tmp_path)

    assert (b.width, b.height) == (390 * 3, 844 * 3)
    assert not result.same_size
    assert not result.passed
    assert "800x600" in result.summary
    assert "1170x2532" in result.summary


async def test_an_element_and_a_full_page_and_a_local_file_can_be_captured(
    browser: Browser, site: Site, tmp_path: Path
):
    tall = site.put(
        "/tall",
        page('<div id="box" style="width:300px;height:150px;background:#36c"></div><div style="height:2000px"></div>'),
    )
    element = await capture(browser, CaptureSpec(url=tall, viewport=SMALL, selector="#box"), tmp_path)
    assert (element.width, element.height) == (300, 150)
    full = await capture(browser, CaptureSpec(url=tall, viewport=SMALL, full_page=True), tmp_path)
    assert full.height > 2000
    local = tmp_path / "local.html"
    local.write_text(page("<p>from disk</p>"))
    from_file = await capture(browser, CaptureSpec(url=local.as_uri(), viewport=SMALL), tmp_path)
    assert (from_file.width, from_file.height) == (800, 600)
    assert from_file.status is None
    not_found = await capture(browser, CaptureSpec(url=site.base + "/nothing", viewport=SMALL), tmp_path)
    assert not_found.status == 404  # an error page is still captured, with its status


async def test_captures_in_parallel_do_not_wait_on_each_other(browser: Browser, site: Site, tmp_path: Path):
    urls = [site.put(f"/par{i}", page(f"<p>page {i}</p>")) for i in range(3)]
    results: list[str] = []

    async def one(url: str) -> None:
        results.append((await capture(browser, CaptureSpec(url=url, viewport=SMALL), tmp_path)).sha256)

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(one, url)
    assert len(set(results)) == 3


async def test_an_unreachable_url_fails_fast_with_a_clear_message(browser: Browser, tmp_path: Path):
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"Could not load .*ERR_CONNECTION_REFUSED"):
        await capture(browser, CaptureSpec(url=f"http://127.0.0.1:{free_port()}/", viewport=SMALL), tmp_path)
    assert time.monotonic() - started < 5


async def test_a_selector_that_never_appears_fails_after_its_bounded_wait(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/empty", page("<p>nothing to see</p>"))
    started = time.monotonic()
    with pytest.raises(NotFound, match=r"#missing.*not visible within 300 ms"):
        await capture(
            browser, CaptureSpec(url=url, viewport=SMALL, wait=WaitSpec(selector="#missing", timeout_ms=300)), tmp_path
        )
    with pytest.raises(NotFound, match="#missing"):
        await capture(
            browser, CaptureSpec(url=url, viewport=SMALL, selector="#missing", wait=WaitSpec(timeout_ms=300)), tmp_path
        )
    assert time.monotonic() - started < 5


async def test_a_page_over_the_height_ceiling_is_refused(browser: Browser, site: Site, tmp_path: Path):
    url = site.put("/huge", page('<div style="height:30000px">long</div>'))
    with pytest.raises(InvalidInput, match="over the 20000 px ceiling"):
        await capture(browser, CaptureSpec(url=url, viewport=SMALL, full_page=True), tmp_path)
    viewport_only = await capture(browser, CaptureSpec(url=url, viewport=SMALL), tmp_path)
    assert viewport_only.height == 600


async def test_a_url_that_is_not_http_or_file_is_refused(browser: Browser, tmp_path: Path):
    with pytest.raises(InvalidInput, match="http"):
        await capture(browser, CaptureSpec(url="javascript:alert(1)", viewport=SMALL), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"preset": "watch"}, "Unknown viewport preset"),
        ({"width": 50, "height": 600}, "width 50"),
        ({"width": 800, "height": 5000}, "height 5000"),
        ({"width": 800, "height": 600, "scale": 5}, "scale 5"),
        ({"width": 800}, "both width and height"),
    ],
)
async def test_an_invalid_viewport_is_refused_with_the_allowed_ranges(kwargs: dict[str, object], expected: str):
    with pytest.raises(InvalidInput, match=expected):
        resolve_viewport(**kwargs)  # type: ignore[arg-type]


async def test_viewport_presets_resolve_and_the_model_rejects_out_of_range_sizes():
    assert resolve_viewport("tablet") == Viewport(width=768, height=1024, scale=2)
    assert resolve_viewport("phone", scale=2).scale == 2
    with pytest.raises(ValidationError):
        Viewport(width=99, height=600)
    with pytest.raises(ValidationError):
        WaitSpec(delay_ms=10_001)
