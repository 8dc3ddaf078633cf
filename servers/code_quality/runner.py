"""Run analyzers over a file list: in parallel, in batches, incrementally, with progress and cancellation.

Results are cached per (analyzer, analyzer version, config hash, file content hash), so a re-run only
analyses files whose content changed (the content hash is taken with the file's path, because some rules
depend on the file name, e.g. in ``__init__.py`` or test files) and merges them with cached results into what a full run gives.
A whole-program analyzer (vulture) is keyed by the hashes of all its files together and re-runs whole
when any of them changed. Every analyzer ends with an ``AnalyzerOutcome`` (ok, missing, failed,
timeout) and the files it could not analyse; nothing is dropped silently. Cancelling the awaiting task
kills every analyzer process still running.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from common.logging import get_logger
from servers.code_quality.analyzers.base import Analyzer, AnalyzerFailed, AnalyzerMissing, AnalyzerTimeout, BatchOutput
from servers.code_quality.files import SourceFile
from servers.code_quality.fingerprint import annotate, assign_fingerprints
from servers.code_quality.records import AnalyzerOutcome, FileMetrics, Finding, FunctionMetrics, OutcomeStatus

log = get_logger(__name__)

ProgressCallback = Callable[[int, int, str], Awaitable[None] | None]
WHOLE = "*"
#: Fewer files than this are not worth a process of their own.
MIN_BATCH_FILES = 10


class CacheKey(NamedTuple):
    analyzer: str
    version: str
    config_hash: str
    content_hash: str


class ResultCache(Protocol):
    """Where per-file analyzer results are kept between runs; values are JSON-compatible dicts."""

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, dict[str, Any]]: ...

    async def put_many(self, items: Mapping[CacheKey, dict[str, Any]]) -> None: ...


class MemoryCache:
    """A ``ResultCache`` in a dict (tests, one-off runs)."""

    def __init__(self) -> None:
        self.data: dict[CacheKey, dict[str, Any]] = {}

    async def get_many(self, keys: Sequence[CacheKey]) -> dict[CacheKey, dict[str, Any]]:
        return {k: self.data[k] for k in keys if k in self.data}

    async def put_many(self, items: Mapping[CacheKey, dict[str, Any]]) -> None:
        self.data.update(items)


@dataclass
class AnalysisResult:
    findings: list[Finding] = field(default_factory=list)
    file_metrics: dict[str, FileMetrics] = field(default_factory=dict)
    functions: list[FunctionMetrics] = field(default_factory=list)
    outcomes: list[AnalyzerOutcome] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """True when an analyzer did not run or left files unanalysed."""
        return any(o.status != "ok" or o.files_failed for o in self.outcomes)

    def gaps(self, skipped: Iterable[str] = ()) -> set[tuple[str, str]]:
        """(analyzer, path) pairs this run could not analyse: path ``*`` for an analyzer that did not run,
        analyzer ``*`` for the ``skipped`` paths of the file listing."""
        out: set[tuple[str, str]] = {(WHOLE, p) for p in skipped}
        for o in self.outcomes:
            if o.status != "ok" and not o.files_analyzed and not o.files_cached:
                out.add((o.analyzer, WHOLE))
            out.update((o.analyzer, p) for p in o.files_failed)
            out.update((o.analyzer, p) for p in o.files_out_of_scope)
        return out


def _status_of(exc: BaseException) -> OutcomeStatus:
    if isinstance(exc, AnalyzerMissing):
        return "missing"
    if isinstance(exc, AnalyzerTimeout):
        return "timeout"
    return "failed"


_RANK: dict[OutcomeStatus, int] = {"ok": 0, "failed": 1, "timeout": 2, "missing": 3}


def _read_lines(root: Path, rel: str) -> tuple[list[str], str] | None:
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return data.decode(errors="replace").splitlines(), hashlib.sha256(data).hexdigest()


def _entry(
    findings: Sequence[Finding], metrics: FileMetrics | None, functions: Sequence[FunctionMetrics]
) -> dict[str, Any]:
    return {
        "findings": [f.to_dict() for f in findings],
        "metrics": metrics.to_dict() if metrics else None,
        "functions": [f.to_row()[1:] for f in functions],  # the path is the entry's
    }


#: A file's findings, functions and file metrics as records: what ``_merge`` decodes a cache entry into.
Parsed = tuple[list[Finding], list[FunctionMetrics], FileMetrics | None]


def _parsed(path: str, entry: Mapping[str, Any]) -> Parsed:
    partial = entry.get("metrics")
    return (
        [Finding.from_dict({**d, "path": path}) for d in entry["findings"]],
        [FunctionMetrics.from_row([path, *row]) for row in entry["functions"]],
        FileMetrics.from_dict({**partial, "path": path}) if partial else None,
    )


def _file_hash(f: SourceFile) -> str:
    return hashlib.sha256(f"{f.path}\0{f.sha256}".encode()).hexdigest()


def _whole_hash(files: Sequence[SourceFile]) -> str:
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        digest.update(f"{f.path}\0{f.sha256}\n".encode())
    return digest.hexdigest()


def plan_batches(
    items: Sequence[SourceFile], size: int, workers: int, threaded: bool = False
) -> list[list[SourceFile]]:
    """``items`` in batches of at most ``size`` files, one tool process each.

    A ``threaded`` tool spreads one process over the cores itself, so only ``size`` splits its files.
    Otherwise each batch takes a share of the bytes still left (a batch's time follows its bytes), so
    the first batches are large (few process start-ups) and the last ones small, and no worker is left
    running a long batch alone at the end; no batch is cut to fewer than ``MIN_BATCH_FILES`` files."""
    if not items:
        return []
    if threaded:
        step = -(-len(items) // -(-len(items) // size))
        return [list(items[i : i + step]) for i in range(0, len(items), step)]
    left = sum(f.size + 1 for f in items)
    floor = left / (4 * workers)
    out: list[list[SourceFile]] = []
    batch: list[SourceFile] = []
    taken = 0
    for n, f in enumerate(items, start=1):
        batch.append(f)
        taken += f.size + 1
        enough = taken >= max(left / (2 * workers), floor) and min(len(batch), len(items) - n) >= MIN_BATCH_FILES
        if len(batch) >= size or enough:
            out.append(batch)
            left -= taken
            batch, taken = [], 0
    if batch:
        out.append(batch)
    return out


async def read_cache(cache: ResultCache, keys: Sequence[CacheKey]) -> dict[CacheKey, dict[str, Any]]:
    # The cache only saves time: when it fails, the run analyses everything instead of failing.
    try:
        return await cache.get_many(keys)
    except Exception as exc:
        log.warning("analysis_cache_read_failed", error=type(exc).__name__)
        return {}


async def write_cache(cache: ResultCache, items: Mapping[CacheKey, dict[str, Any]]) -> None:
    if not items:
        return
    try:
        await cache.put_many(items)
    except Exception as exc:
        log.warning("analysis_cache_write_failed", error=type(exc).__name__)


class _Run:
    def __init__(
        self,
        root: Path,
        cache: ResultCache,
        progress: ProgressCallback | None,
        workers: int,
        total: int,
    ) -> None:
        self.root = root
        self.cache = cache
        self.progress = progress
        self.slots = asyncio.Semaphore(workers)
        self.workers = workers
        self.total = total
        self.done = 0
        # (path, cache entry, its records when this run made them, else None: _merge decodes the entry).
        self.entries: list[tuple[str, dict[str, Any], Parsed | None]] = []
        self.scope: Mapping[str, Collection[str]] = {}

    async def advance(self, count: int, message: str) -> None:
        self.done += count
        if self.progress is not None:
            maybe = self.progress(self.done, self.total, message)
            if inspect.isawaitable(maybe):
                await maybe

    def split(
        self, analyzer: Analyzer, files: Sequence[SourceFile], out: BatchOutput
    ) -> list[tuple[str, dict[str, Any], Parsed | None]]:
        """One cache entry per file (findings annotated from the file's text) with its records, by path;
        the records are kept so ``_merge`` need not decode the entries again (this runs in a thread,
        while analyzers still run; ``_merge`` runs after all of them)."""
        by_path: dict[str, list[Finding]] = defaultdict(list)
        functions: dict[str, list[FunctionMetrics]] = defaultdict(list)
        for finding in out.findings:
            by_path[finding.path].append(finding)
        for fn in out.functions:
            functions[fn.path].append(fn)
        entries: dict[str, dict[str, Any]] = {}
        parsed: dict[str, Parsed] = {}
        wanted = {f.path: f for f in files}
        stray = set(by_path) - set(wanted)
        if stray:
            # Only files this run listed (and so vetted) are read or reported.
            log.warning("analyzer_reported_unlisted_files", analyzer=analyzer.name, files=len(stray))
            for path in stray:
                del by_path[path]
        for path in set(wanted):
            findings = by_path.get(path, [])
            if findings:
                read = _read_lines(self.root, path)
                lines = read[0] if read else []
                findings = annotate(findings, lines, python=path.endswith((".py", ".pyi")))
                if read and read[1] != wanted[path].sha256:
                    # Changed since it was listed: use the result but do not cache it under the old hash.
                    wanted.pop(path)
            metrics = out.metrics.get(path)
            entries[path] = _entry(findings, metrics, functions.get(path, []))
            if metrics is not None and metrics.path != path:
                metrics = replace(metrics, path=path)
            parsed[path] = (findings, functions.get(path, []), metrics)
        return [(p, e if p in wanted else {**e, "uncacheable": True}, parsed[p]) for p, e in entries.items()]

    async def run_analyzer(self, analyzer: Analyzer, files: Sequence[SourceFile]) -> AnalyzerOutcome:
        started = time.monotonic()
        outcome = AnalyzerOutcome(analyzer=analyzer.name, status="ok", config_hash=analyzer.config_hash())
        applicable = [f for f in files if analyzer.applies_to(f)]
        outcome.files_total = len(applicable)
        try:
            version = await analyzer.version(self.root)
        except (AnalyzerMissing, AnalyzerTimeout, AnalyzerFailed) as exc:
            outcome.status, outcome.reason = _status_of(exc), str(exc)
            outcome.files_failed = [f.path for f in applicable] if outcome.status != "missing" else []
            await self.advance(len(applicable), f"{analyzer.name}: {outcome.status}")
            return outcome
        outcome.version = version
        if analyzer.whole_program:
            await self._whole(analyzer, version, applicable, outcome)
        else:
            await self._per_file(analyzer, version, applicable, outcome, self.scope.get(analyzer.name))
        outcome.seconds = round(time.monotonic() - started, 3)
        return outcome

    async def _per_file(
        self,
        analyzer: Analyzer,
        version: str,
        files: Sequence[SourceFile],
        outcome: AnalyzerOutcome,
        scope: Collection[str] | None,
    ) -> None:
        config = outcome.config_hash
        keys = {f.path: CacheKey(analyzer.name, version, config, _file_hash(f)) for f in files}
        hits = await read_cache(self.cache, list(set(keys.values())))
        misses = []
        for f in files:
            hit = hits.get(keys[f.path])
            if hit is not None:
                self.entries.append((f.path, hit, None))
                outcome.files_cached += 1
            elif scope is not None and f.path not in scope:
                outcome.files_out_of_scope.append(f.path)
            else:
                misses.append(f)
        if outcome.files_cached:
            await self.advance(outcome.files_cached, f"{analyzer.name}: {outcome.files_cached} files unchanged")
        if outcome.files_out_of_scope:
            await self.advance(len(outcome.files_out_of_scope), f"{analyzer.name}: files out of scope left out")

        async def batch(chunk: list[SourceFile]) -> None:
            async with self.slots:
                outcome.invocations += 1
                try:
                    out = await analyzer.analyze(self.root, [f.path for f in chunk])
                except (AnalyzerMissing, AnalyzerTimeout, AnalyzerFailed) as exc:
                    self._fail(outcome, exc, chunk)
                    await self.advance(len(chunk), f"{analyzer.name}: batch {outcome.status}")
                    return
            done = self._unparsed(outcome, out, chunk)
            entries = await asyncio.to_thread(self.split, analyzer, done, out)
            await write_cache(self.cache, {keys[p]: e for p, e, _ in entries if p in keys and not e.get("uncacheable")})
            self.entries.extend(entries)
            outcome.files_analyzed += len(done)
            await self.advance(len(chunk), f"{analyzer.name}: {outcome.files_analyzed}/{len(misses)} files analysed")

        async with asyncio.TaskGroup() as group:
            for chunk in plan_batches(misses, analyzer.batch_size, self.workers, analyzer.threaded):
                group.create_task(batch(chunk))

    async def _whole(
        self, analyzer: Analyzer, version: str, files: Sequence[SourceFile], outcome: AnalyzerOutcome
    ) -> None:
        if not files:
            return
        key = CacheKey(analyzer.name, version, outcome.config_hash, _whole_hash(files))
        hit = (await read_cache(self.cache, [key])).get(key)
        if hit is not None:
            self.entries.extend((p, e, None) for p, e in hit["files"].items())
            outcome.files_cached = len(files)
            await self.advance(len(files), f"{analyzer.name}: unchanged")
            return
        async with self.slots:
            outcome.invocations += 1
            try:
                out = await analyzer.analyze(self.root, [f.path for f in files])
            except (AnalyzerMissing, AnalyzerTimeout, AnalyzerFailed) as exc:
                self._fail(outcome, exc, files)
                await self.advance(len(files), f"{analyzer.name}: {outcome.status}")
                return
        done = self._unparsed(outcome, out, files)
        entries = await asyncio.to_thread(self.split, analyzer, done, out)
        if not any(e.get("uncacheable") for _, e, _ in entries) and len(done) == len(files):
            await write_cache(self.cache, {key: {"files": {p: e for p, e, _ in entries}}})
        self.entries.extend(entries)
        outcome.files_analyzed = len(done)
        await self.advance(len(files), f"{analyzer.name}: analysed")

    @staticmethod
    def _unparsed(outcome: AnalyzerOutcome, out: BatchOutput, chunk: Sequence[SourceFile]) -> list[SourceFile]:
        """The files of ``chunk`` the tool did analyse; the others are recorded as failed, with why."""
        if not out.failed:
            return list(chunk)
        failed = [f for f in chunk if f.path in out.failed]
        if failed:
            outcome.files_failed.extend(f.path for f in failed)
            first = failed[0]
            outcome.reason = outcome.reason or (
                f"{len(failed)} file(s) could not be analysed, e.g. {first.path}: {out.failed[first.path]}"
            )
        return [f for f in chunk if f.path not in out.failed]

    @staticmethod
    def _fail(outcome: AnalyzerOutcome, exc: BaseException, chunk: Sequence[SourceFile]) -> None:
        status = _status_of(exc)
        if _RANK[status] > _RANK[outcome.status]:
            outcome.status = status
        outcome.reason = outcome.reason or f"{len(chunk)} files: {exc}"
        outcome.files_failed.extend(f.path for f in chunk)
        log.warning(
            "analyzer_batch_failed", analyzer=outcome.analyzer, status=status, files=len(chunk), reason=str(exc)
        )


def _merge(
    files: Sequence[SourceFile], entries: Sequence[tuple[str, dict[str, Any], Parsed | None]], result: AnalysisResult
) -> None:
    metrics = {f.path: FileMetrics(path=f.path, lines=f.lines, code_lines=f.code_lines) for f in files}
    findings: list[Finding] = []
    for path, entry, parsed in entries:
        found, functions, extra = parsed if parsed is not None else _parsed(path, entry)
        findings.extend(found)
        result.functions.extend(functions)
        if extra is not None and path in metrics:
            base = metrics[path]
            if extra.functions or extra.max_complexity:
                base = replace(
                    base,
                    functions=extra.functions,
                    max_complexity=extra.max_complexity,
                    mean_complexity=extra.mean_complexity,
                )
            if extra.maintainability is not None:
                base = replace(base, maintainability=extra.maintainability)
            metrics[path] = base
    result.findings = sorted(assign_fingerprints(findings), key=lambda f: (f.path, f.line, f.analyzer, f.rule_id))
    result.functions.sort(key=lambda fn: (fn.path, fn.line))
    result.file_metrics = metrics


async def run_analysis(
    root: Path,
    files: Sequence[SourceFile],
    analyzers: Sequence[Analyzer],
    *,
    cache: ResultCache | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
    scope: Mapping[str, Collection[str]] | None = None,
) -> AnalysisResult:
    """Analyse ``files`` (from ``files.list_files`` on ``root``; pass its resolved ``root``) with ``analyzers``.

    Up to ``workers`` (default: the CPU count) analyzer processes run at once. ``progress`` is called
    (sync or async) with (files done, files total, message), counted per analyzer and file. ``scope``
    limits fresh analysis per analyzer (name -> paths, e.g. the files changed since a ref for the slow
    ones): other files still use cached results, and the rest are listed as out of scope (gaps).
    """
    workers = max(1, workers or os.cpu_count() or 1)
    total = sum(1 for a in analyzers for f in files if a.applies_to(f))
    run = _Run(root, cache if cache is not None else MemoryCache(), progress, workers, total)
    run.scope = {name: set(paths) for name, paths in (scope or {}).items()}
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run.run_analyzer(a, files)) for a in analyzers]
    result = AnalysisResult(outcomes=[t.result() for t in tasks])
    _merge(files, run.entries, result)
    return result
