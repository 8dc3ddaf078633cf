"""The ui_testing tools through the SDK's in-process client: argument checks, error texts, result shapes and sizes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from common.testing import call_fails, call_ok, create_database, drop_database
from servers.ui_testing.server import build
from servers.ui_testing.settings import Settings
from tests.servers.ui_testing.conftest import Site, page

pytestmark = pytest.mark.anyio

VIEW = "480x320"
LIMIT = 2048  # bytes of a default answer


@pytest.fixture(scope="module")
def settings(pg_cluster: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = create_database(pg_cluster)
    base = tmp_path_factory.mktemp("uitools")
    (base / "allowed").mkdir()
    try:
        yield Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=SecretStr(url),
            redis_url=SecretStr(redis_url),
            redis_prefix=f"t{base.name[-8:].replace('-', '')}",
            data_dir=base / "data",
            log_level="WARNING",
            embedding_model="hash-384",
            allowed_roots=[base / "allowed"],
            allow_hosts=["127.0.0.1/32"],  # the test site runs on loopback
        )
    finally:
        drop_database(pg_cluster, url)


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(build(settings), raise_exceptions=True) as c:
        yield c


async def call(client: Client, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await call_ok(client, tool, args)
    size = len(json.dumps(result))
    assert size <= LIMIT, f"{tool} answered {size} bytes"
    return result


async def test_capture_compare_approve_through_the_tools(client: Client, site: Site):
    site.put("/t", page("<h1>Tools</h1><p id='w'>one</p>"))
    shot = await call(client, "capture_page", {"url": site.base + "/t", "page_key": "t", "viewport": VIEW})
    assert set(shot) >= {"id", "path", "sha256", "width", "height", "bytes"}
    await call_fails(
        client,
        "capture_page",
        {"url": site.base + "/t", "page_key": "t", "viewport": VIEW, "compare": True},
        "No baseline",
        "manage_baseline",
    )
    await call(client, "manage_baseline", {"action": "set", "capture_id": shot["id"]})
    site.put("/t", page("<h1>Tools</h1><p id='w'>two</p>"))
    changed = await call(
        client, "capture_page", {"url": site.base + "/t", "page_key": "t", "viewport": VIEW, "compare": True}
    )
    assert changed["compare"]["passed"] is False
    assert changed["compare"]["boxes"]
    again = await call(client, "manage_baseline", {"action": "compare", "page_key": "t", "viewport": VIEW})
    assert again["compare"]["passed"] is False
    tolerant = await call(
        client, "manage_baseline", {"action": "compare", "capture_id": changed["id"], "max_ratio": 0.5}
    )
    assert tolerant["compare"]["passed"] is True
    await call(client, "manage_baseline", {"action": "approve", "page_key": "t", "viewport": VIEW})
    history = await call(client, "manage_baseline", {"action": "history", "page_key": "t"})
    assert [b["current"] for b in history["baselines"]] == [True, False]

    runs = await call(client, "list_runs", {"kind": "compare", "key": "t"})
    assert runs["total"] == 3
    one = await call(client, "list_runs", {"run_id": runs["items"][0]["id"]})
    assert one["run"]["kind"] == "compare"
    assert "changed_ratio" in one["run"]["details"]

    resource = await client.read_resource(f"ui://runs/{runs['items'][0]['id']}")
    assert json.loads(resource.contents[0].text)["kind"] == "compare"  # type: ignore[union-attr]
    baseline = await client.read_resource("ui://baselines/t")
    assert json.loads(baseline.contents[0].text)["baselines"][0]["current"] is True  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("capture_page", {"url": "http://127.0.0.1:9/", "viewport": "12x12"}, "Invalid viewport"),
        ("capture_page", {"url": "ftp://example.org/x"}, "http(s):// URL"),
        ("capture_page", {"url": "/etc/passwd"}, "outside the allowed folders"),
        ("capture_page", {"url": ""}, "url"),
        ("capture_page", {"url": "http://127.0.0.1:9/", "mask_rects": [[1, 2, 3]]}, "mask_rects"),
        ("manage_baseline", {"action": "delete"}, "needs page_key"),
        ("manage_baseline", {"action": "set", "capture_id": 424242}, "No capture 424242"),
        ("manage_baseline", {"action": "list", "limit": 0}, "limit"),
        ("manage_baseline", {"action": "list", "cursor": "bogus"}, "cursor"),
        ("audit_page", {"url": "http://127.0.0.1:9/", "levels": ["wcag9"]}, "Unknown audit level"),
        ("manage_check", {"action": "save", "name": "x"}, "needs scenario"),
        ("manage_check", {"action": "get"}, "needs the check's name"),
        ("manage_check", {"action": "save", "name": "x", "scenario": {"steps": []}}, "Invalid scenario"),
        ("run_check", {"name": "missing"}, "No check named 'missing'"),
        ("list_runs", {"run_id": 987654}, "No run 987654"),
        ("list_runs", {"kind": "bogus"}, "kind"),
        ("list_runs", {"status": "passing"}, "status"),
    ],
)
async def test_bad_arguments_get_errors_that_say_what_to_fix(
    client: Client, tool: str, args: dict[str, Any], expected: str
):
    text = await call_fails(client, tool, args, expected)
    assert len(text) < 1024
    assert "Traceback" not in text


async def test_checks_and_the_report_through_the_tools(client: Client, site: Site):
    url = site.put("/c", page("<h1 id='t'>Hello</h1>"))
    scenario = {
        "viewport": {"width": 480, "height": 320},
        "steps": [
            {"action": "goto", "url": url},
            {"action": "assert_text", "selector": "#t", "text": "Hello"},
            {"action": "capture", "name": "hello"},
        ],
    }
    saved = await call(client, "manage_check", {"action": "save", "name": "hello", "scenario": scenario})
    assert saved["checks"][0]["steps"] == 3
    run = await call(client, "run_check", {"name": "hello"})
    assert run["status"] == "passed"
    assert [s["status"] for s in run["steps"]] == ["passed"] * 3
    got = await call(client, "manage_check", {"action": "get", "name": "hello"})
    assert got["scenario"]["steps"][0]["action"] == "goto"
    assert got["checks"][0]["trend"] == "P"
    audit = await call(client, "audit_page", {"url": url, "page_key": "c", "viewport": VIEW})
    assert audit["passed"] is True
    report = await call(client, "ui_report", {})
    assert any(line.endswith("hello: P") for line in report["checks"])
    assert "Chromium" in report["browser"]
    deleted = await call(client, "manage_check", {"action": "delete", "name": "hello"})
    assert "runs are kept" in deleted["message"]
    listed = await call(client, "list_runs", {"key": "hello"})
    assert listed["total"] == 1
