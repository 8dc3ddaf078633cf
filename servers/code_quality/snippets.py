"""Code handed over as text (a snippet, a draft not saved yet), checked in a private temporary folder.

The names are checked before anything is written: relative POSIX paths of plain segments, none of them
``.`` or ``..``, and no name also used as a folder. The folder is made by ``mkdtemp`` (readable by this
user only) and removed when the check ends, whatever happened. Blocking I/O: call from a worker thread.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from common.errors import InvalidInput

MAX_FILES = 20
MAX_BYTES = 1_000_000
MAX_NAME_CHARS = 200
_SEGMENT = re.compile(r"^[A-Za-z0-9_.+@-]+$")


def encode_files(files: Mapping[str, str]) -> dict[str, bytes]:
    """The files as UTF-8 by name; raises ``InvalidInput`` naming the first problem and how to fix it."""
    if not files:
        raise InvalidInput('files is empty: give at least one name and its code, e.g. {"app.py": "..."}.')
    if len(files) > MAX_FILES:
        raise InvalidInput(f"{len(files)} files given; check at most {MAX_FILES} at once.")
    for name in files:
        _check_name(name)
    folders = {str(parent) for name in files for parent in Path(name).parents if str(parent) != "."}
    clash = next((name for name in files if name in folders), None)
    if clash is not None:
        raise InvalidInput(f"{clash!r} is both a file and a folder of another file; rename one of them.")
    encoded = {name: text.encode() for name, text in files.items()}
    total = sum(len(data) for data in encoded.values())
    if total > MAX_BYTES:
        raise InvalidInput(
            f"the files hold {total} bytes; at most {MAX_BYTES} are checked at once. Save larger code in an "
            "allowed folder and use analyze_code."
        )
    return encoded


def _check_name(name: str) -> None:
    segments = name.split("/")
    if (
        not name
        or len(name) > MAX_NAME_CHARS
        or name.startswith("/")
        or any(s in ("", ".", "..") or not _SEGMENT.match(s) for s in segments)
    ):
        raise InvalidInput(
            f"file name {name[:80]!r} is not usable: give a relative path of at most {MAX_NAME_CHARS} characters "
            "with letters, digits and _ . + @ - between slashes, ending in the language's extension "
            "(e.g. app/views.py)."
        )


def write_scratch(files: Mapping[str, bytes]) -> Path:
    """A new private folder holding ``files`` (from ``encode_files``); the caller removes it."""
    root = Path(tempfile.mkdtemp(prefix="code-quality-check-")).resolve()
    try:
        for name, data in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except BaseException:
        remove_scratch(root)
        raise
    return root


def remove_scratch(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
