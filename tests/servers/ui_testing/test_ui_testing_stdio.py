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


def _session(
    env: dict[str, str], calls: list[tuple[str, dict[str, Any]]], stderr_path: Path, sizes: list[int] | None = None
) -> list[dict[str, Any]]:
    """Run one server process through ``calls``; every stdout line parsed as JSON-RPC (and, into ``sizes``,
    the bytes of each answer's line as the server wrote it)."""
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
    if sizes is not None:
        sizes.extend(
            len(line.rstrip("\n").encode()) for line in lines if line.strip() and json.loads(line).get("id", 0) >= 2
        )
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


#: Every default answer, as the client receives it (the whole JSON-RPC line), stays within this many bytes.
MAX_SENT = 2048


def _checked_sizes(answers: list[dict[str, Any]], lines: list[int], calls: list[tuple[str, dict[str, Any]]]) -> None:
    """Each answer succeeded, fits in MAX_SENT bytes as sent, and its text is its structured content as JSON."""
    assert len(answers) == len(calls), answers
    for (tool, args), answer, size in zip(calls, answers, lines, strict=True):
        assert "error" not in answer, (tool, args, answer)
        assert not answer["result"].get("isError"), (tool, args, answer)
        assert size <= MAX_SENT, (tool, args, size)
        result = answer["result"]
        (text,) = [c["text"] for c in result["content"] if c["type"] == "text"]
        structured = {k: v for k, v in result["structuredContent"].items() if v is not None}
        assert json.loads(text).keys() == structured.keys(), (tool, text)


async def test_every_default_answer_fits_in_2_kb_as_sent_over_stdio(
    site: Site, database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
):
    # A longish page key, a page with many violations and a failing check with console errors make the
    # default answers about as large as they get.
    key = "checkout/confirmation-page-" + "k" * 34
    base = site.put("/sizes", page("<h1>Sizes</h1>" + "<p>Order pending.</p>" * 20))
    changed = site.put("/sizes2", page("<h1>Sizes</h1>" + "<p>Order shipped!</p>" * 20))
    bad = page(
        "".join(f"<img src='data:,' id='picture-without-alt-{i}'><input id='unlabelled-field-{i}'>" for i in range(8))
        + "<p style='color:#bbb;background:#fff'>faint</p>",
        lang=None,
    )
    worse = bad.replace("faint</p>", "faint</p><button></button><a href='/x'></a><select></select>")
    audited, audited_worse = site.put("/bad", bad), site.put("/worse", worse)
    script = "<script>console.error('broken widget ' + 'x'.repeat(200))</script>"
    checked = site.put("/checked", page("<h1>Checked</h1><input id='name'>" + script))
    steps = [
        {"action": "goto", "url": checked},
        {"action": "assert_visible", "selector": "#name"},
        {"action": "fill", "selector": "#name", "value": "Ada"},
        {"action": "press", "selector": "#name", "key": "End"},
        {"action": "wait_for", "selector": "h1"},
        {"action": "assert_text", "selector": "h1", "text": "Checked"},
        {"action": "capture", "name": "before the failing step"},
        {"action": "assert_visible", "selector": "#name"},
        {"action": "assert_text", "selector": "h1", "text": "Something else entirely " + "y" * 150},
        {"action": "assert_no_console_errors"},
    ]
    vp = {"viewport": "480x320"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("capture_page", {"url": base, "page_key": key, **vp}),
        ("manage_baseline", {"action": "set", "page_key": key, **vp}),
        ("capture_page", {"url": changed, "page_key": key, "compare": True, **vp}),
        ("manage_baseline", {"action": "compare", "page_key": key, **vp}),
        ("capture_page", {"url": base, "page_key": key + "-b", "full_page": True, **vp}),
        ("manage_baseline", {"action": "approve", "page_key": key + "-b", **vp}),
        ("capture_page", {"url": changed, "page_key": key + "-b", "full_page": True, "compare": True, **vp}),
        ("audit_page", {"url": audited, "page_key": key}),
        ("audit_page", {"url": audited_worse, "page_key": key}),
        ("audit_page", {"url": audited, "page_key": key}),
        ("manage_check", {"action": "save", "name": "sizes", "scenario": {"steps": steps}}),
        ("run_check", {"name": "sizes"}),
        ("run_check", {"name": "sizes"}),
        ("manage_check", {"action": "list"}),
        ("manage_check", {"action": "get", "name": "sizes"}),
        ("manage_baseline", {"action": "list"}),
        ("manage_baseline", {"action": "history", "page_key": key, **vp}),
        ("list_runs", {}),
        ("list_runs", {"kind": "check"}),
        ("ui_report", {}),
    ]
    env = server_env(database_url, redis_url, redis_prefix, tmp_path / "data")
    env["UI_TESTING_ALLOW_HOSTS"] = '["127.0.0.1/32"]'  # the test site runs on loopback
    answers, sizes = await asyncio.to_thread(_sized_session, env, calls, tmp_path / "err.txt")
    _checked_sizes(answers, sizes, calls)
    assert answers[11]["result"]["structuredContent"]["status"] == "failed"  # the largest kind of run answer
    assert answers[17]["result"]["structuredContent"]["total"] == 8
    run_id = answers[12]["result"]["structuredContent"]["id"]
    more: list[tuple[str, dict[str, Any]]] = [("list_runs", {"run_id": run_id})]
    answers, sizes = await asyncio.to_thread(_sized_session, env, more, tmp_path / "err2.txt")
    _checked_sizes(answers, sizes, more)
    assert answers[0]["result"]["structuredContent"]["run"]["console_errors_total"] >= 1


def _sized_session(
    env: dict[str, str], calls: list[tuple[str, dict[str, Any]]], stderr_path: Path
) -> tuple[list[dict[str, Any]], list[int]]:
    """The answers of ``calls`` in one process, and each answer's size in bytes as it came off stdout."""
    sizes: list[int] = []
    answers = _session(env, calls, stderr_path, sizes)
    return answers, sizes
