"""Trend charts render to small PNGs of the asked size."""

from __future__ import annotations

import struct

from servers.code_quality.charts import trend_png


def test_a_trend_chart_is_a_png_of_the_requested_size() -> None:
    points = [(f"2026-12-{d:02d}", float(d % 5)) for d in range(1, 25)]
    png = trend_png(points, title="findings (high)", width_px=500, height_px=250)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (500, 250)
    assert len(png) < 100_000
    assert trend_png(points, title="findings (high)", width_px=500, height_px=250) == png
