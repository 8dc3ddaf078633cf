"""Stable finding fingerprints: the same problem keeps its fingerprint when code moves around it.

A fingerprint hashes the analyzer, the rule, the file path and the finding's *code context*: its own
line(s) and the nearest non-blank line above and below, each with all whitespace removed, plus the name
of the enclosing function or class. The line number is not part of it, so inserting lines above keeps
it; identical contexts in one file are told apart by their order (occurrence index). Only hashes are
kept, so a fingerprint never carries code (or a secret on the flagged line). The *anchor* hashes the
flagged line(s) and symbol without the neighbours; compare.py falls back to it when an edit next to a
finding changed its fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from servers.code_quality.records import MAX_CONTEXT_LINE_CHARS, MAX_CONTEXT_LINES, Finding

_MAX_SPAN = 5
_NEIGHBOUR_SCAN = 50
_SYMBOL_SCAN = 400
_PY_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+def|def|class)[ \t]+(?P<name>\w+)")
_GENERIC_DEF = re.compile(r"\b(?:function|func|fn|def|class|interface|struct|impl|enum)\s+(?P<name>\w+)")
_STRING = re.compile(r"""(?P<q>["'`])(?:\\.|(?!(?P=q)).){3,}(?P=q)""")
_SECRETISH = re.compile(r"(?i)pass|secret|token|api_?key|auth|credential|private|AKIA|[A-Za-z0-9+/=_-]{24,}")


def _squash(line: str) -> str:
    return "".join(line.split())


def _indent(line: str) -> int:
    expanded = line.expandtabs()
    return len(expanded) - len(expanded.lstrip())


def enclosing_symbol(lines: Sequence[str], line: int, python: bool) -> str | None:
    """Name of the nearest function/class at or above 1-based ``line`` that encloses it (cheap guess)."""
    if not 1 <= line <= len(lines):
        return None
    own = lines[line - 1]
    if python:
        here = _PY_DEF.match(own)
        if here:
            return here["name"]
        indent = _indent(own) if own.strip() else 1 << 30
        for idx in range(line - 2, max(-1, line - 2 - _SYMBOL_SCAN), -1):
            match = _PY_DEF.match(lines[idx])
            if match and len(match["indent"].expandtabs()) < indent:
                return match["name"]
        return None
    for idx in range(line - 1, max(-1, line - 1 - _SYMBOL_SCAN), -1):
        match = _GENERIC_DEF.search(lines[idx])
        if match:
            return match["name"]
    return None


def _neighbour(lines: Sequence[str], start: int, step: int) -> str:
    idx = start
    for _ in range(_NEIGHBOUR_SCAN):
        if not 0 <= idx < len(lines):
            return ""
        squashed = _squash(lines[idx])
        if squashed:
            return squashed
        idx += step
    return ""


def _digest(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def signature(lines: Sequence[str], line: int, end_line: int | None, *, python: bool) -> tuple[str, str, str | None]:
    """For a finding at ``line``..``end_line`` (1-based): the hashed normalised context, the hashed
    anchor (own lines and symbol only) and the enclosing symbol."""
    if not 1 <= line <= len(lines):
        empty = _digest(["<no-context>"])
        return empty, empty, None
    last = min(max(end_line or line, line), line + _MAX_SPAN - 1, len(lines))
    own = [_squash(text) for text in lines[line - 1 : last]]
    symbol = enclosing_symbol(lines, line, python)
    parts = [*own, "\x1f", _neighbour(lines, line - 2, -1), _neighbour(lines, last, 1), "\x1f", symbol or ""]
    return _digest(parts), _digest([*own, "\x1f", symbol or ""]), symbol


def excerpt(lines: Sequence[str], line: int, end_line: int | None, category: str) -> str | None:
    """At most a few lines of the flagged code for display: none for secrets; string literals masked for
    security findings and on lines that look like they hold a credential (whatever flagged them)."""
    if category == "secret" or not 1 <= line <= len(lines):
        return None
    last = min(max(end_line or line, line), line + MAX_CONTEXT_LINES - 1, len(lines))
    shown = []
    for text in lines[line - 1 : last]:
        text = text.rstrip()
        if category == "security" or _SECRETISH.search(text):
            text = _STRING.sub(lambda m: m["q"] + "…" + m["q"], text)
        shown.append(text if len(text) <= MAX_CONTEXT_LINE_CHARS else text[: MAX_CONTEXT_LINE_CHARS - 1] + "…")
    return "\n".join(shown)


def annotate(findings: Iterable[Finding], lines: Sequence[str], *, python: bool) -> list[Finding]:
    """The findings of one file with ``signature``, ``anchor``, ``symbol`` (unless set) and ``context``."""
    out = []
    for finding in findings:
        sig, anchor, symbol = signature(lines, finding.line, finding.end_line, python=python)
        out.append(
            replace(
                finding,
                signature=sig,
                anchor=anchor,
                symbol=finding.symbol or symbol,
                context=excerpt(lines, finding.line, finding.end_line, finding.category),
            )
        )
    return out


def assign_fingerprints(findings: Iterable[Finding]) -> list[Finding]:
    """The findings with ``fingerprint`` set, numbering identical contexts in a file by line order."""
    ordered = sorted(findings, key=lambda f: (f.path, f.analyzer, f.rule_id, f.line, f.column or 0, f.message))
    seen: dict[tuple[str, str, str, str], int] = defaultdict(int)
    out = []
    for finding in ordered:
        group = (finding.analyzer, finding.rule_id, finding.path, finding.signature)
        index = seen[group]
        seen[group] += 1
        raw = "\0".join([*group, str(index)])
        out.append(replace(finding, fingerprint=hashlib.sha256(raw.encode()).hexdigest()[:32]))
    return out
