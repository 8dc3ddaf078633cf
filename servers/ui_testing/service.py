"""The ui_testing service: captures, baselines, comparisons, audits and checks, with no MCP in sight.

One lazily started Chromium per process (:class:`~servers.ui_testing.browser.Browser`) and a fresh
context per call, so several processes and concurrent calls never share browser state. Images are
stored on disk by content hash under :meth:`Settings.image_root`; every row that points at one is
written only after the image is on disk, so a failed call leaves no row behind. Checks run as jobs
(``common.jobs``): a run row per execution, its steps, console errors, failed requests, captures
and audits, compared with the check's last passing run.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from common.browser_guard import FileGuard
from common.errors import InvalidInput, NotFound, SuiteError
from common.jobs import JobContext, Jobs, Progress
from common.logging import get_logger
from common.netguard import NetPolicy
from common.paging import Page, decode_cursor, fingerprint
from common.rows import model_of
from common.runtime import Deps
from common.safefiles import Roots
from common.workers import Periodic
from servers.ui_testing import store
from servers.ui_testing.audit import audit as audit_url
from servers.ui_testing.audit import delta, expand_tags
from servers.ui_testing.browser import Browser, BrowserOptions, VersionReport, version_report
from servers.ui_testing.capture import INLINE_HTML, check_url, open_url, shoot, short
from servers.ui_testing.checkrun import BROWSER, CheckRun, load_audit, store_audit
from servers.ui_testing.diff import DiffResult, compare
from servers.ui_testing.images import Rect, prune_files
from servers.ui_testing.inputs import (
    check_page_key,
    default_page_key,
    fit,
    parse_viewport,
    trimmed,
    viewport_key,
    wait_spec,
)
from servers.ui_testing.models import (
    AuditInfo,
    BaselineInfo,
    BaselineResult,
    CaptureInfo,
    CheckInfo,
    CheckResult,
    CompareInfo,
    FindingInfo,
    Report,
    RunInfo,
    RunKind,
    RunList,
    RunRow,
    RunStatus,
    StepInfo,
    ViolationInfo,
)
from servers.ui_testing.scenario import Goto, Scenario, parse_scenario
from servers.ui_testing.settings import Settings

log = get_logger(__name__)

SHOWN = 5  # boxes, violations and findings in a default answer
REPORT_CHECKS = 5  # checks (with their trend) in the report; manage_check list pages through all of them
_CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _fewer_boxes(compare: CompareInfo | None) -> CompareInfo | None:
    """``compare`` without its last (smallest) box shown, ``regions_total`` unchanged; None when it shows none."""
    if compare is None or not compare.boxes:
        return None
    return compare.model_copy(update={"boxes": compare.boxes[:-1]})


def _capture_with_fewer_boxes(info: CaptureInfo) -> CaptureInfo | None:
    fewer = _fewer_boxes(info.compare)
    return info.model_copy(update={"compare": fewer}) if fewer else None


def _baseline_with_fewer_boxes(answer: BaselineResult) -> BaselineResult | None:
    fewer = _fewer_boxes(answer.compare)
    return answer.model_copy(update={"compare": fewer}) if fewer else None


def _audit_with_fewer_items(info: AuditInfo) -> AuditInfo | None:
    """``info`` without the last item of its longest list (the totals stay); None when one item is left."""
    if len(info.violations) + len(info.new) + len(info.fixed) <= 1:
        return None
    name = max(("fixed", "new", "violations"), key=lambda n: len(getattr(info, n)))
    return info.model_copy(update={name: getattr(info, name)[:-1]})


def _run_with_fewer_items(info: RunInfo) -> RunInfo | None:
    """``info`` a little smaller, losing the least first: the failed step's copy of the run's ``error``, then
    the oldest step shown and the extra console errors and failed requests (one of each stays), then those
    last ones, then the last step (``failed_step`` and ``error`` still say what failed); the totals always
    stay. None when nothing is left to drop."""
    if info.error is not None and any(step.error == info.error for step in info.steps):
        steps = [step.model_copy(update={"error": None}) if step.error == info.error else step for step in info.steps]
        return info.model_copy(update={"steps": steps})
    if len(info.steps) > 1 or len(info.console_errors) > 1 or len(info.failed_requests) > 1:
        return info.model_copy(
            update={
                "steps": info.steps[1:] if len(info.steps) > 1 else info.steps,
                "console_errors": info.console_errors[:-1] or info.console_errors[:1],
                "failed_requests": info.failed_requests[:-1] or info.failed_requests[:1],
            }
        )
    if info.console_errors or info.failed_requests:
        return info.model_copy(update={"console_errors": [], "failed_requests": []})
    if info.steps:
        return info.model_copy(update={"steps": []})
    return None


class UiTestingService:
    """Every operation of the ui_testing server (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.db = deps.db
        self.settings = settings
        self.root = settings.image_root()
        self.roots = Roots(settings.allowed_roots, setting="UI_TESTING_ALLOWED_ROOTS")
        self.browser = Browser(
            BrowserOptions(
                executable_path=settings.chromium_path,
                launch_timeout_s=settings.launch_timeout_s,
                navigation_timeout_s=settings.navigation_timeout_s,
                net_policy=NetPolicy.from_entries(settings.allow_hosts),
            )
        )
        self.jobs = Jobs(deps.db, "ui_testing", heartbeat_s=settings.heartbeat_s, stale_after_s=settings.job_stale_s)
        self._version: VersionReport | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[UiTestingService]:
        """The running service; Chromium starts on first use and is closed, with running checks, on exit."""
        svc = cls(deps, settings)
        await svc.recover()
        try:
            async with Periodic("ui_testing-prune", svc.prune_images, interval_s=settings.sweep_interval_s):
                yield svc
        finally:
            await svc.jobs.close()
            await svc.browser.close()

    async def prune_images(self, grace_s: float | None = None) -> tuple[int, int, int]:
        """Retention: old captures that no baseline, recent capture or kept check run needs, old comparisons'
        diff images, then every image file no row points at. (captures, diffs, files) removed."""
        s = self.settings
        grace = s.image_grace_s if grace_s is None else grace_s
        captures = await store.prune_captures(self.db, s.keep_captures, s.keep_runs, grace)
        diffs = await store.prune_diffs(self.db, s.keep_captures, grace)
        referenced = await store.referenced_images(self.db)
        files = await asyncio.to_thread(prune_files, self.root, referenced, grace)
        if captures or diffs or files:
            log.info("ui_testing.pruned", captures=captures, diffs=diffs, files=files)
        return captures, diffs, files

    async def recover(self) -> list[int]:
        """Mark check runs whose process stopped as interrupted; their run ids."""
        await self.jobs.recover()
        ids = await store.mark_interrupted(self.db)
        if ids:
            log.warning("ui_testing.runs_interrupted", runs=ids)
        return ids

    # ------------------------------------------------------------------------------- targets

    def target(self, url: str) -> str:
        """An http(s) or inline ``data:text/html`` URL as given, or a local file under the allowed roots as a
        ``file://`` URL."""
        url = url.strip()
        if url.lower().startswith(("http://", "https://", INLINE_HTML)):
            return check_url(url)
        if url.lower().startswith("file://"):
            path = unquote(urlsplit(url).path)
        elif _SCHEME.match(url):
            raise InvalidInput(f"Cannot open {short(url)!r}: give an http(s):// URL or a local HTML file path.")
        else:
            path = url
        return self.roots.resolve(path, kind="file").as_uri()

    def file_allowed(self, url: str) -> bool:
        """Whether a page may load this ``file:`` URL: a regular file inside the allowed roots."""
        try:
            self.roots.resolve(unquote(urlsplit(url).path), kind="file")
        except SuiteError:
            return False
        return True

    def _guard(self, *urls: str) -> FileGuard | None:
        # Chromium refuses file: URLs to pages opened over http(s), so only pages opened from a file need it.
        return self.file_allowed if any(u.lower().startswith("file:") for u in urls) else None

    # ------------------------------------------------------------------------------- capture

    async def capture(
        self,
        url: str,
        *,
        page_key: str | None = None,
        viewport: str | None = None,
        full_page: bool = False,
        selector: str | None = None,
        wait_for: str | None = None,
        delay_ms: int = 0,
        timeout_ms: int = 10_000,
        mask: list[str] | None = None,
        mask_rects: list[Rect] | None = None,
        thumbnail: bool = False,
        compare_baseline: bool = False,
        max_ratio: float | None = None,
    ) -> CaptureInfo:
        """Capture a page and record it; with ``compare_baseline`` compare it with its baseline at once."""
        vp = parse_viewport(viewport)
        target = self.target(url)
        key = check_page_key(page_key) if page_key else default_page_key(target)
        wait = wait_spec(wait_for, delay_ms, timeout_ms)
        await self.browser.net.check(target)
        async with self.browser.page(vp, self._guard(target)) as page:
            status = await open_url(page, target, wait)
            shot = await shoot(
                page,
                self.root,
                viewport=vp,
                full_page=full_page,
                selector=selector,
                mask_selectors=mask,
                mask_rects=mask_rects,
                make_thumbnail=thumbnail,
                timeout_ms=timeout_ms,
                max_height=self.settings.max_full_page_height,
            )
        row: dict[str, Any] = {
            "page_key": key,
            "url": target,
            "viewport": viewport_key(vp),
            "browser": BROWSER,
            "sha256": shot.sha256,
            "path": shot.path,
            "width": shot.width,
            "height": shot.height,
            "bytes": shot.bytes,
            "full_page": shot.full_page,
            "selector": selector,
            "http_status": status,
            "thumb_path": shot.thumbnail.path if shot.thumbnail else None,
        }
        capture_id = await store.insert_capture(self.db, row)
        info = CaptureInfo(
            id=capture_id,
            page_key=key,
            viewport=row["viewport"],
            path=shot.path,
            sha256=shot.sha256,
            width=shot.width,
            height=shot.height,
            bytes=shot.bytes,
            http_status=status,
            thumbnail_path=row["thumb_path"],
        )
        if compare_baseline:
            info.compare = await self.compare(capture_id=capture_id, max_ratio=max_ratio)
            return trimmed(info, _capture_with_fewer_boxes)
        return info

    async def _capture_row(self, capture_id: int | None, page_key: str | None, viewport: str | None) -> dict[str, Any]:
        if capture_id is not None:
            row = await store.get_capture(self.db, capture_id)
            if row is None:
                raise NotFound(f"No capture {capture_id}; capture_page returns capture ids.")
            return row
        if not page_key:
            raise InvalidInput("Give capture_id, or page_key (and viewport) to use the latest capture of a page.")
        vkey = viewport_key(parse_viewport(viewport)) if viewport else None
        row = await store.latest_capture(self.db, check_page_key(page_key), vkey, BROWSER)
        if row is None:
            raise NotFound(f"No capture of page key {short(page_key, 60)!r}; capture the page first.")
        return row

    # ------------------------------------------------------------------------------- baselines

    async def set_baseline(
        self,
        *,
        capture_id: int | None = None,
        page_key: str | None = None,
        viewport: str | None = None,
        note: str | None = None,
        approve: bool = False,
    ) -> BaselineResult:
        """Make a capture the current baseline of its (page key, viewport, browser); the old one stays in history."""
        cap = await self._capture_row(capture_id, page_key, viewport)
        key, vkey, browser = cap["page_key"], cap["viewport"], cap["browser"]
        async with self.db.transaction() as conn:
            await store.lock_key(conn, f"{key}|{vkey}|{browser}")
            current = await store.current_baseline(conn, key, vkey, browser)
            if current is not None and current["capture_id"] == cap["id"]:
                row, replaced = current, None
            else:
                if approve and current is None:
                    log.info("ui_testing.approve_without_baseline", page_key=key)
                replaced = await store.retire_baseline(conn, key, vkey, browser)
                new_id = await store.insert_baseline(conn, key, vkey, browser, cap["id"], note)
                row = await store.get_baseline(conn, new_id)
        if replaced is None and current is not None:
            message = f"Capture {cap['id']} already is the baseline of {key} at {vkey}."
        elif replaced is None:
            message = f"Capture {cap['id']} is now the baseline of {key} at {vkey}."
        else:
            message = f"Capture {cap['id']} replaced baseline {replaced} of {key} at {vkey} (kept in history)."
        return BaselineResult(
            action="approve" if approve else "set", baselines=[self._baseline(row)], total=1, message=message
        )

    @staticmethod
    def _baseline(row: dict[str, Any]) -> BaselineInfo:
        return model_of(BaselineInfo, row, current=row["is_current"])

    async def list_baselines(
        self,
        *,
        page_key: str | None = None,
        viewport: str | None = None,
        history: bool = False,
        limit: int = 5,
        cursor: str | None = None,
    ) -> BaselineResult:
        """Current baselines (or, with ``history``, replaced ones too), by page key, newest first."""
        vkey = viewport_key(parse_viewport(viewport)) if viewport else None
        fp = fingerprint("baselines", page_key, vkey, history)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_baselines(self.db, page_key, vkey, history, limit, offset)

        def answer(page: Page[BaselineInfo]) -> BaselineResult:
            return BaselineResult(
                action="history" if history else "list",
                baselines=page.items,
                total=page.total,
                truncated=page.truncated,
                next_cursor=page.next_cursor,
                message=f"{total} baseline(s).",
            )

        items = [self._baseline(r) for r in rows]
        return answer(fit(items, total=total, offset=offset, limit=limit, fp=fp, answer=answer))

    async def delete_baselines(self, page_key: str, viewport: str | None = None) -> BaselineResult:
        """Delete the baselines of a page key (one viewport, or all), history included."""
        vkey = viewport_key(parse_viewport(viewport)) if viewport else None
        async with self.db.transaction() as conn:
            n = await store.delete_baselines(conn, check_page_key(page_key), vkey)
        if not n:
            raise NotFound(f"No baseline for page key {short(page_key, 60)!r}; list baselines to see the keys.")
        return BaselineResult(action="delete", baselines=[], total=0, message=f"Deleted {n} baseline row(s).")

    # ------------------------------------------------------------------------------- compare

    async def compare(
        self,
        *,
        capture_id: int | None = None,
        page_key: str | None = None,
        viewport: str | None = None,
        max_ratio: float | None = None,
    ) -> CompareInfo:
        """Compare a capture (or a page's latest) with its current baseline; records a compare run."""
        cap = await self._capture_row(capture_id, page_key, viewport)
        base = await store.current_baseline(self.db, cap["page_key"], cap["viewport"], cap["browser"])
        if base is None:
            raise NotFound(
                f"No baseline for {short(cap['page_key'], 60)} at {cap['viewport']}; make capture {cap['id']} "
                "the baseline with manage_baseline (action set)."
            )
        ratio = self.settings.max_diff_ratio if max_ratio is None else max_ratio
        result: DiffResult = await asyncio.to_thread(
            compare,
            Path(base["path"]),
            Path(cap["path"]),
            self.root,
            max_ratio=ratio,
            threshold=self.settings.pixel_threshold,
        )
        size = f"{result.size_a[0]}x{result.size_a[1]} -> {result.size_b[0]}x{result.size_b[1]}"
        details = {
            "capture_id": cap["id"],
            "baseline_id": base["id"],
            "baseline_capture_id": base["capture_id"],
            "changed_ratio": result.changed_ratio,
            "max_ratio": ratio,
            "size_changed": not result.same_size,
            "size": size,
            "boxes": [b.model_dump() for b in result.boxes[:SHOWN]],
            "regions_total": result.regions_total,
            "diff_path": result.diff_path,
        }
        run_id = await store.insert_run(
            self.db,
            kind="compare",
            status="passed" if result.passed else "failed",
            page_key=cap["page_key"],
            viewport=cap["viewport"],
            summary=result.summary,
            details=details,
        )
        return CompareInfo(
            run_id=run_id,
            passed=result.passed,
            capture_id=cap["id"],
            baseline_capture_id=base["capture_id"],
            changed_ratio=round(result.changed_ratio, 6),
            max_ratio=ratio,
            size_changed=not result.same_size,
            size=size,
            boxes=result.boxes[:SHOWN],
            regions_total=result.regions_total,
            diff_path=result.diff_path,
            summary=result.summary,
        )

    async def compare_baseline(
        self,
        *,
        capture_id: int | None = None,
        page_key: str | None = None,
        viewport: str | None = None,
        max_ratio: float | None = None,
    ) -> BaselineResult:
        """:meth:`compare` as manage_baseline answers it."""
        result = await self.compare(capture_id=capture_id, page_key=page_key, viewport=viewport, max_ratio=max_ratio)
        answer = BaselineResult(action="compare", baselines=[], total=0, compare=result, message=result.summary)
        return trimmed(answer, _baseline_with_fewer_boxes)

    # ------------------------------------------------------------------------------- audit

    async def audit(
        self,
        url: str,
        *,
        page_key: str | None = None,
        viewport: str | None = None,
        levels: list[str] | None = None,
        wait_for: str | None = None,
        timeout_ms: int = 10_000,
        set_baseline: bool = False,
    ) -> AuditInfo:
        """Audit a page with axe and compare the findings with the page's baseline audit (the first, by default)."""
        expand_tags(levels)
        vp = parse_viewport(viewport)
        target = self.target(url)
        key = check_page_key(page_key) if page_key else default_page_key(target)
        wait = wait_spec(wait_for, 0, timeout_ms)
        result = await audit_url(self.browser, target, vp, levels, wait, file_guard=self._guard(target))
        baseline_id = await store.audit_baseline(self.db, key)
        base = await load_audit(self.db, baseline_id) if baseline_id is not None else None
        if base is None:
            note = "first audit of this page: it is now the baseline."
        elif sorted(base.tags) != sorted(result.tags):
            # Findings of other levels are not comparable: every rule outside the overlap would look new or fixed.
            note = "the baseline audit checked other levels, so no delta; set_baseline=true to compare at these."
            base = None
        else:
            note = ""
        d = delta(base, result) if base is not None else delta(result, result)
        passed = not d.new
        summary = (
            f"{sum(v.nodes for v in result.violations)} failing element(s) in {len(result.violations)} rule(s); "
            + (note or d.summary)
        )
        async with self.db.transaction() as conn:
            run_id = await store.insert_run(
                conn,
                kind="audit",
                status="passed" if passed else "failed",
                page_key=key,
                viewport=viewport_key(vp),
                summary=summary,
                details={
                    "new_total": len(d.new),
                    "fixed_total": len(d.fixed),
                    "violations_total": len(result.violations),
                    "baseline_audit_id": baseline_id,
                },
            )
            audit_id = await store_audit(conn, result, key, viewport_key(vp), run_id, None)
            await store.set_run_details(conn, run_id, {"audit_id": audit_id})
            await store.set_audit_baseline(conn, key, audit_id, only_if_none=not set_baseline)
        info = AuditInfo(
            run_id=run_id,
            audit_id=audit_id,
            page_key=key,
            passed=passed,
            violations_total=len(result.violations),
            violations=[
                ViolationInfo(
                    rule=v.rule,
                    impact=v.impact,
                    help=short(v.help, 100),
                    nodes=v.nodes,
                    selectors=[short(sel, 100) for sel in v.selectors[:2]],
                )
                for v in result.violations[:SHOWN]
            ],
            new=[FindingInfo(rule=f.rule, impact=f.impact, selector=short(f.selector, 100)) for f in d.new[:SHOWN]],
            new_total=len(d.new),
            fixed=[FindingInfo(rule=f.rule, impact=f.impact, selector=short(f.selector, 100)) for f in d.fixed[:SHOWN]],
            fixed_total=len(d.fixed),
            summary=summary,
        )
        return trimmed(info, _audit_with_fewer_items)

    # ------------------------------------------------------------------------------- checks

    def _check_name(self, name: str) -> str:
        if not _CHECK_NAME.match(name):
            raise InvalidInput(
                f"Invalid check name {short(name, 40)!r}: 1-100 letters, digits and _ . : / -, starting with a "
                "letter or digit."
            )
        return name

    def _validate_scenario(self, data: dict[str, Any]) -> Scenario:
        scenario = parse_scenario(data)
        for i, step in enumerate(scenario.steps):
            if isinstance(step, Goto) and not step.url.lower().startswith(("http://", "https://")):
                try:
                    self.target(step.url)
                except (InvalidInput, NotFound) as exc:
                    raise InvalidInput(f"Invalid scenario at steps.{i}.url: {exc}") from None
        return scenario

    async def save_check(self, name: str, scenario: dict[str, Any]) -> CheckResult:
        """Save (or replace) a named scenario after validating every step."""
        self._check_name(name)
        parsed = self._validate_scenario(scenario)
        _, created = await store.upsert_check(self.db, name, parsed.model_dump(mode="json", exclude_none=True))
        checks = await self.list_checks(name=name)
        verb = "Saved" if created else "Replaced"
        return checks.model_copy(
            update={"action": "save", "message": f"{verb} check {name} ({len(parsed.steps)} steps)."}
        )

    async def list_checks(self, *, name: str | None = None, limit: int = 10, cursor: str | None = None) -> CheckResult:
        """Saved checks by name, with their pass/fail trend."""
        fp = fingerprint("checks", name)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_checks(self.db, name, limit, offset)
        items = [
            CheckInfo(
                name=r["name"],
                steps=len(r["scenario"].get("steps", [])),
                trend=r["trend"] or "",
                last_status=r["last_status"],
                last_run_id=r["last_run_id"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

        def answer(page: Page[CheckInfo]) -> CheckResult:
            return CheckResult(
                action="list",
                checks=page.items,
                total=page.total,
                truncated=page.truncated,
                next_cursor=page.next_cursor,
                message=f"{total} check(s).",
            )

        return answer(fit(items, total=total, offset=offset, limit=limit, fp=fp, answer=answer))

    async def get_check(self, name: str) -> CheckResult:
        """One check with its steps."""
        row = await store.get_check(self.db, self._check_name(name))
        if row is None:
            raise NotFound(f"No check named {short(name, 60)!r}; list the checks to see their names.")
        listed = await self.list_checks(name=name)
        # Defaults left out: the steps as written, without every step's implied options.
        steps = parse_scenario(row["scenario"]).model_dump(mode="json", exclude_defaults=True)
        return listed.model_copy(update={"action": "get", "scenario": steps, "message": f"Check {name}."})

    async def delete_check(self, name: str) -> CheckResult:
        """Delete a check; its past runs stay listed under its name."""
        if await store.delete_check(self.db, self._check_name(name)) is None:
            raise NotFound(f"No check named {short(name, 60)!r}; nothing was deleted.")
        return CheckResult(action="delete", checks=[], total=0, message=f"Deleted check {name}; its runs are kept.")

    async def cancel_check(self, name: str) -> CheckResult:
        """Ask the running run of a check to stop (at its next capture or audit step)."""
        job_id = await store.running_check_job(self.db, self._check_name(name))
        if job_id is None:
            raise NotFound(f"Check {short(name, 60)!r} has no running run; nothing to cancel.")
        job = await self.jobs.cancel(job_id)
        return CheckResult(action="cancel", checks=[], total=0, message=f"Cancel requested; job is {job.status}.")

    async def run_check(self, name: str, *, wait_s: float | None = None, progress: Progress | None = None) -> RunInfo:
        """Start a run of a saved check as a job, wait up to ``wait_s`` and return the run (possibly still running)."""
        row = await store.get_check(self.db, self._check_name(name))
        if row is None:
            raise NotFound(f"No check named {short(name, 60)!r}; save it with manage_check first.")
        scenario = self._validate_scenario(row["scenario"])  # the allowed roots may have changed since
        await self.jobs.recover()
        job = await self.jobs.start("check", name, {"check_id": row["id"]}, total=len(scenario.steps))
        try:
            run_id = await store.insert_run(
                self.db,
                kind="check",
                status="running",
                check_id=row["id"],
                check_name=name,
                job_id=job.id,
                viewport=viewport_key(scenario.viewport),
                summary="Running.",
            )
        except BaseException as exc:
            failure = exc

            async def fail(_: JobContext) -> str | None:
                raise failure

            await self.jobs.run(job, fail)
            raise
        gotos = [step.url for step in scenario.steps if isinstance(step, Goto)]
        work = CheckRun(
            db=self.db,
            browser=self.browser,
            root=self.root,
            pixel_threshold=self.settings.pixel_threshold,
            file_guard=self._guard(*gotos),
            run_id=run_id,
            check_id=row["id"],
            name=name,
            scenario=scenario,
        )
        self.jobs.spawn(job, work)
        wait = self.settings.check_wait_s if wait_s is None else wait_s
        await self.jobs.wait(job.id, timeout_s=wait, progress=progress)
        return await self.get_run(run_id)

    # ------------------------------------------------------------------------------- runs

    async def list_runs(
        self,
        *,
        kind: RunKind | None = None,
        status: RunStatus | None = None,
        key: str | None = None,
        limit: int = 8,
        cursor: str | None = None,
    ) -> Page[RunRow]:
        """Runs, newest first, filtered by kind, status, and page key or check name."""
        fp = fingerprint("runs", kind, status, key)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_runs(self.db, kind, status, key, limit, offset)
        items = [model_of(RunRow, r, check=r["check_name"], summary=short(r["summary"], 120)) for r in rows]
        return fit(items, total=total, offset=offset, limit=limit, fp=fp, answer=lambda p: RunList(**p.model_dump()))

    async def run_summary(self, run_id: int) -> RunList:
        """:meth:`get_run` as list_runs answers it."""

        def smaller(answer: RunList) -> RunList | None:
            run = _run_with_fewer_items(answer.run) if answer.run else None
            return answer.model_copy(update={"run": run}) if run else None

        return trimmed(RunList(items=[], total=1, truncated=False, run=await self.get_run(run_id)), smaller)

    async def get_run(self, run_id: int) -> RunInfo:
        """One run's summary: steps, console errors and failed requests for checks; figures for the others."""
        row = await store.get_run(self.db, run_id)
        if row is None:
            raise NotFound(f"No run {run_id}; list_runs shows recent runs.")
        d: dict[str, Any] = row["details"]
        info = model_of(RunInfo, row, check=row["check_name"], details={})
        if row["kind"] != "check":
            keep = {k: v for k, v in d.items() if k != "boxes"}
            if d.get("boxes"):
                keep["boxes"] = d["boxes"][:3]
            return info.model_copy(update={"details": keep})
        steps = [StepInfo(**s) for s in d.get("steps", [])]
        failed = d.get("failed_step")
        # Around the failure when there are many steps: what led to it matters most.
        end = (failed + 1) if failed is not None else len(steps)
        shown = steps[max(0, end - 8) : end] if len(steps) > 8 else steps
        info = info.model_copy(
            update={
                "failed_step": failed,
                "error": d.get("error"),
                "steps": shown,
                "steps_total": len(steps),
                "console_errors": [short(t, 120) for t in d.get("console_errors", [])[:3]],
                "console_errors_total": d.get("console_errors_total", 0),
                "failed_requests": [short(t, 120) for t in d.get("failed_requests", [])[:3]],
                "failed_requests_total": d.get("failed_requests_total", 0),
                "vs_last_pass": d.get("vs_last_pass"),
            }
        )
        return trimmed(info, _run_with_fewer_items)

    # ------------------------------------------------------------------------------- report

    async def browser_report(self) -> VersionReport:
        """Chromium's version against Playwright's expected one (computed once per process)."""
        if self._version is None:
            self._version = await version_report(self.browser.options)
        return self._version

    async def report(self, *, limit: int = 15, cursor: str | None = None) -> Report:
        """One line per page key (latest comparison and audit) and per check (trend), and the browser."""
        fp = fingerprint("report")
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.page_status(self.db, limit, offset)
        lines = []
        for r in rows:
            v, a = r["visual"], r["a11y"]
            parts = []
            bad = False
            if v:
                ratio = float(v.get("ratio") or 0.0)
                parts.append(f"visual {v['status']} ({ratio:.2%})")
                bad = v["status"] != "passed"
            if a:
                parts.append(f"a11y {a.get('new') or 0} new of {a.get('total') or 0} rules failing")
                bad = bad or bool(a.get("new"))
            lines.append(f"{'FAIL' if bad else 'ok'} {short(r['page_key'], 80)}: {', '.join(parts)}")
        checks = await self.list_checks(limit=REPORT_CHECKS)
        vr = await self.browser_report()
        failing = await store.failing_keys(self.db)

        def answer(page: Page[str]) -> Report:
            return Report(
                pages=page.items,
                pages_total=total,
                checks=[f"{short(c.name, 60)}: {c.trend or 'never run'}" for c in checks.checks],
                failing=failing,
                browser=f"Chromium {vr.installed or '?'} (Playwright expects {vr.expected or '?'}): {vr.note}",
                truncated=page.truncated,
                next_cursor=page.next_cursor,
            )

        return answer(fit(lines, total=total, offset=offset, limit=limit, fp=fp, answer=answer))


__all__ = ["UiTestingService"]
