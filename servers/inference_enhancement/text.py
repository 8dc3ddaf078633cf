"""Plain text helpers of the graph: lower-casing, trigrams, keyword queries, embedding text, fusion.

Lower-casing happens here (Python) rather than in SQL because the reference server compares with
JavaScript's ``toLowerCase``, and PostgreSQL's ``lower()`` depends on the cluster's collation
(``C`` lowers ASCII only). Python's ``str.lower`` agrees with JavaScript on Unicode text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from common.errors import InvalidInput
from common.retrieval import rrf_rank

#: Separates name and type in an entity's lower-cased text, so no substring spans both (as in the reference).
SEP = "\x1f"
#: Added to every substring hit so everything the reference would find ranks ahead of meaning-only hits.
SUBSTRING_BONUS = 1.0
_WORD = re.compile(r"\w+", re.UNICODE)
#: Words kept in a keyword query; more only slows the full-text match down.
MAX_QUERY_WORDS = 16


def entity_lc(name: str, entity_type: str) -> str:
    return f"{name}{SEP}{entity_type}".lower()


def trigrams(lowered: str) -> list[str]:
    """The distinct 3-character substrings, exactly as the SQL function ``trigrams`` computes them."""
    return sorted({lowered[i : i + 3] for i in range(len(lowered) - 2)})


#: Characters that may join a batch's trigrams into one string per row (the first absent from the batch wins).
_SEPARATORS = "\x1e\x1d\x1c\x1b\x1a\x07" + "".join(chr(c) for c in range(0xE000, 0xE040))


def joined_grams(lowered: Sequence[str]) -> tuple[str, list[str]]:
    """Each text's trigrams as one string joined by a separator none of the texts contains.

    asyncpg cannot send a ragged array of arrays, so each row's trigrams travel as one string that
    SQL splits with ``string_to_array(g, sep)``.
    """
    sep = next((c for c in _SEPARATORS if not any(c in t for t in lowered)), None)
    if sep is None:
        raise InvalidInput("The texts use every separator character this server knows; split the call.")
    return sep, [sep.join(trigrams(t)) for t in lowered]


def keyword_query(query: str, op: str = "|") -> str | None:
    """The query's words joined by ``op`` (| or &) for ``to_tsquery`` (words only: no operator can sneak in)."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_WORDS]
    return f" {op} ".join(f"'{w}'" for w in words) if words else None


def embedding_text(name: str, entity_type: str, observations: Sequence[str], limit: int = 600) -> str:
    """What an entity's vector is made from: name, type, then its first observations, cut at ``limit``
    characters (~150 tokens: the start says what an entity is, and inference time grows with length)."""
    head = f"{name} ({entity_type})" if entity_type else name
    body = "; ".join(observations)
    return f"{head}: {body}"[:limit] if body else head[:limit]


@dataclass
class Fused:
    id: int
    score: float = 0.0
    substring: bool = False
    similarity: float | None = None
    sources: list[str] = field(default_factory=list)


def fuse(
    substring: Iterable[int], keyword: Iterable[int], vector: Iterable[tuple[int, float]], *, min_similarity: float
) -> list[Fused]:
    """Reciprocal rank fusion of keyword and vector lists, with every substring hit ranked first."""
    out: dict[int, Fused] = {}

    def get(i: int) -> Fused:
        return out.setdefault(i, Fused(i))

    for rank, i in enumerate(keyword):
        f = get(i)
        f.score += rrf_rank(rank + 1)
        f.sources.append("keyword")
    for rank, (i, sim) in enumerate(vector):
        if sim < min_similarity:
            continue
        f = get(i)
        f.score += rrf_rank(rank + 1)
        f.similarity = sim
        f.sources.append("vector")
    for i in substring:
        f = get(i)
        if not f.substring:
            f.substring = True
            f.score += SUBSTRING_BONUS
    return sorted(out.values(), key=lambda f: (-f.score, f.id))
