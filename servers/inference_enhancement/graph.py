"""Breadth-first walks over relations, one query per level.

One query per level with a visited set (rather than one recursive CTE) because a recursive CTE
explores every path, not every node: around a hub, depth 3 multiplies into millions of rows, while
a level-by-level walk touches each node once, stops at ``max_visited`` and cannot loop on cycles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from servers.inference_enhancement.store import Rel

#: ``step(frontier, limit) -> relations`` touching the frontier (direction and filters already bound).
Step = Callable[[Sequence[int], int], Awaitable[list[Rel]]]


@dataclass
class Walk:
    depth: dict[int, int]  # node id -> hops from the start (insertion order = breadth-first order)
    relations: dict[int, Rel] = field(default_factory=dict)
    truncated: bool = False


def _other(rel: Rel, node: int, direction: str) -> int | None:
    if direction in ("out", "both") and rel.from_id == node:
        return rel.to_id
    if direction in ("in", "both") and rel.to_id == node:
        return rel.from_id
    return None


async def neighbourhood(start: int, depth: int, step: Step, *, direction: str, max_visited: int) -> Walk:
    """Every node within ``depth`` hops of ``start`` (at most ``max_visited``) and the relations walked."""
    walk = Walk(depth={start: 0})
    frontier = [start]
    for level in range(1, depth + 1):
        if not frontier:
            break
        found = await step(frontier, max_visited * 4)
        if len(found) >= max_visited * 4:
            walk.truncated = True
        in_frontier = set(frontier)
        nxt: list[int] = []
        for rel in found:
            for node in (rel.from_id, rel.to_id):
                if node not in in_frontier:
                    continue
                other = _other(rel, node, direction)
                if other is None:
                    continue
                if other not in walk.depth:
                    if len(walk.depth) >= max_visited:
                        walk.truncated = True
                        continue
                    walk.depth[other] = level
                    nxt.append(other)
                walk.relations.setdefault(rel.id, rel)
        frontier = nxt
    return walk


@dataclass
class PathResult:
    found: bool
    nodes: list[int]
    relations: list[Rel]
    visited: int
    truncated: bool


async def shortest_path(
    source: int, target: int, max_depth: int, step: Step, *, direction: str, max_visited: int
) -> PathResult:
    """A shortest path by hop count (ties: lowest relation id first), or found=False within the bounds."""
    if source == target:
        return PathResult(True, [source], [], 1, False)
    parent: dict[int, tuple[int, Rel] | None] = {source: None}
    frontier = [source]
    truncated = False
    for _ in range(max_depth):
        if not frontier:
            break
        found = await step(frontier, max_visited * 4)
        in_frontier = set(frontier)
        nxt: list[int] = []
        for rel in found:
            for node in (rel.from_id, rel.to_id):
                if node not in in_frontier:
                    continue
                other = _other(rel, node, direction)
                if other is None or other in parent:
                    continue
                parent[other] = (node, rel)
                nxt.append(other)
                if other == target:
                    return _trace(parent, target)
        if len(parent) >= max_visited:
            truncated = True
            break
        frontier = nxt
    return PathResult(False, [], [], len(parent), truncated)


def _trace(parent: dict[int, tuple[int, Rel] | None], target: int) -> PathResult:
    nodes = [target]
    relations: list[Rel] = []
    link = parent[target]
    while link is not None:
        node, rel = link
        nodes.append(node)
        relations.append(rel)
        link = parent[node]
    return PathResult(True, nodes[::-1], relations[::-1], len(parent), False)
