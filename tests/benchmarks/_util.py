"""Small helpers shared by the benchmarks: percentiles and the table they print."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))


#: A small work vocabulary for synthetic memories and entities (a worst case for keyword search).
WORDS = [
    "deploy",
    "cache",
    "queue",
    "billing",
    "invoice",
    "search",
    "index",
    "schema",
    "migration",
    "token",
    "session",
    "retry",
    "timeout",
    "budget",
    "release",
    "review",
    "incident",
    "alert",
    "metric",
    "dashboard",
    "replica",
    "backup",
    "restore",
    "latency",
    "throughput",
    "login",
    "payment",
    "report",
    "export",
    "import",
    "sync",
    "webhook",
    "cron",
    "worker",
    "shard",
    "tenant",
    "quota",
    "audit",
    "policy",
    "secret",
    "rotation",
]
