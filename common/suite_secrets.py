"""Secrets the suite makes for itself, kept in one file only its own user can read.

The embedded PostgreSQL's per-server role passwords and the key that signs events on Redis are
random values every server process of a data directory must agree on. They live in
``<data_dir>/secrets.json`` (mode 0600, in a folder created 0700), made on first use under an
``flock`` so processes starting together agree on one value, and written whole (temporary file
and rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from common.logging import get_logger

log = get_logger(__name__)

SECRETS_FILE = "secrets.json"
LOCK_FILE = "secrets.lock"
_NAME = re.compile(r"^[a-z0-9_.:-]{1,100}$")


class SecretsUnreadable(RuntimeError):
    """The secrets file exists but cannot be read or parsed; it is not replaced (that would lock servers out)."""


def secrets_path(data_dir: Path) -> Path:
    return data_dir / SECRETS_FILE


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    if not data_dir.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _read(path: Path) -> dict[str, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretsUnreadable(f"{path} cannot be opened ({exc.strerror}); fix its owner or mode (0600).") from exc
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
            # Someone widened it (a copy, a restore): others could read the passwords.
            os.fchmod(fd, 0o600)
            log.warning("secrets_file_mode_fixed", path=str(path), mode=oct(stat.S_IMODE(info.st_mode)))
        with os.fdopen(fd, "r", encoding="utf-8") as f:
            fd = -1
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise SecretsUnreadable(
            f"{path} is not readable JSON ({type(exc).__name__}); restore it from a backup, or delete it to make "
            "new secrets (then run `mcp-suite db start` so the embedded PostgreSQL takes the new passwords)."
        ) from exc
    finally:
        if fd >= 0:
            os.close(fd)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SecretsUnreadable(f"{path} does not map names to strings; restore it from a backup.")
    return raw


def _write(path: Path, values: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask must not change it
        os.write(fd, json.dumps(values, indent=1, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def get_secrets(data_dir: Path, names: list[str], *, nbytes: int = 32) -> dict[str, str]:
    """The secrets called ``names``, each made (random, URL-safe) the first time it is asked for."""
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"invalid secret name {name[:40]!r}")
    path = secrets_path(data_dir)
    current = _read(path)
    if all(name in current for name in names):
        return {name: current[name] for name in names}
    with _locked(data_dir):
        current = _read(path)  # another process may have made them while we waited
        missing = [name for name in names if name not in current]
        if missing:
            current.update({name: secrets.token_urlsafe(nbytes) for name in missing})
            _write(path, current)
            log.info("secrets_created", names=missing, path=str(path))
    return {name: current[name] for name in names}


def get_secret(data_dir: Path, name: str, *, nbytes: int = 32) -> str:
    """One secret (see :func:`get_secrets`)."""
    return get_secrets(data_dir, [name], nbytes=nbytes)[name]
