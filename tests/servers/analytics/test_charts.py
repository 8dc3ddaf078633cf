"""Charts from query results: validated, rendered locally to PNG and SVG, stored by content hash."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from common.errors import InvalidInput
from servers.analytics.charts import ChartSpec, render, to_vega_lite
from servers.analytics.engine import Column, Engine, Table


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.fixture
def result(engine: Engine) -> Table:
    return engine.query('SELECT age, bmi, target, "group", patient_id FROM data ORDER BY patient_id', limit=1000)


SPECS = [
    ChartSpec(kind="bar", x="group", y="target", aggregate="mean", title="Mean target by group"),
    ChartSpec(kind="line", x="patient_id", y="target", width=500, height=300),
    ChartSpec(kind="area", x="patient_id", y="bmi", color="group"),
    ChartSpec(kind="scatter", x="bmi", y="target", color="group", width=800, height=600),
    ChartSpec(kind="histogram", x="target", bins=15),
    ChartSpec(kind="box", x="group", y="target"),
    ChartSpec(kind="heatmap", x="group", y="age", color="target", aggregate="mean", width=300, height=700),
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.kind for s in SPECS])
def test_each_chart_kind_renders_a_png_of_the_requested_size_and_a_valid_svg(
    spec: ChartSpec, result: Table, tmp_path: Path
) -> None:
    chart = render(spec, result, tmp_path / "charts")
    png, svg = Path(chart.png_path), Path(chart.svg_path)
    assert png.parent == tmp_path / "charts"
    assert _png_size(png) == (spec.width, spec.height)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert chart.id in png.name
    assert chart.description
    assert "\n" not in chart.description
    assert chart.points == len(result.rows)
    assert chart.truncated is False


def test_the_same_chart_is_stored_once_and_different_data_gets_a_new_file(result: Table, tmp_path: Path) -> None:
    spec = SPECS[0]
    first = render(spec, result, tmp_path)
    again = render(spec, result, tmp_path)
    assert first.png_path == again.png_path
    other = render(spec, Table(result.columns, result.rows[:10]), tmp_path)
    assert other.png_path != first.png_path
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_inline_data_is_capped_and_the_cut_is_reported() -> None:
    table = Table([Column("x", "BIGINT"), Column("y", "DOUBLE")], [[i, i * 2.0] for i in range(50)])
    doc, points, truncated = to_vega_lite(ChartSpec(kind="scatter", x="x", y="y"), table, max_points=20)
    assert (points, truncated, len(doc["data"]["values"])) == (20, True, 20)
    assert doc["encoding"]["x"] == {"field": "x", "type": "quantitative"}


def test_a_spec_that_does_not_fit_the_data_is_refused_with_the_fix(result: Table) -> None:
    bad = [
        (ChartSpec(kind="bar", x="nope", y="target"), "not in the result"),
        (ChartSpec(kind="scatter", x="group", y="target"), "numeric"),
        (ChartSpec(kind="line", x="age"), "needs y"),
        (ChartSpec(kind="bar", x="age", y="target", width=10), "width"),
        (ChartSpec(kind="pie", x="age", y="target"), "kind"),  # type: ignore[arg-type]
        (ChartSpec(kind="box", x="group", y="group"), "numeric"),
    ]
    for spec, fragment in bad:
        with pytest.raises(InvalidInput, match=fragment):
            to_vega_lite(spec, result)
