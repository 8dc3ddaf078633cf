"""Structured results of the analytics tools (they give clients an output schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from common.jobs import JobView
from common.paging import Paged

JSON = Any


class ColumnOut(BaseModel):
    name: str
    type: str


class DatasetInfo(BaseModel):
    name: str
    description: str
    source_kind: str = Field(description="file or postgres.")
    source: str = Field(description="The file path, or the connection name.")
    format: str
    columns: list[ColumnOut]
    row_count: int
    byte_size: int
    fingerprint: str
    profiled: bool = Field(description="A stored profile matches the current file.")
    updated_at: datetime


class Registered(BaseModel):
    dataset: DatasetInfo | None = Field(default=None, description="Unset while the job still runs.")
    created: bool = Field(default=False, description="False when an existing dataset was replaced.")
    sample: list[dict[str, JSON]] = Field(default_factory=list, description="The first rows.")
    job: JobView | None = Field(default=None, description="The job, when it did not finish within the wait.")


class DatasetsOut(Paged):
    """A page of the catalogue (list), or ``removed`` (remove)."""

    items: list[DatasetInfo] = Field(default_factory=list)
    removed: bool = False
    job: JobView | None = None
    jobs: list[JobView] = Field(default_factory=list)


class ColumnProfileOut(BaseModel):
    name: str
    type: str
    semantic: str
    count: int
    nulls: int
    distinct: int
    min: JSON = None
    max: JSON = None
    mean: float | None = None
    std: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    top: list[tuple[JSON, int]] = Field(default_factory=list, description="Most frequent values and counts.")
    histogram: list[tuple[float, float, int]] = Field(default_factory=list, description="(low, high, count) bins.")


class ProfileOut(BaseModel):
    dataset: str
    rows: int = 0
    approximate: bool = Field(default=False, description="Distinct counts and quantiles are estimates (large data).")
    cached: bool = Field(default=False, description="Read from the stored profile instead of recomputed.")
    columns: list[ColumnProfileOut] = Field(default_factory=list)
    job: JobView | None = Field(default=None, description="The job, when it did not finish within the wait.")


class QueryOut(BaseModel):
    columns: list[ColumnOut]
    rows: list[list[JSON]]
    total_rows: int = Field(description="Rows of the whole result.")
    truncated: bool = Field(description="More rows exist after this page.")
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page.")
    notes: list[str] = Field(default_factory=list)


class SavedQuery(BaseModel):
    name: str
    sql: str
    description: str
    updated_at: datetime


class HistoryEntry(BaseModel):
    id: int
    sql: str
    saved_name: str | None
    ok: bool
    error: str | None
    total_rows: int | None
    elapsed_ms: int
    at: datetime


class SavedQueryResult(Paged):
    """``query`` for save/get; ``items`` (list) or ``history`` with ``total``/``truncated``/``next_cursor``;
    ``deleted`` for delete."""

    query: SavedQuery | None = None
    items: list[SavedQuery] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    deleted: bool = False


class ChartOut(BaseModel):
    """The files are named by the hash of the full Vega-Lite document, kept beside them as ``.vl.json``."""

    png_path: str
    svg_path: str
    spec: dict[str, JSON] = Field(description="The chart spec asked for.")
    description: str
    truncated: bool = Field(description="Only the first 5,000 rows were drawn.")


class PredictionSummary(BaseModel):
    id: int
    source: str
    task: str
    model: str
    target: str
    features: list[str]
    parameters: dict[str, JSON]
    data_fingerprint: str
    metrics: dict[str, float | None]
    predictions: int = Field(description="Stored predicted rows.")
    rescore: dict[str, float | None] | None = None
    notes: list[str] = Field(default_factory=list)
    created_at: datetime


class PredictionOut(Paged):
    prediction: PredictionSummary | None = Field(default=None, description="Unset while the job still runs.")
    predicted: list[dict[str, JSON]] = Field(
        default_factory=list, description="A page of predicted rows: key, value (lower/upper, actual)."
    )
    job: JobView | None = Field(default=None, description="The job, when it did not finish within the wait.")


class PredictionsOut(Paged):
    """``items`` (list), or ``prediction`` with a page of ``predicted`` rows (get), or ``prediction`` (rescore)."""

    items: list[PredictionSummary] = Field(default_factory=list)
    prediction: PredictionSummary | None = None
    predicted: list[dict[str, JSON]] = Field(default_factory=list)


class PatternOut(BaseModel):
    id: int
    source: str
    kind: str
    columns: list[str]
    statistic: float
    strength: str
    p_value: float | None = None
    description: str
    details: dict[str, JSON] = Field(default_factory=dict)
    score: float | None = Field(default=None, description="Search rank score (higher is better).")


class PatternsOut(Paged):
    items: list[PatternOut]
    notes: list[str] = Field(default_factory=list)
