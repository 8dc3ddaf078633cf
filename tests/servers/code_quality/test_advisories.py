"""Vulnerable dependencies against an OSV export on disk or an OSV query endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from servers.code_quality.advisories import (
    OsvApi,
    OsvExport,
    check_advisories,
    dependency_files,
    read_dependencies,
    source_from,
)
from servers.code_quality.files import list_files

pytestmark = pytest.mark.anyio

RECORDS: list[dict[str, Any]] = [
    {
        "id": "GHSA-aaaa-0001",
        "aliases": ["CVE-2099-0001"],
        "summary": "Request smuggling in Web_Lib",
        "database_specific": {"severity": "HIGH"},
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "web-lib"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.4.1"}]}],
            }
        ],
    },
    {
        "id": "PYSEC-0002",
        "summary": "Only one bad release",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "tiny"}, "versions": ["0.9.0"]}],
    },
    {
        "id": "GHSA-npm-0003",
        "summary": "Prototype pollution",
        "affected": [
            {
                "package": {"ecosystem": "npm", "name": "leftpad"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"last_affected": "1.3.0"}]}],
            }
        ],
    },
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = (tmp_path / "proj").resolve()
    (root / "requirements").mkdir(parents=True)
    (root / "requirements.txt").write_text(
        "# app\nWeb_Lib==2.3.0 \\\n    --hash=sha256:abc\ntiny==1.0.0\nloose>=1.0\n-r requirements/dev.txt\n"
    )
    (root / "requirements" / "dev.txt").write_text(
        "tiny==0.9.0  # pinned old\ngit+https://example.invalid/x.git#egg=x\n"
    )
    (root / "poetry.lock").write_text('[[package]]\nname = "web-lib"\nversion = "2.4.1"\n')
    (root / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"": {}, "node_modules/leftpad": {"version": "1.3.0"}}})
    )
    return root


FILES = ["requirements.txt", "requirements/dev.txt", "poetry.lock", "package-lock.json", "src/app.py"]


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "osv"
    folder.mkdir()
    for record in RECORDS:
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    return folder


def test_dependencies_are_read_from_requirements_includes_and_lock_files_and_unpinned_ones_are_listed(
    project: Path,
) -> None:
    deps, unchecked = read_dependencies(project, FILES)
    assert sorted((d.ecosystem, d.name, d.version, d.file, d.line) for d in deps) == [
        ("PyPI", "Web_Lib", "2.3.0", "requirements.txt", 2),
        ("PyPI", "tiny", "0.9.0", "requirements/dev.txt", 1),
        ("PyPI", "tiny", "1.0.0", "requirements.txt", 4),
        ("PyPI", "web-lib", "2.4.1", "poetry.lock", 2),
        ("npm", "leftpad", "1.3.0", "package-lock.json", 1),
    ]
    assert sorted((u.name, u.reason.split(" (")[0]) for u in unchecked) == [
        ("loose", "not pinned to one version"),
        ("x", "installed from a URL, not an index version"),
    ]


async def test_local_osv_export_flags_exactly_the_affected_versions(project: Path, export_dir: Path) -> None:
    report = await check_advisories(project, FILES, OsvExport(export_dir))
    assert report.status == "ok"
    assert report.checked == 5
    found = [(v.id, v.package, v.version, v.file, v.line) for v in report.vulnerabilities]
    assert found == [
        ("GHSA-npm-0003", "leftpad", "1.3.0", "package-lock.json", 1),
        ("GHSA-aaaa-0001", "Web_Lib", "2.3.0", "requirements.txt", 2),
        ("PYSEC-0002", "tiny", "0.9.0", "requirements/dev.txt", 1),
    ]
    web = report.vulnerabilities[1]
    assert (web.severity, web.aliases, web.fixed_versions) == ("high", ["CVE-2099-0001"], ["2.4.1"])


@pytest.fixture
def export_zip(export_dir: Path, tmp_path: Path) -> Path:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in export_dir.iterdir():
            zf.write(path, path.name)
    return archive


async def test_a_zipped_export_gives_the_same_answer(project: Path, export_dir: Path, export_zip: Path) -> None:
    archive = export_zip
    folder = await check_advisories(project, FILES, OsvExport(export_dir))
    zipped = await check_advisories(project, FILES, source_from(str(archive)))
    assert zipped.vulnerabilities == folder.vulnerabilities


async def test_an_unreadable_or_empty_source_says_unreachable_never_no_vulnerabilities(
    project: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for source in (OsvExport(tmp_path / "missing"), OsvExport(empty)):
        report = await check_advisories(project, FILES, source)
        assert report.status == "unreachable"
        assert report.reason.startswith("no advisory source reachable")
        assert report.checked == 0
    none = await check_advisories(project, FILES, None)
    assert none.status == "no_source"


class _Osv(BaseHTTPRequestHandler):
    fail = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.fail:
            self.send_response(503)
            self.end_headers()
            return
        package = body["package"]
        hits = [
            r
            for r in RECORDS
            if any(
                a["package"]["name"].replace("_", "-").lower() == package["name"].replace("_", "-").lower()
                for a in r["affected"]
            )
            and not (package["name"].lower() == "web-lib" and body["version"] == "2.4.1")
            and not (package["name"] == "tiny" and body["version"] != "0.9.0")
        ]
        data = json.dumps({"vulns": hits}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def osv_server() -> Iterator[tuple[str, type[_Osv]]]:
    handler = type("Handler", (_Osv,), {"fail": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_osv_query_endpoint_on_localhost_reports_the_same_vulnerabilities(
    project: Path, export_dir: Path, osv_server: tuple[str, type[_Osv]]
) -> None:
    url, _ = osv_server
    source = source_from(url)
    assert isinstance(source, OsvApi)
    online = await check_advisories(project, FILES, source)
    offline = await check_advisories(project, FILES, OsvExport(export_dir))
    assert online.status == "ok"
    assert online.vulnerabilities == offline.vulnerabilities


async def test_an_osv_endpoint_that_fails_or_is_down_says_unreachable(
    project: Path, osv_server: tuple[str, type[_Osv]]
) -> None:
    url, handler = osv_server
    handler.fail = True
    failing = await check_advisories(project, FILES, OsvApi(url, timeout_s=5))
    assert (failing.status, failing.vulnerabilities) == ("unreachable", [])
    assert "HTTP 503" in failing.reason
    down = await check_advisories(project, FILES, OsvApi("http://127.0.0.1:9/v1/query", timeout_s=2))
    assert down.status == "unreachable"
    assert "could not be reached" in down.reason


def test_lock_files_skipped_for_code_analysis_are_still_dependency_files(sample_repo: Path) -> None:
    (sample_repo / "poetry.lock").write_text(
        "# This file is automatically @generated by Poetry and should not be changed by hand.\n"
        '[[package]]\nname = "tiny"\nversion = "0.9.0"\n'
    )
    (sample_repo / "requirements.txt").write_text("tiny==1.0.0\n")
    listing = list_files(sample_repo)
    assert {s.path: s.reason for s in listing.skipped} == {"poetry.lock": "generated"}
    assert dependency_files(listing) == ["poetry.lock", "requirements.txt"]
