"""Search quality of the documentation server on a question set: page and section recall@1, recall@5 and MRR.

Run (held-out set; the corpus spec lists the folder and the include globs)::

    .venv/bin/python -m tests.eval.search_eval --spec tests/eval/questions/postgresql_heldout.corpus.json \
        --questions tests/eval/questions/postgresql_heldout.jsonl

or with the corpus given explicitly::

    .venv/bin/python -m tests.eval.search_eval --corpus DIR --include 'sql-*.html' 'indexes*.html' \
        --questions FILE.jsonl

It starts its own embedded PostgreSQL in a temporary directory, uses Redis at REDIS_URL (default
127.0.0.1:6379, under a prefix of this run only) and the configured embedding model (the default one unless
EMBEDDING_MODEL is set), ingests the corpus into a fresh project with ``ingest_folder`` and asks every
question with ``search_docs`` over the in-memory MCP client, so it measures exactly what a client gets.

A question file has one JSON object per line: ``id``, ``question``, ``kind``, ``page`` (the target document's
path relative to the corpus folder) and optionally ``section`` (the target heading as shown) and ``anchor``
(its HTML id). Hits are read as plain dicts, so fields a later version adds (``anchor``) are used when present
and their absence is tolerated.

* Page match: the hit's ``path`` equals ``page``.
* Section match: a page match whose last ``heading_path`` element equals ``section`` after normalising
  (markup and a leading section number such as ``11.2.1.`` removed, case and whitespace folded), or whose
  ``anchor`` (or, failing that, the citation's ``#fragment``) equals ``anchor`` ignoring case. This is the
  strict figure: only the hit's own section counts.
* Listed-section match: a section match of the hit itself or of one of the other sections the hit lists in
  ``sections`` (each with its heading path and anchor, as a client sees them); the rank is the hit's rank.
  With one hit per document this is what a reader of the first hits sees; the strict figure is the share
  where the hit's own section is already the right one.

Ranks count from 1 over the first ``--limit`` hits (default 10); a question whose target is not among them
scores 0 in MRR. Prints one table (and one per question kind); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client
from pydantic import SecretStr

from common.logging import configure_logging
from common.testing import create_database, start_cluster
from servers.documentation.server import build
from servers.documentation.settings import Settings
from tests.benchmarks._util import drop_prefix, pct, print_table, run_prefix

PROJECT, VERSION = "eval", "1"


@dataclass
class Question:
    id: str
    question: str
    kind: str
    page: str
    section: str | None = None
    anchor: str | None = None


@dataclass
class Outcome:
    question: Question
    page_rank: int | None
    section_rank: int | None
    listed_rank: int | None
    ms: float
    top: list[str] = field(default_factory=list)


def load_questions(path: Path) -> list[Question]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            out.append(
                Question(
                    id=str(row["id"]),
                    question=row["question"],
                    kind=row.get("kind") or "unspecified",
                    page=row["page"],
                    section=row.get("section") or None,
                    anchor=row.get("anchor") or None,
                )
            )
        except KeyError as e:
            raise SystemExit(f"{path}:{n}: missing field {e}") from None
    return out


MARKUP = re.compile(r"<[^>]+>|[`*_#]|¶")
SECTION_NUMBER = re.compile(r"^\s*(?:[A-Z]|\d+)(?:\.\d+)*\.\s+")


def norm_heading(text: str) -> str:
    """A heading compared loosely: markup and a leading section number dropped, case and spaces folded."""
    text = MARKUP.sub(" ", text)
    text = SECTION_NUMBER.sub("", " ".join(text.split()))
    return " ".join(text.split()).casefold()


def hit_anchor(hit: dict[str, Any]) -> str | None:
    anchor = hit.get("anchor")
    if anchor:
        return str(anchor)
    citation = str(hit.get("citation") or "")
    return citation.rsplit("#", 1)[1] if "#" in citation else None


def page_match(hit: dict[str, Any], q: Question) -> bool:
    return str(hit.get("path") or "").removeprefix("./") == q.page.removeprefix("./")


def section_match(hit: dict[str, Any], q: Question) -> bool:
    if not page_match(hit, q):
        return False
    anchor = hit_anchor(hit)
    if q.anchor and anchor and anchor.casefold() == q.anchor.casefold():
        return True
    path = hit.get("heading_path") or []
    return bool(q.section and path and norm_heading(str(path[-1])) == norm_heading(q.section))


def listed_match(hit: dict[str, Any], q: Question) -> bool:
    if section_match(hit, q):
        return True
    if not page_match(hit, q):
        return False
    others = [{"path": hit.get("path"), **dict(place)} for place in hit.get("sections") or []]
    return any(section_match(other, q) for other in others)


def first_rank(hits: Sequence[dict[str, Any]], q: Question, match: Any) -> int | None:
    return next((i for i, h in enumerate(hits, 1) if match(h, q)), None)


def scores(ranks: Sequence[int | None]) -> tuple[float, float, float]:
    """recall@1, recall@5, MRR of a list of ranks (None: not found)."""
    n = len(ranks) or 1
    r1 = sum(1 for r in ranks if r == 1) / n
    r5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    mrr = sum(1 / r for r in ranks if r is not None) / n
    return r1, r5, mrr


def _fmt(values: tuple[float, float, float]) -> list[str]:
    return [f"{v:.3f}" for v in values]


async def evaluate(args: argparse.Namespace) -> None:
    corpus: Path = args.corpus
    questions = load_questions(Path(args.questions))
    if not questions:
        raise SystemExit(f"{args.questions}: no questions")
    tmp = Path(tempfile.mkdtemp(prefix="search-eval-"))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = run_prefix("searcheval")
    server, cluster = start_cluster(tmp / "pg")
    try:
        url = await asyncio.to_thread(create_database, cluster)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=SecretStr(url),
            redis_url=SecretStr(redis_url),
            redis_prefix=prefix,
            data_dir=tmp / "data",
            log_level="WARNING",
            allowed_roots=[corpus],
        )
        async with Client(build(settings)) as client:
            await client.call_tool("manage_project", {"action": "create", "project": PROJECT, "version": VERSION})
            await client.call_tool("search_docs", {"query": "warm up the model"})  # load the model outside the timing
            started = time.perf_counter()
            ingest_args: dict[str, Any] = {"action": "start", "project": PROJECT, "version": VERSION}
            ingest_args |= {"path": str(corpus), "include": list(args.include)}
            if args.exclude:
                ingest_args["exclude"] = list(args.exclude)
            result = await client.call_tool("ingest_folder", ingest_args)
            ingest_s = time.perf_counter() - started
            if result.is_error:
                raise SystemExit(f"ingest failed: {result.content}")
            job = (result.structured_content or {})["jobs"][0]
            if job["status"] != "done":
                raise SystemExit(f"ingest ended {job['status']}: {job.get('message')}")
            outcomes = []
            for q in questions:
                t = time.perf_counter()
                res = await client.call_tool(
                    "search_docs", {"query": q.question, "project": PROJECT, "version": VERSION, "limit": args.limit}
                )
                ms = (time.perf_counter() - t) * 1000
                if res.is_error:
                    raise SystemExit(f"search failed for {q.id}: {res.content}")
                hits: list[dict[str, Any]] = list((res.structured_content or {}).get("hits") or [])
                outcomes.append(
                    Outcome(
                        q,
                        first_rank(hits, q, page_match),
                        first_rank(hits, q, section_match) if (q.section or q.anchor) else None,
                        first_rank(hits, q, listed_match) if (q.section or q.anchor) else None,
                        ms,
                        [str(h.get("citation")) for h in hits[:5]],
                    )
                )
        report(args, job, ingest_s, outcomes)
    finally:
        server.cleanup()
        await drop_prefix(redis_url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)


def report(args: argparse.Namespace, job: dict[str, Any], ingest_s: float, outcomes: list[Outcome]) -> None:
    counts = job["counts"]
    with_section = [o for o in outcomes if o.question.section or o.question.anchor]
    lat = [o.ms for o in outcomes]
    page = scores([o.page_rank for o in outcomes])
    section = scores([o.section_rank for o in with_section])
    listed = scores([o.listed_rank for o in with_section])
    rows = [
        ["questions", f"{len(outcomes)} ({len(with_section)} with a section)"],
        ["files ingested", f"{counts.get('added', 0) + counts.get('updated', 0)} (errors {job.get('errors_total')})"],
        ["chunks", f"{counts.get('chunks')}"],
        ["ingest wall time", f"{ingest_s:.1f} s"],
        ["page recall@1 / recall@5 / MRR@" + str(args.limit), " / ".join(_fmt(page))],
        ["section (strict) recall@1 / recall@5 / MRR@" + str(args.limit), " / ".join(_fmt(section))],
        ["section (listed) recall@1 / recall@5 / MRR@" + str(args.limit), " / ".join(_fmt(listed))],
        ["search_docs p50 / p95", f"{statistics.median(lat):.1f} ms / {pct(lat, 95):.1f} ms"],
        ["load average (1 min) at end", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"],
    ]
    print_table(rows, ["measure", "value"])
    sys.stdout.write("\n")
    kinds = sorted({o.question.kind for o in outcomes})
    per_kind = []
    for kind in kinds:
        of_kind = [o for o in outcomes if o.question.kind == kind]
        sec = [o.section_rank for o in of_kind if o.question.section or o.question.anchor]
        lst = [o.listed_rank for o in of_kind if o.question.section or o.question.anchor]
        page_kind = scores([o.page_rank for o in of_kind])
        per_kind.append([kind, str(len(of_kind)), *_fmt(page_kind), *_fmt(scores(sec)), *_fmt(scores(lst))])
    heads = ["page R@1", "page R@5", "page MRR", "strict R@1", "strict R@5", "strict MRR"]
    print_table(per_kind, ["kind", "n", *heads, "listed R@1", "listed R@5", "listed MRR"])
    if args.misses:
        sys.stdout.write("\n")
        for o in outcomes:
            if o.page_rank is None or o.page_rank > 5 or (o.question.section and o.section_rank is None):
                sys.stdout.write(
                    f"{o.question.id}: page {o.page_rank} section {o.section_rank} listed {o.listed_rank} | "
                    f"{o.question.question}\n"
                )
                sys.stdout.writelines(f"    {c}\n" for c in o.top)
    if args.json:
        rows_out = [
            {
                "id": o.question.id,
                "page_rank": o.page_rank,
                "section_rank": o.section_rank,
                "listed_rank": o.listed_rank,
                "ms": round(o.ms, 2),
            }
            for o in outcomes
        ]
        Path(args.json).write_text(json.dumps(rows_out, indent=1) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Search quality of the documentation server on a question set.")
    parser.add_argument("--spec", help="a corpus spec (JSON: corpus, include, exclude) supplying the defaults")
    parser.add_argument("--corpus", help="folder to ingest")
    parser.add_argument("--include", nargs="+", help="include globs (relative to the corpus folder)")
    parser.add_argument("--exclude", nargs="+", help="exclude globs")
    parser.add_argument("--questions", required=True, help="question file (JSON lines)")
    parser.add_argument("--limit", type=int, default=10, help="hits asked per question (the MRR depth)")
    parser.add_argument("--misses", action="store_true", help="list the questions missed at 5 with their top hits")
    parser.add_argument("--json", help="write per-question ranks to this file")
    args = parser.parse_args(argv)
    if args.spec:
        spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        args.corpus = args.corpus or spec["corpus"]
        args.include = args.include or spec["include"]
        args.exclude = args.exclude or spec.get("exclude")
    if not args.corpus or not args.include:
        parser.error("give --corpus and --include, or a --spec that has them")
    args.corpus = Path(args.corpus).resolve()
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a folder")
    return args


def main() -> None:
    args = parse_args()
    # Unconfigured structlog prints to stdout, where the table goes; warnings still reach stderr.
    configure_logging("WARNING", "console")
    asyncio.run(evaluate(args))


if __name__ == "__main__":
    main()
