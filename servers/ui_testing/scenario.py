"""Replayable scenarios: steps validated up front, run in one fresh context, stopping at the first failure.

A run records per step its status, duration and a short error, plus the console errors and failed
network requests of the whole run. Capture and audit steps return their results; the caller's
``on_capture``/``on_audit`` callbacks store them and return a record id kept on the step as ``ref``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.browser_guard import FileGuard, NetGuard, failure_reason
from common.errors import InvalidInput, SuiteError
from servers.ui_testing.audit import AuditResult, audit_page, expand_tags
from servers.ui_testing.browser import Browser, first_line
from servers.ui_testing.capture import CaptureResult, WaitSpec, check_url, open_url, shoot, short, wait_visible
from servers.ui_testing.images import Rect
from servers.ui_testing.viewport import Viewport

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request, Response, WebError

MAX_STEPS = 100
MAX_EVENTS = 50  # console errors and failed requests kept per run; the totals are counted beyond it
ERROR_CHARS = 200

Selector = Annotated[str, Field(min_length=1, max_length=500)]
Timeout = Annotated[int, Field(ge=100, le=30_000, description="Bound on this step, in ms.")]


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_ms: Timeout = 5_000


class Goto(_Step):
    action: Literal["goto"]
    timeout_ms: Timeout = 15_000
    url: str = Field(min_length=1, max_length=4000)
    until: Literal["load", "domcontentloaded", "networkidle"] = "load"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_url(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None


class Click(_Step):
    action: Literal["click"]
    selector: Selector


class Fill(_Step):
    action: Literal["fill"]
    selector: Selector
    value: str = Field(max_length=10_000)


class Press(_Step):
    action: Literal["press"]
    key: str = Field(min_length=1, max_length=50, description="A key such as Enter or Control+A.")
    selector: Selector | None = None


class WaitFor(_Step):
    action: Literal["wait_for"]
    selector: Selector
    state: Literal["visible", "hidden", "attached", "detached"] = "visible"


class AssertText(_Step):
    action: Literal["assert_text"]
    selector: Selector
    text: str = Field(min_length=1, max_length=2000)
    exact: bool = False


class AssertVisible(_Step):
    action: Literal["assert_visible"]
    selector: Selector


class AssertNoConsoleErrors(_Step):
    action: Literal["assert_no_console_errors"]


class CaptureStep(_Step):
    action: Literal["capture"]
    name: str | None = Field(default=None, max_length=200)
    full_page: bool = False
    selector: Selector | None = None
    mask_selectors: list[str] = Field(default_factory=list, max_length=20)
    mask_rects: list[Rect] = Field(default_factory=list, max_length=20)


class AuditStep(_Step):
    action: Literal["audit"]
    levels: list[str] | None = Field(default=None, max_length=8)

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[str] | None) -> list[str] | None:
        try:
            expand_tags(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value


Step = Annotated[
    Goto
    | Click
    | Fill
    | Press
    | WaitFor
    | AssertText
    | AssertVisible
    | AssertNoConsoleErrors
    | CaptureStep
    | AuditStep,
    Field(discriminator="action"),
]


class Scenario(BaseModel):
    """A named list of steps; the first must be ``goto``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    viewport: Viewport = Field(default_factory=lambda: Viewport(width=1366, height=768, scale=1))
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _starts_with_goto(self) -> Scenario:
        if self.steps[0].action != "goto":
            raise ValueError("the first step must be a goto")
        return self


def parse_scenario(data: dict[str, Any]) -> Scenario:
    """A validated ``Scenario``; ``InvalidInput`` names the first bad step and what is wrong with it."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(f"Invalid scenario at {where or 'top level'}: {message[:320]}") from None


class StepResult(BaseModel):
    """How one step went."""

    index: int
    action: str
    status: Literal["passed", "failed", "skipped"]
    duration_ms: int = 0
    error: str | None = None
    capture: CaptureResult | None = None
    audit: AuditResult | None = None
    ref: str | None = Field(default=None, description="Id of the stored capture or audit record.")


class ConsoleError(BaseModel):
    """A console error or an uncaught page exception."""

    kind: Literal["console", "exception"]
    text: str
    location: str | None = None


class FailedRequest(BaseModel):
    """A request that failed at the network level or answered 4xx/5xx."""

    url: str
    method: str
    failure: str


class RunResult(BaseModel):
    """A whole run: per-step results (steps after a failure are skipped), console and network problems."""

    status: Literal["passed", "failed"]
    failed_step: int | None = None
    error: str | None = None
    duration_ms: int
    steps: list[StepResult]
    console_errors: list[ConsoleError]
    console_errors_total: int
    failed_requests: list[FailedRequest]
    failed_requests_total: int


class StepFailed(Exception):
    """An assertion step did not hold; the message is short and says what was seen."""


OnCapture = Callable[[int, CaptureResult], Awaitable[str | None]]
OnAudit = Callable[[int, AuditResult], Awaitable[str | None]]


class _Recorder:
    """Console errors and failed requests of one context."""

    def __init__(self) -> None:
        self.console: list[ConsoleError] = []
        self.console_total = 0
        self.requests: list[FailedRequest] = []
        self.requests_total = 0

    def attach(self, ctx: BrowserContext) -> None:
        ctx.on("console", self._on_console)
        ctx.on("weberror", self._on_web_error)
        ctx.on("requestfailed", self._on_request_failed)
        ctx.on("response", self._on_response)

    def _add_console(self, entry: ConsoleError) -> None:
        self.console_total += 1
        if len(self.console) < MAX_EVENTS:
            self.console.append(entry)

    def _add_request(self, entry: FailedRequest) -> None:
        self.requests_total += 1
        if len(self.requests) < MAX_EVENTS:
            self.requests.append(entry)

    def _on_console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        loc = msg.location
        where = f"{short(loc.get('url', ''), 200)}:{loc.get('lineNumber', 0)}" if loc.get("url") else None
        self._add_console(ConsoleError(kind="console", text=short(msg.text, 300), location=where))

    def _on_web_error(self, err: WebError) -> None:
        self._add_console(ConsoleError(kind="exception", text=short(str(err.error), 300)))

    def _on_request_failed(self, request: Request) -> None:
        failure = failure_reason(request.url, request.failure or "failed")
        self._add_request(FailedRequest(url=short(request.url, 300), method=request.method, failure=failure[:100]))

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self._add_request(
                FailedRequest(
                    url=short(response.url, 300), method=response.request.method, failure=f"HTTP {response.status}"
                )
            )


async def run_scenario(
    browser: Browser,
    scenario: Scenario,
    root: Path,
    *,
    on_capture: OnCapture | None = None,
    on_audit: OnAudit | None = None,
    file_guard: FileGuard | None = None,
) -> RunResult:
    """Run ``scenario`` in one fresh context; captures are stored under ``root``; ``file_guard`` as in Browser."""
    from playwright.async_api import Error as PWError
    from playwright.async_api import TimeoutError as PWTimeout

    started = time.perf_counter()
    recorder = _Recorder()
    results: list[StepResult] = []
    failed: StepResult | None = None
    async with browser.context(scenario.viewport, file_guard) as ctx:
        recorder.attach(ctx)
        page = await ctx.new_page()
        for index, step in enumerate(scenario.steps):
            if failed is not None:
                results.append(StepResult(index=index, action=step.action, status="skipped"))
                continue
            t0 = time.perf_counter()
            result = StepResult(index=index, action=step.action, status="passed")
            try:
                result = await _run_step(page, step, result, scenario.viewport, root, recorder, browser.net)
                if result.capture is not None and on_capture is not None:
                    result = result.model_copy(update={"ref": await on_capture(index, result.capture)})
                if result.audit is not None and on_audit is not None:
                    result = result.model_copy(update={"ref": await on_audit(index, result.audit)})
            except (StepFailed, SuiteError) as exc:
                result = result.model_copy(update={"status": "failed", "error": short(str(exc), ERROR_CHARS)})
            except PWTimeout:
                selector = getattr(step, "selector", None)
                what = f" waiting for {short(selector)!r}" if selector else ""
                result = result.model_copy(
                    update={"status": "failed", "error": f"Timed out after {step.timeout_ms} ms{what}."}
                )
            except PWError as exc:
                result = result.model_copy(update={"status": "failed", "error": first_line(str(exc), ERROR_CHARS)})
            result = result.model_copy(update={"duration_ms": round((time.perf_counter() - t0) * 1000)})
            if result.status == "failed":
                failed = result
            results.append(result)
    return RunResult(
        status="failed" if failed else "passed",
        failed_step=failed.index if failed else None,
        error=failed.error if failed else None,
        duration_ms=round((time.perf_counter() - started) * 1000),
        steps=results,
        console_errors=recorder.console,
        console_errors_total=recorder.console_total,
        failed_requests=recorder.requests,
        failed_requests_total=recorder.requests_total,
    )


async def _run_step(
    page: Page, step: _Step, result: StepResult, viewport: Viewport, root: Path, recorder: _Recorder, net: NetGuard
) -> StepResult:
    """Execute one step; raises ``StepFailed``/``SuiteError``/Playwright's ``Error`` when it does not hold."""
    # Heavy: playwright loads on first browser use only.
    from playwright.async_api import expect

    t = step.timeout_ms
    match step:
        case Goto():
            await net.check(step.url)
            await open_url(page, step.url, WaitSpec(until=step.until, timeout_ms=t), navigation_timeout_ms=t)
        case Click():
            await page.locator(step.selector).first.click(timeout=t)
        case Fill():
            await page.locator(step.selector).first.fill(step.value, timeout=t)
        case Press():
            if step.selector:
                await page.locator(step.selector).first.press(step.key, timeout=t)
            else:
                await page.keyboard.press(step.key)
        case WaitFor():
            await page.locator(step.selector).first.wait_for(state=step.state, timeout=t)
        case AssertVisible():
            try:
                await expect(page.locator(step.selector).first).to_be_visible(timeout=t)
            except AssertionError:
                raise StepFailed(f"{short(step.selector)!r} is not visible after {t} ms.") from None
        case AssertText():
            locator = page.locator(step.selector).first
            await wait_visible(locator, step.selector, t)
            try:
                if step.exact:
                    await expect(locator).to_have_text(step.text, timeout=t)
                else:
                    await expect(locator).to_contain_text(step.text, timeout=t)
            except AssertionError:
                seen = await locator.inner_text(timeout=1_000)
                how = "exactly" if step.exact else "containing"
                raise StepFailed(
                    f"Expected {short(step.selector, 60)!r} {how} {short(step.text, 60)!r}, found {short(seen, 60)!r}."
                ) from None
        case AssertNoConsoleErrors():
            if recorder.console_total:
                first = recorder.console[0].text
                raise StepFailed(f"{recorder.console_total} console error(s), first: {short(first, 120)}")
        case CaptureStep():
            capture = await shoot(
                page,
                root,
                viewport=viewport,
                full_page=step.full_page,
                selector=step.selector,
                mask_selectors=step.mask_selectors,
                mask_rects=step.mask_rects,
                timeout_ms=t,
            )
            return result.model_copy(update={"capture": capture})
        case AuditStep():
            return result.model_copy(update={"audit": await audit_page(page, step.levels)})
    return result
