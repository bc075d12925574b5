"""Shared real-data splits for the metric tests: scikit-survival's bundled datasets."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sksurv.util import Surv

from fracrisk import CoxPH
from tests.conftest import load_peer_dataset

PEER_DATASETS = ["whas500", "gbsg2", "veterans_lung_cancer", "flchain"]


@dataclass(frozen=True)
class PeerSplit:
    """A seeded 50/50 split of a bundled dataset with a CoxPH fitted on the train half."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    model: CoxPH
    risk: np.ndarray  # log hazard of the test patients

    @property
    def y_train(self) -> np.ndarray:
        return Surv.from_arrays(self.train["event"] == 1, self.train["time"])

    @property
    def y_test(self) -> np.ndarray:
        return Surv.from_arrays(self.test["event"] == 1, self.test["time"])

    def event_time_quantiles(self, q) -> np.ndarray:
        """Strictly increasing times at quantiles of the test event times, inside follow-up."""
        times = np.unique(np.quantile(self.test["time"][self.test["event"] == 1], q))
        assert times[-1] < self.test["time"].max()
        return times


@functools.cache
def peer_split(name: str, seed: int = 0) -> PeerSplit:
    """``name`` in PEER_DATASETS. Times in years (veterans and flchain come in days)."""
    df, covariates = load_peer_dataset(name)
    if name == "flchain":
        # creatinine has NaNs; chapter (cause of death) is NaN for survivors and leaks the
        # outcome; 3 patients have follow-up 0, which CoxPH rejects
        dropped = [c for c in covariates if c.startswith(("chapter", "creatinine"))]
        covariates = [c for c in covariates if c not in dropped]
        df = df.drop(columns=dropped)
        df = df[df["time"] > 0].reset_index(drop=True)
    perm = np.random.default_rng(seed).permutation(len(df))
    half = len(df) // 2
    # the longest follow-up goes to train, so that the censoring distribution estimated on
    # train covers every test time (scikit-survival raises otherwise)
    longest = int(np.flatnonzero(perm == int(np.argmax(df["time"].to_numpy())))[0])
    perm[[0, longest]] = perm[[longest, 0]]
    train = df.iloc[perm[:half]].reset_index(drop=True)
    test = df.iloc[perm[half:]].reset_index(drop=True)
    model = CoxPH().fit(train, covariates=covariates)
    return PeerSplit(name, train, test, model, model.predict_log_hazard(test).to_numpy())
