r"""Calibration of predicted absolute risk at a horizon, and D-calibration of whole curves.

A model is calibrated when, among patients given a risk of 20% by the horizon, about 20%
have the event by then. Observed risk is estimated with Kaplan-Meier (``1 - KM``), or with
Aalen-Johansen when competing death (event code 2) is present, because then the predicted
risk should be the cumulative incidence with death competing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from fracrisk._checks import check_survival_inputs, check_times
from fracrisk.exceptions import DataWarning
from fracrisk.metrics._ipcw import CensoringSurvival
from fracrisk.nonparametric import aalen_johansen_interval, observed_risk

__all__ = ["CalibrationResult", "DCalibrationResult", "calibration", "d_calibration"]

_EPS = 1e-12


@dataclass
class CalibrationResult:
    r"""Calibration of risks at one horizon; see :func:`calibration` for definitions.

    Attributes
    ----------
    horizon : float
        Years.
    table : pandas.DataFrame
        Per risk group: ``n``, mean ``predicted`` risk, ``observed`` risk and its 95%
        interval (``observed_lower``/``observed_upper``: Greenwood for Kaplan-Meier, the
        delta-method interval of :func:`~fracrisk.nonparametric.aalen_johansen_interval`
        with deaths competing).
    observed, expected : float
        Overall observed risk and mean predicted risk.
    observed_expected : float
        O/E; 1 is perfect, < 1 means the model over-predicts.
    intercept, slope : float
        Recalibration model on the complementary log-log scale; (0, 1) is perfect.
    ici, e50, e90, emax : float
        Mean, median, 90th centile and maximum of :math:`|p_i - \hat p^{obs}_i|`.
    curve : pandas.DataFrame
        Smoothed calibration curve: ``predicted`` and ``observed`` per patient, sorted by
        predicted risk (the data behind a calibration plot).
    competing : bool
        Whether competing events were present (observed risk by Aalen-Johansen).
    """

    horizon: float
    table: pd.DataFrame
    observed: float
    expected: float
    observed_expected: float
    intercept: float
    slope: float
    ici: float
    e50: float
    e90: float
    emax: float
    curve: pd.DataFrame
    competing: bool

    def plot(self, ax=None, *, label: str | None = None):
        """Draw the calibration plot (grouped points, smoothed curve, diagonal); returns ax."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5))
        # show the bulk of the patients: the smoothed curve is unreliable in the far tail
        top = (
            float(
                max(
                    self.table["predicted"].max(),
                    self.table["observed"].max(),
                    self.curve["predicted"].quantile(0.99),
                )
            )
            * 1.1
        )
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.plot([0, top], [0, top], color="grey", linewidth=1)
        line = ax.plot(
            self.curve["predicted"],
            self.curve["observed"],
            linewidth=1.5,
            label=f"{label or 'model'} (ICI {self.ici:.3f})",
        )[0]
        ax.errorbar(
            self.table["predicted"],
            self.table["observed"],
            yerr=[
                self.table["observed"] - self.table["observed_lower"],
                self.table["observed_upper"] - self.table["observed"],
            ],
            fmt="o",
            color=line.get_color(),
            capsize=2,
        )
        ax.set_xlabel(f"predicted {self.horizon:g}-year risk")
        ax.set_ylabel(f"observed {self.horizon:g}-year risk")
        ax.legend(loc="upper left")
        return ax


def _check_risk_at_horizon(time, event, risk, horizon):
    t, e, p = check_survival_inputs(time, event, risk)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("Input 'risk_at_horizon' must hold probabilities in [0, 1]")
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon must be a positive number of years, got {horizon!r}")
    if horizon > t.max():
        raise ValueError(f"horizon {horizon:g} is beyond the last follow-up ({t.max():g} years)")
    if not np.any((e == 1) & (t <= horizon)):
        raise ValueError(
            f"no event by the horizon ({horizon:g} years): calibration cannot be assessed"
        )
    return t, e, p


def _group_table(t, e, p, horizon, groups):
    edges = np.unique(np.quantile(p, np.linspace(0, 1, groups + 1)))
    group = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    competing = bool(np.any(e == 2))
    rows = []
    for g in np.unique(group):
        member = group == g
        tg, eg = t[member], e[member]
        if competing:
            obs, lower, upper = aalen_johansen_interval(tg, eg, horizon)
        else:
            obs, lower, upper = _km_risk_with_ci(tg, eg, horizon)
        rows.append(
            {
                "group": int(g) + 1,
                "n": int(member.sum()),
                "events": int(((eg == 1) & (tg <= horizon)).sum()),
                "predicted": float(p[member].mean()),
                "observed": obs,
                "observed_lower": lower,
                "observed_upper": upper,
            }
        )
    return pd.DataFrame(rows)


def _km_risk_with_ci(t, e, horizon):
    """1 - KM(horizon) with a 95% Greenwood interval (normal on the risk scale, clipped)."""
    distinct, inverse = np.unique(t, return_inverse=True)
    d = np.bincount(inverse, weights=e == 1, minlength=len(distinct))
    leaving = np.bincount(inverse, minlength=len(distinct))
    at_risk = len(t) - np.concatenate([[0], np.cumsum(leaving)[:-1]])
    use = (distinct <= horizon) & (d > 0)
    surv = float(np.prod(1 - d[use] / at_risk[use]))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = d[use] / (at_risk[use] * (at_risk[use] - d[use]))
    if not np.all(np.isfinite(terms)):  # everyone left at risk had the event: no Greenwood SE
        return 1 - surv, np.nan, np.nan
    se = surv * np.sqrt(np.sum(terms))
    risk = 1 - surv
    return risk, max(0.0, risk - 1.96 * se), min(1.0, risk + 1.96 * se)


def _rcs_term(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The one non-linear restricted cubic spline basis term for three knots (Harrell)."""
    k1, k2, k3 = knots
    cube = lambda u: np.clip(u, 0, None) ** 3  # noqa: E731
    term = (
        cube(x - k1) - cube(x - k2) * (k3 - k1) / (k3 - k2) + cube(x - k3) * (k2 - k1) / (k3 - k2)
    )
    return term / (k3 - k1) ** 2


def _horizon_outcome(t, e, horizon):
    r"""Binary outcome by the horizon and its inverse probability of censoring weight.

    :math:`Y_i = 1[T_i \le h, \delta_i = 1]`, known for patients followed past *h* (weight
    :math:`1/\hat G(h)`) and for those with an event of any cause by *h* (weight
    :math:`1/\hat G(T_i)`); patients censored before *h* get weight 0.
    """
    censoring = CensoringSurvival(t, e == 0)
    known_event = (t <= horizon) & (e != 0)
    past = t > horizon
    weight = censoring.inverse_weights(t, known_event, name="event time")
    weight[past] = censoring.inverse_weights(np.array([horizon]), np.array([True]), name="horizon")[
        0
    ]
    return ((e == 1) & (t <= horizon)).astype(np.float64), weight


def _cloglog_glm(design: np.ndarray, y: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    r"""Weighted binomial regression with complementary log-log link; None if it fails.

    Maximises :math:`\sum_i w_i [y_i \log \mu_i + (1 - y_i) \log(1 - \mu_i)]` with
    :math:`\mu_i = 1 - \exp(-\exp(z_i^\top \theta))`.
    """
    from scipy.optimize import minimize

    def negative_loglik(theta):
        eta = np.clip(design @ theta, -30, 5)
        log_survive = -np.exp(eta)  # log(1 - mu)
        log_mu = np.log(-np.expm1(log_survive))
        value = -np.sum(weight * (y * log_mu + (1 - y) * log_survive))
        # d/d eta: y * exp(eta) * exp(log_survive) / mu - (1 - y) * exp(eta)
        dmu = np.exp(eta + log_survive - log_mu)
        grad_eta = -(weight * (y * dmu - (1 - y) * np.exp(eta)))
        return value, design.T @ grad_eta

    start = np.zeros(design.shape[1])
    start[1] = 1.0  # identity recalibration
    fit = minimize(
        negative_loglik, start, jac=True, method="BFGS", options={"gtol": 1e-8, "maxiter": 500}
    )
    if not fit.success and not np.isfinite(fit.fun):
        return None
    if not np.all(np.isfinite(fit.x)) or np.max(np.abs(fit.x)) > 50:
        return None
    return fit.x


def _recalibration(t, e, p, horizon):
    """Recalibration fits of the outcome by the horizon on x = cloglog(p).

    Returns (intercept, slope, smoothed observed risk); NaN with a DataWarning where a
    fit is impossible (all risks equal, or the outcome separated by the risks).
    """
    x = np.log(-np.log1p(-np.clip(p, _EPS, 1 - _EPS)))
    y, weight = _horizon_outcome(t, e, horizon)
    linear = (
        _cloglog_glm(np.column_stack([np.ones_like(x), x]), y, weight) if np.ptp(x) > 0 else None
    )
    if linear is None:
        warnings.warn(
            "the recalibration model cannot be fitted (all predicted risks equal, "
            "or the events are perfectly separated): intercept, slope and ICI are "
            "NaN",
            DataWarning,
            stacklevel=3,
        )
        return np.nan, np.nan, np.full(len(p), np.nan)
    design = np.column_stack([np.ones_like(x), x])
    theta = linear
    knots = np.quantile(x, [0.1, 0.5, 0.9])
    if np.all(np.diff(knots) > 0):
        spline = np.column_stack([design, _rcs_term(x, knots)])
        smooth = _cloglog_glm(spline, y, weight)
        if smooth is not None:
            design, theta = spline, smooth
    observed = -np.expm1(-np.exp(design @ theta))
    return float(linear[0]), float(linear[1]), observed


def calibration(
    time, event, risk_at_horizon, horizon: float, *, groups: int = 10
) -> CalibrationResult:
    r"""Calibration of predicted risks by ``horizon`` years.

    * **Grouped table**: patients are split at quantiles of the predicted risk into
      ``groups`` groups; in each, the mean predicted risk is set against the observed
      risk (``1 - KM(h)``, or Aalen-Johansen :math:`\hat F_1(h)` when any event is a
      competing death).
    * **O/E** (calibration in the large): observed risk of the whole sample over the mean
      predicted risk.
    * **Intercept and slope**: the recalibration model
      :math:`\mathrm{cloglog}\, P(Y = 1 \mid p) = \alpha + \beta \, \mathrm{cloglog}\, p`,
      with :math:`\mathrm{cloglog}\, p = \log(-\log(1 - p))` and
      :math:`Y = 1[T \le h, \text{event} = 1]`, a binomial regression weighted by inverse
      probability of censoring (patients censored before *h* get weight 0; those followed
      past *h* or with an event of either cause by *h* get :math:`1/\hat G`). A calibrated
      model has :math:`\alpha = 0, \beta = 1`; risks doubled give
      :math:`\alpha \approx -\log 2`; over-fitted risks give :math:`\beta < 1`. A death
      before *h* is a known :math:`Y = 0`, so this judges the absolute risk with death
      competing, consistently with the table.
    * **ICI, E50, E90, Emax** (Austin, Harrell, van Klaveren 2020): a smoothed observed
      risk :math:`\hat p^{obs}_i` from the same regression with a restricted cubic spline
      of :math:`x` (3 knots at the 10th/50th/90th centiles); ICI is the mean of
      :math:`|p_i - \hat p^{obs}_i|`, E50 and E90 its median and 90th centile. (Austin et
      al. smooth with a Cox model, which treats death as censoring.)

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years; event code 0, 1 or 2.
    risk_at_horizon : array-like, shape = (n_patients,)
        Predicted probability of the event by the horizon, in [0, 1].
    horizon : float
        Years; at most the last follow-up time.
    groups : int, default 10
        Number of risk groups in the table.

    Returns
    -------
    CalibrationResult
        With ``.plot()`` for the calibration plot.

    References
    ----------
    Austin PC, Harrell FE, van Klaveren D (2020) Graphical calibration curves and the
    integrated calibration index (ICI) for survival models. Stat Med 39:2714-2742.
    Gerds TA, Schumacher M (2006) Consistent estimation of the expected Brier score in
    general survival models with right-censored event times. Biom J 48:1029-1040.
    """
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups!r}")
    if np.size(time) < 2:
        raise ValueError(
            f"calibration needs at least 2 patients, got {np.size(time)}: a slope cannot be "
            "estimated from one"
        )
    t, e, p = _check_risk_at_horizon(time, event, risk_at_horizon, horizon)
    observed = observed_risk(t, e, horizon)
    expected = float(p.mean())
    intercept, slope, smoothed = _recalibration(t, e, p, horizon)
    gap = np.abs(p - smoothed)
    order = np.argsort(p, kind="stable")
    curve = pd.DataFrame({"predicted": p[order], "observed": smoothed[order]})
    return CalibrationResult(
        horizon=float(horizon),
        table=_group_table(t, e, p, horizon, groups),
        observed=observed,
        expected=expected,
        observed_expected=observed / expected,
        intercept=intercept,
        slope=slope,
        ici=float(gap.mean()),
        e50=float(np.median(gap)),
        e90=float(np.quantile(gap, 0.9)),
        emax=float(gap.max()),
        curve=curve,
        competing=bool(np.any(e == 2)),
    )


@dataclass
class DCalibrationResult:
    """D-calibration: the chi-square statistic, its p-value and the bin counts."""

    statistic: float
    p_value: float
    counts: np.ndarray
    bins: int


def d_calibration(time, event, surv, times, *, bins: int = 10) -> DCalibrationResult:
    r"""D-calibration of predicted survival curves (Haider et al. 2020).

    If the curves are right, the predicted survival at the observed event time,
    :math:`S_i(T_i)`, is uniform on [0, 1]. The unit interval is cut into ``bins`` equal
    bins; an event adds 1 to the bin of :math:`s = S_i(T_i)`. A patient censored at
    :math:`C_i`, with :math:`s = S_i(C_i)`, has :math:`S_i(T_i)` uniform on
    :math:`[0, s]`: the bin holding *s* gets :math:`(s - a)/s` (its lower edge *a*) and
    each bin wholly below *s* gets :math:`(b - a)/s`. The statistic
    :math:`\sum_b (O_b - n/B)^2 / (n/B)` is compared with a chi-square on
    :math:`B - 1` degrees of freedom; a small p-value means miscalibration.
    :math:`S_i(t)` is read off the grid as a step function (1 before the first grid
    time). Competing death counts as censoring.

    Parameters
    ----------
    time, event : array-like, shape = (n_patients,)
        Follow-up in years; event code.
    surv : array-like, shape = (n_patients, n_times)
        Predicted survival on the grid ``times``.
    times : array-like, shape = (n_times,)
        Strictly increasing grid in years.
    bins : int, default 10
        Number of equal-width bins.

    References
    ----------
    Haider H et al. (2020) Effective ways to build and evaluate individual survival
    distributions. JMLR 21:1-63.
    """
    grid = check_times(times)
    t, e, _ = check_survival_inputs(time, event, np.zeros(len(np.asarray(time))))
    s = np.asarray(surv, dtype=np.float64)
    if s.shape != (len(t), len(grid)):
        raise ValueError(f"Input 'surv' must have shape ({len(t)}, {len(grid)}), got {s.shape}")
    if not np.all(np.isfinite(s)) or np.any((s < 0) | (s > 1)):
        raise ValueError("Input 'surv' must hold finite survival probabilities in [0, 1]")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins!r}")
    column = np.searchsorted(grid, t, side="right") - 1
    at_time = np.where(column >= 0, s[np.arange(len(t)), np.clip(column, 0, None)], 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, at_time, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which[e == 1], minlength=bins).astype(np.float64)
    censored = e != 1
    sc, wc = at_time[censored], which[censored]
    positive = sc > 0
    low = edges[:-1][None, :]
    high = edges[1:][None, :]
    share = np.where(high[0] <= 1, (high - low) / np.where(positive, sc, 1.0)[:, None], 0.0)
    share = np.where(low >= sc[:, None], 0.0, share)  # bins above s get nothing
    own = (sc - edges[wc]) / np.where(positive, sc, 1.0)
    share[np.arange(len(sc)), wc] = own
    share[~positive] = 0.0
    share[~positive, 0] = 1.0  # s = 0: all mass in the lowest bin
    counts += share.sum(axis=0)
    expected = len(t) / bins
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return DCalibrationResult(statistic, float(stats.chi2.sf(statistic, bins - 1)), counts, bins)
