"""One analysis of a tree, end to end: list, run the analyzers, measure duplication, sum up.

What a service method calls for "analyse this folder". With ``changed_since``, the slow analyzers named
in ``scoped`` analyse only the files changed since that ref (their cached results cover the rest; what
neither covers is reported as a gap), while the fast ones still cover every file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from servers.code_quality.analyzers.base import Analyzer
from servers.code_quality.duplication import DuplicationReport, find_duplicates
from servers.code_quality.files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    FileListing,
    GitInfo,
    changed_since,
    git_info,
    list_files,
)
from servers.code_quality.metrics import RunMetrics, compute_metrics
from servers.code_quality.runner import AnalysisResult, ProgressCallback, ResultCache, run_analysis

SLOW_ANALYZERS = ("bandit", "detect-secrets", "radon", "semgrep")


@dataclass
class TreeReport:
    git: GitInfo | None
    listing: FileListing
    result: AnalysisResult
    duplication: DuplicationReport
    metrics: RunMetrics
    changed: list[str] | None

    def gaps(self) -> set[tuple[str, str]]:
        """What this run did not cover, for compare(): failed files, skipped files, absent analyzers."""
        return self.result.gaps(s.path for s in self.listing.skipped)


async def analyze_tree(
    root: Path,
    analyzers: Sequence[Analyzer],
    *,
    cache: ResultCache | None = None,
    progress: ProgressCallback | None = None,
    exclude: Sequence[str] = (),
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    changed_since_ref: str | None = None,
    scoped: Collection[str] = SLOW_ANALYZERS,
    workers: int | None = None,
) -> TreeReport:
    """Analyse the resolved folder ``root``; raises ``InvalidInput`` for a bad root or ref."""
    listing = await asyncio.to_thread(list_files, root, exclude=exclude, max_bytes=max_bytes, max_files=max_files)
    root = listing.root
    git = await asyncio.to_thread(git_info, root)
    changed = await asyncio.to_thread(changed_since, root, changed_since_ref) if changed_since_ref else None
    scope = {a.name: changed for a in analyzers if a.name in scoped} if changed is not None else None
    # The duplication search needs only the listing: it runs while the analyzers run or answer from the cache.
    searching = asyncio.ensure_future(asyncio.to_thread(find_duplicates, root, listing.files))
    try:
        result = await run_analysis(
            root, listing.files, analyzers, cache=cache, progress=progress, workers=workers, scope=scope
        )
    except BaseException:
        searching.cancel()
        raise
    duplication = await searching
    metrics = compute_metrics(result, skipped=listing.skipped, duplication=duplication)
    return TreeReport(git, listing, result, duplication, metrics, changed)
