"""The notes service: every operation of the notes server, with no MCP in sight.

The template for a server's service class: one method per operation; it owns transactions,
embeddings, events and change notifications; it raises ``common.errors`` for anything a caller can
fix; it is started and stopped by :meth:`NotesService.open`, which the server's lifespan enters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import asyncpg

from common.errors import InvalidInput, NotFound
from common.paging import Page, decode_cursor, fingerprint, page_of
from common.runtime import Deps
from common.vectors import VectorRecord
from servers.notes import store
from servers.notes.models import Note, NoteHit, SavedNote, SearchResult
from servers.notes.settings import Settings

#: The vector collection of the notes (in pgvector by default, or Qdrant with VECTOR_BACKEND=qdrant).
COLLECTION = "notes"


def note_uri(title: str) -> str:
    """The resource URI of a note; clients may subscribe to it."""
    return f"notes://notes/{quote(title, safe='')}"


def _note(row: dict[str, Any]) -> Note:
    return Note(**{k: row[k] for k in Note.model_fields})


class NotesService:
    """Save, read, search and delete notes (see the module docstring)."""

    def __init__(self, deps: Deps, settings: Settings) -> None:
        self.deps = deps
        self.settings = settings
        self._collection_ready = False

    @classmethod
    @asynccontextmanager
    async def open(cls, deps: Deps, settings: Settings) -> AsyncIterator[NotesService]:
        """The running service; background work would start here and stop on exit."""
        yield cls(deps, settings)

    async def _collection(self) -> None:
        if not self._collection_ready:
            d = self.deps
            await d.vectors.ensure_collection(COLLECTION, dim=d.embedder.dim, model=d.embedder.model_name)
            self._collection_ready = True

    async def save(self, title: str, body: str, tags: list[str]) -> SavedNote:
        """Save a note, or replace the one with the same title."""
        if len(body) > self.settings.max_body_chars:
            raise InvalidInput(f"body has {len(body)} characters; the limit is {self.settings.max_body_chars}.")
        d = self.deps
        vector = await d.embedder.embed_one(f"{title}\n{body}")
        await self._collection()

        async def write(conn: asyncpg.Connection) -> dict[str, Any]:
            return await store.upsert(conn, title, body, tags)

        row = await d.db.run_in_transaction(write)
        await d.vectors.upsert(COLLECTION, [VectorRecord(id=row["id"], vector=vector, payload={"tags": tags})])
        await d.events.publish("note.saved", {"title": title, "id": row["id"]})
        await d.subscriptions.resource_updated(note_uri(title))
        return SavedNote(note=_note(row), created=bool(row["created"]))

    async def get(self, title: str) -> Note:
        """One note by its exact title."""
        row = await store.get(self.deps.db, title)
        if row is None:
            raise NotFound(f"No note titled {title[:80]!r}. Use search_notes to find notes by meaning.")
        return _note(row)

    async def search(self, query: str, *, limit: int, tag: str | None, min_score: float) -> SearchResult:
        """Notes by meaning, best first."""
        d = self.deps
        await self._collection()
        vector = await d.embedder.embed_one(query)
        flt = {"tags": tag} if tag else None
        hits = await d.vectors.search(COLLECTION, vector, limit=limit + 1, filter=flt, score_threshold=min_score)
        rows = await store.get_many(d.db, [h.id for h in hits[:limit]])
        out = [
            NoteHit(title=r["title"], score=round(h.score, 4), snippet=r["body"][:200], tags=r["tags"])
            for h in hits[:limit]
            if (r := rows.get(h.id))
        ]
        return SearchResult(hits=out, total=len(out), truncated=len(hits) > limit)

    async def list(self, *, tag: str | None, limit: int, cursor: str | None) -> Page[Note]:
        """Notes by title, a page at a time."""
        fp = fingerprint("list_notes", tag)
        offset = decode_cursor(cursor, fp).offset
        rows, total = await store.list_page(self.deps.db, tag, limit, offset)
        return page_of([_note(r) for r in rows], total=total, offset=offset, limit=limit, fp=fp)

    async def delete(self, title: str) -> None:
        """Delete a note for good."""
        d = self.deps

        async def remove(conn: asyncpg.Connection) -> str | None:
            return await store.delete(conn, title)

        note_id = await d.db.run_in_transaction(remove)
        if note_id is None:
            raise NotFound(f"No note titled {title[:80]!r}; nothing was deleted.")
        await d.vectors.delete(COLLECTION, ids=[note_id])
        await d.events.publish("note.deleted", {"title": title, "id": note_id})
        await d.subscriptions.resource_updated(note_uri(title))
