"""Linear Cox proportional-hazards model fitted by Newton-Raphson with exact ties."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from scipy import stats

from fracrisk._params import Interval, Options
from fracrisk.data.cohort import Cohort
from fracrisk.exceptions import FracriskWarning
from fracrisk.losses import RiskSetTerms
from fracrisk.models._base import SurvivalEstimator

__all__ = ["PENALTY_GRID", "ConvergenceWarning", "CoxPH", "cross_validated_penalizer"]

#: Ridge penalties :func:`cross_validated_penalizer` chooses from (standardised columns).
PENALTY_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)


class ConvergenceWarning(FracriskWarning):
    """Newton-Raphson stopped before converging."""


#: Log hazard ratio per SD above which a coefficient is reported as diverging.
_RUNAWAY_PER_SD = 10.0


class CoxPH(SurvivalEstimator, name="coxph"):
    r"""Cox proportional-hazards model: :math:`h(t \mid x) = h_0(t) \exp(x^\top \beta)`.

    :math:`\beta` maximises the partial likelihood (Efron's or Breslow's handling of tied
    event times; see :func:`fracrisk.losses.cox_partial_likelihood`) by Newton-Raphson
    with step halving, in float64, on standardised covariates; the coefficients are then
    reported on the original scale. The baseline hazard is Breslow's estimator at the
    average training covariates, as in lifelines.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default "efron"
        Handling of tied event times. lifelines uses Efron; scikit-survival's
        ``CoxPHSurvivalAnalysis`` defaults to Breslow.
    penalizer : float, default 0.0
        Ridge penalty: minimises :math:`-\log L(\beta) + \tfrac{\lambda}{2}\lVert
        \beta_s \rVert^2` with :math:`\beta_s` the coefficients on standardised covariates.
    max_iter : int, default 100
        Maximum Newton steps.
    tol : float, default 1e-10
        Convergence when half the squared Newton decrement, :math:`g^\top H^{-1} g / 2`,
        falls below ``tol`` (a bound on the distance to the optimal log-likelihood).

    Attributes
    ----------
    coef_ : pandas.Series
        :math:`\beta` on the original covariate scale (log hazard ratio per unit), indexed
        by feature name; comparable with lifelines' ``params_``.
    summary_ : pandas.DataFrame
        Coefficient, hazard ratio, standard error (from the observed information, penalised
        when ``penalizer > 0``), z, p and 95% confidence interval, per feature.
    log_likelihood_ : float
        Log partial likelihood at :math:`\hat\beta` (without the penalty).
    baseline_hazard_ : BreslowBaselineHazard
        Cumulative baseline hazard for absolute survival curves.
    n_iter_ : int
        Newton steps taken.

    Examples
    --------
    >>> from fracrisk.simulate import clinical_cohort
    >>> cohort = clinical_cohort(2000, seed=1)
    >>> model = CoxPH().fit(cohort, covariates=["age", "femoral_neck_t_score"])
    >>> bool(model.coef_["femoral_neck_t_score"] < 0)
    True
    """

    _head_name = "cox_linear"
    _parameter_constraints = {
        "ties": [Options("efron", "breslow")],
        "penalizer": [Interval(float, 0, None)],
        "max_iter": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        ties: str = "efron",
        penalizer: float = 0.0,
        max_iter: int = 100,
        tol: float = 1e-10,
    ) -> None:
        self.ties, self.penalizer, self.max_iter, self.tol = ties, penalizer, max_iter, tol

    def _fit_network(
        self, network, x: np.ndarray, time: np.ndarray, event: np.ndarray, cohort: Cohort
    ):
        x_t = torch.from_numpy(x)
        t = torch.from_numpy(time)
        e = torch.from_numpy(event == 1)
        beta, loglik, hessian = self._newton(x_t, t, e)
        network = network.double()
        with torch.no_grad():
            network.linear.weight.copy_(beta[None, :])
        # With a penalty the standard errors come from the penalised information (lifelines
        # does the same); unpenalised, collinear features would make it singular.
        information = hessian.numpy() + self.penalizer * np.eye(hessian.shape[0])
        self._set_summary(beta.numpy(), information, loglik)
        return network

    def _objective(self, x, t, e, beta, efron):
        terms = RiskSetTerms(x @ beta, t, e, efron)
        nll = terms.neg_log_likelihood() + 0.5 * self.penalizer * beta @ beta
        return terms, nll

    def _newton(self, x, t, e):
        efron = self.ties == "efron"
        p = x.shape[1]
        ridge = self.penalizer * torch.eye(p, dtype=x.dtype)
        beta = torch.zeros(p, dtype=x.dtype)
        terms, nll = self._objective(x, t, e, beta, efron)
        self.n_iter_ = 0
        converged = False
        for iteration in range(1, self.max_iter + 1):
            x_sorted = x[terms.order]
            grad = x_sorted.T @ terms.gradient_sorted() + self.penalizer * beta
            hessian = terms.linear_hessian(x_sorted) + ridge
            try:
                step = torch.linalg.solve(hessian, grad)
            except RuntimeError as err:  # singular information: collinear covariates
                raise ValueError(
                    "the information matrix is singular; are some covariates "
                    "collinear? Try penalizer > 0"
                ) from err
            decrement = float(grad @ step) / 2
            self.n_iter_ = iteration
            if decrement < self.tol:
                converged = True
                break
            scale = 1.0
            while True:  # step halving keeps every iteration an ascent step
                candidate = beta - scale * step
                new_terms, new_nll = self._objective(x, t, e, candidate, efron)
                if torch.isfinite(new_nll) and new_nll <= nll + 1e-12 * abs(float(nll)):
                    break
                scale /= 2
                if scale < 1e-10:
                    raise ValueError(
                        "Newton-Raphson could not improve the likelihood; the "
                        "data may be separable (try penalizer > 0)"
                    )
            beta, terms, nll = candidate, new_terms, new_nll
        if not converged:
            warnings.warn(
                f"CoxPH did not converge in {self.max_iter} iterations "
                f"(half squared Newton decrement {decrement:.2e} > tol {self.tol:g})",
                ConvergenceWarning,
                stacklevel=4,
            )
        # a hazard ratio above e^10 (22,000) per SD is not an estimate of anything real
        runaway = np.flatnonzero(beta.abs().numpy() > _RUNAWAY_PER_SD)
        if len(runaway):
            names = [self.preprocessor_.feature_names_[j] for j in runaway]
            warnings.warn(
                f"CoxPH coefficients of {names} are diverging (|log hazard ratio| > "
                f"{_RUNAWAY_PER_SD:g} per SD): the events are (nearly) separated by these "
                "covariates (monotone likelihood), so the estimates run off to infinity; "
                "check the columns, or use penalizer > 0",
                ConvergenceWarning,
                stacklevel=4,
            )
        x_sorted = x[terms.order]
        unpenalised = terms.linear_hessian(x_sorted)
        return beta, -float(terms.neg_log_likelihood()), unpenalised

    def _set_summary(self, beta_std: np.ndarray, information: np.ndarray, loglik: float) -> None:
        names = self.preprocessor_.feature_names_
        scale = self.preprocessor_.scale_
        coef = beta_std / scale
        try:
            cov = np.linalg.inv(information)
            se = np.sqrt(np.clip(np.diag(cov), 0, None)) / scale
        except np.linalg.LinAlgError:
            se = np.full_like(coef, np.nan)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = coef / se
            hazard_ratio = np.exp(coef)  # inf for a near-constant column's huge coefficient
        crit = stats.norm.ppf(0.975)
        self.coef_ = pd.Series(coef, index=pd.Index(names, name="covariate"), name="coef")
        self.summary_ = pd.DataFrame(
            {
                "coef": coef,
                "exp(coef)": hazard_ratio,
                "se(coef)": se,
                "z": z,
                "p": 2 * stats.norm.sf(np.abs(z)),
                "coef lower 95%": coef - crit * se,
                "coef upper 95%": coef + crit * se,
            },
            index=pd.Index(names, name="covariate"),
        )
        self.log_likelihood_ = loglik

    def _extra_state(self) -> dict:
        return {
            "summary": self.summary_.reset_index().to_dict(orient="list"),
            "log_likelihood": self.log_likelihood_,
            "n_iter": self.n_iter_,
        }

    def _load_extra_state(self, state: dict) -> None:
        self.summary_ = pd.DataFrame(state["summary"]).set_index("covariate")
        self.coef_ = self.summary_["coef"].rename("coef")
        self.log_likelihood_ = state["log_likelihood"]
        self.n_iter_ = state["n_iter"]


def cross_validated_penalizer(
    train: Cohort, design: list[str], folds: int = 5, seed: int = 0
) -> float:
    r"""The ridge penalty of :data:`PENALTY_GRID` with the best K-fold cross-validated fit.

    Verweij & van Houwelingen (1993): fold k contributes
    :math:`\ell(\hat\beta_{-k}) - \ell_{-k}(\hat\beta_{-k})`, the full-data log partial
    likelihood minus the training part's, at the coefficients fitted without fold k. The
    columns are standardised once on all training rows, as :class:`CoxPH` does.
    """
    from fracrisk.preprocessing import TabularPreprocessor

    x = torch.from_numpy(TabularPreprocessor(design).fit_transform(train.df))
    t = torch.from_numpy(train.time)
    e = torch.from_numpy(train.event == 1)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(train), dtype=np.int64)
    for value in (True, False):  # each fold gets its share of the events
        rows = np.flatnonzero(e.numpy() == value)
        rng.shuffle(rows)
        fold[rows] = np.arange(len(rows)) % folds

    def log_likelihood(beta, rows) -> float:
        terms = RiskSetTerms(x[rows] @ beta, t[rows], e[rows], True)
        return -float(terms.neg_log_likelihood())

    everyone = torch.arange(len(train))
    scores = []
    for penalizer in PENALTY_GRID:
        total = 0.0
        for k in range(folds):
            rows = torch.from_numpy(np.flatnonzero(fold != k))
            if not bool(e[rows].any()):
                continue
            beta, _, _ = CoxPH(penalizer=penalizer)._newton(x[rows], t[rows], e[rows])
            total += log_likelihood(beta, everyone) - log_likelihood(beta, rows)
        scores.append(total)
    return float(PENALTY_GRID[int(np.argmax(scores))])
