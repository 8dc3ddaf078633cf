"""The code_quality tools through the SDK's in-process client: validation, error texts, result shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from common.testing import call_fails, call_ok
from servers.code_quality.server import build
from servers.code_quality.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(make_settings: Callable[..., Any], tmp_path: Path) -> Settings:
    s: Settings = make_settings(
        Settings, allowed_roots=[tmp_path], analyzers=["ruff"], embedding_model="hash-384", wait_s=120.0
    )
    return s


async def test_analyze_list_compare_gate_metrics_and_search_through_the_tools(
    settings: Settings, sample_repo: Path
) -> None:
    root = str(sample_repo)
    async with Client(build(settings)) as client:
        tools = await client.list_tools()
        size = len(json.dumps([t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools.tools]))
        assert size <= 8192
        started = await call_ok(client, "analyze_code", {"action": "start", "path": root})
        assert started["job"]["status"] == "done"
        run = started["run"]
        assert run["git_commit"]
        assert run["branch"] == "main"
        assert {o["analyzer"]: o["status"] for o in run["analyzers"]} == {"ruff": "ok"}

        page = await call_ok(client, "list_findings", {"path": root, "limit": 1})
        assert page["total"] > 1
        assert page["truncated"] is True
        first = page["items"][0]
        assert first["severity"] == "high"
        assert set(first) >= {"id", "fingerprint", "rule_id", "path", "line", "message", "status"}
        more = await call_ok(client, "list_findings", {"path": root, "cursor": page["next_cursor"]})
        assert first["id"] not in {f["id"] for f in more["items"]}

        assert (await call_ok(client, "list_findings", {"path": root, "file_prefix": "pkg/"}))["total"] == page["total"]
        # A prefix is literal text, not a LIKE pattern.
        assert (await call_ok(client, "list_findings", {"path": root, "file_prefix": "pk_/"}))["total"] == 0

        listed = await call_ok(client, "analyze_code", {"action": "list"})
        assert listed["jobs"]["total"] == 1
        status = await call_ok(client, "analyze_code", {"action": "status", "job_id": started["job"]["id"]})
        assert status["run"]["id"] == run["id"]

        triage = await call_ok(
            client,
            "set_finding_status",
            {"path": root, "fingerprints": [first["fingerprint"]], "status": "accepted", "reason": "known"},
        )
        assert triage["updated"] == [first["fingerprint"]]
        again = await call_ok(client, "analyze_code", {"action": "start", "path": root})
        check = await call_ok(client, "compare_runs", {"path": root, "fingerprint": first["fingerprint"]})
        assert check["check"]["status"] == "still_present"
        assert check["check"]["passed"] is False
        diff = await call_ok(client, "compare_runs", {"path": root, "kind": "unchanged"})
        assert diff["counts"]["new"] == 0
        assert diff["head_run"] == again["run"]["id"]

        gate = await call_ok(client, "quality_gate", {"action": "evaluate", "path": root})
        assert gate["passed"] is True
        metrics = await call_ok(client, "code_metrics", {"path": root, "trend": "findings", "hints": 3})
        assert metrics["trend"]["chart_path"].endswith(".png")
        assert len(metrics["hints"]) <= 3
        found = await call_ok(client, "list_findings", {"query": "subprocess shell true", "path": root})
        assert found["items"][0]["rule_id"] == "S602"
        assert found["items"][0]["score"] > 0

        summary = await client.read_resource(f"code-quality://runs/{run['id']}")
        assert json.loads(summary.contents[0].text)["id"] == run["id"]  # type: ignore[union-attr]
        one = await client.read_resource(f"code-quality://findings/{first['id']}")
        assert json.loads(one.contents[0].text)["status"] == "accepted"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        ("analyze_code", {"action": "start"}, "path is required"),
        ("analyze_code", {"action": "status"}, "job_id is required"),
        ("analyze_code", {"action": "status", "job_id": "nope"}, "not a job id"),
        ("analyze_code", {"action": "start", "path": "/etc"}, "outside the allowed folders"),
        ("analyze_code", {"action": "start", "path": "relative/missing"}, "does not exist"),
        ("analyze_code", {"action": "bogus"}, "action"),
        ("list_findings", {}, "give the analysed folder"),
        ("list_findings", {"run_id": "x"}, "not a run id"),
        ("list_findings", {"limit": 500}, "limit"),
        ("code_metrics", {"run_id": "00000000-0000-0000-0000-000000000000"}, "No run"),
        ("set_finding_status", {"path": "/etc", "fingerprints": [], "status": "accepted"}, "fingerprints"),
        ("set_finding_status", {"path": "x", "fingerprints": ["a"], "status": "fixed"}, "status"),
        ("quality_gate", {"action": "evaluate", "path": "/etc"}, "outside"),
        ("check_dependencies", {"path": "/etc"}, "outside"),
        ("analyze_code", {"action": "check"}, "at least one name and its code"),
        ("analyze_code", {"action": "check", "files": {"a.py": 1}}, "string"),
        ("analyze_code", {"action": "check", "files": {"/etc/passwd": "x"}}, "relative path"),
        ("analyze_code", {"action": "check", "files": {f"f{i}.py": "" for i in range(21)}}, "20"),
    ],
)
async def test_bad_arguments_get_clear_errors(
    settings: Settings, tool: str, args: dict[str, Any], expected: str
) -> None:
    async with Client(build(settings)) as client:
        text = await call_fails(client, tool, args, expected)
        assert len(text) <= 1024
        assert "Traceback" not in text


async def test_a_folder_never_analysed_is_not_found_with_what_to_do(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "fresh").mkdir()
    async with Client(build(settings)) as client:
        await call_fails(client, "list_findings", {"path": str(tmp_path / "fresh")}, "run analyze_code")
        await call_fails(client, "quality_gate", {"action": "set", "path": str(tmp_path / "fresh")}, "analyze_code")


async def test_dependencies_without_a_source_say_nothing_was_checked(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("requests==2.0.0\n")
    async with Client(build(settings)) as client:
        report = await call_ok(client, "check_dependencies", {"path": str(tmp_path)})
    assert report["status"] == "no_source"
    assert report["vulnerabilities"] == []
    assert "no advisory source" in report["reason"]


async def test_the_allow_list_narrows_the_tools(make_settings: Callable[..., Any]) -> None:
    async with Client(build(make_settings(Settings, tools=["list_findings"]))) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["list_findings"]


async def test_analyze_code_reports_progress_while_it_waits(settings: Settings, sample_repo: Path) -> None:
    seen: list[tuple[float, float | None]] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(build(settings)) as client:
        result = await client.call_tool(
            "analyze_code", {"action": "start", "path": str(sample_repo)}, progress_callback=progress
        )
    assert not result.is_error
    assert seen


async def test_coverage_through_the_tools_is_read_shown_least_covered_first_and_gated(
    settings: Settings, sample_repo: Path
) -> None:
    root = str(sample_repo)
    (sample_repo / "reports").mkdir()
    lcov = sample_repo / "reports" / "lcov.info"
    lcov.write_text("SF:pkg/app.py\nDA:1,1\nDA:5,0\nend_of_record\nSF:pkg/util.py\nDA:1,1\nend_of_record\n")
    async with Client(build(settings)) as client:
        await call_fails(
            client, "analyze_code", {"action": "start", "path": root, "coverage": "/etc/hostname"}, "outside"
        )
        started = await call_ok(client, "analyze_code", {"action": "start", "path": root, "coverage": str(lcov)})
        assert started["run"]["coverage"]["format"] == "lcov"
        metrics = await call_ok(client, "code_metrics", {"path": root, "sort": "coverage", "limit": 1})
        assert metrics["metrics"]["coverage"] == round(2 / 3, 4)
        assert metrics["coverage"]["report"] == str(lcov)
        assert [(f["path"], f["coverage"], f["uncovered"]) for f in metrics["files"]["items"]] == [
            ("pkg/app.py", 0.5, "5")
        ]
        await call_ok(client, "quality_gate", {"action": "set", "path": root, "thresholds": {"min_coverage": 0.8}})
        gate = await call_ok(client, "quality_gate", {"action": "evaluate", "path": root})
        assert gate["passed"] is False
        assert any("share of lines covered by tests: 0.6667" in r for r in gate["reasons"])


async def test_code_sent_as_text_is_checked_through_the_tool(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        out = await call_ok(client, "analyze_code", {"action": "check", "files": {"app.py": "import os\nexec(x)\n"}})
        assert out["job"] is None
        assert out["run"] is None
        check = out["check"]
        # Most severe first (an undefined name and exec are both high), then by place.
        assert [(f["rule_id"], f["severity"], f["line"]) for f in check["findings"]] == [
            ("F821", "high", 2),
            ("S102", "high", 2),
            ("F401", "low", 1),
        ]
        assert check["analyzers"][0]["analyzer"] == "ruff"
