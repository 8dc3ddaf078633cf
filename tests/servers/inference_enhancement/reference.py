"""The reference `@modelcontextprotocol/server-memory`, installed from npm for side-by-side runs.

Used by the compatibility test and by the benchmark; each decides what a failed install means
(a visible skip, or the end of the benchmark).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

PACKAGE = "@modelcontextprotocol/server-memory"


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
