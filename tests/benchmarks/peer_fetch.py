"""The benchmark peers and data of bench_web_access that come from PyPI, kept out of the project's lock.

- ``mcp-server-fetch`` (the reference fetch server) is installed into its own virtual environment
  under the benchmark cache folder, made on first use.
- The extraction corpus is the test data that newspaper4k ships in its sdist: saved news pages
  (``tests/data/html``) with the main text its tests expect (``tests/data/txt``). Nobody here wrote
  or tuned on them. ``pip download`` fetches the sdist once into the cache folder.

The cache folder is ``$MCP_SUITE_BENCH_CACHE`` or ``~/.cache/mcp-suite/bench``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

PEER_VERSION = "2026.10.24"
CORPUS_PACKAGE = "newspaper4k"
CORPUS_VERSION = "0.9.6"
#: Pages above this size are left out (three multi-megabyte CNN pages); the other 20 are used.
CORPUS_MAX_BYTES = 1_000_000
ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    base = os.environ.get("MCP_SUITE_BENCH_CACHE") or str(Path.home() / ".cache" / "mcp-suite" / "bench")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def peer_python() -> Path:
    """The interpreter of a venv holding mcp-server-fetch, installed on first use."""
    venv = cache_dir() / f"peer-fetch-{PEER_VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    uv = ROOT / ".venv" / "bin" / "uv"
    if uv.exists() or shutil.which("uv"):
        uv_cmd = str(uv) if uv.exists() else str(shutil.which("uv"))
        subprocess.run([uv_cmd, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv_cmd, "pip", "install", "--quiet", "--python", str(python), "--compile-bytecode",
             f"mcp-server-fetch=={PEER_VERSION}"],
            check=True,
        )  # fmt: skip
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"mcp-server-fetch=={PEER_VERSION}"], check=True
        )
    marker.write_text(PEER_VERSION)
    return python


@dataclass(frozen=True)
class CorpusPage:
    name: str
    html: bytes
    expected: str


def corpus() -> list[CorpusPage]:
    """newspaper4k's saved pages that have an expected text and are under CORPUS_MAX_BYTES, by name."""
    folder = cache_dir() / f"{CORPUS_PACKAGE}-{CORPUS_VERSION}"
    sdist = folder / f"{CORPUS_PACKAGE}-{CORPUS_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"{CORPUS_PACKAGE}=={CORPUS_VERSION}", "-d", str(folder)],
            check=True,
        )  # fmt: skip
    prefix = f"{CORPUS_PACKAGE}-{CORPUS_VERSION}/tests/data/"
    html: dict[str, bytes] = {}
    text: dict[str, str] = {}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            rel = member.name[len(prefix) :]
            data = tar.extractfile(member)
            if data is None:
                continue
            if rel.startswith("html/") and rel.endswith(".html"):
                html[rel[5:-5]] = data.read()
            elif rel.startswith("txt/") and rel.endswith(".txt"):
                text[rel[4:-4]] = data.read().decode("utf-8")
    return [
        CorpusPage(name, html[name], text[name])
        for name in sorted(html.keys() & text.keys())
        if len(html[name]) <= CORPUS_MAX_BYTES
    ]
