"""The shared browser: lazy start, no Chromium left behind (after close, exit, SIGTERM), the doctor's report."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest

from common.chromium import launch_args
from common.testing import wait_until
from servers.ui_testing.browser import MAX_SPARES, Browser, BrowserOptions, BrowserUnavailable, version_report
from servers.ui_testing.viewport import Viewport
from tests.servers.ui_testing.conftest import LOCAL, Site, page

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
SMALL = Viewport(width=400, height=300, scale=1)

# A process that starts a Browser, renders a page, prints its descendants' pids, then ends as told.
CHILD = """
import asyncio, json, os, sys
import psutil
from common.logging import configure_logging
from servers.ui_testing.browser import Browser
from servers.ui_testing.viewport import Viewport

async def main(mode):
    async with Browser() as browser:
        async with browser.page(Viewport(width=400, height=300)) as page:
            await page.set_content("<p>hello</p>")
            await page.screenshot()
        print(json.dumps([p.pid for p in psutil.Process().children(recursive=True)]), flush=True)
        if mode == "exit":
            os._exit(0)  # ends without closing the browser
        await asyncio.sleep(60)

configure_logging()  # logs to stderr, so stdout carries only the pid list
asyncio.run(main(sys.argv[1]))
"""


def descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def all_gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def chromium_pids(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if "chrom" in psutil.Process(pid).name():
                found.add(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def chromium_args() -> list[list[str]]:
    """The command lines of this process's Chromium processes."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            args = proc.cmdline()
        except psutil.Error:
            continue
        if args and "chrom" in Path(args[0]).name:
            found.append(args)
    return found


async def test_the_browser_starts_on_first_use_and_leaves_no_process_after_close(site: Site):
    url = site.put("/plain", page("<p>hi</p>"))
    before = descendants()
    browser = Browser(LOCAL)
    assert not browser.started
    assert descendants() == before  # nothing starts until a page is needed
    async with browser:
        async with browser.page(SMALL) as tab:
            await tab.goto(url)
            assert await tab.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "UTC"
            assert await tab.evaluate("navigator.language") == "en-US"
            assert await tab.evaluate("matchMedia('(prefers-reduced-motion: reduce)').matches")
            font = await tab.evaluate("getComputedStyle(document.body).fontFamily")
            assert font.startswith('"Liberation Sans"')
            procs = chromium_args()
            # One renderer: no spare one next to the page's, no WebUI one for the window's address bar.
            assert sum("--type=renderer" in args for args in procs) == 1
            # Chromium reads only the last --disable-features: it must still hold every feature Playwright disabled.
            browser_args = next(args for args in procs if "--remote-debugging-pipe" in args)
            flags = [a.split("=", 1)[1].split(",") for a in browser_args if a.startswith("--disable-features=")]
            assert set(flags[0]) <= set(flags[-1])
        assert browser.started
        assert browser.version
        started = descendants() - before
        assert chromium_pids(started)
    assert not browser.started
    await wait_until(lambda: all_gone(started), timeout_s=10, what="Chromium processes to exit")
    await browser.close()  # a second close is harmless


async def test_a_page_with_a_form_sends_nothing_to_googles_autofill_server(site: Site):
    url = site.put("/form", page('<form><label for="e">Email</label><input id="e" name="email" type="email"></form>'))
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        raise OSError("no such host")  # nothing leaves the machine

    async with Browser(dataclasses.replace(LOCAL, resolve=resolve)) as browser:
        for _ in range(2):
            async with browser.page(SMALL) as tab:
                await tab.goto(url)
                await tab.fill("#e", "a@example.com")
                await tab.press("#e", "Enter")
        await browser.warmed()
    assert not [host for host in asked if "autofill" in host]


async def test_each_call_gets_a_fresh_context_and_a_page_font_wins_over_the_pinned_one(site: Site):
    url = site.put("/state", page("<style>body{font-family:serif}</style><p>x</p>"))
    async with Browser(LOCAL) as browser:
        async with browser.page(SMALL) as first:
            await first.goto(url)
            assert await first.evaluate("getComputedStyle(document.body).fontFamily") == "serif"
            await first.evaluate("localStorage.setItem('k', 'v'); document.cookie = 'a=b'")
            assert len(await first.context.cookies()) == 1
        async with browser.page(SMALL) as second:
            await second.goto(url)
            assert await second.context.cookies() == []
            assert await second.evaluate("localStorage.getItem('k')") is None


async def test_the_next_call_takes_the_spare_page_made_in_the_background_and_it_is_clean(site: Site):
    url = site.put("/spare", page("<p>x</p>"))
    async with Browser(LOCAL) as browser:
        async with browser.page(SMALL) as first:
            await first.goto(url)
            await first.evaluate("localStorage.setItem('k', 'v'); document.cookie = 'a=b'")
        await browser.warmed()
        spare = browser._spares.get((SMALL, None))
        assert spare is not None
        async with browser.page(SMALL) as second:
            assert second is spare[1]
            assert second.url == "about:blank"
            await second.goto(url)
            assert await second.context.cookies() == []
            assert await second.evaluate("localStorage.getItem('k')") is None
        await browser.warmed()
        wide = Viewport(width=640, height=300, scale=1)
        async with browser.page(wide) as third:
            assert third.viewport_size == {"width": 640, "height": 300}
        await browser.warmed()
        assert (wide, None) in browser._spares
        assert len(browser._spares) <= MAX_SPARES
    assert browser._spares == {}
    assert not browser.started


async def test_a_spare_made_with_an_init_script_runs_it_and_spares_are_capped(site: Site):
    url = site.put("/init", page("<p>x</p>"))
    marker = "window.__marked = 1;"
    async with Browser(LOCAL) as browser:
        async with browser.page(SMALL, init_script=marker) as first:
            await first.goto(url)
            assert await first.evaluate("window.__marked") == 1
        await browser.warmed()
        spare = browser._spares.get((SMALL, marker))
        assert spare is not None
        assert await spare[1].evaluate("window.__marked") == 1  # run (compiled) in the blank first document already
        async with browser.page(SMALL, init_script=marker) as second:
            assert second is spare[1]
            await second.goto(url)
            assert await second.evaluate("window.__marked") == 1
        async with browser.page(SMALL) as plain:
            await plain.goto(url)
            assert await plain.evaluate("window.__marked") is None
        await browser.warmed()
        assert len(browser._spares) == MAX_SPARES
        assert (SMALL, None) in browser._spares


async def test_the_next_spare_can_be_started_during_a_call(site: Site):
    url = site.put("/next", page("<p>x</p>"))
    marker = "window.__next = 1;"
    async with Browser(LOCAL) as browser:
        browser.prepare_next(SMALL, marker)  # not started yet: nothing to do
        assert not browser.started
        async with browser.page(SMALL, init_script=marker) as first:
            await first.goto(url)
            browser.prepare_next(SMALL, marker)
            await browser.warmed()
            spare = browser._spares.get((SMALL, marker))
            assert spare is not None
            assert spare[1] is not first
        async with browser.page(SMALL, init_script=marker) as second:
            assert second is spare[1]  # the spare made during the first call, not a newer one
            await second.goto(url)
            assert await second.evaluate("window.__next") == 1


async def spawn_child(mode: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        mode,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def child_pids(proc: asyncio.subprocess.Process) -> set[int]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    pids = set(json.loads(line))
    assert chromium_pids(pids), "the child started no Chromium"
    return pids


async def reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
async def test_no_chromium_outlives_its_owning_process(ending: str):
    proc = await spawn_child("exit" if ending == "exit" else "wait")
    try:
        pids = await child_pids(proc)
        if ending == "sigterm":
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=30)
        await wait_until(lambda: all_gone(pids), timeout_s=15, what="the child's Chromium to exit")
    finally:
        await reap(proc)


async def test_two_processes_each_run_their_own_browser_at_once():
    procs = [await spawn_child("wait"), await spawn_child("wait")]
    try:
        first, second = await asyncio.gather(*(child_pids(p) for p in procs))
        assert not chromium_pids(first) & chromium_pids(second)  # no shared profile, no "browser in use"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)
        await wait_until(lambda: all_gone(first | second), timeout_s=15, what="both children's Chromium to exit")
    finally:
        for proc in procs:
            await reap(proc)


async def test_a_missing_executable_is_reported_with_how_to_fix_it():
    async with Browser(BrowserOptions(executable_path="/nonexistent/chromium")) as browser:
        with pytest.raises(BrowserUnavailable, match="install it"):
            async with browser.page(SMALL):
                pass


async def test_the_version_report_compares_chromium_with_playwrights_expectation():
    report = await version_report()
    assert report.executable is not None
    assert report.installed is not None
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", report.installed)
    assert report.expected is not None
    assert report.same_major == (report.installed.split(".")[0] == report.expected.split(".")[0])
    assert report.note
    missing = await version_report(BrowserOptions(executable_path="/nonexistent/chromium"))
    assert missing.installed is None
    assert "not found" in missing.note


def test_root_gets_no_sandbox_and_others_keep_it():
    assert ("--no-sandbox" in launch_args()) == (os.geteuid() == 0)


def test_importing_the_domain_modules_loads_no_heavy_dependency():
    import subprocess

    code = (
        "import sys\n"
        "import servers.ui_testing.audit, servers.ui_testing.capture, servers.ui_testing.diff, servers.ui_testing.scenario\n"
        "heavy = [m for m in ('playwright', 'PIL', 'numpy', 'pybind11_pixelmatch', 'axe_playwright_python')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == ""
