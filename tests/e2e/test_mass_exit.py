"""A client closing many servers at once: sixteen stdio processes of every kind on one embedded
PostgreSQL each exit within two seconds of their stdin closing, cleanly, and PostgreSQL stops with
the last of them.

Two seconds is a correctness bound (clients kill servers that linger, losing what they had not
written), not a speed goal: it is measured per process from the moment its own stdin closed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import pytest

from common import embedded_pg
from common.testing import TEST_MODEL_DIR, wait_until
from servers import registry

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PER_KIND = 2
EXIT_BOUND_S = 2.0

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class Server:
    """One server process, its stderr in a file, and the moments its stdin closed and it exited."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers", "serve", name],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
        )
        self.closed_at: float | None = None
        self.exited_at: float | None = None
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        self.proc.wait()
        self.exited_at = time.monotonic()

    def send(self, message: Mapping[str, object]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def ready(self) -> bool:
        return b'"server_ready"' in self.log.read_bytes() or self.proc.poll() is not None

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.closed_at = time.monotonic()

    @property
    def exit_s(self) -> float:
        assert self.closed_at is not None
        assert self.exited_at is not None
        return self.exited_at - self.closed_at

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log_file.close()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


def _env(data_dir: Path, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """Servers without DATABASE_URL (so on the embedded PostgreSQL of ``data_dir``), logging INFO."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "MCP_SUITE_", "EMBEDDING_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        MCP_SUITE_DATA_DIR=str(data_dir),
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        EMBEDDING_MODEL="hash-384",
        EMBEDDING_CACHE_DIR=str(TEST_MODEL_DIR),
        LOG_LEVEL="INFO",
    )
    return env


def _stopped_postgres(log: str) -> bool:
    return "embedded_postgres_stopped" in log or "embedded_postgres_stopping" in log


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: PostgreSQL runs as another user when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="mcp-exit-"))
    try:
        yield base / "d"
    finally:
        embedded_pg.stop(base / "d")
        shutil.rmtree(base, ignore_errors=True)


async def test_sixteen_servers_closed_at_once_each_exit_within_two_seconds_of_eof(
    data_dir: Path, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = _env(data_dir, redis_url, redis_prefix)
    kinds = registry.names()
    servers: list[Server] = []
    try:
        for i in range(PER_KIND):
            for name in kinds:
                servers.append(Server(name, env, tmp_path / f"{name}-{i}.log"))
        assert len(servers) >= 16
        for server in servers:
            server.send(INITIALIZE)
            server.send(INITIALIZED)  # connecting (the embedded PostgreSQL, Redis, events) starts here
        await wait_until(lambda: all(s.ready() for s in servers), 300, "every server to be connected")
        assert all(s.proc.poll() is None for s in servers), [s.log.read_text()[-2000:] for s in servers]
        status = embedded_pg.status(data_dir)
        assert status.running
        assert sorted(status.handles) == sorted(s.proc.pid for s in servers)
        pm = embedded_pg.read_postmaster(embedded_pg.pgdata_dir(data_dir))
        assert pm is not None
        postmaster = psutil.Process(pm.pid)

        for server in servers:
            server.close_stdin()
        await wait_until(lambda: all(s.exited_at is not None for s in servers), 60, "every server to exit")

        report = sorted((round(s.exit_s, 2), s.name, s.proc.returncode) for s in servers)
        slow = [r for r in report if r[0] > EXIT_BOUND_S]
        assert not slow, f"exits over {EXIT_BOUND_S}s after EOF: {slow}; all: {report}"
        assert all(code == 0 for _, _, code in report), report
        for server in servers:
            text = server.log.read_text(errors="replace")
            assert "Traceback" not in text, (server.name, text[-3000:])
            assert "Exception ignored" not in text, (server.name, text[-3000:])
        assert sum(_stopped_postgres(s.log.read_text()) for s in servers) == 1
        await wait_until(lambda: not postmaster.is_running() or postmaster.status() == "zombie", 10, "PostgreSQL")
        assert embedded_pg.status(data_dir).handles == []
    finally:
        for server in servers:
            server.stop()


async def test_sigterms_arriving_while_a_server_exits_cut_nothing_short(
    data_dir: Path, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = _env(data_dir, redis_url, redis_prefix)
    server = Server("notes", env, tmp_path / "notes.log")
    try:
        server.send(INITIALIZE)
        server.send(INITIALIZED)
        await wait_until(server.ready, 120, "the server to be connected")
        pm = embedded_pg.read_postmaster(embedded_pg.pgdata_dir(data_dir))
        assert pm is not None
        postmaster = psutil.Process(pm.pid)
        server.close_stdin()

        def terminated() -> bool:
            # A client that closed stdin may also send SIGTERM, again and again, while the server exits.
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
            return server.exited_at is not None

        await wait_until(terminated, 30, "the server to exit")
        text = server.log.read_text(errors="replace")
        assert server.proc.returncode in (0, 143), text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        assert "Exception ignored" not in text, text[-3000:]
        # Its exit handlers ran to the end: it left the embedded PostgreSQL, which stopped.
        assert embedded_pg.status(data_dir).handles == []
        await wait_until(lambda: not postmaster.is_running() or postmaster.status() == "zombie", 10, "PostgreSQL")
    finally:
        server.stop()
