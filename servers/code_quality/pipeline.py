"""One analysis of a tree, end to end: list, run the analyzers, measure duplication, sum up.

What a service method calls for "analyse this folder". With ``changed_since``, the slow analyzers named
in ``scoped`` analyse only the files changed since that ref (their cached results cover the rest; what
neither covers is reported as a gap), while the fast ones still cover every file. The listing reuses
what ``stamps_file`` recorded of unchanged files, and the duplication search takes each file's lines
from the result cache by content hash, so an unchanged tree is neither re-read nor re-hashed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.logging import get_logger
from servers.code_quality.analyzers.base import Analyzer
from servers.code_quality.duplication import (
    LINES_KEY,
    DuplicationReport,
    FileLines,
    considered,
    find_duplicates,
)
from servers.code_quality.files import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    FileListing,
    GitInfo,
    SourceFile,
    changed_since,
    git_info,
    list_files,
    load_stamps,
    save_stamps,
)
from servers.code_quality.metrics import RunMetrics, compute_metrics
from servers.code_quality.runner import (
    AnalysisResult,
    CacheKey,
    ProgressCallback,
    ResultCache,
    read_cache,
    run_analysis,
    write_cache,
)

log = get_logger(__name__)

SLOW_ANALYZERS = ("bandit", "detect-secrets", "radon", "semgrep")
#: The result cache's "analyzer" name for the duplication search's per-file lines.
DUPLICATION = "duplication"


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
    stamps_file: Path | None = None,
) -> TreeReport:
    """Analyse the resolved folder ``root``; raises ``InvalidInput`` for a bad root or ref.

    ``stamps_file`` keeps what the listing learnt of each file (``files.StampCache``) between runs."""
    # The analyzers' version checks are child processes: they run while the files are listed (a failed
    # one is not kept, and fails again in run_analysis with its reason).
    versions = asyncio.gather(*(a.version(root) for a in analyzers), return_exceptions=True)
    try:
        listing = await asyncio.to_thread(_list, root, exclude, max_bytes, max_files, stamps_file)
    except BaseException:
        versions.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await versions
        raise
    await versions
    root = listing.root
    git = await asyncio.to_thread(git_info, root)
    changed = await asyncio.to_thread(changed_since, root, changed_since_ref) if changed_since_ref else None
    scope = {a.name: changed for a in analyzers if a.name in scoped} if changed is not None else None
    # The duplication search needs only the listing: it runs while the analyzers run or answer from the cache.
    searching = asyncio.ensure_future(measure_duplication(root, listing.files, cache))
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


def _list(root: Path, exclude: Sequence[str], max_bytes: int, max_files: int, stamps_file: Path | None) -> FileListing:
    stamps = load_stamps(stamps_file, root.resolve()) if stamps_file is not None else None
    listing = list_files(root, exclude=exclude, max_bytes=max_bytes, max_files=max_files, stamps=stamps)
    if stamps_file is not None and stamps is not None:
        try:
            save_stamps(stamps_file, listing.root, stamps)
        except OSError as exc:  # the stamps only save time: the next listing reads every file instead
            log.warning("listing_stamps_not_saved", error=type(exc).__name__)
    return listing


async def measure_duplication(
    root: Path, files: Sequence[SourceFile], cache: ResultCache | None = None
) -> DuplicationReport:
    """The duplication search over ``files``, with each file's lines from ``cache`` (by content hash)
    where it has them; the lines of the files read are added to it."""
    if cache is None:
        return await asyncio.to_thread(find_duplicates, root, files)
    keys = {f.sha256: CacheKey(DUPLICATION, *LINES_KEY, f.sha256) for f in files if considered(f)}
    hits = await read_cache(cache, list(keys.values()))
    learned: dict[str, FileLines] = {}
    report = await asyncio.to_thread(_search, root, files, keys, hits, learned)
    await write_cache(cache, {keys[sha]: lines.to_dict() for sha, lines in learned.items()})
    return report


def _search(
    root: Path,
    files: Sequence[SourceFile],
    keys: Mapping[str, CacheKey],
    hits: Mapping[CacheKey, dict[str, Any]],
    learned: dict[str, FileLines],
) -> DuplicationReport:
    known = {}
    for sha, key in keys.items():
        lines = FileLines.from_dict(hits[key]) if key in hits else None
        if lines is not None:
            known[sha] = lines
    return find_duplicates(root, files, known=known, learned=learned)
