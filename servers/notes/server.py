"""Wiring of the notes server: thin tools over store.py and common/."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, unquote

import asyncpg
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from common.errors import InvalidInput, NotFound
from common.runtime import READ, WRITE, Deps, Hints, create_server, deps, tool_registrar
from common.vectors import VectorRecord
from servers.notes import store
from servers.notes.models import Deleted, Note, NoteHit, SavedNote, SearchResult
from servers.notes.settings import Settings

COLLECTION = "notes"

Title = Annotated[str, Field(min_length=1, max_length=200, description="Unique title of the note.")]


def note_uri(title: str) -> str:
    """The resource URI of a note; clients may subscribe to it."""
    return f"notes://notes/{quote(title, safe='')}"


def _note(row: dict[str, Any]) -> Note:
    return Note(**{k: row[k] for k in Note.model_fields})


async def _index(d: Deps) -> None:
    await d.vectors.ensure_collection(COLLECTION, dim=d.embedder.dim, model=d.embedder.model_name)


def build(settings: Settings) -> MCPServer[Deps]:
    """The notes server; tools see their dependencies through ``deps(ctx)``."""
    server = create_server(
        "notes", settings, instructions="Example server: save short notes and find them again by meaning."
    )

    async def save_note(
        title: Title,
        body: Annotated[str, Field(min_length=1, description="The note's text.")],
        ctx: Context,
        tags: Annotated[list[str], Field(max_length=20, description="Optional labels.")] = [],  # noqa: B006
    ) -> SavedNote:
        """Save a note, or replace the note with the same title. Use for anything worth finding later."""
        d = await deps(ctx)
        if len(body) > settings.max_body_chars:
            raise InvalidInput(f"body has {len(body)} characters; the limit is {settings.max_body_chars}.")
        vector = await d.embedder.embed_one(f"{title}\n{body}")
        await _index(d)

        async def write(conn: asyncpg.Connection) -> dict[str, Any]:
            return await store.upsert(conn, title, body, tags)

        row = await d.db.run_in_transaction(write)
        await d.vectors.upsert(COLLECTION, [VectorRecord(id=row["id"], vector=vector, payload={"tags": tags})])
        await d.cache.delete(f"note:{title}")
        await d.events.publish("note.saved", {"title": title, "id": row["id"]})
        await d.subscriptions.resource_updated(note_uri(title))
        return SavedNote(note=_note(row), created=bool(row["created"]))

    async def get_note(title: Title, ctx: Context) -> Note:
        """Read one note by its exact title."""
        d = await deps(ctx)

        async def load() -> dict[str, Any] | None:
            row = await store.get(d.db, title)
            return None if row is None else Note(**row).model_dump(mode="json")

        cached = await d.cache.get_or_compute(f"note:{title}", load)
        if cached is None:
            raise NotFound(f"No note titled {title!r}. Use search_notes to find notes by meaning.")
        return Note.model_validate(cached)

    async def search_notes(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for.")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=50, description="Most hits to return.")] = 5,
        tag: Annotated[str | None, Field(description="Only notes carrying this tag.")] = None,
        min_score: Annotated[float, Field(ge=0, le=1, description="Drop hits below this similarity.")] = 0.0,
    ) -> SearchResult:
        """Find notes by meaning, best first."""
        d = await deps(ctx)
        await _index(d)
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

    async def delete_note(title: Title, ctx: Context) -> Deleted:
        """Delete a note for good."""
        d = await deps(ctx)

        async def remove(conn: asyncpg.Connection) -> str | None:
            return await store.delete(conn, title)

        note_id = await d.db.run_in_transaction(remove)
        if note_id is None:
            raise NotFound(f"No note titled {title!r}; nothing was deleted.")
        await d.vectors.delete(COLLECTION, ids=[note_id])
        await d.cache.delete(f"note:{title}")
        await d.events.publish("note.deleted", {"title": title, "id": note_id})
        await d.subscriptions.resource_updated(note_uri(title))
        return Deleted(deleted=True)

    @server.resource("notes://notes/{title}", name="note", mime_type="application/json")
    async def note_resource(title: str, ctx: Context) -> str:
        """One note as JSON; subscribe to hear when any process changes it."""
        row = await store.get((await deps(ctx)).db, unquote(title))
        if row is None:
            raise NotFound(f"No note titled {unquote(title)!r}.")
        return Note(**row).model_dump_json()

    register = tool_registrar(server, settings)
    register(save_note, "Save note", WRITE)
    register(get_note, "Get note", READ)
    register(search_notes, "Search notes", READ)
    register(delete_note, "Delete note", Hints(read_only=False, destructive=True, idempotent=False))
    return server
