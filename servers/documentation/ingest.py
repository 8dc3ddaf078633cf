"""Folder ingestion as a persisted, cancellable, resumable job.

Files are read, hashed and parsed one by one; their chunks are embedded in batches of
``EMBEDDING_BATCH_SIZE`` and each file is then written in its own transaction (old chunks deleted,
new ones inserted), so a job killed at any point leaves every file either old or new, never both.
Resuming simply runs the same scan again: unchanged files are skipped by content hash, so a
resumed job does only the work that is left.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from common.db import Database
from common.embeddings import Embedder
from common.logging import get_logger
from servers.documentation import paths, store
from servers.documentation.chunking import Parsed, kind_for_path, parse
from servers.documentation.settings import Settings

log = get_logger(__name__)

Progress = Callable[[float, float, str], Awaitable[None]]
ChunkRow = tuple[list[str], str, str, int, int, str, np.ndarray]


@dataclass
class Prepared:
    """A parsed file waiting for its vectors."""

    path: str
    kind: str
    content_hash: str
    parsed: Parsed
    existed: bool
    vectors: list[np.ndarray] = field(default_factory=list)


def embed_text(title: str, heading_path: tuple[str, ...] | list[str], text: str, limit: int = 300) -> str:
    """What the model sees: the heading path (context the text lacks) and the start of the chunk.

    Only the start, because transformer cost grows with the square of the length: on a 2-core machine
    MiniLM embeds a 1,200-character passage several times slower than a 300-character one, and the
    full text stays searchable through the full-text half of hybrid search.
    """
    context = " > ".join(heading_path) or title
    body = text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0]
    return f"{context}\n{body}" if context else body


async def embed_batched(embedder: Embedder, texts: list[str], size: int) -> list[np.ndarray]:
    """Embed in calls of at most ``size`` texts.

    ONNX Runtime keeps the memory of the largest batch it has run: 64 passages of ~100 tokens take
    the process from about 270 MB to 500 MB, 64 of ~400 tokens to over 3 GB. Small calls keep an
    ingest's peak bounded at the same throughput (measured equal for 16 and 64 on 2 cores).
    """
    out: list[np.ndarray] = []
    for i in range(0, len(texts), size):
        out.extend(await embedder.embed(texts[i : i + size]))
    return out


def heading_of(title: str, heading_path: tuple[str, ...] | list[str]) -> str:
    return " > ".join(heading_path) or title


def toc_of(parsed: Parsed) -> list[dict[str, Any]]:
    return [
        {"level": h.level, "title": h.title, "anchor": h.slug, "start": h.start, "end": h.end} for h in parsed.headings
    ]


def chunk_rows(parsed: Parsed, vectors: list[np.ndarray]) -> list[ChunkRow]:
    return [
        (list(c.heading_path), heading_of(parsed.title, c.heading_path), c.anchor, c.start, c.end, c.text, v)
        for c, v in zip(parsed.chunks, vectors, strict=True)
    ]


def check_dim(embedder: Embedder) -> None:
    from common.errors import InvalidInput

    if embedder.dim != 384:
        raise InvalidInput(
            f"EMBEDDING_MODEL={embedder.model_name!r} makes {embedder.dim}-dimensional vectors; documentation stores "
            "384-dimensional ones. Unset EMBEDDING_MODEL or pick a 384-dimensional model."
        )


class JobRunner:
    """Runs one folder job to an end state: done, failed or cancelled (or interrupted by a kill)."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        settings: Settings,
        job_id: str,
        version: int,
        root: Path,
        allowed_root: Path,
        include: list[str],
        exclude: list[str],
        progress: Progress | None = None,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.settings = settings
        self.job_id = job_id
        self.version = version
        self.root = root
        self.allowed_root = allowed_root
        self.include = include
        self.exclude = exclude
        self.progress = progress
        self.model = embedder.model_name
        self.counts: dict[str, int] = dict.fromkeys(
            ("files_total", "files_done", "added", "updated", "unchanged", "deleted", "skipped", "failed", "chunks"), 0
        )
        self.errors: list[dict[str, str]] = []
        self.current: str | None = None
        self._last_beat = 0.0
        self._last_progress = 0.0
        self._cancelled = False
        self._writer: asyncio.Task[None] | None = None

    async def _beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_beat >= self.settings.heartbeat_s:
            self._last_beat = now
            if await store.heartbeat(self.db, self.job_id, self.counts, self.current, self.errors):
                self._cancelled = True

    async def _report(self, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self._last_progress >= 0.25):
            self._last_progress = now
            total = max(self.counts["files_total"], 1)
            try:
                await self.progress(float(self.counts["files_done"]), float(total), message)
            except Exception as exc:  # a client that stopped listening must not fail the job
                log.debug("progress_failed", error=str(exc))

    def _fail(self, path: str, reason: str) -> None:
        self.errors.append({"path": path, "reason": reason})
        self.counts["failed"] += 1
        self.counts["files_done"] += 1

    async def _write(self, batch: list[Prepared]) -> None:
        for item in batch:
            async with self.db.transaction() as conn:
                await store.write_document(
                    conn,
                    version=self.version,
                    path=item.path,
                    title=item.parsed.title,
                    kind=item.kind,
                    source="folder",
                    root=str(self.root),
                    content=item.parsed.text,
                    content_hash=item.content_hash,
                    model=self.model,
                    toc=toc_of(item.parsed),
                    chunks=chunk_rows(item.parsed, item.vectors),
                )
            self.counts["updated" if item.existed else "added"] += 1
            self.counts["chunks"] += len(item.vectors)
            self.counts["files_done"] += 1

    async def _flush(self, batch: list[Prepared]) -> None:
        if not batch:
            return
        limit = self.settings.embed_chars
        texts = [embed_text(p.parsed.title, c.heading_path, c.text, limit) for p in batch for c in p.parsed.chunks]
        vectors = await embed_batched(self.embedder, texts, self.settings.embed_batch)
        i = 0
        for item in batch:
            n = len(item.parsed.chunks)
            item.vectors = list(vectors[i : i + n])
            i += n
        if self._writer is not None:
            await self._writer  # at most one batch being written while the next is embedded
        self._writer = asyncio.create_task(self._write(batch))

    def _prepare(self, cand: paths.Candidate, known: tuple[str, str] | None) -> Prepared | str | None:
        """Read, hash and parse one file (in a worker thread). None: unchanged; str: why it failed."""
        try:
            data = cand.absolute.read_bytes()
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        if len(data) > self.settings.max_file_bytes:
            return f"too large: {len(data)} bytes > limit {self.settings.max_file_bytes}"
        digest = hashlib.sha256(data).hexdigest()
        if known == (digest, self.model):
            return None
        try:
            content = paths.decode(data)
        except ValueError as exc:
            return str(exc)
        kind = kind_for_path(cand.path)
        assert kind is not None
        try:
            parsed = parse(kind, content, cand.path, self.settings.chunk_chars)
        except SyntaxError as exc:
            return f"Python syntax error line {exc.lineno}: {exc.msg}"
        except Exception as exc:  # a parser bug on one file must not stop the job; it is listed instead
            return f"parser failed: {type(exc).__name__}: {exc}"
        return Prepared(cand.path, kind, digest, parsed, existed=known is not None)

    async def run(self) -> str:
        """Run to the end; returns the final status."""
        status, message = "done", None
        try:
            status, message = await self._run()
        except asyncio.CancelledError:
            await asyncio.shield(self._finish("cancelled", "The request was cancelled; resume the job to finish."))
            raise
        except Exception as exc:
            log.error("ingest_job_failed", job=self.job_id, exc_info=exc)
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        await self._finish(status, message)
        return status

    async def _finish(self, status: str, message: str | None) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        await store.finish_job(self.db, self.job_id, status, self.counts, self.errors, message)
        await store.mark_reembed(self.db, self.model)
        log.info("ingest_job_finished", job=self.job_id, status=status, **self.counts)

    async def _run(self) -> tuple[str, str | None]:
        s = self.settings
        scan = await anyio.to_thread.run_sync(
            paths.scan, self.root, self.allowed_root, self.include, self.exclude, s.max_file_bytes, s.max_files
        )
        known = await store.doc_state(self.db, self.version, str(self.root))
        self.counts["files_total"] = len(scan.files)
        self.counts["skipped"] = len(scan.skipped)
        self.errors.extend(scan.skipped)
        await self._beat(force=True)
        batch: list[Prepared] = []
        pending = 0
        for cand in scan.files:
            self.current = cand.path
            await self._beat()
            if self._cancelled:
                break
            result = await anyio.to_thread.run_sync(self._prepare, cand, known.get(cand.path))
            if result is None:
                self.counts["unchanged"] += 1
                self.counts["files_done"] += 1
            elif isinstance(result, str):
                self._fail(cand.path, result)
            else:
                batch.append(result)
                pending += len(result.parsed.chunks)
                if pending >= s.embedding_batch_size:
                    await self._flush(batch)
                    batch, pending = [], 0
            await self._report(cand.path)
        if not self._cancelled:
            await self._flush(batch)
        if self._writer is not None:
            await self._writer
        self.current = None
        if self._cancelled:
            return "cancelled", "Cancelled on request; files written so far are kept. Resume to finish."
        present = {c.path for c in scan.files} | {e["path"] for e in scan.skipped}
        gone = sorted(set(known) - present)
        if gone:
            async with self.db.transaction() as conn:
                self.counts["deleted"] = await store.delete_documents(conn, self.version, str(self.root), gone)
        await self._report("done", force=True)
        return "done", None
