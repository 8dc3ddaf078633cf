"""Predictions as serialisable records: time-series forecasts with intervals, and regression or
classification scored on a held-out split; ``rescore`` compares a record with the actual outcome.

Forecast model choice: statsmodels' ETS (``ETSModel``, additive errors) is fitted for every
combination of trend (none, additive, additive damped) and, when the season length is known or
inferred from the time step (monthly 12, quarterly 4, weekly 52, daily 7, hourly 24) and there are
at least two full seasons, additive seasonality; the lowest AIC wins. Initial states use the
heuristic initialisation (see ``_fit_ets``), estimated only where the series is too short for it. ETS gives analytic prediction
intervals, fits in milliseconds and needs no order search, which SARIMAX would.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from common.errors import InvalidInput
from servers.analytics.engine import JSONValue, json_value

if TYPE_CHECKING:
    import numpy
    import pandas

Task = Literal["forecast", "regression", "classification"]
MAX_PREDICTED = 1000


@dataclass
class Prediction:
    """One prediction, JSON-ready: ``predicted`` rows hold ``key`` (time or row id), ``value`` and,
    for forecasts, ``lower``/``upper``; for supervised tasks also ``actual``."""

    task: Task
    model: str
    target: str
    features: list[str]
    parameters: dict[str, JSONValue]
    data_fingerprint: str
    metrics: dict[str, float | None]
    predicted: list[dict[str, JSONValue]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def frame_fingerprint(frame: pandas.DataFrame) -> str:
    """sha256 of pandas' per-row hashes and the column names: same data, same fingerprint."""
    import pandas as pd

    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return "sha256:" + digest.hexdigest()[:32]


def _clean(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


def _fit_ets(
    model: Any, y: pandas.Series, trend: str | None, damped: bool, seasonal: str | None, season: int | None
) -> Any:
    """Heuristic initial states (Hyndman's), falling back to estimating them on short series.

    Estimating the initial states by maximum likelihood often stops in a poor local optimum (a
    linear trend fitted as a damped one), and the heuristic is faster; AICs are compared only
    between fits of the same initialisation.
    """
    for init in ("heuristic", "estimated"):
        try:
            built = model(
                y,
                error="add",
                trend=trend,
                damped_trend=damped,
                seasonal=seasonal,
                seasonal_periods=season,
                initialization_method=init,
            )
        except ValueError:
            continue
        return built.fit(disp=False, maxiter=2000)
    raise ValueError("no initialisation fits this series")


def _season_from_step(index: pandas.DatetimeIndex) -> int | None:
    import pandas as pd

    if len(index) < 3:
        return None
    step = pd.Series(index).diff().median()
    days = step / pd.Timedelta(days=1)
    for lo, hi, season in (
        (27, 32, 12),
        (88, 93, 4),
        (6.5, 7.5, 52),
        (0.9, 1.1, 7),
        (1 / 24 - 0.001, 1 / 24 + 0.001, 24),
    ):
        if lo <= days <= hi:
            return season
    return None


def forecast(
    frame: pandas.DataFrame,
    time_col: str,
    value_col: str,
    horizon: int,
    *,
    season_length: int | None = None,
    level: float = 0.95,
) -> Prediction:
    """Forecast ``value_col`` ``horizon`` steps past the last ``time_col`` with a ``level`` interval."""
    import numpy as np
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel  # heavy: ~1 s to import

    for col in (time_col, value_col):
        if col not in frame.columns:
            raise InvalidInput(f"column {col[:40]!r} is not in the data; columns: {list(frame.columns)[:30]}")
    if not 1 <= horizon <= 1000:
        raise InvalidInput("horizon must be between 1 and 1000 steps")
    if not 0.5 <= level < 1:
        raise InvalidInput("level must be at least 0.5 and below 1 (e.g. 0.95)")
    data = frame[[time_col, value_col]].dropna().sort_values(time_col)
    y = pd.to_numeric(data[value_col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(y).any():
        raise InvalidInput(f"{value_col[:40]!r} must be numeric")
    n = len(y)
    if n < 8:
        raise InvalidInput(f"a forecast needs at least 8 observations; got {n}")
    times = data[time_col]
    index = None
    if pd.api.types.is_datetime64_any_dtype(times) or not pd.api.types.is_numeric_dtype(times):
        try:
            with warnings.catch_warnings():
                # pandas warns when it must guess a text column's date format; a bad guess raises below.
                warnings.simplefilter("ignore", UserWarning)
                index = pd.DatetimeIndex(pd.to_datetime(times))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{time_col[:40]!r} must hold dates, times or numbers") from exc
    season = season_length or (_season_from_step(index) if index is not None else None)
    notes: list[str] = []
    if season is not None and (season < 2 or n < 2 * season):
        notes.append(f"season of {season} ignored: needs at least two full seasons ({2 * season} points)")
        season = None
    candidates = []
    for trend, damped in ((None, False), ("add", False), ("add", True)):
        for seasonal in (None, "add") if season else (None,):
            candidates.append((trend, damped, seasonal))
    best: Any = None
    best_cfg: tuple[str | None, bool, str | None] = (None, False, None)
    with warnings.catch_warnings():
        # statsmodels warns about convergence and frequency on ordinary data; the AIC decides.
        warnings.simplefilter("ignore")
        for trend, damped, seasonal in candidates:
            try:
                fit = _fit_ets(ETSModel, pd.Series(y), trend, damped, seasonal, season)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if math.isfinite(fit.aic) and (best is None or fit.aic < best.aic):
                best, best_cfg = fit, (trend, damped, seasonal)
        if best is None:
            raise InvalidInput("no forecasting model could be fitted to this series; check it is numeric and varied")
        pred = best.get_prediction(start=n, end=n + horizon - 1)
        summary = pred.summary_frame(alpha=1 - level)
    if index is not None:
        step = pd.Series(index).diff().median()
        try:
            freq = pd.DatetimeIndex(index, freq="infer").freq
        except ValueError:
            freq = None
        future = (
            pd.date_range(index[-1], periods=horizon + 1, freq=freq)[1:]
            if freq
            else [index[-1] + step * (i + 1) for i in range(horizon)]
        )
        keys: list[JSONValue] = [pd.Timestamp(t).isoformat() for t in future]
    else:
        last = float(times.iloc[-1])
        stride = float(np.median(np.diff(times.to_numpy(dtype=float))))
        keys = [json_value(last + stride * (i + 1)) for i in range(horizon)]
    predicted: list[dict[str, JSONValue]] = [
        {"key": k, "value": _clean(m), "lower": _clean(lo), "upper": _clean(hi)}
        for k, m, lo, hi in zip(keys, summary["mean"], summary["pi_lower"], summary["pi_upper"], strict=True)
    ]
    trend, damped, seasonal = best_cfg
    params: dict[str, JSONValue] = {
        "error": "add",
        "trend": trend,
        "damped_trend": damped,
        "seasonal": seasonal,
        "seasonal_periods": season if seasonal else None,
        "level": level,
        "horizon": horizon,
        "fitted": {str(k): _clean(v) for k, v in zip(best.param_names, best.params, strict=True)},
    }
    resid = np.asarray(best.resid, dtype=float)
    metrics = {
        "aic": _clean(best.aic),
        "in_sample_mae": _clean(np.mean(np.abs(resid))),
        "in_sample_rmse": _clean(np.sqrt(np.mean(resid**2))),
        "n_train": float(n),
    }
    return Prediction(
        task="forecast",
        model="ets",
        target=value_col,
        features=[time_col],
        parameters=params,
        data_fingerprint=frame_fingerprint(data),
        metrics=metrics,
        predicted=predicted,
        notes=notes,
    )


def _regression_metrics(actual: numpy.ndarray, predicted: numpy.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score  # heavy: ~1 s to import

    return {
        "mae": _clean(mean_absolute_error(actual, predicted)),
        "rmse": _clean(math.sqrt(mean_squared_error(actual, predicted))),
        "r2": _clean(r2_score(actual, predicted)) if len(actual) > 1 else None,
    }


def _classification_metrics(
    actual: Sequence[Any], predicted: Sequence[Any], proba: numpy.ndarray | None, classes: Sequence[Any]
) -> dict[str, float | None]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score  # heavy: ~1 s to import

    binary = len(classes) == 2
    metrics: dict[str, float | None] = {
        "accuracy": _clean(accuracy_score(actual, predicted)),
        "f1": _clean(f1_score(actual, predicted, average="binary" if binary else "macro", pos_label=classes[-1]))
        if binary
        else _clean(f1_score(actual, predicted, average="macro")),
        "roc_auc": None,
    }
    if proba is not None and len(set(actual)) == len(classes):
        if binary:
            metrics["roc_auc"] = _clean(roc_auc_score(actual, proba[:, 1]))
        else:
            metrics["roc_auc"] = _clean(roc_auc_score(actual, proba, multi_class="ovr", labels=list(classes)))
    return metrics


def fit_supervised(
    frame: pandas.DataFrame,
    target: str,
    features: Sequence[str] | None = None,
    *,
    task: Literal["auto", "regression", "classification"] = "auto",
    model: Literal["linear", "forest"] = "linear",
    test_size: float = 0.25,
    seed: int = 0,
) -> Prediction:
    """Fit on a ``train_test_split(test_size, random_state=seed)`` split and score on the held-out rows.

    Numeric features are median-imputed and standardised, others one-hot encoded (at most 20
    categories each). ``task='auto'`` is classification for a text/boolean target or an integer one
    with at most 10 values. ``linear`` is LinearRegression/LogisticRegression; ``forest`` a random
    forest of 200 trees seeded by ``seed``.
    """
    import pandas as pd
    from sklearn.compose import ColumnTransformer  # heavy: ~1 s to import
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if target not in frame.columns:
        raise InvalidInput(f"target {target[:40]!r} is not in the data; columns: {list(frame.columns)[:30]}")
    cols = [c for c in (features or frame.columns) if c != target]
    missing = [c for c in cols if c not in frame.columns]
    if missing or not cols:
        raise InvalidInput(f"features {missing[:5]} are not in the data" if missing else "give at least one feature")
    if not 0.05 <= test_size <= 0.5:
        raise InvalidInput("test_size must be between 0.05 and 0.5")
    data = frame[[*cols, target]].dropna(subset=[target])
    if len(data) < 10:
        raise InvalidInput(f"need at least 10 rows with a target value; got {len(data)}")
    y = data[target]
    if task == "auto":
        discrete = not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)
        task = (
            "classification" if discrete or (pd.api.types.is_integer_dtype(y) and y.nunique() <= 10) else "regression"
        )
    if task not in ("regression", "classification"):
        raise InvalidInput("task must be auto, regression or classification")
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(data[c]) and not pd.api.types.is_bool_dtype(data[c])]
    other = [c for c in cols if c not in numeric]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=20),
                ),
                other,
            ),
        ]
    )
    x = data[cols].copy()
    for c in other:
        x[c] = x[c].astype(str)
    estimator: Any
    if task == "regression":
        y = pd.to_numeric(y, errors="coerce")
        if y.isna().any():
            raise InvalidInput(f"a regression target must be numeric; {target[:40]!r} is not")
        estimator = (
            LinearRegression() if model == "linear" else RandomForestRegressor(n_estimators=200, random_state=seed)
        )
    else:
        y = y.astype(str) if not pd.api.types.is_integer_dtype(y) else y
        if y.nunique() < 2:
            raise InvalidInput("a classification target needs at least two classes")
        estimator = (
            LogisticRegression(max_iter=2000)
            if model == "linear"
            else RandomForestClassifier(n_estimators=200, random_state=seed)
        )
    pipe = Pipeline([("prep", prep), ("model", estimator)])
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed)
    pipe.fit(x_train, y_train)
    pred = pipe.predict(x_test)
    if task == "regression":
        metrics = _regression_metrics(y_test.to_numpy(dtype=float), pred.astype(float))
    else:
        classes = list(pipe.classes_)
        proba = pipe.predict_proba(x_test) if hasattr(pipe, "predict_proba") else None
        metrics = _classification_metrics(list(y_test), list(pred), proba, classes)
    params: dict[str, JSONValue] = {
        "estimator": type(estimator).__name__,
        "test_size": test_size,
        "seed": seed,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "numeric_features": numeric,
        "categorical_features": other,
    }
    if task == "regression" and model == "linear":
        names = [str(n) for n in pipe.named_steps["prep"].get_feature_names_out()]
        coefs = sorted(zip(names, estimator.coef_, strict=True), key=lambda p: -abs(p[1]))[:20]
        params["top_coefficients"] = {n: _clean(c) for n, c in coefs}
        params["intercept"] = _clean(estimator.intercept_)
    notes = [f"first {MAX_PREDICTED} of {len(x_test)} held-out rows kept"] if len(x_test) > MAX_PREDICTED else []
    predicted: list[dict[str, JSONValue]] = [
        {
            "key": json_value(k),
            "value": json_value(p.item() if hasattr(p, "item") else p),
            "actual": json_value(a.item() if hasattr(a, "item") else a),
        }
        for k, p, a in list(zip(x_test.index, pred, y_test, strict=True))[:MAX_PREDICTED]
    ]
    return Prediction(
        task=task,
        model=f"{model}:{type(estimator).__name__}",
        target=target,
        features=cols,
        parameters=params,
        data_fingerprint=frame_fingerprint(data),
        metrics=metrics,
        predicted=predicted,
        notes=notes,
    )


def rescore(prediction: Prediction, actuals: Mapping[str, Any] | Sequence[Any]) -> dict[str, float | None]:
    """Score a stored prediction against what happened.

    ``actuals`` maps a predicted row's ``key`` (as text) to its actual value, or lists actual values
    in the order of ``predicted``. Keys with no actual are skipped; ``matched`` says how many scored.
    Forecasts also get ``coverage``: the share of actuals inside the interval.
    """
    import numpy as np

    pairs: list[tuple[dict[str, JSONValue], Any]] = []
    if isinstance(actuals, Mapping):
        wanted = {str(k): v for k, v in actuals.items()}
        pairs = [(row, wanted[str(row["key"])]) for row in prediction.predicted if str(row["key"]) in wanted]
    else:
        pairs = list(zip(prediction.predicted, actuals, strict=False))
    pairs = [(row, a) for row, a in pairs if a is not None]
    if not pairs:
        raise InvalidInput("no actual value matches a predicted key; pass actuals keyed like the predicted rows")
    out: dict[str, float | None]
    if prediction.task == "classification":
        pred = [row["value"] for row, _ in pairs]
        act = [a for _, a in pairs]
        from sklearn.metrics import accuracy_score, f1_score  # heavy: ~1 s to import

        labels = sorted({str(v) for v in pred + act})
        out = {
            "accuracy": _clean(accuracy_score([str(a) for a in act], [str(p) for p in pred])),
            "f1": _clean(f1_score([str(a) for a in act], [str(p) for p in pred], average="macro", labels=labels)),
        }
    else:
        try:
            act_arr = np.array([float(a) for _, a in pairs])
            pred_arr = np.array([float(str(row["value"])) for row, _ in pairs])
        except (TypeError, ValueError) as exc:
            raise InvalidInput("actual values of a forecast or regression must be numbers") from exc
        out = _regression_metrics(act_arr, pred_arr)
        nonzero = act_arr != 0
        out["mape"] = (
            _clean(np.mean(np.abs((act_arr - pred_arr)[nonzero] / act_arr[nonzero]))) if nonzero.any() else None
        )
        if prediction.task == "forecast":
            lo = np.array([float(str(row["lower"])) for row, _ in pairs])
            hi = np.array([float(str(row["upper"])) for row, _ in pairs])
            out["coverage"] = _clean(np.mean((act_arr >= lo) & (act_arr <= hi)))
    out["matched"] = float(len(pairs))
    return out
