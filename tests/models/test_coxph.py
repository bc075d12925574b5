"""CoxPH against lifelines (Efron) and scikit-survival (Breslow) on real bundled data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from fracrisk import Cohort, CoxPH, load_model
from fracrisk.testing import assert_valid_survival


def _lifelines(df: pd.DataFrame) -> CoxPHFitter:
    # lifelines 0.30 CoxPHFitter().fit(df, "time", "event"): Efron ties, Breslow baseline.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(df, "time", "event")


@pytest.fixture
def fitted(peer_dataset):
    name, df, covariates = peer_dataset
    model = CoxPH().fit(Cohort(df, covariates=covariates), covariates=covariates)
    return name, df, covariates, model, _lifelines(df)


def test_efron_coefficients_match_lifelines(fitted):
    _, _, covariates, model, cph = fitted
    np.testing.assert_allclose(
        model.coef_.to_numpy(), cph.params_[covariates].to_numpy(), rtol=1e-4, atol=1e-8
    )
    assert list(model.coef_.index) == covariates


def test_standard_errors_and_loglik_match_lifelines(fitted):
    _, _, covariates, model, cph = fitted
    np.testing.assert_allclose(
        model.summary_["se(coef)"].to_numpy(),
        cph.summary.loc[covariates, "se(coef)"].to_numpy(),
        rtol=1e-4,
    )
    np.testing.assert_allclose(model.log_likelihood_, cph.log_likelihood_, rtol=1e-10)


def test_baseline_survival_matches_lifelines(fitted):
    _, _, _, model, cph = fitted
    times = cph.baseline_survival_.index.to_numpy()
    ours = np.exp(-model.baseline_hazard_.cumulative_hazard(times))
    np.testing.assert_allclose(ours, cph.baseline_survival_.iloc[:, 0].to_numpy(), atol=1e-4)


def test_predict_survival_matches_lifelines_at_event_times(fitted):
    _, df, covariates, model, cph = fitted
    times = model.baseline_hazard_.event_times_[
        :: max(1, len(model.baseline_hazard_.event_times_) // 25)
    ]
    ours = model.predict_survival(df, times=times)
    theirs = cph.predict_survival_function(df[covariates], times=times).T
    assert_valid_survival(ours)
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=1e-4)


def test_between_event_times_ours_is_a_step_and_lifelines_interpolates():
    """Documented difference: S(t) is Breslow's right-continuous step function; lifelines'
    predict_survival_function(times=...) interpolates the cumulative hazard linearly."""
    from tests.conftest import load_peer_dataset

    df, covariates = load_peer_dataset("rossi")
    model = CoxPH().fit(df, covariates=covariates)
    cph = _lifelines(df)
    t0, t1 = model.baseline_hazard_.event_times_[3:5]
    mid = (t0 + t1) / 2
    ours = model.predict_survival(df.iloc[:5], times=[t0, mid])
    np.testing.assert_array_equal(ours[mid].to_numpy(), ours[t0].to_numpy())
    theirs = cph.predict_survival_function(df[covariates].iloc[:5], times=[t0, mid, t1]).T
    h = -np.log(theirs.to_numpy())
    np.testing.assert_allclose(h[:, 1], (h[:, 0] + h[:, 2]) / 2, rtol=1e-6)


def test_breslow_coefficients_match_scikit_survival(peer_dataset):
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    _, df, covariates = peer_dataset
    ours = CoxPH(ties="breslow").fit(df, covariates=covariates)
    y = Surv.from_arrays(df["event"].astype(bool), df["time"])
    # scikit-survival 0.28: CoxPHSurvivalAnalysis(ties="breslow"), tol tightened.
    theirs = CoxPHSurvivalAnalysis(ties="breslow", tol=1e-12, n_iter=200).fit(df[covariates], y)
    np.testing.assert_allclose(ours.coef_.to_numpy(), theirs.coef_, rtol=1e-4, atol=1e-8)


def test_categorical_columns_equal_dummy_coding():
    from sksurv.datasets import load_gbsg2

    from tests.conftest import load_peer_dataset

    dummies, covariates = load_peer_dataset("gbsg2")
    x, _ = load_gbsg2()
    raw = x.reset_index(drop=True).astype({c: str for c in ("horTh", "menostat", "tgrade")})
    raw["time"], raw["event"] = dummies["time"], dummies["event"]
    a = CoxPH().fit(raw, covariates=list(x.columns))
    b = CoxPH().fit(dummies, covariates=covariates)
    pd.testing.assert_series_equal(a.coef_.sort_index(), b.coef_.sort_index(), rtol=1e-10)


def test_save_load_gives_bit_identical_predictions(tmp_path):
    from fracrisk.simulate import clinical_cohort

    cohort = clinical_cohort(1500, seed=3)
    model = CoxPH().fit(cohort)
    model.save(tmp_path / "cox")
    again = load_model(tmp_path / "cox")
    assert isinstance(again, CoxPH)
    pd.testing.assert_frame_equal(
        model.predict_survival(cohort, times=[1, 2, 5]),
        again.predict_survival(cohort, times=[1, 2, 5]),
        check_exact=True,
    )
    pd.testing.assert_series_equal(model.coef_, again.coef_, check_exact=True)
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(tmp_path / "cox")
    model.save(tmp_path / "cox", overwrite=True)


def test_predict_risk_is_one_minus_survival_and_warns_beyond_follow_up():
    from fracrisk.exceptions import DataWarning
    from fracrisk.simulate import clinical_cohort

    cohort = clinical_cohort(1500, seed=4, max_follow_up=6.0)
    model = CoxPH().fit(cohort)
    risk = model.predict_risk(cohort, horizon=5)
    surv = model.predict_survival(cohort, times=[5])
    np.testing.assert_array_equal(risk.to_numpy(), 1 - surv[5.0].to_numpy())
    assert risk.index.equals(cohort.ids)
    with pytest.warns(DataWarning, match="beyond the longest training follow-up"):
        model.predict_risk(cohort, horizon=20)
    with pytest.raises(ValueError, match="horizon"):
        model.predict_risk(cohort, horizon=-1)


def test_penalizer_shrinks_coefficients():
    from tests.conftest import load_peer_dataset

    df, covariates = load_peer_dataset("rossi")
    plain = CoxPH().fit(df, covariates=covariates)
    ridge = CoxPH(penalizer=10.0).fit(df, covariates=covariates)
    assert np.linalg.norm(ridge.coef_ * ridge.preprocessor_.scale_) < np.linalg.norm(
        plain.coef_ * plain.preprocessor_.scale_
    )


def test_errors_before_fit_and_on_missing_covariates():
    from fracrisk.exceptions import NotFittedError
    from tests.conftest import load_peer_dataset

    df, covariates = load_peer_dataset("rossi")
    with pytest.raises(NotFittedError, match="not fitted"):
        CoxPH().predict_risk(df)
    model = CoxPH().fit(df, covariates=covariates)
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['prio'\] are missing"):
        model.predict_log_hazard(df.drop(columns="prio"))
    unchecked = CoxPH(ties="exact")  # __init__ only stores; fit checks (scikit-learn's rule)
    with pytest.raises(
        ValueError, match="CoxPH: parameter 'ties' must be one of 'efron', 'breslow'"
    ):
        unchecked.fit(df, covariates=covariates)


def test_named_covariates_with_missing_values_are_rejected_not_imputed():
    from fracrisk.exceptions import CohortValidationError
    from tests.conftest import load_peer_dataset

    df, covariates = load_peer_dataset("rossi")
    df.loc[[3, 7], "prio"] = float("nan")
    with pytest.raises(CohortValidationError, match=r"column 'prio', rows \[3, 7\]"):
        CoxPH().fit(df, covariates=covariates)
    from fracrisk.exceptions import DataWarning

    with pytest.warns(DataWarning, match="imputed by each model"):
        cohort = Cohort(df, covariates=covariates, missing="impute")
    model = CoxPH().fit(cohort, covariates=covariates)
    assert model.preprocessor_.fill_["prio"] == df["prio"].median()
