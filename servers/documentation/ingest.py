"""Folder ingestion: the work of an ``ingest_folder`` job, run by the shared jobs kit (common/jobs.py).

The folder is listed with ``common.safefiles.scan`` (links, FIFOs, sockets and devices are skipped
with a reason) and each file is read with ``safefiles.read_bytes`` (no link followed, regular files
only, size capped), hashed and parsed; chunks are embedded in batches of ``EMBEDDING_BATCH_SIZE`` and
each file is then written in its own transaction (old chunks deleted, new ones inserted), so a job
killed at any point leaves every file either old or new, never both. Resuming runs the same scan
again: unchanged files are skipped by content hash, so a resumed job does only the work that is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import asyncpg
import numpy as np

from common import safefiles
from common.db import Database
from common.embeddings import Embedder
from common.errors import SuiteError
from common.jobs import JobCancelled, JobContext
from common.logging import get_logger
from servers.documentation import store
from servers.documentation.chunking import Parsed, kind_for_path, markup, parse
from servers.documentation.settings import Settings

log = get_logger(__name__)

#: The job kind of a folder ingest in the jobs table.
KIND = "ingest_folder"
DEFAULT_INCLUDE = ("**/*.md", "**/*.markdown", "**/*.rst", "**/*.txt", "**/*.html", "**/*.htm", "**/*.py")
ROOTS_SETTING = "DOCUMENTATION_ALLOWED_ROOTS"
COUNTS = ("files_total", "files_done", "added", "updated", "unchanged", "deleted", "skipped", "failed", "chunks")

ChunkRow = tuple[list[str], str, str, int, int, str, np.ndarray, str]

#: Version of what chunks are and what the model sees of them. Stored with the model's name
#: (``model_label``), so a change marks every version embedded before it ``needs_reembed``,
#: exactly like a change of model, and a folder re-ingest re-chunks files whose hash is unchanged.
EMBED_TEXT_VERSION = "text2"


def model_label(model_name: str) -> str:
    """The name stored with every vector: the model and the version of the text it embedded."""
    return f"{model_name}+{EMBED_TEXT_VERSION}"


@dataclass
class Prepared:
    """A parsed file waiting for its vectors."""

    path: str
    kind: str
    content_hash: str
    parsed: Parsed
    existed: bool
    vectors: list[np.ndarray] = field(default_factory=list)


def looks_binary(head: bytes) -> bool:
    """A NUL byte in the first 8 KB: what git and grep use, and right for every text format we read."""
    return b"\x00" in head[:8192]


def decode(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); raises ValueError with the reason for binary or undecodable data."""
    if looks_binary(data):
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None


def embed_text(
    title: str,
    heading_path: tuple[str, ...] | list[str],
    text: str,
    limit: int = 1200,
    keys: tuple[str, ...] | list[str] = (),
) -> str:
    """What the model sees: page title, heading path and API names (context the text lacks), then the
    chunk's text without markup, up to ``limit`` characters.

    Headings lose their section numbers and markup (``6.4.1. Importing \\* From a Package`` reads
    ``Importing * From a Package``), since neither is a word anyone searches with.
    """
    path = [markup.unnumbered(markup.heading(h)) for h in heading_path if h]
    page = markup.heading(title)
    first = path[0].lower() if path else ""
    if page and not (first and (first in page.lower() or page.lower() in first)):
        path.insert(0, page)
    context = " > ".join(path)
    names = " ".join(k for k in keys if k)
    body = markup.flat(text)
    if len(body) > limit:
        body = body[:limit].rsplit(" ", 1)[0]
    return "\n".join(x for x in (context, names, body) if x)


async def embed_batched(embedder: Embedder, texts: list[str], size: int) -> list[np.ndarray]:
    """Embed in calls of at most ``size`` texts: ONNX Runtime keeps the memory of the largest batch it ran."""
    out: list[np.ndarray] = []
    for i in range(0, len(texts), size):
        out.extend(await embedder.embed(texts[i : i + size]))
    return out


def heading_of(title: str, heading_path: tuple[str, ...] | list[str]) -> str:
    return " > ".join(heading_path) or title


async def save(
    conn: asyncpg.Connection, item: Prepared, *, version: int, source: str, root: str | None, model: str
) -> tuple[int, bool]:
    """Write a document with its vectors, replacing the one at its path (inside the caller's transaction)."""
    return await store.write_document(
        conn,
        version=version,
        path=item.path,
        title=item.parsed.title,
        kind=item.kind,
        source=source,
        root=root,
        content=item.parsed.text,
        content_hash=item.content_hash,
        model=model,
        toc=toc_of(item.parsed),
        chunks=chunk_rows(item.parsed, item.vectors),
    )


def toc_of(parsed: Parsed) -> list[dict[str, Any]]:
    return [
        {"level": h.level, "title": h.title, "anchor": h.slug, "start": h.start, "end": h.end} for h in parsed.headings
    ]


def chunk_rows(parsed: Parsed, vectors: list[np.ndarray]) -> list[ChunkRow]:
    return [
        (
            list(c.heading_path),
            heading_of(parsed.title, c.heading_path),
            c.anchor,
            c.start,
            c.end,
            c.text,
            v,
            " ".join(c.keys),
        )
        for c, v in zip(parsed.chunks, vectors, strict=True)
    ]


def job_params(
    version_id: int, project: str, version: str, root: Path, include: Sequence[str], exclude: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The key (one live job per folder of a version) and params of an ingest job."""
    params = {
        "version_id": version_id,
        "project": project,
        "version": version,
        "root": str(root),
        "include": list(include),
        "exclude": list(exclude),
    }
    return f"{version_id}:{root}", params


def prepare_file(
    file: safefiles.ScannedFile,
    roots: safefiles.Roots,
    known: tuple[str, str] | None,
    model: str,
    settings: Settings,
) -> Prepared | str | None:
    """Read, hash and parse one scanned file (in a worker thread). None: unchanged; str: why it failed."""
    # The scan saw a regular file at this real path; a link put there since resolves elsewhere.
    if os.path.realpath(file.absolute) != str(file.absolute):
        return "replaced by a symbolic link since the scan; links are not followed"
    try:
        data = safefiles.read_bytes(file.absolute, roots, max_bytes=settings.max_file_bytes)
    except SuiteError as exc:
        return f"not read: {exc}"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    digest = hashlib.sha256(data).hexdigest()
    if known == (digest, model):
        return None
    try:
        content = decode(data)
    except ValueError as exc:
        return str(exc)
    kind = kind_for_path(file.path)
    assert kind is not None
    try:
        parsed = parse(kind, content, file.path, settings.chunk_chars)
    except SyntaxError as exc:
        return f"Python syntax error line {exc.lineno}: {exc.msg}"
    except Exception as exc:  # a parser bug on one file must not stop the job; it is listed instead
        return f"parser failed: {type(exc).__name__}: {exc}"
    return Prepared(file.path, kind, digest, parsed, existed=known is not None)


class FolderIngest:
    """The work of one ingest job: ``await jobs.run(job, FolderIngest(...))`` drives it to an end state."""

    def __init__(
        self, db: Database, embedder: Embedder, settings: Settings, roots: safefiles.Roots, params: dict[str, Any]
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.settings = settings
        self.roots = roots
        self.version = int(params["version_id"])
        self.root = str(params["root"])
        self.include: list[str] = list(params["include"])
        self.exclude: list[str] = list(params["exclude"])
        self.model = model_label(embedder.model_name)
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, ctx: JobContext) -> str | None:
        # Every run (a resume too) scans the whole folder again, so its counts and errors start afresh.
        ctx.counts = dict.fromkeys(COUNTS, 0)
        ctx.errors, ctx.errors_total, ctx.done = [], 0, 0
        try:
            return await self._run(ctx)
        except JobCancelled:
            if self._writer is not None:
                await self._writer  # the batch being written is kept; the next one is not started
            raise
        except BaseException:
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            raise

    async def _run(self, ctx: JobContext) -> str | None:
        s = self.settings
        scan = await anyio.to_thread.run_sync(
            lambda: safefiles.scan(
                self.root,
                self.roots,
                include=self.include,
                exclude=self.exclude,
                max_files=s.max_files,
                max_bytes=s.max_file_bytes,
            )
        )
        known = await store.doc_state(self.db, self.version, self.root)
        files: list[safefiles.ScannedFile] = []
        for f in scan.files:
            if kind_for_path(f.path) is None:
                self._skip(ctx, f.path, "no parser for this file type")
            else:
                files.append(f)
        for skipped in scan.skipped:
            self._skip(ctx, skipped.path, skipped.reason)
        if scan.truncated:
            self._skip(ctx, ".", f"over the limit of {s.max_files} files per job (DOCUMENTATION_MAX_FILES)")
        ctx.counts["files_total"] = len(files)
        await ctx.step(done=0, total=len(files), message="scanned")
        batch: list[Prepared] = []
        pending = 0
        for file in files:
            await ctx.step(done=ctx.counts["files_done"], message=file.path)
            result = await anyio.to_thread.run_sync(prepare_file, file, self.roots, known.get(file.path), self.model, s)
            if result is None:
                ctx.count("unchanged")
                ctx.count("files_done")
            elif isinstance(result, str):
                ctx.error(file.path, result)
                ctx.count("failed")
                ctx.count("files_done")
            else:
                batch.append(result)
                pending += len(result.parsed.chunks)
                if pending >= s.embedding_batch_size:
                    await self._flush(ctx, batch)
                    batch, pending = [], 0
        await self._flush(ctx, batch)
        if self._writer is not None:
            await self._writer
        if not scan.truncated:  # files past the limit were not seen, so nothing is known to be gone
            present = {f.path for f in scan.files} | {x.path for x in scan.skipped}
            gone = sorted(set(known) - present)
            if gone:
                async with self.db.transaction() as conn:
                    ctx.counts["deleted"] = await store.delete_documents(conn, self.version, self.root, gone)
        await ctx.step(done=ctx.counts["files_done"], message="done")
        log.info("ingest_job_finished", job=ctx.job.id, **ctx.counts)
        return None

    def _skip(self, ctx: JobContext, path: str, reason: str) -> None:
        ctx.error(path, reason)
        ctx.count("skipped")

    async def _write(self, ctx: JobContext, batch: list[Prepared]) -> None:
        for item in batch:
            async with self.db.transaction() as conn:
                await save(conn, item, version=self.version, source="folder", root=self.root, model=self.model)
            ctx.count("updated" if item.existed else "added")
            ctx.count("chunks", len(item.vectors))
            ctx.count("files_done")

    async def _flush(self, ctx: JobContext, batch: list[Prepared]) -> None:
        if not batch:
            return
        limit = self.settings.embed_chars
        texts = [
            embed_text(p.parsed.title, c.heading_path, c.text, limit, c.keys) for p in batch for c in p.parsed.chunks
        ]
        vectors = await embed_batched(self.embedder, texts, self.settings.embed_batch)
        i = 0
        for item in batch:
            n = len(item.parsed.chunks)
            item.vectors = list(vectors[i : i + n])
            i += n
        if self._writer is not None:
            await self._writer  # at most one batch being written while the next is embedded
        self._writer = asyncio.create_task(self._write(ctx, batch))
