"""Shared fixtures: the peers' bundled real datasets, as cohort DataFrames."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

DAYS_PER_YEAR = 365.25

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One torch thread per test worker: two workers each spinning two threads on two cores
    # slow small-network training down by an order of magnitude.
    torch.set_num_threads(1)


def _dummies(x: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as 0/1 floats, reference level first in sorted order."""
    out = {}
    for name, column in x.items():
        if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype == object:
            levels = sorted(column.astype(str).unique())
            for level in levels[1:]:
                out[f"{name}[{level}]"] = (column.astype(str) == level).astype(float)
        else:
            out[name] = column.astype(float)
    return pd.DataFrame(out, index=x.index)


def load_peer_dataset(name: str) -> tuple[pd.DataFrame, list[str]]:
    """A bundled real dataset as a DataFrame with ``time`` (years), ``event`` and numeric
    covariates (categories dummy-coded), plus the covariate names."""
    if name == "rossi":
        from lifelines.datasets import load_rossi

        df = load_rossi().rename(columns={"week": "time", "arrest": "event"})
        df["time"] = df["time"] * 7 / DAYS_PER_YEAR
    else:
        from sksurv import datasets

        x, y = getattr(datasets, f"load_{name}")()
        event_field, time_field = y.dtype.names
        df = _dummies(x.reset_index(drop=True))
        df["time"] = y[time_field] / DAYS_PER_YEAR
        df["event"] = y[event_field].astype(np.int64)
    covariates = [c for c in df.columns if c not in ("time", "event")]
    return df.reset_index(drop=True), covariates


@pytest.fixture(params=["rossi", "whas500", "gbsg2"])
def peer_dataset(request) -> tuple[str, pd.DataFrame, list[str]]:
    """(name, DataFrame, covariates) for each bundled real dataset used as an oracle."""
    df, covariates = load_peer_dataset(request.param)
    return request.param, df, covariates
