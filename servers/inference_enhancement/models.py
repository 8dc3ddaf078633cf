"""Tool inputs and structured results. Field names of the reference server's shapes are kept
(camelCase, ``from``); keep models small and docstring-free: their schemas go into tools/list."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

_IN = ConfigDict(populate_by_name=True, extra="forbid")
_OUT = ConfigDict(populate_by_name=True)


# ------------------------------------------------------------------------------------- inputs


class EntityIn(BaseModel):
    model_config = _IN

    name: str
    entityType: str
    observations: list[str] = []


class RelationIn(BaseModel):
    model_config = _IN

    from_: str = Field(alias="from")
    to: str
    relationType: str
    validFrom: datetime | None = None
    validTo: datetime | None = None


class RelationKey(BaseModel):
    model_config = _IN

    from_: str = Field(alias="from")
    to: str
    relationType: str


class ObservationsIn(BaseModel):
    model_config = _IN

    entityName: str
    contents: list[str]


class DeletionIn(BaseModel):
    model_config = _IN

    entityName: str
    observations: list[str]


# ------------------------------------------------------------------------------------- results


class Entity(BaseModel):
    model_config = _OUT

    name: str
    entityType: str
    observations: list[str]


class Relation(BaseModel):
    model_config = _OUT

    from_: str = Field(alias="from")
    to: str
    relationType: str


class Graph(BaseModel):
    entities: list[Entity]
    relations: list[Relation]
    next_cursor: str | None = None


class Entities(BaseModel):
    entities: list[Entity]


class Relations(BaseModel):
    relations: list[Relation]


class Added(BaseModel):
    entityName: str
    addedObservations: list[str]


class AddedAll(BaseModel):
    results: list[Added]


class Done(BaseModel):
    success: bool
    message: str


class Imported(BaseModel):
    entities_created: int
    entities_merged: int
    observations_added: int
    relations_created: int
    relations_dangling: int
    dangling: list[str]
    problems: list[str]


class Exported(BaseModel):
    entities: int
    relations: int
    path: str | None
    content: str | None


class Path(BaseModel):
    found: bool
    names: list[str]
    relations: list[Relation]
    visited: int


class Prompt(BaseModel):
    text: str
    entities: list[str]
    tokens: int


class Ranked(BaseModel):
    index: int
    score: float


class Ranking(BaseModel):
    ranked: list[Ranked]


class Fact(BaseModel):
    text: str
    source: str
    created_at: datetime
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class Provenance(BaseModel):
    name: str
    entityType: str
    source: str
    created_at: datetime
    updated_at: datetime
    observations: list[Fact]
    relations: list[Fact]
    next_cursor: str | None = None
