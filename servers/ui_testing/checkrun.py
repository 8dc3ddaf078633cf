"""One run of a stored check: its scenario in Chromium, its captures and audits recorded, and the comparison
with the check's last passing run. A :class:`CheckRun` is the work of a ``common.jobs`` job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.browser_guard import FileGuard
from common.db import Database
from common.jobs import JobCancelled, JobContext
from servers.ui_testing import store
from servers.ui_testing.audit import AuditResult, Violation, delta
from servers.ui_testing.browser import Browser
from servers.ui_testing.capture import CaptureResult, short
from servers.ui_testing.diff import compare
from servers.ui_testing.inputs import viewport_key
from servers.ui_testing.scenario import RunResult, Scenario, run_scenario

BROWSER = "chromium"


async def store_audit(conn: Any, result: AuditResult, key: str, vkey: str, run_id: int | None, step: int | None) -> int:
    """Record an audit and its violations (on a connection inside the caller's transaction); its id."""
    return await store.insert_audit(
        conn,
        {
            "page_key": key,
            "url": result.url,
            "viewport": vkey,
            "tags": result.tags,
            "axe_version": result.axe_version,
            "by_impact": result.by_impact,
            "violations_total": len(result.violations),
            "passed_rules": result.passed_rules,
            "incomplete_rules": result.incomplete_rules,
            "run_id": run_id,
            "step": step,
        },
        [v.model_dump() for v in result.violations],
    )


async def load_audit(db: Database, audit_id: int) -> AuditResult | None:
    """A stored audit as the ``AuditResult`` it was made from (for deltas)."""
    found = await store.get_audit(db, audit_id)
    if found is None:
        return None
    row, violations = found
    return AuditResult(
        url=row["url"],
        tags=list(row["tags"]),
        axe_version=row["axe_version"],
        violations=[Violation(**{**v, "selectors": list(v["selectors"])}) for v in violations],
        by_impact=row["by_impact"],
        passed_rules=row["passed_rules"],
        incomplete_rules=row["incomplete_rules"],
    )


@dataclass
class CheckRun:
    """The work of one check run (the run row exists already, status running)."""

    db: Database
    browser: Browser
    root: Path
    pixel_threshold: float
    file_guard: FileGuard | None
    run_id: int
    check_id: int
    name: str
    scenario: Scenario

    async def __call__(self, ctx: JobContext) -> str | None:
        """Run the scenario, record what it saw, and finish the run row; the job's message is the summary."""
        run_id, name, scenario = self.run_id, self.name, self.scenario
        vkey = viewport_key(scenario.viewport)
        captures: dict[int, tuple[int, str]] = {}
        audits: dict[int, tuple[int, AuditResult]] = {}

        async def on_capture(i: int, c: CaptureResult) -> str:
            step_name = getattr(scenario.steps[i], "name", None) or f"step{i}"
            cid = await store.insert_capture(
                self.db,
                {
                    "page_key": f"{name}#{step_name}"[:200],
                    "url": c.url,
                    "viewport": vkey,
                    "browser": BROWSER,
                    "sha256": c.sha256,
                    "path": c.path,
                    "width": c.width,
                    "height": c.height,
                    "bytes": c.bytes,
                    "full_page": c.full_page,
                    "selector": c.selector,
                    "run_id": run_id,
                    "step": i,
                },
            )
            captures[i] = (cid, c.path)
            await ctx.step(done=i + 1, message=f"step {i}: capture")
            return f"capture:{cid}"

        async def on_audit(i: int, a: AuditResult) -> str:
            async with self.db.transaction() as conn:
                aid = await store_audit(conn, a, f"{name}#step{i}"[:200], vkey, run_id, i)
            audits[i] = (aid, a)
            await ctx.step(done=i + 1, message=f"step {i}: audit")
            return f"audit:{aid}"

        try:
            result = await run_scenario(
                self.browser,
                scenario,
                self.root,
                on_capture=on_capture,
                on_audit=on_audit,
                file_guard=self.file_guard,
            )
        except JobCancelled:
            await store.finish_run(self.db, run_id, "cancelled", "Cancelled on request.", {}, 0)
            raise
        except Exception as exc:
            await store.finish_run(self.db, run_id, "error", f"The run broke: {short(str(exc), 200)}", {}, 0)
            raise
        vs = await self.versus_last_pass(result, captures, audits)
        details = {
            "steps": [
                {
                    "i": s.index,
                    "action": s.action,
                    "status": s.status,
                    "ms": s.duration_ms,
                    "error": s.error,
                    "ref": s.ref,
                }
                for s in result.steps
            ],
            "failed_step": result.failed_step,
            "error": result.error,
            "console_errors": [
                (e.text if not e.location else f"{e.text} ({e.location})") for e in result.console_errors
            ],
            "console_errors_total": result.console_errors_total,
            "failed_requests": [f"{r.method} {r.url}: {r.failure}" for r in result.failed_requests],
            "failed_requests_total": result.failed_requests_total,
            "vs_last_pass": vs,
        }
        passed = sum(1 for s in result.steps if s.status == "passed")
        if result.status == "passed":
            summary = f"Passed: {passed} steps in {result.duration_ms} ms."
        else:
            step = result.steps[result.failed_step or 0]
            summary = f"Failed at step {step.index} ({step.action}): {result.error}"
        if result.console_errors_total:
            summary += f" {result.console_errors_total} console error(s)."
        await store.finish_run(self.db, run_id, result.status, short(summary, 400), details, result.duration_ms)
        return summary

    async def versus_last_pass(
        self,
        result: RunResult,
        captures: dict[int, tuple[int, str]],
        audits: dict[int, tuple[int, AuditResult]],
    ) -> str:
        """This run against the check's last passing run: changed captures, new and fixed findings, time."""
        prev = await store.last_passing_check_run(self.db, self.check_id, self.run_id)
        if prev is None:
            return "No earlier passing run to compare with."
        parts = [f"vs run {prev['id']} (passed)"]
        prev_caps = await store.run_captures(self.db, prev["id"])
        changed = []
        for step, (_, path) in sorted(captures.items()):
            before = prev_caps.get(step)
            if before is None:
                continue
            diff = await asyncio.to_thread(
                compare, Path(before["path"]), Path(path), self.root, threshold=self.pixel_threshold
            )
            if not diff.passed:
                changed.append(f"step {step}: {diff.changed_ratio:.2%}" if diff.same_size else f"step {step}: size")
        parts.append(
            f"{len(changed)} of {len(captures)} capture(s) changed"
            + (f" ({', '.join(changed[:3])})" if changed else "")
        )
        prev_audits = await store.run_audits(self.db, prev["id"])
        new_findings = fixed = 0
        for step, (_, current) in audits.items():
            if step in prev_audits and (base := await load_audit(self.db, prev_audits[step])) is not None:
                d = delta(base, current)
                new_findings += len(d.new)
                fixed += len(d.fixed)
        if audits:
            parts.append(f"{new_findings} new, {fixed} fixed accessibility finding(s)")
        prev_ms = prev.get("duration_ms") or 0
        parts.append(f"{result.duration_ms - prev_ms:+d} ms")
        if result.status == "failed":
            parts.append(f"now failing at step {result.failed_step}")
        return "; ".join(parts) + "."
