r"""Absolute risk with death competing: every DeepSurv head on one simulated cohort, in one run.

On the simulator's kim2024 preset (a hip-fracture population: about a third die during
follow-up) it fits, on the same training patients and with the same network settings,

* ``deepsurv``: DeepSurv's Cox head, death censored: a **cause-specific** risk;
* ``cause_specific``: a fracture and a death Cox head on one trunk, combined into the
  cumulative incidence (absolute risk);
* ``deephit``, ``pmf``, ``logistic_hazard``: the discrete-time heads (pycox's losses);
* ``frax_refit``: the FRAX-style refit with BMD, the classical cause-specific Cox pair
  (absolute risk), as the reference a clinician knows;

and reports on the held-out patients, at the horizon (5 years by default):

* ``fit_s``: fit seconds, on this machine, in this run;
* ``wolbers_c``: Wolbers' competing-risks C of the horizon risk (95% bootstrap CI), and
  its paired difference from the cause-specific pair;
* ``harrell_c``: Harrell's C of the model's fracture score with death censored;
* ``auc_2``: Blanche's time-dependent AUC at the horizon, competing deaths as controls
  (definition 2);
* ``o_e``: observed (Aalen-Johansen) over mean predicted risk at the horizon, and the
  calibration ``slope`` (:func:`fracrisk.metrics.calibration`), each with a bootstrap CI;
* ``brier``: the IPCW Brier score of the horizon risk as a cumulative incidence;
* ``mae_truth``: the mean absolute difference from the simulator's true absolute risk
  (``risk_5y``, death competing; it includes a falls propensity no input shows, so no
  model reaches 0).

A last row scores the simulator's true absolute risk the same way (its Harrell C is of
the true log hazard): what sampling alone does to O/E and slope on these patients.

The Cox head's risk is cause-specific; it is scored against the absolute outcome on
purpose, to show by how much it overestimates where death is common.

Every setting is fixed before the run. The discrete heads' defaults (proportional logits
started at the life-table hazards, 20 intervals) were chosen on a development simulation
(kim2024, seed 101), never on this script's test patients.

Usage::

    python benchmarks/competing_risks.py                 # 5,000 train / 5,000 test
    python benchmarks/competing_risks.py --n 2000 --bootstrap 50   # a quick look
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pandas as pd
import torch

from fracrisk import DeepSurv
from fracrisk.metrics import (
    bootstrap,
    calibration,
    compare,
    competing_risks_auc,
    cumulative_incidence_brier_score,
    harrell_c,
    wolbers_c,
)
from fracrisk.models import create_model
from fracrisk.nonparametric import observed_risk
from fracrisk.simulate import cohort as simulate_cohort

#: The DeepSurv heads compared, in table order.
HEADS = ("deepsurv", "cause_specific", "deephit", "pmf", "logistic_hazard")
#: The network every head shares (DeepSurv's defaults, spelt out).
NETWORK = {"hidden": (32, 32), "dropout": 0.1, "seed": 0, "accelerator": "auto"}


def _observed_over_expected(time, event, risk, *, horizon):
    return observed_risk(time, event, horizon) / float(np.mean(risk))


def _slope(time, event, risk, *, horizon):
    return calibration(time, event, risk, horizon).slope


def _wolbers_at(time, event, risk):
    return wolbers_c(time, event, risk)


def _covariates(train) -> list[str]:
    """The default covariates without those constant in training (prior_fracture, here)."""
    return [c for c in train.default_covariates if train.df[c].nunique() > 1]


def fit_models(train, heads=HEADS, *, reference: bool = True) -> dict:
    """Fit each head (and the FRAX-style refit); returns name -> (model, fit seconds)."""
    fitted = {}
    covariates = _covariates(train)
    for head in heads:
        start = time.perf_counter()
        model = DeepSurv(head=head, **NETWORK).fit(train, covariates)
        fitted[head] = (model, time.perf_counter() - start)
        print(f"  fitted {head} in {fitted[head][1]:.1f} s", flush=True)
    if reference:
        start = time.perf_counter()
        model = create_model("frax_refit").fit(train)
        fitted["frax_refit"] = (model, time.perf_counter() - start)
        print(f"  fitted frax_refit in {fitted['frax_refit'][1]:.1f} s", flush=True)
    return fitted


def _metrics(t, e, risk, score, truth, *, horizon: float, n_boot: int) -> dict:
    """The module notes' metrics of one horizon risk and one ranking score."""
    wc = bootstrap(_wolbers_at, t, e, risk, n=n_boot, seed=0)
    oe = bootstrap(_observed_over_expected, t, e, risk, n=n_boot, seed=0, horizon=horizon)
    slope = bootstrap(_slope, t, e, risk, n=n_boot, seed=0, horizon=horizon)
    return {
        "wolbers_c": wc.estimate,
        "wolbers_lo": wc.lower,
        "wolbers_hi": wc.upper,
        "harrell_c": harrell_c(t, e, score),
        "auc_2": float(competing_risks_auc(t, e, risk, [horizon], definition=2)[0]),
        "o_e": oe.estimate,
        "o_e_lo": oe.lower,
        "o_e_hi": oe.upper,
        "slope": slope.estimate,
        "slope_lo": slope.lower,
        "slope_hi": slope.upper,
        "brier": float(cumulative_incidence_brier_score(t, e, risk[:, None], [horizon])[0]),
        "mae_truth": float(np.mean(np.abs(risk - truth))) if truth is not None else np.nan,
        "mean_risk": float(np.mean(risk)),
    }


def evaluate(fitted: dict, test, *, horizon: float, n_boot: int) -> pd.DataFrame:
    """One row per model: the metrics of the module notes."""
    t, e = test.time, test.event
    truth = test.truth[f"risk_{horizon:g}y"].to_numpy() if test.truth is not None else None
    pair_risk = None
    if "cause_specific" in fitted:
        pair_risk = fitted["cause_specific"][0].predict_risk(test, horizon).to_numpy()
    rows = []
    for name, (model, seconds) in fitted.items():
        risk = model.predict_risk(test, horizon).to_numpy()
        score = model.predict_score(test)
        row = {"model": name, "risk_type": model.risk_type, "fit_s": seconds}
        row.update(_metrics(t, e, risk, score, truth, horizon=horizon, n_boot=n_boot))
        if pair_risk is not None and name != "cause_specific":
            d = compare(wolbers_c, t, e, pair_risk, risk, n=n_boot, seed=0)
            row.update(d_wolbers=d.difference, d_lo=d.lower, d_hi=d.upper)
        rows.append(row)
    if truth is not None:  # the metric's own check: the true risk should be calibrated
        score = test.truth["true_log_hazard"].to_numpy()
        row = {"model": "truth (oracle)", "risk_type": "absolute", "fit_s": np.nan}
        row.update(_metrics(t, e, truth, score, truth, horizon=horizon, n_boot=n_boot))
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def format_table(table: pd.DataFrame, *, horizon: float) -> str:
    """The table as markdown, CIs in brackets."""
    lines = [
        f"| model | risk type | fit s | Wolbers C ({horizon:g}-y risk) | dC vs pair | Harrell C "
        f"| AUC_2({horizon:g}) | O/E ({horizon:g} y) | slope | Brier | MAE vs truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in table.iterrows():
        d = (
            f"{r['d_wolbers']:+.3f} ({r['d_lo']:+.3f} to {r['d_hi']:+.3f})"
            if "d_wolbers" in r and pd.notna(r.get("d_wolbers"))
            else "—"
        )
        lines.append(
            f"| {name} | {r['risk_type']} | {r['fit_s']:.1f} | {r['wolbers_c']:.3f} "
            f"({r['wolbers_lo']:.3f}-{r['wolbers_hi']:.3f}) | {d} | {r['harrell_c']:.3f} | "
            f"{r['auc_2']:.3f} | {r['o_e']:.3f} ({r['o_e_lo']:.3f}-{r['o_e_hi']:.3f}) | "
            f"{r['slope']:.3f} ({r['slope_lo']:.2f}-{r['slope_hi']:.2f}) | {r['brier']:.4f} | "
            f"{r['mae_truth']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python benchmarks/competing_risks.py --n 2000 --bootstrap 50",
    )
    parser.add_argument("--n", type=int, default=10_000, help="patients, half for testing")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument("--horizon", type=float, default=5.0, help="years (default 5)")
    parser.add_argument("--bootstrap", type=int, default=200, help="resamples for the CIs")
    parser.add_argument(
        "--heads", nargs="+", choices=HEADS, default=list(HEADS), help="heads to compare"
    )
    args = parser.parse_args(argv)
    if args.n < 200:
        parser.error("--n must be at least 200")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, CUDA {'yes' if torch.cuda.is_available() else 'no'}; "
        f"torch {torch.__version__}"
    )
    data = simulate_cohort(args.n, preset="kim2024", seed=args.seed)
    train, test = data.split(0.5, seed=0)
    deaths = float(np.mean(data.event == 2))
    print(
        f"kim2024, seed {args.seed}: {len(train)} train / {len(test)} test; "
        f"{int((train.event == 1).sum())} fractures and {int((train.event == 2).sum())} deaths "
        f"in training ({deaths:.0%} of all patients die)"
    )
    start = time.perf_counter()
    fitted = fit_models(train, args.heads)
    table = evaluate(fitted, test, horizon=args.horizon, n_boot=args.bootstrap)
    print(format_table(table, horizon=args.horizon))
    print(f"total {time.perf_counter() - start:.0f} s")
    return table


if __name__ == "__main__":
    main()
