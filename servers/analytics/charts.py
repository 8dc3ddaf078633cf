"""Charts: a small validated spec turned into Vega-Lite with inline data, rendered locally to PNG and
SVG by vl-convert, and stored under a folder by the hash of the full Vega-Lite document (the same
chart of the same data is stored once)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.errors import InvalidInput
from servers.analytics.engine import Table

Kind = Literal["bar", "line", "area", "scatter", "histogram", "box", "heatmap"]
Aggregate = Literal["none", "count", "sum", "mean", "median", "min", "max"]
KINDS: tuple[str, ...] = ("bar", "line", "area", "scatter", "histogram", "box", "heatmap")
AGGREGATES: tuple[str, ...] = ("none", "count", "sum", "mean", "median", "min", "max")
MAX_POINTS = 5000

_NUMBER = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL|REAL)")
_TIME = re.compile(r"^(DATE|TIMESTAMP|TIME)")


@dataclass(frozen=True)
class ChartSpec:
    """What the caller asks for. ``y`` may be omitted for histogram and count aggregates."""

    kind: Kind
    x: str
    y: str | None = None
    color: str | None = None
    aggregate: Aggregate = "none"
    title: str | None = None
    width: int = 640
    height: int = 400
    bins: int = 20


@dataclass
class Chart:
    id: str
    png_path: str
    svg_path: str
    spec_path: str
    vega_lite: dict[str, Any]
    description: str
    points: int
    truncated: bool
    notes: list[str] = field(default_factory=list)


def _field_type(col_type: str) -> str:
    if _TIME.match(col_type):
        return "temporal"
    if _NUMBER.match(col_type):
        return "quantitative"
    return "nominal"


def validate(spec: ChartSpec, table: Table) -> None:
    """Raise ``InvalidInput`` naming the fix when the spec does not fit the data."""
    if spec.kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    if spec.aggregate not in AGGREGATES:
        raise InvalidInput(f"aggregate must be one of {', '.join(AGGREGATES)}")
    if not (50 <= spec.width <= 4000 and 50 <= spec.height <= 4000):
        raise InvalidInput("width and height must be between 50 and 4000 pixels")
    if not 2 <= spec.bins <= 200:
        raise InvalidInput("bins must be between 2 and 200")
    if spec.title is not None and len(spec.title) > 200:
        raise InvalidInput("title must be at most 200 characters")
    names = [c.name for c in table.columns]
    types = {c.name: c.type for c in table.columns}
    for role, col in (("x", spec.x), ("y", spec.y), ("color", spec.color)):
        if col is not None and col not in names:
            raise InvalidInput(f"{role} column {col[:40]!r} is not in the result; columns: {names[:30]}")
    needs_y = spec.kind in ("scatter", "box", "line", "area", "bar") and spec.aggregate != "count"
    if needs_y and spec.y is None:
        raise InvalidInput(f"a {spec.kind} chart needs y (or aggregate='count')")
    if spec.kind == "heatmap" and spec.y is None:
        raise InvalidInput("a heatmap needs x and y (and optionally color with an aggregate)")
    if spec.kind in ("scatter", "histogram") and _field_type(types[spec.x]) == "nominal":
        raise InvalidInput(f"a {spec.kind} needs a numeric or time x column; {spec.x[:40]!r} is {types[spec.x]}")
    if spec.kind in ("scatter", "box") and spec.y is not None and _field_type(types[spec.y]) != "quantitative":
        raise InvalidInput(f"a {spec.kind} needs a numeric y column; {spec.y[:40]!r} is {types[spec.y]}")


def to_vega_lite(spec: ChartSpec, table: Table, max_points: int = MAX_POINTS) -> tuple[dict[str, Any], int, bool]:
    """The Vega-Lite document with at most ``max_points`` inline rows, the rows used, and whether cut."""
    validate(spec, table)
    types = {c.name: c.type for c in table.columns}
    used = [c for c in (spec.x, spec.y, spec.color) if c is not None]
    idx = [next(i for i, c in enumerate(table.columns) if c.name == name) for name in used]
    values = [{name: row[i] for name, i in zip(used, idx, strict=True)} for row in table.rows[:max_points]]
    truncated = len(table.rows) > max_points

    def enc(name: str, **extra: Any) -> dict[str, Any]:
        return {"field": name, "type": _field_type(types[name]), **extra}

    agg = None if spec.aggregate == "none" else spec.aggregate
    encoding: dict[str, Any]
    mark: dict[str, Any] | str
    if spec.kind == "histogram":
        mark = "bar"
        encoding = {"x": enc(spec.x, bin={"maxbins": spec.bins}), "y": {"aggregate": "count", "type": "quantitative"}}
    elif spec.kind == "heatmap":
        assert spec.y is not None
        mark = "rect"
        x = {"field": spec.x, "type": "ordinal"}
        y = {"field": spec.y, "type": "ordinal"}
        if spec.color is None:
            color: dict[str, Any] = {"aggregate": "count", "type": "quantitative"}
        else:
            color = {"field": spec.color, "type": "quantitative", "aggregate": agg or "mean"}
        encoding = {"x": x, "y": y, "color": color}
    else:
        mark = {"bar": "bar", "line": "line", "area": "area", "scatter": "point", "box": "boxplot"}[spec.kind]
        x_enc = enc(spec.x)
        if spec.kind == "box" and x_enc["type"] == "quantitative":
            x_enc["type"] = "nominal"
        if spec.kind == "bar" and x_enc["type"] == "quantitative":
            x_enc["type"] = "ordinal"
        encoding = {"x": x_enc}
        if agg == "count" and spec.y is None:
            encoding["y"] = {"aggregate": "count", "type": "quantitative"}
        elif spec.y is not None:
            encoding["y"] = enc(spec.y, **({"aggregate": agg} if agg and spec.kind != "box" else {}))
        if spec.color is not None:
            encoding["color"] = enc(spec.color)
    doc: dict[str, Any] = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "width": spec.width,
        "height": spec.height,
        # fit + padding: the whole image, axes and legend included, is width x height pixels
        "autosize": {"type": "fit", "contains": "padding"},
        "data": {"values": values},
        "mark": mark,
        "encoding": encoding,
    }
    if spec.title:
        doc["title"] = spec.title
    return doc, len(values), truncated


def describe(spec: ChartSpec, points: int, truncated: bool) -> str:
    """One line saying what the chart shows."""
    what = spec.y if spec.y else "count"
    agg = f"{spec.aggregate} of " if spec.aggregate not in ("none", "count") else ""
    by = f" by {spec.color}" if spec.color else ""
    cut = f" (first {points} rows)" if truncated else ""
    if spec.kind == "histogram":
        return f"Histogram of {spec.x} in {spec.bins} bins over {points} rows{cut}"
    return f"{spec.kind.capitalize()} chart of {agg}{what} against {spec.x}{by}, {points} rows{cut}"


def render(spec: ChartSpec, table: Table, folder: Path, max_points: int = MAX_POINTS) -> Chart:
    """Render ``table`` as ``spec`` to PNG and SVG under ``folder`` (created if missing)."""
    import vl_convert  # heavy: only when a chart is drawn

    doc, points, truncated = to_vega_lite(spec, table, max_points)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    folder.mkdir(parents=True, exist_ok=True)
    png, svg, spec_file = (folder / f"{digest}{ext}" for ext in (".png", ".svg", ".vl.json"))
    if not (png.exists() and svg.exists()):
        try:
            png_bytes = vl_convert.vegalite_to_png(doc, scale=1)
            svg_text = vl_convert.vegalite_to_svg(doc)
        except Exception as exc:
            raise InvalidInput(f"the chart could not be rendered: {str(exc)[:160]}") from exc
        for path, data in ((png, png_bytes), (svg, svg_text.encode()), (spec_file, text.encode())):
            # a name of its own per writer: two processes may render the same chart at once
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
    return Chart(
        id=digest,
        png_path=str(png),
        svg_path=str(svg),
        spec_path=str(spec_file),
        vega_lite=doc,
        description=describe(spec, points, truncated),
        points=points,
        truncated=truncated,
    )
