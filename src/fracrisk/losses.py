r"""Survival losses as plain functions on tensors.

Notation
--------
For patients :math:`i = 1..n`: follow-up time :math:`T_i` (years), event indicator
:math:`\delta_i \in \{0, 1\}` and log hazard ratio :math:`\eta_i` (the network's output;
higher means higher risk). The risk set at time :math:`t` is
:math:`R(t) = \{j : T_j \ge t\}`. Distinct event times are :math:`t_1 < \dots < t_K`;
:math:`D_k = \{i : T_i = t_k, \delta_i = 1\}` holds the :math:`d_k` events tied at :math:`t_k`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fracrisk._cox_kernel import cox_nll_and_gradient

__all__ = [
    "auxiliary_loss",
    "cox_partial_likelihood",
    "deephit_loss",
    "logistic_hazard_loss",
    "nt_xent_loss",
    "pmf_loss",
]

_TIES = ("efron", "breslow")
_REDUCTIONS = ("mean", "sum")


def cox_partial_likelihood(
    log_hazard: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    *,
    ties: str = "efron",
    reduction: str = "mean",
    strata: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Negative log partial likelihood of the Cox model, with exact risk sets.

    Breslow's approximation for tied event times is

    .. math::
        -\log L_B = -\sum_{k=1}^{K} \Big[ \sum_{i \in D_k} \eta_i
                     - d_k \log \sum_{j \in R(t_k)} e^{\eta_j} \Big]

    and Efron's (the default, as in lifelines and torchsurv), which treats the tied
    events as leaving the risk set one fraction at a time, is

    .. math::
        -\log L_E = -\sum_{k=1}^{K} \Big[ \sum_{i \in D_k} \eta_i
                     - \sum_{l=0}^{d_k - 1} \log\Big( \sum_{j \in R(t_k)} e^{\eta_j}
                     - \frac{l}{d_k} \sum_{i \in D_k} e^{\eta_i} \Big) \Big].

    Both are exact in the risk sets: a patient censored at :math:`t_k` is still at risk at
    :math:`t_k`. With ``strata``, the likelihood is the product over strata, each with its
    own risk sets (a stratified Cox model: separate baseline hazards, shared coefficients).

    Computation: one sort by time, a cumulative log-sum-exp for the risk-set sums
    :math:`S_k` and segment sums over tie groups, so the cost is O(n log n) time and O(n)
    memory; the gradient is analytic and O(n) after the sort. The Efron terms are
    evaluated as :math:`\log S_k + \log(1 - \tfrac{l}{d_k} A_k / S_k)` (with :math:`A_k`
    the tie-set sum), which never overflows. The loss is differentiable once (enough for
    any optimiser); second derivatives for Newton's method come from :class:`RiskSetTerms`.

    Parameters
    ----------
    log_hazard : torch.Tensor, shape = (n,) or (n, 1)
        Log hazard ratio :math:`\eta_i`; higher means higher risk. Floating point.
    time : torch.Tensor, shape = (n,)
        Follow-up time :math:`T_i` in years (any unit works; only the order matters).
    event : torch.Tensor, shape = (n,)
        Event indicator :math:`\delta_i`: 1 (or True) for the event of interest, 0 for
        censoring. For competing risks pass ``event == 1``: the cause-specific likelihood
        treats a competing event as censoring.
    ties : {"efron", "breslow"}, default "efron"
        Handling of tied event times.
    reduction : {"mean", "sum"}, default "mean"
        ``"sum"`` returns :math:`-\log L`; ``"mean"`` divides it by the number of events.
    strata : torch.Tensor, shape = (n,), optional
        Integer stratum of each patient.

    Returns
    -------
    torch.Tensor
        A scalar of the dtype of ``log_hazard`` (float32 for float16 / bfloat16 input).
        A batch without any event returns a zero that stays in the autograd graph (its
        gradient is zero, never NaN), so mini-batch training does not stall or crash on
        such a batch. A batch of one
        patient with an event also gives zero: its risk set holds only itself.

    Raises
    ------
    ValueError
        A NaN in ``log_hazard`` (a diverged network, or NaN inputs) or a NaN or infinite
        ``time``, with the positions, before any compiled kernel sees them. An infinite
        log hazard (float16 overflow) is allowed.

    References
    ----------
    Cox DR (1972) Regression models and life-tables. JRSS B 34:187-220.
    Efron B (1977) The efficiency of Cox's likelihood function for censored data. JASA 72:557-565.
    Breslow NE (1974) Covariance analysis of censored survival data. Biometrics 30:89-99.

    Examples
    --------
    >>> import torch
    >>> eta = torch.tensor([0.5, -0.2, 0.1, 0.0], dtype=torch.float64)
    >>> t = torch.tensor([1.0, 2.0, 2.0, 3.0], dtype=torch.float64)
    >>> d = torch.tensor([1, 1, 1, 0])
    >>> round(cox_partial_likelihood(eta, t, d, reduction="sum").item(), 6)
    2.866945
    >>> round(cox_partial_likelihood(eta, t, d, ties="breslow", reduction="sum").item(), 6)
    3.265925
    """
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    log_hazard, time, event = _check_inputs(log_hazard, time, event)
    if log_hazard.dtype not in _SAFE_SPREAD:  # float16 / bfloat16 from mixed precision
        log_hazard = log_hazard.float()

    if strata is None:
        total = _neg_log_likelihood(log_hazard, time, event, ties)
    else:
        strata = torch.as_tensor(strata, device=log_hazard.device)
        if strata.shape != time.shape:
            raise ValueError(
                f"strata must have shape {tuple(time.shape)}, got {tuple(strata.shape)}"
            )
        # Strata are few in practice (sex, centre); one exact pass per stratum.
        total = torch.nan_to_num(log_hazard * 0.0).sum()
        for level in torch.unique(strata):
            member = strata == level
            total = total + _neg_log_likelihood(
                log_hazard[member], time[member], event[member], ties
            )
    if reduction == "mean":
        total = total / event.sum().clamp_min(1).to(total.dtype)
    return total


def auxiliary_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    weight: torch.Tensor,
    *,
    logits: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    r"""Masked, weighted loss of dense targets (an auxiliary loss), per patient.

    .. math::
        L = \sum_k w_k \, \frac{1}{|O_k|} \sum_{i \in O_k} \ell_k(i),

    with :math:`O_k` the patients whose target :math:`k` is observed (not NaN). A numeric
    target's term is its squared error in SD units,
    :math:`\ell_k(i) = ((\hat y_{ik} - y_{ik}) / s_k)^2` with :math:`s_k` the training SD,
    so that each target counts in SD units. A categorical target (classes coded
    :math:`0..C_k-1`, given by its logits :math:`l_{ik}`) contributes its cross-entropy,
    :math:`\ell_k(i) = -\log \operatorname{softmax}(l_{ik})_{y_{ik}}`. A target observed for
    nobody in the batch adds 0 (with a graph).

    Parameters
    ----------
    prediction, target : torch.Tensor, shape = (batch, k)
        Predictions and targets in the targets' units (a categorical target's class code);
        NaN in ``target`` is missing.
    scale, weight : torch.Tensor, shape = (k,)
        :math:`s_k > 0` and :math:`w_k \ge 0`.
    logits : sequence of k tensors or None, optional
        ``logits[k]``: the (batch, :math:`C_k`) logits of a categorical target, None for a
        numeric one. Default: every target numeric.
    """
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f"prediction and target must both be (batch, k); got {tuple(prediction.shape)} and "
            f"{tuple(target.shape)}"
        )
    k = prediction.shape[1]
    logits = [None] * k if logits is None else list(logits)
    if len(logits) != k:
        raise ValueError(f"logits must hold one entry per target ({k}), got {len(logits)}")
    observed = ~torch.isnan(target)
    residual = torch.where(observed, (prediction - torch.nan_to_num(target)) / scale, 0.0)
    counts = observed.sum(dim=0)
    per_target = (residual**2).sum(dim=0) / counts.clamp(min=1)
    terms = []
    for j, scores in enumerate(logits):
        if scores is None:
            terms.append(per_target[j])
            continue
        known = observed[:, j]
        codes = torch.nan_to_num(target[:, j]).long().clamp(0, scores.shape[1] - 1)
        nll = torch.nn.functional.cross_entropy(scores.float(), codes, reduction="none")
        terms.append(torch.where(known, nll, 0.0).sum() / counts[j].clamp(min=1))
    return (weight.to(per_target.dtype) * torch.stack(terms)).sum()


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    r"""Normalised temperature-scaled cross-entropy of paired views (SimCLR's contrastive loss).

    For a batch of :math:`n` images seen twice, with projections :math:`z_i` and
    :math:`z_{i+n}` of the two views of image :math:`i` (unit-normalised), similarity
    :math:`s_{ab} = z_a^\top z_b / \tau` and :math:`p(a)` the other view of :math:`a`,

    .. math::
        L = \frac{1}{2n} \sum_{a=1}^{2n}
            -\log \frac{\exp s_{a\,p(a)}}{\sum_{b \ne a} \exp s_{ab}}

    (Chen et al., ICML 2020): each view must pick its partner out of the other
    :math:`2n - 1` views of the batch. :math:`L \ge 0`; for random projections it is about
    :math:`\log(2n - 1)`.

    Parameters
    ----------
    z1, z2 : torch.Tensor, shape = (n, d)
        Projections of the first and second view, rows paired; :math:`n \ge 2`.
    temperature : float, default 0.2
        :math:`\tau > 0`.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or len(z1) < 2:
        raise ValueError(
            f"z1 and z2 must both be (n, d) with n >= 2; got {tuple(z1.shape)} and "
            f"{tuple(z2.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(z1)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -1e9)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return torch.nn.functional.cross_entropy(similarity, partner)


def _check_discrete(phi: torch.Tensor, index: torch.Tensor, event: torch.Tensor):
    """Phi as float (n, K, m + 1), index and event as long (n,), checked against each other."""
    if not isinstance(phi, torch.Tensor) or not phi.is_floating_point():
        raise TypeError("Input 'phi' must be a floating-point torch.Tensor")
    if phi.dim() == 2:
        phi = phi.unsqueeze(1)
    if phi.dim() != 3:
        raise ValueError(f"Input 'phi' must be (n, m + 1) or (n, K, m + 1), got {tuple(phi.shape)}")
    n, n_causes, n_cuts = phi.shape
    index = torch.as_tensor(index, device=phi.device).long().reshape(-1)
    event = torch.as_tensor(event, device=phi.device).long().reshape(-1)
    if index.shape != (n,) or event.shape != (n,):
        raise ValueError(
            f"Inputs 'index' {tuple(index.shape)} and 'event' {tuple(event.shape)} must have "
            f"shape ({n},) like 'phi'"
        )
    if n and (int(index.min()) < 0 or int(index.max()) >= n_cuts):
        raise ValueError(f"Input 'index' must lie in 0..{n_cuts - 1} (the grid's cuts)")
    if n and (int(event.min()) < 0 or int(event.max()) > n_causes):
        raise ValueError(f"Input 'event' must hold codes 0..{n_causes} (0 = censored)")
    if not bool(torch.isfinite(phi).all()):
        raise ValueError("Input 'phi' holds NaN or infinite values")
    return phi.float(), index, event


def logistic_hazard_loss(
    phi: torch.Tensor, index: torch.Tensor, event: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""Negative log-likelihood of the discrete-time competing-risks hazard (multinomial logit).

    On the grid :math:`	au_0 < \dots < 	au_m` (:mod:`fracrisk.discrete_time`), the hazard
    of cause :math:`c = 1..K` in interval :math:`k` given survival to its start is

    .. math::
        h_{ck} = rac{e^{\phi_{ck}}}{1 + \sum_{c'} e^{\phi_{c'k}}}, \qquad
        s_k = 1 - \sum_c h_{ck} = rac{1}{1 + \sum_{c'} e^{\phi_{c'k}}},

    and a patient with grid index :math:`\kappa_i` and code :math:`\delta_i` contributes

    .. math::
        -\log L_i = -\sum_{k < \kappa_i} \log s_k
            - egin{cases} \log h_{\delta_i \kappa_i} & \delta_i \ge 1 \
                            \log s_{\kappa_i} & \delta_i = 0 \end{cases}

    (Tutz & Schmid 2016, ch. 8; Lee, Zame, Yoon & van der Schaar 2018 use the PMF form).
    With one cause it is pycox's ``nll_logistic_hazard`` (Kvamme & Borgan 2021), which the
    tests hold it to. The cumulative incidence is
    :math:`F_c(	au_k) = \sum_{j \le k} h_{cj} \prod_{l < j} s_l`.

    Parameters
    ----------
    phi : torch.Tensor, shape = (n, K, m + 1) or (n, m + 1) for one cause
        Logits :math:`\phi_{ck}`.
    index, event : torch.Tensor, shape = (n,)
        Grid index :math:`\kappa_i` and event code (0 censored, 1..K the cause), e.g. from
        :func:`fracrisk.discrete_time.discretise`.
    reduction : {"mean", "sum"}, default "mean"
        Mean or sum over patients.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    phi, index, event = _check_discrete(phi, index, event)
    n, n_causes, n_cuts = phi.shape
    zero = torch.zeros((n, 1, n_cuts), dtype=phi.dtype, device=phi.device)
    log_p = torch.log_softmax(torch.cat([zero, phi], dim=1), dim=1)  # (n, K + 1, m + 1)
    log_survive = log_p[:, 0, :]
    rows = torch.arange(n, device=phi.device)
    before = torch.cumsum(log_survive, dim=1) - log_survive  # sum over k < kappa
    loss = -(before[rows, index] + log_p[rows, event, index])
    return loss.mean() if reduction == "mean" else loss.sum()


def pmf_loss(
    phi: torch.Tensor, index: torch.Tensor, event: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    r"""Negative log-likelihood of the competing-risks PMF (DeepHit's likelihood term).

    The joint probabilities of cause :math:`c` in interval :math:`k` are a softmax over all
    :math:`K(m + 1)` cells and one more, "no event by :math:`	au_m`":
    :math:`p_{ck} = e^{\phi_{ck}} / (1 + \sum_{c'k'} e^{\phi_{c'k'}})`. An event contributes
    :math:`-\log p_{\delta_i \kappa_i}`, a censored patient
    :math:`-\logig(1 - \sum_c F_c(	au_{\kappa_i})ig)` with
    :math:`F_c(	au_k) = \sum_{j \le k} p_{cj}` (Lee et al. 2018, :math:`L_1`).
    Computed by pycox's ``nll_pmf_cr``.

    Parameters
    ----------
    phi : torch.Tensor, shape = (n, K, m + 1) or (n, m + 1)
    index, event : torch.Tensor, shape = (n,)
        As in :func:`logistic_hazard_loss`.
    reduction : {"mean", "sum"}, default "mean"
    """
    from pycox.models.loss import nll_pmf_cr

    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    phi, index, event = _check_discrete(phi, index, event)
    return nll_pmf_cr(phi, index, event, reduction=reduction)


def deephit_loss(
    phi: torch.Tensor,
    index: torch.Tensor,
    event: torch.Tensor,
    *,
    alpha: float = 0.2,
    sigma: float = 0.1,
) -> torch.Tensor:
    r"""DeepHit's loss for competing risks: :math:`lpha L_1 + (1 - lpha) L_2`.

    :math:`L_1` is :func:`pmf_loss`. :math:`L_2` is the ranking loss: for each cause
    :math:`c` and each pair where :math:`i` has event :math:`c` at :math:`\kappa_i` and
    :math:`j` is still event-free then (:math:`\kappa_j > \kappa_i`, or equal and
    :math:`j` censored), :math:`\exp\{-(F_c(	au_{\kappa_i} \mid x_i) -
    F_c(	au_{\kappa_i} \mid x_j))/\sigma\}`, averaged over the batch (Lee et al. 2018,
    with pycox's weighting: ``alpha`` on the likelihood, as in pycox's ``DeepHit``).
    Computed by pycox's ``nll_pmf_cr``, ``rank_loss_deephit_cr`` and ``pair_rank_mat``;
    the ranking term is over the batch, so it is a mini-batch estimate.

    Parameters
    ----------
    phi : torch.Tensor, shape = (n, K, m + 1)
    index, event : torch.Tensor, shape = (n,)
    alpha : float, default 0.2
        Weight of the likelihood, in [0, 1] (pycox's default).
    sigma : float, default 0.1
        Scale of the ranking term, > 0 (pycox's default).

    References
    ----------
    Lee C, Zame WR, Yoon J, van der Schaar M (2018) DeepHit: a deep learning approach to
    survival analysis with competing risks. AAAI 32.
    """
    from pycox.models.data import pair_rank_mat
    from pycox.models.loss import nll_pmf_cr, rank_loss_deephit_cr

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    phi, index, event = _check_discrete(phi, index, event)
    rank = pair_rank_mat(index.cpu().numpy(), event.cpu().numpy())
    rank = torch.from_numpy(rank).to(phi.device)
    nll = nll_pmf_cr(phi, index, event)
    ranking = rank_loss_deephit_cr(phi, index, event, rank, sigma)
    return alpha * nll + (1.0 - alpha) * ranking


def _check_inputs(log_hazard, time, event):
    if not isinstance(log_hazard, torch.Tensor) or not log_hazard.is_floating_point():
        raise TypeError("Input 'log_hazard' must be a floating-point torch.Tensor")
    if log_hazard.dim() == 2 and log_hazard.shape[1] == 1:
        log_hazard = log_hazard[:, 0]
    if log_hazard.dim() != 1:
        raise ValueError(
            f"Input 'log_hazard' must have shape (n,) or (n, 1), got {tuple(log_hazard.shape)}"
        )
    time = torch.as_tensor(time, device=log_hazard.device)
    event = torch.as_tensor(event, device=log_hazard.device)
    n = log_hazard.shape[0]
    if time.shape != (n,) or event.shape != (n,):
        raise ValueError(
            f"Inputs 'time' {tuple(time.shape)} and 'event' {tuple(event.shape)} "
            f"must have shape ({n},) like 'log_hazard'"
        )
    if event.dtype != torch.bool:
        if torch.any((event != 0) & (event != 1)):
            raise ValueError(
                "Input 'event' must hold only 0 and 1 (for competing risks pass event == 1)"
            )
        event = event != 0
    if time.dtype == torch.bool or time.is_complex():
        raise TypeError(f"Input 'time' must be numeric follow-up in years, got {time.dtype}")
    # Checked before any compiled kernel sees them (a NaN time once sorted out of bounds).
    bad_time = ~torch.isfinite(time.double())
    nan_eta = torch.isnan(log_hazard)
    if bool(bad_time.any() | nan_eta.any()):  # one device sync for both
        if bool(bad_time.any()):
            rows = torch.nonzero(bad_time).flatten()[:5].tolist()
            raise ValueError(f"Input 'time' holds NaN or infinite values (positions {rows})")
        rows = torch.nonzero(nan_eta).flatten()[:5].tolist()
        raise ValueError(
            f"Input 'log_hazard' holds NaN (positions {rows}): the model's output is "
            "undefined there (a diverged network -- try a lower learning rate -- or NaN inputs)"
        )
    return log_hazard, time, event


# exp(v - max v) stays a normal float when the spread of v is below these limits.
_SAFE_SPREAD = {torch.float32: 80.0, torch.float64: 700.0}
# On the CPU the compiled kernel (fracrisk._cox_kernel) computes the loss; elsewhere the
# vectorised RiskSetTerms does. Tests switch this off to hold the two equal.
_USE_CPU_KERNEL = True


def _log_cumsum_exp(v: torch.Tensor) -> torch.Tensor:
    """Cumulative log-sum-exp; a shifted exp-cumsum-log when it cannot underflow (faster)."""
    hi = v.max()
    lo = torch.where(v == float("-inf"), hi, v).min()  # -inf entries (empty sums) are exact
    spread = float(hi - lo)
    if spread != spread:  # every entry is -inf
        return v.clone()
    if spread < _SAFE_SPREAD[v.dtype]:
        return torch.log(torch.cumsum(torch.exp(v - hi), 0)) + hi
    return torch.logcumsumexp(v, 0)


class RiskSetTerms:
    """Sorted risk-set quantities of the Cox partial likelihood, shared by loss and Hessian.

    Patients are sorted by *descending* time, so the risk set of a time is a prefix.
    For the i-th event (in tie group k, with Efron fraction f_i = l_i / d_k), the
    denominator divided by the risk-set sum is ``1 - f_i * ratio_k`` (``ratio_k = A_k/S_k``).
    """

    def __init__(
        self, eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor, efron: bool
    ) -> None:
        n = eta.shape[0]
        t, order = torch.sort(time, descending=True)  # the order within ties is irrelevant
        x, e = eta[order], event[order]
        new_group = torch.ones(n, dtype=torch.bool, device=t.device)
        new_group[1:] = t[1:] != t[:-1]
        group = torch.cumsum(new_group, 0) - 1
        is_last = torch.ones(n, dtype=torch.bool, device=t.device)
        is_last[:-1] = new_group[1:]
        last = torch.nonzero(is_last).squeeze(1)
        n_groups = last.shape[0]

        self.order, self.x, self.group, self.n_groups = order, x, group, n_groups
        self.last = last
        self.log_risk = _log_cumsum_exp(x)[last]  # log S_k, per tie group
        self.event_pos = torch.nonzero(e).squeeze(1)
        self.event_group = group[self.event_pos]
        self.x_event = x[self.event_pos]
        ones = torch.ones_like(self.x_event)
        self.n_tied = torch.zeros(n_groups, dtype=x.dtype, device=x.device).index_add_(
            0, self.event_group, ones
        )
        self.frac = torch.zeros_like(self.x_event)
        self.ratio = torch.zeros(n_groups, dtype=x.dtype, device=x.device)
        if efron and bool((self.n_tied > 1).any()):
            share = torch.exp(self.x_event - self.log_risk[self.event_group])
            self.ratio.index_add_(0, self.event_group, share)
            cum = torch.cumsum(e.to(torch.int64), 0)
            first_event_rank = (cum - e.to(torch.int64))[torch.nonzero(new_group).squeeze(1)]
            rank = cum[self.event_pos] - 1 - first_event_rank[self.event_group]
            self.frac = rank.to(x.dtype) / self.n_tied[self.event_group]
        # log(D_i / S_k) = log(1 - f_i ratio_k) <= 0
        self.log_rel_denominator = torch.log1p(-self.frac * self.ratio[self.event_group])

    def neg_log_likelihood(self) -> torch.Tensor:
        """-log L, summed over events."""
        return (self.log_risk[self.event_group] + self.log_rel_denominator - self.x_event).sum()

    def event_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per event i: q_i = S_k / D_i and f_i q_i, the weights of the gradient."""
        q = torch.exp(-self.log_rel_denominator)
        return q, self.frac * q

    def gradient_sorted(self) -> torch.Tensor:
        """d(-log L)/d eta for the sorted patients (descending time)."""
        q, fq = self.event_weights()
        k, g = self.n_groups, self.event_group
        c = torch.zeros(k, dtype=q.dtype, device=q.device).index_add_(0, g, q)
        b = torch.zeros(k, dtype=q.dtype, device=q.device).index_add_(0, g, fq)
        # patient j is at risk at every group k >= group(j): reverse cumulative sum over groups
        log_c = torch.log(c) - self.log_risk
        log_cum = torch.flip(_log_cumsum_exp(torch.flip(log_c, (0,))), (0,))
        grad = torch.exp(self.x + log_cum[self.group])
        tied_share = torch.exp(self.x_event - self.log_risk[g]) * b[g]
        grad[self.event_pos] -= tied_share + 1.0
        return grad

    def linear_hessian(self, x_sorted: torch.Tensor) -> torch.Tensor:
        r"""Hessian of -log L in beta for a linear predictor eta = X beta (observed information).

        With :math:`\omega_{ij}` the weight of patient j in the i-th event's denominator,
        :math:`H = X^\top \mathrm{diag}(\sum_i \omega_{i\cdot}) X - \sum_i u_i u_i^\top`,
        :math:`u_i = X^\top \omega_{i\cdot}`; O(n p^2). ``x_sorted`` is X in sorted order.
        """
        g = self.event_group
        q, _ = self.event_weights()
        weight = self.gradient_sorted()
        weight[self.event_pos] += 1.0  # sum_i omega_ij
        h = x_sorted.T @ (weight[:, None] * x_sorted)
        shift = self.x.max()
        prefix = torch.cumsum(torch.exp(self.x - shift)[:, None] * x_sorted, 0)[self.last]
        z = prefix * torch.exp(shift - self.log_risk)[:, None]  # sum_{j in R_k} pi_jk x_j
        share = torch.exp(self.x_event - self.log_risk[g])[:, None] * x_sorted[self.event_pos]
        tied = torch.zeros_like(z).index_add_(0, g, share)  # sum_{j in D_k} pi_jk x_j
        u = q[:, None] * (z[g] - self.frac[:, None] * tied[g])
        return h - u.T @ u

    def unsort(self, sorted_values: torch.Tensor) -> torch.Tensor:
        """Put per-patient values computed in sorted order back in input order."""
        out = torch.empty_like(sorted_values)
        out[self.order] = sorted_values
        return out


class _CoxNegLogLikelihood(torch.autograd.Function):
    """-log L of one stratum with an analytic backward (compiled kernel on the CPU)."""

    @staticmethod
    def forward(ctx, eta, time, event, efron):
        if eta.device.type == "cpu" and _USE_CPU_KERNEL:
            time_sorted, order = torch.sort(time, descending=True)
            loss, grad = cox_nll_and_gradient(
                time_sorted.numpy(),
                eta.detach()[order].numpy(),
                event[order].numpy(),
                efron,
                ctx.needs_input_grad[0],
            )
            if ctx.needs_input_grad[0]:
                ctx.grad = torch.empty_like(eta).index_put_((order,), torch.from_numpy(grad))
            return torch.tensor(loss, dtype=eta.dtype)
        terms = RiskSetTerms(eta.detach(), time, event, efron)
        ctx.terms = terms
        return terms.neg_log_likelihood()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        if hasattr(ctx, "grad"):
            grad = ctx.grad
        else:
            grad = ctx.terms.unsort(ctx.terms.gradient_sorted())
        return grad * grad_output, None, None, None


def _neg_log_likelihood(
    eta: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str
) -> torch.Tensor:
    """Unreduced negative log partial likelihood of one stratum."""
    if not bool(event.any()):
        # a zero that keeps the graph, with a zero gradient (even if some eta overflowed)
        return torch.nan_to_num(eta * 0.0).sum()
    return _CoxNegLogLikelihood.apply(eta, time, event, ties == "efron")
