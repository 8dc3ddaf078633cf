"""The ui_testing service on a real database, Redis and headless Chromium, against pages served on 127.0.0.1.

One database and one service are shared by the module (a browser start is the slow part); each test
uses its own page keys and check names.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import SecretStr

from common.errors import Conflict, InvalidInput, NotFound
from common.runtime import open_deps
from common.testing import create_database, drop_database, free_port, wait_until
from servers.ui_testing import store
from servers.ui_testing.inputs import sent_bytes
from servers.ui_testing.models import RunList
from servers.ui_testing.service import UiTestingService
from servers.ui_testing.settings import Settings
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

VIEW = "480x320"
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
IMG = "data:image/gif;base64,R0lGODlhAQABAAAAACw="


@pytest.fixture(scope="module")
def settings(pg_cluster: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = create_database(pg_cluster)
    base = tmp_path_factory.mktemp("uit")
    (base / "allowed").mkdir()
    try:
        yield Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=SecretStr(url),
            redis_url=SecretStr(redis_url),
            redis_prefix=f"t{base.name[-8:].replace('-', '')}",
            data_dir=base / "data",
            log_level="WARNING",
            embedding_model="hash-384",
            allowed_roots=[base / "allowed"],
            allow_hosts=["127.0.0.1/32"],  # the test site runs on loopback
            check_wait_s=30,
            heartbeat_s=0.5,  # a cancel is read within half a second
        )
    finally:
        drop_database(pg_cluster, url)


@pytest.fixture(scope="module")
async def svc(settings: Settings) -> AsyncIterator[UiTestingService]:
    async with open_deps("ui_testing", settings) as deps, UiTestingService.open(deps, settings) as service:
        yield service


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def exists(path: str) -> bool:
    return Path(path).exists()


async def count(svc: UiTestingService, table: str) -> int:
    value: int = await svc.db.fetchval(f"SELECT count(*) FROM ui_testing.{table}")  # constant table names only
    return value


async def test_capturing_the_same_page_twice_gives_identical_bytes_and_two_rows(svc: UiTestingService, site: Site):
    url = site.put("/same", page(ARTICLE.format(word="brown")))
    first = await svc.capture(url, page_key="same", viewport=VIEW, thumbnail=True)
    second = await svc.capture(url, page_key="same", viewport=VIEW)

    assert first.sha256 == second.sha256
    assert first.id != second.id
    assert read(first.path) == read(second.path)
    assert Path(first.path).is_relative_to(svc.settings.image_root())
    assert (first.width, first.height, first.viewport, first.http_status) == (480, 320, "480x320@1", 200)
    assert first.thumbnail_path is not None
    assert exists(first.thumbnail_path)
    assert len(first.model_dump_json()) < 2048


async def test_a_one_word_change_fails_the_comparison_with_a_box_around_it(svc: UiTestingService, site: Site):
    site.put("/word", page(ARTICLE.format(word="brown")))
    base = await svc.capture(site.base + "/word", page_key="word", viewport=VIEW)
    await svc.set_baseline(capture_id=base.id)
    site.put("/word", page(ARTICLE.format(word="green")))

    changed = await svc.capture(site.base + "/word", page_key="word", viewport=VIEW, compare_baseline=True)

    c = changed.compare
    assert c is not None
    assert not c.passed
    assert not c.size_changed
    assert c.boxes
    assert c.regions_total == 1
    box = c.boxes[0]
    assert box.height < 40
    assert box.width < 300
    assert c.diff_path is not None
    assert exists(c.diff_path)
    run = await svc.get_run(c.run_id)
    assert run.kind == "compare"
    assert run.status == "failed"
    assert run.details["boxes"]


async def test_a_masked_live_clock_passes_the_comparison(svc: UiTestingService, site: Site):
    url = site.put("/clock", page(CLOCK))
    base = await svc.capture(url, page_key="clock", viewport=VIEW, mask=["#clock"], delay_ms=100)
    await svc.set_baseline(capture_id=base.id)
    again = await svc.capture(
        url, page_key="clock", viewport=VIEW, mask=["#clock"], delay_ms=170, compare_baseline=True
    )
    assert again.compare is not None
    assert again.compare.passed, again.compare


async def test_a_size_change_is_reported_with_both_sizes(svc: UiTestingService, site: Site):
    site.put("/grow", page("<p>short</p>", style="body{margin:0} p{height:400px}"))
    base = await svc.capture(site.base + "/grow", page_key="grow", viewport=VIEW, full_page=True)
    await svc.set_baseline(capture_id=base.id)
    site.put("/grow", page("<p>tall</p>", style="body{margin:0} p{height:700px}"))
    after = await svc.capture(site.base + "/grow", page_key="grow", viewport=VIEW, full_page=True)

    c = await svc.compare(capture_id=after.id)

    assert not c.passed
    assert c.size_changed
    assert c.size.startswith("480x")
    assert c.size != f"480x{base.height} -> 480x{base.height}"
    assert "Sizes differ" in c.summary


async def test_approving_a_new_capture_makes_it_pass_and_keeps_the_old_baseline_in_history(
    svc: UiTestingService, site: Site
):
    site.put("/approve", page(ARTICLE.format(word="old")))
    first = await svc.capture(site.base + "/approve", page_key="approve", viewport=VIEW)
    await svc.set_baseline(capture_id=first.id, note="v1")
    site.put("/approve", page(ARTICLE.format(word="new")))
    second = await svc.capture(site.base + "/approve", page_key="approve", viewport=VIEW, compare_baseline=True)
    assert second.compare is not None
    assert not second.compare.passed

    approved = await svc.set_baseline(page_key="approve", viewport=VIEW, approve=True)
    assert approved.baselines[0].capture_id == second.id
    assert "kept in history" in approved.message
    third = await svc.capture(site.base + "/approve", page_key="approve", viewport=VIEW, compare_baseline=True)
    assert third.compare is not None
    assert third.compare.passed

    history = await svc.list_baselines(page_key="approve", history=True)
    assert [(b.capture_id, b.current) for b in history.baselines] == [(second.id, True), (first.id, False)]
    assert history.baselines[1].replaced_at is not None
    current = await svc.list_baselines(page_key="approve")
    assert current.total == 1
    await svc.delete_baselines("approve")
    with pytest.raises(NotFound, match="No baseline"):
        await svc.compare(capture_id=third.id)


async def test_audit_deltas_show_the_fixed_violation_as_fixed_and_the_added_one_as_new(
    svc: UiTestingService, site: Site
):
    form = '<form><input id="email" type="text"></form>'
    site.put("/shop", page(f'<main><h1>Shop</h1><img id="logo" src="{IMG}">{form}</main>'))
    first = await svc.audit(site.base + "/shop", page_key="shop", viewport=VIEW)
    assert "now the baseline" in first.summary
    assert first.passed
    assert {"image-alt", "label"} <= {v.rule for v in first.violations}

    faint = '<p id="faint" style="color:#ccc;background:#fff">Hard to read</p>'
    site.put("/shop", page(f'<main><h1>Shop</h1><img id="logo" src="{IMG}" alt="Logo">{form}{faint}</main>'))
    second = await svc.audit(site.base + "/shop", page_key="shop", viewport=VIEW)

    assert [(f.rule, f.selector) for f in second.fixed] == [("image-alt", "#logo")]
    assert [(f.rule, f.selector) for f in second.new] == [("color-contrast", "#faint")]
    assert "1 new, 1 fixed" in second.summary
    assert not second.passed
    assert len(second.model_dump_json()) < 2048
    report = await svc.report()
    assert any(line.startswith("FAIL shop:") and "1 new" in line for line in report.pages)
    other = await svc.audit(site.base + "/shop", page_key="shop", viewport=VIEW, levels=["best-practice"])
    assert other.passed
    assert "other levels" in other.summary


async def test_a_check_with_a_failing_step_stops_there_and_records_reason_and_console_errors(
    svc: UiTestingService, site: Site
):
    url = site.put("/broken", page("<p id='msg'>Welcome</p><script>undefinedFunction();</script>"))
    scenario = {
        "viewport": {"width": 480, "height": 320},
        "steps": [
            {"action": "goto", "url": url},
            {"action": "capture", "name": "home"},
            {"action": "assert_text", "selector": "#msg", "text": "Goodbye", "timeout_ms": 1500},
            {"action": "click", "selector": "#msg"},
        ],
    }
    saved = await svc.save_check("broken", scenario)
    assert saved.checks[0].steps == 4

    run = await svc.run_check("broken")

    assert run.status == "failed"
    assert run.failed_step == 2
    assert [s.status for s in run.steps] == ["passed", "passed", "failed", "skipped"]
    assert run.error == "Expected '#msg' containing 'Goodbye', found 'Welcome'."
    assert run.console_errors_total == 1
    assert "undefinedFunction" in run.console_errors[0]
    assert run.steps[1].ref is not None
    assert run.steps[1].ref.startswith("capture:")
    assert await svc.db.fetchval("SELECT count(*) FROM ui_testing.captures WHERE run_id = $1", run.id) == 1
    listed = await svc.list_checks(name="broken")
    assert listed.checks[0].trend == "F"


async def test_a_rerun_is_compared_with_the_last_passing_run_and_the_trend_grows(svc: UiTestingService, site: Site):
    site.put("/flow", page(ARTICLE.format(word="brown") + '<button id="go">Go</button>'))
    scenario = {
        "viewport": {"width": 480, "height": 320},
        "steps": [
            {"action": "goto", "url": site.base + "/flow"},
            {"action": "click", "selector": "#go"},
            {"action": "capture", "name": "after-click"},
            {"action": "audit"},
        ],
    }
    await svc.save_check("flow", scenario)
    first = await svc.run_check("flow")
    assert first.status == "passed"
    assert first.vs_last_pass == "No earlier passing run to compare with."
    site.put("/flow", page(ARTICLE.format(word="green") + '<button id="go">Go</button>'))
    second = await svc.run_check("flow")

    assert second.status == "passed"
    assert second.vs_last_pass is not None
    assert f"vs run {first.id}" in second.vs_last_pass
    assert "1 of 1 capture(s) changed" in second.vs_last_pass
    checks = await svc.list_checks(name="flow")
    assert checks.checks[0].trend == "PP"
    assert checks.checks[0].last_run_id == second.id
    runs = await svc.list_runs(key="flow", limit=1)
    assert runs.total == 2
    assert runs.truncated
    assert runs.items[0].id == second.id
    more = await svc.list_runs(key="flow", limit=1, cursor=runs.next_cursor)
    assert more.items[0].id == first.id
    assert not more.truncated


async def test_a_check_is_validated_when_saved_and_unknown_checks_are_not_found(svc: UiTestingService):
    with pytest.raises(InvalidInput, match="first step must be a goto"):
        await svc.save_check("bad", {"steps": [{"action": "click", "selector": "#x"}]})
    with pytest.raises(InvalidInput, match="outside the allowed folders"):
        await svc.save_check("bad", {"steps": [{"action": "goto", "url": "file:///etc/hostname"}]})
    with pytest.raises(InvalidInput, match="Invalid check name"):
        await svc.save_check("no spaces allowed", {"steps": [{"action": "goto", "url": "http://127.0.0.1/"}]})
    with pytest.raises(NotFound, match="No check named"):
        await svc.run_check("never-saved")
    assert await svc.db.fetchval("SELECT count(*) FROM ui_testing.checks WHERE name = 'bad'") == 0


async def test_an_inline_html_page_can_be_captured_and_audited(svc: UiTestingService):
    url = "data:text/html," + page("<main><h1>Inline</h1><img src='x.png'></main>")
    shot = await svc.capture(url, viewport=VIEW)
    assert shot.page_key.startswith("inline:")
    assert shot.http_status is None
    audit = await svc.audit(url, viewport=VIEW)
    assert audit.page_key == shot.page_key
    assert "image-alt" in {v.rule for v in audit.violations}


async def test_a_local_html_file_under_the_roots_can_be_captured(svc: UiTestingService):
    root = svc.settings.allowed_roots[0]
    (root / "local.html").write_text(page("<h1>Local file</h1>"))
    shot = await svc.capture(str(root / "local.html"), viewport=VIEW)
    assert shot.page_key == "file:local.html"
    assert shot.http_status is None


@pytest.mark.parametrize(
    ("kwargs", "error", "expected"),
    [
        ({"url": "http://127.0.0.1:{port}/"}, InvalidInput, "Could not load"),
        ({"url": "{site}/slow-selector", "wait_for": "#never", "timeout_ms": 300}, NotFound, "not visible within 300"),
        ({"url": "{site}/ok", "viewport": "50x50"}, InvalidInput, "Invalid viewport"),
        ({"url": "{site}/ok", "viewport": "huge"}, InvalidInput, "Invalid viewport"),
        ({"url": "/etc/hostname"}, InvalidInput, "outside the allowed folders"),
        ({"url": "javascript:alert(1)"}, InvalidInput, "or a local HTML file path"),
        ({"url": "{site}/tall", "full_page": True}, InvalidInput, "ceiling"),
    ],
)
async def test_bad_input_fails_clearly_and_writes_nothing(
    svc: UiTestingService, site: Site, kwargs: dict[str, Any], error: type[Exception], expected: str
):
    site.put("/ok", page("<p>ok</p>"))
    site.put("/slow-selector", page("<p>no such element</p>"))
    site.put("/tall", page("<div style='height:30000px'>tall</div>"))
    args = dict(kwargs)
    args["url"] = args["url"].format(port=free_port(), site=site.base)
    before = (await count(svc, "captures"), await count(svc, "runs"))
    with pytest.raises(error, match=expected) as caught:
        await svc.capture(args.pop("url"), page_key="bad", **args)
    assert len(str(caught.value)) < 400
    assert (await count(svc, "captures"), await count(svc, "runs")) == before


async def test_comparing_without_a_capture_or_baseline_says_what_to_do(svc: UiTestingService):
    with pytest.raises(NotFound, match="No capture 999999"):
        await svc.compare(capture_id=999_999)
    with pytest.raises(InvalidInput, match="Give capture_id"):
        await svc.compare()
    with pytest.raises(NotFound, match="capture the page first"):
        await svc.compare(page_key="nothing-here")


def chromium_browsers() -> set[int]:
    """The browser processes of every Chromium process under this test process."""
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" not in p.name() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            root = p
            # Renderers, zygotes and utilities carry --type=; the browser process at the top of the tree does not.
            while any(arg.startswith("--type=") for arg in root.cmdline()):
                parent = root.parent()
                if parent is None:
                    break
                root = parent
            found.add(root.pid)
        except psutil.NoSuchProcess:
            pass
    return found


async def test_four_service_instances_capture_and_compare_at_once_without_losing_rows(
    settings: Settings, svc: UiTestingService, site: Site
):
    url = site.put("/shared", page(ARTICLE.format(word="shared")))
    base = await svc.capture(url, page_key="shared", viewport=VIEW)
    await svc.set_baseline(capture_id=base.id)
    before_runs = await count(svc, "runs")
    await svc.browser.warmed()
    before_browsers = chromium_browsers()  # the shared service's Chromium

    async def worker(n: int) -> list[bool]:
        async with open_deps("ui_testing", settings) as deps, UiTestingService.open(deps, settings) as s:
            results = []
            for _ in range(2):
                shot = await s.capture(url, page_key="shared", viewport=VIEW, compare_baseline=True)
                assert shot.compare is not None
                results.append(shot.compare.passed)
            await s.set_baseline(capture_id=shot.id, approve=True)
            return results

    outcomes = await asyncio.gather(*(worker(n) for n in range(4)))

    assert all(all(r) for r in outcomes)
    assert await count(svc, "runs") == before_runs + 8
    assert await svc.db.fetchval("SELECT count(*) FROM ui_testing.captures WHERE page_key = 'shared'") == 9
    current = await svc.db.fetchval(
        "SELECT count(*) FROM ui_testing.baselines WHERE page_key = 'shared' AND is_current"
    )
    assert current == 1
    # No worker's Chromium outlives its service (the shared one may start renderers of its own meanwhile).
    assert chromium_browsers() <= before_browsers


async def test_the_report_gives_one_line_per_page_key_the_checks_and_the_browser(svc: UiTestingService):
    # Four page keys of its own, so that a page of three is truncated whatever other tests left.
    for key, status in (("report-a", "passed"), ("report-b", "failed"), ("report-c", "passed"), ("report-d", "passed")):
        await store.insert_run(svc.db, kind="compare", status=status, page_key=key, details={"changed_ratio": 0.5})
    report = await svc.report(limit=3)
    assert report.pages_total >= 4
    assert len(report.pages) == 3
    assert report.truncated
    assert report.browser.startswith("Chromium ")
    failed_keys = await svc.db.fetchval(
        "SELECT count(DISTINCT page_key) FROM ui_testing.runs r WHERE kind IN ('compare', 'audit') AND id = "
        "(SELECT max(id) FROM ui_testing.runs x WHERE x.page_key = r.page_key AND x.kind = r.kind) "
        "AND status = 'failed'"
    )
    assert report.failing == failed_keys > 0
    assert len(report.model_dump_json()) < 2048
    second = await svc.report(limit=3, cursor=report.next_cursor)
    assert set(second.pages).isdisjoint(report.pages)


async def test_a_second_run_of_a_running_check_is_refused(svc: UiTestingService, site: Site):
    url = site.put("/wait", page("<p id='late'>x</p>"))
    await svc.save_check(
        "slow",
        {
            "viewport": {"width": 480, "height": 320},
            "steps": [
                {"action": "goto", "url": url},
                {"action": "wait_for", "selector": "#never", "timeout_ms": 3000},
            ],
        },
    )
    first = await svc.run_check("slow", wait_s=0)
    assert first.status == "running"
    with pytest.raises(Conflict, match="already running"):
        await svc.run_check("slow", wait_s=0)

    async def ended() -> bool:
        return (await svc.get_run(first.id)).status != "running"

    await wait_until(ended, timeout_s=15, what="the slow check to end")
    done = await svc.get_run(first.id)
    assert done.status == "failed"
    assert "Timed out" in (done.error or "")


async def test_a_running_check_can_be_cancelled(svc: UiTestingService, site: Site):
    url = site.put("/cancel", page("<p>x</p>"))
    steps: list[dict[str, Any]] = [{"action": "goto", "url": url}]
    steps += [{"action": "capture", "name": f"c{i}"} for i in range(60)]
    await svc.save_check("cancel-me", {"viewport": {"width": 480, "height": 320}, "steps": steps})
    run = await svc.run_check("cancel-me", wait_s=0)
    answer = await svc.cancel_check("cancel-me")
    assert "Cancel requested" in answer.message

    async def ended() -> bool:
        return (await svc.get_run(run.id)).status != "running"

    await wait_until(ended, timeout_s=30, what="the cancelled check to stop")
    assert (await svc.get_run(run.id)).status == "cancelled"
    with pytest.raises(NotFound, match="no running run"):
        await svc.cancel_check("cancel-me")


async def test_a_check_run_left_running_by_a_dead_process_is_marked_interrupted(svc: UiTestingService):
    job_id = await svc.db.fetchval(
        "INSERT INTO ui_testing.jobs (kind, key, owner, heartbeat_at) "
        "VALUES ('check', 'ghost', 'gone:1', now() - interval '1 hour') RETURNING id::text"
    )
    run_id = await svc.db.fetchval(
        "INSERT INTO ui_testing.runs (kind, check_name, job_id, status) "
        "VALUES ('check', 'ghost', $1::uuid, 'running') RETURNING id",
        job_id,
    )
    assert run_id in await svc.recover()
    run = await svc.get_run(run_id)
    assert run.status == "interrupted"
    assert "run the check again" in run.summary


async def test_a_noisy_failing_check_still_answers_in_under_2_kb(svc: UiTestingService, site: Site):
    noise = "".join(f"<script>console.error('{'x' * 150} {i}')</script>" for i in range(20))
    imgs = "".join(f"<img src='/missing-{i}-{'y' * 100}.png' alt=''>" for i in range(20))
    url = site.put("/noisy", page("<p id='p'>hi</p>" + noise + imgs))
    steps: list[dict[str, Any]] = [{"action": "goto", "url": url}]
    steps += [{"action": "assert_visible", "selector": "#p"} for _ in range(12)]
    steps += [{"action": "assert_text", "selector": "#p", "text": "z" * 300, "timeout_ms": 200}]
    await svc.save_check("noisy", {"viewport": {"width": 480, "height": 320}, "steps": steps})
    run = await svc.run_check("noisy")
    assert run.status == "failed"
    assert run.failed_step == 13
    assert run.steps[-1].status == "failed"
    assert run.console_errors_total >= 20  # the 404s are console errors too
    assert run.failed_requests_total >= 20
    assert sent_bytes(run) <= 2048


async def test_long_runs_shrink_the_page_to_2_kb_and_the_cursor_skips_nothing(svc: UiTestingService):
    key = "long/" + "k" * 190
    for n in range(12):
        await svc.db.execute(
            "INSERT INTO ui_testing.runs (kind, page_key, status, summary) VALUES ('compare', $1, 'passed', $2)",
            key,
            f"{n:02d} " + "s" * 300,
        )
    seen: list[str] = []
    cursor = None
    for _ in range(12):
        page = await svc.list_runs(key=key, cursor=cursor)
        assert sent_bytes(RunList(**page.model_dump())) <= 2048
        seen += [r.summary[:2] for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"{n:02d}" for n in reversed(range(12))]


async def test_a_local_page_cannot_load_files_outside_the_allowed_roots(svc: UiTestingService):
    root = svc.settings.allowed_roots[0]
    secret = root.parent / "secret.png"
    await asyncio.to_thread(secret.write_bytes, b"not for pages")
    await asyncio.to_thread((root / "inside.png").write_bytes, b"fine")
    html = page(f"<h1>Local</h1><img src='{secret.as_uri()}' alt='a'><img src='inside.png' alt='b'>")
    await asyncio.to_thread((root / "peek.html").write_text, html)
    await svc.save_check(
        "peek",
        {
            "viewport": {"width": 480, "height": 320},
            "steps": [{"action": "goto", "url": (root / "peek.html").as_uri()}, {"action": "capture"}],
        },
    )
    run = await svc.run_check("peek")
    assert run.status == "passed"
    assert run.failed_requests_total == 1
    assert "secret.png" in run.failed_requests[0]
    assert "ACCESS_DENIED" in run.failed_requests[0]
    assert svc.file_allowed((root / "inside.png").as_uri())
    assert not svc.file_allowed(secret.as_uri())


async def test_capture_and_audit_of_cloud_metadata_are_refused_naming_the_allow_list(svc: UiTestingService):
    with pytest.raises(InvalidInput, match=r"169\.254\.169\.254 is a link-local.*UI_TESTING_ALLOW_HOSTS"):
        await svc.capture("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(InvalidInput, match="UI_TESTING_ALLOW_HOSTS"):
        await svc.audit("http://10.0.0.1/")


def test_a_bad_allow_list_entry_is_refused_at_start(settings: Settings):
    with pytest.raises(ValueError, match="UI_TESTING_ALLOW_HOSTS"):
        Settings(**{**settings.model_dump(), "allow_hosts": ["not a host!"]})
