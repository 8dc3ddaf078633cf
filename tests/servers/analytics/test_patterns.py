"""Patterns: correlations with p-values, outliers, trend and season, change points, segments."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from servers.analytics.patterns import (
    change_points,
    correlations,
    outlier_mask,
    outliers,
    segments,
    trend_and_seasonality,
)


def test_correlations_equal_scipys_and_come_strongest_first(diabetes: pd.DataFrame) -> None:
    found = correlations(diabetes, ["s1", "s2", "s3", "s4", "bmi", "target"], min_abs=0.3)
    assert [abs(p.statistic) for p in found] == sorted((abs(p.statistic) for p in found), reverse=True)
    top = found[0]
    assert top.columns == ["s1", "s2"]
    expected = stats.pearsonr(diabetes["s1"], diabetes["s2"])
    assert top.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert top.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert top.strength == "strong"
    assert "s1 and s2 rise together" in top.description
    assert len(top.sample) == 5
    spearman = correlations(diabetes, ["s3", "s4"], method="spearman")[0]
    assert spearman.statistic == pytest.approx(stats.spearmanr(diabetes["s3"], diabetes["s4"]).statistic)
    assert "opposite" in spearman.description
    json.dumps([p.to_dict() for p in found])


def test_outliers_find_injected_extremes() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(100, 5, 500)
    values[[10, 200, 400]] = [300, -150, 260]
    frame = pd.DataFrame({"id": range(500), "v": values})
    for method in ("iqr", "robust_z"):
        mask = outlier_mask(values, method)
        assert {10, 200, 400} <= set(np.flatnonzero(mask))
    robust = outliers(frame, ["v"], method="robust_z")[0]
    assert robust.statistic >= 3
    assert [row["id"] for row in robust.sample[:3]] == [200, 10, 400]
    assert "outliers in v" in robust.description


def test_trend_and_seasonality_are_recovered_from_a_known_series() -> None:
    t = np.arange(96)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"t": t, "y": 3 + 0.25 * t + 4 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.3, len(t))})
    trend, season = trend_and_seasonality(frame, "t", "y", period=12)
    assert trend.statistic == pytest.approx(0.25, abs=0.02)
    assert trend.strength == "strong"
    assert season.details["period"] == 12
    assert season.details["amplitude"] == pytest.approx(4, rel=0.15)
    assert season.details["peak_position"] == 3
    assert season.strength == "strong"


def test_change_points_are_found_near_the_true_shifts() -> None:
    rng = np.random.default_rng(5)
    values = np.r_[rng.normal(0, 1, 80), rng.normal(6, 1, 70), rng.normal(2, 1, 50)]
    found = change_points(pd.DataFrame({"t": range(200), "v": values}), "t", "v")
    assert [abs(p.details["index"] - true) <= 3 for p, true in zip(found, (80, 150), strict=True)] == [True, True]  # type: ignore[operator]
    assert found[0].statistic == pytest.approx(6, abs=0.6)
    flat = change_points(pd.DataFrame({"t": range(200), "v": rng.normal(0, 1, 200)}), "t", "v")
    assert flat == []


def test_segments_recover_well_separated_groups() -> None:
    rng = np.random.default_rng(2)
    centres = [(0, 0), (10, 0), (0, 10)]
    points = np.vstack([rng.normal(c, 0.7, (60, 2)) for c in centres])
    found = segments(pd.DataFrame(points, columns=["a", "b"]).assign(label="x"), max_k=5)
    assert found.details["k"] == 3
    assert sorted(found.details["sizes"]) == [60, 60, 60]  # type: ignore[arg-type]
    assert found.statistic > 0.7
    assert found.columns == ["a", "b"]
    assert found.strength == "strong"
