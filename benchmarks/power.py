r"""Power analysis: the C-index gain a paired bootstrap can detect, by cohort size and events.

The question a study designer asks: *with n test patients, and the E fractures they bring,
how large a gain in Harrell's C from adding a new marker to a reference model can I detect
with 80% power, using a paired bootstrap at alpha 0.05?* This script answers it by repeated
simulation from the ground-truth simulator, with **oracle scores** (no model is fitted).

Design (every setting is fixed below, before any run; nothing is tuned on the results):

* **Patients**: ``fracrisk.simulate.cohort(n, preset=...)`` (default preset ``population``:
  a FRAX-like general population aged 50-90, up to 12 years of follow-up, about 8% with a
  major osteoporotic fracture, about 21% dying first). The simulator's own fracture log
  hazard (``cohort.truth["true_log_hazard"]``, the sum of its named terms: clinical, BMD,
  hidden bone quality, vertebral deformities, hip geometry, falls) is kept as it is.
* **The new marker**: the simulator has no free-standing marker whose strength can be
  chosen (its hidden terms have fixed published gradients), so one is added: ``M ~ N(0, 1)``,
  independent of everything else, drawn per patient. Its effect ``beta`` (log hazard ratio
  per SD, the ``--effects`` grid) is added to the simulator's log hazard,
  ``log h = true_log_hazard + beta * M - beta**2 / 2``. The constant ``-beta**2 / 2`` keeps
  the mean hazard (``E exp(beta M) = exp(beta**2 / 2)``) and so the number of fractures about
  the same at every effect; it changes no ranking.
* **Outcomes**: fracture and death times, staggered entry, administrative censoring and loss
  to follow-up are then redrawn with the simulator's own functions and the preset's own
  settings: :func:`fracrisk.simulate.follow_up` with the Gompertz fracture hazard
  ``exp(log h)`` and slope (0.038 per year in women, 0.030 in men, as in
  :func:`fracrisk.simulate.cohort`), and the simulator's death hazard
  (:func:`fracrisk.simulate.clinical.death_log_hazard` with the preset's ``death_scale``).
  At ``beta = 0`` this is the simulator's outcome model exactly (a test replays the
  simulator's random numbers and gets its times and events bit for bit). Death competes;
  Harrell's C treats it as censoring (the cause-specific index). Within a replicate, every
  effect uses the same patients, marker and random numbers (common random numbers), so
  effects are compared on the same draws; replicates and cohort sizes are independent.
* **Scores (oracle)**: the *reference* score is the sum of the true terms a reference model
  could see (``--reference``, default ``clinical_bmd``: clinical risk factors, age, sex, BMI
  and BMD with their true coefficients, what FRAX with DXA could reach at best); the *new*
  score is ``reference + beta * M``, the true coefficient of the marker. The unseen terms
  (bone quality, deformities, hip geometry, falls) stay in the hazard of both. Because the
  weights are the true ones, the gains here are upper bounds for a fitted model, whose
  estimated marker coefficient is noisy.
* **Test**: :func:`fracrisk.metrics.compare` (``harrell_c``, ``--n-boot`` paired percentile
  resamples, 95% interval) on each replicate; the gain is **detected** when the interval's
  lower bound is above 0 (a two-sided 5% test counted in the direction of a gain, i.e. one
  sided at 2.5%). **Power** is the share of ``--replicates`` replicate cohorts with a
  detection, with a 95% Wilson interval.
* **True gain**: the C-index gain at each effect, the mean over ``--truth-cohorts``
  (default 10) independent cohorts of 50,000 patients (independent of the replicates), with
  a normal 95% interval over those cohorts. One such cohort alone leaves a standard error of
  about 0.0025 at the largest effect, as large as the differences that matter here.
* **Minimal detectable gain**: the true gain at which power reaches 80%, by linear
  interpolation of power between adjacent effects of the grid (likewise the log hazard
  ratio); its interval interpolates the Wilson bounds (the upper bound's crossing gives the
  lower end), an approximate, pointwise inversion that ignores the uncertainty of the true
  gain (a standard error of about 0.001). "> x" when power (or its bound) stays under 80%
  up to the largest effect of the grid.

Limits: oracle scores (no fitting: optimistic, and at ``beta = 0`` the two scores are
identical, so the test can never fire there and the script does not estimate the bootstrap
test's type I error); Harrell's C only (no truncation time; Uno's C or a time-dependent AUC
would differ); one independent, normally distributed marker; one simulator preset and its
censoring pattern; a 200-resample percentile interval adds Monte Carlo noise to each
decision.

Usage::

    python benchmarks/power.py                                   # the defaults below
    python benchmarks/power.py --replicates 50 --sizes 500 2000 --effects 0 0.3

Writes ``power.json`` (settings, machine, every cell) and ``power.md`` (the tables) to
``--out`` atomically, prints the tables and the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fracrisk._io import atomic_path, atomic_write_json
from fracrisk.metrics import compare, harrell_c
from fracrisk.simulate import PRESETS, cohort, follow_up
from fracrisk.simulate.clinical import death_log_hazard
from fracrisk.simulate.truth import MODALITY_TERMS, ceiling_log_hazard

DEFAULT_SIZES = (250, 500, 1000, 2000, 4000)
DEFAULT_EFFECTS = (0.0, 0.1, 0.2, 0.3, 0.5)
DEFAULT_REPLICATES = 300
DEFAULT_N_BOOT = 200
DEFAULT_PRESET = "population"
DEFAULT_REFERENCE = "clinical_bmd"
TRUTH_N = 50_000
DEFAULT_TRUTH_COHORTS = 10
TARGET_POWER = 0.8
_Z95 = 1.959963984540054
# Gompertz slope of the fracture hazard per year of follow-up in fracrisk.simulate.cohort
# (women, men); tests/test_power_bench.py checks the redrawn outcomes against the simulator.
_FRACTURE_SLOPE = {"F": 0.038, "M": 0.030}


# ------------------------------------------------------------------------ simulation
@dataclass
class Draw:
    """One simulated cohort: the two scores and the outcome at each effect."""

    reference: np.ndarray
    marker: np.ndarray
    time: dict[float, np.ndarray]
    fracture: dict[float, np.ndarray]
    death: dict[float, np.ndarray]


def _child_seeds(entropy, k: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(entropy).spawn(k)]


def hazards(sim, preset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The simulator's fracture and death log hazards at entry and their Gompertz slopes.

    Rebuilt from a simulated cohort as :func:`fracrisk.simulate.cohort` builds them; with
    the same random numbers, :func:`outcome` at ``beta = 0`` gives the simulator's own times
    and events bit for bit (``tests/test_power_bench.py``).
    """
    df, truth = sim.df, sim.truth
    female = (df["sex"] == "F").to_numpy()
    slope = np.where(female, _FRACTURE_SLOPE["F"], _FRACTURE_SLOPE["M"])
    patients = df[["sex", "age", "current_smoking", "glucocorticoids"]].reset_index(drop=True)
    patients["z"] = truth["z"].to_numpy()
    log_h_d, b_d = death_log_hazard(patients, PRESETS[preset].death_scale)
    return truth["true_log_hazard"].to_numpy(dtype=np.float64), slope, log_h_d, b_d


def outcome(rng, haz, preset: str, beta: float, marker) -> tuple[np.ndarray, np.ndarray]:
    """Times and events (0 censored, 1 fracture, 2 death) with the marker's effect added."""
    design = PRESETS[preset]
    log_h_f, slope, log_h_d, b_d = haz
    t, event, _ = follow_up(
        rng,
        np.exp(log_h_f + beta * np.asarray(marker) - beta**2 / 2),
        slope,
        np.exp(log_h_d),
        b_d,
        max_follow_up=design.max_follow_up,
        entry_window=design.entry_window,
        loss_rate=design.loss_rate,
    )
    return t, event


def draw(n: int, effects, *, preset: str, reference: str, entropy) -> Draw:
    """Simulate ``n`` patients, add an N(0, 1) marker and redraw outcomes at each effect."""
    patient_seed, marker_seed, outcome_seed = _child_seeds(entropy, 3)
    sim = cohort(n, preset=preset, seed=patient_seed)
    marker = np.random.default_rng(marker_seed).standard_normal(n)
    haz = hazards(sim, preset)
    times, fractures, deaths = {}, {}, {}
    for beta in effects:
        rng = np.random.default_rng(outcome_seed)  # the same random numbers at every effect
        t, event = outcome(rng, haz, preset, beta, marker)
        times[beta], fractures[beta], deaths[beta] = t, event == 1, event == 2
    return Draw(ceiling_log_hazard(sim, reference), marker, times, fractures, deaths)


# ------------------------------------------------------------------------ statistics
def wilson(k: int, m: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / m."""
    if m == 0:
        return (0.0, 1.0)
    p = k / m
    denom = 1 + z**2 / m
    centre = (p + z**2 / (2 * m)) / denom
    half = z * math.sqrt(p * (1 - p) / m + z**2 / (4 * m**2)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exactly 0 and 1 at the ends
    hi = 1.0 if k == m else min(1.0, centre + half)
    return (lo, hi)


def mean_ci(values) -> tuple[float, float, float]:
    """Mean with a normal-approximation 95% interval (mean +- 1.96 SE)."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return mean, mean - _Z95 * se, mean + _Z95 * se


def crossing(x, power, target: float = TARGET_POWER) -> float | None:
    """First x at which the piecewise-linear curve through (x, power) reaches ``target``."""
    for k in range(len(x)):
        if power[k] >= target:
            if k == 0:
                return float(x[0])
            frac = (target - power[k - 1]) / (power[k] - power[k - 1])
            return float(x[k - 1] + frac * (x[k] - x[k - 1]))
    return None


# ------------------------------------------------------------------------ run
def true_gains(effects, *, preset, reference, cohorts, seed, progress) -> list[dict]:
    """Harrell's C of both scores and their difference, over ``cohorts`` of TRUTH_N patients.

    Each number is the mean over the independent cohorts with a normal 95% interval
    (mean +- 1.96 SD / sqrt(cohorts)); the per-cohort values are kept.
    """
    from tqdm.auto import tqdm

    values = {b: {"c_reference": [], "c_new": [], "delta_c": [], "events": [], "deaths": []}
              for b in effects}  # fmt: skip
    for k in tqdm(
        range(cohorts), desc="true gain", unit="cohort", disable=None if progress else True
    ):
        sim = draw(
            TRUTH_N, effects, preset=preset, reference=reference, entropy=[seed, 1, TRUTH_N, k]
        )
        for beta in effects:
            t, fx = sim.time[beta], sim.fracture[beta]
            ref_c = harrell_c(t, fx, sim.reference)
            new_c = harrell_c(t, fx, sim.reference + beta * sim.marker)
            cell = values[beta]
            cell["c_reference"].append(ref_c)
            cell["c_new"].append(new_c)
            cell["delta_c"].append(new_c - ref_c)
            cell["events"].append(int(fx.sum()))
            cell["deaths"].append(int(sim.death[beta].sum()))
    rows = []
    for beta in effects:
        cell = values[beta]
        rows.append(
            {
                "effect": beta,
                "hazard_ratio": math.exp(beta),
                "n": TRUTH_N,
                "cohorts": cohorts,
                "events": list(mean_ci(cell["events"])),
                "deaths": float(np.mean(cell["deaths"])),
                "c_reference": list(mean_ci(cell["c_reference"])),
                "c_new": list(mean_ci(cell["c_new"])),
                "delta_c": list(mean_ci(cell["delta_c"])),
                "delta_c_per_cohort": cell["delta_c"],
            }
        )
    return rows


def run_cells(sizes, effects, *, replicates, preset, reference, n_boot, seed, progress):
    """Every (size, replicate): one draw, one paired bootstrap per effect."""
    from tqdm.auto import tqdm

    raw = {(n, b): {"events": [], "detected": [], "diff": [], "lower": [], "se": []}
           for n in sizes for b in effects}  # fmt: skip
    bar = tqdm(
        total=len(sizes) * replicates,
        desc="replicates",
        unit="cohort",
        disable=None if progress else True,
    )
    with bar:
        for n in sizes:
            bar.set_postfix(n=n)
            for r in range(replicates):
                sim = draw(n, effects, preset=preset, reference=reference, entropy=[seed, 0, n, r])
                (boot_seed,) = _child_seeds([seed, 2, n, r], 1)
                for beta in effects:
                    t, fx = sim.time[beta], sim.fracture[beta]
                    new = sim.reference + beta * sim.marker
                    res = compare(harrell_c, t, fx, sim.reference, new, n=n_boot, seed=boot_seed)
                    cell = raw[(n, beta)]
                    cell["events"].append(int(fx.sum()))
                    cell["detected"].append(bool(res.lower > 0))
                    cell["diff"].append(res.difference)
                    cell["lower"].append(res.lower)
                    cell["se"].append(float(np.std(res.replicates, ddof=1)))
                bar.update()
    cells = []
    for (n, beta), cell in raw.items():
        k = int(sum(cell["detected"]))
        lo, hi = wilson(k, replicates)
        events = mean_ci(cell["events"])
        diff = mean_ci(cell["diff"])
        cells.append(
            {
                "n": n,
                "effect": beta,
                "replicates": replicates,
                "detected": k,
                "power": k / replicates,
                "power_ci": [lo, hi],
                "events_mean": events[0],
                "events_ci": [events[1], events[2]],
                "events_range": [int(min(cell["events"])), int(max(cell["events"]))],
                "delta_c_mean": diff[0],
                "delta_c_mean_ci": [diff[1], diff[2]],
                "delta_c_sd": float(np.std(cell["diff"], ddof=1)) if replicates > 1 else None,
                "bootstrap_se_mean": float(np.mean(cell["se"])),
            }
        )
    return cells


def minimal_detectable(cells, truth, sizes, effects) -> list[dict]:
    """Per size: the true gain (and effect) at 80% power, with an interval from Wilson bounds."""
    order = sorted(effects)
    gain = {row["effect"]: row["delta_c"][0] for row in truth}
    by = {(c["n"], c["effect"]): c for c in cells}
    out = []
    for n in sizes:
        x_gain = [gain[b] for b in order]
        power = [by[(n, b)]["power"] for b in order]
        upper = [by[(n, b)]["power_ci"][1] for b in order]
        lower = [by[(n, b)]["power_ci"][0] for b in order]
        out.append(
            {
                "n": n,
                "delta_c": crossing(x_gain, power),
                "delta_c_ci": [crossing(x_gain, upper), crossing(x_gain, lower)],
                "effect": crossing(order, power),
                "effect_ci": [crossing(order, upper), crossing(order, lower)],
                "largest_delta_c": max(x_gain),
                "largest_effect": max(order),
            }
        )
    return out


# ------------------------------------------------------------------------ report
def machine() -> str:
    """One line describing this machine and the thread settings of this run."""
    memory = "unknown memory"
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    load = "n/a"
    with contextlib.suppress(OSError, AttributeError):
        load = f"{os.getloadavg()[0]:.2f}"
    threads = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}"
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    )
    torch = sys.modules.get("torch")
    torch_part = f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))" if torch else ""
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), {memory}, load average {load} at "
        f"start; {threads}; Python {platform.python_version()}, numpy {np.__version__}"
        + (f", {torch_part}" if torch_part else "")
    )


def _fmt_ci(est, lo, hi, digits=3, sign=False) -> str:
    f = f"{{:+.{digits}f}}" if sign else f"{{:.{digits}f}}"
    return f"{f.format(est)} ({f.format(lo)} to {f.format(hi)})"


def _fmt_bound(value, largest, fmt) -> str:
    return f"> {fmt.format(largest)}" if value is None else fmt.format(value)


def render(result: dict) -> str:
    """The tables of a result, as markdown."""
    s = result["settings"]
    lines = [
        f"Paired bootstrap of Harrell's C (fracture, death censored): {s['n_boot']} resamples, "
        "95% percentile interval, a gain detected when its lower bound is above 0. "
        f"Oracle scores, no model fitting: reference = true `{s['reference']}` terms "
        f"({' + '.join(MODALITY_TERMS[s['reference']])}), new = reference + beta x marker, the "
        f"marker N(0, 1) and independent. Preset `{s['preset']}`; {s['replicates']} replicate "
        f"cohorts per size; seed {s['seed']}.",
        "",
        f"True gain at each effect: mean over {s['truth_cohorts']} independent cohorts of "
        f"{TRUTH_N:,} patients (95% CI: mean +- 1.96 SE over the cohorts):",
        "",
        "| marker log-HR per SD | HR per SD | fractures per cohort | C reference | C new | "
        "true ΔC |",
        "|---:|---:|---:|---|---|---|",
    ]
    for row in result["truth"]:
        lines.append(
            f"| {row['effect']:.2f} | {row['hazard_ratio']:.2f} | "
            f"{_fmt_ci(*row['events'], digits=0)} | "
            f"{_fmt_ci(*row['c_reference'])} | {_fmt_ci(*row['c_new'])} | "
            f"{_fmt_ci(*row['delta_c'], digits=4, sign=True)} |"
        )
    gain = {row["effect"]: row["delta_c"][0] for row in result["truth"]}
    effects = s["effects"]
    head = " | ".join(f"power, log-HR {b:.2f} (ΔC {gain[b]:+.4f})" for b in effects)
    lines += [
        "",
        f"Power (95% Wilson CI over {s['replicates']} replicates) and the minimal detectable "
        f"gain at {TARGET_POWER:.0%} power (interpolated; CI from the Wilson bounds):",
        "",
        f"| test patients | fractures, mean (95% CI) | {head} | MDE ΔC (95% CI) | "
        "MDE log-HR per SD (95% CI) |",
        "|---:|---|" + "---|" * len(effects) + "---|---|",
    ]
    by = {(c["n"], c["effect"]): c for c in result["cells"]}
    for mde in result["mde"]:
        n = mde["n"]
        first = by[(n, effects[0])]
        events = _fmt_ci(first["events_mean"], *first["events_ci"], digits=1)
        powers = " | ".join(
            _fmt_ci(by[(n, b)]["power"], *by[(n, b)]["power_ci"], digits=2) for b in effects
        )
        big_d, big_b = mde["largest_delta_c"], mde["largest_effect"]
        d = _fmt_bound(mde["delta_c"], big_d, "{:.4f}")
        d_ci = " to ".join(_fmt_bound(v, big_d, "{:.4f}") for v in mde["delta_c_ci"])
        b = _fmt_bound(mde["effect"], big_b, "{:.2f}")
        b_ci = " to ".join(_fmt_bound(v, big_b, "{:.2f}") for v in mde["effect_ci"])
        lines.append(f"| {n:,} | {events} | {powers} | {d} ({d_ci}) | {b} ({b_ci}) |")
    lines += [
        "",
        f"Fractures are at log-HR {effects[0]:.2f}; other effects in `power.json`. "
        f"Machine: {result['machine']}. Wall time {result['wall_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--replicates",
        type=int,
        default=DEFAULT_REPLICATES,
        help=f"replicate cohorts per size (default {DEFAULT_REPLICATES})",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=DEFAULT_N_BOOT,
        help=f"paired bootstrap resamples per test (default {DEFAULT_N_BOOT})",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_SIZES),
        help="test-set sizes (default %(default)s)",
    )
    parser.add_argument(
        "--effects",
        type=float,
        nargs="+",
        default=list(DEFAULT_EFFECTS),
        help="marker log hazard ratios per SD (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    parser.add_argument(
        "--truth-cohorts",
        type=int,
        default=DEFAULT_TRUTH_COHORTS,
        help=f"cohorts of {TRUTH_N:,} for the true gain (default {DEFAULT_TRUTH_COHORTS})",
    )
    parser.add_argument(
        "--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="simulator preset"
    )
    parser.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        choices=[m for m in MODALITY_TERMS if m != "oracle"],
        help="true terms in the reference score (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/power"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> dict:
    """Run the power analysis; write power.json and power.md to --out; return the result."""
    args = _parser().parse_args(argv)
    if min(args.replicates, args.n_boot, args.truth_cohorts) < 2:
        raise SystemExit("--replicates, --n-boot and --truth-cohorts must be at least 2")
    if min(args.sizes) < 10:
        raise SystemExit("--sizes must be at least 10 patients")
    torch = sys.modules.get("torch")  # imported by fracrisk; this script needs one thread
    if torch is not None:
        torch.set_num_threads(1)
    start = time.perf_counter()
    sizes = sorted(set(args.sizes))
    effects = sorted(set(args.effects))
    host = machine()
    print(f"machine: {host}", flush=True)
    print(
        f"power analysis: sizes {sizes}, effects {effects}, {args.replicates} replicates, "
        f"{args.n_boot} resamples, preset {args.preset}, reference {args.reference}, "
        f"seed {args.seed}; oracle scores (no model fitting)",
        flush=True,
    )
    common = {"preset": args.preset, "reference": args.reference, "seed": args.seed}
    truth = true_gains(effects, cohorts=args.truth_cohorts, progress=not args.no_progress, **common)
    gains = [row["delta_c"][0] for row in truth]
    if any(b < a for a, b in zip(gains, gains[1:], strict=False)):
        print(f"warning: the true gain does not increase with the effect: {gains}", flush=True)
    cells = run_cells(
        sizes,
        effects,
        replicates=args.replicates,
        n_boot=args.n_boot,
        progress=not args.no_progress,
        **common,
    )
    result = {
        "settings": {
            "sizes": sizes,
            "effects": effects,
            "replicates": args.replicates,
            "n_boot": args.n_boot,
            "truth_n": TRUTH_N,
            "truth_cohorts": args.truth_cohorts,
            "target_power": TARGET_POWER,
            "metric": "harrell_c (fracture; death and loss censored)",
            "test": "fracrisk.metrics.compare, 95% percentile CI, detected = lower > 0",
            "scores": "oracle (true coefficients, no fitting)",
            "command": " ".join(
                ["python", "benchmarks/power.py", *(sys.argv[1:] if argv is None else argv)]
            ),
            **common,
        },
        "machine": host,
        "truth": truth,
        "cells": cells,
        "mde": minimal_detectable(cells, truth, sizes, effects),
    }
    result["wall_s"] = time.perf_counter() - start
    table = render(result)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "power.json", result)
    with atomic_path(args.out / "power.md") as tmp:
        tmp.write_text(table)
    print()
    print(table, flush=True)
    print(f"wrote {args.out / 'power.json'} and {args.out / 'power.md'}")
    print(f"total wall time {result['wall_s']:.1f} s")
    return result


if __name__ == "__main__":
    main()
