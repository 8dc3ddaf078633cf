"""Fixtures for the analytics domain tests: a real public data set (scikit-learn's diabetes data)
written to CSV and Parquet, and engines over it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from servers.analytics.engine import Engine, Limits
from servers.analytics.sources import make_dataset


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


@pytest.fixture
def engine(data_dir: Path) -> Engine:
    return Engine(
        [make_dataset("data", data_dir / "diabetes.csv"), make_dataset("pq", data_dir / "diabetes.parquet")],
        Limits(timeout_s=20),
    )
