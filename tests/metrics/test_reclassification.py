"""Net reclassification improvement: by hand on uncensored data, symmetry, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk.metrics import nri

# Eight patients, horizon 5; nobody censored before 5, so Kaplan-Meier is the empirical
# proportion and the censored-data NRI is the classic one:
#   NRI_e = (#up - #down among events) / #events,
#   NRI_ne = (#down - #up among non-events) / #non-events.
# Events by 5: patients 0, 1, 2. Non-events: 3-7 (followed past 5; some fracture later).
TIME = np.array([1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0])
EVENT = np.array([1, 1, 1, 0, 1, 0, 1, 0])
OLD = np.array([0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4, 0.5])
NEW = np.array([0.4, 0.25, 0.6, 0.05, 0.2, 0.35, 0.1, 0.45])
HORIZON = 5.0


@pytest.mark.parametrize(
    "cutoffs, events, nonevents, n_up, n_down, kind",
    [
        # continuous: events 0 up, 1 down, 2 up -> (2 - 1)/3; non-events 3 down, 4 same,
        # 5 up, 6 down, 7 down -> (3 - 1)/5
        pytest.param(None, 1 / 3, 2 / 5, 3, 4, "continuous", id="continuous"),
        # categories [0, .15) [.15, .35) [.35, 1] (0.35 itself is in the top one):
        # old 1 1 2 0 1 1 2 2, new 2 1 2 0 1 2 0 2 -> event 0 up; non-events 5 up, 6 down
        pytest.param([0.15, 0.35], 1 / 3, 0.0, 2, 1, "categorical", id="categorical"),
        # one cutoff at 0.3: old 0 1 1 0 0 1 1 1, new 1 0 1 0 0 1 0 1 -> events 0 up,
        # 1 down: 0; non-event 6 down: 1/5
        pytest.param([0.3], 0.0, 1 / 5, 1, 2, "categorical", id="one-cutoff"),
    ],
)
def test_hand_computed(cutoffs, events, nonevents, n_up, n_down, kind):
    res = nri(TIME, EVENT, OLD, NEW, HORIZON, cutoffs=cutoffs)
    assert res.events == pytest.approx(events, abs=1e-12)
    assert res.nonevents == pytest.approx(nonevents, abs=1e-12)
    assert res.total == pytest.approx(events + nonevents, abs=1e-12)
    assert (res.n_up, res.n_down, res.kind) == (n_up, n_down, kind)


def _simulated(n=2000, seed=0, death_rate=0.0):
    """The new model knows both parts a, b of the log hazard; the old one only a."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.6, n), rng.normal(0, 0.6, n)
    hazard = np.exp(-2.5 + a + b)
    fracture = rng.exponential(1 / hazard)
    censor = rng.uniform(1.0, 10.0, n)
    death = rng.exponential(1 / death_rate, n) if death_rate else np.full(n, np.inf)
    time = np.minimum.reduce([fracture, censor, death])
    event = np.select([fracture == time, death == time], [1, 2], 0)
    true = 1 - np.exp(-5 * hazard)
    partial = 1 - np.exp(-5 * np.exp(-2.5 + a + 0.6**2 / 2))
    return time, event, true, partial


@pytest.mark.parametrize(
    "cutoffs", [pytest.param(None, id="continuous"), pytest.param([0.1, 0.2], id="categorical")]
)
@pytest.mark.parametrize(
    "death_rate", [pytest.param(0.0, id="km"), pytest.param(0.05, id="competing")]
)
def test_swapping_models_negates(cutoffs, death_rate):
    time, event, true, partial = _simulated(death_rate=death_rate)
    forward = nri(time, event, partial, true, 5.0, cutoffs=cutoffs)
    backward = nri(time, event, true, partial, 5.0, cutoffs=cutoffs)
    assert forward.total == pytest.approx(-backward.total, abs=1e-12)
    assert forward.events == pytest.approx(-backward.events, abs=1e-12)
    assert forward.nonevents == pytest.approx(-backward.nonevents, abs=1e-12)
    assert (forward.n_up, forward.n_down) == (backward.n_down, backward.n_up)
    assert forward.total > 0.1  # knowing b reclassifies better


@pytest.mark.parametrize(
    "cutoffs", [pytest.param(None, id="continuous"), pytest.param([0.1, 0.2], id="categorical")]
)
def test_identical_models_give_zero(cutoffs):
    time, event, true, _ = _simulated(n=500)
    res = nri(time, event, true, true.copy(), 5.0, cutoffs=cutoffs)
    assert (res.events, res.nonevents, res.total) == (0.0, 0.0, 0.0)
    assert (res.n_up, res.n_down) == (0, 0)


def test_continuous_nri_within_bounds():
    time, event, true, partial = _simulated(n=1000, seed=4)
    res = nri(time, event, partial, true, 5.0)
    assert -1 <= res.events <= 1 and -1 <= res.nonevents <= 1
    assert res.n_up + res.n_down == 1000  # continuous risks never tie


@pytest.mark.parametrize(
    "cutoffs",
    [
        pytest.param([0.2, 0.1], id="decreasing"),
        pytest.param([0.2, 0.2], id="repeated"),
        pytest.param([0.0, 0.5], id="zero"),
        pytest.param([0.5, 1.0], id="one"),
        pytest.param([-0.1], id="negative"),
        pytest.param([1.2], id="above-one"),
    ],
)
def test_bad_cutoffs_raise(cutoffs):
    with pytest.raises(ValueError, match=r"cutoffs must be strictly increasing risks in \(0, 1\)"):
        nri(TIME, EVENT, OLD, NEW, HORIZON, cutoffs=cutoffs)


@pytest.mark.parametrize(
    "old, new, match",
    [
        pytest.param(OLD * 3, NEW, r"probabilities in \[0, 1\]", id="old-out-of-range"),
        pytest.param(OLD, NEW * 3, r"probabilities in \[0, 1\]", id="new-out-of-range"),
        pytest.param(OLD, NEW[:7], "must have the same length", id="lengths"),
    ],
)
def test_bad_risks_raise(old, new, match):
    with pytest.raises(ValueError, match=match):
        nri(TIME, EVENT, old, new, HORIZON)


def test_no_nonevents_raises_value_error():
    with pytest.raises(ValueError, match="non-event"):
        nri([1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.2, 0.1, 0.3, 0.5], 4.0)
