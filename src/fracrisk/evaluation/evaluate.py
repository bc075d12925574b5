r"""One evaluation of fitted survival models on held-out patients.

:func:`evaluate` scores every model on the same test cohort with the same bootstrap
resamples and returns an :class:`Evaluation`: plain tables (``pandas.DataFrame``) that
render to markdown, JSON and a self-contained HTML report
(:func:`fracrisk.evaluation.report.write_html`). The demo, the CLI and
``benchmarks/reproduce.py`` all use it.

Definitions (each metric's own docstring has the formula):

* **Harrell's C** ranks the model's score against observed fracture order, deaths
  censored (cause-specific). **Uno's C** weights pairs by the inverse censoring
  probability up to :math:`\tau` = the last horizon; censoring comes from ``train`` when
  given (reverse Kaplan-Meier, as scikit-survival), else from the test data.
* **td-AUC** is the cumulative/dynamic AUC at each whole year up to the last horizon.
* **IBS** is the integrated Brier score of the survival curve over (0, last horizon].
* **Calibration** at each horizon compares mean predicted risk with the observed risk of
  deciles of predicted risk: Aalen-Johansen with its 95% interval when deaths compete,
  else 1 - Kaplan-Meier with Greenwood's interval.
* **Decision curves** are net benefit against the treatment threshold (Vickers 2008).
* **NRI** is the continuous net reclassification improvement against the reference model
  (Pencina 2011), with a bootstrap interval.
* **Paired comparisons** are bootstrap differences (model minus reference) on the same
  resamples.
* **Subgroups**: Harrell's C with its interval by sex and age band (< 65, 65-74, 75-84,
  >= 85 years) where the cohort has ``sex``/``age`` columns.
* **Oracle**: on a simulated cohort (``cohort.truth``), the simulator's true log hazard
  and true absolute risks are scored like a model: the ceiling no model can beat.

Every model states its risk type: *cause-specific* (death censored, the risk in a world
without death) or *absolute* (death competing). Calibration against the Aalen-Johansen
observed risk is a like-with-like check only for absolute risks; the report says so.
A metric that cannot be computed here (a horizon beyond follow-up, no events in a
subgroup) is recorded in :attr:`Evaluation.notes` with the reason, never dropped silently.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk._io import atomic_path, package_versions
from fracrisk.data.cohort import Cohort
from fracrisk.metrics import (
    bootstrap,
    calibration,
    compare,
    cumulative_dynamic_auc,
    harrell_c,
    integrated_brier_score,
    net_benefit,
    nri,
    uno_c,
)
from fracrisk.models import RISK_TYPES
from fracrisk.nonparametric import kaplan_meier

__all__ = ["ORACLE", "Evaluation", "evaluate"]

#: Name of the simulator's truth when it is scored like a model.
ORACLE = "truth (oracle)"

_AGE_BANDS = ((-np.inf, 65.0, "< 65"), (65.0, 75.0, "65-74"), (75.0, 85.0, "75-84"))
_MIN_SUBGROUP_EVENTS = 10
_N_EXAMPLES = 5
_TABLES = (
    "models",
    "discrimination",
    "auc",
    "calibration",
    "calibration_groups",
    "calibration_curves",
    "decision",
    "comparisons",
    "reclassification",
    "subgroups",
    "km_quartiles",
    "curves",
    "truth_points",
)


@dataclass
class Evaluation:
    """What :func:`evaluate` measured, as tables; renders to markdown, JSON and HTML.

    Attributes
    ----------
    info : dict
        The test cohort (patients, fractures, deaths, follow-up), the settings (horizons
        in years, bootstrap resamples, seed, reference model), package versions and the
        caller's ``context`` (for example the split and the training sizes).
    models : DataFrame
        One row per model: ``model``, ``risk_type``, ``risk`` (in words), ``class``.
    discrimination : DataFrame
        Per model: ``harrell``, ``uno``, ``mean_auc`` (the mean td-AUC) and their 95%
        ``*_lower``/``*_upper``, ``ibs``.
    auc : DataFrame
        ``model``, ``time`` (years), ``auc``: td-AUC over time.
    calibration : DataFrame
        Per model and horizon: ``observed``, ``expected``, ``oe``, ``intercept``,
        ``slope``, ``ici``, ``e90``, ``competing``.
    calibration_groups, calibration_curves : DataFrame
        The decile table with observed-risk intervals, and the smoothed curve.
    decision : DataFrame
        ``horizon``, ``threshold``, ``model`` (including ``"treat all"``), ``net_benefit``.
    comparisons : DataFrame
        ``model``, ``reference``, ``metric``, ``difference`` (model - reference),
        ``lower``, ``upper``, ``p_value``.
    reclassification : DataFrame
        Continuous NRI against the reference per horizon: ``events``, ``nonevents``,
        ``total`` with a 95% interval of ``total``.
    subgroups : DataFrame
        ``subgroup``, ``level``, ``n``, ``fractures``, ``model``, ``harrell`` with interval.
    km_quartiles : DataFrame
        Kaplan-Meier fracture-free survival (deaths censored) by quartile of each model's
        predicted risk at the first horizon: ``model``, ``quartile``, ``time``, ``survival``.
    curves : DataFrame
        Example per-patient survival curves: ``model``, ``patient``, ``time``, ``survival``.
    truth_points : DataFrame
        On simulated cohorts, the true risk of the example patients: ``patient``,
        ``time``, ``survival``.
    notes : list of str
        Everything not computed, with the reason.
    """

    info: dict
    models: pd.DataFrame
    discrimination: pd.DataFrame
    auc: pd.DataFrame
    calibration: pd.DataFrame
    calibration_groups: pd.DataFrame
    calibration_curves: pd.DataFrame
    decision: pd.DataFrame
    comparisons: pd.DataFrame
    reclassification: pd.DataFrame
    subgroups: pd.DataFrame
    km_quartiles: pd.DataFrame
    curves: pd.DataFrame
    truth_points: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def horizons(self) -> list[float]:
        """Horizons evaluated, years."""
        return list(self.info["horizons"])

    @property
    def reference(self) -> str | None:
        """The model the others are compared with."""
        return self.info.get("reference")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """Everything as JSON-ready builtins (tables as lists of records)."""
        out = {"info": self.info, "notes": list(self.notes)}
        for name in _TABLES:
            table = getattr(self, name)
            out[name] = json.loads(table.to_json(orient="records", double_precision=15))
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> Evaluation:
        """The inverse of :meth:`to_dict` (used by ``fracrisk report RUN_DIR``)."""
        missing = [k for k in ("info", *_TABLES) if k not in data]
        if missing:
            raise ValueError(f"not a fracrisk evaluation: keys {missing} are missing")
        tables = {name: pd.DataFrame.from_records(data[name]) for name in _TABLES}
        return cls(info=dict(data["info"]), notes=list(data.get("notes", [])), **tables)

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` atomically to ``path``."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
        return path

    @classmethod
    def read_json(cls, path: str | Path) -> Evaluation:
        """Read an evaluation written by :meth:`save_json`."""
        return read_evaluation_file(path, lambda data: cls.from_dict(data))

    # ------------------------------------------------------------------ tables in words
    def summary_table(self) -> pd.DataFrame:
        """One row per model: risk type, C-indices with intervals, mean AUC, IBS, O/E."""
        rows = []
        first = self.horizons[0]
        for row in self.discrimination.itertuples(index=False):
            kind = self.models.set_index("model").loc[row.model, "risk"]
            entry = {
                "model": row.model,
                "risk": kind,
                "Harrell C (95% CI)": _with_ci(row.harrell, row.harrell_lower, row.harrell_upper),
                "Uno C (95% CI)": _with_ci(row.uno, row.uno_lower, row.uno_upper),
                "mean td-AUC (95% CI)": _with_ci(
                    row.mean_auc, row.mean_auc_lower, row.mean_auc_upper
                ),
                "IBS": _fmt(row.ibs, 4),
            }
            calib = self.calibration
            if not calib.empty:  # empty, without columns, when no calibration could be made
                calib = calib[(calib["model"] == row.model) & (calib["horizon"] == first)]
            entry[f"O/E {first:g} y"] = _fmt(calib["oe"].iloc[0]) if len(calib) else "n/a"
            rows.append(entry)
        return pd.DataFrame(rows)

    def calibration_table(self) -> pd.DataFrame:
        """Calibration summaries in words, one row per model and horizon."""
        if self.calibration.empty:
            return pd.DataFrame()
        table = self.calibration.copy()
        table["risk"] = table["model"].map(self.models.set_index("model")["risk"])
        columns = ["model", "risk", "horizon", "observed", "expected", "oe"]
        columns += ["intercept", "slope", "ici", "e90"]
        table = table[columns].rename(
            columns={"expected": "mean predicted", "oe": "O/E", "ici": "ICI", "e90": "E90"}
        )
        return table.round(4)

    def comparison_table(self) -> pd.DataFrame:
        """Paired comparisons in words: the difference, its interval, p and a verdict."""
        if self.comparisons.empty:
            return pd.DataFrame()
        rows = []
        for c in self.comparisons.itertuples(index=False):
            rows.append(
                {
                    "model": c.model,
                    "vs": c.reference,
                    "metric": c.metric,
                    "difference (95% CI)": _with_ci(c.difference, c.lower, c.upper, signed=True),
                    "p": _fmt(c.p_value),
                    "verdict": _verdict(c.lower, c.upper),
                }
            )
        return pd.DataFrame(rows)

    def subgroup_table(self) -> pd.DataFrame:
        """Harrell's C (95% CI) by subgroup: a row per subgroup, a column per model."""
        if self.subgroups.empty:
            return pd.DataFrame()
        table = self.subgroups.assign(
            C=[_with_ci(r.harrell, r.lower, r.upper) for r in self.subgroups.itertuples()]
        )
        wide = table.pivot_table(
            index=["subgroup", "level", "n", "fractures"],
            columns="model",
            values="C",
            aggfunc="first",
            sort=False,
        )
        order = [m for m in self.models["model"] if m in wide.columns]
        return wide[order].reset_index().rename_axis(columns=None)

    def to_markdown(self) -> str:
        """The evaluation as a markdown report (tables only; the HTML report has the plots)."""
        info = self.info
        lines = [
            "# fracrisk evaluation",
            "",
            f"- test patients: {info['n']} ({info['fractures']} fractures, {info['deaths']} "
            f"deaths competing, {info['censored']} censored); median follow-up "
            f"{info['median_follow_up']:.2f} years",
            f"- horizons: {', '.join(f'{h:g}' for h in self.horizons)} years; "
            f"{info['n_boot']} bootstrap resamples (seed {info['seed']}); reference: "
            f"{self.reference or 'none'}",
            f"- censoring distribution for IPCW metrics: {info['censoring']}",
            "",
            "## Discrimination",
            "",
            markdown_table(self.summary_table()),
            "",
        ]
        if not self.comparisons.empty:
            lines += ["## Paired comparisons", "", markdown_table(self.comparison_table()), ""]
        if not self.reclassification.empty:
            lines += ["## Net reclassification (continuous NRI)", ""]
            lines += [markdown_table(self.reclassification.round(4)), ""]
        lines += ["## Calibration", ""]
        if self.calibration.empty:  # every attempt failed; the reasons are under "Not computed"
            lines += ["No calibration could be computed (see below).", ""]
        else:
            lines += [markdown_table(self.calibration_table()), ""]
        groups_by = (
            ()
            if self.calibration_groups.empty
            else self.calibration_groups.groupby(["model", "horizon"], sort=False)
        )
        for (model, horizon), groups in groups_by:
            lines += [f"### {model}, {horizon:g} years, by decile of predicted risk", ""]
            table = groups.drop(columns=["model", "horizon"]).round(4)
            lines += [markdown_table(table), ""]
        if not self.subgroups.empty:
            lines += ["## Subgroups (Harrell's C)", "", markdown_table(self.subgroup_table())]
            lines += [""]
        if self.notes:
            lines += ["## Not computed", "", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines)


def read_evaluation_file(path: str | Path, build):
    """``build(data)`` of a JSON file; every failure is a ValueError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read an evaluation ({err})") from None
    try:
        return build(data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from None


# ----------------------------------------------------------------------- evaluate
def evaluate(
    models: Mapping[str, object],
    test: Cohort,
    *,
    horizons: Sequence[float] = (5.0, 10.0),
    reference: str | None = None,
    train: Cohort | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    subgroups: bool = True,
    oracle: bool = True,
    tau: float | None = None,
    auc_times: Sequence[float] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    progress: bool = False,
    context: Mapping | None = None,
) -> Evaluation:
    """Evaluate fitted models on held-out patients; see the module docstring for definitions.

    Parameters
    ----------
    models : mapping of str to fitted model
        Each has ``predict_score`` and ``predict_risk``; ``predict_survival`` adds the IBS
        and the curves. Names are the report's row labels.
    test : Cohort
        Held-out patients (time in years, event 0 censored / 1 fracture / 2 death).
    horizons : sequence of float, default (5, 10)
        Years. Horizons beyond the test follow-up are left out with a note; at least one
        must remain.
    reference : str, optional
        The model the others are compared with (paired C differences, NRI). Default: the
        first model whose name starts with "FRAX", else the first model.
    train : Cohort, optional
        The training cohort: its censoring distribution weights Uno's C, the AUC and the
        Brier score (as scikit-survival does). Default: the test cohort's own.
    n_boot : int, default 1000
        Bootstrap resamples for every interval (the same resamples for every model).
    seed : int, default 0
        Seed of the resampling.
    subgroups : bool, default True
        Harrell's C by sex and age band.
    oracle : bool, default True
        Score ``test.truth`` (simulated cohorts) as the row ``"truth (oracle)"``.
    tau : float, optional
        Truncation time of Uno's C, years. Default: the last horizon.
    auc_times : sequence of float, optional
        Times of the td-AUC, years. Default: every whole year up to ``tau``. Times outside
        the test follow-up are left out with a note.
    pairs : sequence of (model, reference), optional
        The paired comparisons to make. Default: every model against ``reference``.
    progress : bool, default False
        Show a progress bar.
    context : mapping, optional
        Free-form facts for the report's model card (split, training sizes, seeds, ...).

    Returns
    -------
    Evaluation
    """
    if not isinstance(test, Cohort):
        raise TypeError(f"test must be a fracrisk Cohort, got {type(test).__name__}")
    if not models:
        raise ValueError("models is empty: give at least one fitted model")
    if n_boot < 1:
        raise ValueError(f"n_boot must be a positive number of resamples, got {n_boot!r}")
    models = dict(models)
    for name, model in models.items():
        if getattr(model, "risk_type", None) not in RISK_TYPES:
            raise ValueError(
                f"model {name!r} does not state its risk_type ({' or '.join(RISK_TYPES)}): "
                "the report must say whether its risk is cause-specific or absolute"
            )
    if ORACLE in models:
        raise ValueError(f"{ORACLE!r} is reserved for the simulator's truth; rename that model")
    if reference is None:
        reference = next((k for k in models if k.upper().startswith("FRAX")), next(iter(models)))
    elif reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: {sorted(models)}")
    t, e = test.time, test.event
    notes: list[str] = []
    kept = _check_horizons(horizons, float(t.max()), notes)
    if pairs is None:
        pairs = [(name, reference) for name in models if name != reference]
    for model_name, reference_name in pairs:
        for name in (model_name, reference_name):
            if name not in models:
                raise ValueError(f"pairs: {name!r} is not one of the models {sorted(models)}")
    censoring = {"train_time": train.time, "train_event": train.event} if train is not None else {}
    scorers = {name: _Predictions(name, model, test, kept) for name, model in models.items()}
    if oracle and test.truth is not None and "true_log_hazard" in test.truth:
        scorers[ORACLE] = _OraclePredictions(test.truth, kept)
    steps = _Progress(len(scorers) * 3 + 3, progress)
    tau = kept[-1] if tau is None else float(tau)
    ctx = _Context(t, e, kept, censoring, n_boot, seed, notes, tau, auc_times)
    outside = [x for x in (auc_times or ()) if not (t.min() < float(x) < t.max())]
    if outside:
        notes.append(
            f"td-AUC at {', '.join(f'{x:g}' for x in outside)} years: left out, outside the "
            f"test follow-up ({t.min():.2f} to {t.max():.2f} years)"
        )

    discrimination, auc, calib, groups, curves_smooth, decision = [], [], [], [], [], []
    for name, scorer in scorers.items():
        steps.describe(f"{name}: C-indices")
        discrimination.append(_discrimination(ctx, name, scorer, auc))
        steps.advance()
        steps.describe(f"{name}: calibration")
        for horizon in kept:
            _calibration(ctx, name, scorer, horizon, calib, groups, curves_smooth)
        steps.advance()
        steps.describe(f"{name}: decision curves")
        for horizon in kept:
            _decision(ctx, name, scorer, horizon, decision)
        steps.advance()
    steps.describe("paired comparisons and NRI")
    comparisons, reclassification = _comparisons(ctx, scorers, list(pairs))
    steps.advance()
    steps.describe("subgroups")
    subgroup_rows = _subgroups(ctx, test, scorers) if subgroups else []
    steps.advance()
    steps.describe("curves")
    km, examples, truth_points = _curves(ctx, test, scorers, reference)
    steps.advance()
    steps.close()

    model_rows = [
        {
            "model": name,
            "risk_type": s.risk_type,
            "risk": RISK_TYPES.get(s.risk_type, s.risk_type),
            "class": s.class_name,
        }
        for name, s in scorers.items()
    ]
    info = _info(test, kept, n_boot, seed, reference, train, context)
    return Evaluation(
        info=info,
        models=pd.DataFrame(model_rows),
        discrimination=pd.DataFrame(discrimination),
        auc=pd.DataFrame(auc, columns=["model", "time", "auc"]),
        calibration=pd.DataFrame(calib),
        calibration_groups=pd.DataFrame(groups),
        calibration_curves=pd.DataFrame(curves_smooth),
        decision=pd.DataFrame(decision),
        comparisons=pd.DataFrame(comparisons),
        reclassification=pd.DataFrame(reclassification),
        subgroups=pd.DataFrame(subgroup_rows),
        km_quartiles=km,
        curves=examples,
        truth_points=truth_points,
        notes=notes,
    )


# ----------------------------------------------------------------------- internals
@dataclass
class _Context:
    time: np.ndarray
    event: np.ndarray
    horizons: list[float]
    censoring: dict
    n_boot: int
    seed: int
    notes: list[str]
    tau: float
    auc_times: Sequence[float] | None = None

    def attempt(self, what: str, function: Callable, *args, **kwargs):
        """``function(...)``, or None with a note when the metric is undefined here."""
        try:
            return function(*args, **kwargs)
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as err:
            self.notes.append(f"{what}: not computed ({err})")
            return None


class _Predictions:
    """A model's predictions on the test cohort, each computed once."""

    def __init__(self, name: str, model, test: Cohort, horizons: list[float]) -> None:
        self.name, self.model, self.test, self.horizons = name, model, test, horizons
        self.risk_type = getattr(model, "risk_type", "cause_specific")
        self.class_name = type(model).__name__
        self._risks: dict[float, np.ndarray] = {}
        self._score: np.ndarray | None = None

    @property
    def score(self) -> np.ndarray:
        if self._score is None:
            self._score = _finite(self.name, "score", self.model.predict_score(self.test))
        return self._score

    def risk(self, horizon: float) -> np.ndarray | None:
        if horizon not in self._risks:
            risk = self.model.predict_risk(self.test, horizon)
            self._risks[horizon] = _finite(self.name, f"{horizon:g}-year risk", risk)
        return self._risks[horizon]

    @property
    def has_survival(self) -> bool:
        return callable(getattr(self.model, "predict_survival", None))

    def survival(self, times: np.ndarray, rows: pd.Index | None = None) -> np.ndarray:
        data = self.test if rows is None else self.test._with_rows(rows)
        return np.asarray(self.model.predict_survival(data, times), dtype=np.float64)


class _OraclePredictions:
    """The simulator's truth scored like a model: true log hazard and true absolute risks."""

    risk_type = "absolute"
    class_name = "simulator truth"
    has_survival = False

    def __init__(self, truth: pd.DataFrame, horizons: list[float]) -> None:
        self.truth = truth
        self.score = truth["true_log_hazard"].to_numpy(np.float64)

    def risk(self, horizon: float) -> np.ndarray | None:
        column = f"risk_{horizon:g}y"
        return self.truth[column].to_numpy(np.float64) if column in self.truth else None


def _finite(name: str, what: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise ValueError(
            f"model {name!r} returned a non-finite {what} for {len(bad)} patient(s), first "
            f"at row {int(bad[0])}: the evaluation needs a finite prediction for everyone"
        )
    return array


def _check_horizons(horizons: Sequence[float], last: float, notes: list[str]) -> list[float]:
    values = sorted({float(h) for h in horizons})
    if not values or any(not math.isfinite(h) or h <= 0 for h in values):
        raise ValueError(f"horizons must be positive numbers of years, got {list(horizons)!r}")
    kept = [h for h in values if h < last]
    for h in values:
        if h >= last:
            notes.append(
                f"horizon {h:g} years: left out, beyond the test follow-up ({last:.2f} years)"
            )
    if not kept:
        raise ValueError(
            f"every horizon ({', '.join(f'{h:g}' for h in values)} years) is at or beyond "
            f"the last test follow-up ({last:.2f} years): choose shorter horizons"
        )
    return kept


def _discrimination(ctx: _Context, name: str, scorer, auc_rows: list) -> dict:
    t, e, score = ctx.time, ctx.event, scorer.score
    row: dict = {"model": name}
    for key, metric, kwargs in (
        ("harrell", harrell_c, {}),
        ("uno", uno_c, {"tau": ctx.tau, **ctx.censoring}),
    ):
        result = ctx.attempt(
            f"{name}: {key} C",
            bootstrap,
            metric,
            t,
            e,
            score,
            n=ctx.n_boot,
            seed=ctx.seed,
            **kwargs,
        )
        row[key] = result.estimate if result else np.nan
        row[f"{key}_lower"] = result.lower if result else np.nan
        row[f"{key}_upper"] = result.upper if result else np.nan
    if ctx.auc_times is None:
        grid = np.arange(1.0, math.floor(ctx.tau) + 1.0)
    else:
        grid = np.asarray(sorted({float(x) for x in ctx.auc_times}), dtype=np.float64)
    inside = (grid > t.min()) & (grid < t.max())
    grid = grid[inside]
    found = (
        ctx.attempt(f"{name}: td-AUC", cumulative_dynamic_auc, t, e, score, grid, **ctx.censoring)
        if len(grid)
        else None
    )
    row["mean_auc"] = float(found[1]) if found else np.nan
    row["mean_auc_lower"] = row["mean_auc_upper"] = np.nan
    if found:
        auc_rows += [(name, float(x), float(a)) for x, a in zip(grid, found[0], strict=True)]
        interval = ctx.attempt(
            f"{name}: td-AUC interval",
            bootstrap,
            _mean_auc,
            t,
            e,
            score,
            n=ctx.n_boot,
            seed=ctx.seed,
            times=grid,
            **ctx.censoring,
        )
        if interval is not None:
            row["mean_auc_lower"], row["mean_auc_upper"] = interval.lower, interval.upper
    row["ibs"] = np.nan
    if scorer.has_survival:
        times = np.linspace(max(ctx.tau / 40, float(t.min())), ctx.tau, 40)
        ibs = ctx.attempt(
            f"{name}: IBS",
            integrated_brier_score,
            t,
            e,
            scorer.survival(times),
            times,
            **ctx.censoring,
        )
        row["ibs"] = np.nan if ibs is None else float(ibs)
    return row


def _calibration(ctx, name, scorer, horizon, summary, groups, curves) -> None:
    risk = scorer.risk(horizon)
    if risk is None:
        ctx.notes.append(f"{name}: no {horizon:g}-year risk, calibration not computed")
        return
    result = ctx.attempt(
        f"{name}: calibration at {horizon:g} years", calibration, ctx.time, ctx.event, risk, horizon
    )
    if result is None:
        return
    summary.append(
        {
            "model": name,
            "horizon": horizon,
            "observed": result.observed,
            "expected": result.expected,
            "oe": result.observed_expected,
            "intercept": result.intercept,
            "slope": result.slope,
            "ici": result.ici,
            "e90": result.e90,
            "competing": result.competing,
        }
    )
    for row in result.table.to_dict(orient="records"):
        groups.append({"model": name, "horizon": horizon, **row})
    curve = result.curve
    take = np.unique(np.linspace(0, len(curve) - 1, min(len(curve), 200)).astype(int))
    for p, o in curve.iloc[take][["predicted", "observed"]].itertuples(index=False):
        curves.append({"model": name, "horizon": horizon, "predicted": p, "observed": o})


def _decision(ctx, name, scorer, horizon, rows) -> None:
    risk = scorer.risk(horizon)
    if risk is None:
        return
    thresholds = np.linspace(0.01, 0.5, 50)
    curve = ctx.attempt(
        f"{name}: decision curve at {horizon:g} years",
        net_benefit,
        ctx.time,
        ctx.event,
        risk,
        horizon,
        thresholds,
    )
    if curve is None:
        return
    have_all = any(r["horizon"] == horizon and r["model"] == "treat all" for r in rows)
    for c in curve.itertuples(index=False):
        rows.append(
            {"horizon": horizon, "threshold": c.threshold, "model": name, "net_benefit": c.model}
        )
        if not have_all:
            rows.append(
                {
                    "horizon": horizon,
                    "threshold": c.threshold,
                    "model": "treat all",
                    "net_benefit": c.treat_all,
                }
            )


def _comparisons(ctx: _Context, scorers: dict, pairs: list) -> tuple[list, list]:
    comparisons, reclassification = [], []
    for name, reference in pairs:
        ref, scorer = scorers[reference], scorers[name]
        for metric_name, metric, kwargs in (
            ("Harrell C", harrell_c, {}),
            ("Uno C", uno_c, {"tau": ctx.tau, **ctx.censoring}),
        ):
            result = ctx.attempt(
                f"{name} vs {reference}: {metric_name}",
                compare,
                metric,
                ctx.time,
                ctx.event,
                ref.score,
                scorer.score,
                n=ctx.n_boot,
                seed=ctx.seed,
                **kwargs,
            )
            if result is not None:
                comparisons.append(
                    {
                        "model": name,
                        "reference": reference,
                        "metric": metric_name,
                        "difference": result.difference,
                        "lower": result.lower,
                        "upper": result.upper,
                        "p_value": result.p_value,
                    }
                )
        for horizon in ctx.horizons:
            old, new = ref.risk(horizon), scorer.risk(horizon)
            if old is None or new is None:
                continue
            point = ctx.attempt(
                f"{name} vs {reference}: NRI at {horizon:g} years",
                nri,
                ctx.time,
                ctx.event,
                old,
                new,
                horizon,
            )
            if point is None:
                continue
            interval = ctx.attempt(
                f"{name} vs {reference}: NRI interval at {horizon:g} years",
                bootstrap,
                _nri_total,
                ctx.time,
                ctx.event,
                old,
                new,
                n=ctx.n_boot,
                seed=ctx.seed,
                horizon=horizon,
            )
            reclassification.append(
                {
                    "model": name,
                    "reference": reference,
                    "horizon": horizon,
                    "events": point.events,
                    "nonevents": point.nonevents,
                    "total": point.total,
                    "lower": interval.lower if interval else np.nan,
                    "upper": interval.upper if interval else np.nan,
                }
            )
    return comparisons, reclassification


def _mean_auc(time, event, score, *, times, **censoring) -> float:
    """The mean td-AUC over ``times`` (one bootstrap replicate's statistic)."""
    return float(cumulative_dynamic_auc(time, event, score, times, **censoring)[1])


def _nri_total(time, event, old, new, *, horizon: float) -> float:
    return nri(time, event, old, new, horizon).total


def _subgroup_masks(test: Cohort) -> list[tuple[str, str, np.ndarray]]:
    masks = []
    df = test.df
    if "sex" in df:
        for level in sorted(df["sex"].dropna().astype(str).unique()):
            masks.append(("sex", level, (df["sex"].astype(str) == level).to_numpy()))
    if "age" in df:
        age = pd.to_numeric(df["age"], errors="coerce").to_numpy(np.float64)
        for low, high, label in _AGE_BANDS:
            masks.append(("age", label, (age >= low) & (age < high)))
        masks.append(("age", ">= 85", age >= 85.0))
    return masks


def _subgroups(ctx: _Context, test: Cohort, scorers: dict) -> list[dict]:
    rows = []
    for subgroup, level, mask in _subgroup_masks(test):
        n, fractures = int(mask.sum()), int((ctx.event[mask] == 1).sum())
        if fractures < _MIN_SUBGROUP_EVENTS:
            ctx.notes.append(
                f"subgroup {subgroup} {level}: {fractures} fractures among {n} patients, "
                f"fewer than {_MIN_SUBGROUP_EVENTS}; C not computed"
            )
            continue
        for name, scorer in scorers.items():
            result = ctx.attempt(
                f"subgroup {subgroup} {level}, {name}",
                bootstrap,
                harrell_c,
                ctx.time[mask],
                ctx.event[mask],
                scorer.score[mask],
                n=ctx.n_boot,
                seed=ctx.seed,
            )
            if result is not None:
                rows.append(
                    {
                        "subgroup": subgroup,
                        "level": level,
                        "n": n,
                        "fractures": fractures,
                        "model": name,
                        "harrell": result.estimate,
                        "lower": result.lower,
                        "upper": result.upper,
                    }
                )
    return rows


def _curves(ctx: _Context, test: Cohort, scorers: dict, reference: str):
    """KM by risk quartile, example per-patient curves, and the truth at those patients."""
    first = ctx.horizons[0]
    grid = np.linspace(0.0, ctx.tau, 61)
    km_rows = []
    for name, scorer in scorers.items():
        risk = scorer.risk(first)
        if risk is None:
            continue
        quartile = pd.qcut(pd.Series(risk).rank(method="first"), 4, labels=False).to_numpy()
        for q in range(4):
            member = quartile == q
            _, surv = kaplan_meier(ctx.time[member], ctx.event[member], times=grid)
            km_rows += [
                {"model": name, "quartile": q + 1, "time": x, "survival": s}
                for x, s in zip(grid, surv, strict=True)
            ]
    ranked = np.argsort(scorers[reference].risk(first), kind="stable")
    centiles = np.linspace(0.05, 0.95, _N_EXAMPLES) * (len(ranked) - 1)
    positions = np.unique(ranked[np.round(centiles).astype(int)])
    rows = test.df.index[positions]
    labels = [str(i) for i in np.asarray(test.ids)[positions]]
    curve_rows = []
    for name, scorer in scorers.items():
        if not scorer.has_survival:
            continue
        surv = scorer.survival(grid, rows)
        for patient, values in zip(labels, surv, strict=True):
            curve_rows += [
                {"model": name, "patient": patient, "time": x, "survival": s}
                for x, s in zip(grid, values, strict=True)
            ]
    truth_rows = []
    if test.truth is not None:
        risk_columns = [c for c in test.truth.columns if c.startswith("risk_") and c[-1] == "y"]
        for row, patient in zip(rows, labels, strict=True):
            for column in risk_columns:
                truth_rows.append(
                    {
                        "patient": patient,
                        "time": float(column[5:-1]),
                        "survival": 1.0 - float(test.truth.loc[row, column]),
                    }
                )
    return (
        pd.DataFrame(km_rows, columns=["model", "quartile", "time", "survival"]),
        pd.DataFrame(curve_rows, columns=["model", "patient", "time", "survival"]),
        pd.DataFrame(truth_rows, columns=["patient", "time", "survival"]),
    )


def _info(test, horizons, n_boot, seed, reference, train, context) -> dict:
    counts = np.bincount(test.event, minlength=3)
    versions = package_versions()
    return {
        "n": len(test),
        "fractures": int(counts[1]),
        "deaths": int(counts[2]),
        "censored": int(counts[0]),
        "median_follow_up": float(np.median(test.time)),
        "max_follow_up": float(test.time.max()),
        "horizons": horizons,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "reference": reference,
        "censoring": "training cohort (reverse Kaplan-Meier)"
        if train is not None
        else "test cohort (reverse Kaplan-Meier)",
        "simulated": test.truth is not None,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "versions": versions,
        "context": dict(context or {}),
    }


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="evaluating", unit="step", leave=False)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text[:60])

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------- formatting
def _fmt(value, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _with_ci(estimate, lower, upper, *, signed: bool = False) -> str:
    if estimate is None or not np.isfinite(estimate):
        return "n/a"
    sign = "+" if signed else ""
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return f"{estimate:{sign}.3f}"
    return f"{estimate:{sign}.3f} ({lower:{sign}.3f} to {upper:{sign}.3f})"


def _verdict(lower: float, upper: float) -> str:
    if not (np.isfinite(lower) and np.isfinite(upper)):
        return "n/a"
    if lower > 0:
        return "better"
    if upper < 0:
        return "worse"
    return "no significant difference"


def _cell(value) -> str:
    if isinstance(value, float) and not np.isfinite(value):
        return "n/a"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (missing values read "n/a")."""
    if df.empty:
        return "(none)"
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(map(_cell, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
