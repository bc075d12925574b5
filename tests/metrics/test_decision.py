"""Net benefit (decision curves), by hand on uncensored data and on invariants."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk.metrics import net_benefit
from fracrisk.nonparametric import observed_risk

# Ten patients, horizon 5. Nobody is censored before 5 (four fractures at 1-4, the rest
# followed event-free past 5), so Kaplan-Meier is the empirical proportion: 4/10 by 5.
TIME = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0])
EVENT = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0])  # events after the horizon are non-events
RISK = np.array([0.9, 0.6, 0.3, 0.15, 0.7, 0.4, 0.2, 0.1, 0.05, 0.25])
HORIZON = 5.0


@pytest.mark.parametrize(
    "threshold, model, treat_all, n_treated",
    [
        # risk >= 0.2: patients 0, 1, 2 (fractures) and 4, 5, 6, 9 (not) -> TP 3, FP 4;
        # odds 0.2/0.8 = 1/4: NB = 3/10 - 4/10 * 1/4 = 0.2; treat all 4/10 - 6/10 * 1/4
        pytest.param(0.2, 0.3 - 0.4 * 0.25, 0.4 - 0.6 * 0.25, 7, id="pt=0.2"),
        # risk >= 0.5: patients 0, 1 (fractures) and 4 -> TP 2, FP 1; odds 1:
        # NB = 2/10 - 1/10 = 0.1; treat all 4/10 - 6/10 = -0.2
        pytest.param(0.5, 0.2 - 0.1, 0.4 - 0.6, 3, id="pt=0.5"),
        # nobody treated: 0
        pytest.param(0.95, 0.0, 0.4 - 0.6 * 19, 0, id="pt=0.95-nobody"),
    ],
)
def test_hand_computed(threshold, model, treat_all, n_treated):
    table = net_benefit(TIME, EVENT, RISK, HORIZON, [threshold])
    assert len(table) == 1
    row = table.iloc[0]
    assert row["threshold"] == threshold
    assert row["model"] == pytest.approx(model, abs=1e-12)
    assert row["treat_all"] == pytest.approx(treat_all, abs=1e-12)
    assert row["treat_none"] == 0.0
    assert row["n_treated"] == n_treated


def test_columns_and_order():
    thresholds = [0.1, 0.2, 0.5]
    table = net_benefit(TIME, EVENT, RISK, HORIZON, thresholds)
    assert list(table.columns) == ["threshold", "model", "treat_all", "treat_none", "n_treated"]
    np.testing.assert_array_equal(table["threshold"], thresholds)
    assert np.all(np.diff(table["n_treated"]) <= 0)


def _simulated(n=3000, seed=0, death_rate=0.0):
    rng = np.random.default_rng(seed)
    hazard = np.exp(rng.normal(-2.5, 0.8, n))
    fracture = rng.exponential(1 / hazard)
    censor = rng.uniform(1.0, 10.0, n)
    death = rng.exponential(1 / death_rate, n) if death_rate else np.full(n, np.inf)
    time = np.minimum.reduce([fracture, censor, death])
    event = np.select([fracture == time, death == time], [1, 2], 0)
    return time, event, hazard


@pytest.mark.parametrize(
    "death_rate", [pytest.param(0.0, id="km"), pytest.param(0.05, id="aalen-johansen")]
)
def test_treat_all_formula(death_rate):
    time, event, hazard = _simulated(death_rate=death_rate)
    thresholds = np.linspace(0.01, 0.99, 25)
    table = net_benefit(time, event, 1 - np.exp(-5 * hazard), 5.0, thresholds)
    overall = observed_risk(time, event, 5.0)
    odds = thresholds / (1 - thresholds)
    np.testing.assert_allclose(
        table["treat_all"], overall - (1 - overall) * odds, rtol=0, atol=1e-14
    )
    assert (table["treat_none"] == 0).all()


def test_model_matches_subgroup_observed_risk_with_competing_events():
    time, event, hazard = _simulated(death_rate=0.05, seed=1)
    assert np.any(event == 2)
    risk = 1 - np.exp(-5 * hazard)
    row = net_benefit(time, event, risk, 5.0, [0.3]).iloc[0]
    treated = risk >= 0.3
    f = observed_risk(time[treated], event[treated], 5.0, carry_forward=True)
    share = treated.mean()
    assert row["model"] == pytest.approx(f * share - (1 - f) * share * 0.3 / 0.7, abs=1e-14)


def test_perfect_predictor_beats_treat_all():
    rng = np.random.default_rng(2)
    n = 2000
    fracture = rng.exponential(8.0, n)
    time = np.minimum(fracture, 10.0)  # administrative censoring at 10, after the horizon
    event = (fracture <= 10.0).astype(int)
    perfect = (fracture <= 5.0).astype(float)  # knows who fractures by 5
    thresholds = np.linspace(0.01, 0.99, 99)
    table = net_benefit(time, event, perfect, 5.0, thresholds)
    assert np.all(table["model"] >= table["treat_all"] - 1e-12)
    assert np.all(table["model"] >= table["treat_none"])
    # it treats exactly the fractured, so its net benefit is the prevalence everywhere
    np.testing.assert_allclose(table["model"], perfect.mean(), rtol=0, atol=1e-12)
    assert table["model"].iloc[-1] > table["treat_all"].iloc[-1] + 0.5


@pytest.mark.parametrize(
    "thresholds",
    [
        pytest.param([0.0, 0.5], id="zero"),
        pytest.param([0.5, 1.0], id="one"),
        pytest.param([-0.1], id="negative"),
        pytest.param([1.5], id="above-one"),
        pytest.param([np.nan], id="nan"),
        pytest.param(0.0, id="scalar-zero"),
    ],
)
def test_thresholds_outside_unit_interval_raise(thresholds):
    with pytest.raises(ValueError, match="thresholds must lie strictly between 0 and 1"):
        net_benefit(TIME, EVENT, RISK, HORIZON, thresholds)


@pytest.mark.parametrize(
    "risk, horizon, match",
    [
        pytest.param(RISK * 2, HORIZON, r"probabilities in \[0, 1\]", id="risk"),
        pytest.param(RISK, 20.0, "beyond the last follow-up", id="horizon"),
        pytest.param(RISK, 0.5, "no event by the horizon", id="no-event"),
    ],
)
def test_bad_input(risk, horizon, match):
    with pytest.raises(ValueError, match=match):
        net_benefit(TIME, EVENT, risk, horizon, [0.2])
