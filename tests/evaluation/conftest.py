"""A small simulated cohort and fitted models, shared by the evaluation tests."""

from __future__ import annotations

import pytest

from fracrisk.baselines import FraxStyleCalculator, FraxStyleRefit
from fracrisk.evaluation import evaluate
from fracrisk.models import CoxPH, DeepSurv
from fracrisk.simulate import clinical_cohort


@pytest.fixture(scope="session")
def split():
    cohort = clinical_cohort(2500, seed=3, effects="nonlinear")
    return cohort.split(0.4, method="stratified", seed=0)


@pytest.fixture(scope="session")
def fitted(split):
    train, _ = split
    return {
        "FRAX-style calculator": FraxStyleCalculator("UK"),
        "FRAX-style refit": FraxStyleRefit().fit(train),
        "CoxPH": CoxPH().fit(train),
        "DeepSurv (death competing)": DeepSurv(
            head="cause_specific", hidden=(16,), max_epochs=40, seed=0, progress=False
        ).fit(train),
    }


@pytest.fixture(scope="session")
def evaluation(split, fitted):
    train, test = split
    return evaluate(
        fitted,
        test,
        horizons=(2, 5, 30),
        train=train,
        n_boot=60,
        seed=1,
        context={"split": "stratified 60/40"},
    )
