"""Which files a folder ingest may read: allowed roots, globs, symlinks, size and binary checks.

Every file that is looked at and not ingested comes back with a reason, so a job result can list
it: nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from common.errors import InvalidInput, NotFound
from servers.documentation.chunking import kind_for_path

DEFAULT_INCLUDE = ("**/*.md", "**/*.markdown", "**/*.rst", "**/*.txt", "**/*.html", "**/*.htm", "**/*.py")
ROOTS_SETTING = "DOCUMENTATION_ALLOWED_ROOTS"


@dataclass(frozen=True)
class Candidate:
    path: str  # relative to the root, POSIX separators
    absolute: Path
    size: int


@dataclass
class Scan:
    root: Path
    files: list[Candidate] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, patterns: Sequence[str]) -> bool:
    """Glob match on a relative POSIX path; a pattern without '/' matches the file name anywhere."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        target = path if "/" in pattern else name
        if _glob_regex(pattern).match(target):
            return True
    return False


def resolve_inside_roots(raw: str, roots: Sequence[Path], *, want_dir: bool) -> tuple[Path, Path]:
    """(resolved path, the allowed root holding it), or a clear error naming the setting."""
    if not roots:
        raise InvalidInput(
            f"Reading files is disabled: set {ROOTS_SETTING} to a JSON list of folders this server may read, "
            'e.g. ["/home/me/docs"]. Until then use ingest_text, or import_api_spec with inline content.'
        )
    given = Path(raw).expanduser()
    if not given.is_absolute():
        raise InvalidInput(f"path {raw!r} must be absolute.")
    try:
        resolved = given.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"{raw!r} does not exist.") from None
    except (OSError, RuntimeError) as exc:
        raise InvalidInput(f"{raw!r} cannot be resolved: {exc}.") from None
    for root in roots:
        real_root = Path(root).expanduser().resolve()
        if resolved.is_relative_to(real_root):
            if want_dir and not resolved.is_dir():
                raise InvalidInput(f"{raw!r} is not a folder.")
            if not want_dir and not resolved.is_file():
                raise InvalidInput(f"{raw!r} is not a file.")
            return resolved, real_root
    allowed = ", ".join(str(r) for r in roots)
    via = " (through a symlink)" if resolved != given.absolute() else ""
    raise InvalidInput(f"{raw!r}{via} is outside the allowed roots ({allowed}); add its folder to {ROOTS_SETTING}.")


def looks_binary(head: bytes) -> bool:
    """A NUL byte in the first 8 KB: what git and grep use, and right for every text format we read."""
    return b"\x00" in head[:8192]


def scan(
    root: Path, allowed_root: Path, include: Sequence[str], exclude: Sequence[str], max_bytes: int, max_files: int
) -> Scan:
    """Every candidate file under ``root`` (sorted), and every file left out for a reason."""
    result = Scan(root=root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        dirnames.sort()
        for d in list(dirnames):
            full = base / d
            rel = full.relative_to(root).as_posix()
            if matches(rel + "/x", exclude) or matches(rel, exclude):
                dirnames.remove(d)
            elif full.is_symlink():
                dirnames.remove(d)
                result.skipped.append({"path": rel + "/", "reason": "symlinked folder not followed"})
        for name in sorted(filenames):
            full = base / name
            rel = full.relative_to(root).as_posix()
            if not matches(rel, include) or matches(rel, exclude):
                continue
            if kind_for_path(rel) is None:
                result.skipped.append({"path": rel, "reason": "no parser for this file type"})
                continue
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                except (OSError, RuntimeError):
                    result.skipped.append({"path": rel, "reason": "broken symlink"})
                    continue
                if not target.is_relative_to(allowed_root):
                    result.skipped.append({"path": rel, "reason": "symlink escapes the allowed roots"})
                    continue
            try:
                size = full.stat().st_size
            except OSError as exc:
                result.skipped.append({"path": rel, "reason": f"cannot stat: {exc.strerror or exc}"})
                continue
            if size > max_bytes:
                result.skipped.append({"path": rel, "reason": f"too large: {size} bytes > limit {max_bytes}"})
                continue
            if len(result.files) >= max_files:
                result.skipped.append({"path": rel, "reason": f"over the limit of {max_files} files per job"})
                continue
            result.files.append(Candidate(path=rel, absolute=full, size=size))
    return result


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); raises ValueError with the reason for binary or undecodable data."""
    if looks_binary(data):
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
