"""Retrieval kit: rank fusion, token estimates, keyword query text and the embedding-dimension check.

Every server that ranks by meaning and by keywords fuses the two lists the same way (reciprocal
rank fusion), budgets text the same way and refuses an embedder whose vectors do not fit its
columns the same way.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from common.embeddings import Embedder

from common.errors import DimensionMismatch

K = TypeVar("K", bound=Hashable)

#: The usual RRF constant: ranks beyond the first few dozen matter little.
RRF_K = 60
#: Words of a query kept for an any-word (OR) full-text query; more adds cost, not recall.
MAX_QUERY_WORDS = 32

_WORD = re.compile(r"[^\W_]+")


def rrf(lists: Sequence[Iterable[K]], *, k: int = RRF_K, weights: Sequence[float] | None = None) -> dict[K, float]:
    """Reciprocal rank fusion: ``sum(weight / (k + rank))`` over the ranked lists (rank 1 = best)."""
    if weights is not None and len(weights) != len(lists):
        raise ValueError("one weight per list")
    scores: dict[K, float] = {}
    for n, ranked in enumerate(lists):
        weight = 1.0 if weights is None else weights[n]
        for rank, key in enumerate(ranked, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return scores


def rrf_rank(key_rank: int | None, *, k: int = RRF_K) -> float:
    """One list's contribution for an item at ``key_rank`` (1-based; None when the list missed it)."""
    return 0.0 if key_rank is None else 1.0 / (k + key_rank)


def estimate_tokens(text: str) -> int:
    """About four characters per token, rounded up: cheap, and close enough to budget English text."""
    return (len(text) + 3) // 4


def pack(items: Iterable[tuple[str, str]], budget: int) -> tuple[list[str], list[str], int, int]:
    """Greedily pack ``(id, block)`` pairs, best first, into ``budget`` tokens.

    A block that does not fit is skipped (a smaller later one may still fit). Returns the blocks,
    their ids, the tokens used and how many were left out.
    """
    blocks: list[str] = []
    ids: list[str] = []
    used = omitted = 0
    for item_id, block in items:
        cost = estimate_tokens(block) + 1  # the newline between blocks
        if used + cost > budget:
            omitted += 1
            continue
        blocks.append(block)
        ids.append(item_id)
        used += cost
    return blocks, ids, used, omitted


def query_words(text: str, *, limit: int = MAX_QUERY_WORDS) -> list[str]:
    """The distinct lower-cased words of ``text`` longer than one character, in order."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1]
    return list(dict.fromkeys(words))[:limit]


def any_word_tsquery(text: str) -> str:
    """An OR query of the words for ``to_tsquery``: ranks by how many words match instead of demanding all.

    Words are letters and digits only, so the result is always valid ``to_tsquery`` input.
    """
    return " | ".join(query_words(text))


def check_dimension(embedder: Embedder, dim: int, server: str) -> None:
    """Refuse an embedder whose vectors do not fit a server's ``vector(dim)`` columns, saying what to do."""
    if embedder.dim != dim:
        raise DimensionMismatch(
            f"EMBEDDING_MODEL={embedder.model_name!r} makes {embedder.dim}-dimensional vectors, but {server} "
            f"stores {dim}-dimensional ones. Unset EMBEDDING_MODEL (the default model is 384-dimensional) or "
            f"choose another {dim}-dimensional model."
        )
