"""Duplicated blocks of code, found by hashing windows of normalised lines (bounded in lines read).

Lines are compared with whitespace removed; blank lines, comment-only lines, imports and lines of three
characters or fewer (a lone brace) are ignored, so a block is a run of at least ``min_lines``
meaningful lines that occurs again elsewhere (or elsewhere in the same file). What a file contributes
(its meaningful lines' numbers and 64-bit hashes, ``FileLines``) depends on its content only, so callers
cache it by content hash (``LINES_KEY``) and pass it back as ``known``. Blocking I/O: call it from a
worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servers.code_quality.files import SourceFile

DEFAULT_MIN_LINES = 6
DEFAULT_MAX_LINES = 500_000
DEFAULT_MAX_BLOCKS = 200
_NOT_CODE = frozenset({"other", "markdown", "text", "json", "yaml", "toml", "config", "html", "css", "sql"})
_SKIP_PREFIXES = ("#", "//", "/*", "*", "--", "import ", "from ", "#include", "using ", "package ", "require ")
#: (version, config) of cached ``FileLines``: changes whenever what counts as a line or its hash changes.
LINES_KEY = ("lines-2", hashlib.sha256(repr((_SKIP_PREFIXES, 3, "poly-splitmix-1")).encode()).hexdigest()[:16])
_SKIP_PREFIX_BYTES = tuple(p.encode() for p in _SKIP_PREFIXES)
#: The prefixes with their spaces removed: a squashed line starting with none of them is never skipped.
_SQUASHED_PREFIXES = tuple(sorted({p.replace(b" ", b"") for p in _SKIP_PREFIX_BYTES}))
#: Line breaks of ``str.splitlines`` besides LF (and CRLF) in ASCII: files with them take the slow path.
_ODD_BREAKS = (b"\r", b"\v", b"\f", b"\x1c", b"\x1d", b"\x1e")
#: Line breaks and whitespace of ``str`` beyond ASCII: files with them take the slow path too.
_WIDE_ODDITIES = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
#: The first bytes of those characters in UTF-8.
_WIDE_LEADS = (b"\xc2", b"\xe1", b"\xe2", b"\xe3")
#: The ASCII bytes ``str.split()`` and ``str.strip()`` treat as whitespace.
_SPACE_BYTES = bytes([9, 10, 11, 12, 13, 28, 29, 30, 31, 32])
_SPACE_BUT_LF = _SPACE_BYTES.replace(b"\n", b"")
#: Bytes of text joined into one batch of array operations (bounds the arrays' memory).
_BATCH_BYTES = 1 << 20
#: The base of the per-line polynomial hash.
_BASE = 0x100000001B3
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
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


def lines_of(datas: Sequence[bytes]) -> list[FileLines]:
    """``FileLines`` of each file's bytes: plain text in batches of arrays, the rest line by line."""
    out: list[FileLines | None] = [None] * len(datas)
    batch: list[tuple[int, bytes]] = []
    size = 0
    for index, data in enumerate(datas):
        plain = _plain(data)
        if plain is None:
            out[index] = _hashed(*_text_lines(data))
            continue
        batch.append((index, plain))
        size += len(plain)
        if size >= _BATCH_BYTES:
            for (i, _), lines in zip(batch, _plain_lines([d for _, d in batch]), strict=True):
                out[i] = lines
            batch, size = [], 0
    for (i, _), lines in zip(batch, _plain_lines([d for _, d in batch]), strict=True):
        out[i] = lines
    return [lines for lines in out if lines is not None]


def _plain(data: bytes) -> bytes | None:
    """``data`` with CRLF as LF when it is UTF-8 whose only line breaks are LF and whose only
    whitespace is ASCII (what ``_plain_lines`` handles); None otherwise."""
    if b"\r" in data and data.count(b"\r") == data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n")  # the same lines and numbers as splitlines gives
    if any(c in data for c in _ODD_BREAKS):
        return None
    if not data.isascii():
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return None
        if any(lead in data for lead in _WIDE_LEADS) and _WIDE_ODDITIES.search(text):
            return None
    return data


def _plain_lines(datas: Sequence[bytes]) -> list[FileLines]:
    """What ``_text_lines`` gives for each of ``datas`` (as ``_plain`` returns them), in one pass of array
    operations over all of them joined."""
    if not datas:
        return []
    joined = b"\n".join(datas)
    # The text without whitespace but with its line breaks: line i is squashed[starts[i]:ends[i]].
    squashed = joined.translate(None, _SPACE_BUT_LF)
    stream = np.frombuffer(squashed, dtype=np.uint8)
    breaks = np.flatnonzero(stream == 10)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(stream)]))
    chars = ends - starts
    if not squashed.isascii():  # characters, not bytes: UTF-8 continuation bytes are never whitespace
        tails = np.concatenate(([0], np.cumsum((stream & 0xC0) == 0x80, dtype=np.int64)))
        chars = chars - (tails[ends] - tails[starts])
    lines = np.flatnonzero(chars > 3)
    maybe = np.zeros(len(lines), dtype=bool)
    padded = np.concatenate((stream, np.zeros(max(map(len, _SQUASHED_PREFIXES)), dtype=np.uint8)))
    heads = starts[lines]
    for prefix in _SQUASHED_PREFIXES:
        match = np.ones(len(lines), dtype=bool)
        for offset, byte in enumerate(prefix):
            match &= padded[heads + offset] == byte
        maybe |= match
    if maybe.any():  # the few lines whose squashed text starts like a skipped one: check the raw line
        raw = joined.split(b"\n")
        skip = [raw[i].strip(_SPACE_BYTES).startswith(_SKIP_PREFIX_BYTES) for i in lines[maybe].tolist()]
        maybe[maybe] = skip
        lines = lines[~maybe]
    hashes = _range_hashes(stream, starts[lines], ends[lines])
    # Each file's first line index in the joined text, then its lines.
    line_counts = np.array([d.count(b"\n") + 1 for d in datas], dtype=np.int64)
    file_starts = np.concatenate(([0], np.cumsum(line_counts)[:-1]))
    cuts = np.searchsorted(lines, file_starts)[1:]
    return [
        FileLines(numbers - start + 1, h)
        for numbers, h, start in zip(np.split(lines, cuts), np.split(hashes, cuts), file_starts, strict=True)
    ]


def _text_lines(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Meaningful lines' numbers, their squashed UTF-8 bytes end to end, and where each starts and ends in them."""
    numbers: list[int] = []
    parts: list[bytes] = []
    for number, raw in enumerate(data.decode(errors="replace").splitlines(), start=1):
        squashed = "".join(raw.split())
        if len(squashed) <= 3 or raw.strip().startswith(_SKIP_PREFIXES):
            continue
        numbers.append(number)
        parts.append(squashed.encode())
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    starts = ends - np.array([len(p) for p in parts], dtype=np.int64)
    return np.array(numbers, dtype=np.int64), np.frombuffer(b"".join(parts), dtype=np.uint8), starts, ends


def _hashed(numbers: np.ndarray, stream: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> FileLines:
    return FileLines(numbers, _range_hashes(stream, starts, ends))


def _range_hashes(stream: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each ``stream[start:end]``: a polynomial over its bytes and its length, then mixed."""
    powers = np.ones(len(stream), dtype=np.uint64)
    np.cumprod(np.full(max(len(stream) - 1, 0), _BASE, dtype=np.uint64), out=powers[1:])
    sums = np.zeros(len(stream) + 1, dtype=np.uint64)
    np.cumsum((stream + np.uint64(1)) * powers, out=sums[1:])
    # sums[end] - sums[start] is the polynomial shifted by start places: the inverse power shifts it back.
    return _mixed((sums[ends] - sums[starts]) * _inverse_powers(starts), ends - starts)


def _inverse_powers(exponents: np.ndarray) -> np.ndarray:
    """``_BASE_INVERSE ** e`` mod 2**64 for each ``e``, by squaring."""
    out = np.ones(len(exponents), dtype=np.uint64)
    left = exponents.astype(np.uint64)
    square = _BASE_INVERSE
    while left.any():
        odd = (left & np.uint64(1)).astype(bool)
        out[odd] *= np.uint64(square)
        square = square * square % (1 << 64)
        left >>= np.uint64(1)
    return out


def _mixed(h: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    h = h ^ lengths.astype(np.uint64) * _MIX[0]
    # The splitmix64 finaliser: every output bit depends on every input bit.
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _read(root: Path, rel: str) -> bytes | None:
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _lines_in_order(
    root: Path,
    files: Sequence[SourceFile],
    known: Mapping[str, FileLines],
    learned: MutableMapping[str, FileLines] | None,
) -> Iterator[tuple[str, FileLines]]:
    """Each readable file's path and lines in order: known ones as they are, the others read and hashed
    in batches; those whose content is still the listed one are added to ``learned``."""
    queue: list[tuple[SourceFile, FileLines | bytes]] = []
    size = 0
    for f in files:
        lines = known.get(f.sha256)
        if lines is not None:
            queue.append((f, lines))
            continue
        data = _read(root, f.path)
        if data is None:
            continue
        queue.append((f, data))
        size += len(data)
        if size >= _BATCH_BYTES:
            yield from _settled(queue, learned)
            queue, size = [], 0
    yield from _settled(queue, learned)


def _settled(
    queue: Sequence[tuple[SourceFile, FileLines | bytes]], learned: MutableMapping[str, FileLines] | None
) -> Iterator[tuple[str, FileLines]]:
    computed = iter(lines_of([item for _, item in queue if isinstance(item, bytes)]))
    for f, item in queue:
        if isinstance(item, bytes):
            lines = next(computed)
            if learned is not None and hashlib.sha256(item).hexdigest() == f.sha256:
                learned[f.sha256] = lines
            item = lines
        yield f.path, item


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
    ordered = sorted((f for f in files if considered(f)), key=lambda f: f.path)
    for path, lines in _lines_in_order(root, ordered, known, learned):
        if report.total_lines + len(lines.numbers) > max_lines:
            report.truncated = True
            break
        report.total_lines += len(lines.numbers)
        report.files_considered += 1
        kept.append((path, lines))

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
