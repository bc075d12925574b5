"""FraxStyleRefit: recovers the simulator's gradients, calibrated with death competing."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk import CoxPH
from fracrisk.baselines import FraxStyleRefit
from fracrisk.data import BINARY_RISK_FACTORS
from fracrisk.exceptions import NotFittedError
from fracrisk.metrics import calibration
from fracrisk.simulate import clinical_cohort
from fracrisk.simulate.clinical import _LOG_RR, _LOG_RR_BMD_SD, _LOG_RR_BMI

# The simulator's true log relative risks (MOF; cited in fracrisk.simulate.clinical): prior
# fracture 1.83 (Kanis 2023), parental hip fracture 1.54 (Kanis 2004), smoking 1.29 (Kanis
# 2005), glucocorticoids 2.0 (Kanis 2004, mid-age), RA 1.56 (Kanis 2007), alcohol 1.38
# (Kanis 2005), BMI 0.99/unit (De Laet 2005).
TRUE_GRADIENTS = {
    **{
        name: _LOG_RR[name]
        for name in (
            "prior_fracture",
            "parental_hip_fracture",
            "current_smoking",
            "glucocorticoids",
            "rheumatoid_arthritis",
            "alcohol_3_or_more_units",
        )
    },
    "bmi": _LOG_RR_BMI,
}


@pytest.fixture(scope="module")
def data():
    cohort = clinical_cohort(60000, seed=3, max_follow_up=12.0)
    train, test = cohort.split(0.3, seed=0)
    model = FraxStyleRefit().fit(train)
    return train, test, model


@pytest.fixture(scope="module")
def test_risk_10y(data):
    _, test, model = data
    return model.predict_risk(test, 10.0)


@pytest.mark.parametrize("name", list(TRUE_GRADIENTS))
def test_fracture_model_recovers_true_gradient(data, name):
    _, _, model = data
    row = model.fracture_model_.summary_.loc[name]
    truth = TRUE_GRADIENTS[name]
    inside = row["coef lower 95%"] <= truth <= row["coef upper 95%"]
    assert inside or abs(row["coef"] - truth) <= 2.5 * row["se(coef)"], (
        f"{name}: fitted {row['coef']:.3f} [{row['coef lower 95%']:.3f}, "
        f"{row['coef upper 95%']:.3f}], true {truth:.3f}"
    )


def test_t_score_gradient_is_stronger_than_bmd_alone(data):
    # The simulator's hazard has -ln(1.4) per SD of true T-score AND -ln(1.3) per SD of a
    # hidden bone quality z, which correlates 0.4 with the T-score's residual (SD 0.95) given
    # age, sex, prior fracture and BMI. z is not in the model, so its projection on the
    # T-score, -ln(1.3) * 0.4 / 0.95 = -0.11 per unit, is absorbed into the T-score
    # coefficient: expected about -0.34 - 0.11 = -0.45 (at age 65: the age interaction is
    # centred there), minus a little attenuation by the DXA precision error (~0.125 T).
    _, _, model = data
    row = model.fracture_model_.summary_.loc["femoral_neck_t_score"]
    assert row["coef upper 95%"] < -_LOG_RR_BMD_SD
    expected = -_LOG_RR_BMD_SD - np.log(1.3) * 0.4 / 0.95
    assert abs(row["coef"] - expected) < 3 * row["se(coef)"] + 0.02
    # the simulator's BMD gradient does not depend on age
    interaction = model.fracture_model_.summary_.loc["age_x_t_score"]
    assert interaction["coef lower 95%"] <= 0.0 <= interaction["coef upper 95%"]


def test_covariates_with_bmd_drop_secondary_osteoporosis(data):
    _, _, model = data
    assert "secondary_osteoporosis" not in model.covariates_
    assert {"age", "sex", "bmi", "femoral_neck_t_score", "age_x_t_score"} <= set(model.covariates_)
    assert set(BINARY_RISK_FACTORS) - {"secondary_osteoporosis"} <= set(model.covariates_)
    # death model: smoking (1.8) and glucocorticoids (1.5) raise the death hazard in the
    # simulator (fracrisk.simulate.clinical)
    death = model.death_model_.summary_
    assert (
        death.loc["current_smoking", "coef lower 95%"]
        <= np.log(1.8)
        <= death.loc["current_smoking", "coef upper 95%"]
    )


def test_held_out_10_year_calibration(data, test_risk_10y):
    _, test, _ = data
    result = calibration(test.time, test.event, test_risk_10y.to_numpy(), 10.0)
    assert result.competing  # observed risk by Aalen-Johansen, death competing
    assert 0.9 <= result.observed_expected <= 1.1, result.observed_expected  # measured ~1.00
    assert 0.9 <= result.slope <= 1.1, result.slope  # measured ~1.01


def test_ten_year_probability_is_close_to_truth(data, test_risk_10y):
    _, test, _ = data
    truth = test.truth["risk_10y"].to_numpy()
    assert test_risk_10y.mean() == pytest.approx(truth.mean(), rel=0.05)
    assert np.corrcoef(test_risk_10y.to_numpy(), truth)[0, 1] > 0.9


def test_predict_risk_increases_with_horizon_and_survival_is_one_minus_risk(data):
    _, test, model = data
    subset = test.df.iloc[:300]
    horizons = [0.5, 1.0, 2.0, 5.0, 10.0]
    risks = np.column_stack([model.predict_risk(subset, h).to_numpy() for h in horizons])
    assert np.all((risks >= 0) & (risks <= 1))
    assert np.all(np.diff(risks, axis=1) >= 0)
    assert np.all(np.diff(risks.mean(axis=0)) > 0)
    surv = model.predict_survival(subset, horizons)
    assert list(surv.columns) == horizons
    np.testing.assert_allclose(surv.to_numpy(), 1.0 - risks, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(model.predict_score(subset), risks[:, -1])


def test_cohort_predictions_are_indexed_by_patient_id(data, test_risk_10y):
    _, test, _ = data
    assert test_risk_10y.index.equals(test.ids)
    assert test_risk_10y.name == "risk_10y"


def test_without_bmd_needs_no_t_score_and_drops_nothing_else(data):
    train, test, _ = data
    columns = ["femoral_neck_t_score", "femoral_neck_bmd"]
    small = train.df.iloc[:12000].drop(columns=columns)
    model = FraxStyleRefit(with_bmd=False).fit(small)
    assert model.covariates_ == ["age", "sex", "bmi", *BINARY_RISK_FACTORS]
    assert "secondary_osteoporosis" in model.fracture_model_.summary_.index
    risk = model.predict_risk(test.df.iloc[:200].drop(columns=columns), 10.0)
    assert risk.between(0, 1).all() and risk.notna().all()


def test_with_bmd_without_t_score_raises_helpful_message(data):
    train, _, _ = data
    df = train.df.iloc[:500].drop(columns=["femoral_neck_t_score"])
    with pytest.raises(ValueError, match=r"femoral_neck_t_score.*pass with_bmd=False"):
        FraxStyleRefit().fit(df)


def test_no_deaths_in_training_raises(data):
    train, _, _ = data
    df = train.df.iloc[:2000].copy()
    df.loc[df["event"] == 2, "event"] = 0
    with pytest.raises(ValueError, match=r"needs deaths \(event code 2\)"):
        FraxStyleRefit().fit(df)


def test_not_fitted_raises(data):
    _, test, _ = data
    with pytest.raises(NotFittedError, match="not fitted"):
        FraxStyleRefit().predict_risk(test, 10.0)
    with pytest.raises(NotFittedError, match="not fitted"):
        FraxStyleRefit().predict_survival(test, [5.0])


def test_competing_death_lowers_absolute_risk_below_cause_specific(data, test_risk_10y):
    # FRAX's probability counts death as a competing event, so it is below the cause-
    # specific 1 - S(10) of a Cox model on the same covariates (death censored).
    train, test, model = data

    def with_interaction(df):
        return df.assign(age_x_t_score=(df["age"] - 65.0) * df["femoral_neck_t_score"])

    cox = CoxPH().fit(with_interaction(train.df), covariates=model.covariates_)
    np.testing.assert_allclose(
        cox.coef_.to_numpy(), model.fracture_model_.coef_.to_numpy(), rtol=1e-8
    )
    cause_specific = cox.predict_risk(with_interaction(test.df), 10.0).to_numpy()
    absolute = test_risk_10y.to_numpy()
    assert absolute.mean() < cause_specific.mean()
    assert np.mean(absolute < cause_specific) > 0.99


def test_hip_outcome_uses_fracture_sites_and_is_below_mof():
    from fracrisk.simulate import cohort

    simulated = cohort(30000, preset="population", seed=5)
    train, test = simulated.split(0.3, seed=0)
    hip = FraxStyleRefit(outcome="hip").fit(train)
    mof = FraxStyleRefit().fit(train)
    hip_risk = hip.predict_risk(test, 10.0).to_numpy()
    mof_risk = mof.predict_risk(test, 10.0).to_numpy()
    assert hip_risk.mean() < 0.6 * mof_risk.mean()
    # hip risk rises with age more steeply than MOF (FRAX tables [V])
    age = test.df["age"].to_numpy()
    old, young = age >= 80, age < 60
    assert (
        hip_risk[old].mean() / hip_risk[young].mean()
        > mof_risk[old].mean() / mof_risk[young].mean()
    )
    assert hip.fracture_model_.baseline_hazard_.event_times_.size < (
        mof.fracture_model_.baseline_hazard_.event_times_.size
    )
    with pytest.raises(ValueError, match="fracture_site"):
        FraxStyleRefit(outcome="hip").fit(train.df.drop(columns="fracture_site"))
    with pytest.raises(ValueError, match="parameter 'outcome' must be one of 'mof', 'hip'"):
        FraxStyleRefit(outcome="wrist").fit(train)


def test_the_fracture_log_hazard_is_the_cause_specific_ranking(data):
    _, test, model = data
    eta = model.predict_fracture_log_hazard(test)
    assert eta.index.equals(test.ids)
    # Its C and the fracture sub-model's true log hazard order patients alike.
    expected = model.fracture_model_.predict_log_hazard(model._design(test.df)).to_numpy()
    np.testing.assert_array_equal(eta.to_numpy(), expected)
    # The absolute risk also ranks by mortality, so it is not a monotone map of the hazard.
    ranks = np.argsort(np.argsort(eta.to_numpy()))
    risk_ranks = np.argsort(np.argsort(model.predict_score(test)))
    assert 0.8 < np.corrcoef(ranks, risk_ranks)[0, 1] < 1.0
