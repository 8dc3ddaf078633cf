"""Inputs and structured results of the memory tools. Lean on purpose: every output schema is sent to the client
in ``tools/list``, so fields are few and their schema carries no generated titles."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.paging import Paged

Scope = Literal["session", "project", "global"]
State = Literal["active", "archived"]
Mode = Literal["hybrid", "semantic", "keyword"]


def _strip_titles(schema: dict[str, Any], _cls: type[Any]) -> None:
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)


class Out(BaseModel):
    """Base of every result model: no titles in the JSON schema."""

    model_config = ConfigDict(json_schema_extra=_strip_titles)


class MemoryIn(BaseModel):
    """One memory of a batch."""

    model_config = ConfigDict(json_schema_extra=_strip_titles)

    content: str
    kind: str = "note"
    tags: list[str] = []
    importance: float = Field(default=0.5, ge=0, le=1)
    metadata: dict[str, Any] = {}


class Memory(Out):
    id: str
    workspace: str
    scope: Scope
    parent_id: str | None
    kind: str
    content: str
    tags: list[str]
    metadata: dict[str, Any]
    importance: float
    state: State
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


class Ref(Out):
    id: str
    version: int
    state: State
    created: bool


class Stored(Out):
    items: list[Ref]
    created: int
    duplicates: int


class Hit(Out):
    id: str
    content: str
    kind: str
    tags: list[str]
    workspace: str
    created_at: datetime
    score: float
    similarity: float | None
    keyword_rank: float | None
    recency: float
    importance: float


class Recall(Out, Paged):
    hits: list[Hit]
    warning: str | None


class Context(Out):
    text: str
    ids: list[str]
    tokens: int
    budget: int
    omitted: int


class MemoryWithChildren(Memory):
    children: list["Node"]
    children_total: int


class Count(Out):
    count: int
    ids: list[str]
    dry_run: bool


class Node(Out):
    id: str
    parent_id: str | None
    depth: int
    kind: str
    snippet: str


class Tree(Out):
    nodes: list[Node]
    total: int
    truncated: bool


class Group(Out):
    keeper: str
    duplicates: list[str]
    similarity: float


class Consolidation(Out):
    groups: list[Group]
    merged: int
    truncated: bool


class Workspace(Out):
    name: str
    active: int
    archived: int
    last_updated: datetime | None


class Workspaces(Out, Paged):
    workspaces: list[Workspace]


class Stats(Out):
    workspace: str
    active: int
    archived: int
    expiring: int
    by_scope: dict[str, int]
    by_kind: dict[str, int]
    top_tags: dict[str, int]
    models: dict[str, int]
    oldest: datetime | None
    newest: datetime | None


class Reembedded(Out):
    dry_run: bool
    model: str
    #: Memories whose vector another model made, by that model, before this call.
    stale: dict[str, int]
    reembedded: int
    #: Edited while this call ran: their edit re-embedded them already.
    skipped: int
    remaining: int


class Imported(Out):
    read: int
    created: int
    duplicates: int
    skipped: int


MemoryWithChildren.model_rebuild()
