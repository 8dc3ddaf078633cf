"""Rows of schema ``code_quality`` as records and views, and the runner's result cache over its table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from common.rows import model_of
from common.runtime import Deps
from servers.code_quality import store
from servers.code_quality.models import FindingView, OutcomeView, RunSummary, SkipView
from servers.code_quality.records import Finding
from servers.code_quality.runner import CacheKey

#: Skipped files shown in a run summary a tool returns (the run resource shows more).
MAX_SKIPPED_SHOWN = 50


class PgResultCache:
    """The runner's ``ResultCache`` over table ``result_cache``: shared by every process and run."""

    def __init__(self, deps: Deps) -> None:
        self.db = deps.db

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, dict[str, Any]]:
        return await store.cache_get(self.db, keys) if keys else {}

    async def put_many(self, items: Mapping[CacheKey, dict[str, Any]]) -> None:
        if items:
            keys = list(items)
            # Encoding thousands of entries takes a while: off the event loop, which reads the analyzers' pipes.
            values = await asyncio.to_thread(lambda: [json.dumps(items[k]) for k in keys])
            await store.cache_put(self.db, keys, values)


def finding_from_row(row: Mapping[str, Any]) -> Finding:
    return model_of(Finding, row, column=row["col"])


def finding_view(row: Mapping[str, Any]) -> FindingView:
    return model_of(
        FindingView,
        row,
        column=row["col"],
        status=row.get("status") or "open",
        status_by=row.get("actor") or None,
        status_reason=row.get("reason") or None,
    )


def run_gaps(run: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(a, p) for a, p in run["gaps"]}


def summary_of(run: Mapping[str, Any], skipped: int = MAX_SKIPPED_SHOWN) -> RunSummary:
    outcomes = [
        model_of(OutcomeView, o, files_failed=len(o["files_failed"]), failed_examples=o["files_failed"][:10])
        for o in run["outcomes"]
    ]
    return model_of(
        RunSummary,
        run,
        analyzers=outcomes,
        skipped=[SkipView(**s) for s in run["skipped"][:skipped]],
        skipped_total=len(run["skipped"]),
    )


def search_text(f: Finding) -> str:
    return f"{f.rule_id} {f.category} {f.message}"
