"""Duplicated blocks of code, found by hashing windows of normalised lines (bounded in lines read).

Lines are compared with whitespace removed; blank lines, comment-only lines, imports and lines of three
characters or fewer (a lone brace) are ignored, so a block is a run of at least ``min_lines``
meaningful lines that occurs again elsewhere (or elsewhere in the same file). Blocking I/O: call it from
a worker thread.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers.code_quality.files import SourceFile

DEFAULT_MIN_LINES = 6
DEFAULT_MAX_LINES = 500_000
DEFAULT_MAX_BLOCKS = 200
_NOT_CODE = frozenset({"other", "markdown", "text", "json", "yaml", "toml", "config", "html", "css", "sql"})
_SKIP_PREFIXES = ("#", "//", "/*", "*", "--", "import ", "from ", "#include", "using ", "package ", "require ")


@dataclass(frozen=True)
class DuplicateBlock:
    path: str
    line: int
    end_line: int
    lines: int
    others: tuple[tuple[str, int], ...]


@dataclass
class DuplicationReport:
    min_lines: int = DEFAULT_MIN_LINES
    blocks: list[DuplicateBlock] = field(default_factory=list)
    duplicated_lines: int = 0
    total_lines: int = 0
    files_considered: int = 0
    truncated: bool = False

    @property
    def share(self) -> float:
        return round(self.duplicated_lines / self.total_lines, 4) if self.total_lines else 0.0


def _meaningful(data: bytes) -> list[tuple[int, str]]:
    out = []
    for number, raw in enumerate(data.decode(errors="replace").splitlines(), start=1):
        squashed = "".join(raw.split())
        stripped = raw.strip()
        if len(squashed) <= 3 or stripped.startswith(_SKIP_PREFIXES):
            continue
        out.append((number, squashed))
    return out


def _read(root: Path, rel: str) -> bytes | None:
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def find_duplicates(
    root: Path,
    files: Sequence[SourceFile],
    *,
    min_lines: int = DEFAULT_MIN_LINES,
    max_lines: int = DEFAULT_MAX_LINES,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
) -> DuplicationReport:
    """Blocks of ``min_lines`` or more meaningful lines that occur at least twice among ``files``."""
    report = DuplicationReport(min_lines=min_lines)
    kept: list[tuple[str, list[tuple[int, str]]]] = []
    for f in sorted(files, key=lambda f: f.path):
        if f.language in _NOT_CODE:
            continue
        data = _read(root, f.path)
        if data is None:
            continue
        lines = _meaningful(data)
        if report.total_lines + len(lines) > max_lines:
            report.truncated = True
            break
        report.total_lines += len(lines)
        report.files_considered += 1
        kept.append((f.path, lines))

    # Keys live only within this call, so Python's own (per-process) string hash is enough: each line is
    # hashed once and a window is the hash of its lines' hashes.
    windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for file_index, (_, lines) in enumerate(kept):
        hashes = [hash(text) for _, text in lines]
        for start in range(len(lines) - min_lines + 1):
            windows[hash(tuple(hashes[start : start + min_lines]))].append((file_index, start))

    marked: dict[int, set[int]] = defaultdict(set)
    first_window: dict[tuple[int, int], int] = {}
    for digest, places in windows.items():
        if len(places) < 2:
            continue
        distinct: list[tuple[int, int]] = []
        for place in sorted(places):
            if distinct and distinct[-1][0] == place[0] and place[1] - distinct[-1][1] < min_lines:
                continue  # overlaps the previous copy in the same file: a run of repeated lines
            distinct.append(place)
        if len(distinct) < 2:
            continue
        windows[digest] = distinct
        for file_index, start in distinct:
            first_window[(file_index, start)] = digest
            marked[file_index].update(range(start, start + min_lines))
    report.duplicated_lines = sum(len(v) for v in marked.values())

    starts_of: dict[int, list[int]] = defaultdict(list)
    for index, start in first_window:
        starts_of[index].append(start)
    for file_index in sorted(marked):
        path, lines = kept[file_index]
        starts = sorted(starts_of[file_index])
        run_start = prev = starts[0]
        for s in [*starts[1:], None]:
            if s is not None and s == prev + 1:
                prev = s
                continue
            digest = first_window[(file_index, run_start)]
            others = tuple(
                (kept[f][0], kept[f][1][st][0]) for f, st in windows[digest] if (f, st) != (file_index, run_start)
            )
            end = prev + min_lines - 1
            report.blocks.append(
                DuplicateBlock(path, lines[run_start][0], lines[end][0], end - run_start + 1, others[:10])
            )
            if s is not None:
                run_start = prev = s
    report.blocks.sort(key=lambda b: (-b.lines, b.path, b.line))
    if len(report.blocks) > max_blocks:
        report.blocks = report.blocks[:max_blocks]
        report.truncated = True
    return report
