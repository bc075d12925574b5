"""Every registered head: right output shape, finite, every parameter gets a gradient."""

from __future__ import annotations

import pytest
import torch

from fracrisk.heads import CoxLinearHead, DeepSurvHead, create_head, head_class, list_heads

CUTS = [0.0, 1.0, 2.5, 5.0]
SHAPES = {"cox": (16, 1), "cause_specific": (16, 2), "discrete": (16, 2, len(CUTS))}


@pytest.mark.parametrize("name", list_heads())
def test_every_head_forward_and_backward(name):
    torch.manual_seed(0)
    objective = head_class(name).objective
    head = create_head(name, 7, **({"cuts": CUTS} if objective == "discrete" else {}))
    x = torch.randn(16, 7)
    out = head(x)
    assert out.shape == SHAPES[objective]
    assert torch.isfinite(out).all()
    if name == "cox_linear":  # zero-initialised: the null model
        assert torch.equal(out, torch.zeros_like(out))
    out.pow(2).sum().add(out.sum()).backward()
    for pname, param in head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


def test_registry_lists_and_rejects():
    assert list_heads() == [
        "cause_specific",
        "cox_linear",
        "deephit",
        "deepsurv",
        "logistic_hazard",
        "pmf",
    ]
    assert list_heads("deep*") == ["deephit", "deepsurv"]
    assert isinstance(create_head("cox_linear", 3), CoxLinearHead)
    with pytest.raises(ValueError, match="registered heads: cause_specific, cox_linear"):
        create_head("resnet", 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"activation": "swish2"}, "unknown activation", id="activation"),
        pytest.param({"norm": "group"}, "unknown norm", id="norm"),
        pytest.param({"dropout": 1.0}, "dropout", id="dropout"),
    ],
)
def test_deepsurv_head_validates_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepSurvHead(4, **kwargs)


def test_deepsurv_head_architecture():
    head = DeepSurvHead(5, hidden=(8, 4), dropout=0.0, norm="none", activation="tanh")
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 8), (8, 4), (4, 1)]
    assert head.out.bias is None
    assert DeepSurvHead(5, hidden=()).out.in_features == 5


@pytest.mark.parametrize("name", ["logistic_hazard", "pmf", "deephit"])
def test_discrete_heads_start_at_the_life_table(name):
    """With eta = 0 the initialised head's incidence is the Aalen-Johansen estimate."""
    import numpy as np

    from fracrisk.discrete_time import fit_time_grid
    from fracrisk.nonparametric import aalen_johansen

    rng = np.random.default_rng(0)
    n = 20000
    t1, t2, c = rng.exponential(8.0, n), rng.exponential(4.0, n), rng.uniform(1, 10, n)
    time = np.minimum.reduce([t1, t2, c])
    event = np.select([time == t1, time == t2], [1, 2], 0)
    cuts = fit_time_grid(time, event, 20)
    head = create_head(name, 3, cuts=cuts.tolist(), hidden=())
    head.initialise_baseline(time, event)
    with torch.no_grad():
        head.out.weight.zero_()
        f = head.incidence_at_cuts(head(torch.zeros(1, 3)))[0, 0].numpy()
    expected = aalen_johansen(time, event, times=cuts)
    np.testing.assert_allclose(f, expected, atol=0.01)
