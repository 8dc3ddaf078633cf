"""Search quality on a real documentation tree nobody here wrote: the reST sources of the Python 3.11 docs
(Debian's python3.11-doc), with the real default embedding model.

The queries paraphrase the target sections instead of quoting them, so keyword overlap alone does not win.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from common.testing import call_ok as call
from servers.documentation.chunking import slugify
from servers.documentation.server import build
from servers.documentation.settings import Settings

pytestmark = pytest.mark.anyio

PY_DOCS = Path("/usr/share/doc/python3.11/html/_sources")

#: (query, document path, section anchor or None for anywhere in the document)
QUERIES: list[tuple[str, str, str | None]] = [
    ("read a password from the user without showing it on screen", "library/getpass.rst.txt", None),
    ("test whether an identifier is a reserved word", "library/keyword.rst.txt", None),
    ("convert a color between RGB and hue saturation value", "library/colorsys.rst.txt", None),
    ("shallow versus deep duplication of compound objects", "library/copy.rst.txt", None),
    ("match file names against shell-style wildcards", "library/fnmatch.rst.txt", None),
    ("functions called automatically when the interpreter exits normally", "library/atexit.rst.txt", None),
    ("parse a TOML configuration file", "library/tomllib.rst.txt", None),
    ("keyed hashing to authenticate messages", "library/hmac.rst.txt", None),
    ("bootstrap the pip installer into an existing environment", "library/ensurepip.rst.txt", None),
    ("run events at given times with a generic scheduler", "library/sched.rst.txt", None),
    ("find all path names matching a pattern like *.txt", "library/glob.rst.txt", None),
    ("internal serialization format used for compiled .pyc files", "library/marshal.rst.txt", None),
    ("look up the category and name of a unicode character", "library/unicodedata.rst.txt", None),
    ("compare the contents of two directories", "library/filecmp.rst.txt", None),
    ("generate hard to guess tokens for password resets", "library/secrets.rst.txt", None),
    ("enable features of a future release with a special import", "library/__future__.rst.txt", None),
    ("C-style parser for command line options", "library/getopt.rst.txt", None),
    ("print the traceback when the process crashes with a segmentation fault", "library/faulthandler.rst.txt", None),
    ("compile a source file to byte-code without running it", "library/py_compile.rst.txt", None),
    ("exact arithmetic with numerator and denominator", "library/fractions.rst.txt", None),
    ("read and write uncompressed WAV sound files", "library/wave.rst.txt", None),
    ("convert binary data to hexadecimal or base64 ASCII", "library/binascii.rst.txt", None),
    ("import python modules stored inside a zip archive", "library/zipimport.rst.txt", None),
    ("follow which statements execute and count coverage", "library/trace.rst.txt", None),
    ("unix user account database entries", "library/pwd.rst.txt", None),
    ("fetch a particular line of a source file with caching", "library/linecache.rst.txt", None),
    ("spawn a process connected to a pseudo-terminal", "library/pty.rst.txt", None),
    ("send messages to the unix system logger", "library/syslog.rst.txt", None),
    ("save a dictionary as an Apple property list", "library/plistlib.rst.txt", None),
    ("abbreviated representations of very large or recursive objects", "library/reprlib.rst.txt", None),
    ("producer and consumer coroutines sharing a FIFO", "library/asyncio-queue.rst.txt", None),
    ("how sys.path gets its initial value at startup", "library/sys_path_init.rst.txt", None),
    (
        "make a script directly executable on Unix with a shebang line",
        "tutorial/appendix.rst.txt",
        "executable-python-scripts",
    ),
    (
        "code that runs automatically every time the interactive prompt starts",
        "tutorial/appendix.rst.txt",
        "the-interactive-startup-file",
    ),
    (
        "how a script receives its command line arguments via sys.argv",
        "tutorial/interpreter.rst.txt",
        "argument-passing",
    ),
    (
        "declare a different character encoding for a source file",
        "tutorial/interpreter.rst.txt",
        "source-code-encoding",
    ),
]

N_FILES = 205


def copy_docs(target: Path) -> int:
    """The smallest files of the tree: over 200 real pages at a few hundred chunks, so the test stays quick."""
    if not PY_DOCS.is_dir():
        pytest.fail(f"{PY_DOCS} is missing: install Debian's python3.11-doc (`apt-get install python3.11-doc`).")
    files = sorted(PY_DOCS.rglob("*.txt"), key=lambda p: (p.stat().st_size, str(p)))[:N_FILES]
    for src in files:
        dest = target / src.relative_to(PY_DOCS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return len(files)


async def test_python_docs_reach_recall_at_5_of_at_least_085(make_settings: Callable[..., Any], tmp_path: Path) -> None:
    root = tmp_path / "pydocs"
    files = copy_docs(root)
    assert files >= 200
    settings = make_settings(Settings, allowed_roots=[root])
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "python", "version": "3.11"})
        job = (
            await call(
                client, "ingest_folder", {"action": "start", "project": "python", "version": "3.11", "path": str(root)}
            )
        )["jobs"][0]
        assert job["status"] == "done", job
        assert job["counts"]["added"] == files
        assert job["errors_total"] == 0
        misses = []
        for query, path, anchor in QUERIES:
            hits = (await call(client, "search_docs", {"query": query, "project": "python", "limit": 5}))["hits"]
            ok = any(
                h["path"] == path and (anchor is None or anchor in {slugify(t) for t in h["heading_path"]})
                for h in hits
            )
            if not ok:
                misses.append((query, path, anchor, [h["citation"] for h in hits]))
        recall = 1 - len(misses) / len(QUERIES)
        assert recall >= 0.85, f"recall@5 = {recall:.2f}; misses: {misses}"
