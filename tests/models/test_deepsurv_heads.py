"""DeepSurv's absolute-risk heads: cause-specific pair, DeepHit, PMF, logistic hazard."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk import DeepSurv, load_model
from fracrisk.metrics import calibration
from fracrisk.simulate import cohort as simulate_cohort

ABSOLUTE_HEADS = ["cause_specific", "deephit", "pmf", "logistic_hazard"]
FAST = {"hidden": (16,), "max_epochs": 15, "batch_size": 128, "accelerator": "cpu", "seed": 0}


def _covariates(train):
    """The default covariates without those constant in training (prior_fracture, here)."""
    return [c for c in train.default_covariates if train.df[c].nunique() > 1]


@pytest.fixture(scope="module")
def kim():
    """kim2024: a hip-fracture population where about a third die."""
    return simulate_cohort(1200, preset="kim2024", seed=3).split(0.5, seed=0)


@pytest.fixture(scope="module")
def fitted(kim):
    train, _ = kim
    return {
        head: DeepSurv(head=head, n_intervals=10, **FAST).fit(train, _covariates(train))
        for head in ABSOLUTE_HEADS
    }


@pytest.mark.parametrize("head", ABSOLUTE_HEADS)
def test_absolute_heads_give_cumulative_incidences(head, fitted, kim):
    _, test = kim
    model = fitted[head]
    assert model.risk_type == "absolute"
    times = [0.5, 1.0, 2.0, 5.0]
    fracture = model.predict_cumulative_incidence(test, times)
    death = model.predict_cumulative_incidence(test, times, cause=2)
    assert fracture.shape == (len(test), 4) and fracture.attrs["risk_type"] == "absolute"
    for f in (fracture.to_numpy(), death.to_numpy()):
        assert np.all((f >= 0) & (f <= 1)) and np.all(np.diff(f, axis=1) >= -1e-9)
    assert np.all(fracture.to_numpy() + death.to_numpy() <= 1 + 1e-9)
    # predict_risk is the cumulative incidence of fracture, and 1 - predict_survival too
    np.testing.assert_allclose(model.predict_risk(test, 5.0), fracture[5.0], rtol=1e-12)
    np.testing.assert_allclose(1 - model.predict_survival(test, [2.0])[2.0], fracture[2.0])
    # deaths are common in kim2024: the model says so
    assert death[5.0].mean() > fracture[5.0].mean()


@pytest.mark.parametrize("head", ABSOLUTE_HEADS)
def test_absolute_heads_save_and_load_identically(head, fitted, kim, tmp_path):
    _, test = kim
    model = fitted[head]
    model.save(tmp_path / head)
    again = load_model(tmp_path / head)
    assert again.risk_type == "absolute" and again.head == head
    for cause in (1, 2):
        np.testing.assert_array_equal(
            again.predict_cumulative_incidence(test, [1.0, 3.0], cause=cause),
            model.predict_cumulative_incidence(test, [1.0, 3.0], cause=cause),
        )
    np.testing.assert_array_equal(again.predict_score(test), model.predict_score(test))


def test_discrete_heads_store_their_grid(fitted, kim):
    model = fitted["deephit"]
    cuts = np.asarray(model.head_kwargs_["cuts"])
    assert cuts[0] == 0 and np.all(np.diff(cuts) > 0) and len(cuts) <= 11
    np.testing.assert_allclose(model.network_.cuts.numpy(), cuts, rtol=1e-7)
    with pytest.raises(ValueError, match="no log hazard"):
        model.predict_log_hazard(kim[1])


def test_a_cox_head_refuses_a_cumulative_incidence(kim):
    train, test = kim
    model = DeepSurv(**FAST).fit(train, _covariates(train))
    assert model.risk_type == "cause_specific"
    with pytest.raises(ValueError, match="cause-specific hazard"):
        model.predict_cumulative_incidence(test, [1.0])


def test_unknown_head_is_refused(kim):
    with pytest.raises(ValueError, match="head"):
        DeepSurv(head="deepsurvival").fit(kim[0], _covariates(kim[0]))


def test_cause_specific_pair_is_calibrated_where_the_cox_risk_overestimates():
    """kim2024, 3,000 / 3,000: the pair's O/E is near 1, the death-censored risk's below it."""
    train, test = simulate_cohort(6000, preset="kim2024", seed=8).split(0.5, seed=0)
    settings = {"hidden": (16,), "accelerator": "cpu", "seed": 0}
    pair = DeepSurv(head="cause_specific", **settings).fit(train, _covariates(train))
    cox = DeepSurv(**settings).fit(train, _covariates(train))
    horizon = 5.0
    pair_cal = calibration(test.time, test.event, pair.predict_risk(test, horizon), horizon)
    cox_cal = calibration(test.time, test.event, cox.predict_risk(test, horizon), horizon)
    assert 0.85 < pair_cal.observed_expected < 1.15, pair_cal.observed_expected
    assert cox_cal.observed_expected < pair_cal.observed_expected - 0.05, (
        cox_cal.observed_expected,
        pair_cal.observed_expected,
    )
