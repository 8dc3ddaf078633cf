"""Plain functions behind recall: the keyword query, rank fusion, cursors, context packing, grouping.

Hybrid recall fuses two ranked lists (pgvector nearest neighbours and full-text matches) by
reciprocal rank fusion: each list contributes ``1 / (K + rank)``, so a memory near the top of both
wins and neither list's raw scores (cosine vs ``ts_rank_cd``, on unrelated scales) need calibrating.
The fused value is normalised to 0..1 and then nudged by small recency, importance and feedback
boosts, small enough that they reorder near-ties but never overturn a clear relevance gap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

RRF_K = 60
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
        rrf = sum(1.0 / (RRF_K + r) for r in (row.get("sem_rank"), row.get("kw_rank")) if r is not None)
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


def query_fingerprint(parts: Sequence[Any]) -> str:
    """A short hash of the query and filters, so a cursor is only accepted by the query that made it."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:12]


def encode_cursor(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{fingerprint}".encode()).decode()


def decode_cursor(cursor: str, fingerprint: str) -> int:
    """The offset in ``cursor``; ValueError when it is malformed or from another query."""
    try:
        offset_s, fp = base64.urlsafe_b64decode(cursor.encode()).decode().split(":", 1)
        offset = int(offset_s)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the cursor is not one this server issued") from exc
    if fp != fingerprint or offset < 0:
        raise ValueError("the cursor belongs to a different query or filters")
    return offset


def estimate_tokens(text: str) -> int:
    """About four characters per token: close enough for budgeting English text."""
    return (len(text) + 3) // 4


def pack(items: Sequence[tuple[str, str]], budget: int) -> tuple[list[str], list[str], int, int]:
    """Greedily pack ``(id, block)`` pairs, best first, into ``budget`` tokens.

    A block that does not fit is skipped (a smaller later one may still fit). Returns the blocks,
    their ids, the tokens used and how many were left out.
    """
    blocks: list[str] = []
    ids: list[str] = []
    used = 0
    omitted = 0
    for memory_id, block in items:
        cost = estimate_tokens(block) + 1  # the newline between blocks
        if used + cost > budget:
            omitted += 1
            continue
        blocks.append(block)
        ids.append(memory_id)
        used += cost
    return blocks, ids, used, omitted


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
