"""Accessibility audits with axe-core (bundled by axe-playwright-python, offline) and deltas between two audits.

Violations are compacted to rule, impact, help text, help URL and a few affected selectors (never
HTML). A delta keys findings by (rule, selector): axe's selectors are ids where elements have them
and structural paths otherwise, so moving an element without an id can show as fixed plus new.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.browser_guard import FileGuard
from common.errors import InvalidInput
from servers.ui_testing.browser import Browser, first_line
from servers.ui_testing.capture import WaitSpec, open_url
from servers.ui_testing.viewport import Viewport

if TYPE_CHECKING:
    from playwright.async_api import Page

#: Each level includes the levels below it, as WCAG conformance does.
LEVELS: dict[str, tuple[str, ...]] = {
    "wcag2a": ("wcag2a",),
    "wcag2aa": ("wcag2a", "wcag2aa"),
    "wcag2aaa": ("wcag2a", "wcag2aa", "wcag2aaa"),
    "wcag21a": ("wcag2a", "wcag21a"),
    "wcag21aa": ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa"),
    "wcag22aa": ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"),
    "best-practice": ("best-practice",),
    "section508": ("section508",),
}
DEFAULT_LEVELS = ("wcag21aa",)
SELECTORS_PER_RULE = 5
#: Runs axe and keeps, in the page, only what :func:`compact` reads: a few KB cross to the server, not axe's
#: whole result (every node's HTML, checks and related nodes).
_RUN = """([options, keep]) => axe.run(document, options).then(r => ({
  violations: r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.slice(0, keep).map(n => ({target: n.target})), node_count: v.nodes.length,
  })),
  passes: r.passes.length,
  incomplete: r.incomplete.length,
  testEngine: r.testEngine,
}))"""
Impact = Literal["minor", "moderate", "serious", "critical"]
_IMPACT_ORDER = {"critical": 0, "serious": 1, "moderate": 2, "minor": 3, None: 4}


class Violation(BaseModel):
    """One failed axe rule, with a few of the elements that fail it."""

    model_config = ConfigDict(frozen=True)

    rule: str
    impact: Impact | None = None
    help: str
    help_url: str
    selectors: list[str] = Field(description="Affected elements (CSS selectors), at most a few.")
    nodes: int = Field(description="How many elements fail the rule in total.")


class AuditResult(BaseModel):
    """The violations of one page, worst first, and what was checked."""

    url: str
    tags: list[str]
    axe_version: str | None = None
    violations: list[Violation]
    by_impact: dict[str, int] = Field(description="Failing elements per impact.")
    passed_rules: int
    incomplete_rules: int = Field(description="Rules axe could not decide (need a human look).")


class Finding(BaseModel):
    """One failing element under one rule: the unit a delta compares."""

    model_config = ConfigDict(frozen=True)

    rule: str
    selector: str
    impact: Impact | None = None
    help: str


class AuditDelta(BaseModel):
    """What changed between a baseline audit and the current one."""

    new: list[Finding]
    fixed: list[Finding]
    unchanged: list[Finding]
    summary: str


def expand_tags(levels: list[str] | tuple[str, ...] | None) -> list[str]:
    """axe tags for the chosen levels (``wcag21aa`` brings wcag2a, wcag2aa, wcag21a); ``InvalidInput`` if unknown."""
    chosen = list(levels) if levels else list(DEFAULT_LEVELS)
    tags: list[str] = []
    for level in chosen:
        if level not in LEVELS:
            raise InvalidInput(f"Unknown audit level {level[:40]!r}; use one or more of {', '.join(LEVELS)}.")
        tags.extend(t for t in LEVELS[level] if t not in tags)
    return tags


def _selector(target: Any) -> str:
    """axe's target (a list, nested for iframes and shadow roots) as one string."""
    if isinstance(target, list):
        return " >>> ".join(_selector(t) for t in target)
    return str(target)


def compact(
    raw: dict[str, Any], url: str, tags: list[str], selectors_per_rule: int = SELECTORS_PER_RULE
) -> AuditResult:
    """An ``AuditResult`` from axe's raw result, keeping only what a caller needs."""
    violations = []
    by_impact: Counter[str] = Counter()
    for v in raw.get("violations", []):
        nodes = v.get("nodes", [])
        selectors = [_selector(n.get("target", [])) for n in nodes[:selectors_per_rule]]
        count = int(v.get("node_count", len(nodes)))
        impact = v.get("impact")
        by_impact[impact or "unknown"] += count
        violations.append(
            Violation(
                rule=str(v.get("id")),
                impact=impact,
                help=str(v.get("help", ""))[:200],
                help_url=str(v.get("helpUrl", "")).split("?")[0],
                selectors=selectors,
                nodes=count,
            )
        )
    violations.sort(key=lambda v: (_IMPACT_ORDER.get(v.impact, 4), -v.nodes, v.rule))
    engine = raw.get("testEngine") or {}
    return AuditResult(
        url=url,
        tags=tags,
        axe_version=engine.get("version"),
        violations=violations,
        by_impact=dict(by_impact),
        passed_rules=_count(raw.get("passes")),
        incomplete_rules=_count(raw.get("incomplete")),
    )


def _count(rules: Any) -> int:
    """How many rules: axe gives a list, :data:`_RUN` already a number."""
    return rules if isinstance(rules, int) else len(rules or [])


@cache
def axe_source() -> str:
    """axe-core's source as axe-playwright-python ships it (one string per process: spares are keyed by it)."""
    # Heavy: axe-playwright-python (its axe-core source, read once) loads only when an audit runs.
    from axe_playwright_python.base import AXE_SCRIPT

    return str(AXE_SCRIPT)


async def audit_page(
    page: Page, levels: list[str] | None = None, selectors_per_rule: int = SELECTORS_PER_RULE, *, injected: bool = False
) -> AuditResult:
    """Run axe-core on the loaded ``page`` for the chosen levels (``injected``: axe came with the page's init script)."""
    from playwright.async_api import Error as PWError

    tags = expand_tags(levels)
    # axe's frame messaging costs much of a run even on a page without frames, so it is on only when needed.
    options = {
        "runOnly": {"type": "tag", "values": tags},
        "resultTypes": ["violations"],
        "iframes": len(page.frames) > 1,
    }
    try:
        if not injected:
            await page.evaluate(axe_source())
        raw: dict[str, Any] = await page.evaluate(_RUN, [options, selectors_per_rule])
    except PWError as exc:
        raise InvalidInput(f"The accessibility audit could not run on this page: {first_line(str(exc), 160)}") from exc
    return compact(raw, page.url, tags, selectors_per_rule)


async def audit(
    browser: Browser,
    url: str,
    viewport: Viewport,
    levels: list[str] | None = None,
    wait: WaitSpec | None = None,
    selectors_per_rule: int = SELECTORS_PER_RULE,
    file_guard: FileGuard | None = None,
) -> AuditResult:
    """Open ``url`` in a fresh context and audit it (``file_guard`` decides which ``file:`` URLs it may load)."""
    expand_tags(levels)  # fail fast, before a browser is started
    await browser.net.check(url)
    # As an init script axe loads with the document, several times faster than evaluating it afterwards; the
    # context (and a spare of it, made in the background) has it registered before this call navigates.
    async with browser.page(viewport, file_guard, init_script=axe_source()) as page:
        await open_url(page, url, wait or WaitSpec())
        if file_guard is None:
            browser.prepare_next(viewport, axe_source())
        return await audit_page(page, levels, selectors_per_rule, injected=True)


def findings(result: AuditResult) -> list[Finding]:
    """Each (rule, selector) pair of ``result`` (only the selectors it kept)."""
    return [
        Finding(rule=v.rule, selector=s, impact=v.impact, help=v.help) for v in result.violations for s in v.selectors
    ]


def delta(baseline: AuditResult, current: AuditResult) -> AuditDelta:
    """New, fixed and unchanged findings from ``baseline`` to ``current``, keyed by (rule, selector).

    Compare audits made with the same selector cap: a selector beyond the cap is invisible to the delta.
    """
    before = {(f.rule, f.selector): f for f in findings(baseline)}
    after = {(f.rule, f.selector): f for f in findings(current)}
    new = [f for k, f in after.items() if k not in before]
    fixed = [f for k, f in before.items() if k not in after]
    unchanged = [f for k, f in after.items() if k in before]
    summary = f"{len(new)} new, {len(fixed)} fixed, {len(unchanged)} unchanged accessibility findings."
    return AuditDelta(new=new, fixed=fixed, unchanged=unchanged, summary=summary)
