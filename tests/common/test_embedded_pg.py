"""The embedded PostgreSQL's lifecycle: one owner per data directory, holders, detached instances, self-healing.

Each test has its own data directory and cluster (never the session's shared one); processes that
hold it are real subprocesses.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from common import embedded_pg, migrate
from common.db import Database, DbConfig, role_url
from common.testing import wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

#: A server stand-in: joins the data directory's instance, says so in a file, exits when stdin closes.
#: At exit it reports how long leaving took (its atexit hook runs after the one ensure_embedded adds).
HOLDER = """
import atexit, sys, time
from pathlib import Path
from common.logging import configure_logging
from common import embedded_pg
from common.db import Database, DbConfig
configure_logging("INFO", "json")
embedded_pg.install_sigterm_exit()
left = []
atexit.register(lambda: left and sys.stderr.write(f"left in {time.monotonic() - left[0]:.3f}s\\n"))
url = embedded_pg.ensure_embedded(Path(sys.argv[1]))
tmp = Path(sys.argv[2] + ".tmp")
tmp.write_text(url)
tmp.rename(sys.argv[2])
sys.stdin.readline()
left.append(time.monotonic())
"""

#: Holds the lifecycle lock until stdin closes.
LOCKER = """
import sys
from pathlib import Path
from common import embedded_pg
from common.db import Database, DbConfig
with embedded_pg.lifecycle_lock(Path(sys.argv[1])):
    Path(sys.argv[2]).write_text("locked")
    sys.stdin.readline()
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


class Holders:
    """Subprocesses holding one data directory's instance."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, code: str = HOLDER) -> tuple[subprocess.Popen[bytes], Path]:
        ready = self.data_dir.parent / f"ready-{len(self.procs)}"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self.data_dir), str(ready)],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc, ready

    async def join(self, n: int = 1) -> list[subprocess.Popen[bytes]]:
        spawned = [self.spawn() for _ in range(n)]
        for proc, ready in spawned:
            await wait_until(functools.partial(_joined, proc, ready), 60, "a holder to join")
            assert ready.exists(), proc.communicate()[1].decode()
        return [proc for proc, _ in spawned]

    def close_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for pipe in (proc.stdin, proc.stderr):
                if pipe is not None:
                    pipe.close()


def _joined(proc: subprocess.Popen[bytes], ready: Path) -> bool:
    return ready.exists() or proc.poll() is not None


def _leave(proc: subprocess.Popen[bytes]) -> None:
    """Let a holder exit normally (its stdin closes, as when an MCP client goes away)."""
    assert proc.stdin is not None
    proc.stdin.close()


def _cluster(data_dir: Path) -> list[psutil.Process]:
    """The postmaster and every process it started."""
    pm = embedded_pg.read_postmaster(embedded_pg.pgdata_dir(data_dir))
    assert pm is not None
    postmaster = psutil.Process(pm.pid)
    return [postmaster, *postmaster.children(recursive=True)]


def _all_gone(procs: list[psutil.Process]) -> bool:
    def gone(p: psutil.Process) -> bool:
        try:
            return p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(p) for p in procs)


def _kill_leftovers(pgdata: Path) -> None:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            proc.kill()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: every pytest run on the machine resets /tmp/pytest-of-<user> to
    # 0700, and PostgreSQL runs as another user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="mcp-epg-"))
    path = base / "d"
    try:
        yield path
    finally:
        embedded_pg.release(path)  # this process, if it joined
        embedded_pg.stop(path)
        _kill_leftovers(embedded_pg.pgdata_dir(path))
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def holders(data_dir: Path) -> Iterator[Holders]:
    h = Holders(data_dir)
    try:
        yield h
    finally:
        h.close_all()


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


@pytest.mark.slow
async def test_two_processes_share_one_instance_that_stops_only_when_both_have_left(
    data_dir: Path, holders: Holders
) -> None:
    a, b = await holders.join(2)
    st = embedded_pg.status(data_dir)
    assert st.running
    assert sorted(st.handles) == sorted([a.pid, b.pid])
    cluster = _cluster(data_dir)

    _leave(a)
    assert a.wait(10) == 0
    assert embedded_pg.status(data_dir).running
    assert await _select_one(st.url or "") == 1

    _leave(b)
    assert b.wait(10) == 0
    await wait_until(lambda: _all_gone(cluster), 10, "PostgreSQL to stop")
    assert embedded_pg.status(data_dir).handles == []


@pytest.mark.slow
async def test_a_sigkilled_holder_is_pruned_and_the_last_normal_exit_still_stops_postgres(
    data_dir: Path, holders: Holders
) -> None:
    a, b = await holders.join(2)
    cluster = _cluster(data_dir)
    a.kill()
    a.wait(10)
    assert embedded_pg.status(data_dir).handles == [b.pid]

    _leave(b)
    assert b.wait(10) == 0
    await wait_until(lambda: _all_gone(cluster), 10, "PostgreSQL to stop")
    registry = json.loads((data_dir / embedded_pg.HOLDERS_FILE).read_text())
    assert registry["holders"] == []


def test_a_holder_whose_pid_was_reused_by_another_process_is_not_counted(data_dir: Path) -> None:
    me = psutil.Process()
    data_dir.mkdir(parents=True)
    (data_dir / embedded_pg.HOLDERS_FILE).write_text(
        json.dumps({"holders": [[me.pid, me.create_time() - 3600], [me.pid, me.create_time()]]})
    )
    # The same pid twice: only the entry whose start time matches this process is alive.
    assert embedded_pg.status(data_dir).handles == [me.pid]


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**_env(), "MCP_SUITE_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-m", "servers", "db", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
async def test_the_last_holder_stops_a_postgres_that_was_restarted_after_it_joined(
    data_dir: Path, holders: Holders
) -> None:
    (a,) = await holders.join(1)
    old = _cluster(data_dir)
    old[0].kill()
    await wait_until(lambda: _all_gone(old[:1]), 5, "the postmaster to die")
    await asyncio.to_thread(embedded_pg.restart_stopped, data_dir)
    new = _cluster(data_dir)
    assert new[0].pid != old[0].pid

    _leave(a)
    assert a.wait(10) == 0
    await wait_until(lambda: _all_gone(new), 10, "the restarted PostgreSQL to stop")


@pytest.mark.slow
async def test_an_instance_started_with_db_start_survives_servers_joining_and_leaving(
    data_dir: Path, holders: Holders
) -> None:
    started = await asyncio.to_thread(_cli, data_dir, "start")
    assert started.returncode == 0, started.stderr
    url = started.stdout.split("running: ")[1].strip()
    assert embedded_pg.status(data_dir).detached
    (a,) = await holders.join(1)
    assert embedded_pg.status(data_dir).handles == [a.pid]
    _leave(a)
    assert a.wait(10) == 0

    st = embedded_pg.status(data_dir)
    assert st.running
    assert st.handles == []
    assert await _select_one(url) == 1
    report = (await asyncio.to_thread(_cli, data_dir, "status")).stdout
    assert any(line.startswith("kept up until `db stop`") and line.endswith("True") for line in report.splitlines())
    cluster = _cluster(data_dir)
    assert (await asyncio.to_thread(_cli, data_dir, "stop")).stdout.strip() == "stopped"
    assert _all_gone(cluster)
    assert not embedded_pg.status(data_dir).detached


@pytest.mark.slow
async def test_a_killed_postmaster_is_restarted_on_the_same_url_within_ten_seconds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await asyncio.to_thread(embedded_pg.ensure_embedded, data_dir)
    cluster = _cluster(data_dir)
    cluster[0].kill()
    await wait_until(lambda: _all_gone(cluster[:1]), 5, "the postmaster to die")

    started = time.monotonic()
    handler = embedded_pg.connection_lost_handler(data_dir)
    # A burst of failing queries restarts it once.
    restarted = await asyncio.gather(*(handler() for _ in range(5)))
    assert restarted == [True] * 5
    assert time.monotonic() - started < 10
    assert embedded_pg.ensure_running(data_dir) == url
    assert await _select_one(url) == 1
    # Up for longer than a restart takes: a failed connection is then not the restart's doing.
    monkeypatch.setattr(embedded_pg, "RECENT_RESTART_S", 0.0)
    assert await handler() is False
    assert _cluster(data_dir)[0].pid != cluster[0].pid


@pytest.mark.slow
async def test_after_db_stop_ensure_running_leaves_it_stopped_and_says_how_to_start_it(data_dir: Path) -> None:
    await asyncio.to_thread(embedded_pg.ensure_embedded, data_dir)
    assert embedded_pg.stop(data_dir) is True
    with pytest.raises(embedded_pg.EmbeddedPostgresDown, match="mcp-suite db start"):
        embedded_pg.ensure_running(data_dir)
    assert not embedded_pg.status(data_dir).running


async def test_a_lock_held_by_another_process_fails_within_the_bound_naming_that_process(
    data_dir: Path, holders: Holders
) -> None:
    locker, ready = holders.spawn(LOCKER)
    await wait_until(ready.exists, 30, "the other process to take the lock")
    started = time.monotonic()
    with pytest.raises(embedded_pg.EmbeddedPostgresBusy, match=f"pid {locker.pid} ") as caught:
        embedded_pg.ensure_embedded(data_dir, lock_timeout_s=1.0)
    assert time.monotonic() - started < 3
    assert embedded_pg.LOCK_FILE in str(caught.value)
    assert not embedded_pg.pgdata_dir(data_dir).exists()  # nothing was started meanwhile
    _leave(locker)
    locker.wait(10)
    # Its lock went with it.
    with embedded_pg.lifecycle_lock(data_dir, timeout_s=1.0):
        pass


@pytest.mark.slow
async def test_eight_holders_leaving_at_once_each_leave_within_a_second_and_only_one_stops_postgres(
    data_dir: Path, holders: Holders
) -> None:
    procs = await holders.join(8)
    cluster = _cluster(data_dir)
    started = time.monotonic()
    for proc in procs:
        _leave(proc)
    await wait_until(lambda: all(p.poll() is not None for p in procs), 10, "every holder to exit")
    elapsed = time.monotonic() - started
    assert [p.returncode for p in procs] == [0] * 8
    errors = [p.stderr.read().decode() for p in procs if p.stderr is not None]
    left = sorted(float(e.split("left in ")[1].split("s")[0]) for e in errors)
    # Leaving is a few file operations under the lock; only the last one waits for PostgreSQL to stop.
    assert left[-1] < 1.0, left
    assert left[-2] < 0.5, left
    # Stopped by one of them (which waits a second for it at most, then lets it finish by itself).
    assert sum("embedded_postgres_stopped" in e or "embedded_postgres_stopping" in e for e in errors) == 1
    # Whole processes, interpreter shutdown included (2 s on an idle machine; the CPU is shared here).
    assert elapsed < 4, elapsed
    await wait_until(lambda: _all_gone(cluster), 5, "PostgreSQL to stop")


@pytest.mark.slow
async def test_sigterms_landing_while_the_last_holder_stops_postgres_raise_nothing(
    data_dir: Path, holders: Holders
) -> None:
    (proc,) = await holders.join(1)
    cluster = _cluster(data_dir)

    def terminated() -> bool:
        # A client closing its servers sends SIGTERM, and may send it again while the process exits.
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.poll() is not None

    await wait_until(terminated, 10, "the holder to exit")
    _, err = proc.communicate()
    assert proc.returncode == 143
    assert b"Traceback" not in err, err.decode()
    assert b"Exception ignored" not in err, err.decode()
    await wait_until(lambda: _all_gone(cluster), 5, "PostgreSQL to stop")


@pytest.mark.slow
async def test_a_pool_with_the_handler_keeps_answering_after_postgres_is_killed(data_dir: Path) -> None:
    url = await asyncio.to_thread(embedded_pg.ensure_embedded, data_dir)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE SCHEMA extensions; CREATE EXTENSION vector SCHEMA extensions")
    finally:
        await conn.close()
    db = await Database.open(
        DbConfig(url=url, schema="public", on_connection_lost=embedded_pg.connection_lost_handler(data_dir))
    )
    try:
        assert await db.fetchval("SELECT 1") == 1
        cluster = _cluster(data_dir)
        cluster[0].kill()
        await wait_until(lambda: _all_gone(cluster[:1]), 5, "the postmaster to die")
        started = time.monotonic()
        # The failed attempt restarts PostgreSQL and the call is retried: the caller sees no error.
        assert await db.fetchval("SELECT 2") == 2
        assert time.monotonic() - started < 10
        assert db.breaker.state == "closed"
    finally:
        await db.close()


# --- authentication -----------------------------------------------------------------------------


async def _connects(url: str) -> bool | str:
    """True if ``url`` logs in; otherwise the class of the refusal."""
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return type(exc).__name__
    await conn.close()
    return True


async def _start_server_role(data_dir: Path, name: str) -> tuple[str, str]:
    """What a server does at start without DATABASE_URL: join, migrate with its password; (admin URL, password)."""
    admin = await asyncio.to_thread(embedded_pg.ensure_embedded, data_dir)
    password = embedded_pg.role_password(data_dir, name)
    await migrate.ensure_migrated(admin, name, role_password=password, apply_password=True)
    return admin, password


@pytest.mark.slow
async def test_a_server_role_logs_in_only_with_its_own_password(data_dir: Path) -> None:
    admin, password = await _start_server_role(data_dir, "notes")
    _, other = await _start_server_role(data_dir, "documentation")
    assert password != other
    assert await _connects(role_url(admin, "notes", password)) is True
    assert await _connects(role_url(admin, "notes", None)) in ("InvalidPasswordError", "ClientCannotConnectError")
    assert await _connects(role_url(admin, "notes", "wrong")) == "InvalidPasswordError"
    assert await _connects(role_url(admin, "notes", other)) == "InvalidPasswordError"
    assert await _connects(admin) is True  # the superuser, through the owner's socket
    pgdata = embedded_pg.pgdata_dir(data_dir)
    assert (pgdata / "pg_hba.conf").read_text() == embedded_pg.HBA_TEXT
    secrets = data_dir / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text())["pg_role:notes"] == password
    conn = await asyncpg.connect(admin)
    try:
        assert await conn.fetchval("SHOW unix_socket_permissions") == "0700"
        verifier = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = 'notes'")
        assert verifier.startswith("SCRAM-SHA-256$")
    finally:
        await conn.close()
    assert _socket_mode(pgdata) == 0o700


def _socket_mode(pgdata: Path) -> int:
    pm = embedded_pg.read_postmaster(pgdata)
    assert pm is not None
    assert pm.socket_dir is not None
    return stat.S_IMODE(next(pm.socket_dir.glob(".s.PGSQL.*[0-9]")).stat().st_mode)


@pytest.mark.slow
async def test_a_cluster_of_an_older_version_is_switched_to_passwords_and_keeps_its_data(data_dir: Path) -> None:
    # The older version: trust for everyone and roles without passwords (a throw-away start does not secure).
    admin = await asyncio.to_thread(embedded_pg.restart_stopped, data_dir)
    await migrate.bootstrap(admin, ["notes"])
    old = await asyncpg.connect(role_url(admin, "notes", None))
    try:
        await old.execute("CREATE TABLE notes.kept (v text); INSERT INTO notes.kept VALUES ('from before')")
    finally:
        await old.close()
    assert (embedded_pg.pgdata_dir(data_dir) / "pg_hba.conf").read_text() != embedded_pg.HBA_TEXT
    await asyncio.to_thread(embedded_pg.stop, data_dir)

    admin, password = await _start_server_role(data_dir, "notes")
    assert await _connects(role_url(admin, "notes", None)) in ("InvalidPasswordError", "ClientCannotConnectError")
    conn = await asyncpg.connect(role_url(admin, "notes", password))
    try:
        assert await conn.fetchval("SELECT v FROM notes.kept") == "from before"
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_running_cluster_of_an_older_version_is_switched_when_a_server_joins(data_dir: Path) -> None:
    admin = await asyncio.to_thread(embedded_pg.restart_stopped, data_dir)
    await migrate.bootstrap(admin, ["notes"])
    assert await _connects(role_url(admin, "notes", None)) is True
    _, password = await _start_server_role(data_dir, "notes")

    async def refused() -> bool:
        return await _connects(role_url(admin, "notes", None)) is not True

    await wait_until(refused, 10, "the reloaded pg_hba.conf to refuse a role without password")
    assert await _connects(role_url(admin, "notes", password)) is True
