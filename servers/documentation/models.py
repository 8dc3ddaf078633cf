"""Structured results of the documentation tools. Small on purpose: every schema is sent in tools/list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from common.paging import Paged


class Version(BaseModel):
    version: str
    documents: int = 0
    chunks: int = 0
    endpoints: int = 0
    models: list[str] = []
    needs_reembed: bool = False


class Project(BaseModel):
    name: str
    description: str
    versions: list[Version]


class Projects(Paged):
    projects: list[Project]
    message: str | None = None


class Job(BaseModel):
    id: str
    project: str
    version: str
    root: str
    status: str
    counts: dict[str, int]
    current_file: str | None
    errors: list[dict[str, str]]
    errors_total: int
    message: str | None
    attempts: int
    heartbeat_at: datetime
    finished_at: datetime | None


class Jobs(Paged):
    jobs: list[Job]


class Saved(BaseModel):
    document_id: int
    citation: str
    chunks: int
    created: bool


class Place(BaseModel):
    """Another matching section of the same document."""

    heading_path: list[str]
    anchor: str


class Hit(BaseModel):
    citation: str
    document_id: int
    path: str
    heading_path: list[str]
    #: The section's anchor (an HTML id where the page had one); also at the end of ``citation``.
    anchor: str
    snippet: str
    score: float
    #: API names the matching chunk defines (``functools.lru_cache``).
    names: list[str] = []
    #: The document's other matching sections, best first (one hit per document).
    sections: list[Place] = []


class Hits(Paged):
    hits: list[Hit]
    notice: str | None = None


class Section(BaseModel):
    level: int
    title: str
    anchor: str


class Doc(BaseModel):
    id: int
    path: str
    title: str
    kind: str
    chars: int
    toc: list[Section] | None = None


class Page(BaseModel):
    document_id: int | None = None
    citation: str
    title: str
    offset: int
    total_chars: int
    next_offset: int | None
    text: str
    toc: list[Section] | None = None
    documents: list[Doc] | None = None


class Docs(Paged):
    documents: list[Doc]


class SpecImport(BaseModel):
    spec_id: int
    title: str
    spec_version: str
    endpoints: int
    compared_to: str | None
    added: list[str]
    removed: list[str]
    changed: list[str]


class Endpoint(BaseModel):
    project: str
    version: str
    method: str
    path: str
    operation_id: str | None
    summary: str
    tags: list[str]
    score: float | None = None
    description: str | None = None
    parameters: list[dict[str, Any]] | None = None
    request_body: dict[str, Any] | None = None
    responses: dict[str, Any] | None = None


class Endpoints(Paged):
    endpoints: list[Endpoint]


class Generated(BaseModel):
    id: int
    kind: str
    project: str
    version: str
    document_id: int
    path: str
    spec_id: int | None
    created_at: datetime
    chars: int
    preview: str | None = None


class GeneratedList(Paged):
    items: list[Generated]


class Reembedded(BaseModel):
    model: str
    chunks: int
    endpoints: int
