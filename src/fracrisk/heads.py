"""Survival heads: modules that map features to a survival model's parameters, built by name.

A head takes a feature tensor of shape (batch, in_features). What it returns, and which
loss trains it, is its ``objective``:

============================  =============  ==============================================
head                          objective      output, and the risk it gives
============================  =============  ==============================================
``cox_linear``, ``deepsurv``  ``"cox"``      (batch, 1): the log hazard ratio of fracture;
                                             Cox loss, Breslow baseline; cause-specific risk
``cause_specific``            same name      (batch, 2): log hazard ratios of fracture and of
                                             death; the sum of both Cox losses, a Breslow
                                             baseline each; absolute risk (death competing)
``deephit``, ``pmf``,         ``"discrete"`` (batch, 2, m + 1): logits per cause and cut of
``logistic_hazard``                          the time grid stored in the head; pycox's
                                             losses; absolute risk
============================  =============  ==============================================

Heads are plain :class:`torch.nn.Module` objects, so image encoders and fusion modules
can sit in front of them. Build one with :func:`create_head`; :func:`list_heads` names
them all; :func:`head_class` gives the class (and so the objective and risk type) of a
name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from fracrisk.discrete_time import discretise
from fracrisk.losses import deephit_loss, logistic_hazard_loss, pmf_loss

__all__ = [
    "CauseSpecificHead",
    "CoxLinearHead",
    "DeepHitHead",
    "DeepSurvHead",
    "DiscreteTimeHead",
    "LogisticHazardHead",
    "PMFHead",
    "create_head",
    "head_class",
    "list_heads",
    "register_head",
]

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


def head_class(name: str) -> Callable[..., nn.Module]:
    """The class registered as ``name`` (its ``objective`` and ``risk_type`` say what it fits)."""
    if name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; registered heads: {', '.join(list_heads())}")
    return _HEADS[name]


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
    ValueError: unknown head 'nope'; registered heads: cause_specific, cox_linear, deephit, \
deepsurv, logistic_hazard, pmf
    """
    return head_class(name)(in_features, **kwargs)


@register_head("cox_linear")
class CoxLinearHead(nn.Module):
    r"""Linear Cox head: :math:`\eta = x^\top \beta`, without intercept.

    The intercept of a Cox model is absorbed by the baseline hazard, so none is fitted.

    Parameters
    ----------
    in_features : int
        Number of input features.
    """

    objective = "cox"
    risk_type = "cause_specific"

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

    objective = "cox"
    risk_type = "cause_specific"
    #: Outputs per patient.
    n_outputs = 1

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
        self.in_features = in_features
        self.body, width = _mlp(in_features, hidden, dropout, norm, activation)
        self.out = nn.Linear(width, self.n_outputs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log hazard ratio, shape (batch, 1)."""
        return self.out(self.body(x))


def _mlp(
    in_features: int, hidden: Sequence[int], dropout: float, norm: str, activation: str
) -> tuple[nn.Sequential, int]:
    """Hidden blocks Linear -> norm -> activation -> dropout, and the last width."""
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; choose from {', '.join(sorted(_ACTIVATIONS))}"
        )
    if norm not in _NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose from {', '.join(_NORMS)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
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
    return nn.Sequential(*layers), width


@register_head("cause_specific")
class CauseSpecificHead(DeepSurvHead):
    r"""A cause-specific Cox pair on one trunk: :math:`(\eta_F, \eta_D) = g_\theta(x)`.

    The hazards of fracture and of death are
    :math:`h_c(t \mid x) = h_{0c}(t)\, e^{\eta_c(x)}`, each with its own Breslow
    baseline. The loss is the sum of the two Cox partial likelihoods (fracture with death
    censored, death with fracture censored) per event of either cause: the joint
    likelihood of the two causes. Together they give the cumulative incidence of fracture
    with death competing (:func:`fracrisk.baselines.cumulative_incidence`), an absolute
    risk. Settings as :class:`DeepSurvHead`.

    References
    ----------
    Putter H, Fiocco M, Geskus RB (2007) Tutorial in biostatistics: competing risks and
    multi-state models. Stat Med 26:2389-2430.
    """

    objective = "cause_specific"
    risk_type = "absolute"
    n_outputs = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log hazard ratios of fracture (column 0) and death (column 1), shape (batch, 2)."""
        return self.out(self.body(x))


class DiscreteTimeHead(nn.Module):
    r"""Base of the discrete-time heads: logits per cause and cut of a stored time grid.

    An MLP (as :class:`DeepSurvHead`) maps features to :math:`K (m + 1)` logits
    :math:`\phi_{ck}`, for :math:`K = 2` causes (fracture, death) and the cuts
    :math:`\tau_0 = 0 < \dots < \tau_m` of :func:`fracrisk.discrete_time.fit_time_grid`,
    held as the buffer ``cuts`` (saved with the weights). Subclasses define
    :meth:`loss` and :meth:`incidence_at_cuts`.

    Parameters
    ----------
    in_features : int
    cuts : sequence of float
        The grid in years, starting at 0, increasing.
    hidden, dropout, norm, activation
        As :class:`DeepSurvHead`.
    proportional : bool, default True
        :math:`\phi_{ck}(x) = \alpha_{ck} + \eta_c(x)`: a learnt baseline logit per
        cause and cut plus one network output per cause (proportional odds in time, the
        discrete-time analogue of a Cox pair); False lets the network set every
        :math:`\phi_{ck}` (time-varying effects, many more outputs to learn).
    """

    objective = "discrete"
    risk_type = "absolute"
    n_causes = 2

    def __init__(
        self,
        in_features: int,
        *,
        cuts: Sequence[float],
        hidden: Sequence[int] = (32, 32),
        dropout: float = 0.1,
        norm: str = "batch",
        activation: str = "relu",
        proportional: bool = True,
    ) -> None:
        super().__init__()
        grid = np.asarray(cuts, dtype=np.float64).reshape(-1)
        if (
            grid.size < 2
            or grid[0] != 0
            or np.any(np.diff(grid) <= 0)
            or not np.isfinite(grid).all()
        ):
            raise ValueError(
                "cuts must be increasing finite times in years, starting at 0, at least two; "
                f"got {grid.tolist()[:6]}"
            )
        self.in_features = in_features
        # float32 like the weights, so that a model cast on loading keeps the same grid
        self.register_buffer("cuts", torch.from_numpy(grid).float())
        self.body, width = _mlp(in_features, hidden, dropout, norm, activation)
        self.proportional = bool(proportional)
        if self.proportional:
            self.baseline_logits = nn.Parameter(torch.zeros(self.n_causes, grid.size))
            self.out = nn.Linear(width, self.n_causes, bias=False)
        else:
            self.out = nn.Linear(width, self.n_causes * grid.size)

    @property
    def n_cuts(self) -> int:
        """:math:`m + 1`."""
        return int(self.cuts.numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r"""Logits :math:`\phi`, shape (batch, n_causes, m + 1)."""
        if self.proportional:
            return self.baseline_logits[None, :, :] + self.out(self.body(x))[:, :, None]
        return self.out(self.body(x)).reshape(len(x), self.n_causes, self.n_cuts)

    def initialise_baseline(self, time, event) -> None:
        r"""Start :math:`\alpha_{ck}` at the training data's life-table hazards.

        With :math:`d_{ck}` events of cause :math:`c` at cut :math:`k` and :math:`n_k`
        patients at risk there (on the grid of :func:`~fracrisk.discrete_time.discretise`),
        the crude hazards :math:`\hat h_{ck} = d_{ck} / n_k` give the logits of a patient
        with :math:`\eta = 0`; training then starts near the marginal curves instead of
        far from them. Only for ``proportional=True``.
        """
        if not self.proportional:
            return
        t = torch.as_tensor(np.asarray(time, dtype=np.float64))
        index, code = discretise(t, torch.as_tensor(np.asarray(event)), self.cuts)
        m1 = self.n_cuts
        at_risk = torch.bincount(index, minlength=m1).flip(0).cumsum(0).flip(0).double()
        hazard = torch.stack(
            [
                torch.bincount(index[code == c], minlength=m1).double()
                for c in range(1, self.n_causes + 1)
            ]
        ) / at_risk.clamp(min=1)
        hazard = hazard.clamp(1e-6, 0.5)
        with torch.no_grad():
            self.baseline_logits.copy_(self._logits_of_hazards(hazard).float())

    def _logits_of_hazards(self, hazard: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, phi: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
        """Mean loss per patient of outputs ``phi`` for follow-up ``time`` and codes ``event``."""
        index, code = discretise(time.reshape(-1), event.reshape(-1), self.cuts)
        return self._loss(phi.float(), index, code)

    def _loss(self, phi, index, code) -> torch.Tensor:
        raise NotImplementedError

    def incidence_at_cuts(self, phi: torch.Tensor) -> torch.Tensor:
        r""":math:`F_c(\tau_k)`, shape (batch, n_causes, m + 1)."""
        raise NotImplementedError

    def risk_score(self, phi: torch.Tensor) -> torch.Tensor:
        r"""Ranking score: the cumulative incidence of fracture by the last cut :math:`\tau_m`."""
        return self.incidence_at_cuts(phi.float())[:, 0, -1]


@register_head("logistic_hazard")
class LogisticHazardHead(DiscreteTimeHead):
    r"""Discrete-time competing-risks hazard: a multinomial logit per interval.

    :math:`h_{ck} = e^{\phi_{ck}} / (1 + \sum_{c'} e^{\phi_{c'k}})`, trained by
    :func:`fracrisk.losses.logistic_hazard_loss` (pycox's ``nll_logistic_hazard`` with one
    cause).
    """

    def _loss(self, phi, index, code):
        return logistic_hazard_loss(phi, index, code)

    def _logits_of_hazards(self, hazard):
        survive = (1 - hazard.sum(0, keepdim=True)).clamp(min=1e-6)
        return torch.log(hazard / survive)

    def incidence_at_cuts(self, phi: torch.Tensor) -> torch.Tensor:
        """Cumulative incidence of each cause at each cut."""
        phi = phi.float()
        zero = torch.zeros_like(phi[:, :1, :])
        p = torch.softmax(torch.cat([zero, phi], dim=1), dim=1)
        survive = torch.cumprod(p[:, 0, :], dim=1)
        before = torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], dim=1)
        return torch.cumsum(before[:, None, :] * p[:, 1:, :], dim=2)


@register_head("pmf")
class PMFHead(DiscreteTimeHead):
    r"""Competing-risks probability mass function: a softmax over causes x intervals.

    :math:`p_{ck} = e^{\phi_{ck}} / (1 + \sum e^{\phi})`, trained by
    :func:`fracrisk.losses.pmf_loss` (pycox's ``nll_pmf_cr``).
    """

    def _loss(self, phi, index, code):
        return pmf_loss(phi, index, code)

    def _logits_of_hazards(self, hazard):
        survive = torch.cumprod((1 - hazard.sum(0)).clamp(min=1e-6), dim=0)
        before = torch.cat([torch.ones(1, dtype=survive.dtype), survive[:-1]])
        pmf = (hazard * before).clamp(min=1e-9)
        return torch.log(pmf / survive[-1].clamp(min=1e-9))  # relative to "no event by tau_m"

    def incidence_at_cuts(self, phi: torch.Tensor) -> torch.Tensor:
        """Cumulative incidence of each cause at each cut."""
        phi = phi.float()
        flat = phi.reshape(len(phi), -1)
        padded = torch.cat([flat, torch.zeros_like(flat[:, :1])], dim=1)
        pmf = torch.softmax(padded, dim=1)[:, :-1].reshape(phi.shape)
        return torch.cumsum(pmf, dim=2)


@register_head("deephit")
class DeepHitHead(PMFHead):
    r"""DeepHit for competing risks (Lee et al. 2018): the PMF head with a ranking loss.

    Trained by :func:`fracrisk.losses.deephit_loss` (pycox's losses).

    Parameters
    ----------
    alpha : float, default 0.2
        Weight of the likelihood term (pycox's default).
    sigma : float, default 0.1
        Scale of the ranking term (pycox's default).
    **kwargs
        As :class:`DiscreteTimeHead`.
    """

    def __init__(self, in_features: int, *, alpha: float = 0.2, sigma: float = 0.1, **kwargs):
        super().__init__(in_features, **kwargs)
        if not 0.0 <= alpha <= 1.0 or not sigma > 0:
            raise ValueError(f"alpha must be in [0, 1] and sigma > 0, got {alpha!r}, {sigma!r}")
        self.alpha, self.sigma = float(alpha), float(sigma)

    def _loss(self, phi, index, code):
        return deephit_loss(phi, index, code, alpha=self.alpha, sigma=self.sigma)
