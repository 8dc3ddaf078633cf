"""Fixtures for the analytics domain tests: a real public data set (scikit-learn's diabetes data)
written to CSV and Parquet, and engines over it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from common.runtime import open_deps
from servers.analytics.engine import ConnectionPool, Engine, Limits
from servers.analytics.service import AnalyticsService
from servers.analytics.settings import Settings
from servers.analytics.sources import fingerprint, make_dataset


@pytest.fixture(scope="session")
def diabetes() -> pd.DataFrame:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.insert(0, "patient_id", range(1, len(frame) + 1))
    frame["group"] = frame["sex"].map(lambda v: "F" if v > 0 else "M")
    frame.loc[frame.index % 17 == 0, "bmi"] = None
    return frame


@pytest.fixture
def data_dir(tmp_path: Path, diabetes: pd.DataFrame) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    diabetes.to_csv(folder / "diabetes.csv", index=False)
    diabetes.to_parquet(folder / "diabetes.parquet", index=False)
    (folder / "secret.csv").write_text("token,value\nabc,1\n")
    return folder


@pytest.fixture(params=["fresh", "pooled"])
def engine(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine over the CSV and the Parquet file: one connection per call, or leased from a pool
    (the server's way), so every guard test holds on a reused connection too."""
    datasets = [make_dataset("data", data_dir / "diabetes.csv"), make_dataset("pq", data_dir / "diabetes.parquet")]
    if request.param == "fresh":
        yield Engine(datasets, Limits(timeout_s=20))
        return
    pool = ConnectionPool(max_idle=2)
    versions = {d.name: fingerprint(d.path) for d in datasets}
    yield Engine(datasets, Limits(timeout_s=20), pool=pool, versions=versions)
    pool.close()


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[AnalyticsService]:
    """The service over the test database, with the ``settings`` fixture of the test module."""
    async with open_deps("analytics", settings) as deps, AnalyticsService.open(deps, settings) as service:
        yield service


@pytest.fixture
def service_settings(make_settings: Callable[..., Any], data_dir: Path, database_url: str) -> Callable[..., Settings]:
    """Settings of a service reading ``data_dir`` and the test database (connection ``main``), plus ``extra``."""

    def make(**extra: Any) -> Settings:
        s: Settings = make_settings(
            Settings,
            embedding_model="hash-384",
            allowed_roots=[data_dir],
            connections={"main": database_url},
            **extra,
        )
        return s

    return make
