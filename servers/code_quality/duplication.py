"""Duplicated blocks of code, found by hashing windows of normalised lines (bounded in lines read).

Lines are split where Python splits them (``\n``, ``\r\n``, ``\r``) and compared with blanks removed;
blank lines, comment-only lines, imports and lines of three bytes or fewer (a lone brace) are ignored,
so a block is a run of at least ``min_lines`` meaningful lines that occurs again elsewhere (or
elsewhere in the same file). What a file contributes
(its meaningful lines' numbers and 64-bit hashes, ``FileLines``) depends on its content only, so callers
cache it by content hash (``LINES_KEY``) and pass it back as ``known``. Blocking I/O: call it from a
worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import operator
import os
import zlib
from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path
from typing import Any

import numpy as np

from servers.code_quality.files import SourceFile

DEFAULT_MIN_LINES = 6
DEFAULT_MAX_LINES = 500_000
DEFAULT_MAX_BLOCKS = 200
_NOT_CODE = frozenset({"other", "markdown", "text", "json", "yaml", "toml", "config", "html", "css", "sql"})
_SKIP_PREFIXES = (
    b"#",
    b"//",
    b"/*",
    b"*",
    b"--",
    b"import ",
    b"from ",
    b"#include",
    b"using ",
    b"package ",
    b"require ",
)
_BLANKS = b" \t\x0b\x0c"
_MEANINGFUL = (3).__lt__
#: (version, config) of cached ``FileLines``: changes whenever what counts as a line or its hash changes.
LINES_KEY = ("lines-2", hashlib.sha256(repr((_SKIP_PREFIXES, _BLANKS, 3, "crc32+adler32")).encode()).hexdigest()[:16])
# Odd multipliers mixing a window's line hashes into one (arithmetic wraps at 64 bits).
_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD],
    dtype=np.uint64,
)


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


@dataclass(frozen=True)
class FileLines:
    """A file's meaningful lines: their 1-based numbers and stable 64-bit hashes of their squashed text."""

    numbers: np.ndarray
    hashes: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "numbers": base64.b64encode(self.numbers.astype("<u4").tobytes()).decode(),
            "hashes": base64.b64encode(self.hashes.astype("<u8").tobytes()).decode(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileLines | None:
        """None when ``data`` is not what ``to_dict`` wrote (the caller then reads the file again)."""
        try:
            numbers = np.frombuffer(base64.b64decode(data["numbers"], validate=True), dtype="<u4")
            hashes = np.frombuffer(base64.b64decode(data["hashes"], validate=True), dtype="<u8")
        except (KeyError, TypeError, ValueError):
            return None
        if len(numbers) != len(hashes):
            return None
        return cls(numbers.astype(np.int64), hashes.astype(np.uint64))


def considered(f: SourceFile) -> bool:
    """Whether ``f`` is searched for duplicates at all (code, not data or prose)."""
    return f.language not in _NOT_CODE


def file_lines(data: bytes) -> FileLines:
    # Built-in functions mapped over whole files: a Python loop per line would cost more than the analyzers.
    squashed = data.translate(None, _BLANKS).splitlines()
    comments = map(bytes.startswith, map(bytes.lstrip, data.splitlines()), repeat(_SKIP_PREFIXES))
    # A last line of blanks only has no squashed counterpart: it is not meaningful anyway.
    keep = list(map(operator.and_, map(_MEANINGFUL, map(len, squashed)), map(operator.not_, comments)))
    kept = list(compress(squashed, keep))
    numbers = np.fromiter(compress(range(1, len(keep) + 1), keep), dtype=np.int64, count=len(kept))
    crc = np.fromiter(map(zlib.crc32, kept), dtype=np.uint64, count=len(kept))
    adler = np.fromiter(map(zlib.adler32, kept), dtype=np.uint64, count=len(kept))
    return FileLines(numbers, (crc << np.uint64(32)) | adler)


def _read(root: Path, rel: str) -> bytes | None:
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _windows(hashes: np.ndarray, min_lines: int) -> np.ndarray:
    """One 64-bit hash per run of ``min_lines`` consecutive meaningful lines."""
    count = len(hashes) - min_lines + 1
    out = hashes[:count].copy()
    for k in range(1, min_lines):
        out = out * _MIX[(k - 1) % len(_MIX)] + hashes[k : k + count]
    return out


def find_duplicates(
    root: Path,
    files: Sequence[SourceFile],
    *,
    min_lines: int = DEFAULT_MIN_LINES,
    max_lines: int = DEFAULT_MAX_LINES,
    max_blocks: int = DEFAULT_MAX_BLOCKS,
    known: Mapping[str, FileLines] | None = None,
    learned: MutableMapping[str, FileLines] | None = None,
) -> DuplicationReport:
    """Blocks of ``min_lines`` or more meaningful lines that occur at least twice among ``files``.

    ``known`` maps content hashes (``SourceFile.sha256``) to lines computed earlier; the files read
    instead are added to ``learned`` under their hash when their content is still the listed one."""
    report = DuplicationReport(min_lines=min_lines)
    known = known or {}
    kept: list[tuple[str, FileLines]] = []
    for f in sorted(files, key=lambda f: f.path):
        if not considered(f):
            continue
        lines = known.get(f.sha256)
        if lines is None:
            data = _read(root, f.path)
            if data is None:
                continue
            lines = file_lines(data)
            if learned is not None and hashlib.sha256(data).hexdigest() == f.sha256:
                learned[f.sha256] = lines
        if report.total_lines + len(lines.numbers) > max_lines:
            report.truncated = True
            break
        report.total_lines += len(lines.numbers)
        report.files_considered += 1
        kept.append((f.path, lines))

    windows = _repeated_windows([lines.hashes for _, lines in kept], min_lines)
    marked: dict[int, set[int]] = defaultdict(set)
    first_window: dict[tuple[int, int], int] = {}
    for digest, places in windows.items():
        distinct: list[tuple[int, int]] = []
        for place in places:
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
                (kept[f][0], int(kept[f][1].numbers[st]))
                for f, st in windows[digest]
                if (f, st) != (file_index, run_start)
            )
            end = prev + min_lines - 1
            report.blocks.append(
                DuplicateBlock(
                    path, int(lines.numbers[run_start]), int(lines.numbers[end]), end - run_start + 1, others[:10]
                )
            )
            if s is not None:
                run_start = prev = s
    report.blocks.sort(key=lambda b: (-b.lines, b.path, b.line))
    if len(report.blocks) > max_blocks:
        report.blocks = report.blocks[:max_blocks]
        report.truncated = True
    return report


def _repeated_windows(per_file: Sequence[np.ndarray], min_lines: int) -> dict[int, list[tuple[int, int]]]:
    """Window hash -> its (file index, start) places in order, for the hashes found more than once."""
    parts = [(index, _windows(hashes, min_lines)) for index, hashes in enumerate(per_file) if len(hashes) >= min_lines]
    if not parts:
        return {}
    digests = np.concatenate([w for _, w in parts])
    owners = np.concatenate([np.full(len(w), index, dtype=np.int64) for index, w in parts])
    starts = np.concatenate([np.arange(len(w), dtype=np.int64) for _, w in parts])
    order = np.argsort(digests, kind="stable")  # stable: each group keeps (file, start) order
    ordered = digests[order]
    same = ordered[1:] == ordered[:-1]
    repeated = np.zeros(len(ordered), dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    picked = order[repeated]
    out: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for digest, owner, start in zip(
        digests[picked].tolist(), owners[picked].tolist(), starts[picked].tolist(), strict=True
    ):
        out[digest].append((owner, start))
    return out
