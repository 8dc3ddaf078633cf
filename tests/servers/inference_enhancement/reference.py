"""The reference `@modelcontextprotocol/server-memory` for side-by-side runs.

The compatibility suite runs the copy ``scripts/setup`` installs (pinned by
``requirements/npm/package-lock.json``); the benchmark may install another version from npm. Each
decides what a missing reference means.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PACKAGE = "@modelcontextprotocol/server-memory"
#: The pinned copy installed by scripts/setup.
PINNED = Path(__file__).resolve().parents[3] / "requirements" / "npm" / "node_modules" / PACKAGE


def pinned_reference() -> Path:
    """The entry script of the pinned reference server (``node <it>``; it reads MEMORY_FILE_PATH)."""
    if shutil.which("node") is None:
        raise ReferenceUnavailable("node is not installed, so the reference server cannot be run")
    script = PINNED / "dist" / "index.js"
    if not script.is_file():
        raise ReferenceUnavailable(f"{script} is missing: run scripts/setup (it installs requirements/npm)")
    return script


class ReferenceUnavailable(Exception):
    """npm or node is missing, or npm could not install the package; the message says which."""


def install_reference(folder: Path, version: str, *, timeout_s: float = 300) -> Path:
    """Install ``PACKAGE@version`` into ``folder``; the path of its entry script."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ReferenceUnavailable("node/npm are not installed, so the reference server cannot be run")
    try:
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(folder),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"{PACKAGE}@{version}",
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-300:]
        raise ReferenceUnavailable(f"npm could not install the reference server: {detail}") from exc
    return folder / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"
