"""Tests of ``fracrisk.losses.cox_partial_likelihood``.

Oracles, in decreasing order of independence:

* hand-computed small cohorts, expected values written out in plain ``math``;
* lifelines' ``CoxPHFitter.log_likelihood_`` (Efron) on three real datasets;
* torchsurv's ``neg_partial_log_likelihood`` (Efron and Breslow) on random, heavily tied data;
* a naive O(n K) plain-Python implementation of the textbook formulas (``_reference_nll``).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fracrisk.losses import cox_partial_likelihood

F64 = torch.float64
TIES = ("efron", "breslow")


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _reference_nll(eta, time, event, ties: str) -> float:
    r"""Naive -log L straight from the textbook formulas, in plain Python floats.

    For each distinct event time :math:`t_k` with risk set :math:`R_k = \{j: T_j \ge t_k\}`,
    tie set :math:`D_k` (the :math:`d_k` events at :math:`t_k`), :math:`S_k = \sum_{R_k} e^{\eta_j}`
    and :math:`A_k = \sum_{D_k} e^{\eta_i}`:

    Breslow: :math:`-\log L = -\sum_k [\sum_{D_k} \eta_i - d_k \log S_k]`;
    Efron:   :math:`-\log L = -\sum_k [\sum_{D_k} \eta_i - \sum_{l<d_k} \log(S_k - l A_k/d_k)]`.

    Sums are shifted by the risk set's maximum so that huge spreads do not overflow.
    """
    eta = [float(v) for v in eta]
    time = [float(v) for v in time]
    event = [bool(v) for v in event]
    total = []
    for t_k in sorted({t for t, e in zip(time, event, strict=True) if e}):
        risk = [eta[j] for j in range(len(eta)) if time[j] >= t_k]
        tied = [eta[i] for i in range(len(eta)) if time[i] == t_k and event[i]]
        shift = max(risk)
        s_k = math.fsum(math.exp(v - shift) for v in risk)
        a_k = math.fsum(math.exp(v - shift) for v in tied)
        d_k = len(tied)
        total.append(math.fsum(tied))
        for ell in range(d_k):
            frac = ell / d_k if ties == "efron" else 0.0
            total.append(-(shift + math.log(s_k - frac * a_k)))
    return -math.fsum(total)


def _value_and_grad(eta: torch.Tensor, time, event, **kwargs):
    """Detached loss value and its gradient w.r.t. ``eta`` (taken at a fresh leaf)."""
    leaf = eta.detach().clone().requires_grad_(True)
    loss = cox_partial_likelihood(leaf, time, event, **kwargs)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def _import_torchsurv(module: str = "torchsurv.loss.cox"):
    """Import a torchsurv module (a dev-only test oracle), silencing its torch.jit
    FutureWarning; skip the test if torchsurv is not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip(module)


@contextlib.contextmanager
def _torchsurv_in_float64():
    """Make torchsurv 0.2.0 compute in float64, so that the comparison is apples to apples.

    torchsurv's input validators coerce ``log_hz`` and ``time`` to float32
    (``torchsurv.tools.validators._to_float_tensor`` calls ``v.float()``), and its tied
    paths allocate accumulators with ``torch.zeros(K)`` (default dtype). Left alone it
    therefore returns a float32 result even for float64 input (its gradients then differ
    from the exact ones at the 1e-6 relative level). Here the coercion keeps float64
    tensors as they are (the NaN/Inf checks still run) and the default dtype is float64.
    torchsurv's tie warnings are silenced.
    """
    validators = _import_torchsurv("torchsurv.tools.validators")
    original = validators._to_float_tensor

    def keep_float64(name, v, *, allow_inf=False):
        coerced = original(name, v, allow_inf=allow_inf)
        return v if isinstance(v, torch.Tensor) and v.dtype == F64 else coerced

    default_dtype = torch.get_default_dtype()
    with warnings.catch_warnings(), mock.patch.object(validators, "_to_float_tensor", keep_float64):
        warnings.simplefilter("ignore")
        torch.set_default_dtype(F64)
        try:
            yield
        finally:
            torch.set_default_dtype(default_dtype)


def _torchsurv_value_and_grad(
    eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str
):
    """torchsurv 0.2.0: ``neg_partial_log_likelihood(log_hz, event, time, ties_method=...,
    reduction="sum")``, which is -log L summed over event times (tied path) or events
    (untied path), i.e. the same quantity as our ``reduction="sum"``. Its ``"mean"`` averages
    over distinct event *times* when there are ties, so it is NOT comparable to ours.

    torchsurv's untied path (taken when no two *events* share a time) uses a cumulative sum
    over the sorted order, so a patient censored at an event's time can fall out of that
    event's risk set depending on the sort order. Censored times are therefore moved by
    +0.5 (times are integers here): every risk set and tie set is unchanged, and torchsurv
    is exact in both of its paths.
    """
    neg_partial_log_likelihood = _import_torchsurv().neg_partial_log_likelihood
    leaf = eta.detach().clone().requires_grad_(True)
    time_ts = time.to(F64) + 0.5 * (~event).to(F64)
    with _torchsurv_in_float64():
        loss = neg_partial_log_likelihood(leaf, event, time_ts, ties_method=ties, reduction="sum")
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def _random_cohort(
    n: int, *, seed: int, days: int = 3650, event_rate: float = 0.3, scale: float = 1.0, dtype=F64
):
    """Follow-up in whole days over ``days`` (many ties), in years; eta ~ N(0, scale^2)."""
    gen = torch.Generator().manual_seed(seed)
    eta = (scale * torch.randn(n, dtype=F64, generator=gen)).to(dtype)
    time = torch.randint(1, days + 1, (n,), generator=gen).to(F64) / 365.25
    event = torch.rand(n, generator=gen) < event_rate
    return eta, time, event


@st.composite
def tied_cohorts(draw, max_n: int = 200):
    """Random cohorts with MANY ties: integer times from a small range; some draws have no
    event and some have only events."""
    n = draw(st.integers(2, max_n))
    n_times = draw(st.integers(1, 12))
    time = draw(arrays(np.int64, n, elements=st.integers(0, n_times - 1)))
    mode = draw(st.sampled_from(["mixed", "mixed", "mixed", "mixed", "none", "all"]))
    if mode == "mixed":
        event = draw(arrays(np.bool_, n, elements=st.booleans()))
    else:
        event = np.full(n, mode == "all")
    eta = draw(arrays(np.float64, n, elements=st.floats(-8.0, 8.0)))
    return (torch.from_numpy(eta), torch.from_numpy(time).to(F64), torch.from_numpy(event))


# --------------------------------------------------------------------------------------
# 1. Hand-computed cases
# --------------------------------------------------------------------------------------


def _case_docstring():
    # 4 patients; two events tied at t=2; patient 3 censored at t=3.
    eta = [0.5, -0.2, 0.1, 0.0]
    time = [1.0, 2.0, 2.0, 3.0]
    event = [1, 1, 1, 0]
    r = [math.exp(v) for v in eta]
    s1 = r[0] + r[1] + r[2] + r[3]  # R(1) = {0, 1, 2, 3}
    s2 = r[1] + r[2] + r[3]  # R(2) = {1, 2, 3}
    a2 = r[1] + r[2]  # D(2) = {1, 2}, d = 2
    efron = -((eta[0] - math.log(s1)) + (eta[1] + eta[2] - math.log(s2) - math.log(s2 - a2 / 2)))
    breslow = -((eta[0] - math.log(s1)) + (eta[1] + eta[2] - 2 * math.log(s2)))
    return eta, time, event, {"efron": efron, "breslow": breslow}


def _case_triple_tie_with_censored():
    # 6 patients; three events tied at t=5 with patient 4 censored at that same time (still
    # at risk at t=5); patient 5 censored at t=7; patient 0 has the first event at t=2.
    eta = [0.3, -1.1, 0.8, 0.25, -0.4, 1.7]
    time = [2.0, 5.0, 5.0, 5.0, 5.0, 7.0]
    event = [1, 1, 1, 1, 0, 0]
    r = [math.exp(v) for v in eta]
    s1 = sum(r)  # R(2) = everyone
    s2 = r[1] + r[2] + r[3] + r[4] + r[5]  # R(5) = {1, 2, 3, 4, 5}
    a2 = r[1] + r[2] + r[3]  # D(5) = {1, 2, 3}, d = 3
    efron = -(
        (eta[0] - math.log(s1))
        + (
            eta[1]
            + eta[2]
            + eta[3]
            - math.log(s2)
            - math.log(s2 - a2 / 3)
            - math.log(s2 - 2 * a2 / 3)
        )
    )
    breslow = -((eta[0] - math.log(s1)) + (eta[1] + eta[2] + eta[3] - 3 * math.log(s2)))
    return eta, time, event, {"efron": efron, "breslow": breslow}


def _case_all_tied_unsorted():
    # 5 patients in scrambled order, all at the same time t=4 except patient 2 (t=1,
    # censored): one risk set {0, 1, 3, 4}, two events {1, 4}.
    eta = [1.3, -0.6, 2.2, 0.4, 0.9]
    time = [4.0, 4.0, 1.0, 4.0, 4.0]
    event = [0, 1, 0, 0, 1]
    r = [math.exp(v) for v in eta]
    s = r[0] + r[1] + r[3] + r[4]
    a = r[1] + r[4]
    efron = -(eta[1] + eta[4] - math.log(s) - math.log(s - a / 2))
    breslow = -(eta[1] + eta[4] - 2 * math.log(s))
    return eta, time, event, {"efron": efron, "breslow": breslow}


_HAND_CASES = {
    "docstring-4pt-pair-tie": _case_docstring(),
    "6pt-triple-tie-with-censored-at-tie": _case_triple_tie_with_censored(),
    "5pt-all-tied-unsorted": _case_all_tied_unsorted(),
}


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize(
    "case", [pytest.param(case, id=name) for name, case in _HAND_CASES.items()]
)
def test_hand_computed(case, ties):
    eta, time, event, expected = case
    eta_t = torch.tensor(eta, dtype=F64)
    time_t = torch.tensor(time, dtype=F64)
    event_t = torch.tensor(event)
    total = cox_partial_likelihood(eta_t, time_t, event_t, ties=ties, reduction="sum")
    assert total.dtype == F64
    assert total.item() == pytest.approx(expected[ties], rel=1e-12, abs=0)
    mean = cox_partial_likelihood(eta_t, time_t, event_t, ties=ties, reduction="mean")
    assert mean.item() == pytest.approx(expected[ties] / sum(event), rel=1e-12, abs=0)
    # The naive reference implementation used by later tests agrees with the hand values.
    assert _reference_nll(eta, time, event, ties) == pytest.approx(expected[ties], rel=1e-12)


def test_hand_cases_differ_between_tie_methods():
    # Guards against a degenerate case where the two methods coincide.
    for _, _, _, expected in _HAND_CASES.values():
        assert expected["efron"] < expected["breslow"]


def test_default_is_efron_mean():
    eta, time, event, expected = _case_docstring()
    value = cox_partial_likelihood(
        torch.tensor(eta, dtype=F64), torch.tensor(time), torch.tensor(event)
    )
    assert value.item() == pytest.approx(expected["efron"] / 3, rel=1e-12, abs=0)


# --------------------------------------------------------------------------------------
# 2. Peer: lifelines (Efron) on real data
# --------------------------------------------------------------------------------------


def test_efron_sum_matches_lifelines_log_likelihood(peer_dataset):
    # Peer: lifelines 0.30.3,
    #   CoxPHFitter().fit(df, duration_col="time", event_col="event").log_likelihood_
    # (Efron ties, float64), evaluated at its own fitted params_. Data: lifelines
    # load_rossi (week, arrest), scikit-survival 0.28 load_whas500 and load_gbsg2
    # (categoricals dummy-coded by tests.conftest.load_peer_dataset).
    from lifelines import CoxPHFitter

    name, df, covariates = peer_dataset
    fitter = CoxPHFitter().fit(
        df[[*covariates, "time", "event"]], duration_col="time", event_col="event"
    )
    beta = fitter.params_[covariates].to_numpy()
    eta = torch.tensor(df[covariates].to_numpy(dtype=np.float64) @ beta, dtype=F64)
    time = torch.tensor(df["time"].to_numpy(dtype=np.float64))
    event = torch.tensor(df["event"].to_numpy(dtype=np.int64))
    # Real ties are present, so Efron is actually exercised.
    event_times = df.loc[df["event"] == 1, "time"]
    assert event_times.duplicated().any(), name

    total = cox_partial_likelihood(eta, time, event, ties="efron", reduction="sum")
    assert total.item() == pytest.approx(-fitter.log_likelihood_, rel=1e-10, abs=0)
    mean = cox_partial_likelihood(eta, time, event, ties="efron", reduction="mean")
    assert mean.item() == pytest.approx(
        -fitter.log_likelihood_ / event.sum().item(), rel=1e-10, abs=0
    )


# --------------------------------------------------------------------------------------
# 3. Peer: torchsurv (Efron and Breslow), property-based, many ties
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", TIES)
@settings(max_examples=60, deadline=None)
@given(cohort=tied_cohorts())
def test_matches_torchsurv_value_and_gradient(ties, cohort):
    eta, time, event = cohort
    value, grad = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
    if not bool(event.any()):
        # torchsurv returns a detached float32 zero with a warning here; nothing to compare.
        assert value.item() == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))
        return
    ts_value, ts_grad = _torchsurv_value_and_grad(eta, time, event, ties)
    assert ts_value.dtype == F64  # the float64 patch took effect
    assert value.item() == pytest.approx(ts_value.item(), rel=1e-6, abs=1e-9)
    torch.testing.assert_close(grad, ts_grad, rtol=1e-6, atol=1e-9)


def test_matches_torchsurv_unpatched_float32():
    # The public torchsurv call as-is (it computes in float32 internally), at float32
    # precision, on a cohort with tied events.
    neg_partial_log_likelihood = _import_torchsurv().neg_partial_log_likelihood
    eta, time, event = _random_cohort(500, seed=3, days=60)
    for ties in TIES:
        value, grad = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
        leaf = eta.clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = neg_partial_log_likelihood(leaf, event, time, ties_method=ties, reduction="sum")
        (ts_grad,) = torch.autograd.grad(ts, leaf)
        assert value.item() == pytest.approx(ts.item(), rel=1e-5)
        torch.testing.assert_close(grad, ts_grad, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------
# 4. Properties
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", TIES)
@settings(max_examples=60, deadline=None)
@given(cohort=tied_cohorts(), shift=st.floats(-50.0, 50.0), data=st.data())
def test_properties(ties, cohort, shift, data):
    eta, time, event = cohort
    n_events = int(event.sum())
    value, grad = _value_and_grad(eta, time, event, ties=ties, reduction="sum")

    # finite value and gradient; -log L >= 0 (each factor of L is a probability <= 1)
    assert math.isfinite(value.item())
    assert bool(torch.isfinite(grad).all())
    assert value.item() >= -1e-12
    # the gradient of -log L sums to zero (the score of a constant shift is zero)
    assert abs(grad.sum().item()) <= 1e-9 * max(1, n_events)

    # invariance to adding a constant to log_hazard
    shifted, shifted_grad = _value_and_grad(eta + shift, time, event, ties=ties, reduction="sum")
    tol = 1e-10 * (1 + n_events * (abs(shift) + 10))
    assert shifted.item() == pytest.approx(value.item(), rel=1e-9, abs=tol)
    torch.testing.assert_close(shifted_grad, grad, rtol=1e-8, atol=1e-9)

    # invariance to permuting patients (gradient permutes along)
    perm = torch.tensor(data.draw(st.permutations(range(eta.shape[0]))))
    permuted, permuted_grad = _value_and_grad(
        eta[perm], time[perm], event[perm], ties=ties, reduction="sum"
    )
    assert permuted.item() == pytest.approx(value.item(), rel=1e-12, abs=1e-12)
    torch.testing.assert_close(permuted_grad, grad[perm], rtol=1e-10, atol=1e-12)

    # mean == sum / n_events (and 0 without events)
    mean, mean_grad = _value_and_grad(eta, time, event, ties=ties, reduction="mean")
    if n_events == 0:
        assert mean.item() == 0.0
    else:
        assert mean.item() == pytest.approx(value.item() / n_events, rel=1e-14, abs=1e-15)
        torch.testing.assert_close(mean_grad, grad / n_events, rtol=1e-14, atol=1e-15)

    # moving censored times by +0.5 (between integer times) changes no risk set
    nudged = _value_and_grad(eta, time + 0.5 * (~event).to(F64), event, ties=ties, reduction="sum")[
        0
    ]
    assert nudged.item() == pytest.approx(value.item(), rel=1e-12, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(cohort=tied_cohorts(max_n=60))
def test_matches_naive_reference(cohort):
    eta, time, event = cohort
    for ties in TIES:
        value = cox_partial_likelihood(eta, time, event, ties=ties, reduction="sum")
        expected = _reference_nll(eta.tolist(), time.tolist(), event.tolist(), ties)
        assert value.item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("ties", TIES)
@settings(max_examples=40, deadline=None)
@given(cohort=tied_cohorts(), scale=st.sampled_from([1.0, 30.0, 300.0]))
def test_cpu_kernel_equals_vectorised_torch_path(ties, cohort, scale):
    """The compiled CPU kernel and the vectorised RiskSetTerms (used on CUDA and for
    Newton's Hessian) are two implementations of one definition: hold them equal."""
    import fracrisk.losses as losses

    eta, time, event = cohort
    eta = eta * scale
    kernel = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
    original = losses._USE_CPU_KERNEL
    losses._USE_CPU_KERNEL = False
    try:
        vectorised = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
    finally:
        losses._USE_CPU_KERNEL = original
    torch.testing.assert_close(kernel[0], vectorised[0], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(kernel[1], vectorised[1], rtol=1e-9, atol=1e-9)


def test_efron_equals_breslow_without_tied_events():
    eta, _, event = _random_cohort(300, seed=5)
    time = torch.randperm(300, generator=torch.Generator().manual_seed(6)).to(F64)
    time[~event] = torch.floor(time[~event] / 10) * 10  # censored ties are irrelevant
    event_times = time[event]
    assert event_times.unique().numel() == event_times.numel()
    efron = cox_partial_likelihood(eta, time, event, ties="efron", reduction="sum")
    breslow = cox_partial_likelihood(eta, time, event, ties="breslow", reduction="sum")
    assert efron.item() == pytest.approx(breslow.item(), rel=1e-13)


def test_event_encodings_agree():
    eta, time, event = _random_cohort(200, seed=7, days=30)
    expected = cox_partial_likelihood(eta, time, event, reduction="sum")
    for encoded in (
        event.to(torch.int64),
        event.to(torch.int32),
        event.to(F64),
        event.to(torch.float32),
        event.tolist(),
    ):
        value = cox_partial_likelihood(eta, time, encoded, reduction="sum")
        assert value.item() == expected.item()


def test_output_dtype():
    eta, time, event = _random_cohort(50, seed=8, days=10)
    for dtype, out in (
        (F64, F64),
        (torch.float32, torch.float32),
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
    ):
        leaf = eta.to(dtype).detach().clone().requires_grad_(True)
        value = cox_partial_likelihood(leaf, time, event)
        assert value.dtype == out
        assert value.shape == ()
        value.backward()
        assert leaf.grad.dtype == dtype
        assert bool(torch.isfinite(leaf.grad).all())


# --------------------------------------------------------------------------------------
# 5. No events; single patient
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("strata", [None, [0, 1, 1, 0, 2]], ids=["no-strata", "strata"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
def test_no_events_gives_zero_with_zero_gradient(dtype, ties, reduction, strata):
    eta = torch.tensor([0.3, 50.0, -2.0, 1.0, 0.0], dtype=dtype, requires_grad=True)
    time = torch.tensor([1.0, 2.0, 2.0, 3.0, 4.0])
    event = torch.zeros(5, dtype=torch.int64)
    value = cox_partial_likelihood(eta, time, event, ties=ties, reduction=reduction, strata=strata)
    assert value.dtype == dtype
    assert value.item() == 0.0
    assert value.requires_grad  # stays in the graph
    value.backward()
    assert eta.grad is not None
    assert torch.equal(eta.grad, torch.zeros_like(eta))  # exactly zero, no NaN


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ties", TIES)
def test_batch_of_one_with_event_is_zero(ties, reduction):
    eta = torch.tensor([1.7], dtype=F64, requires_grad=True)
    value = cox_partial_likelihood(
        eta, torch.tensor([2.0]), torch.tensor([True]), ties=ties, reduction=reduction
    )
    assert value.item() == pytest.approx(0.0, abs=1e-15)
    value.backward()
    assert eta.grad.abs().item() <= 1e-15


# --------------------------------------------------------------------------------------
# 6. float32 vs float64; (n, 1) input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", TIES)
def test_float32_agrees_with_float64_at_n_10000(ties):
    eta, time, event = _random_cohort(10_000, seed=11, dtype=torch.float32)
    value32, grad32 = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
    value64, grad64 = _value_and_grad(eta.to(F64), time, event, ties=ties, reduction="sum")
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(value64.item(), rel=1e-5)
    torch.testing.assert_close(grad32.to(F64), grad64, rtol=1e-4, atol=1e-5)
    mean32 = cox_partial_likelihood(eta, time, event, ties=ties)
    mean64 = cox_partial_likelihood(eta.to(F64), time, event, ties=ties)
    assert mean32.item() == pytest.approx(mean64.item(), rel=1e-5)


@pytest.mark.parametrize("ties", TIES)
def test_column_input_equals_flat_input(ties):
    eta, time, event = _random_cohort(300, seed=12, days=100)
    flat, flat_grad = _value_and_grad(eta, time, event, ties=ties)
    column, column_grad = _value_and_grad(eta[:, None], time, event, ties=ties)
    assert column.item() == flat.item()
    assert column_grad.shape == (300, 1)
    assert torch.equal(column_grad[:, 0], flat_grad)


# --------------------------------------------------------------------------------------
# 7. Strata
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", TIES)
def test_strata_sum_of_per_stratum_losses(ties):
    eta, time, event = _random_cohort(400, seed=13, days=40)
    strata = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(14)) * 3
    strata[:5] = 100  # a stratum without events
    event[:5] = False
    strata[5] = 999  # a stratum of one patient with an event
    event[5] = True

    value, grad = _value_and_grad(eta, time, event, ties=ties, reduction="sum", strata=strata)
    expected = 0.0
    expected_grad = torch.zeros_like(eta)
    for level in strata.unique():
        member = strata == level
        part, part_grad = _value_and_grad(
            eta[member], time[member], event[member], ties=ties, reduction="sum"
        )
        expected += part.item()
        expected_grad[member] = part_grad
        assert part.item() == pytest.approx(
            _reference_nll(
                eta[member].tolist(), time[member].tolist(), event[member].tolist(), ties
            ),
            rel=1e-10,
            abs=1e-12,
        )
    assert value.item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-14)
    # stratification matters: the unstratified loss differs
    unstratified = cox_partial_likelihood(eta, time, event, ties=ties, reduction="sum")
    assert abs(unstratified.item() - value.item()) > 1.0
    # mean divides by the total number of events
    mean = cox_partial_likelihood(eta, time, event, ties=ties, strata=strata)
    assert mean.item() == pytest.approx(expected / int(event.sum()), rel=1e-12)
    # strata given as a list work too
    as_list = cox_partial_likelihood(
        eta, time, event, ties=ties, reduction="sum", strata=strata.tolist()
    )
    assert as_list.item() == value.item()


# --------------------------------------------------------------------------------------
# 8. Stability with huge spread of log_hazard
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        pytest.param(F64, 400.0, id="float64-sd400"),
        pytest.param(F64, 20.0, id="float64-sd20"),
        pytest.param(torch.float32, 60.0, id="float32-sd60"),
        pytest.param(torch.float32, 7.0, id="float32-sd7"),
    ],
)
def test_huge_spread_is_stable(dtype, scale, ties):
    # sd 400 / 60 exceed the shifted-exp fast path (spread 700 / 80) and take the
    # logcumsumexp path; sd 20 / 7 stay on the fast path.
    eta, time, event = _random_cohort(3000, seed=15, days=200, scale=scale, dtype=dtype)
    value, grad = _value_and_grad(eta, time, event, ties=ties, reduction="sum")
    assert math.isfinite(value.item())
    assert bool(torch.isfinite(grad).all())
    value64, grad64 = _value_and_grad(eta.to(F64), time, event, ties=ties, reduction="sum")
    assert value.item() == pytest.approx(value64.item(), rel=1e-5)
    torch.testing.assert_close(
        grad.to(F64), grad64, rtol=1e-4, atol=1e-5 * float(grad64.abs().max())
    )
    if dtype == F64:
        subset = slice(0, 400)  # the naive reference is O(n K)
        sub_value = cox_partial_likelihood(
            eta[subset], time[subset], event[subset], ties=ties, reduction="sum"
        )
        expected = _reference_nll(
            eta[subset].tolist(), time[subset].tolist(), event[subset].tolist(), ties
        )
        assert sub_value.item() == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------------------
# 9. gradcheck
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("strata", [None, [0, 0, 1, 1, 0, 1, 0, 1]], ids=["no-strata", "strata"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ties", TIES)
def test_gradcheck(ties, reduction, strata):
    eta = torch.tensor([0.2, -0.7, 1.1, 0.4, -0.1, 0.9, 0.0, -1.5], dtype=F64, requires_grad=True)
    time = torch.tensor([1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0], dtype=F64)
    event = torch.tensor([1, 1, 1, 0, 1, 1, 0, 1])

    def loss(x):
        return cox_partial_likelihood(x, time, event, ties=ties, reduction=reduction, strata=strata)

    assert torch.autograd.gradcheck(loss, (eta,), eps=1e-6, atol=1e-8, rtol=1e-6)


# --------------------------------------------------------------------------------------
# 10. Input errors
# --------------------------------------------------------------------------------------

_ETA = torch.tensor([0.1, 0.2, 0.3])
_TIME = torch.tensor([1.0, 2.0, 3.0])
_EVENT = torch.tensor([1, 0, 1])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"event": torch.tensor([1, 2, 0])}, ValueError, r"only 0 and 1", id="event-code-2"
        ),
        pytest.param(
            {"event": torch.tensor([1, -1, 0])},
            ValueError,
            r"only 0 and 1",
            id="event-code-minus-1",
        ),
        pytest.param(
            {"event": torch.tensor([1.0, 0.5, 0.0])},
            ValueError,
            r"only 0 and 1",
            id="event-code-0.5",
        ),
        pytest.param(
            {"event": torch.tensor([1.0, float("nan"), 0.0])},
            ValueError,
            r"only 0 and 1",
            id="event-nan",
        ),
        pytest.param(
            {"time": torch.tensor([1.0, 2.0])},
            ValueError,
            r"must have shape \(3,\)",
            id="time-too-short",
        ),
        pytest.param(
            {"event": torch.tensor([1, 0, 1, 0])},
            ValueError,
            r"must have shape \(3,\)",
            id="event-too-long",
        ),
        pytest.param(
            {"time": torch.tensor([[1.0], [2.0], [3.0]])},
            ValueError,
            r"must have shape \(3,\)",
            id="time-column",
        ),
        pytest.param(
            {"log_hazard": torch.zeros(3, 2)},
            ValueError,
            r"shape \(n,\) or \(n, 1\)",
            id="log-hazard-two-columns",
        ),
        pytest.param(
            {"log_hazard": torch.tensor(0.5)},
            ValueError,
            r"shape \(n,\) or \(n, 1\)",
            id="log-hazard-scalar",
        ),
        pytest.param(
            {"log_hazard": torch.tensor([1, 2, 3])},
            TypeError,
            r"floating-point",
            id="log-hazard-int",
        ),
        pytest.param(
            {"log_hazard": np.array([0.1, 0.2, 0.3])},
            TypeError,
            r"floating-point",
            id="log-hazard-numpy",
        ),
        pytest.param({"ties": "exact"}, ValueError, r"ties must be one of", id="ties-unknown"),
        pytest.param({"ties": "Efron"}, ValueError, r"ties must be one of", id="ties-case"),
        pytest.param(
            {"reduction": "none"}, ValueError, r"reduction must be one of", id="reduction-unknown"
        ),
        pytest.param(
            {"strata": torch.tensor([0, 1])},
            ValueError,
            r"strata must have shape \(3,\)",
            id="strata-shape",
        ),
    ],
)
def test_input_errors(kwargs, error, match):
    args = {"log_hazard": _ETA, "time": _TIME, "event": _EVENT, **kwargs}
    options = {k: args.pop(k) for k in ("ties", "reduction", "strata") if k in args}
    with pytest.raises(error, match=match):
        cox_partial_likelihood(args["log_hazard"], args["time"], args["event"], **options)


# --------------------------------------------------------------------------------------
# 11. CUDA
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
def test_cuda_equals_cpu(ties, dtype):
    eta, time, event = _random_cohort(5000, seed=17, days=300, dtype=dtype)
    strata = torch.arange(5000) % 3
    rtol = 1e-10 if dtype == F64 else 1e-5
    for s in (None, strata):
        cpu, cpu_grad = _value_and_grad(eta, time, event, ties=ties, strata=s)
        gpu, gpu_grad = _value_and_grad(
            eta.cuda(), time.cuda(), event.cuda(), ties=ties, strata=None if s is None else s.cuda()
        )
        assert gpu.device.type == "cuda"
        assert gpu.item() == pytest.approx(cpu.item(), rel=rtol)
        torch.testing.assert_close(
            gpu_grad.cpu(), cpu_grad, rtol=10 * rtol, atol=10 * rtol * float(cpu_grad.abs().max())
        )


def test_no_events_with_an_overflowed_log_hazard_is_still_zero():
    """Mixed precision can overflow eta to inf; a batch without events must stay 0, not NaN."""
    eta = torch.tensor([float("inf"), 1.0, -2.0], requires_grad=True)
    loss = cox_partial_likelihood(eta, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 0, 0]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(eta.grad, torch.zeros(3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_time_is_refused_before_the_compiled_kernel(bad):
    """It used to crash the process (the kernel's sort wrote out of bounds)."""
    eta = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"'time' holds NaN or infinite values \(positions \[1\]\)"
    ):
        cox_partial_likelihood(eta, torch.tensor([1.0, bad, 3.0]), torch.tensor([1, 1, 0]))


def test_boolean_times_are_not_years():
    with pytest.raises(TypeError, match="numeric follow-up"):
        cox_partial_likelihood(
            torch.zeros(2, dtype=torch.float64), torch.tensor([True, False]), torch.tensor([1, 0])
        )


def test_a_nan_log_hazard_is_refused_with_its_positions():
    """A NaN output (a diverged network) used to return a NaN loss that trained on silently."""
    eta = torch.tensor([0.1, float("nan"), 0.3, float("nan")], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"'log_hazard' holds NaN \(positions \[1, 3\]\)"):
        cox_partial_likelihood(eta, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1, 0, 1, 0]))
