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
