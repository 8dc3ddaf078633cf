"""Breadth-first walks over relations, one query per level.

One query per level with a visited set (rather than one recursive CTE) because a recursive CTE
explores every path, not every node: around a hub, depth 3 multiplies into millions of rows, while
a level-by-level walk touches each node once, stops at ``max_visited`` and cannot loop on cycles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from servers.inference_enhancement.store import Rel

#: ``step(frontier, limit, direction) -> relations`` leaving ('out'), entering ('in') or touching ('both')
#: the frontier (relation-type and time filters already bound).
Step = Callable[[Sequence[int], int, str], Awaitable[list[Rel]]]
REVERSE = {"out": "in", "in": "out", "both": "both"}


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
        found = await step(frontier, max_visited * 4, direction)
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


@dataclass
class _Side:
    direction: str
    parent: dict[int, tuple[int, Rel] | None]
    depth: dict[int, int]
    frontier: list[int]


async def shortest_path(
    source: int, target: int, max_depth: int, step: Step, *, direction: str, max_visited: int
) -> PathResult:
    """A shortest path by hop count, or found=False within the bounds.

    Bidirectional: each round expands the smaller of the two frontiers by one level (the target side
    walks relations backwards), so a path of length d costs about two searches of depth d/2 instead
    of one of depth d: around a degree-4 node, hundreds of nodes instead of thousands.
    """
    if source == target:
        return PathResult(True, [source], [], 1, False)
    fwd = _Side(direction, {source: None}, {source: 0}, [source])
    bwd = _Side(REVERSE[direction], {target: None}, {target: 0}, [target])
    for _ in range(max_depth):
        if not fwd.frontier or not bwd.frontier:
            break
        me, other = (fwd, bwd) if len(fwd.frontier) <= len(bwd.frontier) else (bwd, fwd)
        in_frontier = set(me.frontier)
        level = me.depth[me.frontier[0]] + 1
        nxt: list[int] = []
        best: tuple[int, int] | None = None  # (total hops, meeting node)
        for rel in await step(me.frontier, max_visited * 4, me.direction):
            for node in (rel.from_id, rel.to_id):
                if node not in in_frontier:
                    continue
                nb = _other(rel, node, me.direction)
                if nb is None or nb in me.parent:
                    continue
                me.parent[nb] = (node, rel)
                me.depth[nb] = level
                nxt.append(nb)
                if nb in other.depth and (best is None or level + other.depth[nb] < best[0]):
                    best = (level + other.depth[nb], nb)
        me.frontier = nxt
        visited = len(fwd.parent) + len(bwd.parent)
        if best is not None:
            if best[0] > max_depth:
                break
            return _join(fwd.parent, bwd.parent, best[1], visited)
        if visited >= max_visited:
            return PathResult(False, [], [], visited, True)
    return PathResult(False, [], [], len(fwd.parent) + len(bwd.parent), False)


def _join(
    forward: dict[int, tuple[int, Rel] | None], backward: dict[int, tuple[int, Rel] | None], meet: int, visited: int
) -> PathResult:
    nodes = [meet]
    relations: list[Rel] = []
    link = forward[meet]
    while link is not None:
        node, rel = link
        nodes.insert(0, node)
        relations.insert(0, rel)
        link = forward[node]
    link = backward[meet]
    while link is not None:
        node, rel = link
        nodes.append(node)
        relations.append(rel)
        link = backward[node]
    return PathResult(True, nodes, relations, visited, False)
