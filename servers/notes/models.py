"""Structured results of the notes tools (they give clients an output schema)."""

from datetime import datetime

from pydantic import BaseModel, Field


class Note(BaseModel):
    id: str
    title: str
    body: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime


class SavedNote(BaseModel):
    note: Note
    created: bool = Field(description="False when an existing note with this title was updated.")


class NoteHit(BaseModel):
    title: str
    score: float = Field(description="Cosine similarity of the query and the note, 0..1.")
    snippet: str
    tags: list[str]


class SearchResult(BaseModel):
    hits: list[NoteHit]
    total: int
    truncated: bool


class Deleted(BaseModel):
    deleted: bool
