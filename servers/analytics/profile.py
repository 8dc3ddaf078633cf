"""Column profiles computed by DuckDB over a dataset view: one aggregate pass, then a query per
histogram or top-values list, all on one locked connection.

Above ``exact_limit`` rows, distinct counts and quantiles use DuckDB's approximate aggregates
(HyperLogLog, t-digest) so a 10M-row file profiles in seconds; ``approximate`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from common.errors import InvalidInput
from servers.analytics.engine import Engine, JSONValue, Table
from servers.analytics.sources import quote_ident

Semantic = Literal["id", "category", "timestamp", "measure", "text", "boolean", "other"]

_NUMERIC = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|DOUBLE|DECIMAL)"
)
_INTEGER = re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)")
_TEMPORAL = re.compile(r"^(DATE|TIMESTAMP|TIME)")
_NESTED = re.compile(r"(\[\]|^STRUCT|^MAP|^UNION|^LIST|^ARRAY|^BLOB|^BIT|^VARIANT|^GEOMETRY)")
_ID_NAME = re.compile(r"(^id$|_id$|^id_|key$|uuid|identifier)", re.IGNORECASE)


@dataclass
class ColumnProfile:
    name: str
    type: str
    semantic: Semantic
    count: int
    nulls: int
    distinct: int
    min: JSONValue = None
    max: JSONValue = None
    mean: float | None = None
    std: float | None = None
    p25: float | None = None
    p50: float | None = None
    p75: float | None = None
    top: list[tuple[JSONValue, int]] = field(default_factory=list)
    histogram: list[tuple[float, float, int]] = field(default_factory=list)


@dataclass
class Profile:
    dataset: str
    rows: int
    approximate: bool
    columns: list[ColumnProfile]


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def semantic_type(
    type_: str, name: str, count: int, distinct: int, values: list[Any] | None = None, *, approx: bool = False
) -> Semantic:
    """The column's role from its DuckDB type, its name and its cardinality.

    boolean: BOOLEAN, or exactly two values that read as 0/1, true/false, yes/no. timestamp: DATE,
    TIME, TIMESTAMP. id: integer or text, every non-null value distinct, and an id-like name or
    text. category: text or integer with few values (<= 20, or <= 5% of rows). measure: other numbers.
    text: other strings. other: nested and binary types. With ``approx`` distinct counts, 90% unique
    counts as unique (HyperLogLog is off by several percent).
    """
    if type_ == "BOOLEAN":
        return "boolean"
    if values is not None and distinct == 2:
        words = {str(v).strip().lower() for v in values}
        if words in ({"0", "1"}, {"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}):
            return "boolean"
    if _TEMPORAL.match(type_):
        return "timestamp"
    if _NESTED.search(type_):
        return "other"
    is_text = type_ == "VARCHAR"
    is_int = bool(_INTEGER.match(type_))
    unique = count > 0 and distinct >= count * (0.9 if approx else 1.0)
    if unique and count > 20 and (is_text or (is_int and _ID_NAME.search(name))):
        return "id"
    few = distinct <= 20 or distinct <= 0.05 * count
    if (is_text or is_int) and few:
        return "category"
    if _NUMERIC.match(type_):
        return "category" if distinct <= 10 and count > 50 else "measure"
    return "text"


def _aggregates(col: str, type_: str, approx: bool) -> list[str]:
    q = quote_ident(col)
    distinct = f"approx_count_distinct({q})" if approx else f"count(DISTINCT {q})"
    exprs = [f"count({q})", distinct]
    if _NESTED.search(type_):
        return [*exprs, "NULL", "NULL", "NULL", "NULL", "NULL"]
    exprs += [f"min({q})", f"max({q})"]
    if _NUMERIC.match(type_):
        quant = "approx_quantile" if approx else "quantile_cont"
        exprs += [
            f"avg({q}::DOUBLE)",
            f"stddev_samp({q}::DOUBLE)",
            f"{quant}({q}::DOUBLE, [0.25, 0.5, 0.75])",
        ]
    else:
        exprs += ["NULL", "NULL", "NULL"]
    return exprs


def profile(
    engine: Engine,
    dataset: str,
    *,
    columns: list[str] | None = None,
    top_k: int = 5,
    bins: int = 10,
    exact_limit: int = 1_000_000,
    report: Callable[[int, int | None, str], None] | None = None,
) -> Profile:
    """Profile every column (or ``columns``) of ``dataset``: counts, range, moments, quartiles,
    top values for non-measures, an equal-width histogram for measures, and a semantic type.

    ``report(done, total, message)`` is called before each pass; an exception it raises (a cancel)
    stops the profile there."""
    if not 1 <= bins <= 100 or not 0 <= top_k <= 50:
        raise InvalidInput("bins must be 1-100 and top_k 0-50")
    view = quote_ident(engine.dataset(dataset).name)
    with engine.trusted() as run:
        schema = [(str(r[0]), str(r[1])) for r in run(f"DESCRIBE SELECT * FROM {view}").rows]
        if columns is not None:
            known = {n for n, _ in schema}
            missing = [c for c in columns if c not in known]
            if missing:
                raise InvalidInput(f"unknown columns {missing[:5]}; the dataset has {sorted(known)[:30]}")
            schema = [(n, t) for n, t in schema if n in set(columns)]
        if report is not None:
            report(0, len(schema) + 1, "counting rows and aggregating every column")
        total = int(str(run(f"SELECT count(*) FROM {view}").rows[0][0]))
        approx = total > exact_limit
        exprs = [e for n, t in schema for e in _aggregates(n, t, approx)]
        agg: Table = run(f"SELECT {', '.join(exprs)} FROM {view}") if exprs else Table([], [[]])
        flat = agg.rows[0]
        out: list[ColumnProfile] = []
        for i, (name, type_) in enumerate(schema):
            if report is not None:
                report(i + 1, len(schema) + 1, f"column {name[:80]}")
            cnt, dist, lo, hi, mean, std, quart = flat[i * 7 : i * 7 + 7]
            count, distinct = int(str(cnt)), int(str(dist))
            q = quote_ident(name)
            top: list[tuple[JSONValue, int]] = []
            sample_values = None
            if distinct <= 2 and not _NESTED.search(type_):
                sample_values = [r[0] for r in run(f"SELECT DISTINCT {q} FROM {view} WHERE {q} IS NOT NULL").rows]
            sem = semantic_type(type_, name, count, distinct, sample_values, approx=approx)
            col = ColumnProfile(
                name=name, type=type_, semantic=sem, count=count, nulls=total - count, distinct=distinct
            )
            if not _NESTED.search(type_):
                col.min, col.max = lo, hi
            if isinstance(quart, list):
                col.mean, col.std = _float(mean), _float(std)
                col.p25, col.p50, col.p75 = (_float(v) for v in quart)
            if top_k and sem in ("category", "boolean", "text", "timestamp") and 0 < distinct < count:
                rows = run(
                    f"SELECT {q}, count(*) AS n FROM {view} WHERE {q} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1",
                    [top_k],
                ).rows
                top = [(r[0], int(str(r[1]))) for r in rows]
                col.top = top
            if sem == "measure" and isinstance(lo, int | float) and isinstance(hi, int | float) and count:
                col.histogram = _histogram(run, view, q, float(lo), float(hi), bins)
            out.append(col)
    return Profile(dataset=dataset, rows=total, approximate=approx, columns=out)


def _histogram(run: Any, view: str, q: str, lo: float, hi: float, bins: int) -> list[tuple[float, float, int]]:
    if hi <= lo:
        n = int(str(run(f"SELECT count({q}) FROM {view}").rows[0][0]))
        return [(lo, hi, n)]
    width = (hi - lo) / bins
    rows = run(
        f"SELECT least(CAST(floor(({q}::DOUBLE - $1) / $2) AS BIGINT), $3) AS b, count(*) "
        f"FROM {view} WHERE {q} IS NOT NULL GROUP BY 1 ORDER BY 1",
        [lo, width, bins - 1],
    ).rows
    counts = {int(str(b)): int(str(n)) for b, n in rows}
    return [(lo + i * width, lo + (i + 1) * width, counts.get(i, 0)) for i in range(bins)]
