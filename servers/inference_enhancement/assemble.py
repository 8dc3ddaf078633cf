"""Results from rows: graphs cut to a character budget, and fact blocks cut to a token budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from common.retrieval import estimate_tokens
from servers.inference_enhancement.models import Entity, Prompt, Relation
from servers.inference_enhancement.store import Rel


def relation(r: Rel) -> Relation:
    """A relation in the reference server's shape."""
    return Relation.model_validate({"from": r.from_name, "to": r.to_name, "relationType": r.relation_type})


def graph_part(
    ids: Sequence[int],
    doc_rows: Sequence[Any],
    rels: Sequence[Rel],
    relations: Literal["from", "touching"],
    budget: int,
) -> tuple[list[Entity], list[Rel], int]:
    """Entities ``ids`` (in that order, those present in ``doc_rows``) with their relations, cut to ``budget``
    characters.

    A relation belongs to its source (``from``) or, when it touches two listed entities, to the one
    listed first (``touching``). Returns the entities kept, their relations by id, and how many of
    the present ids were kept (at least one).
    """
    docs = {r["id"]: r for r in doc_rows}
    ids = [i for i in ids if i in docs]
    position = {i: n for n, i in enumerate(ids)}
    by_entity: dict[int, list[Rel]] = {}
    for rel in rels:
        if rel.from_id not in position and rel.to_id not in position:
            continue
        if relations == "from":
            if rel.from_id not in position:
                continue
            key = rel.from_id
        else:  # a relation between two listed entities belongs to the one listed first
            key = min((x for x in (rel.from_id, rel.to_id) if x in position), key=position.__getitem__)
        by_entity.setdefault(key, []).append(rel)
    kept: list[Entity] = []
    kept_rels: list[Rel] = []
    used = 0
    for i in ids:
        r = docs[i]
        entity = Entity(name=r["name"], entityType=r["entity_type"], observations=list(r["observations"]))
        mine = by_entity.get(i, [])
        cost = len(entity.model_dump_json()) + sum(
            60 + len(x.from_name) + len(x.to_name) + len(x.relation_type) for x in mine
        )
        if kept and used + cost > budget:
            break
        used += cost
        kept.append(entity)
        kept_rels.extend(mine)
    kept_rels.sort(key=lambda x: x.id)
    return kept, kept_rels, len(kept)


def facts_block(
    query: str,
    rows: Sequence[Any],
    observations: Mapping[int, Sequence[str]],
    rels: Sequence[Rel],
    max_tokens: int,
) -> Prompt:
    """Lines citing ``[entity]`` for the entities ``rows`` (best first) within ``max_tokens``.

    An entity's first line (type and best observation) comes before its other observations and
    relations; an entity whose first line does not fit is left out, and a later line that does not
    fit is skipped for a shorter one.
    """
    header = f"Known facts (knowledge graph) for: {query[:200]}"
    lines = [header]
    used = estimate_tokens(header) + 1
    cited: list[str] = []
    for r in rows:
        obs = observations[r["id"]]
        own = [x for x in rels if r["id"] in (x.from_id, x.to_id)]
        candidates = [f"[{r['name']}] ({r['entity_type']})" + (f": {obs[0]}" if obs else "")]
        candidates += [f"[{r['name']}] {o}" for o in obs[1:]]
        candidates += [f"[{x.from_name}] {x.relation_type} [{x.to_name}]" for x in own]
        for i, line in enumerate(candidates):
            cost = estimate_tokens(line) + 1
            if used + cost > max_tokens:
                if i == 0:
                    break
                continue
            if line not in lines:
                lines.append(line)
                used += cost
                if i == 0:
                    cited.append(r["name"])
    if not cited:
        return Prompt(text="", entities=[], tokens=0)
    block = "\n".join(lines)
    return Prompt(text=block, entities=cited, tokens=estimate_tokens(block))
