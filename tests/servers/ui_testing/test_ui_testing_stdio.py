"""Two ui_testing processes spawned over stdio as Claude spawns them, capturing and comparing at once.

stdout must carry protocol messages only (Playwright's driver and Chromium must not write there),
both processes' rows must land, and no Chromium may outlive its process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import asyncpg
import psutil
import pytest

from common.testing import server_env
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio


def _rpc(id_: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


def _read(stream: IO[str], into: list[str], seen: set[int]) -> None:
    for line in stream:
        into.append(line)
        try:
            seen.add(int(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue


def _session(env: dict[str, str], calls: list[tuple[str, dict[str, Any]]], stderr_path: Path) -> list[dict[str, Any]]:
    """Run one server process through ``calls``; every stdout line parsed as JSON-RPC."""
    messages = [
        _rpc(
            1,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        ),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        *[_rpc(2 + i, "tools/call", {"name": t, "arguments": a}) for i, (t, a) in enumerate(calls)],
    ]
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servers", "serve", "ui_testing"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        lines: list[str] = []
        seen: set[int] = set()
        reader = threading.Thread(target=_read, args=(proc.stdout, lines, seen), daemon=True)
        reader.start()
        children: set[int] = set()
        for message in messages:
            proc.stdin.write(message + "\n")
            proc.stdin.flush()
            wanted = json.loads(message).get("id")
            deadline = time.monotonic() + 90
            while wanted is not None and wanted not in seen and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            children |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        proc.stdin.close()
        proc.wait(timeout=60)
        reader.join(timeout=10)
        proc.stdout.close()
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left behind: {alive}"
    parsed = [json.loads(line) for line in lines if line.strip()]  # a non-JSON line on stdout fails here
    assert all(m.get("jsonrpc") == "2.0" for m in parsed)
    return [m for m in parsed if m.get("id", 0) >= 2]


async def test_two_processes_capture_and_compare_at_once_over_stdio(
    site: Site, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
):
    url = site.put("/stdio", page("<h1>Over stdio</h1>"))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("capture_page", {"url": url, "page_key": "stdio", "viewport": "480x320"}),
        ("manage_baseline", {"action": "approve", "page_key": "stdio", "viewport": "480x320"}),
        ("capture_page", {"url": url, "page_key": "stdio", "viewport": "480x320", "compare": True}),
    ]
    env = server_env(database_url, redis_url, redis_prefix, tmp_path / "data")
    env["UI_TESTING_ALLOW_HOSTS"] = '["127.0.0.1/32"]'  # the test site runs on loopback
    results = await asyncio.gather(
        *(asyncio.to_thread(_session, env, calls, tmp_path / f"err{n}.txt") for n in range(2))
    )
    for answers in results:
        assert len(answers) == 3, answers
        assert all("error" not in a and not a["result"].get("isError") for a in answers), answers
        assert answers[2]["result"]["structuredContent"]["compare"]["passed"] is True
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ui_testing.captures WHERE page_key = 'stdio'") == 4
        assert await conn.fetchval("SELECT count(*) FROM ui_testing.runs WHERE page_key = 'stdio'") == 2
        current = "SELECT count(*) FROM ui_testing.baselines WHERE page_key = 'stdio' AND is_current"
        assert await conn.fetchval(current) == 1
    finally:
        await conn.close()
