"""Wiring of the memory server: thin tools over :class:`~servers.memory_management.service.MemoryService`.

Each tool validates its arguments (the ``Annotated`` types), calls one service method and returns
its model; ``build`` adds the resources and the prompt. Annotations are strings (``from __future__``)
so the modules they name load with the connection, after the handshake.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer

from common.runtime import Deps, ServiceTools, create_server, server_service
from common.tool_schema import CursorArg, P
from common.tools import APPEND, DELETE, EXTERNAL, READ, WRITE, args_of
from servers.memory_management import bridge
from servers.memory_management.models import (
    Consolidation,
    Count,
    Imported,
    MemoryIn,
    MemoryWithChildren,
    Mode,
    Recall,
    Reembedded,
    Ref,
    Scope,
    Stats,
    Stored,
    Tree,
    Workspaces,
)
from servers.memory_management.models import Context as ContextBlock
from servers.memory_management.service import NAME, REEMBED_MAX, MemoryService
from servers.memory_management.settings import Settings
from servers.memory_management.validate import MAX_TAGS

TITLE = "Memory"
INSTRUCTIONS = (
    "Long-term memory. Call recall (or build_context) before answering questions about past work, "
    "and store_memory for durable facts, decisions and preferences worth keeping."
)

WorkspaceArg = Annotated[str | None, P("Default from settings.")]
AnyWorkspace = Annotated[str | None, P("Workspace; '*' for all.")]
Id = Annotated[uuid.UUID, P("Memory id.")]
Tags = Annotated[list[str] | None, P("Labels.", max_length=MAX_TAGS)]
HasTags = Annotated[list[str] | None, P("Has all these.", max_length=MAX_TAGS)]

# Outputs are outlined (field names only; the docs give the nesting): clients check every result
# against the output schema, and full recall hits cost that check dearly.
TOOLS = ServiceTools(MemoryService, outline_outputs=True)


@TOOLS.tool("Store memory", WRITE)
async def store_memory(
    content: Annotated[str, P("Self-contained text.")],
    ctx: Context,
    workspace: WorkspaceArg = None,
    scope: Annotated[Scope, P("global: recalled in every workspace.")] = "project",
    parent_id: Annotated[uuid.UUID | None, P("Parent memory.")] = None,
    kind: Annotated[str, P("e.g. note, decision, preference.")] = "note",
    tags: Tags = None,
    metadata: Annotated[dict[str, Any] | None, P("JSON object.")] = None,
    importance: Annotated[float, P("Ranking boost.", ge=0, le=1)] = 0.5,
    ttl_seconds: Annotated[int | None, P("Expire after.", ge=1, le=10 * 365 * 86_400)] = None,
) -> Ref:
    """Remember a durable fact, decision or preference. Text already stored returns the existing memory
    (created=false)."""
    return await (await TOOLS.service(ctx)).store_one(**args_of(locals()))


@TOOLS.tool("Store memories", WRITE)
async def store_memories(
    items: Annotated[list[MemoryIn], P("Memories to store.", min_length=1)],
    ctx: Context,
    workspace: WorkspaceArg = None,
    scope: Annotated[Scope, P("Scope of all items.")] = "project",
) -> Stored:
    """Store many memories in one call (embedded in batches, written in one transaction). Use for imports
    and end-of-task summaries."""
    return await (await TOOLS.service(ctx)).store_many(items, workspace=workspace, scope=scope)


@TOOLS.tool("Recall memories", READ)
async def recall(
    query: Annotated[str, P("What to look for.", max_length=2000)],
    ctx: Context,
    mode: Annotated[Mode, P("Ranking.")] = "hybrid",
    workspace: AnyWorkspace = None,
    scope: Annotated[list[Scope] | None, P("Only these scopes.")] = None,
    tags: HasTags = None,
    kind: Annotated[str | None, P("Only this kind.")] = None,
    since: Annotated[datetime | None, P("Created at or after.")] = None,
    until: Annotated[datetime | None, P("Created before.")] = None,
    min_score: Annotated[float, P("Minimum fused score.", ge=0, le=2)] = 0.0,
    limit: Annotated[int, P("Most hits.", ge=1, le=50)] = 10,
    cursor: CursorArg = None,
) -> Recall:
    """Find memories relevant to a query, best first. Use before answering from past work."""
    return await (await TOOLS.service(ctx)).recall(**args_of(locals()))


@TOOLS.tool("Build context", READ)
async def build_context(
    query: Annotated[str, P("Task or question.", max_length=2000)],
    ctx: Context,
    workspace: AnyWorkspace = None,
    budget: Annotated[int | None, P("Tokens (~4 chars).", ge=50)] = None,
    tags: HasTags = None,
) -> ContextBlock:
    """The most relevant memories as one text block within a token budget, to prime a task."""
    return await (await TOOLS.service(ctx)).build_context(**args_of(locals()))


@TOOLS.tool("Get memory", READ)
async def get_memory(
    id: Id,
    ctx: Context,
    children: Annotated[int, P("Children to list.", ge=0, le=50)] = 0,
) -> MemoryWithChildren:
    """Read one memory, optionally with its children."""
    return await (await TOOLS.service(ctx)).get(id, children=children)


@TOOLS.tool("Update memory", APPEND)
async def update_memory(
    id: Id,
    ctx: Context,
    content: Annotated[str | None, P("New text (re-embedded).")] = None,
    tags: Annotated[list[str] | None, P("Replace the tags.", max_length=MAX_TAGS)] = None,
    metadata: Annotated[dict[str, Any] | None, P("Replace the metadata.")] = None,
    importance: Annotated[float | None, P("0..1.", ge=0, le=1)] = None,
    kind: Annotated[str | None, P("New kind.")] = None,
    ttl_seconds: Annotated[int | None, P("Expire after; 0: never.", ge=0)] = None,
    expected_version: Annotated[int | None, P("Fail unless this version.")] = None,
) -> Ref:
    """Correct a memory; the old version is kept in history."""
    return await (await TOOLS.service(ctx)).update(**args_of(locals()))


@TOOLS.tool("Forget memories", WRITE)
async def forget(
    ctx: Context,
    ids: Annotated[list[uuid.UUID] | None, P("Memory ids.", max_length=1000)] = None,
    workspace: WorkspaceArg = None,
    tags: Annotated[list[str] | None, P("With all these tags.", max_length=MAX_TAGS)] = None,
    kind: Annotated[str | None, P("Of this kind.")] = None,
    before: Annotated[datetime | None, P("Created before.")] = None,
    dry_run: Annotated[bool, P("false: archive.")] = True,
) -> Count:
    """Archive memories by id or filter (restorable). Only counts unless dry_run=false."""
    return await (await TOOLS.service(ctx)).forget(**args_of(locals()))


@TOOLS.tool("Restore memory", WRITE)
async def restore_memory(id: Id, ctx: Context) -> Ref:
    """Bring back a forgotten (archived) memory."""
    return await (await TOOLS.service(ctx)).restore(id)


@TOOLS.tool("Purge memories", DELETE)
async def purge_memories(
    ctx: Context,
    ids: Annotated[list[uuid.UUID] | None, P("Archived memories to delete.", max_length=1000)] = None,
    workspace: WorkspaceArg = None,
    archived_before: Annotated[datetime | None, P("Archived before.")] = None,
    dry_run: Annotated[bool, P("Only count (default); false deletes for good.")] = True,
    limit: Annotated[int, P("Most to delete per call.", ge=1, le=10_000)] = 1_000,
) -> Count:
    """Permanently delete archived memories (by id or workspace). Cannot be undone; counts only unless
    dry_run=false."""
    return await (await TOOLS.service(ctx)).purge(**args_of(locals()))


@TOOLS.tool("Memory tree", READ)
async def memory_tree(
    ctx: Context,
    workspace: WorkspaceArg = None,
    root_id: Annotated[uuid.UUID | None, P("Subtree of this memory instead of the workspace.")] = None,
    depth: Annotated[int, P("Levels below the roots.", ge=0, le=5)] = 3,
    limit: Annotated[int, P("Most nodes.", ge=1, le=500)] = 100,
) -> Tree:
    """The parent/child outline of a workspace or of one memory, depth first."""
    return await (await TOOLS.service(ctx)).tree(**args_of(locals()))


@TOOLS.tool("Move memory", WRITE)
async def move_memory(
    id: Id,
    ctx: Context,
    parent_id: Annotated[uuid.UUID | None, P("New parent; omit to make it a root.")] = None,
) -> Ref:
    """Put a memory under another parent in its workspace (or make it a root). Refuses cycles."""
    return await (await TOOLS.service(ctx)).move(id, parent_id)


@TOOLS.tool("Rate memory", APPEND)
async def rate_memory(
    id: Id,
    ctx: Context,
    useful: Annotated[bool, P("true if it helped, false if not.")],
) -> Ref:
    """Tell the ranking whether a recalled memory helped; useful ones rank higher later."""
    return await (await TOOLS.service(ctx)).rate(id, useful)


@TOOLS.tool("Consolidate memories", APPEND)
async def consolidate(
    ctx: Context,
    workspace: WorkspaceArg = None,
    threshold: Annotated[float | None, P("Cosine similarity for near-duplicates.", ge=0.5, le=1)] = None,
    merge: Annotated[bool, P("false previews (default); true merges, keeping history.")] = False,
    limit: Annotated[int, P("Most groups.", ge=1, le=100)] = 20,
) -> Consolidation:
    """Find near-duplicate memories in a workspace and, with merge=true, fold each group into its best member
    (others archived, history kept)."""
    return await (await TOOLS.service(ctx)).consolidate(**args_of(locals()))


@TOOLS.tool("List workspaces", READ)
async def list_workspaces(
    ctx: Context,
    limit: Annotated[int, P("Most workspaces.", ge=1, le=200)] = 50,
    cursor: CursorArg = None,
) -> Workspaces:
    """The workspaces that hold memories, with active and archived counts."""
    return await (await TOOLS.service(ctx)).workspaces(limit=limit, cursor=cursor)


@TOOLS.tool("Workspace stats", READ)
async def workspace_stats(ctx: Context, workspace: WorkspaceArg = None) -> Stats:
    """Counts of one workspace by state, scope, kind, tag and embedding model."""
    return await (await TOOLS.service(ctx)).stats(workspace)


@TOOLS.tool("Re-embed memories", WRITE)
async def reembed_memories(
    ctx: Context,
    workspace: Annotated[str | None, P("Workspace; '*' or unset for all.")] = None,
    dry_run: Annotated[bool, P("Only count.")] = True,
    max_items: Annotated[int, P("Most memories this call.", ge=1, le=REEMBED_MAX)] = 2_000,
) -> Reembedded:
    """Embed memories another model left (recall warns of them) with the store's model, so semantic
    recall finds them again. Counts first (dry_run); call again while remaining > 0."""
    return await (await TOOLS.service(ctx)).reembed(**args_of(locals()), progress=ctx.report_progress)


@TOOLS.tool("Import from Qdrant", EXTERNAL)
async def import_qdrant(
    collection: Annotated[str, P("Collection name.", min_length=1, max_length=255)],
    ctx: Context,
    qdrant_path: Annotated[str | None, P("Local folder of mcp-server-qdrant.")] = None,
    qdrant_url: Annotated[str | None, P("Qdrant URL.")] = None,
    workspace: WorkspaceArg = None,
    kind: Annotated[str, P("Kind given to imported memories.")] = "note",
) -> Imported:
    """Copy the memories of an mcp-server-qdrant collection into a workspace, re-embedded with this server's
    model. Re-running it skips what was imported before."""
    return await (await TOOLS.service(ctx)).import_qdrant(**args_of(locals()), progress=ctx.report_progress)


def recall_then_answer(question: str, workspace: str = "") -> str:
    """Answer with the help of long-term memory, then remember what was learned."""
    where = f' with workspace "{workspace}"' if workspace else ""
    return (
        f"Before answering, call recall{where} with the question in your own words (try a second phrasing "
        "if the first finds nothing useful). Base the answer on the memories found and cite their ids; say "
        "so when memory has nothing relevant. Call rate_memory on memories that helped or misled. Afterwards, "
        "store_memory any durable fact, decision or preference learned here (one self-contained statement "
        f"each), and update_memory any memory that turned out wrong.\n\nQuestion: {question}"
    )


def build(settings: Settings) -> MCPServer[Deps]:
    """The memory server: tools, resources, a prompt, and the service its lifespan starts."""
    server = create_server(NAME, settings, title=TITLE, tools=TOOLS, instructions=INSTRUCTIONS)

    @server.resource(bridge.WORKSPACES_URI, name="workspaces", mime_type="application/json")
    async def workspaces_resource() -> str:
        """Every workspace with its counts."""
        return await (await server_service(server, MemoryService)).workspace_listing()

    @server.resource("memory://memories/{memory_id}", name="memory", mime_type="application/json")
    async def memory_resource(memory_id: str, ctx: Context) -> str:
        """One memory."""
        return (await (await TOOLS.service(ctx)).memory(memory_id)).model_dump_json()

    server.prompt(name="recall_then_answer", title="Recall, then answer")(recall_then_answer)
    return server


__all__ = ["build"]
