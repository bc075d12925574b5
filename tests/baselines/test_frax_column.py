"""FraxColumn: an official FRAX probability carried in the cohort, used as a model."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fracrisk.baselines import FraxColumn
from fracrisk.exceptions import NotFittedError
from fracrisk.metrics import calibration, harrell_c
from fracrisk.simulate import clinical_cohort

COLUMN = "frax_mof_10y"


@pytest.fixture(scope="module")
def data():
    # The "official FRAX" column is the simulator's true 10-year probability of fracture
    # with death competing (a perfect FRAX for this population).
    cohort = clinical_cohort(60000, seed=11)
    cohort.df[COLUMN] = cohort.truth["risk_10y"].to_numpy()
    train, test = cohort.split(0.3, seed=0)
    return train, test


@pytest.fixture(scope="module")
def recalibrated(data):
    train, _ = data
    return FraxColumn(recalibrate=True).fit(train)


def test_score_is_the_column_and_its_c_index_is_the_truths(data):
    _, test = data
    score = FraxColumn().predict_score(test)
    np.testing.assert_array_equal(score, test.df[COLUMN].to_numpy())
    c_column = harrell_c(test.time, test.event, score)
    assert c_column == harrell_c(test.time, test.event, test.truth["risk_10y"].to_numpy())
    c_hazard = harrell_c(test.time, test.event, test.truth["true_log_hazard"].to_numpy())
    assert abs(c_column - c_hazard) < 0.02, (c_column, c_hazard)


def test_predict_risk_at_10_years_is_the_column(data):
    _, test = data
    risk = FraxColumn().predict_risk(test, 10.0)
    assert risk.name == "risk_10y"
    assert risk.index.equals(test.ids)
    np.testing.assert_allclose(risk.to_numpy(), test.df[COLUMN].to_numpy(), rtol=1e-12, atol=0)


def test_without_recalibration_hazard_is_constant_over_ten_years(data):
    _, test = data
    times = [0.5, 1.0, 2.0, 5.0, 10.0, 12.0]
    surv = FraxColumn().fit(test).predict_survival(test, times)  # fit: a no-op
    p = test.df[COLUMN].to_numpy()
    expected = (1.0 - p[:, None]) ** (np.array(times)[None, :] / 10.0)  # P(t) = 1-(1-p)^(t/10)
    np.testing.assert_allclose(surv.to_numpy(), expected, rtol=1e-12)
    assert list(surv.columns) == times
    np.testing.assert_allclose(
        FraxColumn().predict_risk(test, 5.0).to_numpy(), 1.0 - np.sqrt(1.0 - p), rtol=1e-12
    )


def test_hip_column_can_be_used(data):
    _, test = data
    df = test.df.assign(frax_hip_10y=test.df[COLUMN] / 4)
    np.testing.assert_array_equal(
        FraxColumn("frax_hip_10y").predict_score(df), df["frax_hip_10y"].to_numpy()
    )


def test_recalibrate_needs_training_data():
    with pytest.raises(ValueError, match="recalibrate=True needs training data"):
        FraxColumn(recalibrate=True).fit()


def test_recalibrate_must_be_fitted_before_predicting(data):
    _, test = data
    with pytest.raises(ValueError, match="this FraxColumn is not fitted; call fit"):
        FraxColumn(recalibrate=True).predict_risk(test, 5.0)


def test_recalibrate_unfitted_raises_not_fitted_error(data):
    _, test = data
    with pytest.raises(NotFittedError):
        FraxColumn(recalibrate=True).predict_survival(test, [5.0])


def test_recalibrated_risks_are_valid_and_keep_the_ranking(data, recalibrated):
    _, test = data
    times = [1.0, 2.0, 5.0, 10.0]
    surv = recalibrated.predict_survival(test, times).to_numpy()
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 0)
    np.testing.assert_array_equal(recalibrated.predict_score(test), test.df[COLUMN].to_numpy())
    p = test.df[COLUMN].to_numpy()
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(1.0 - surv[order, 2]) >= -1e-12)  # monotone in the FRAX probability
    # a perfect FRAX column: the Cox slope on cloglog(p) is near 1 (measured 1.14: competing
    # death compresses p in old, high-hazard patients relative to their fracture hazard)
    assert 0.9 < recalibrated.fracture_model_.coef_["frax_cloglog"] < 1.3


def test_recalibrated_5_year_calibration_is_comparable_to_raw(data, recalibrated):
    # Held-out calibration at 5 years (observed by Aalen-Johansen, death competing).
    # Measured: raw O/E ~1.05 (constant-hazard interpolation), recalibrated ~0.93.
    _, test = data
    raw = calibration(test.time, test.event, FraxColumn().predict_risk(test, 5.0).to_numpy(), 5.0)
    recal = calibration(test.time, test.event, recalibrated.predict_risk(test, 5.0).to_numpy(), 5.0)
    assert 0.85 <= recal.observed_expected <= 1.15, recal.observed_expected
    assert abs(np.log(recal.observed_expected)) <= abs(np.log(raw.observed_expected)) + 0.03, (
        raw.observed_expected,
        recal.observed_expected,
    )


def test_recalibrated_5_year_risk_matches_true_absolute_risk(data, recalibrated):
    _, test = data
    truth = test.truth["risk_5y"].to_numpy()
    raw = FraxColumn().predict_risk(test, 5.0).to_numpy()
    recal = recalibrated.predict_risk(test, 5.0).to_numpy()
    gap_recal = abs(np.log(recal.mean() / truth.mean()))
    gap_raw = abs(np.log(raw.mean() / truth.mean()))
    assert gap_recal < 0.05
    assert gap_recal <= gap_raw


def test_recalibration_repairs_an_over_predicting_column(data):
    # A column that over-predicts by half: raw O/E ~0.67; recalibration restores it.
    train, test = data

    def inflate(df):
        return df.assign(**{COLUMN: np.minimum(1.5 * df[COLUMN], 0.99)})

    raw = FraxColumn().predict_risk(inflate(test.df), 5.0).to_numpy()
    model = FraxColumn(recalibrate=True).fit(inflate(train.df))
    recal = model.predict_risk(inflate(test.df), 5.0).to_numpy()
    oe_raw = calibration(test.time, test.event, raw, 5.0).observed_expected
    oe_recal = calibration(test.time, test.event, recal, 5.0).observed_expected
    assert oe_raw < 0.8
    assert 0.85 <= oe_recal <= 1.15
    assert abs(np.log(oe_recal)) < abs(np.log(oe_raw))


@pytest.mark.parametrize(
    ("values", "bad_rows"),
    [
        pytest.param([0.1, 1.2, 0.3, -0.05, 0.2], [1, 3], id="outside_0_1"),
        pytest.param([0.1, np.nan, 0.3, 0.2, 0.2], [1], id="missing_value"),
        pytest.param([0.1, "high", 0.3, 0.2, 0.2], [1], id="not_a_number"),
        pytest.param([12.0, 5.5, 30.0, 8.0, 2.0], [0, 1, 2, 3, 4], id="percentages"),
    ],
)
def test_invalid_probabilities_raise_naming_column_and_rows(values, bad_rows):
    df = pd.DataFrame({COLUMN: pd.Series(values, dtype=object)})
    expected = f"column '{COLUMN}', rows {bad_rows}: FRAX probabilities must be numbers in [0, 1]"
    with pytest.raises(ValueError, match=re.escape(expected)):
        FraxColumn().predict_score(df)
    with pytest.raises(ValueError, match=r"convert percentages by dividing by 100"):
        FraxColumn().predict_risk(df, 10.0)


def test_missing_column_raises_naming_it(data):
    _, test = data
    with pytest.raises(ValueError, match=r"column 'frax_hip_10y' \(FRAX probability\) is not"):
        FraxColumn("frax_hip_10y").predict_score(test)
    with pytest.raises(ValueError, match=r"column 'frax_hip_10y'"):
        FraxColumn("frax_hip_10y", recalibrate=True).fit(test)
