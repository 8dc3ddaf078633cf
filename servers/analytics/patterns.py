"""Patterns found in a data frame, each a record: kind, columns, statistic, strength, a few sample
rows and a one-line description. Methods are the well-known ones, bounded in size:

- correlations: Pearson or Spearman with two-sided p-values (scipy), strongest pairs first;
- outliers: Tukey's IQR fences (1.5 x IQR) or the robust z-score (0.6745 (x - median) / MAD > 3.5);
- trend and seasonality: STL (robust), strengths after Hyndman & Athanasopoulos:
  1 - var(remainder) / var(component + remainder);
- change points: binary segmentation on the mean with a BIC-style penalty (2 sigma^2 log n, sigma
  from the median absolute difference), at most ``max_points``, segments at least ``min_size`` long;
- segments: k-means on standardised numeric columns, k in 2..``max_k`` chosen by silhouette.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from common.errors import InvalidInput
from servers.analytics.engine import JSONValue, json_value

if TYPE_CHECKING:
    import numpy
    import pandas

Kind = Literal["correlation", "outliers", "trend", "seasonality", "change_point", "segments"]
Strength = Literal["strong", "moderate", "weak", "none"]
SAMPLE_ROWS = 5


@dataclass
class Pattern:
    kind: Kind
    columns: list[str]
    statistic: float
    strength: Strength
    description: str
    p_value: float | None = None
    details: dict[str, JSONValue] = field(default_factory=dict)
    sample: list[dict[str, JSONValue]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strength(value: float, strong: float, moderate: float, weak: float) -> Strength:
    v = abs(value)
    return "strong" if v >= strong else "moderate" if v >= moderate else "weak" if v >= weak else "none"


def _rows(
    frame: pandas.DataFrame, columns: Sequence[str] | None = None, n: int = SAMPLE_ROWS
) -> list[dict[str, JSONValue]]:
    part = frame if columns is None else frame[list(columns)]
    return [
        {str(k): json_value(v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for _, row in part.head(n).iterrows()
    ]


def _numeric(frame: pandas.DataFrame, columns: Sequence[str] | None) -> list[str]:
    import pandas as pd

    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InvalidInput(f"columns {missing[:5]} are not in the data; columns: {list(frame.columns)[:30]}")
    cols = list(columns) if columns is not None else list(frame.columns)
    return [c for c in cols if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]


def correlations(
    frame: pandas.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    method: Literal["pearson", "spearman"] = "pearson",
    min_abs: float = 0.3,
    limit: int = 20,
) -> list[Pattern]:
    """Pairs of numeric columns with |r| >= ``min_abs``, strongest first, at most ``limit``."""
    from scipy import stats  # heavy: only when patterns are computed

    if method not in ("pearson", "spearman"):
        raise InvalidInput("method must be pearson or spearman")
    cols = _numeric(frame, columns)[:50]
    found: list[Pattern] = []
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            pair = frame[[a, b]].dropna()
            if len(pair) < 3 or pair[a].nunique() < 2 or pair[b].nunique() < 2:
                continue
            test = stats.pearsonr if method == "pearson" else stats.spearmanr
            res = test(pair[a].to_numpy(dtype=float), pair[b].to_numpy(dtype=float))
            r, p = float(res.statistic), float(res.pvalue)
            if not math.isfinite(r) or abs(r) < min_abs:
                continue
            direction = "rise together" if r > 0 else "move in opposite directions"
            found.append(
                Pattern(
                    kind="correlation",
                    columns=[a, b],
                    statistic=r,
                    p_value=p,
                    strength=_strength(r, 0.7, 0.4, 0.2),
                    description=f"{a} and {b} {direction} ({method} r={r:.2f}, p={p:.2g}, n={len(pair)})",
                    details={"method": method, "n": len(pair)},
                    sample=_rows(pair.sort_values(a), [a, b]),
                )
            )
    found.sort(key=lambda p: -abs(p.statistic))
    return found[:limit]


def outlier_mask(values: numpy.ndarray, method: Literal["iqr", "robust_z"] = "iqr") -> numpy.ndarray:
    """True where a value is an outlier by ``method`` (NaN never is)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return np.zeros(len(values), dtype=bool)
    if method == "iqr":
        q1, q3 = np.percentile(finite, [25, 75])
        iqr = q3 - q1
        with np.errstate(invalid="ignore"):
            return np.asarray((values < q1 - 1.5 * iqr) | (values > q3 + 1.5 * iqr))
    median = np.median(finite)
    mad = np.median(np.abs(finite - median))
    if mad == 0:
        return np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(0.6745 * (values - median) / mad) > 3.5)


def outliers(
    frame: pandas.DataFrame, columns: Sequence[str] | None = None, *, method: Literal["iqr", "robust_z"] = "iqr"
) -> list[Pattern]:
    """One record per numeric column that has outliers; ``sample`` holds the most extreme rows."""
    import numpy as np

    if method not in ("iqr", "robust_z"):
        raise InvalidInput("method must be iqr or robust_z")
    found = []
    for col in _numeric(frame, columns):
        values = frame[col].to_numpy(dtype=float)
        mask = outlier_mask(values, method)
        count = int(mask.sum())
        if count == 0:
            continue
        share = count / max(1, int(np.isfinite(values).sum()))
        median = float(np.nanmedian(values))
        flagged = frame[mask]
        order = (flagged[col].astype(float) - median).abs().sort_values(ascending=False).index
        found.append(
            Pattern(
                kind="outliers",
                columns=[col],
                statistic=float(count),
                strength=_strength(share, 0.05, 0.01, 0.0),
                description=f"{count} outliers in {col} ({share:.1%} of values, {method}), median {median:.4g}",
                details={"method": method, "share": share, "median": median},
                sample=_rows(flagged.loc[order]),
            )
        )
    return found


def trend_and_seasonality(
    frame: pandas.DataFrame, time_col: str, value_col: str, *, period: int | None = None
) -> list[Pattern]:
    """STL of ``value_col`` ordered by ``time_col``: a trend record and, with a period, a seasonality one.

    Without ``period`` the trend is a least-squares line and no seasonality is reported.
    """
    import numpy as np

    for col in (time_col, value_col):
        if col not in frame.columns:
            raise InvalidInput(f"column {col[:40]!r} is not in the data")
    data = frame[[time_col, value_col]].dropna().sort_values(time_col)
    y = data[value_col].to_numpy(dtype=float)
    n = len(y)
    if n < 8:
        raise InvalidInput(f"trend needs at least 8 observations; got {n}")
    if period is not None and (period < 2 or n < 2 * period):
        raise InvalidInput(f"a period of {period} needs at least {2 * max(period, 2)} observations; got {n}")
    steps = np.arange(n, dtype=float)
    found: list[Pattern] = []
    if period is None:
        slope, intercept = np.polyfit(steps, y, 1)
        trend = slope * steps + intercept
        resid = y - trend
        seasonal = np.zeros(n)
    else:
        from statsmodels.tsa.seasonal import STL  # heavy: ~1 s to import

        res = STL(y, period=period, robust=True).fit()
        trend, seasonal, resid = np.asarray(res.trend), np.asarray(res.seasonal), np.asarray(res.resid)
        slope = float(np.polyfit(steps, trend, 1)[0])
    var_r = float(np.var(resid))
    trend_strength = max(0.0, 1 - var_r / float(np.var(trend + resid))) if np.var(trend + resid) > 0 else 0.0
    change = float(trend[-1] - trend[0])
    found.append(
        Pattern(
            kind="trend",
            columns=[time_col, value_col],
            statistic=float(slope),
            strength=_strength(trend_strength, 0.8, 0.5, 0.2),
            description=(
                f"{value_col} {'rises' if slope > 0 else 'falls'} by {abs(slope):.4g} per step "
                f"({change:+.4g} over {n} points, trend strength {trend_strength:.2f})"
            ),
            details={"slope_per_step": float(slope), "trend_strength": trend_strength, "total_change": change},
            sample=_rows(data.iloc[[0, n // 4, n // 2, 3 * n // 4, n - 1]]),
        )
    )
    if period is not None:
        seas_strength = max(0.0, 1 - var_r / float(np.var(seasonal + resid))) if np.var(seasonal + resid) > 0 else 0.0
        profile = [float(np.mean(seasonal[i::period])) for i in range(period)]
        amplitude = (max(profile) - min(profile)) / 2
        peak = int(np.argmax(profile))
        found.append(
            Pattern(
                kind="seasonality",
                columns=[time_col, value_col],
                statistic=seas_strength,
                strength=_strength(seas_strength, 0.6, 0.4, 0.2),
                description=(
                    f"{value_col} repeats every {period} steps, amplitude {amplitude:.4g}, "
                    f"peak at position {peak} (seasonal strength {seas_strength:.2f})"
                ),
                details={"period": period, "amplitude": amplitude, "peak_position": peak, "profile": profile},
                sample=_rows(data.iloc[peak : peak + period * 3 : period]),
            )
        )
    return found


def _best_split(y: numpy.ndarray, min_size: int) -> tuple[int, float]:
    """The split index maximising the drop in squared error, and that drop."""
    import numpy as np

    n = len(y)
    if n < 2 * min_size:
        return -1, 0.0
    csum = np.cumsum(y)
    csq = np.cumsum(y * y)
    total = csq[-1] - csum[-1] ** 2 / n
    idx = np.arange(min_size, n - min_size + 1)
    left = csq[idx - 1] - csum[idx - 1] ** 2 / idx
    right = (csq[-1] - csq[idx - 1]) - (csum[-1] - csum[idx - 1]) ** 2 / (n - idx)
    gains = total - (left + right)
    best = int(np.argmax(gains))
    return int(idx[best]), float(gains[best])


def change_points(
    frame: pandas.DataFrame, time_col: str, value_col: str, *, max_points: int = 5, min_size: int = 5
) -> list[Pattern]:
    """Shifts in the mean of ``value_col`` (binary segmentation), in time order."""
    import numpy as np

    if not 1 <= max_points <= 20 or min_size < 2:
        raise InvalidInput("max_points must be 1-20 and min_size at least 2")
    for col in (time_col, value_col):
        if col not in frame.columns:
            raise InvalidInput(f"column {col[:40]!r} is not in the data")
    data = frame[[time_col, value_col]].dropna().sort_values(time_col).reset_index(drop=True)
    y = data[value_col].to_numpy(dtype=float)
    n = len(y)
    if n < 2 * min_size:
        return []
    sigma = float(np.median(np.abs(np.diff(y)))) / (0.6745 * math.sqrt(2)) or float(np.std(y)) or 1.0
    penalty = 2 * sigma**2 * math.log(n)
    splits: list[int] = []
    segments = [(0, n)]
    while segments and len(splits) < max_points:
        scored = []
        for lo, hi in segments:
            at, gain = _best_split(y[lo:hi], min_size)
            if at > 0 and gain > penalty:
                scored.append((gain, lo, hi, lo + at))
        if not scored:
            break
        gain, lo, hi, at = max(scored)
        splits.append(at)
        segments.remove((lo, hi))
        segments += [(lo, at), (at, hi)]
    found = []
    bounds = [0, *sorted(splits), n]
    for i, at in enumerate(sorted(splits)):
        before = float(np.mean(y[bounds[i] : at]))
        after = float(np.mean(y[at : bounds[i + 2]]))
        shift = after - before
        when = json_value(data[time_col].iloc[at])
        found.append(
            Pattern(
                kind="change_point",
                columns=[time_col, value_col],
                statistic=shift,
                strength=_strength(shift / sigma if sigma else 0.0, 3.0, 2.0, 1.0),
                description=f"the mean of {value_col} shifts from {before:.4g} to {after:.4g} at {time_col}={when}",
                details={"index": at, "at": when, "mean_before": before, "mean_after": after, "noise_sigma": sigma},
                sample=_rows(data.iloc[max(0, at - 2) : at + 3]),
            )
        )
    return found


def segments(
    frame: pandas.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    k: int | None = None,
    max_k: int = 8,
    seed: int = 0,
    max_rows: int = 50_000,
) -> Pattern:
    """k-means segments of the numeric columns (standardised); k given or chosen by silhouette.

    Rows with a missing value are left out; above ``max_rows`` a seeded sample is clustered.
    """
    import numpy as np
    from sklearn.cluster import KMeans  # heavy: ~1 s to import
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    cols = _numeric(frame, columns)
    if not cols:
        raise InvalidInput("segments need at least one numeric column")
    data = frame[cols].dropna()
    if len(data) > max_rows:
        data = data.sample(max_rows, random_state=seed)
    if len(data) < 10:
        raise InvalidInput(f"segments need at least 10 complete rows; got {len(data)}")
    x = StandardScaler().fit_transform(data.to_numpy(dtype=float))
    sample_size = min(len(x), 5000)
    candidates = [k] if k is not None else list(range(2, min(max_k, len(x) - 1) + 1))
    if not candidates or candidates[0] < 2:
        raise InvalidInput("k must be at least 2")
    best: tuple[float, int, Any] | None = None
    for kk in candidates:
        model = KMeans(n_clusters=kk, n_init=10, random_state=seed).fit(x)
        if len(set(model.labels_)) < 2:
            continue
        score = float(silhouette_score(x, model.labels_, sample_size=sample_size, random_state=seed))
        if best is None or score > best[0]:
            best = (score, kk, model)
    if best is None:
        raise InvalidInput("the rows do not split into segments (too few distinct values)")
    score, kk, model = best
    labels = model.labels_
    sizes = np.bincount(labels, minlength=kk)
    centres = data.groupby(labels).mean()
    summary: dict[str, JSONValue] = {
        "k": kk,
        "silhouette": score,
        "sizes": [int(s) for s in sizes],
        "centres": [{c: json_value(float(centres.loc[i, c])) for c in cols} for i in range(kk)],
    }
    sample = [{"segment": i, **_rows(data[labels == i], n=1)[0]} for i in range(kk) if sizes[i] > 0][:SAMPLE_ROWS]
    return Pattern(
        kind="segments",
        columns=cols,
        statistic=score,
        strength=_strength(score, 0.7, 0.5, 0.25),
        description=f"{kk} segments of {len(data)} rows over {len(cols)} columns, sizes {list(map(int, sizes))}, silhouette {score:.2f}",
        details=summary,
        sample=sample,
    )
