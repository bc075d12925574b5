"""Survival heads: modules that map features to a log hazard ratio, built by name.

A head takes a feature tensor of shape (batch, in_features) and returns the log hazard
ratio eta of shape (batch, 1); higher means higher risk. Heads are plain
:class:`torch.nn.Module` objects, so image encoders and fusion modules can sit in front
of them. Build one with :func:`create_head`; :func:`list_heads` names them all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["CoxLinearHead", "DeepSurvHead", "create_head", "list_heads", "register_head"]

_HEADS: dict[str, Callable[..., nn.Module]] = {}

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}
_NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
    "none": None,
}


def register_head(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a head class or builder to the registry under ``name``."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _HEADS:
            raise ValueError(f"a head named {name!r} is already registered")
        _HEADS[name] = builder
        return builder

    return decorator


def list_heads(pattern: str = "*") -> list[str]:
    """Registered head names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _HEADS if fnmatch.fnmatch(n, pattern))


def create_head(name: str, in_features: int, **kwargs) -> nn.Module:
    """Build the head registered as ``name`` for ``in_features`` input features.

    Examples
    --------
    >>> head = create_head("deepsurv", 12, hidden=(32, 32), dropout=0.1)
    >>> head(torch.zeros(4, 12)).shape
    torch.Size([4, 1])
    >>> create_head("nope", 3)
    Traceback (most recent call last):
    ...
    ValueError: unknown head 'nope'; registered heads: cox_linear, deepsurv
    """
    if name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; registered heads: {', '.join(list_heads())}")
    return _HEADS[name](in_features, **kwargs)


@register_head("cox_linear")
class CoxLinearHead(nn.Module):
    r"""Linear Cox head: :math:`\eta = x^\top \beta`, without intercept.

    The intercept of a Cox model is absorbed by the baseline hazard, so none is fitted.

    Parameters
    ----------
    in_features : int
        Number of input features.
    """

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, 1, bias=False)
        nn.init.zeros_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log hazard ratio, shape (batch, 1)."""
        return self.linear(x)


@register_head("deepsurv")
class DeepSurvHead(nn.Module):
    r"""DeepSurv multilayer perceptron: :math:`\eta = g_\theta(x)` (Katzman et al. 2018).

    Each hidden block is Linear -> normalisation -> activation -> dropout; the output layer
    is a Linear map to one unit without bias (the baseline hazard absorbs it).

    Parameters
    ----------
    in_features : int
        Number of input features.
    hidden : sequence of int, default (32, 32)
        Width of each hidden layer; ``()`` gives a linear model.
    dropout : float, default 0.1
        Dropout probability after each hidden block, in [0, 1).
    norm : {"batch", "layer", "none"}, default "batch"
        Normalisation inside each hidden block.
    activation : str, default "relu"
        One of relu, selu, gelu, elu, silu, tanh, leaky_relu.

    References
    ----------
    Katzman JL et al. (2018) DeepSurv: personalized treatment recommender system using a
    Cox proportional hazards deep neural network. BMC Med Res Methodol 18:24.
    """

    def __init__(
        self,
        in_features: int,
        *,
        hidden: Sequence[int] = (32, 32),
        dropout: float = 0.1,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {', '.join(sorted(_ACTIVATIONS))}"
            )
        if norm not in _NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {', '.join(_NORMS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_features = in_features
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, int(size)))
            if _NORMS[norm] is not None:
                layers.append(_NORMS[norm](int(size)))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log hazard ratio, shape (batch, 1)."""
        return self.out(self.body(x))
