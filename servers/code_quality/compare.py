"""New, fixed and unchanged findings between two runs, matched by fingerprint.

Findings left unmatched on both sides are then paired by their anchor (analyzer, rule, path and the
flagged line(s) with the enclosing symbol): an edit on the line next to a finding changes its
fingerprint but is not a fix.

A finding of the base run that is absent from the head run counts as *fixed* only if the head run
actually analysed that file with that analyzer; otherwise it is *unknown* (skipped file, analyzer
missing or failed), because absence of evidence is not a fix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal

from servers.code_quality.records import Finding

WHOLE = "*"
FixStatus = Literal["fixed", "still_present", "unknown", "not_in_base"]


@dataclass
class Comparison:
    new: list[Finding] = field(default_factory=list)
    fixed: list[Finding] = field(default_factory=list)
    unchanged: list[Finding] = field(default_factory=list)
    unknown: list[Finding] = field(default_factory=list)
    # Head fingerprint -> base fingerprint for unchanged findings matched by anchor (the code near them moved).
    moved: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FixCheck:
    fingerprint: str
    status: FixStatus
    passed: bool
    reason: str


def _uncovered(finding: Finding, gaps: Collection[tuple[str, str]]) -> bool:
    return (
        (finding.analyzer, finding.path) in gaps or (finding.analyzer, WHOLE) in gaps or (WHOLE, finding.path) in gaps
    )


def compare(
    base: Sequence[Finding], head: Sequence[Finding], head_gaps: Collection[tuple[str, str]] = ()
) -> Comparison:
    """Split findings into new (only in head), fixed, unchanged (in both, head's copy) and unknown.

    ``head_gaps`` holds (analyzer, path) pairs the head run could not analyse (``AnalysisResult.gaps()``);
    ``("*", path)`` covers every analyzer (a skipped file), ``(analyzer, "*")`` every file.
    """
    base_by = {f.fingerprint: f for f in base}
    head_by = {f.fingerprint: f for f in head}
    result = Comparison()
    gone = [f for fp, f in base_by.items() if fp not in head_by]
    loose: dict[tuple[str, str, str, str], list[Finding]] = defaultdict(list)
    for finding in sorted(gone, key=lambda f: f.line):
        loose[_anchor_key(finding)].append(finding)
    for fp, finding in sorted(head_by.items(), key=lambda item: item[1].line):
        if fp in base_by:
            result.unchanged.append(finding)
        elif loose.get(_anchor_key(finding)):
            result.moved[fp] = loose[_anchor_key(finding)].pop(0).fingerprint
            result.unchanged.append(finding)
        else:
            result.new.append(finding)
    for remaining in loose.values():
        for finding in remaining:
            (result.unknown if _uncovered(finding, head_gaps) else result.fixed).append(finding)
    return result


def _anchor_key(finding: Finding) -> tuple[str, str, str, str]:
    return (finding.analyzer, finding.rule_id, finding.path, finding.anchor or finding.fingerprint)


def check_fixed(
    fingerprint: str,
    base: Sequence[Finding],
    head: Sequence[Finding],
    head_gaps: Collection[tuple[str, str]] = (),
) -> FixCheck:
    """Is the finding ``fingerprint`` of the base run fixed in the head run? ``passed`` only when proven."""
    before = next((f for f in base if f.fingerprint == fingerprint), None)
    if before is None:
        return FixCheck(fingerprint, "not_in_base", False, "the base run has no finding with this fingerprint")
    diff = compare([before], head, head_gaps)
    if diff.unchanged:
        moved = "" if diff.unchanged[0].fingerprint == fingerprint else " (the code around it changed)"
        return FixCheck(
            fingerprint, "still_present", False, f"{before.rule_id} is still reported in {before.path}{moved}"
        )
    if diff.unknown:
        return FixCheck(
            fingerprint,
            "unknown",
            False,
            f"{before.analyzer} did not analyse {before.path} in the later run, so the fix cannot be confirmed",
        )
    return FixCheck(fingerprint, "fixed", True, f"{before.rule_id} is no longer reported in {before.path}")
