"""Forecasts recover a known trend and season; supervised metrics equal scikit-learn's own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from common.errors import InvalidInput
from servers.analytics.predict import Prediction, fit_supervised, forecast, rescore


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    t = np.arange(132)
    rng = np.random.default_rng(7)
    y = 20 + 0.8 * t + 6 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.4, len(t))
    return pd.DataFrame({"month": pd.date_range("2014-01-01", periods=len(t), freq="MS"), "sales": y})


def test_a_forecast_recovers_a_known_trend_and_season(series: pd.DataFrame) -> None:
    train, future = series.iloc[:120], series.iloc[120:]
    pred = forecast(train, "month", "sales", 24)
    assert pred.parameters["trend"] == "add"
    assert pred.parameters["seasonal"] == "add"
    assert pred.parameters["seasonal_periods"] == 12
    values = np.array([p["value"] for p in pred.predicted], dtype=float)
    # a full season averages the seasonal part out: the year-on-year step is twelve trend steps
    assert (values[12:].mean() - values[:12].mean()) / 12 == pytest.approx(0.8, abs=0.05)
    steps = np.arange(24)
    detrended = values - np.polyval(np.polyfit(steps, values, 1), steps)
    assert (detrended.max() - detrended.min()) / 2 == pytest.approx(6, rel=0.15)
    assert int(np.argmax(detrended[:12])) == 3  # sin peaks a quarter into the season
    assert [p["key"] for p in pred.predicted[:12]] == [t.isoformat() for t in future["month"]]
    truth = 20 + 0.8 * np.arange(120, 132) + 6 * np.sin(2 * np.pi * np.arange(120, 132) / 12)
    assert np.max(np.abs(values[:12] - truth)) < 1.5
    assert all(p["lower"] < p["value"] < p["upper"] for p in pred.predicted)  # type: ignore[operator]
    scores = rescore(pred, {str(p["key"]): float(a) for p, a in zip(pred.predicted, future["sales"], strict=False)})
    assert scores["mae"] is not None
    assert scores["mae"] < 1.5
    assert scores["coverage"] is not None
    assert scores["coverage"] >= 0.75
    assert scores["matched"] == 12


def test_a_series_without_season_gets_no_seasonal_component() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"t": np.arange(60), "v": 5 + rng.normal(0, 1, 60)})
    pred = forecast(frame, "t", "v", 5)
    assert pred.parameters["seasonal"] is None
    assert [p["key"] for p in pred.predicted] == [60, 61, 62, 63, 64]


def test_a_prediction_round_trips_through_json() -> None:
    frame = pd.DataFrame({"t": np.arange(30), "v": np.sin(np.arange(30)) + np.arange(30)})
    pred = forecast(frame, "t", "v", 3)
    back = Prediction.from_dict(json.loads(json.dumps(pred.to_dict())))
    assert back == pred
    assert back.data_fingerprint.startswith("sha256:")
    assert back.data_fingerprint == forecast(frame.copy(), "t", "v", 3).data_fingerprint
    assert back.data_fingerprint != forecast(frame.assign(v=frame.v + 1), "t", "v", 3).data_fingerprint


def test_regression_metrics_equal_scikit_learns_on_the_same_split(diabetes: pd.DataFrame) -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split

    features = ["age", "sex", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    pred = fit_supervised(diabetes, "target", features, test_size=0.25, seed=3)
    assert pred.task == "regression"
    x_train, x_test, y_train, y_test = train_test_split(
        diabetes[features], diabetes["target"], test_size=0.25, random_state=3
    )
    ours = LinearRegression().fit(x_train, y_train).predict(x_test)
    assert pred.metrics["mae"] == pytest.approx(mean_absolute_error(y_test, ours), rel=1e-9)
    assert pred.metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y_test, ours)), rel=1e-9)
    assert pred.metrics["r2"] == pytest.approx(r2_score(y_test, ours), rel=1e-9)
    assert [p["key"] for p in pred.predicted] == list(x_test.index)
    again = rescore(pred, [p["actual"] for p in pred.predicted])
    assert again["mae"] == pytest.approx(pred.metrics["mae"], rel=1e-12)


def test_classification_reports_accuracy_f1_and_roc_auc(diabetes: pd.DataFrame) -> None:
    from sklearn.metrics import accuracy_score

    frame = diabetes.assign(high=np.where(diabetes["target"] > 140, "yes", "no")).drop(columns=["target"])
    pred = fit_supervised(frame, "high", ["age", "bmi", "bp", "s5", "group"], seed=0)
    assert pred.task == "classification"
    assert pred.metrics["accuracy"] == pytest.approx(
        accuracy_score([p["actual"] for p in pred.predicted], [p["value"] for p in pred.predicted])
    )
    assert pred.metrics["accuracy"] is not None
    assert pred.metrics["accuracy"] > 0.6
    assert pred.metrics["roc_auc"] is not None
    assert pred.metrics["roc_auc"] > 0.7
    assert pred.parameters["categorical_features"] == ["group"]
    assert rescore(pred, {str(p["key"]): p["actual"] for p in pred.predicted})["accuracy"] == pred.metrics["accuracy"]


def test_bad_prediction_requests_say_what_to_fix(series: pd.DataFrame, diabetes: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="at least 8"):
        forecast(series.head(5), "month", "sales", 3)
    with pytest.raises(InvalidInput, match="horizon"):
        forecast(series, "month", "sales", 0)
    with pytest.raises(InvalidInput, match="not in the data"):
        fit_supervised(diabetes, "nope")
    pred = forecast(series, "month", "sales", 2)
    with pytest.raises(InvalidInput, match="no actual value"):
        rescore(pred, {"1999-01-01": 1.0})


def test_a_registered_csv_with_a_date_column_forecasts_through_the_engine(tmp_path, series: pd.DataFrame) -> None:
    from servers.analytics.engine import Engine
    from servers.analytics.sources import make_dataset

    path = tmp_path / "sales.csv"
    series.assign(month=series["month"].dt.date).to_csv(path, index=False)
    engine = Engine([make_dataset("sales", path)])
    frame, total = engine.frame("SELECT month, sales FROM sales ORDER BY month", max_rows=10_000)
    assert total == len(series)
    pred = forecast(frame, "month", "sales", 6)
    assert pred.parameters["seasonal_periods"] == 12
    assert pred.predicted[0]["key"] == "2025-01-01T00:00:00"


def test_a_time_column_that_is_not_time_is_refused() -> None:
    frame = pd.DataFrame({"t": ["a", "b", "c"] * 5, "v": np.arange(15.0)})
    with pytest.raises(InvalidInput, match="dates, times or numbers"):
        forecast(frame, "t", "v", 2)
