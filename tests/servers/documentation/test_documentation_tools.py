"""Documentation tools through the SDK's in-process client, on real PostgreSQL and Redis.

Behaviour tests use the deterministic hash embedder; meaning-dependent checks live in test_recall.py.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client

from common.embeddings import HashEmbedder, store_model
from common.runtime import open_deps, resolve_admin_url
from common.testing import call_fails as fails
from common.testing import call_ok as call
from common.testing import wait_until
from servers.documentation import ingest, mermaid
from servers.documentation.server import build
from servers.documentation.service import DocumentationService
from servers.documentation.settings import Settings

pytestmark = pytest.mark.anyio


async def sql(settings: Settings, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(resolve_admin_url(settings))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def scalar(settings: Settings, query: str, *args: Any) -> Any:
    return (await sql(settings, query, *args))[0][0]


def write_tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.md").write_text("# Alpha\n\n## Setup\n\nInstall the alpha package.\n\n```sh\npip install alpha\n```\n")
    (root / "b.rst").write_text("Beta\n====\n\nBeta explains the retry policy.\n\nUsage\n-----\n\nCall beta().\n")
    (root / "c.txt").write_text("Gamma is a plain text note about caching.\n\nSecond paragraph.\n")
    (root / "d.html").write_text(
        "<html><title>Delta</title><body><h1>Delta</h1><p>Delta page about queues.</p></body></html>"
    )
    (root / "e.py").write_text(
        '"""Epsilon module: rate limiting."""\n\ndef limit(n: int) -> None:\n    """Limit calls to n."""\n'
    )
    (root / "sub" / "f.md").write_text("# Phi\n\nNested document about logging.\n")


async def start(client: Client, root: Path, **extra: Any) -> dict[str, Any]:
    out = await call(
        client, "ingest_folder", {"action": "start", "project": "p", "version": "1", "path": str(root), **extra}
    )
    job: dict[str, Any] = out["jobs"][0]
    return job


async def chunk_ids(settings: Settings) -> dict[str, list[int]]:
    rows = await sql(
        settings,
        "SELECT d.path, array_agg(c.id ORDER BY c.id) AS ids FROM documentation.documents d "
        "JOIN documentation.chunks c ON c.document_id = d.id GROUP BY d.path",
    )
    return {r["path"]: list(r["ids"]) for r in rows}


async def duplicates(settings: Settings) -> int:
    return int(
        await scalar(
            settings,
            "SELECT count(*) FROM (SELECT d.version_id, d.path, c.ordinal FROM documentation.chunks c "
            "JOIN documentation.documents d ON d.id = c.document_id GROUP BY 1, 2, 3 HAVING count(*) > 1) x",
        )
    )


async def test_incremental_reingest_touches_only_edited_added_and_deleted_files(
    settings: Settings, docs_root: Path
) -> None:
    write_tree(docs_root)
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p"})
        seen: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        result = await client.call_tool(
            "ingest_folder",
            {"action": "start", "project": "p", "version": "1", "path": str(docs_root)},
            progress_callback=on_progress,
        )
        assert result.structured_content is not None
        first = result.structured_content["jobs"][0]
        assert first["status"] == "done"
        assert first["counts"]["added"] == 6
        assert first["counts"]["chunks"] >= 6
        assert seen, "progress notifications must reach the client"
        before = await chunk_ids(settings)

        (docs_root / "a.md").write_text("# Alpha\n\n## Setup\n\nInstall alpha with uv now.\n")
        (docs_root / "g.md").write_text("# Gamma two\n\nA new page.\n")
        (docs_root / "c.txt").unlink()
        second = await start(client, docs_root)
        counts = second["counts"]
        assert (counts["added"], counts["updated"], counts["deleted"], counts["unchanged"]) == (1, 1, 1, 4)
        after = await chunk_ids(settings)
        assert set(after) == {"a.md", "b.rst", "d.html", "e.py", "sub/f.md", "g.md"}
        for path in ("b.rst", "d.html", "e.py", "sub/f.md"):
            assert after[path] == before[path], f"{path} was rewritten although it did not change"
        assert after["a.md"] != before["a.md"]

        third = await start(client, docs_root)
        assert third["counts"]["unchanged"] == 6
        assert third["counts"]["chunks"] == 0
        assert await duplicates(settings) == 0

        found = await call(client, "search_docs", {"query": "alpha uv", "project": "p", "limit": 2})
        assert found["hits"][0]["citation"] == "p@1:a.md#setup"
        listed = await call(client, "ingest_folder", {"action": "list", "project": "p"})
        assert listed["total"] == 3


async def test_bad_input_gives_clear_errors_and_writes_nothing(
    settings: Settings, docs_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nDo not read.\n")
    (docs_root / "ok.md").write_text("# Fine\n\nA normal page.\n")
    (docs_root / "escape.md").symlink_to(outside / "secret.md")
    (docs_root / "escdir").symlink_to(outside)
    (docs_root / "blob.txt").write_bytes(b"abc\x00\x01\x02" * 100)
    (docs_root / "huge.md").write_text("# Huge\n\n" + "x" * (settings.max_file_bytes + 10))
    (docs_root / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (docs_root / "bad.py").write_text("def broken(:\n")
    async with Client(build(settings)) as client:
        await fails(
            client,
            "ingest_folder",
            {"action": "start", "project": "nope", "version": "1", "path": str(docs_root)},
            "No project 'nope'",
        )
        await call(client, "manage_project", {"action": "create", "project": "p"})
        for path, *expected in [
            (str(outside), "outside the allowed folders", "DOCUMENTATION_ALLOWED_ROOTS"),
            (str(docs_root / "escdir"), "after resolving symbolic links"),
            ("relative/dir", "must be absolute"),
            (str(docs_root / "missing"), "does not exist"),
        ]:
            start_args = {"action": "start", "project": "p", "version": "1", "path": path}
            await fails(client, "ingest_folder", start_args, *expected)
        await fails(
            client,
            "import_api_spec",
            {"project": "p", "version": "1", "path": str(outside / "secret.md")},
            "outside the allowed folders",
        )
        await fails(client, "search_docs", {"query": "x", "project": "ghost"}, "No project 'ghost'")
        await fails(client, "read_document", {"project": "p", "version": "9", "path": "a.md"}, "has no version '9'")
        await fails(
            client,
            "ingest_text",
            {"project": "ghost", "version": "1", "title": "t", "content": "c"},
            "No project 'ghost'",
        )
        await fails(
            client, "ingest_folder", {"action": "status", "job_id": "00000000-0000-0000-0000-000000000000"}, "No job"
        )
        await fails(client, "search_docs", {"query": "x", "limit": 500}, "limit")
        assert await scalar(settings, "SELECT count(*) FROM documentation.jobs") == 0
        assert await scalar(settings, "SELECT count(*) FROM documentation.versions") == 0

        job = await start(client, docs_root)
        assert job["status"] == "done"
        reasons = {e["path"]: e["reason"] for e in job["errors"]}
        assert reasons["escape.md"] == "symlink"
        assert reasons["escdir"] == "symlink"
        assert reasons["blob.txt"].startswith("binary file")
        assert reasons["huge.md"].startswith("too large")
        assert reasons["latin.txt"].startswith("not UTF-8")
        assert reasons["bad.py"].startswith("Python syntax error")
        assert job["errors_total"] == len(reasons) == 6
        assert job["counts"]["added"] == 1
        paths = [r["path"] for r in await sql(settings, "SELECT path FROM documentation.documents")]
        assert paths == ["ok.md"]


async def test_file_access_is_off_until_roots_are_configured(make_settings: Callable[..., Any], tmp_path: Path) -> None:
    settings = make_settings(Settings, embedding_model="hash-384")
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p"})
        await fails(
            client,
            "ingest_folder",
            {"action": "start", "project": "p", "version": "1", "path": str(tmp_path)},
            "File access is disabled",
            "DOCUMENTATION_ALLOWED_ROOTS",
        )


async def test_an_interrupted_job_is_marked_at_start_up_and_resumes_without_duplicates(
    settings: Settings, docs_root: Path
) -> None:
    for i in range(30):
        (docs_root / f"page{i:02}.md").write_text(f"# Page {i}\n\n## Part\n\nText of page {i}.\n")
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p"})
        job = await start(client, docs_root)
        full = await chunk_ids(settings)
    # Make it look as if the process died mid-job: a third of the files never written, status left running.
    await sql(settings, "DELETE FROM documentation.documents WHERE path >= 'page21'")
    await sql(
        settings,
        "UPDATE documentation.jobs SET status = 'running', finished_at = NULL, heartbeat_at = now() - interval '1 hour'",
    )
    async with Client(build(settings)) as client:
        status = await call(client, "ingest_folder", {"action": "status", "job_id": job["id"]})
        assert status["jobs"][0]["status"] == "interrupted"
        resumed = (await call(client, "ingest_folder", {"action": "resume", "job_id": job["id"]}))["jobs"][0]
        assert resumed["status"] == "done"
        assert resumed["attempts"] == 2
        assert resumed["counts"]["added"] == 9
        assert resumed["counts"]["unchanged"] == 21
        await fails(client, "ingest_folder", {"action": "resume", "job_id": job["id"]}, "only interrupted")
    after = await chunk_ids(settings)
    assert {p: len(ids) for p, ids in after.items()} == {p: len(ids) for p, ids in full.items()}
    assert await duplicates(settings) == 0


async def test_cancel_stops_a_running_job_and_resume_finishes_it(settings: Settings, docs_root: Path) -> None:
    for i in range(400):
        (docs_root / f"n{i:03}.md").write_text(
            f"# Note {i}\n\n" + "\n\n".join(f"Paragraph {j} of {i}." for j in range(6))
        )
    fast = settings.model_copy(update={"heartbeat_s": 0.01})
    async with Client(build(fast)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p"})
        outcome: dict[str, Any] = {}

        async def run() -> None:
            outcome.update(await start(client, docs_root))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(30):
                while True:
                    rows = await sql(fast, "SELECT id::text, (counts->>'files_done')::int AS n FROM documentation.jobs")
                    if rows and rows[0]["n"] and rows[0]["n"] > 5:
                        break
                    await anyio.sleep(0.01)
            await call(client, "ingest_folder", {"action": "cancel", "job_id": rows[0]["id"]})
        assert outcome["status"] == "cancelled"
        assert outcome["counts"]["files_done"] < 400
        resumed = (await call(client, "ingest_folder", {"action": "resume", "job_id": outcome["id"]}))["jobs"][0]
        assert resumed["status"] == "done"
        assert await scalar(fast, "SELECT count(*) FROM documentation.documents") == 400
        assert await duplicates(fast) == 0


OPENAPI3 = {
    "openapi": "3.0.3",
    "info": {"title": "Petstore", "version": "1.0"},
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "summary": "List pets",
                "tags": ["pets"],
                "parameters": [{"$ref": "#/components/parameters/Limit"}],
                "responses": {
                    "200": {
                        "description": "Pets",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}
                            }
                        },
                    }
                },
            },
            "post": {
                "operationId": "createPet",
                "summary": "Create a pet",
                "tags": ["pets"],
                "requestBody": {"$ref": "#/components/requestBodies/NewPet"},
                "responses": {"201": {"description": "Created"}},
            },
        },
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "operationId": "getPet",
                "summary": "Get one pet",
                "tags": ["pets"],
                "responses": {"200": {"$ref": "#/components/responses/OnePet"}},
            },
            "delete": {
                "operationId": "deletePet",
                "summary": "Delete a pet",
                "tags": ["admin"],
                "responses": {"204": {"description": "Gone"}},
            },
        },
    },
    "components": {
        "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}},
        "requestBodies": {
            "NewPet": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
            }
        },
        "responses": {
            "OnePet": {
                "description": "A pet",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
            }
        },
        "schemas": {
            "Pet": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "friends": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}},
                },
            },
            "Owner": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
        },
    },
}

SWAGGER2 = """
swagger: "2.0"
info: {title: Store, version: "2"}
basePath: /v2
consumes: [application/json]
produces: [application/json]
paths:
  /orders:
    post:
      operationId: placeOrder
      summary: Place an order for a pet
      tags: [store]
      parameters:
        - in: body
          name: body
          required: true
          schema: {$ref: "#/definitions/Order"}
      responses:
        "200": {description: ok, schema: {$ref: "#/definitions/Order"}}
  /orders/{orderId}:
    get:
      operationId: getOrder
      summary: Find an order by id
      tags: [store]
      parameters:
        - {in: path, name: orderId, required: true, type: integer, format: int64}
      responses:
        "200": {description: ok, schema: {$ref: "#/definitions/Order"}}
definitions:
  Order:
    type: object
    properties:
      id: {type: integer}
      quantity: {type: integer}
      status: {type: string, enum: [placed, delivered]}
"""


async def test_openapi_and_swagger_specs_import_with_resolved_refs_and_diffs(
    settings: Settings, docs_root: Path
) -> None:
    spec_file = docs_root / "petstore.json"
    spec_file.write_text(json.dumps(OPENAPI3))
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "pets"})
        imported = await call(client, "import_api_spec", {"project": "pets", "version": "1", "path": str(spec_file)})
        assert (imported["spec_version"], imported["endpoints"], imported["compared_to"]) == ("3.0.3", 4, None)
        one = (await call(client, "find_endpoints", {"project": "pets", "version": "1", "operation_id": "getPet"}))[
            "endpoints"
        ][0]
        assert one["parameters"] == [{"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}]
        pet = one["responses"]["200"]["content"]["application/json"]
        assert pet["properties"]["owner"]["properties"]["email"]["format"] == "email"
        assert pet["properties"]["friends"]["items"] == {"$ref": "#/components/schemas/Pet", "x-circular": True}
        created = (
            await call(client, "find_endpoints", {"project": "pets", "version": "1", "method": "post", "path": "/pets"})
        )["endpoints"][0]
        assert created["request_body"]["required"] is True
        listing = (
            await call(client, "find_endpoints", {"project": "pets", "version": "1", "operation_id": "listPets"})
        )["endpoints"][0]
        assert listing["parameters"][0]["schema"]["maximum"] == 100
        admin = await call(client, "find_endpoints", {"project": "pets", "tag": "admin"})
        assert [e["operation_id"] for e in admin["endpoints"]] == ["deletePet"]
        found = await call(client, "find_endpoints", {"query": "delete a pet", "project": "pets", "limit": 1})
        assert found["endpoints"][0]["operation_id"] == "deletePet"

        v2 = json.loads(json.dumps(OPENAPI3))
        v2["info"]["version"] = "2.0"
        del v2["paths"]["/pets/{petId}"]["delete"]
        v2["paths"]["/pets"]["get"]["summary"] = "List all pets, paged"
        v2["paths"]["/owners"] = {"get": {"operationId": "listOwners", "responses": {"200": {"description": "ok"}}}}
        diff = await call(client, "import_api_spec", {"project": "pets", "version": "2", "content": json.dumps(v2)})
        assert diff["compared_to"] == "pets@1"
        assert (diff["added"], diff["removed"], diff["changed"]) == (
            ["GET /owners"],
            ["DELETE /pets/{petId}"],
            ["GET /pets"],
        )

        swagger = await call(client, "import_api_spec", {"project": "pets", "version": "store", "content": SWAGGER2})
        assert (swagger["spec_version"], swagger["endpoints"]) == ("2.0", 2)
        order = (
            await call(client, "find_endpoints", {"project": "pets", "version": "store", "operation_id": "placeOrder"})
        )["endpoints"][0]
        assert order["request_body"]["content"]["application/json"]["properties"]["status"]["enum"] == [
            "placed",
            "delivered",
        ]
        get_order = (
            await call(
                client,
                "find_endpoints",
                {"project": "pets", "version": "store", "method": "GET", "path": "/orders/{orderId}"},
            )
        )["endpoints"][0]
        assert get_order["parameters"][0]["schema"] == {"type": "integer", "format": "int64"}

        specs_before = await scalar(settings, "SELECT count(*) FROM documentation.specs")
        bad = json.loads(json.dumps(OPENAPI3))
        del bad["info"]["version"]
        await fails(
            client,
            "import_api_spec",
            {"project": "pets", "version": "3", "content": json.dumps(bad)},
            "Invalid OpenAPI 3.0.3 spec",
            "'version' is a required property",
        )
        await fails(
            client,
            "import_api_spec",
            {"project": "pets", "version": "3", "content": "just: [text"},
            "neither valid JSON nor valid YAML",
        )
        await fails(
            client,
            "import_api_spec",
            {"project": "pets", "version": "3", "content": '{"openapi": "9"}'},
            "Not an OpenAPI 3.x or Swagger 2.0",
        )
        assert await scalar(settings, "SELECT count(*) FROM documentation.specs") == specs_before
        assert await scalar(settings, "SELECT count(*) FROM documentation.versions WHERE version = '3'") == 0


async def test_generated_reference_and_diagrams_are_checked_stored_and_listed(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "pets"})
        await fails(
            client, "generate_content", {"kind": "api_reference", "project": "pets", "version": "1"}, "has no version"
        )
        await call(client, "import_api_spec", {"project": "pets", "version": "1", "content": json.dumps(OPENAPI3)})
        for kind in ("api_reference", "api_overview", "schema_diagram"):
            made = (await call(client, "generate_content", {"kind": kind, "project": "pets", "version": "1"}))["items"][
                0
            ]
            assert made["spec_id"]
            assert made["path"] == f"_generated/{kind}.md"
        listed = await call(client, "generate_content", {"kind": "list", "project": "pets"})
        assert sorted(i["kind"] for i in listed["items"]) == ["api_overview", "api_reference", "schema_diagram"]
        ref = await call(
            client,
            "read_document",
            {"project": "pets", "version": "1", "path": "_generated/api_reference.md", "heading": "GET /pets/{petId}"},
        )
        assert "Get one pet" in ref["text"]
        diagram = await call(
            client, "read_document", {"project": "pets", "version": "1", "path": "_generated/schema_diagram.md"}
        )
        source = diagram["text"].split("```mermaid\n", 1)[1].split("```", 1)[0]
        assert mermaid.check(source) == []
        assert 'Pet "1" --> "*" Pet : friends' in source
        provenance = await sql(settings, "SELECT provenance FROM documentation.generated")
        assert all(json.loads(r["provenance"])["spec_title"] == "Petstore" for r in provenance)
        hits = await call(client, "search_docs", {"query": "Delete a pet", "project": "pets", "limit": 3})
        assert any(h["path"] == "_generated/api_reference.md" for h in hits["hits"])


async def test_read_pages_sections_toc_and_resources(settings: Settings) -> None:
    body = (
        "# Manual\n\n## Intro\n\n" + "Intro text. " * 50 + "\n\n## Usage\n\nUse it well.\n\n### Flags\n\nFlag text.\n"
    )
    small = settings.model_copy(update={"read_max_chars": 500})
    async with Client(build(small)) as client:
        await call(client, "manage_project", {"action": "create", "project": "m", "version": "1"})
        saved = await call(client, "ingest_text", {"project": "m", "version": "1", "title": "Manual", "content": body})
        assert saved["citation"] == "m@1:manual.md"
        page1 = await call(client, "read_document", {"document_id": saved["document_id"], "toc": True})
        assert len(page1["text"]) == 500
        assert page1["next_offset"] == 500
        assert [s["anchor"] for s in page1["toc"]] == ["manual", "intro", "usage", "flags"]
        page2 = await call(
            client, "read_document", {"document_id": saved["document_id"], "offset": page1["next_offset"]}
        )
        assert page1["text"] + page2["text"] == body[: len(page1["text"]) + len(page2["text"])]
        usage = await call(
            client, "read_document", {"project": "m", "version": "1", "path": "manual.md", "heading": "usage"}
        )
        assert usage["text"].startswith("## Usage")
        assert "Flag text." in usage["text"]
        assert "Intro text" not in usage["text"]
        assert usage["citation"] == "m@1:manual.md#usage"
        assert usage["next_offset"] is None
        await fails(
            client,
            "read_document",
            {"document_id": saved["document_id"], "heading": "Nope"},
            "Sections: Manual, Intro, Usage, Flags",
        )
        docs = await call(client, "read_document", {"project": "m", "version": "1"})
        assert [d["path"] for d in docs["documents"]] == ["manual.md"]
        resource = await client.read_resource(f"docs://documents/{saved['document_id']}")
        assert resource.contents[0].text == body[:500]  # type: ignore[union-attr]
        toc = await client.read_resource("docs://projects/m/1/toc")
        assert json.loads(toc.contents[0].text)[0]["headings"][2] == [2, "Usage", "usage"]  # type: ignore[union-attr]
        described = (await call(client, "manage_project", {"action": "describe", "project": "m"}))["projects"][0]
        assert described["versions"][0]["documents"] == 1
        assert described["versions"][0]["models"] == [ingest.model_label("hash-384")]
        await call(client, "manage_project", {"action": "delete", "project": "m", "version": "1"})
        assert await scalar(small, "SELECT count(*) FROM documentation.chunks") == 0
        await call(client, "manage_project", {"action": "delete", "project": "m"})
        await fails(client, "manage_project", {"action": "describe", "project": "m"}, "No project 'm'")


async def test_a_process_with_another_model_searches_with_the_store_model_and_a_switch_moves_every_process(
    settings: Settings, make_settings: Callable[..., Any], docs_root: Path
) -> None:
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p", "version": "1"})
        await call(
            client,
            "ingest_text",
            {
                "project": "p",
                "version": "1",
                "title": "Retry",
                "content": "# Retry\n\nRetries use exponential backoff with jitter.\n",
            },
        )
        await call(client, "import_api_spec", {"project": "p", "version": "1", "content": json.dumps(OPENAPI3)})
    # A second "model" of the same dimension (common.embeddings: the hash embedder's variant).
    other = make_settings(Settings, embedding_model="hash-384:b", allowed_roots=[docs_root])
    async with Client(build(settings)) as a, Client(build(other)) as b:
        described = (await call(b, "manage_project", {"action": "describe", "project": "p"}))["projects"][0]
        assert described["versions"][0]["needs_reembed"] is False
        assert described["versions"][0]["models"] == [ingest.model_label("hash-384")]
        hits = await call(b, "search_docs", {"query": "exponential backoff jitter", "project": "p"})
        assert hits["hits"][0]["citation"] == "p@1:retry.md#retry"
        assert hits["notice"] is None

        # What `mcp-suite reembed documentation --model hash-384:b` runs.
        async with open_deps("documentation", other) as deps, DocumentationService.open(deps, other) as svc:
            done = await store_model.switch(deps.db, "documentation", HashEmbedder(384, "b"), svc.reembed_step)
        assert (done.previous, done.model, done.reembedded) == ("hash-384", "hash-384:b", 5)  # 1 chunk, 4 endpoints

        async def follows(client: Client) -> bool:
            # Until a process re-reads the store's model (RECHECK_S), its search refuses with a message.
            result = await client.call_tool("search_docs", {"query": "exponential backoff jitter", "project": "p"})
            if result.is_error:
                return False
            found = result.structured_content or {}
            desc = await call(client, "manage_project", {"action": "describe", "project": "p"})
            version = desc["projects"][0]["versions"][0]
            return (
                bool(found["hits"])
                and found["hits"][0]["citation"] == "p@1:retry.md#retry"
                and found["notice"] is None
                and version["models"] == [ingest.model_label("hash-384:b")]
                and version["needs_reembed"] is False
            )

        for client in (a, b):
            await wait_until(functools.partial(follows, client), timeout_s=15, what="the switch reaching the process")


async def test_rows_left_with_another_model_are_flagged_and_reembed_brings_them_to_the_store_model(
    settings: Settings,
) -> None:
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p", "version": "1"})
        await call(client, "import_api_spec", {"project": "p", "version": "1", "content": json.dumps(OPENAPI3)})
    # e.g. a write that raced a switch's flip, or a switch dropped with `mcp-suite reembed --cancel`
    await sql(settings, "UPDATE documentation.endpoints SET embedding_model = 'hash-384:old' WHERE method = 'GET'")
    async with Client(build(settings)) as client:
        described = await call(client, "manage_project", {"action": "describe", "project": "p"})
        assert described["projects"][0]["versions"][0]["needs_reembed"] is True
        assert "reembed" in described["message"]
        done = await call(client, "manage_project", {"action": "reembed", "project": "p"})
        assert "with hash-384" in done["message"]
        again = (await call(client, "manage_project", {"action": "describe", "project": "p"}))["projects"][0]
        assert again["versions"][0]["needs_reembed"] is False
    assert await scalar(settings, "SELECT array_agg(DISTINCT embedding_model) FROM documentation.endpoints") == [
        ingest.model_label("hash-384")
    ]


async def test_two_server_processes_writing_at_once_lose_nothing_and_duplicate_nothing(settings: Settings) -> None:
    async with Client(build(settings)) as a, Client(build(settings)) as b:
        await call(a, "manage_project", {"action": "create", "project": "p", "version": "1"})

        async def save(client: Client, i: int) -> None:
            text = f"# Shared\n\n## Part\n\nVersion {i} of the shared page.\n\n## Other\n\nMore {i}.\n"
            await call(client, "ingest_text", {"project": "p", "version": "1", "title": "Shared", "content": text})
            await call(
                client, "ingest_text", {"project": "p", "version": "1", "title": f"Own {i}", "content": f"Page {i}."}
            )

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(save, a if i % 2 else b, i)
    assert await scalar(settings, "SELECT count(*) FROM documentation.documents") == 13
    assert (
        await scalar(
            settings,
            "SELECT count(*) FROM documentation.chunks c JOIN documentation.documents d ON d.id = c.document_id WHERE d.path = 'shared.md'",
        )
        == 2
    )
    assert await duplicates(settings) == 0


async def test_a_pathological_include_glob_does_not_freeze_the_server(settings: Settings, docs_root: Path) -> None:
    (docs_root / ("a" * 250 + ".md")).write_text("# Long\n\nA page with a long name.\n")
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "p"})
        with anyio.fail_after(5):
            job = await start(client, docs_root, include=["*a*a*a*a*a*a*a*a*a*a*b"])
            listed = await call(client, "manage_project", {"action": "list"})
        assert job["status"] == "done"
        assert job["counts"]["files_total"] == 0
        assert listed["total"] == 1


async def test_hits_are_one_per_document_with_anchor_other_sections_and_api_names(
    settings: Settings, docs_root: Path
) -> None:
    guide = (
        "# Queue guide\n\n## Bounded queues {#bounded}\n\nA bounded queue blocks producers when it is full.\n\n"
        "## Draining queues\n\nDraining a queue empties it before shutdown.\n\n## Unrelated\n\nNothing here.\n"
    )
    (docs_root / "api.rst").write_text(
        "Buffers\n=======\n\n.. function:: hydrate_buffer(size)\n\n   Fill a buffer with :func:`size` items.\n"
    )
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "q", "version": "1"})
        await call(client, "ingest_text", {"project": "q", "version": "1", "title": "Queue guide", "content": guide})
        await call(client, "ingest_folder", {"action": "start", "project": "q", "version": "1", "path": str(docs_root)})
        await call(
            client, "ingest_text", {"project": "q", "version": "1", "title": "Other", "content": "# Other\n\nCats."}
        )
        hits = (await call(client, "search_docs", {"query": "queue bounded draining", "project": "q"}))["hits"]
        paths = [h["path"] for h in hits]
        assert len(paths) == len(set(paths)), "one hit per document by default"
        top = next(h for h in hits if h["path"] == "queue-guide.md")
        assert top["anchor"] in {"bounded", "draining-queues"}
        assert top["citation"].endswith("#" + top["anchor"])
        assert {s["anchor"] for s in top["sections"]} | {top["anchor"]} >= {"bounded", "draining-queues"}
        assert all(s["anchor"] != top["anchor"] for s in top["sections"])
        every = (
            await call(
                client, "search_docs", {"query": "queue bounded draining", "project": "q", "per_document": False}
            )
        )["hits"]
        assert [h["path"] for h in every].count("queue-guide.md") >= 2
        assert all(h["sections"] == [] for h in every)
        made = (await call(client, "search_docs", {"query": "hydrate_buffer", "project": "q"}))["hits"][0]
        assert made["path"] == "api.rst"
        assert made["names"] == ["hydrate_buffer"]
        assert "Fill a buffer with size items." in made["snippet"]
        assert ".." not in made["snippet"]
        assert ":func:" not in made["snippet"]


async def test_vectors_of_an_older_chunking_version_are_marked_for_reembedding(settings: Settings) -> None:
    async with Client(build(settings)) as client:
        await call(client, "manage_project", {"action": "create", "project": "old", "version": "1"})
        await call(client, "ingest_text", {"project": "old", "version": "1", "title": "T", "content": "# T\n\nText."})
    # What a suite version before the embedded-text change stored: the bare model name.
    await sql(settings, "UPDATE documentation.chunks SET embedding_model = 'hash-384'")
    async with Client(build(settings)) as client:
        described = (await call(client, "manage_project", {"action": "describe", "project": "old"}))["projects"][0]
        assert described["versions"][0]["needs_reembed"] is True
        await fails(client, "search_docs", {"query": "text", "project": "old"}, "action='reembed'")
        await call(client, "manage_project", {"action": "reembed", "project": "old"})
        assert (await call(client, "search_docs", {"query": "text", "project": "old"}))["hits"][0]["anchor"] == "t"
