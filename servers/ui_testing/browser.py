"""One lazily started headless Chromium per process, and a fresh, reproducible browser context per call.

Every call gets its own context (no persistent profile), so concurrent calls in one process and
several processes on one machine never wait on each other's browser state. The browser itself is
started on first use and closed with the ``async with`` block; Playwright's driver also closes it
when the owning process dies, so no Chromium outlives its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from common.browser_guard import FILE_URLS, GUARD_ARGS, FileGuard, NetGuard
from common.chromium import close_quietly, launch_args
from common.errors import SuiteError
from common.logging import get_logger
from common.netguard import NetPolicy, Resolver, system_resolve
from servers.ui_testing.viewport import Viewport

if TYPE_CHECKING:
    from playwright.async_api import Browser as PWBrowser
    from playwright.async_api import BrowserContext, Page, Playwright

log = get_logger(__name__)

#: Used when the page does not choose a font, so captures look the same on every machine with these fonts.
FONT_STACK = '"Liberation Sans", "DejaVu Sans", Arial, sans-serif'
FREEZE_CSS = (
    "*,*::before,*::after{animation:none!important;transition:none!important;caret-color:transparent!important}"
)
# :where() has zero specificity, so any font the page sets itself still wins.
FONT_CSS = f":where(html){{font-family:{FONT_STACK}}}"
REPRO_CSS = FREEZE_CSS + FONT_CSS

# Injected before any page script runs; the observer covers navigations where <html> does not exist yet.
_INIT_SCRIPT = """(() => {
  const css = %s;
  const add = () => {
    const s = document.createElement('style');
    s.setAttribute('data-ui-testing', '');
    s.textContent = css;
    (document.head || document.documentElement).appendChild(s);
  };
  if (document.documentElement) { add(); return; }
  const o = new MutationObserver(() => { if (document.documentElement) { o.disconnect(); add(); } });
  o.observe(document, {childList: true});
})();"""

# Stable colours and glyph rasterisation between runs and machines.
#: Reproducible rendering on top of common.chromium's flags.
_LAUNCH_ARGS = ("--force-color-profile=srgb", "--font-render-hinting=none")
#: Spares kept at once (each an idle renderer process): one, for the viewport and init script of the last call.
MAX_SPARES = 1


#: A spare is made for one viewport and one init script (or none).
SpareKey = tuple[Viewport, str | None]


class BrowserUnavailable(SuiteError):
    """Chromium cannot be found or started; the message says how to install or configure it."""


@dataclass(frozen=True)
class BrowserOptions:
    """How to find and drive Chromium; the server's settings fill it in."""

    executable_path: str | None = None  # None: ``chromium`` on PATH
    launch_timeout_s: float = 30.0
    navigation_timeout_s: float = 15.0
    net_policy: NetPolicy = field(default_factory=NetPolicy)  # empty: public addresses only
    resolve: Resolver = system_resolve  # how the guard's proxy resolves names (tests inject one)


def find_chromium(options: BrowserOptions) -> str:
    """The Chromium executable to launch, or ``BrowserUnavailable`` saying how to get one."""
    path = options.executable_path or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        raise BrowserUnavailable(
            "Chromium not found; install it (Debian: apt-get install chromium) or set the Chromium executable path."
        )
    return path


class Browser:
    """A shared headless Chromium, started on first use and closed on exit of ``async with``."""

    def __init__(self, options: BrowserOptions | None = None) -> None:
        self.options = options or BrowserOptions()
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._browser: PWBrowser | None = None
        self._spares: dict[SpareKey, tuple[BrowserContext, Page]] = {}
        self._warming: dict[SpareKey, asyncio.Task[None]] = {}
        self._closings: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Every connection of every page goes through its proxy (and, via ``check``, each URL before it is opened).
        self.net = NetGuard(self.options.net_policy, setting="UI_TESTING_ALLOW_HOSTS", resolve=self.options.resolve)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def started(self) -> bool:
        """Whether a Chromium is running for this instance."""
        return self._browser is not None and self._browser.is_connected()

    @property
    def version(self) -> str | None:
        """The running Chromium's version, once started."""
        return self._browser.version if self._browser is not None else None

    async def _ensure(self) -> PWBrowser:
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._browser is not None:
                log.warning("ui_testing.browser_restart", reason="disconnected")
                await self._shutdown()
            executable = find_chromium(self.options)
            # Heavy: loaded on first browser use only, never at server start-up.
            from playwright.async_api import Error as PWError
            from playwright.async_api import async_playwright

            try:
                self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=executable,
                    headless=True,
                    args=launch_args((*_LAUNCH_ARGS, *GUARD_ARGS)),
                    timeout=self.options.launch_timeout_s * 1000,
                    **await self.net.launch_options(),
                )
            except (PWError, OSError) as exc:
                await self._shutdown()
                log.error("ui_testing.browser_launch_failed", executable=executable, error=str(exc)[:500])
                raise BrowserUnavailable(
                    f"Chromium at {executable} failed to start: {first_line(str(exc))}. Run the doctor to check it."
                ) from exc
            log.info("ui_testing.browser_started", executable=executable, version=self._browser.version)
            return self._browser

    async def _new_context(self, viewport: Viewport, file_guard: FileGuard | None) -> BrowserContext:
        browser = await self._ensure()
        ctx = await browser.new_context(
            viewport={"width": viewport.width, "height": viewport.height},
            device_scale_factor=viewport.scale,
            locale="en-US",
            timezone_id="UTC",
            reduced_motion="reduce",
            color_scheme="light",
            forced_colors="none",
            service_workers="block",
        )
        try:
            ctx.set_default_navigation_timeout(self.options.navigation_timeout_s * 1000)
            await ctx.add_init_script(_INIT_SCRIPT % json.dumps(REPRO_CSS))
            if file_guard is not None:
                await ctx.route(FILE_URLS, self.net.router(file_guard))
        except BaseException:
            with contextlib.suppress(Exception):
                await ctx.close()
            raise
        return ctx

    @contextlib.asynccontextmanager
    async def context(self, viewport: Viewport, file_guard: FileGuard | None = None) -> AsyncIterator[BrowserContext]:
        """A fresh context with the reproducibility settings; closed (with its pages) on exit.

        Every connection goes through ``self.net``'s proxy, which refuses blocked addresses; with
        ``file_guard`` every ``file:`` request (the page itself and what it loads) is passed to it and
        aborted unless it returns True.
        """
        ctx = await self._new_context(viewport, file_guard)
        try:
            yield ctx
        finally:
            with contextlib.suppress(Exception):  # the browser may already be gone; closing is best effort
                await ctx.close()

    @contextlib.asynccontextmanager
    async def page(
        self, viewport: Viewport, file_guard: FileGuard | None = None, init_script: str | None = None
    ) -> AsyncIterator[Page]:
        """A new page in a fresh context (see :meth:`context`); ``init_script`` runs in each document it loads.

        Pages not opened from a file come from a spare: a fresh, unused context and page of the same
        viewport and init script, made in the background after the previous such call (a new context
        costs Chromium a renderer process), so a call never sees anything an earlier one did. The
        context is closed in the background after the call.
        """
        if file_guard is not None:
            async with self.context(viewport, file_guard) as ctx:
                yield await _new_page(ctx, init_script)
            return
        key: SpareKey = (viewport, init_script)
        spare = await self._take_spare(key)
        if spare is None:
            ctx = await self._new_context(viewport, None)
            try:
                page = await _new_page(ctx, init_script)
            except BaseException:
                self._close_later(ctx)
                raise
        else:
            ctx, page = spare
        try:
            yield page
        finally:
            if self.started and not self._closing:
                self._close_later(ctx)
                # After the call, not during it: making a context while a page loads slows that page down.
                self._warm(key)
            else:
                await _close_context(ctx)

    def _close_later(self, ctx: BrowserContext) -> None:
        """Close ``ctx`` in the background (the caller's answer does not wait for it); ``close`` awaits it."""
        task = asyncio.get_running_loop().create_task(_close_context(ctx), name="ui_testing-close")
        self._closings.add(task)
        task.add_done_callback(self._closings.discard)

    async def _take_spare(self, key: SpareKey) -> tuple[BrowserContext, Page] | None:
        warming = self._warming.get(key)
        if warming is not None and not warming.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(warming)
        spare = self._spares.pop(key, None)
        if spare is None:
            return None
        ctx, page = spare
        if self.started and not page.is_closed():
            return ctx, page
        self._close_later(ctx)
        return None

    async def warmed(self) -> None:
        """Wait until the spares being made and the contexts being closed are done, so processes can be counted."""
        pending = [t for t in (*self._warming.values(), *self._closings) if not t.done()]
        if pending:
            await asyncio.gather(*(asyncio.shield(t) for t in pending), return_exceptions=True)

    def prepare_next(self, viewport: Viewport, init_script: str | None = None) -> None:
        """Start making the next call's spare now rather than after this call, for a call whose page is loaded
        and now runs a long script: that is the page's renderer's work, so a second core makes the spare."""
        if self.started:
            self._warm((viewport, init_script))

    def _warm(self, key: SpareKey) -> None:
        """Make the next spare for ``key`` in the background (one at a time per key, none while one is ready)."""
        warming = self._warming.get(key)
        if self._closing or key in self._spares or (warming is not None and not warming.done()):
            return
        self._warming[key] = asyncio.get_running_loop().create_task(self._make_spare(key), name="ui_testing-spare")

    async def _make_spare(self, key: SpareKey) -> None:
        viewport, init_script = key
        try:
            ctx = await self._new_context(viewport, None)
            page = await _new_page(ctx, init_script)
        except Exception as exc:  # a spare is an optimisation: the next call makes its own context
            log.info("ui_testing.spare_failed", error=str(exc)[:200])
            return
        old = self._spares.pop(key, None)
        self._spares[key] = (ctx, page)
        if old is not None:
            self._close_later(old[0])
        while len(self._spares) > MAX_SPARES:  # the least recently made goes
            oldest = next(iter(self._spares))
            self._close_later(self._spares.pop(oldest)[0])

    async def _drop_spares(self) -> None:
        warming = list(self._warming.values())
        self._warming.clear()
        for task in warming:
            task.cancel()
        for task in warming:
            with contextlib.suppress(BaseException):
                await task
        spares = list(self._spares.values())
        self._spares.clear()
        for ctx, _ in spares:
            self._close_later(ctx)
        if self._closings:
            await asyncio.gather(*list(self._closings), return_exceptions=True)

    async def close(self) -> None:
        """Close Chromium and the Playwright driver; safe to call twice."""
        self._closing = True
        try:
            await self._drop_spares()
            async with self._lock:
                await self._shutdown()
        finally:
            self._closing = False

    async def _shutdown(self) -> None:
        browser, pw = self._browser, self._playwright
        self._browser = self._playwright = None
        await close_quietly(browser, pw)
        await self.net.close()


async def _new_page(ctx: BrowserContext, init_script: str | None) -> Page:
    if init_script is not None:
        # Registered before the page opens, so its blank first document already compiles the script (a spare
        # does so in the background) and the navigation that follows runs it from the renderer's code cache.
        await ctx.add_init_script(init_script)
    return await ctx.new_page()


async def _close_context(ctx: BrowserContext) -> None:
    with contextlib.suppress(Exception):  # the browser may already be gone; closing is best effort
        await ctx.close()


def first_line(message: str, limit: int = 200) -> str:
    """The first line of a Playwright error, without its call log, cut to ``limit`` characters."""
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    line = re.sub(r"^\w+(\.\w+)?: ", "", line)  # "Page.goto: ..." -> "..."
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class VersionReport:
    """What ``doctor`` shows: the installed Chromium against the one this Playwright was built for."""

    executable: str | None
    installed: str | None
    expected: str | None
    same_major: bool | None
    note: str


def expected_chromium_version() -> str | None:
    """The Chromium version the installed Playwright expects (from its ``browsers.json``)."""
    # Heavy: loaded only when the doctor asks.
    import playwright

    manifest = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    try:
        data: dict[str, Any] = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    for entry in data.get("browsers", []):
        if entry.get("name") == "chromium":
            version = entry.get("browserVersion")
            return str(version) if version else None
    return None


async def version_report(options: BrowserOptions | None = None) -> VersionReport:
    """Run ``chromium --version`` and compare its major version with Playwright's expectation."""
    options = options or BrowserOptions()
    expected = expected_chromium_version()
    try:
        executable = find_chromium(options)
    except BrowserUnavailable as exc:
        return VersionReport(None, None, expected, None, str(exc))
    installed = None
    try:
        proc = await asyncio.create_subprocess_exec(
            executable, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=15)
        match = re.search(r"(\d+\.\d+\.\d+\.\d+)", out.decode(errors="replace"))
        installed = match.group(1) if match else None
    except (OSError, TimeoutError):
        installed = None
    if installed is None:
        return VersionReport(executable, None, expected, None, f"{executable} --version gave no version.")
    if expected is None:
        return VersionReport(executable, installed, None, None, "Playwright's expected Chromium version is unknown.")
    same = installed.split(".")[0] == expected.split(".")[0]
    note = (
        "Chromium matches Playwright's major version."
        if same
        else f"Chromium {installed.split('.')[0]} differs from Playwright's {expected.split('.')[0]}; "
        "launch, screenshots, scripts and audits work across the gap, newer CDP features may not."
    )
    return VersionReport(executable, installed, expected, same, note)
