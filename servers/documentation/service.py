"""The documentation service: every operation of the documentation server, with no MCP in sight.

Projects and versions, folder ingest jobs (common/jobs.py), text documents, hybrid search, paged
reading, OpenAPI specs and the content generated from them. File access goes through
``common.safefiles`` (allowed roots, no-follow reads); cursors come from ``common.paging``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import asyncpg

from common import keywords, safefiles
from common.errors import InvalidInput, NotFound
from common.jobs import RESUMABLE, Jobs, Progress
from common.jobs import Job as KitJob
from common.logging import get_logger
from common.paging import decode_cursor, encode_cursor, fingerprint
from common.retrieval import any_word_tsquery, check_dimension
from common.rows import model_of
from common.runtime import Deps
from servers.documentation import generate, ingest, mermaid, openapi, store
from servers.documentation.chunking import markup, parse, slugify
from servers.documentation.models import (
    Doc,
    Endpoint,
    Endpoints,
    Generated,
    GeneratedList,
    Hit,
    Hits,
    Job,
    Page,
    Place,
    Project,
    Projects,
    Reembedded,
    Saved,
    Section,
    SpecImport,
    Version,
)
from servers.documentation.models import (
    Jobs as JobList,
)
from servers.documentation.settings import Settings

if TYPE_CHECKING:
    from common.embeddings import Embedder

log = get_logger(__name__)

SCHEMA = "documentation"
DIM = 384
SNIPPET = 240
LIST_PAGE = 50
MAX_ERRORS_SHOWN = 50
GenerateKind = Literal["api_reference", "api_overview", "schema_diagram"]
ParseAs = Literal["markdown", "rst", "text", "html", "python"]
#: Reciprocal-rank-fusion weights of the meaning and keyword lists, chosen on the development
#: questions (tests/eval/questions/python_dev.jsonl); heading-, title- and whole-page signals tried
#: there all lowered recall (docs/benchmarks.md).
RANK_WEIGHTS = (1.0, 0.6)
#: Other sections of the same document listed with a hit.
OTHER_SECTIONS = 3


def _others(items: list[str], anchor: str) -> list[Place]:
    """The distinct other sections (``anchor␟heading␞path`` strings from SQL), the hit's own left out."""
    seen = {anchor}
    out: list[Place] = []
    for item in items:
        other, _, path = item.partition("\x1f")
        if other in seen:
            continue
        seen.add(other)
        out.append(Place(heading_path=path.split("\x1e") if path else [], anchor=other))
        if len(out) == OTHER_SECTIONS:
            break
    return out


def citation(project: str, version: str, path: str, anchor: str = "") -> str:
    """How a hit or page is cited: ``project@version:path#anchor``."""
    return f"{project}@{version}:{path}" + (f"#{anchor}" if anchor else "")


def snippet(content: str, query: str) -> str:
    """About 240 characters of ``content`` (markup removed) around the first query word found in it."""
    text = markup.flat(content)
    words = [w for w in re.findall(r"[^\W_]{3,}", query.lower())]
    lower = text.lower()
    hits = [i for w in words if (i := lower.find(w)) >= 0]
    start = max(0, min(hits) - 60) if hits else 0
    out = text[start : start + SNIPPET]
    return ("…" if start else "") + out + ("…" if start + SNIPPET < len(text) else "")


def _paging(cursor: str | None, *query: Any) -> tuple[str, int]:
    fp = fingerprint(*query)
    return fp, decode_cursor(cursor, fp).offset


def _next(fp: str, offset: int, limit: int, total: int) -> str | None:
    return encode_cursor(fp, offset=offset + limit) if offset + limit < total else None


def _toc(doc: dict[str, Any]) -> list[dict[str, Any]]:
    toc = doc["toc"]
    return json.loads(toc) if isinstance(toc, str) else list(toc)


def _job(job: KitJob) -> Job:
    p = job.params
    running = job.status == "running"
    return Job(
        id=job.id,
        project=str(p.get("project", "")),
        version=str(p.get("version", "")),
        root=str(p.get("root", "")),
        status=job.status,
        counts={k: int(v) for k, v in job.counts.items()},
        current_file=job.message if running else None,  # a running job's message is the file it is at
        errors=[{"path": e.get("item", ""), "reason": e.get("reason", "")} for e in job.errors[:MAX_ERRORS_SHOWN]],
        errors_total=job.errors_total,
        message=None if running else job.message,
        attempts=job.attempts,
        heartbeat_at=job.heartbeat_at,
        finished_at=job.finished_at,
    )


def _endpoint(row: dict[str, Any], full: bool) -> Endpoint:
    """An endpoint from its row; its description, parameters, body and responses only when ``full``."""
    hidden = {} if full else dict.fromkeys(("description", "parameters", "request_body", "responses"))
    score = round(row["score"], 5) if row.get("score") is not None else None
    return model_of(Endpoint, row, tags=list(row["tags"]), score=score, **hidden)


def _generated(r: dict[str, Any]) -> Generated:
    return model_of(Generated, r)


def _sections(entries: list[dict[str, Any]]) -> list[Section]:
    return [Section(level=e["level"], title=e["title"], anchor=e["anchor"]) for e in entries]


def _endpoint_text(r: dict[str, Any]) -> str:
    """The text an endpoint is embedded from (re-embedding rebuilds it from the row)."""
    parts = (f"{r['method']} {r['path']}", r["summary"], r["description"], " ".join(r["tags"]), r["operation_id"] or "")
    return "\n".join(x for x in parts if x)


class DocumentationService:
    """Versioned docs and API specs (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self.roots = safefiles.Roots(settings.allowed_roots, ingest.ROOTS_SETTING)
        self.chunk_words = keywords.KeywordPlanner("chunks", scan_cap=settings.keyword_scan_cap)
        # The heartbeat must be well under the age at which a job counts as dead.
        heartbeat = min(settings.heartbeat_s, settings.job_stale_s / 3)
        self.jobs = Jobs(deps.db, SCHEMA, heartbeat_s=heartbeat, stale_after_s=settings.job_stale_s)

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[DocumentationService]:
        """The running service; jobs left running by a dead process are marked interrupted first."""
        svc = cls(deps, settings)
        try:
            await svc.recover()
        except Exception as exc:  # retried before every job action; start-up must not fail on it
            log.warning("documentation_recovery_failed", error=str(exc) or type(exc).__name__)
        try:
            yield svc
        finally:
            await svc.jobs.close()

    async def recover(self) -> list[str]:
        """Mark jobs whose process died as interrupted, and versions embedded with another model."""
        stale = await self.jobs.recover()
        await store.mark_reembed(self.deps.db, self.model)
        return stale

    @property
    def model(self) -> str:
        """The label stored with vectors: the configured model and the version of the text it embeds."""
        return ingest.model_label(self.deps.embedder.model_name)

    def _check_dim(self) -> None:
        check_dimension(self.deps.embedder, DIM, SCHEMA)

    async def _project_version(self, project: str, version: str) -> int:
        """The version's id, creating the version (not the project) on first use."""
        db = self.deps.db
        pid = await store.project_id(db, project)

        async def make(conn: asyncpg.Connection) -> int:
            return await store.ensure_version(conn, pid, version)

        return await db.run_in_transaction(make)

    # ------------------------------------------------------------------------------- projects

    async def list_projects(self, limit: int, cursor: str | None) -> Projects:
        """Projects by name with their versions, a page at a time."""
        fp, offset = _paging(cursor, "manage_project.list")
        rows = await store.list_projects(self.deps.db, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        items = [
            Project(name=r["name"], description=r["description"], versions=[Version(version=v) for v in r["versions"]])
            for r in rows
        ]
        return Projects(
            projects=items, total=total, truncated=offset + limit < total, next_cursor=_next(fp, offset, limit, total)
        )

    async def create_project(self, project: str, version: str | None, description: str) -> Projects:
        """Create a project (and optionally a version); describes it afterwards."""

        async def make(conn: asyncpg.Connection) -> bool:
            pid, created = await store.create_project(conn, project, description)
            if version is not None:
                await store.ensure_version(conn, pid, version)
            return created

        created = await self.deps.db.run_in_transaction(make)
        return await self.describe_project(project, "created" if created else "already existed")

    async def describe_project(self, project: str, message: str | None = None) -> Projects:
        """A project with per-version counts, models and whether it needs re-embedding."""
        db = self.deps.db
        await store.project_id(db, project)
        rows = await store.describe(db, project)
        description = await store.project_description(db, project)
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
        item = Project(name=project, description=description or "", versions=versions)
        if any(v.needs_reembed for v in versions):
            message = (
                f"Some versions were embedded with another model than {self.model}: "
                "run manage_project(action='reembed')."
            )
        return Projects(projects=[item], total=1, truncated=False, message=message)

    async def delete(self, project: str, version: str | None) -> Projects:
        """Delete a project, or one of its versions, with everything in it."""
        db = self.deps.db
        if version is not None:
            if not await store.delete_version(db, project, version):
                await store.version_id(db, project, version)
            return Projects(projects=[], total=0, truncated=False, message=f"deleted {project}@{version}")
        if not await store.delete_project(db, project):
            await store.project_id(db, project)
        return Projects(projects=[], total=0, truncated=False, message=f"deleted {project}")

    async def reembed(self, project: str, version: str | None, progress: Progress | None = None) -> Projects:
        """Re-embed a project's (or version's) chunks and endpoints left by another model with the store's model."""
        done = await self._reembed(project, version, progress)
        return await self.describe_project(
            project, f"re-embedded {done.chunks} chunks and {done.endpoints} endpoints with {done.model}"
        )

    async def _reembed(self, project: str, version: str | None, progress: Progress | None) -> Reembedded:
        self._check_dim()
        d, s = self.deps, self.settings
        versions = await store.scope(d.db, project, version)
        model = self.model
        chunks = endpoints = 0
        while rows := await store.stale_chunks(d.db, versions, model, s.embed_batch):
            vecs = await d.embedder.embed(self._chunk_texts(rows))
            await store.set_chunk_vectors(d.db, [(r["id"], v, model) for r, v in zip(rows, vecs, strict=True)])
            chunks += len(rows)
            if progress is not None:
                await progress(float(chunks), None, "chunks")
        while eps := await store.stale_endpoints(d.db, versions, model, s.embed_batch):
            vecs = await d.embedder.embed([_endpoint_text(r) for r in eps])
            await store.set_endpoint_vectors(d.db, [(r["id"], v, model) for r, v in zip(eps, vecs, strict=True)])
            endpoints += len(eps)
        await store.settle_documents_model(d.db, versions, model)
        await store.mark_reembed(d.db, model)
        return Reembedded(model=model, chunks=chunks, endpoints=endpoints)

    def _chunk_texts(self, rows: list[Any]) -> list[str]:
        """What the model sees of stored chunks (as ingest builds it)."""
        limit = self.settings.embed_chars
        return [ingest.embed_text(r["title"], r["heading_path"], r["content"], limit, r["keys"].split()) for r in rows]

    async def reembed_step(self, embedder: Embedder, limit: int) -> int:
        """One step of a switch of the store's model (``mcp-suite reembed``): re-embed at most ``limit``
        chunks or endpoints not yet embedded by ``embedder``'s model; how many it picked (0: none left)."""
        d = self.deps
        versions = await store.scope(d.db, None, None)
        model = ingest.model_label(embedder.model_name)
        if rows := await store.stale_chunks(d.db, versions, model, limit):
            check_dimension(embedder, DIM, SCHEMA)
            vecs = await embedder.embed(self._chunk_texts(rows))
            await store.set_chunk_vectors(d.db, [(r["id"], v, model) for r, v in zip(rows, vecs, strict=True)])
            return len(rows)
        if eps := await store.stale_endpoints(d.db, versions, model, limit):
            check_dimension(embedder, DIM, SCHEMA)
            vecs = await embedder.embed([_endpoint_text(r) for r in eps])
            await store.set_endpoint_vectors(d.db, [(r["id"], v, model) for r, v in zip(eps, vecs, strict=True)])
            return len(eps)
        await store.settle_documents_model(d.db, versions, model)
        await store.mark_reembed(d.db, model)
        return 0

    # ------------------------------------------------------------------------------- folder ingest

    def _resolve(self, path: str, kind: Literal["file", "dir"]) -> Path:
        # Relative paths would silently mean "under the first root"; the tools have always wanted them absolute.
        if not path.startswith("/"):
            raise InvalidInput(f"path {safefiles.shown(path)} must be absolute.")
        return self.roots.resolve(path, kind=kind)

    async def start_ingest(
        self,
        project: str,
        version: str,
        path: str,
        include: list[str] | None,
        exclude: list[str] | None,
        progress: Progress | None = None,
    ) -> JobList:
        """Ingest a folder into a version as a job, run to its end in this call."""
        await self.recover()
        self._check_dim()
        root = self._resolve(path, "dir")
        inc, exc = list(include or ingest.DEFAULT_INCLUDE), list(exclude or [])
        safefiles.compile_globs(inc)  # a bad pattern is refused before a job is recorded
        safefiles.compile_globs(exc)
        vid = await self._project_version(project, version)
        key, params = ingest.job_params(vid, project, version, root, inc, exc)
        job = await self.jobs.start(ingest.KIND, key, params)
        return JobList(jobs=[await self._run(job, progress)], total=1, truncated=False)

    async def _run(self, job: KitJob, progress: Progress | None) -> Job:
        d = self.deps
        work = ingest.FolderIngest(d.db, d.embedder, self.settings, self.roots, job.params)
        ended = await self.jobs.run(job, work, progress)
        # A folder is usually a large share of the chunks: fresh statistics keep search plans right.
        await store.analyze_chunks(d.db)
        self.chunk_words.forget_stats()
        await store.mark_reembed(d.db, self.model)
        return _job(ended)

    async def job_status(self, job_id: str) -> JobList:
        """One ingest job."""
        await self.recover()
        return JobList(jobs=[_job(await self.jobs.get(job_id))], total=1, truncated=False)

    async def list_jobs(self, project: str | None, limit: int, cursor: str | None) -> JobList:
        """Ingest jobs, newest first, a page at a time."""
        await self.recover()
        fp, offset = _paging(cursor, "ingest_folder.list", project)
        rows, total = await store.list_jobs(self.deps.db, project, limit, offset)
        return JobList(
            jobs=[_job(KitJob.from_row(r)) for r in rows],
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(fp, offset, limit, total),
        )

    async def cancel_job(self, job_id: str) -> JobList:
        """Ask a running job to stop (whichever process runs it)."""
        await self.recover()
        return JobList(jobs=[_job(await self.jobs.cancel(job_id))], total=1, truncated=False)

    async def resume_job(self, job_id: str, progress: Progress | None = None) -> JobList:
        """Run an interrupted, failed or cancelled job again; unchanged files are skipped."""
        await self.recover()
        job = await self.jobs.get(job_id)
        if job.status in RESUMABLE:
            self.roots.resolve(str(job.params["root"]), kind="dir")  # the folder must still be allowed
        claimed = await self.jobs.claim_resume(job_id)
        return JobList(jobs=[await self._run(claimed, progress)], total=1, truncated=False)

    # ------------------------------------------------------------------------------- text documents

    async def ingest_text(self, project: str, version: str, title: str, content: str, path: str | None) -> Saved:
        """Store a document from text (replacing the one at the same path)."""
        if len(content) > self.settings.max_text_chars:
            raise InvalidInput(f"content has {len(content)} characters; the limit is {self.settings.max_text_chars}.")
        doc_path = (path or f"{slugify(title)}.md").strip().lstrip("/")
        if not doc_path:
            raise InvalidInput("path is empty.")
        vid = await self._project_version(project, version)
        doc_id, created, n = await self._save_text(
            vid, path=doc_path, title=title, content=content, kind="markdown", source="text"
        )
        return Saved(document_id=doc_id, citation=citation(project, version, doc_path), chunks=n, created=created)

    async def _save_text(
        self,
        vid: int,
        *,
        path: str,
        title: str,
        content: str,
        kind: str,
        source: str,
        parse_as: ParseAs = "markdown",
    ) -> tuple[int, bool, int]:
        d, s = self.deps, self.settings
        self._check_dim()
        parsed = parse(parse_as, content, path, s.chunk_chars)
        parsed.title = title or parsed.title
        texts = [ingest.embed_text(parsed.title, c.heading_path, c.text, s.embed_chars, c.keys) for c in parsed.chunks]
        vectors = await ingest.embed_batched(d.embedder, texts, s.embed_batch)
        digest = hashlib.sha256(content.encode()).hexdigest()
        item = ingest.Prepared(path=path, kind=kind, content_hash=digest, parsed=parsed, existed=False, vectors=vectors)
        write = functools.partial(ingest.save, item=item, version=vid, source=source, root=None, model=self.model)
        doc_id, created = await d.db.run_in_transaction(write)
        return doc_id, created, len(parsed.chunks)

    # ------------------------------------------------------------------------------- search and read

    async def search(
        self,
        query: str,
        project: str | None,
        version: str | None,
        limit: int,
        cursor: str | None,
        per_document: bool = True,
    ) -> Hits:
        """Hybrid (meaning + keyword) search over the chunks in scope, best first; one hit per document
        (its best section, the others listed) unless ``per_document`` is false."""
        d = self.deps
        self._check_dim()
        fp, offset = _paging(cursor, "search_docs", query, project, version, per_document)
        model = self.model

        async def prepare() -> tuple[list[int], bool, bool, keywords.KeywordPlan | None]:
            versions = await store.scope(d.db, project, version)
            has_current, has_other = await store.model_state(d.db, versions, model)
            plan = await d.db.run(lambda conn: self.chunk_words.plan(conn, query))
            return versions, has_current, has_other, plan

        # Scope, model check and keyword plan need no vector: they run while the query is embedded.
        # Not asyncio.TaskGroup: on Python 3.11 a failed child leaves the calling task with a pending
        # cancel request, which the SDK's anyio cancel scopes then act on.
        embedding = asyncio.create_task(d.embedder.embed_one(query))
        try:
            versions, has_current, has_other, plan = await prepare()
            vector = await embedding
        finally:
            if not embedding.done():
                embedding.cancel()
                with contextlib.suppress(BaseException):
                    await embedding
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
        depth = max(self.settings.search_candidates, offset + limit)
        rows = await store.search(
            d.db,
            vector,
            model,
            versions,
            plan,
            depth,
            limit,
            offset,
            self.chunk_words.scan_cap,
            RANK_WEIGHTS,
            per_document,
        )
        self.chunk_words.learn_later(d.background, d.db)  # words met for the first time
        total = int(rows[0]["total"]) if rows else 0
        hits = [
            Hit(
                citation=citation(r["project"], r["version"], r["path"], r["anchor"]),
                document_id=r["document_id"],
                path=r["path"],
                heading_path=list(r["heading_path"]),
                anchor=r["anchor"],
                snippet=snippet(r["content"], query),
                score=round(r["score"], 5),
                names=r["keys"].split(),
                sections=_others(list(r["others"]), r["anchor"]),
            )
            for r in rows
        ]
        return Hits(
            hits=hits,
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(fp, offset, limit, total),
            notice=notice,
        )

    async def list_documents(self, project: str, version: str, offset: int, toc: bool) -> Page:
        """A version's documents, LIST_PAGE at a time from item ``offset``."""
        db = self.deps.db
        vid = await store.version_id(db, project, version)
        rows = await store.list_documents(db, vid, None, LIST_PAGE, offset)
        total = int(rows[0]["total"]) if rows else 0
        docs = [model_of(Doc, r, toc=_sections(_toc(r)) if toc else None) for r in rows]
        return Page(
            citation=f"{project}@{version}",
            title=f"{total} documents",
            offset=offset,
            total_chars=total,
            next_offset=offset + LIST_PAGE if offset + LIST_PAGE < total else None,
            text="",
            documents=docs,
        )

    async def _document(
        self, document_id: int | None, project: str | None, version: str | None, path: str | None
    ) -> dict[str, Any]:
        db = self.deps.db
        if document_id is not None:
            doc = await store.get_document(db, document_id)
            if doc is None:
                raise NotFound(f"No document {document_id}; search_docs or list_documents give ids.")
            return doc
        if not (project and version and path):
            raise InvalidInput("Give document_id, or project + version + path.")
        doc = await store.get_document_by_path(db, project, version, path)
        if doc is None:
            await store.version_id(db, project, version)
            raise NotFound(
                f"No document {path[:80]!r} in {project[:60]}@{version[:40]}; list_documents shows the paths."
            )
        return doc

    async def read(
        self,
        document_id: int | None,
        project: str | None,
        version: str | None,
        path: str | None,
        heading: str | None,
        offset: int,
        length: int | None,
        toc: bool,
    ) -> Page:
        """A page of a document or one of its sections."""
        doc = await self._document(document_id, project, version, path)
        entries = _toc(doc)
        start, end, anchor = 0, int(doc["chars"]), ""
        if heading is not None:
            wanted = heading.strip().lstrip("#").strip()
            match = next((e for e in entries if e["anchor"] == wanted), None) or next(
                (e for e in entries if e["title"].lower() == wanted.lower() or slugify(e["title"]) == slugify(wanted)),
                None,
            )
            if match is None:
                names = ", ".join(e["title"][:60] for e in entries[:10]) or "none"
                raise NotFound(f"No section {heading[:80]!r} in {doc['path']}. Sections: {names}.")
            start, end, anchor = int(match["start"]), int(match["end"]), match["anchor"]
        cap = self.settings.read_max_chars
        size = min(length or cap, cap)
        begin = min(start + offset, end)
        take = max(0, min(size, end - begin))
        text = await store.document_text(self.deps.db, doc["id"], begin, take)
        nxt = offset + take if begin + take < end else None
        return Page(
            document_id=doc["id"],
            citation=citation(doc["project"], doc["version"], doc["path"], anchor),
            title=doc["title"],
            offset=offset,
            total_chars=end - start,
            next_offset=nxt,
            text=text,
            toc=_sections(entries) if toc else None,
        )

    async def document_text(self, document_id: str) -> str:
        """A stored document's text, bounded to DOCUMENTATION_READ_MAX_CHARS (the document resource)."""
        if not document_id.isdigit():
            raise InvalidInput("document id must be a number.")
        doc = await self._document(int(document_id), None, None, None)
        return await store.document_text(self.deps.db, doc["id"], 0, self.settings.read_max_chars)

    async def toc_json(self, project: str, version: str) -> str:
        """A version's documents and their headings as JSON (the toc resource)."""
        db = self.deps.db
        vid = await store.version_id(db, project, version)
        rows = await store.list_documents(db, vid, None, 1000, 0)
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

    # ------------------------------------------------------------------------------- API specs

    async def import_spec(
        self, project: str, version: str, path: str | None, content: str | dict[str, Any] | None
    ) -> SpecImport:
        """Import an OpenAPI 3 / Swagger 2 spec into a version; the endpoint diff against the previous one."""
        d = self.deps
        self._check_dim()
        if (path is None) == (content is None):
            raise InvalidInput("Give exactly one of path or content.")
        if path is not None:
            file = self._resolve(path, "file")
            data = await anyio.to_thread.run_sync(
                lambda: safefiles.read_bytes(file, self.roots, max_bytes=self.settings.max_file_bytes)
            )
            try:
                content = ingest.decode(data)
            except ValueError as exc:
                raise InvalidInput(f"{safefiles.shown(path)}: {exc}.") from None
            source = str(file)
        else:
            source = "inline"
        assert content is not None
        if isinstance(content, dict):  # clients (and the SDK) may pass the JSON already parsed
            content = json.dumps(content)
        spec = openapi.load(content)
        spec_version = openapi.validate(spec)
        eps = openapi.endpoints(spec)
        vectors = await ingest.embed_batched(d.embedder, [e.embed_text() for e in eps], self.settings.embed_batch)
        title = str((spec.get("info") or {}).get("title") or "API")
        digest = hashlib.sha256(content.encode()).hexdigest()
        vid = await self._project_version(project, version)
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
            spec_id = await store.replace_spec(conn, vid, title, spec_version, source, digest, spec, rows, self.model)
            return spec_id, compared, old

        spec_id, compared, old = await d.db.run_in_transaction(write)
        # With nothing to compare to, ``old`` is empty, so every endpoint counts as added.
        changes = openapi.diff(old, new)
        return SpecImport(
            spec_id=spec_id,
            title=title,
            spec_version=spec_version,
            endpoints=len(eps),
            compared_to=compared,
            **changes._asdict(),
        )

    async def get_endpoint(
        self,
        project: str | None,
        version: str | None,
        operation_id: str | None,
        method: str | None,
        path: str | None,
    ) -> Endpoints:
        """One endpoint with its schemas, by method + path or operation id."""
        if not operation_id and not (method and path):
            raise InvalidInput("Give method + path, or operation_id.")
        if not (project and version):
            raise InvalidInput("Getting one endpoint needs project and version.")
        db = self.deps.db
        vid = await store.version_id(db, project, version)
        row = await store.get_endpoint(db, vid, method, path, operation_id)
        if row is None:
            what = operation_id or f"{(method or '').upper()} {path}"
            raise NotFound(f"No endpoint {what} in {project}@{version}; find_endpoints lists them.")
        return Endpoints(endpoints=[_endpoint(row, True)], total=1, truncated=False)

    async def find_endpoints(
        self,
        query: str | None,
        project: str | None,
        version: str | None,
        tag: str | None,
        limit: int,
        cursor: str | None,
    ) -> Endpoints:
        """Endpoints by meaning and keywords (with a query) or listed by path (without)."""
        d = self.deps
        versions = await store.scope(d.db, project, version)
        fp, offset = _paging(cursor, "find_endpoints", query, project, version, tag)
        if query:
            vector = await d.embedder.embed_one(query)
            depth = max(self.settings.search_candidates, offset + limit)
            rows = await store.search_endpoints(
                d.db, vector, versions, self.model, tag, depth, any_word_tsquery(query), limit, offset
            )
        else:
            rows = await store.list_endpoints(d.db, versions, tag, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        return Endpoints(
            endpoints=[_endpoint(r, False) for r in rows],
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(fp, offset, limit, total),
        )

    # ------------------------------------------------------------------------------- generated content

    async def generate(self, kind: GenerateKind, project: str | None, version: str | None) -> GeneratedList:
        """Generate a reference or Mermaid diagram from a version's spec, check it and store it as a document."""
        if not (project and version):
            raise InvalidInput("Generating needs project and version.")
        db = self.deps.db
        vid = await store.version_id(db, project, version)
        spec = await store.get_spec(db, vid)
        if spec is None:
            raise NotFound(f"{project}@{version} has no API spec; import one with import_api_spec first.")
        eps = await store.spec_endpoints(db, spec["id"])
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
        doc_id, _, _ = await self._save_text(
            vid, path=doc_path, title=f"{spec['title']} {kind}", content=text, kind="generated", source="generated"
        )
        provenance = {"spec_id": spec["id"], "spec_title": spec["title"], "spec_hash": spec["content_hash"]}

        async def record(conn: asyncpg.Connection) -> dict[str, Any]:
            return await store.record_generated(conn, vid, doc_id, spec["id"], kind, provenance)

        row = await db.run_in_transaction(record)
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

    async def list_generated(
        self, project: str | None, version: str | None, limit: int, cursor: str | None
    ) -> GeneratedList:
        """Generated documents, newest first, a page at a time."""
        db = self.deps.db
        versions = await store.scope(db, project, version)
        fp, offset = _paging(cursor, "generate_content.list", project, version)
        rows = await store.list_generated(db, versions, limit, offset)
        total = int(rows[0]["total"]) if rows else 0
        return GeneratedList(
            items=[_generated(r) for r in rows],
            total=total,
            truncated=offset + limit < total,
            next_cursor=_next(fp, offset, limit, total),
        )


__all__ = ["DocumentationService", "citation", "snippet"]
