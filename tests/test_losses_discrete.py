"""The discrete-time losses against pycox and against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from pycox.models.loss import nll_logistic_hazard, nll_pmf

from fracrisk.heads import LogisticHazardHead, PMFHead
from fracrisk.losses import deephit_loss, logistic_hazard_loss, pmf_loss


def _data(n=40, cuts=6, causes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    phi = torch.randn(n, causes, cuts, generator=g)
    index = torch.randint(0, cuts, (n,), generator=g)
    event = torch.randint(0, causes + 1, (n,), generator=g)
    return phi, index, event


def test_logistic_hazard_with_one_cause_is_pycox():
    phi, index, event = _data(causes=1)
    ours = logistic_hazard_loss(phi, index, event)
    theirs = nll_logistic_hazard(phi[:, 0, :], index, event.float())
    torch.testing.assert_close(ours, theirs)


def test_logistic_hazard_by_hand_with_two_causes():
    phi = torch.tensor([[[0.0, 1.0, -1.0], [0.5, 0.0, 2.0]]])  # (1 patient, 2 causes, 3 cuts)

    # death (cause 2) in interval 2: survive cuts 0 and 1, then death at 2
    def p(k):
        z = 1 + math.exp(phi[0, 0, k]) + math.exp(phi[0, 1, k])
        return 1 / z, math.exp(phi[0, 0, k]) / z, math.exp(phi[0, 1, k]) / z

    expected = -(math.log(p(0)[0]) + math.log(p(1)[0]) + math.log(p(2)[2]))
    got = logistic_hazard_loss(phi, torch.tensor([2]), torch.tensor([2]))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    censored = -(math.log(p(0)[0]) + math.log(p(1)[0]))
    got = logistic_hazard_loss(phi, torch.tensor([1]), torch.tensor([0]))
    assert got.item() == pytest.approx(censored, rel=1e-6)


def test_pmf_with_one_cause_is_pycox_nll_pmf():
    phi, index, event = _data(causes=1)
    ours = pmf_loss(phi, index, event)
    theirs = nll_pmf(phi[:, 0, :], index, event.float())
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_deephit_is_the_likelihood_when_alpha_is_one_and_ranks_otherwise():
    phi, index, event = _data()
    torch.testing.assert_close(
        deephit_loss(phi, index, event, alpha=1.0), pmf_loss(phi, index, event)
    )
    assert deephit_loss(phi, index, event, alpha=0.2) != deephit_loss(phi, index, event, alpha=1.0)
    with pytest.raises(ValueError, match="alpha"):
        deephit_loss(phi, index, event, alpha=1.5)


@pytest.mark.parametrize(
    "index, event, match",
    [
        (torch.tensor([9]), torch.tensor([1]), "index"),
        (torch.tensor([1]), torch.tensor([3]), "event"),
    ],
)
def test_discrete_losses_refuse_codes_outside_the_grid(index, event, match):
    phi = torch.zeros(1, 2, 4)
    for loss in (logistic_hazard_loss, pmf_loss):
        with pytest.raises(ValueError, match=match):
            loss(phi, index, event)


def test_nan_logits_are_refused():
    phi = torch.full((2, 2, 3), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        logistic_hazard_loss(phi, torch.tensor([0, 1]), torch.tensor([0, 1]))


@pytest.mark.parametrize("head_class", [LogisticHazardHead, PMFHead])
def test_incidences_are_monotone_and_sum_below_one(head_class):
    torch.manual_seed(0)
    head = head_class(5, cuts=[0.0, 1.0, 2.0, 4.0], hidden=(8,)).eval()
    f = head.incidence_at_cuts(head(torch.randn(32, 5)))
    assert f.shape == (32, 2, 4)
    assert bool((f.diff(dim=2) >= -1e-7).all())
    assert bool((f.sum(dim=1) <= 1 + 1e-6).all()) and bool((f >= 0).all())
