"""Accessibility audits with the bundled axe-core, and deltas between a baseline and a later audit."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from servers.ui_testing.audit import AuditResult, Violation, audit, delta, expand_tags
from servers.ui_testing.browser import Browser
from servers.ui_testing.viewport import Viewport
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

VIEW = Viewport(width=1024, height=768, scale=1)
IMG = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
FORM = '<form><input id="email" type="text"></form>'
LOW_CONTRAST = '<p id="faint" style="color:#ccc;background:#fff">Hard to read</p>'


def broken_page(*, alt: bool = False, extra: str = "") -> str:
    img = f'<img id="logo" src="{IMG}"{" alt=Logo" if alt else ""}>'
    return page(f"<main><h1>Shop</h1>{img}{FORM}{LOW_CONTRAST}{extra}</main>", lang=None)


def rules(result: AuditResult) -> set[str]:
    return {v.rule for v in result.violations}


async def test_known_violations_are_reported_compactly(browser: Browser, site: Site):
    url = site.put("/a11y", broken_page())
    result = await audit(browser, url, VIEW)

    assert {"image-alt", "label", "color-contrast", "html-has-lang"} <= rules(result)
    assert result.tags == ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
    assert result.axe_version
    by_rule = {v.rule: v for v in result.violations}
    assert by_rule["image-alt"].selectors == ["#logo"]
    assert by_rule["label"].selectors == ["#email"]
    assert by_rule["color-contrast"].impact == "serious"
    assert by_rule["image-alt"].help_url.startswith("https://dequeuniversity.com/rules/axe/")
    assert "?" not in by_rule["image-alt"].help_url
    assert all("<" not in s for v in result.violations for s in v.selectors)  # selectors, never HTML
    assert result.by_impact["serious"] >= 1
    assert result.violations[0].impact == "critical"  # worst first


async def test_fixing_one_violation_and_adding_another_shows_in_the_delta(browser: Browser, site: Site):
    baseline = await audit(browser, site.put("/v1", broken_page()), VIEW)
    current = await audit(browser, site.put("/v2", broken_page(alt=True, extra='<button id="buy"></button>')), VIEW)

    change = delta(baseline, current)

    assert {(f.rule, f.selector) for f in change.fixed} == {("image-alt", "#logo")}
    assert {(f.rule, f.selector) for f in change.new} == {("button-name", "#buy")}
    assert ("label", "#email") in {(f.rule, f.selector) for f in change.unchanged}
    assert change.summary.startswith("1 new, 1 fixed")


async def test_only_the_chosen_levels_are_checked(browser: Browser, site: Site):
    url = site.put("/levels", broken_page())
    level_a = await audit(browser, url, VIEW, levels=["wcag2a"])
    assert "color-contrast" not in rules(level_a)  # contrast is level AA
    assert "image-alt" in rules(level_a)
    practice = await audit(browser, url, VIEW, levels=["best-practice"])
    assert "image-alt" not in rules(practice)


async def test_selectors_are_capped_per_rule_but_the_count_is_kept(browser: Browser, site: Site):
    images = "".join(f'<img id="i{n}" src="{IMG}">' for n in range(8))
    result = await audit(browser, site.put("/many", page(f"<main>{images}</main>")), VIEW)
    image_alt = next(v for v in result.violations if v.rule == "image-alt")
    assert image_alt.nodes == 8
    assert len(image_alt.selectors) == 5


async def test_violations_inside_an_iframe_are_found(browser: Browser, site: Site):
    site.put("/inner", page(f'<main><img id="inner-logo" src="{IMG}"></main>'))
    outer = await audit(
        browser, site.put("/outer", page('<main><iframe title="Inner" src="/inner"></iframe></main>')), VIEW
    )
    image_alt = next(v for v in outer.violations if v.rule == "image-alt")
    assert image_alt.selectors == ["iframe >>> #inner-logo"]  # the frame, then the element inside it
    plain = await audit(browser, site.put("/plain", page("<main><p>Nothing wrong</p></main>")), VIEW)
    assert "image-alt" not in rules(plain)


def test_levels_expand_cumulatively_and_unknown_levels_are_refused():
    assert expand_tags(["wcag2aa", "best-practice"]) == ["wcag2a", "wcag2aa", "best-practice"]
    assert expand_tags(None) == ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
    with pytest.raises(InvalidInput, match="Unknown audit level 'wcag9'"):
        expand_tags(["wcag9"])


def test_delta_keys_findings_by_rule_and_selector():
    def result(*pairs: tuple[str, str]) -> AuditResult:
        violations = [
            Violation(rule=r, impact="serious", help="h", help_url="u", selectors=[s], nodes=1) for r, s in pairs
        ]
        return AuditResult(url="u", tags=[], violations=violations, by_impact={}, passed_rules=0, incomplete_rules=0)

    change = delta(result(("label", "#a"), ("label", "#b")), result(("label", "#b"), ("image-alt", "#a")))
    assert [(f.rule, f.selector) for f in change.new] == [("image-alt", "#a")]
    assert [(f.rule, f.selector) for f in change.fixed] == [("label", "#a")]
    assert [(f.rule, f.selector) for f in change.unchanged] == [("label", "#b")]
