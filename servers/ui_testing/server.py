"""Wiring of the ui_testing server: thin tools over :class:`~servers.ui_testing.service.UiTestingService`."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from common.errors import InvalidInput
from common.runtime import Deps, ServiceTools, create_server
from common.tool_schema import P
from common.tools import READ, Hints, args_of
from servers.ui_testing.images import Rect
from servers.ui_testing.models import (
    AuditInfo,
    BaselineResult,
    CaptureInfo,
    CheckResult,
    Report,
    RunInfo,
    RunKind,
    RunList,
    RunStatus,
)
from servers.ui_testing.service import UiTestingService
from servers.ui_testing.settings import Settings

NAME = "ui_testing"
TITLE = "UI testing"

#: Loads a page in Chromium and stores what it saw: a write that reaches outside the suite.
BROWSE = Hints(read_only=False, destructive=False, idempotent=False, open_world=True)
MANAGE = Hints(read_only=False, destructive=True, idempotent=False)

Url = Annotated[str, P("http(s) or data:text/html URL, or local HTML file.", min_length=1, max_length=4000)]
PageKey = Annotated[str | None, P("Page name; default from URL.", max_length=200)]
ViewportArg = Annotated[str | None, P("Preset or WxH[@scale]; default laptop.", max_length=20)]
WaitFor = Annotated[str | None, P("networkidle, or a selector to wait for.", max_length=500)]
CaptureId = Annotated[int | None, P("A capture id.", ge=1)]
MaxRatio = Annotated[float | None, P("Changed-pixel share that passes.", ge=0, le=1)]
Limit = Annotated[int, P("Most items.", ge=1, le=50)]
Cursor = Annotated[str | None, P("From next_cursor.", max_length=512)]


INSTRUCTIONS = "Screenshots with visual baselines, accessibility audits and scripted UI checks in Chromium."

TOOLS = ServiceTools(UiTestingService, lean=True, outline_outputs=True, compact_text=True)


@TOOLS.tool("Capture page", BROWSE)
async def capture_page(
    url: Url,
    ctx: Context,
    page_key: PageKey = None,
    viewport: ViewportArg = None,
    full_page: Annotated[bool, P("Whole scrollable page.")] = False,
    selector: Annotated[str | None, P("Capture only this element.", max_length=500)] = None,
    wait_for: WaitFor = None,
    delay_ms: Annotated[int, P("Extra wait before the shot.", ge=0, le=10_000)] = 0,
    mask: Annotated[list[str], P("Selectors to paint over.", max_length=20)] = [],  # noqa: B006
    mask_rects: Annotated[
        list[Annotated[list[int], Field(min_length=4, max_length=4)]],
        P("[x, y, w, h] to paint over.", max_length=20),
    ] = [],  # noqa: B006
    thumbnail: Annotated[bool, P("Also store a thumbnail.")] = False,
    compare: Annotated[bool, P("Compare with the baseline.")] = False,
) -> CaptureInfo:
    """Screenshot a page reproducibly, stored by hash; returns path and id."""
    return await (await TOOLS.service(ctx)).capture(
        url,
        page_key=page_key,
        viewport=viewport,
        full_page=full_page,
        selector=selector,
        wait_for=wait_for,
        delay_ms=delay_ms,
        mask=mask,
        mask_rects=[Rect(x=r[0], y=r[1], width=r[2], height=r[3]) for r in mask_rects],
        thumbnail=thumbnail,
        compare_baseline=compare,
    )


@TOOLS.tool("Manage baselines", MANAGE)
async def manage_baseline(
    action: Annotated[Literal["compare", "set", "approve", "list", "history", "delete"], P("What to do.")],
    ctx: Context,
    capture_id: CaptureId = None,
    page_key: PageKey = None,
    viewport: ViewportArg = None,
    max_ratio: MaxRatio = None,
    limit: Limit = 5,
    cursor: Cursor = None,
) -> BaselineResult:
    """Visual baselines per page and viewport: compare a capture (default: latest) with its baseline, set,
    approve (old kept in history), list, history, delete."""
    svc = await TOOLS.service(ctx)
    if action == "compare":
        return await svc.compare_baseline(
            capture_id=capture_id, page_key=page_key, viewport=viewport, max_ratio=max_ratio
        )
    if action in ("set", "approve"):
        return await svc.set_baseline(
            capture_id=capture_id, page_key=page_key, viewport=viewport, approve=action == "approve"
        )
    if action == "delete":
        if not page_key:
            raise InvalidInput("delete needs page_key (and optionally viewport).")
        return await svc.delete_baselines(page_key, viewport)
    return await svc.list_baselines(
        page_key=page_key, viewport=viewport, history=action == "history", limit=limit, cursor=cursor
    )


@TOOLS.tool("Audit accessibility", BROWSE)
async def audit_page(
    url: Url,
    ctx: Context,
    page_key: PageKey = None,
    viewport: ViewportArg = None,
    levels: Annotated[
        list[str] | None,
        P("wcag2a/2aa/2aaa/21a/21aa (default)/22aa, best-practice, section508.", max_length=8),
    ] = None,
    wait_for: WaitFor = None,
    set_baseline: Annotated[bool, P("Make it the baseline (the first audit is).")] = False,
) -> AuditInfo:
    """Audit a page with axe: worst violations, and what is new or fixed since its baseline audit."""
    return await (await TOOLS.service(ctx)).audit(**args_of(locals()))


@TOOLS.tool("Manage checks", MANAGE)
async def manage_check(
    action: Annotated[Literal["save", "list", "get", "delete", "cancel"], P("What to do.")],
    ctx: Context,
    name: Annotated[str | None, P("Check name (all but list).", max_length=100)] = None,
    scenario: Annotated[
        dict[str, Any] | None,
        P(
            "{viewport?: {width, height}, steps: [{action, selector?, ...}]}: goto(url) first, click, fill(value), "
            "press(key), wait_for, assert_text(text), assert_visible, assert_no_console_errors, capture, audit."
        ),
    ] = None,
    limit: Limit = 10,
    cursor: Cursor = None,
) -> CheckResult:
    """Stored UI checks: save, list with pass/fail trend, get, delete, cancel a running run."""
    svc = await TOOLS.service(ctx)
    if action == "list":
        return await svc.list_checks(limit=limit, cursor=cursor)
    if not name:
        raise InvalidInput(f"{action} needs the check's name.")
    if action == "save":
        if scenario is None:
            raise InvalidInput("save needs scenario: {steps: [{action: 'goto', url: ...}, ...]}.")
        return await svc.save_check(name, scenario)
    if action == "get":
        return await svc.get_check(name)
    if action == "cancel":
        return await svc.cancel_check(name)
    return await svc.delete_check(name)


@TOOLS.tool("Run check", BROWSE)
async def run_check(
    name: Annotated[str, P("A saved check.", min_length=1, max_length=100)],
    ctx: Context,
    wait_s: Annotated[float | None, P("Seconds to wait (default 20).", ge=0, le=120)] = None,
) -> RunInfo:
    """Run a saved check as a job; returns the run (steps, errors, change since last pass) or its progress."""
    return await (await TOOLS.service(ctx)).run_check(**args_of(locals()), progress=ctx.report_progress)


@TOOLS.tool("List runs", READ)
async def list_runs(
    ctx: Context,
    run_id: Annotated[int | None, P("One run's summary instead.", ge=1)] = None,
    kind: Annotated[RunKind | None, P("Only this kind.")] = None,
    status: Annotated[RunStatus | None, P("Only this status.")] = None,
    key: Annotated[str | None, P("Only this page key or check.", max_length=200)] = None,
    limit: Limit = 8,
    cursor: Cursor = None,
) -> RunList:
    """Runs (comparisons, audits, checks), newest first; or one run: failing step, console errors, diff figures."""
    svc = await TOOLS.service(ctx)
    if run_id is not None:
        return await svc.run_summary(run_id)
    page = await svc.list_runs(kind=kind, status=status, key=key, limit=limit, cursor=cursor)
    return RunList(**page.model_dump())


@TOOLS.tool("UI report", READ)
async def ui_report(ctx: Context, limit: Limit = 15, cursor: Cursor = None) -> Report:
    """Latest visual and accessibility status per page key, check trends, Chromium version check."""
    return await (await TOOLS.service(ctx)).report(limit=limit, cursor=cursor)


def build(settings: Settings) -> MCPServer[Deps]:
    """The ui_testing server: tools, resources, and the service its lifespan starts."""
    # Outlined outputs and lean inputs keep tools/list under 8 KB; results are still validated models.
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("ui://runs/{run_id}", name="run", mime_type="application/json")
    async def run_resource(run_id: str, ctx: Context) -> str:
        """One run's summary as JSON."""
        if not run_id.isdigit():
            raise InvalidInput("run id must be a number.")
        return (await (await TOOLS.service(ctx)).get_run(int(run_id))).model_dump_json()

    @server.resource("ui://baselines/{page_key}", name="baseline", mime_type="application/json")
    async def baseline_resource(page_key: str, ctx: Context) -> str:
        """The current baselines of a page key (every viewport) as JSON."""
        found = await (await TOOLS.service(ctx)).list_baselines(page_key=unquote(page_key), limit=20)
        return json.dumps(found.model_dump(mode="json"))

    return server


__all__ = ["build"]
