"""Wiring of the documentation server: thin tools over store.py, ingest.py, openapi.py and friends.

No ``from __future__ import annotations``: resources are registered straight with the SDK, which
reads their signatures.
"""

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
import asyncpg
from mcp.server.mcpserver import Context, MCPServer

from common import keywords
from common.errors import Conflict, InvalidInput, NotFound
from common.logging import get_logger
from common.runtime import DELETE, READ, WRITE, Deps, Hints, create_server, deps, tool_registrar
from common.tool_schema import CursorArg, P, compact_tools
from servers.documentation import generate, ingest, mermaid, openapi, paths, store
from servers.documentation.chunking import parse, slugify
from servers.documentation.models import (
    Doc,
    Endpoint,
    Endpoints,
    Generated,
    GeneratedList,
    Hit,
    Hits,
    Job,
    Jobs,
    Page,
    Project,
    Projects,
    Reembedded,
    Saved,
    Section,
    SpecImport,
    Version,
)
from servers.documentation.settings import Settings

log = get_logger(__name__)
NAME = "documentation"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
VERSION_RE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
SNIPPET = 240
LIST_PAGE = 50
MAX_ERRORS_SHOWN = 50


ProjectArg = Annotated[str, P("Project name.", pattern=NAME_RE)]
VersionArg = Annotated[str, P("Version, e.g. 1.2.", pattern=VERSION_RE)]
OptProject = Annotated[str | None, P("Omit for all.", pattern=NAME_RE)]
OptVersion = Annotated[str | None, P("Omit for all.", pattern=VERSION_RE)]
Limit = Annotated[int, P("Max items.", ge=1, le=50)]
Cursor = CursorArg


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not re.fullmatch(r"o\d{1,7}", cursor):
        raise InvalidInput("cursor is not valid; pass next_cursor from the previous page exactly.")
    return int(cursor[1:])


def _next(offset: int, limit: int, total: int) -> str | None:
    return f"o{offset + limit}" if offset + limit < total else None


def _citation(project: str, version: str, path: str, anchor: str = "") -> str:
    return f"{project}@{version}:{path}" + (f"#{anchor}" if anchor else "")


ANALYZE_CHUNKS = "ANALYZE documentation.chunks"


def _tsquery(text: str) -> str:
    """An OR query of the words: full-text ranks by how many words match instead of demanding all."""
    words = [w for w in re.findall(r"[^\W_]+", text.lower()) if len(w) > 1][:32]
    return " | ".join(dict.fromkeys(words))


def _snippet(content: str, query: str) -> str:
    text = " ".join(content.split())
    words = [w for w in re.findall(r"[^\W_]{3,}", query.lower())]
    lower = text.lower()
    hits = [i for w in words if (i := lower.find(w)) >= 0]
    start = max(0, min(hits) - 60) if hits else 0
    out = text[start : start + SNIPPET]
    return ("…" if start else "") + out + ("…" if start + SNIPPET < len(text) else "")


def _job(row: dict[str, Any]) -> Job:
    errors = row["errors"]
    return Job(
        id=row["id"],
        project=row["project"],
        version=row["version"],
        root=row["root"],
        status=row["status"],
        counts=row["counts"],
        current_file=row["current_file"],
        errors=errors[:MAX_ERRORS_SHOWN],
        errors_total=len(errors),
        message=row["message"],
        attempts=row["attempts"],
        heartbeat_at=row["heartbeat_at"],
        finished_at=row["finished_at"],
    )


def _endpoint(row: dict[str, Any], full: bool) -> Endpoint:
    ep = Endpoint(
        project=row["project"],
        version=row["version"],
        method=row["method"],
        path=row["path"],
        operation_id=row["operation_id"],
        summary=row["summary"],
        tags=list(row["tags"]),
        score=round(row["score"], 5) if row.get("score") is not None else None,
    )
    if full:
        ep.description = row["description"]
        ep.parameters = row["parameters"]
        ep.request_body = row["request_body"]
        ep.responses = row["responses"]
    return ep


async def recover(d: Deps, settings: Settings) -> list[str]:
    """Mark jobs whose process died as interrupted, and versions embedded with another model."""
    stale = await store.mark_stale(d.db, settings.job_stale_s)
    if stale:
        log.warning("ingest_jobs_interrupted", jobs=stale)
    await store.mark_reembed(d.db, d.embedder.model_name)
    return stale


async def _project_version(d: Deps, project: str, version: str) -> int:
    """The version's id, creating the version (not the project) on first use."""
    pid = await store.project_id(d.db, project)

    async def make(conn: asyncpg.Connection) -> int:
        return await store.ensure_version(conn, pid, version)

    return await d.db.run_in_transaction(make)


async def _save_text(
    d: Deps,
    settings: Settings,
    vid: int,
    *,
    path: str,
    title: str,
    content: str,
    kind: str,
    source: str,
    parse_as: Literal["markdown", "rst", "text", "html", "python"] = "markdown",
) -> tuple[int, bool, int]:
    ingest.check_dim(d.embedder)
    parsed = parse(parse_as, content, path, settings.chunk_chars)
    parsed.title = title or parsed.title
    texts = [ingest.embed_text(parsed.title, c.heading_path, c.text, settings.embed_chars) for c in parsed.chunks]
    vectors = await ingest.embed_batched(d.embedder, texts, settings.embed_batch)
    digest = hashlib.sha256(content.encode()).hexdigest()

    async def write(conn: asyncpg.Connection) -> tuple[int, bool]:
        return await store.write_document(
            conn,
            version=vid,
            path=path,
            title=parsed.title,
            kind=kind,
            source=source,
            root=None,
            content=parsed.text,
            content_hash=digest,
            model=d.embedder.model_name,
            toc=ingest.toc_of(parsed),
            chunks=ingest.chunk_rows(parsed, vectors),
        )

    doc_id, created = await d.db.run_in_transaction(write)
    return doc_id, created, len(parsed.chunks)


def build(settings: Settings) -> MCPServer[Deps]:
    """The documentation server. Its lifespan marks jobs left running by a dead process as interrupted."""

    chunk_words = keywords.KeywordPlanner("chunks", scan_cap=settings.keyword_scan_cap)

    @asynccontextmanager
    async def recovery(d: Deps) -> AsyncIterator[None]:
        try:
            await recover(d, settings)
        except Exception as exc:  # recovery is retried by manage_job; start-up must not fail on it
            log.warning("documentation_recovery_failed", error=str(exc) or type(exc).__name__)
        yield

    server = create_server(
        NAME,
        settings,
        instructions=(
            "Private, versioned docs and API specs. search_docs before answering questions about a project's "
            "APIs; cite results by their citation."
        ),
        on_start=recovery,
    )

    # ----------------------------------------------------------------------------------- projects

    async def manage_project(
        action: Annotated[Literal["create", "list", "describe", "delete", "reembed"], P("What to do.")],
        ctx: Context,
        project: Annotated[str | None, P("Project (all but list).", pattern=NAME_RE)] = None,
        version: Annotated[str | None, P("Version (optional).", pattern=VERSION_RE)] = None,
        description: Annotated[str, P("create: what it documents.", max_length=500)] = "",
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> Projects:
        """Create, list, describe, delete or re-embed documentation projects and versions."""
        d = await deps(ctx)
        if action == "list":
            offset = _offset(cursor)
            rows = await store.list_projects(d.db, limit, offset)
            total = int(rows[0]["total"]) if rows else 0
            items = [
                Project(
                    name=r["name"], description=r["description"], versions=[Version(version=v) for v in r["versions"]]
                )
                for r in rows
            ]
            return Projects(
                projects=items, total=total, truncated=offset + limit < total, next_cursor=_next(offset, limit, total)
            )
        if project is None:
            raise InvalidInput(f"manage_project(action='{action}') needs project.")
        if action == "create":

            async def make(conn: asyncpg.Connection) -> bool:
                pid, created = await store.create_project(conn, project, description)
                if version is not None:
                    await store.ensure_version(conn, pid, version)
                return created

            created = await d.db.run_in_transaction(make)
            message = "created" if created else "already existed"
        elif action == "reembed":
            done = await _reembed(ctx, d, project, version)
            message = f"re-embedded {done.chunks} chunks and {done.endpoints} endpoints with {done.model}"
        elif action == "delete":
            if version is not None:
                deleted = await d.db.fetchval(store.DELETE_VERSION, project, version)
                if deleted is None:
                    await store.version_id(d.db, project, version)
                return Projects(projects=[], total=0, truncated=False, message=f"deleted {project}@{version}")
            if await d.db.fetchval(store.DELETE_PROJECT, project) is None:
                await store.project_id(d.db, project)
            return Projects(projects=[], total=0, truncated=False, message=f"deleted {project}")
        else:
            message = None
        await store.project_id(d.db, project)
        rows = await store.describe(d.db, project)
        meta = await d.db.fetchrow("SELECT description FROM documentation.projects WHERE name = $1", project)
        versions = [
            Version(
                version=r["version"],
                documents=r["documents"],
                chunks=r["chunks"],
                endpoints=r["endpoints"],
                models=list(r["models"]),
                needs_reembed=r["needs_reembed"],
            )
            for r in rows
        ]
        item = Project(name=project, description=meta["description"] if meta else "", versions=versions)
        if any(v.needs_reembed for v in versions):
            message = f"Some versions were embedded with another model than {d.embedder.model_name}: run manage_project(action='reembed')."
        return Projects(projects=[item], total=1, truncated=False, message=message)

    # ----------------------------------------------------------------------------------- ingest

    async def _run_job(ctx: Context, d: Deps, job: dict[str, Any], allowed_root: Path) -> Job:
        async def progress(done: float, total: float, message: str) -> None:
            await ctx.report_progress(done, total, message)

        runner = ingest.JobRunner(
            d.db,
            d.embedder,
            settings,
            job["id"],
            job["version_id"],
            Path(job["root"]),
            allowed_root,
            list(job["include"]),
            list(job["exclude"]),
            progress,
        )
        await runner.run()
        # A folder is usually a large share of the chunks: fresh statistics keep search plans right.
        await d.db.execute(ANALYZE_CHUNKS)
        chunk_words.forget_stats()
        return _job(await store.get_job(d.db, job["id"]))

    async def ingest_folder(
        action: Annotated[Literal["start", "status", "list", "cancel", "resume"], P("start a job or manage one.")],
        ctx: Context,
        project: OptProject = None,
        version: OptVersion = None,
        path: Annotated[str | None, P("start: folder in allowed roots.")] = None,
        include: Annotated[list[str] | None, P("Globs; default md rst txt html py.")] = None,
        exclude: Annotated[list[str] | None, P("Globs to skip.")] = None,
        job_id: Annotated[str | None, P("Job to manage.")] = None,
        limit: Limit = 10,
        cursor: Cursor = None,
    ) -> Jobs:
        """Ingest a folder as a job (progress; re-runs redo only changed files); or status/list/cancel/resume it."""
        d = await deps(ctx)
        await recover(d, settings)
        if action == "start":
            if not (project and version and path):
                raise InvalidInput("ingest_folder(action='start') needs project, version and path.")
            ingest.check_dim(d.embedder)
            root, allowed = paths.resolve_inside_roots(path, settings.allowed_roots, want_dir=True)
            vid = await _project_version(d, project, version)
            job_id = await store.create_job(
                d.db, vid, str(root), list(include or paths.DEFAULT_INCLUDE), list(exclude or [])
            )
            started = await _run_job(ctx, d, await store.get_job(d.db, job_id), allowed)
            return Jobs(jobs=[started], total=1, truncated=False)
        if action == "list":
            offset = _offset(cursor)
            rows = await store.list_jobs(d.db, project, limit, offset)
            total = int(rows[0]["total"]) if rows else 0
            return Jobs(
                jobs=[_job(r) for r in rows],
                total=total,
                truncated=offset + limit < total,
                next_cursor=_next(offset, limit, total),
            )
        if job_id is None or not re.fullmatch(r"[0-9a-fA-F-]{36}", job_id):
            raise InvalidInput(f"ingest_folder(action='{action}') needs job_id (a UUID from start or list).")
        job = await store.get_job(d.db, job_id)
        if action == "cancel":
            if job["status"] in ("done", "failed", "cancelled"):
                raise Conflict(f"Job {job_id} is already {job['status']}; nothing to cancel.")
            await store.cancel_job(d.db, job_id)
        elif action == "resume":
            if job["status"] not in ("interrupted", "failed", "cancelled"):
                raise Conflict(f"Job {job_id} is {job['status']}; only interrupted, failed or cancelled jobs resume.")
            _, allowed = paths.resolve_inside_roots(job["root"], settings.allowed_roots, want_dir=True)
            try:
                claimed = await store.claim_resume(d.db, job_id)
            except asyncpg.UniqueViolationError:
                raise Conflict("Another job is ingesting this folder into this version now; wait for it.") from None
            if not claimed:
                raise Conflict(f"Job {job_id} was resumed by another call just now.")
            return Jobs(jobs=[await _run_job(ctx, d, job, allowed)], total=1, truncated=False)
        return Jobs(jobs=[_job(await store.get_job(d.db, job_id))], total=1, truncated=False)

    async def ingest_text(
        project: ProjectArg,
        version: VersionArg,
        title: Annotated[str, P("Title.", min_length=1, max_length=300)],
        content: Annotated[str, P("Markdown or plain text.", min_length=1)],
        ctx: Context,
        path: Annotated[str | None, P("Default: from title.", max_length=1000)] = None,
    ) -> Saved:
        """Store a document from text (replaces the same path)."""
        d = await deps(ctx)
        if len(content) > settings.max_text_chars:
            raise InvalidInput(f"content has {len(content)} characters; the limit is {settings.max_text_chars}.")
        doc_path = (path or f"{slugify(title)}.md").strip().lstrip("/")
        if not doc_path:
            raise InvalidInput("path is empty.")
        vid = await _project_version(d, project, version)
        doc_id, created, n = await _save_text(
            d, settings, vid, path=doc_path, title=title, content=content, kind="markdown", source="text"
        )
        return Saved(document_id=doc_id, citation=_citation(project, version, doc_path), chunks=n, created=created)

    # ----------------------------------------------------------------------------------- search and read

    async def search_docs(
        query: Annotated[str, P("What to look for.", min_length=1, max_length=2000)],
        ctx: Context,
        project: OptProject = None,
        version: OptVersion = None,
        limit: Limit = 5,
        cursor: Cursor = None,
    ) -> Hits:
        """Search docs by meaning and keywords; hits carry a citation and document_id."""
        d = await deps(ctx)
        ingest.check_dim(d.embedder)
        offset = _offset(cursor)
        model = d.embedder.model_name

        async def prepare() -> tuple[list[int], bool, bool, keywords.KeywordPlan | None]:
            versions = await store.scope(d.db, project, version)
            has_current, has_other = await store.model_state(d.db, versions, model)
            plan = await d.db.run(lambda conn: chunk_words.plan(conn, query))
            return versions, has_current, has_other, plan

        # Scope, model check and keyword plan need no vector: they run while the query is embedded.
        prepared = asyncio.create_task(prepare())
        try:
            vector = await d.embedder.embed_one(query)
            versions, has_current, has_other, plan = await prepared
        except BaseException:
            prepared.cancel()
            with contextlib.suppress(BaseException):
                await prepared
            raise
        notice = None
        if has_other and not has_current:
            raise InvalidInput(
                f"These docs were embedded with another model than the configured {model}; run "
                "manage_project(action='reembed') (or set EMBEDDING_MODEL back) before searching."
            )
        if has_other:
            notice = (
                "Some chunks use another embedding model and were not searched; run manage_project(action='reembed')."
            )
        depth = max(settings.search_candidates, offset + limit)
        rows = await store.search(d.db, vector, model, versions, plan, depth, limit, offset, chunk_words.scan_cap)
        chunk_words.learn_later(d.background, d.db)  # words met for the first time
        total = int(rows[0]["total"]) if rows else 0
        hits = [
            Hit(
                citation=_citation(r["project"], r["version"], r["path"], r["anchor"]),
                document_id=r["document_id"],
                path=r["path"],
                heading_path=list(r["heading_path"]),
                snippet=_snippet(r["content"], query),
                score=round(r["score"], 5),
            )
            for r in rows
        ]
        return Hits(
            hits=hits,
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(offset, limit, total),
            notice=notice,
        )

    async def _list_documents(d: Deps, project: str, version: str, offset: int, toc: bool) -> Page:
        vid = await store.version_id(d.db, project, version)
        limit = LIST_PAGE
        rows = await store.list_documents(d.db, vid, None, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        docs = [
            Doc(
                id=r["id"],
                path=r["path"],
                title=r["title"],
                kind=r["kind"],
                chars=r["chars"],
                toc=[Section(level=e["level"], title=e["title"], anchor=e["anchor"]) for e in _toc(r)] if toc else None,
            )
            for r in rows
        ]
        return Page(
            citation=f"{project}@{version}",
            title=f"{total} documents",
            offset=offset,
            total_chars=total,
            next_offset=offset + limit if offset + limit < total else None,
            text="",
            documents=docs,
        )

    async def _document(
        d: Deps, document_id: int | None, project: str | None, version: str | None, path: str | None
    ) -> dict[str, Any]:
        if document_id is not None:
            doc = await store.get_document(d.db, document_id)
            if doc is None:
                raise NotFound(f"No document {document_id}; search_docs or list_documents give ids.")
            return doc
        if not (project and version and path):
            raise InvalidInput("Give document_id, or project + version + path.")
        doc = await store.get_document_by_path(d.db, project, version, path)
        if doc is None:
            await store.version_id(d.db, project, version)
            raise NotFound(f"No document {path!r} in {project}@{version}; list_documents shows the paths.")
        return doc

    def _toc(doc: dict[str, Any]) -> list[dict[str, Any]]:
        toc = doc["toc"]
        return json.loads(toc) if isinstance(toc, str) else list(toc)

    async def read_document(
        ctx: Context,
        document_id: Annotated[int | None, P("Or project+version+path.")] = None,
        project: OptProject = None,
        version: OptVersion = None,
        path: Annotated[str | None, P("Document path.")] = None,
        heading: Annotated[str | None, P("Section title or anchor.")] = None,
        offset: Annotated[int, P("Start character (list: item).", ge=0)] = 0,
        length: Annotated[int | None, P("Characters.", ge=1)] = None,
        toc: Annotated[bool, P("Add headings.")] = False,
    ) -> Page:
        """Read a document or section by pages (next_offset). Only project+version: list its documents."""
        d = await deps(ctx)
        if document_id is None and path is None and project and version:
            return await _list_documents(d, project, version, offset, toc)
        doc = await _document(d, document_id, project, version, path)
        entries = _toc(doc)
        start, end, anchor = 0, int(doc["chars"]), ""
        if heading is not None:
            wanted = heading.strip().lstrip("#").strip()
            match = next((e for e in entries if e["anchor"] == wanted), None) or next(
                (e for e in entries if e["title"].lower() == wanted.lower() or slugify(e["title"]) == slugify(wanted)),
                None,
            )
            if match is None:
                names = ", ".join(e["title"] for e in entries[:20]) or "none"
                raise NotFound(f"No section {heading!r} in {doc['path']}. Sections: {names}.")
            start, end, anchor = int(match["start"]), int(match["end"]), match["anchor"]
        size = min(length or settings.read_max_chars, settings.read_max_chars)
        begin = min(start + offset, end)
        take = max(0, min(size, end - begin))
        text = await store.document_text(d.db, doc["id"], begin, take)
        nxt = offset + take if begin + take < end else None
        return Page(
            document_id=doc["id"],
            citation=_citation(doc["project"], doc["version"], doc["path"], anchor),
            title=doc["title"],
            offset=offset,
            total_chars=end - start,
            next_offset=nxt,
            text=text,
            toc=[Section(level=e["level"], title=e["title"], anchor=e["anchor"]) for e in entries] if toc else None,
        )

    # ----------------------------------------------------------------------------------- API specs

    async def import_api_spec(
        project: ProjectArg,
        version: VersionArg,
        ctx: Context,
        path: Annotated[str | None, P("Spec file in allowed roots.")] = None,
        content: Annotated[str | dict[str, Any] | None, P("Or the spec: JSON/YAML.")] = None,
    ) -> SpecImport:
        """Import an OpenAPI 3 / Swagger 2 spec into a version; returns the endpoint diff vs the previous spec."""
        d = await deps(ctx)
        ingest.check_dim(d.embedder)
        if (path is None) == (content is None):
            raise InvalidInput("Give exactly one of path or content.")
        if path is not None:
            file, _ = paths.resolve_inside_roots(path, settings.allowed_roots, want_dir=False)
            data = await anyio.to_thread.run_sync(file.read_bytes)
            if len(data) > settings.max_file_bytes:
                raise InvalidInput(
                    f"{path} has {len(data)} bytes; DOCUMENTATION_MAX_FILE_BYTES is {settings.max_file_bytes}."
                )
            try:
                content = paths.decode(data)
            except ValueError as exc:
                raise InvalidInput(f"{path}: {exc}.") from None
            source = str(file)
        else:
            source = "inline"
        assert content is not None
        if isinstance(content, dict):  # clients (and the SDK) may pass the JSON already parsed
            content = json.dumps(content)
        spec = openapi.load(content)
        spec_version = openapi.validate(spec)
        eps = openapi.endpoints(spec)
        vectors = await ingest.embed_batched(d.embedder, [e.embed_text() for e in eps], settings.embed_batch)
        title = str((spec.get("info") or {}).get("title") or "API")
        digest = hashlib.sha256(content.encode()).hexdigest()
        vid = await _project_version(d, project, version)
        rows = [
            (
                e.method,
                e.path,
                e.operation_id,
                e.summary,
                e.description,
                e.tags,
                e.deprecated,
                json.dumps(e.parameters),
                json.dumps(e.request_body) if e.request_body is not None else None,
                json.dumps(e.responses),
                e.fingerprint,
                v,
            )
            for e, v in zip(eps, vectors, strict=True)
        ]
        new = {e.key: e.fingerprint for e in eps}

        async def write(conn: asyncpg.Connection) -> tuple[int, str | None, dict[str, str]]:
            old_spec = await store.get_spec(conn, vid)
            compared: str | None
            if old_spec is not None:
                old, compared = await store.fingerprints(conn, old_spec["id"]), f"{project}@{version} (previous import)"
            else:
                prev = await store.previous_spec(conn, vid)
                old = await store.fingerprints(conn, prev[0]) if prev else {}
                compared = f"{project}@{prev[1]}" if prev else None
            spec_id = await store.replace_spec(
                conn, vid, title, spec_version, source, digest, spec, rows, d.embedder.model_name
            )
            return spec_id, compared, old

        spec_id, compared, old = await d.db.run_in_transaction(write)
        added, removed, changed = openapi.diff(old, new) if compared else (sorted(new), [], [])
        return SpecImport(
            spec_id=spec_id,
            title=title,
            spec_version=spec_version,
            endpoints=len(eps),
            compared_to=compared,
            added=added,
            removed=removed,
            changed=changed,
        )

    async def find_endpoints(
        ctx: Context,
        query: Annotated[str | None, P("Omit to list.", max_length=2000)] = None,
        project: OptProject = None,
        version: OptVersion = None,
        tag: Annotated[str | None, P("Only this tag.")] = None,
        operation_id: Annotated[str | None, P("Get one.")] = None,
        method: Annotated[str | None, P("With path: get one.")] = None,
        path: Annotated[str | None, P("e.g. /pets/{id}")] = None,
        limit: Limit = 10,
        cursor: Cursor = None,
    ) -> Endpoints:
        """Search API endpoints by meaning, list them by tag, or get one with schemas."""
        d = await deps(ctx)
        if operation_id or method or path:
            if not operation_id and not (method and path):
                raise InvalidInput("Give method + path, or operation_id.")
            if not (project and version):
                raise InvalidInput("Getting one endpoint needs project and version.")
            vid = await store.version_id(d.db, project, version)
            row = await store.get_endpoint(d.db, vid, method, path, operation_id)
            if row is None:
                what = operation_id or f"{(method or '').upper()} {path}"
                raise NotFound(f"No endpoint {what} in {project}@{version}; find_endpoints lists them.")
            return Endpoints(endpoints=[_endpoint(row, True)], total=1, truncated=False)
        versions = await store.scope(d.db, project, version)
        offset = _offset(cursor)
        if query:
            vector = await d.embedder.embed_one(query)
            depth = max(settings.search_candidates, offset + limit)
            rows = await store.search_endpoints(
                d.db, vector, versions, d.embedder.model_name, tag, depth, _tsquery(query), limit, offset
            )
        else:
            rows = await store.list_endpoints(d.db, versions, tag, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        return Endpoints(
            endpoints=[_endpoint(r, False) for r in rows],
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(offset, limit, total),
        )

    # ----------------------------------------------------------------------------------- generated

    async def generate_content(
        kind: Annotated[
            Literal["api_reference", "api_overview", "schema_diagram", "list"],
            P("What to make, or list."),
        ],
        ctx: Context,
        project: OptProject = None,
        version: OptVersion = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> GeneratedList:
        """Generate an API reference or Mermaid diagram from a version's spec and store it; or list them."""
        d = await deps(ctx)
        if kind == "list":
            return await _list_generated(d, project, version, limit, cursor)
        if not (project and version):
            raise InvalidInput("Generating needs project and version.")
        vid = await store.version_id(d.db, project, version)
        spec = await store.get_spec(d.db, vid)
        if spec is None:
            raise NotFound(f"{project}@{version} has no API spec; import one with import_api_spec first.")
        eps = await store.spec_endpoints(d.db, spec["id"])
        if kind == "api_reference":
            text = generate.reference(spec["title"], spec["spec_version"], eps)
        else:
            diagram = (
                mermaid.overview(spec["title"], eps)
                if kind == "api_overview"
                else mermaid.schema_diagram(openapi.schemas(spec["document"]))
            )
            problems = mermaid.check(diagram)
            if problems:
                log.error("mermaid_invalid", kind=kind, problems=problems[:5])
                raise InvalidInput(
                    f"The generated diagram failed its syntax check ({'; '.join(problems[:3])}); nothing stored."
                )
            text = f"# {spec['title']}: {kind.replace('_', ' ')}\n\n```mermaid\n{diagram}```\n"
        doc_path = f"_generated/{kind}.md"
        doc_id, _, _ = await _save_text(
            d,
            settings,
            vid,
            path=doc_path,
            title=f"{spec['title']} {kind}",
            content=text,
            kind="generated",
            source="generated",
        )
        provenance = {"spec_id": spec["id"], "spec_title": spec["title"], "spec_hash": spec["content_hash"]}

        async def record(conn: asyncpg.Connection) -> dict[str, Any]:
            return await store.record_generated(conn, vid, doc_id, spec["id"], kind, provenance)

        row = await d.db.run_in_transaction(record)
        item = Generated(
            id=row["id"],
            kind=kind,
            project=project,
            version=version,
            document_id=doc_id,
            path=doc_path,
            spec_id=spec["id"],
            created_at=row["created_at"],
            chars=len(text),
            preview=text[:600],
        )
        return GeneratedList(items=[item], total=1, truncated=False)

    async def _list_generated(
        d: Deps, project: str | None, version: str | None, limit: int, cursor: str | None
    ) -> GeneratedList:
        versions = await store.scope(d.db, project, version)
        offset = _offset(cursor)
        rows = await store.list_generated(d.db, versions, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        items = [
            Generated(
                id=r["id"],
                kind=r["kind"],
                project=r["project"],
                version=r["version"],
                document_id=r["document_id"],
                path=r["path"],
                spec_id=r["spec_id"],
                created_at=r["created_at"],
                chars=r["chars"],
            )
            for r in rows
        ]
        return GeneratedList(
            items=items, total=total, truncated=offset + limit < total, next_cursor=_next(offset, limit, total)
        )

    # ----------------------------------------------------------------------------------- model changes

    async def _reembed(ctx: Context, d: Deps, project: str, version: str | None) -> Reembedded:
        ingest.check_dim(d.embedder)
        versions = await store.scope(d.db, project, version)
        model = d.embedder.model_name
        batch = settings.embed_batch
        chunks = endpoints = 0
        while rows := await store.stale_chunks(d.db, versions, model, batch):
            vecs = await d.embedder.embed(
                [ingest.embed_text(r["title"], [r["heading"]], r["content"], settings.embed_chars) for r in rows]
            )
            await store.set_vectors(
                d.db, store.UPDATE_CHUNK_VECTOR, [(r["id"], v, model) for r, v in zip(rows, vecs, strict=True)]
            )
            chunks += len(rows)
            await ctx.report_progress(float(chunks), None, "chunks")
        while eps := await store.stale_endpoints(d.db, versions, model, batch):
            texts = [
                "\n".join(
                    x
                    for x in (
                        f"{r['method']} {r['path']}",
                        r["summary"],
                        r["description"],
                        " ".join(r["tags"]),
                        r["operation_id"] or "",
                    )
                    if x
                )
                for r in eps
            ]
            vecs = await d.embedder.embed(texts)
            await store.set_vectors(
                d.db, store.UPDATE_ENDPOINT_VECTOR, [(r["id"], v, model) for r, v in zip(eps, vecs, strict=True)]
            )
            endpoints += len(eps)
        await store.settle_documents_model(d.db, versions, model)
        await store.mark_reembed(d.db, model)
        return Reembedded(model=model, chunks=chunks, endpoints=endpoints)

    # ----------------------------------------------------------------------------------- registration

    tool = tool_registrar(server, settings)

    tool(manage_project, "Manage projects", Hints(read_only=False, destructive=True, idempotent=False))
    tool(ingest_folder, "Ingest folder", Hints(read_only=False, destructive=True, idempotent=False))
    tool(ingest_text, "Ingest text", DELETE)
    tool(search_docs, "Search docs", READ)
    tool(read_document, "Read document", READ)
    tool(import_api_spec, "Import API spec", DELETE)
    tool(find_endpoints, "Find endpoints", READ)
    tool(generate_content, "Generate content", WRITE)
    compact_tools(server, lean=True)

    # ----------------------------------------------------------------------------------- resources

    @server.resource("docs://documents/{document_id}", name="document", mime_type="text/markdown")
    async def document_resource(document_id: str, ctx: Context) -> str:
        """A stored document's text (bounded to DOCUMENTATION_READ_MAX_CHARS; read_document pages further)."""
        d = await deps(ctx)
        if not document_id.isdigit():
            raise InvalidInput("document id must be a number.")
        doc = await _document(d, int(document_id), None, None, None)
        return await store.document_text(d.db, doc["id"], 0, settings.read_max_chars)

    @server.resource("docs://projects/{project}/{version}/toc", name="toc", mime_type="application/json")
    async def toc_resource(project: str, version: str, ctx: Context) -> str:
        """A project version's table of contents: documents and their headings."""
        d = await deps(ctx)
        vid = await store.version_id(d.db, project, version)
        rows = await store.list_documents(d.db, vid, None, 1000, 0)
        return json.dumps(
            [
                {
                    "id": r["id"],
                    "path": r["path"],
                    "title": r["title"],
                    "headings": [[e["level"], e["title"], e["anchor"]] for e in _toc(r)],
                }
                for r in rows
            ]
        )

    return server
