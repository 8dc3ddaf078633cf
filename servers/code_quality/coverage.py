"""Test coverage from the reports a project's own test run wrote: Cobertura XML, LCOV and coverage.py JSON.

We never run the tests: a report is read, its paths are mapped to the run's listed files (absolute,
relative to the analysed root, relative to a Cobertura ``<source>``, or a checkout elsewhere whose
tail matches one listed file), and what matches no listed file is counted as unmatched, never dropped
silently. Line sets are kept as compact ranges (``"3-5,9"``) so a file's row stays small.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from common.errors import InvalidInput, NotFound
from common.safefiles import Roots, open_regular, read_bytes, shown
from servers.code_quality.files import SourceFile

Format = Literal["cobertura", "lcov", "coverage.py"]
#: Reports looked for at the analysed root when no report is named, first found wins.
DEFAULT_REPORTS = ("coverage.xml", "coverage.json", "coverage.lcov", "lcov.info", "coverage/lcov.info")
MAX_REPORT_BYTES = 50 * 1024 * 1024
SNIFF_BYTES = 4096
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class FileCoverage:
    """One listed file's lines: ``covered`` and ``uncovered`` are compact ranges of line numbers."""

    path: str
    covered_lines: int
    coverable_lines: int
    covered: str
    uncovered: str

    @property
    def share(self) -> float | None:
        return round(self.covered_lines / self.coverable_lines, 4) if self.coverable_lines else None


@dataclass
class CoverageData:
    """A parsed report mapped to the run's files."""

    format: Format
    files: dict[str, FileCoverage] = field(default_factory=dict)
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)

    @property
    def covered_lines(self) -> int:
        return sum(f.covered_lines for f in self.files.values())

    @property
    def coverable_lines(self) -> int:
        return sum(f.coverable_lines for f in self.files.values())

    @property
    def share(self) -> float | None:
        total = self.coverable_lines
        return round(self.covered_lines / total, 4) if total else None


# --- line ranges ----------------------------------------------------------------------------------


def compact(lines: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    out: list[str] = []
    ordered = sorted(set(lines))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def spans(text: str) -> Iterator[tuple[int, int]]:
    """The ``(first, last)`` spans of a compact range text."""
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield int(first), int(last or first)


def count_in(text: str, start: int, end: int) -> int:
    """How many lines of the compact ranges ``text`` lie within ``start..end``."""
    return sum(max(0, min(last, end) - max(first, start) + 1) for first, last in spans(text))


# --- reading --------------------------------------------------------------------------------------


def detect_format(name: str, head: bytes) -> Format:
    """The report's format from its first bytes (and name), or InvalidInput saying which formats are read."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        if b"<coverage" in head:
            return "cobertura"
    elif text.startswith(b"{"):
        if b'"files"' in head or b'"meta"' in head or name.endswith(".json"):
            return "coverage.py"
    elif any(text.startswith(tag) for tag in (b"TN:", b"SF:")):
        return "lcov"
    raise InvalidInput(
        f"{os.path.basename(name)[:80]!r} is not a coverage report this server reads: give a Cobertura XML "
        "(coverage xml, pytest --cov-report=xml), an LCOV file (lcov.info, coverage lcov) or coverage.py JSON (coverage json)."
    )


def _malformed(fmt: str, detail: str) -> InvalidInput:
    return InvalidInput(f"the {fmt} coverage report cannot be read ({detail[:160]}); write it again with your tests.")


def _cobertura(data: bytes) -> tuple[list[str], dict[str, dict[int, int]]]:
    """(the ``<source>`` folders, hits per line per file name as written)."""
    try:
        # DTDs are allowed (coverage.py writes one) but entities are refused and nothing external is fetched.
        tree = fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException) as exc:
        raise _malformed("Cobertura", str(exc)) from None
    if tree.tag != "coverage":
        raise _malformed("Cobertura", f"the root element is <{tree.tag[:40]}>, not <coverage>")
    sources = [(s.text or "").strip() for s in tree.iter("source") if (s.text or "").strip()]
    hits: dict[str, dict[int, int]] = defaultdict(dict)
    for cls in tree.iter("class"):
        name = cls.get("filename")
        if not name:
            continue
        lines = hits[name]
        for line in cls.iter("line"):
            try:
                number, count = int(line.get("number", "")), int(float(line.get("hits", "0")))
            except ValueError:
                raise _malformed("Cobertura", f"a <line> of {name[:80]} has no number or hits") from None
            lines[number] = max(count, lines.get(number, 0))
    return sources, hits


def _lcov(data: bytes) -> dict[str, dict[int, int]]:
    hits: dict[str, dict[int, int]] = defaultdict(dict)
    current: dict[int, int] | None = None
    for number, raw in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if line.startswith("SF:"):
            current = hits[line[3:]]
        elif line.startswith("DA:"):
            if current is None:
                raise _malformed("LCOV", f"line {number}: DA before any SF")
            parts = line[3:].split(",")
            try:
                at, count = int(parts[0]), int(float(parts[1]))
            except (ValueError, IndexError):
                raise _malformed("LCOV", f"line {number}: {line[:60]!r}") from None
            current[at] = max(count, current.get(at, 0))
        elif line == "end_of_record":
            current = None
    return hits


def _coverage_py(data: bytes) -> dict[str, dict[int, int]]:
    try:
        doc = json.loads(data)
        files = doc["files"]
        hits: dict[str, dict[int, int]] = {}
        for name, entry in files.items():
            lines = dict.fromkeys(map(int, entry.get("missing_lines", [])), 0)
            lines.update(dict.fromkeys(map(int, entry.get("executed_lines", [])), 1))
            hits[name] = lines
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _malformed("coverage.py JSON", f"{type(exc).__name__}: {exc}") from None
    return hits


# --- mapping to the run's files -------------------------------------------------------------------


class _PathMap:
    """Report paths -> the root-relative paths of the run's listed files."""

    def __init__(self, root: str, listed: Collection[str], sources: Iterable[str] = ()) -> None:
        self.root = root.rstrip("/") or "/"
        self.listed = set(listed)
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for path in self.listed:
            self.by_name[posixpath.basename(path)].append(path)
        self.bases = [s if posixpath.isabs(s) else posixpath.join(self.root, s) for s in sources]

    def _relative(self, absolute: str) -> str | None:
        norm = posixpath.normpath(absolute)
        if norm == self.root or not norm.startswith(self.root.rstrip("/") + "/"):
            return None
        return posixpath.relpath(norm, self.root)

    def find(self, name: str) -> str | None:
        name = name.replace("\\", "/")
        candidates = [name] if posixpath.isabs(name) else [posixpath.join(b, name) for b in self.bases]
        if not posixpath.isabs(name):
            candidates.append(posixpath.join(self.root, name))
        for candidate in candidates:
            rel = self._relative(candidate)
            if rel is not None and rel in self.listed:
                return rel
        # A report written in another checkout (CI): the one listed file whose path ends the report's.
        tail = posixpath.normpath(name).lstrip("/")
        ends = [p for p in self.by_name.get(posixpath.basename(tail), []) if tail == p or tail.endswith("/" + p)]
        return ends[0] if len(ends) == 1 else None


def parse_report(fmt: Format, data: bytes, root: str, listed: Collection[str]) -> CoverageData:
    """Parse a report and map it to ``listed`` (root-relative POSIX paths of the run's files)."""
    sources: list[str] = []
    if fmt == "cobertura":
        sources, hits = _cobertura(data)
    elif fmt == "lcov":
        hits = _lcov(data)
    else:
        hits = _coverage_py(data)
    paths = _PathMap(root, listed, sources)
    merged: dict[str, dict[int, int]] = defaultdict(dict)
    out = CoverageData(format=fmt)
    for name, lines in hits.items():
        path = paths.find(name)
        if path is None:
            out.unmatched += 1
            if len(out.unmatched_examples) < MAX_EXAMPLES:
                out.unmatched_examples.append(name[:200])
            continue
        into = merged[path]
        for number, count in lines.items():
            into[number] = max(count, into.get(number, 0))
    for path, lines in sorted(merged.items()):
        covered = [n for n, c in lines.items() if c > 0]
        uncovered = [n for n, c in lines.items() if c <= 0]
        out.files[path] = FileCoverage(path, len(covered), len(lines), compact(covered), compact(uncovered))
    return out


def stale_files(root: str, files: Iterable[str], report_mtime: float) -> list[str]:
    """The files changed after the report was written (their mtime is newer): its lines may be off."""
    out = []
    for path in files:
        try:
            if os.lstat(os.path.join(root, path)).st_mtime > report_mtime:
                out.append(path)
        except OSError:
            continue
    return out


def report_summary(
    data: CoverageData, *, report: str, modified_at: str, stale: list[str], missing: int
) -> dict[str, Any]:
    """What a run records about its coverage report (the ``coverage`` column)."""
    return {
        "report": report,
        "format": data.format,
        "modified_at": modified_at,
        "files": len(data.files),
        "covered_lines": data.covered_lines,
        "coverable_lines": data.coverable_lines,
        "share": data.share,
        "unmatched": data.unmatched,
        "unmatched_examples": data.unmatched_examples,
        "stale_files": len(stale),
        "stale_examples": stale[:MAX_EXAMPLES],
        "files_not_in_report": missing,
        "warning": (
            f"{len(stale)} file(s) changed after the report was written: the report may be stale; "
            "run the tests with coverage again"
            if stale
            else ""
        ),
    }


def missing_files(data: CoverageData, languages: Mapping[str, str]) -> int:
    """Listed files in a language the report covers that the report does not mention (often never imported)."""
    covered_languages = {languages[p] for p in data.files if p in languages}
    return sum(1 for p, lang in languages.items() if lang in covered_languages and p not in data.files)


# --- a run's report -------------------------------------------------------------------------------


def _too_large(path: Path, size: int) -> InvalidInput:
    return InvalidInput(
        f"the coverage report {shown(str(path))} is {size} bytes, over the {MAX_REPORT_BYTES} byte limit; "
        "write it for the analysed folder only (e.g. coverage xml --include) or name a smaller one."
    )


def check_report(roots: Roots, path: str) -> Path:
    """The report ``path`` names, checked before an analysis is recorded: inside the allowed roots, a
    regular file under the size cap, in a format this module reads; InvalidInput/NotFound otherwise."""
    real = roots.resolve(path, kind="file")
    size = real.stat().st_size
    if size > MAX_REPORT_BYTES:
        raise _too_large(real, size)
    with open_regular(real, roots, max_bytes=MAX_REPORT_BYTES) as fh:  # the format shows in its first bytes
        detect_format(real.name, fh.read(SNIFF_BYTES))
    return real


def find_report(root: Path) -> Path | None:
    """The first of the usual report files at the analysed root, if any."""
    return next((root / name for name in DEFAULT_REPORTS if (root / name).is_file()), None)


def load_for_run(
    roots: Roots, root: Path, report: Path | None, files: Sequence[SourceFile]
) -> tuple[CoverageData | None, dict[str, Any] | None]:
    """A run's coverage: the report named (or found at the root) parsed and mapped to ``files``, and
    what the run records about it; a report that cannot be read is recorded with the reason, not raised."""
    path = report or find_report(root)
    if path is None:
        return None, None
    try:
        st = path.stat()
        mtime = st.st_mtime
        if st.st_size > MAX_REPORT_BYTES:
            raise _too_large(path, st.st_size)
        data = read_bytes(path, roots, max_bytes=MAX_REPORT_BYTES)
        parsed = parse_report(detect_format(path.name, data[:SNIFF_BYTES]), data, str(root), [f.path for f in files])
    except (InvalidInput, NotFound, OSError) as exc:
        return None, {"report": str(path), "error": str(exc)[:300]}
    stale = stale_files(str(root), parsed.files, mtime)
    summary = report_summary(
        parsed,
        report=str(path),
        modified_at=datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds"),
        stale=stale,
        missing=missing_files(parsed, {f.path: f.language for f in files}),
    )
    return parsed, summary
