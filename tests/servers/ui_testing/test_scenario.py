"""Scenarios: validated up front, run in one context, stopped at the first failing step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.errors import InvalidInput
from servers.ui_testing.audit import AuditResult
from servers.ui_testing.browser import Browser
from servers.ui_testing.capture import CaptureResult
from servers.ui_testing.scenario import parse_scenario, run_scenario
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

LOGIN = page(
    '<main><h1>Sign in</h1><label for="name">Name</label><input id="name">'
    '<button id="go">Go</button><p id="out"></p><img src="/missing.png" alt="">'
    "<script>document.getElementById('go').addEventListener('click', () => {"
    " document.getElementById('out').textContent = 'Hello ' + document.getElementById('name').value;"
    " console.error('greeting widget is deprecated'); });</script></main>"
)


def steps(url: str, *more: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "login",
        "viewport": {"width": 800, "height": 600},
        "steps": [{"action": "goto", "url": url}, *more],
    }


async def test_a_passing_scenario_records_every_step_and_its_captures_and_audits(
    browser: Browser, site: Site, tmp_path: Path
):
    url = site.put("/login", LOGIN)
    scenario = parse_scenario(
        steps(
            url,
            {"action": "fill", "selector": "#name", "value": "Ada"},
            {"action": "press", "selector": "#name", "key": "Tab"},
            {"action": "click", "selector": "#go"},
            {"action": "wait_for", "selector": "#out"},
            {"action": "assert_text", "selector": "#out", "text": "Hello Ada", "exact": True},
            {"action": "assert_visible", "selector": "h1"},
            {"action": "capture", "name": "greeted", "mask_selectors": ["#out"]},
            {"action": "audit", "levels": ["wcag2a"]},
        )
    )
    stored: list[str] = []

    async def on_capture(index: int, capture: CaptureResult) -> str:
        stored.append(capture.sha256)
        return f"capture-{index}"

    async def on_audit(index: int, result: AuditResult) -> str:
        return f"audit-{index}"

    run = await run_scenario(browser, scenario, tmp_path, on_capture=on_capture, on_audit=on_audit)

    assert run.status == "passed", run.error
    assert [s.status for s in run.steps] == ["passed"] * 9
    assert all(s.duration_ms >= 0 for s in run.steps)
    capture_step, audit_step = run.steps[7], run.steps[8]
    assert capture_step.ref == "capture-7"
    assert capture_step.capture is not None
    assert stored == [capture_step.capture.sha256]
    assert (capture_step.capture.width, capture_step.capture.height) == (800, 600)
    assert audit_step.ref == "audit-8"
    assert audit_step.audit is not None
    assert audit_step.audit.tags == ["wcag2a"]
    assert [e.text for e in run.console_errors if e.kind == "console"][-1] == "greeting widget is deprecated"
    assert any(r.url.endswith("/missing.png") and r.failure == "HTTP 404" for r in run.failed_requests)


async def test_a_failing_step_stops_the_run_with_its_reason_and_console_errors(
    browser: Browser, site: Site, tmp_path: Path
):
    url = site.put("/broken", page("<p id='msg'>Welcome</p><script>undefinedFunction();</script>"))
    scenario = parse_scenario(
        steps(
            url,
            {"action": "assert_text", "selector": "#msg", "text": "Goodbye", "timeout_ms": 1500},
            {"action": "click", "selector": "#msg"},
            {"action": "assert_no_console_errors"},
        )
    )

    run = await run_scenario(browser, scenario, tmp_path)

    assert run.status == "failed"
    assert run.failed_step == 1
    assert [s.status for s in run.steps] == ["passed", "failed", "skipped", "skipped"]
    assert run.error == "Expected '#msg' containing 'Goodbye', found 'Welcome'."
    assert run.steps[1].error == run.error
    assert run.console_errors_total == 1
    assert run.console_errors[0].kind == "exception"
    assert "undefinedFunction" in run.console_errors[0].text


async def test_console_errors_fail_the_assertion_step_and_timeouts_name_the_selector(
    browser: Browser, site: Site, tmp_path: Path
):
    url = site.put("/noisy", page("<p>hi</p><script>console.error('boom')</script>"))
    run = await run_scenario(browser, parse_scenario(steps(url, {"action": "assert_no_console_errors"})), tmp_path)
    assert run.failed_step == 1
    assert run.error == "1 console error(s), first: boom"

    late = parse_scenario(steps(url, {"action": "click", "selector": "#never", "timeout_ms": 200}))
    run = await run_scenario(browser, late, tmp_path)
    assert run.error == "Timed out after 200 ms waiting for '#never'."


async def test_an_unreachable_first_page_fails_the_goto_step(browser: Browser, tmp_path: Path):
    from common.testing import free_port

    run = await run_scenario(browser, parse_scenario(steps(f"http://127.0.0.1:{free_port()}/")), tmp_path)
    assert run.failed_step == 0
    assert run.error is not None
    assert "ERR_CONNECTION_REFUSED" in run.error


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"action": "click", "selector": "#a"}]}, "first step must be a goto"),
        ({"steps": [{"action": "goto", "url": "ftp://x"}]}, "http"),
        ({"steps": [{"action": "goto", "url": "http://a"}, {"action": "hover", "selector": "a"}]}, "steps.1"),
        ({"steps": [{"action": "goto", "url": "http://a"}, {"action": "audit", "levels": ["wcag9"]}]}, "wcag9"),
        ({"steps": [{"action": "goto", "url": "http://a", "timeout_ms": 60_000}]}, "timeout_ms"),
        ({"steps": [{"action": "goto", "url": "http://a"}], "viewport": {"width": 10, "height": 10}}, "viewport"),
    ],
)
def test_an_invalid_scenario_is_refused_before_anything_runs(data: dict[str, Any], expected: str):
    with pytest.raises(InvalidInput, match=expected):
        parse_scenario(data)
