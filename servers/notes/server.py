"""Wiring of the notes server: thin tools over :class:`~servers.notes.service.NotesService`.

Each tool validates its arguments (the ``Annotated`` types), calls one service method and returns
its model; each tool is declared on ``TOOLS`` where it is defined; ``build`` adds the resource. Copy this shape.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from mcp.server.mcpserver import Context, MCPServer

from common.paging import Page
from common.runtime import Deps, ServiceTools, create_server
from common.tool_schema import P
from common.tools import READ, WRITE, Hints
from servers.notes.models import Deleted, Note, SavedNote, SearchResult
from servers.notes.service import NotesService, note_uri
from servers.notes.settings import Settings

NAME = "notes"
TITLE = "Notes (example)"

Title = Annotated[str, P("Unique title of the note.", min_length=1, max_length=200)]
Tag = Annotated[str | None, P("Only notes carrying this tag.", max_length=50)]


INSTRUCTIONS = "Example server: save short notes and find them again by meaning."

TOOLS = ServiceTools(NotesService)


@TOOLS.tool("Save note", WRITE)
async def save_note(
    title: Title,
    body: Annotated[str, P("The note's text.", min_length=1)],
    ctx: Context,
    tags: Annotated[list[str], P("Optional labels.", max_length=20)] = [],  # noqa: B006
) -> SavedNote:
    """Save a note, or replace the note with the same title. Use for anything worth finding later."""
    return await (await TOOLS.service(ctx)).save(title, body, tags)


@TOOLS.tool("Get note", READ)
async def get_note(title: Title, ctx: Context) -> Note:
    """Read one note by its exact title."""
    return await (await TOOLS.service(ctx)).get(title)


@TOOLS.tool("Search notes", READ)
async def search_notes(
    query: Annotated[str, P("What to look for.", min_length=1, max_length=2000)],
    ctx: Context,
    limit: Annotated[int, P("Most hits to return.", ge=1, le=50)] = 5,
    tag: Tag = None,
    min_score: Annotated[float, P("Drop hits below this similarity.", ge=0, le=1)] = 0.0,
) -> SearchResult:
    """Find notes by meaning, best first."""
    return await (await TOOLS.service(ctx)).search(query, limit=limit, tag=tag, min_score=min_score)


@TOOLS.tool("List notes", READ)
async def list_notes(
    ctx: Context,
    tag: Tag = None,
    limit: Annotated[int, P("Most notes per page.", ge=1, le=100)] = 20,
    cursor: Annotated[str | None, P("From next_cursor.", max_length=512)] = None,
) -> Page[Note]:
    """List notes by title, a page at a time."""
    return await (await TOOLS.service(ctx)).list(tag=tag, limit=limit, cursor=cursor)


@TOOLS.tool("Delete note", Hints(read_only=False, destructive=True, idempotent=False))
async def delete_note(title: Title, ctx: Context) -> Deleted:
    """Delete a note for good."""
    await (await TOOLS.service(ctx)).delete(title)
    return Deleted(deleted=True)


def build(settings: Settings) -> MCPServer[Deps]:
    """The notes server: tools, a resource, and the service its lifespan starts."""

    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource("notes://notes/{title}", name="note", mime_type="application/json")
    async def note_resource(title: str, ctx: Context) -> str:
        """One note as JSON; subscribe to hear when any process changes it."""
        return (await (await TOOLS.service(ctx)).get(unquote(title))).model_dump_json()

    return server


__all__ = ["build", "note_uri"]
