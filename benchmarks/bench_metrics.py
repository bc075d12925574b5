"""Wall-clock time of fracrisk's discrimination metrics against scikit-survival and lifelines.

Times, in one run on the same data:

(a) Harrell's C: ``fracrisk.metrics.harrell_c`` vs lifelines ``concordance_index`` and
    scikit-survival ``concordance_index_censored`` (the latter only up to n = 1e5: it
    compares each event with every later patient, O(n^2));
(b) Uno's C with tau: ``uno_c`` vs scikit-survival ``concordance_index_ipcw`` (n <= 1e5);
(c) cumulative/dynamic AUC at 100 times: ``cumulative_dynamic_auc`` vs scikit-survival's,
    which runs at the largest AUC size only if its time at 1e4 extrapolates to under
    ``--peer-budget`` seconds (else at 1e4);
(d) a percentile bootstrap of Uno's C: ``fracrisk.metrics.bootstrap`` (resamples as
    frequency weights over data sorted once) against ``--bootstrap-reps`` resamples of the
    patient indices with one ``uno_c`` call each, written out here as a user would.

Data: follow-up drawn in whole days over 10 years (converted to years: day / 365.25), 30%
events, and a risk score ~ N(0, 1) correlated (-0.5) with the follow-up time. Patients
followed to the last day are given the event, so the censoring survival G stays > 0
through follow-up (scikit-survival's AUC computes 1/G(T_i) for every event, even after the
last requested time, and raises where G = 0). Uno's tau and the AUC times lie inside
follow-up (tau = 9 years, times from 0.5 to 9.5 years).

Each cell is the best of ``--repeats`` runs after a warm-up call (numba compilation);
runs longer than 5 s are not repeated. The last column checks that both libraries computed
the same number.

Usage::

    python benchmarks/bench_metrics.py
    python benchmarks/bench_metrics.py --sizes 10000 100000 --auc-sizes 100000 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifelines
    import sksurv
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.metrics import cumulative_dynamic_auc as sksurv_auc
    from sksurv.util import Surv

from fracrisk.metrics import bootstrap, cumulative_dynamic_auc, harrell_c, uno_c

DAYS = 3650
DAYS_PER_YEAR = 365.25
EVENT_RATE = 0.3
TAU = 9.0  # years
REPEAT_BELOW_S = 5.0


def make_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    days = rng.integers(1, DAYS + 1, n)
    event = (rng.random(n) < EVENT_RATE).astype(np.int64)
    event[days == DAYS] = 1  # keeps G > 0 through follow-up (see the module docstring)
    time_years = days / DAYS_PER_YEAR
    z_time = (time_years - time_years.mean()) / time_years.std()
    risk = -0.5 * z_time + np.sqrt(1 - 0.5**2) * rng.standard_normal(n)
    return time_years, event, risk


def timed(repeats: int, fn, *args, **kwargs):
    """(best seconds, result) of ``fn(*args, **kwargs)`` over up to ``repeats`` runs; slow
    runs are not repeated."""
    best, result = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        if elapsed > REPEAT_BELOW_S:
            break
    return best, result


def machine_line() -> str:
    try:
        import torch

        gpu = "CUDA GPU available (unused)" if torch.cuda.is_available() else "no GPU"
    except ImportError:  # pragma: no cover
        gpu = "no GPU"
    return (
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), {platform.platform()}, "
        f"{gpu} (all timings on the CPU); Python {platform.python_version()}, "
        f"numpy {np.__version__}, scikit-survival {sksurv.__version__}, "
        f"lifelines {lifelines.__version__}"
    )


def fmt_n(n: int) -> str:
    return f"{n:,}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="n for Harrell's and Uno's C",
    )
    parser.add_argument("--auc-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--n-times", type=int, default=100, help="AUC evaluation times")
    parser.add_argument(
        "--peer-max-n",
        type=int,
        default=100_000,
        help="largest n for scikit-survival's concordance indices",
    )
    parser.add_argument(
        "--peer-budget",
        type=float,
        default=60.0,
        help="run scikit-survival's AUC at the largest AUC size below 1e6 "
        "only if extrapolated under this many seconds",
    )
    parser.add_argument(
        "--lifelines-budget",
        type=float,
        default=30.0,
        help="run lifelines at n > 1e5 only if extrapolated under this",
    )
    parser.add_argument("--bootstrap-n", type=int, default=100_000)
    parser.add_argument("--bootstrap-reps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(machine_line())
    print(f"Command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print()

    # warm-up: numba compilation / cache load, outside the timings
    t, e, r = make_data(1000, args.seed)
    harrell_c(t, e, r)
    uno_c(t, e, r, tau=TAU)
    cumulative_dynamic_auc(t, e, r, np.linspace(0.5, 9.5, 5))

    rows = []  # (operation, n, ours_s, peer, peer_s, diff)
    ours_time = {}  # (operation, n) -> s
    peer_time = {}  # (operation, n, peer) -> s

    def add(op, n, ours_s, peer=None, peer_s=None, diff=None):
        rows.append((op, n, ours_s, peer, peer_s, diff))
        ours_time[(op, n)] = ours_s
        if peer_s is not None:
            peer_time[(op, n, peer)] = peer_s
        print(
            f"  {op} n={fmt_n(n)}: fracrisk {ours_s:.3f} s"
            + (f", {peer} {peer_s:.3f} s" if peer_s is not None else ""),
            flush=True,
        )

    # (a) Harrell's C
    lifelines_s = {}
    for n in args.sizes:
        t, e, r = make_data(n, args.seed)
        ours_s, ours = timed(args.repeats, harrell_c, t, e, r)
        # lifelines: concordance_index(event_times, predicted_scores, event_observed)
        smaller = [m for m in lifelines_s if m < n]
        estimate = lifelines_s[max(smaller)] * n / max(smaller) * 1.3 if smaller else 0.0
        if n <= 100_000 or estimate < args.lifelines_budget:
            peer_s, value = timed(args.repeats, concordance_index, t, -r, e)
            lifelines_s[n] = peer_s
            add("Harrell C", n, ours_s, "lifelines concordance_index", peer_s, abs(ours - value))
        else:
            add("Harrell C", n, ours_s, f"lifelines (skipped, ~{estimate:.0f} s est.)")
        if n <= args.peer_max_n:
            # scikit-survival: concordance_index_censored(event_indicator, time, estimate)
            peer_s, value = timed(args.repeats, concordance_index_censored, e == 1, t, r)
            add(
                "Harrell C",
                n,
                ours_s,
                "sksurv concordance_index_censored",
                peer_s,
                abs(ours - value[0]),
            )

    # (b) Uno's C
    for n in args.sizes:
        t, e, r = make_data(n, args.seed)
        ours_s, ours = timed(args.repeats, uno_c, t, e, r, tau=TAU)
        if n <= args.peer_max_n:
            y = Surv.from_arrays(e == 1, t)
            # scikit-survival: concordance_index_ipcw(survival_train, survival_test, estimate,
            # tau), train = test as uno_c's default
            peer_s, value = timed(args.repeats, concordance_index_ipcw, y, y, r, tau=TAU)
            add(
                "Uno C (tau 9 y)",
                n,
                ours_s,
                "sksurv concordance_index_ipcw",
                peer_s,
                abs(ours - value[0]),
            )
        else:
            add("Uno C (tau 9 y)", n, ours_s)

    # (c) cumulative/dynamic AUC at n_times times
    times = np.linspace(0.5, 9.5, args.n_times)
    op = f"AUC, {args.n_times} times"
    peer_n = None
    candidates = [n for n in args.auc_sizes if n < 1_000_000]
    if candidates:
        t, e, r = make_data(10_000, args.seed)
        y = Surv.from_arrays(e == 1, t)
        small_s, _ = timed(1, sksurv_auc, y, y, r, times)
        target = max(candidates)
        estimate = small_s * target / 10_000 * 1.3  # n log n, with margin
        peer_n = target if estimate < args.peer_budget else 10_000
        if peer_n != target:
            print(
                f"  sksurv AUC at n={fmt_n(target)} estimated {estimate:.0f} s: "
                "running it at n=10,000 instead"
            )
    for n in sorted(set(args.auc_sizes) | ({peer_n} if peer_n else set())):
        t, e, r = make_data(n, args.seed)
        ours_s, (auc, mean_auc) = timed(args.repeats, cumulative_dynamic_auc, t, e, r, times)
        if n == peer_n:
            y = Surv.from_arrays(e == 1, t)
            # scikit-survival: cumulative_dynamic_auc(survival_train, survival_test, estimate,
            # times) with train = test; 1-D estimate
            peer_s, (peer_auc, peer_mean) = timed(args.repeats, sksurv_auc, y, y, r, times)
            diff = max(np.abs(auc - peer_auc).max(), abs(mean_auc - peer_mean))
            add(op, n, ours_s, "sksurv cumulative_dynamic_auc", peer_s, diff)
        else:
            add(op, n, ours_s)

    # (d) percentile bootstrap of Uno's C: fracrisk.metrics.bootstrap (frequency weights, one
    # sort) against the plain loop that resamples patients and calls uno_c each time
    n = args.bootstrap_n
    t, e, r = make_data(n, args.seed)
    start = time.perf_counter()
    result = bootstrap(uno_c, t, e, r, n=args.bootstrap_reps, seed=args.seed, tau=TAU)
    boot_s = time.perf_counter() - start
    rng = np.random.default_rng(args.seed + 1)
    start = time.perf_counter()
    replicates = np.empty(args.bootstrap_reps)
    for b in range(args.bootstrap_reps):
        idx = rng.integers(0, n, n)
        replicates[b] = uno_c(t[idx], e[idx], r[idx], tau=TAU)
    loop_s = time.perf_counter() - start
    boot_op = f"Uno C bootstrap, {args.bootstrap_reps} reps"
    add(boot_op, n, boot_s, "resample-and-call loop (fracrisk uno_c)", loop_s)
    low, high = np.percentile(replicates, [2.5, 97.5])
    print(
        f"  Uno C = {result.estimate:.4f}; bootstrap() 95% interval [{result.lower:.4f}, "
        f"{result.upper:.4f}]; loop [{low:.4f}, {high:.4f}] (different resamples)"
    )

    print()
    print(
        "Times in seconds, best of "
        f"{args.repeats} (single run when over {REPEAT_BELOW_S:g} s), after a warm-up."
    )
    print()
    print("| operation | n | fracrisk s | peer | peer s | ratio peer/fracrisk | max abs diff |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for op_name, n, ours_s, peer, peer_s, diff in rows:
        ratio = f"{peer_s / ours_s:.1f}" if peer_s is not None else ""
        print(
            f"| {op_name} | {fmt_n(n)} | {ours_s:.3f} | {peer or '-'} | "
            f"{'' if peer_s is None else f'{peer_s:.3f}'} | {ratio} | "
            f"{'' if diff is None else f'{diff:.1e}'} |"
        )
    print()
    near_ties = []
    for m in sorted(set(args.sizes) | set(args.auc_sizes)):
        gaps = np.diff(np.sort(make_data(m, args.seed)[2]))
        near_ties.append(f"{int(np.sum((gaps > 0) & (gaps <= 1e-8)))} at n={fmt_n(m)}")
    print(
        "max abs diff: scikit-survival counts scores within 1e-8 as tied (fracrisk and "
        "lifelines: exact equality), so near-tied scores make the values differ slightly; "
        f"adjacent scores within 1e-8 but not equal: {', '.join(near_ties)}."
    )
    print()

    def verdict(ok):
        return "N/A (not measured)" if ok is None else ("PASS" if ok else "FAIL")

    def speedup(op_name, n, peer):
        if (op_name, n) not in ours_time or (op_name, n, peer) not in peer_time:
            return None
        return peer_time[(op_name, n, peer)] / ours_time[(op_name, n)]

    big, mid = 1_000_000, 100_000
    harrell_big = ours_time.get(("Harrell C", big))
    uno_big = ours_time.get(("Uno C (tau 9 y)", big))
    auc_big = ours_time.get((op, big))
    uno_speedup = speedup("Uno C (tau 9 y)", mid, "sksurv concordance_index_ipcw")
    harrell_speedup = speedup("Harrell C", mid, "lifelines concordance_index")
    targets = [
        (
            "Harrell C at n=1e6 <= 3 s",
            harrell_big,
            None if harrell_big is None else harrell_big <= 3.0,
        ),
        ("Uno C at n=1e6 <= 3 s", uno_big, None if uno_big is None else uno_big <= 3.0),
        (
            "Uno C >= 20x faster than sksurv concordance_index_ipcw at n=1e5",
            uno_speedup,
            None if uno_speedup is None else uno_speedup >= 20,
        ),
        (
            "Harrell C >= 2x faster than lifelines concordance_index at n=1e5",
            harrell_speedup,
            None if harrell_speedup is None else harrell_speedup >= 2,
        ),
        (
            f"AUC at {args.n_times} times, n=1e6 < 10 s",
            auc_big,
            None if auc_big is None else auc_big < 10.0,
        ),
        (
            f"Bootstrap of Uno C ({args.bootstrap_reps} reps, n={fmt_n(n)}) < 60 s",
            boot_s,
            boot_s < 60.0,
        ),
    ]
    for label, value, ok in targets:
        shown = (
            ""
            if value is None
            else (
                f" (measured {value:.1f}x)" if "faster" in label else f" (measured {value:.2f} s)"
            )
        )
        print(f"{verdict(ok)}: {label}{shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
