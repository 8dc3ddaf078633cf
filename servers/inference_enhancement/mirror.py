"""The memory.jsonl named by ``MEMORY_FILE_PATH``: found, read and rewritten as the reference server would.

The user names this file in their client configuration, so it is trusted as it is, apart from
``INFERENCE_ENHANCEMENT_FILE_ROOTS`` (which governs the import/export tools' paths only): its real
path (links resolved once, at start) is the one file allowed, its folder the only root, and it is
still read and written through ``common.safefiles`` (regular file only, size cap, atomic rename).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from common import safefiles
from common.errors import InvalidInput, NotFound

SETTING = "MEMORY_FILE_PATH"


def resolve(raw: str, data_dir: Path) -> Path:
    """The real path of ``raw``: ``~`` expanded, a relative path taken in ``data_dir``, links resolved.

    The reference takes a relative path in its own package folder (inside the npx cache, gone with
    it); the suite's data folder is the stable equivalent.
    """
    given = os.path.expanduser(raw.strip())
    if not given:
        raise InvalidInput(f"{SETTING} is empty; name a memory.jsonl file or unset it.")
    full = given if os.path.isabs(given) else os.path.join(os.path.expanduser(str(data_dir)), given)
    return Path(os.path.realpath(full))


def _roots(path: Path) -> safefiles.Roots:
    return safefiles.Roots([path.parent], setting=SETTING)


def read(path: Path, *, max_bytes: int) -> bytes | None:
    """The file's bytes, or None when it does not exist yet (the reference starts empty then)."""
    if not path.parent.is_dir():
        raise InvalidInput(f"The folder of {SETTING} ({safefiles.shown(str(path.parent))}) does not exist; create it.")
    try:
        return safefiles.read_bytes(path, _roots(path), max_bytes=max_bytes)
    except NotFound:
        return None


def write(path: Path, data: bytes, *, max_bytes: int) -> None:
    """Replace the file atomically, keeping its permissions (a new file gets 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        mode = 0o600
    safefiles.write_atomic(path, _roots(path), data, max_bytes=max_bytes, mode=mode)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
