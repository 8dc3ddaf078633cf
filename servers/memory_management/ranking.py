"""Plain functions behind recall and consolidate: rank fusion with boosts, and grouping near-duplicates.

Hybrid recall fuses two ranked lists (pgvector nearest neighbours and full-text matches) by
reciprocal rank fusion: each list contributes ``1 / (K + rank)``, so a memory near the top of both
wins and neither list's raw scores (cosine vs ``ts_rank_cd``, on unrelated scales) need calibrating.
The fused value is normalised to 0..1 and then nudged by small recency, importance and feedback
boosts, small enough that they reorder near-ties but never overturn a clear relevance gap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.retrieval import RRF_K, rrf_rank

RECENCY_HALF_LIFE_DAYS = 30.0
BOOST_RECENCY = 0.02
BOOST_IMPORTANCE = 0.04
BOOST_FEEDBACK = 0.04


def recency(age_s: float) -> float:
    """1.0 for a memory created now, halving every RECENCY_HALF_LIFE_DAYS."""
    return math.pow(0.5, max(age_s, 0.0) / 86_400 / RECENCY_HALF_LIFE_DAYS)


def feedback(useful: int, not_useful: int) -> float:
    """-1..1, damped so a single vote moves little."""
    return (useful - not_useful) / (useful + not_useful + 2)


@dataclass(frozen=True)
class Scored:
    row: dict[str, Any]
    score: float
    recency: float


def fuse(rows: Iterable[dict[str, Any]], lists: int) -> list[Scored]:
    """Score candidate rows (with ``sem_rank``/``kw_rank``) and sort best first."""
    best = lists / (RRF_K + 1)
    out = []
    for row in rows:
        rrf = rrf_rank(row.get("sem_rank")) + rrf_rank(row.get("kw_rank"))
        rec = recency(float(row.get("age_s") or 0.0))
        score = (
            rrf / best
            + BOOST_RECENCY * rec
            + BOOST_IMPORTANCE * (float(row["importance"]) - 0.5)
            + BOOST_FEEDBACK * feedback(int(row.get("useful_count") or 0), int(row.get("not_useful_count") or 0))
        )
        out.append(Scored(row=row, score=score, recency=rec))
    out.sort(key=lambda s: (-s.score, s.row["id"]))
    return out


def group_pairs(pairs: Iterable[tuple[str, str, float]]) -> list[tuple[list[str], float]]:
    """Connected groups of near-duplicate pairs, each with its lowest pairwise similarity seen."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sims: list[tuple[str, str, float]] = list(pairs)
    for a, b, _ in sims:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    low: dict[str, float] = {}
    for a, _b, sim in sims:
        root = find(a)
        low[root] = min(low.get(root, 1.0), sim)
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    return sorted(((sorted(m), low[r]) for r, m in groups.items()), key=lambda g: (-g[1], g[0]))
