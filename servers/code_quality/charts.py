"""Trend charts of a metric across runs, as small PNGs (a tool returns them as a stored reference)."""

from __future__ import annotations

import io
from collections.abc import Sequence

MAX_POINTS = 200


def trend_png(points: Sequence[tuple[str, float]], *, title: str, width_px: int = 640, height_px: int = 280) -> bytes:
    """A line chart of ``points`` (label such as a date or commit, value), oldest first; the last
    ``MAX_POINTS`` are drawn."""
    # matplotlib takes about a second to import; only chart requests pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(points)[-MAX_POINTS:]
    dpi = 100
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = list(range(len(shown)))
    axes.plot(xs, [v for _, v in shown], marker="o" if len(shown) <= 30 else None, linewidth=1.5)
    axes.set_title(title[:80])
    step = max(1, len(shown) // 8)
    axes.set_xticks(xs[::step], [label[:12] for label, _ in shown][::step], rotation=30, ha="right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
