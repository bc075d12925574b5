"""Classical baselines: scikit-survival wrappers and the Kaplan-Meier null model."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk import CoxPH
from fracrisk.baselines import GradientBoostingSurvival, KaplanMeierNull, RandomSurvivalForest
from fracrisk.exceptions import NotFittedError
from fracrisk.metrics import compare, harrell_c
from fracrisk.nonparametric import kaplan_meier
from fracrisk.testing import assert_valid_survival

TIMES = [0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 9.0]

MODELS = {
    "rsf": lambda: RandomSurvivalForest(n_estimators=30),
    "gbs": lambda: GradientBoostingSurvival(n_estimators=50),
}


@pytest.fixture(scope="module")
def data():
    from fracrisk.simulate import clinical_cohort

    return clinical_cohort(1500, seed=2).split(0.3, seed=0)


@pytest.fixture(scope="module", params=list(MODELS))
def fitted(request, data):
    train, _ = data
    return MODELS[request.param]().fit(train)


@pytest.fixture(scope="module")
def null(data):
    train, _ = data
    return KaplanMeierNull().fit(train)


# --------------------------------------------------------------------------- sksurv wrappers
def test_held_out_harrell_c_above_0_6(fitted, data):
    _, test = data
    score = fitted.predict_score(test)
    assert score.shape == (len(test),)
    c = harrell_c(test.time, test.event, score)
    assert c > 0.6, c  # measured ~0.68 (RSF) and ~0.71 (boosting)


def test_predict_survival_is_valid(fitted, data):
    _, test = data
    surv = fitted.predict_survival(test, TIMES)
    assert surv.shape == (len(test), len(TIMES))
    assert surv.index.equals(test.ids)
    assert_valid_survival(surv)
    # times beyond the last training time are held at the last value
    late = fitted.predict_survival(test, [9.0, 50.0])
    assert np.all(late[50.0] <= late[9.0])


def test_predict_risk_is_one_minus_survival(fitted, data):
    _, test = data
    surv = fitted.predict_survival(test, TIMES)
    for horizon in (2.0, 5.0):
        risk = fitted.predict_risk(test, horizon)
        assert risk.name == f"risk_{horizon:g}y"
        np.testing.assert_allclose(risk.to_numpy(), 1.0 - surv[horizon].to_numpy(), atol=1e-12)


def test_higher_score_means_higher_risk(fitted, data):
    _, test = data
    score = fitted.predict_score(test)
    risk = fitted.predict_risk(test, 5.0).to_numpy()
    assert np.corrcoef(score, risk)[0, 1] > 0.5


def test_save_raises_not_implemented_mentioning_pickle(fitted, tmp_path):
    with pytest.raises(NotImplementedError, match="pickle"):
        fitted.save(tmp_path / "model.json")


@pytest.mark.parametrize("name", list(MODELS))
def test_sksurv_model_not_fitted_raises(name, data):
    _, test = data
    with pytest.raises(NotFittedError, match="not fitted"):
        MODELS[name]().predict_score(test)


def test_covariates_can_be_named(data):
    train, test = data
    model = GradientBoostingSurvival(n_estimators=20).fit(
        train, covariates=["age", "femoral_neck_t_score"]
    )
    assert model.covariates_ == ["age", "femoral_neck_t_score"]
    assert harrell_c(test.time, test.event, model.predict_score(test)) > 0.6


# --------------------------------------------------------------------------- null model
def test_null_gives_everyone_the_training_kaplan_meier(null, data):
    train, test = data
    times = [0.0, *TIMES, 20.0]
    surv = null.predict_survival(test, times)
    assert_valid_survival(surv)
    _, expected = kaplan_meier(train.time, train.event, times=times)
    for row in surv.to_numpy()[:: max(1, len(test) // 20)]:
        np.testing.assert_allclose(row, expected, rtol=0, atol=1e-12)
    assert (surv.nunique(axis=0) == 1).all()
    assert surv[0.0].eq(1.0).all()
    np.testing.assert_allclose(
        null.predict_risk(test, 5.0).to_numpy(), 1.0 - surv[5.0].to_numpy(), atol=1e-12
    )


def test_null_score_is_all_zeros_so_harrell_c_is_one_half(null, data):
    _, test = data
    score = null.predict_score(test)
    np.testing.assert_array_equal(score, np.zeros(len(test)))
    assert harrell_c(test.time, test.event, score) == 0.5


def test_null_not_fitted_raises(data):
    _, test = data
    with pytest.raises(NotFittedError, match="not fitted"):
        KaplanMeierNull().predict_survival(test, [1.0])


def test_paired_comparison_null_vs_cox_in_one_call(null, data):
    train, test = data
    cox = CoxPH().fit(train)
    result = compare(
        harrell_c, test.time, test.event, null.predict_score(test), cox.predict_score(test), n=200
    )
    assert result.estimate_a == 0.5
    assert result.estimate_b > 0.6
    assert result.difference == pytest.approx(result.estimate_b - result.estimate_a)
    assert result.difference > 0 and result.lower > 0
    assert result.p_value < 0.05
