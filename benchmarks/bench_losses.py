"""Forward + backward time of the Cox partial likelihood on CPU, float32, many ties.

Compares ``fracrisk.losses.cox_partial_likelihood`` (Efron, exact risk sets) with
``pycox.models.loss.cox_ph_loss`` (ignores ties: each patient's risk set is a prefix of the
sorted order) and torchsurv's Efron ``neg_partial_log_likelihood``, in one run on the same
data. Follow-up is drawn in whole days over 10 years (so roughly n / 3650 patients share
each time) with 30% events, and converted to years. Each cell is the best (minimum) of
``--repeats`` timed runs after one warm-up run, with the repeats interleaved across
the three libraries.

Usage::

    python benchmarks/bench_losses.py --sizes 10000 100000 1000000 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import warnings

import torch

with warnings.catch_warnings():  # torchsurv's import emits a torch.jit FutureWarning
    warnings.simplefilter("ignore")
    from pycox.models.loss import cox_ph_loss
    from torchsurv.loss.cox import neg_partial_log_likelihood

from fracrisk.losses import cox_partial_likelihood

DAYS = 3650
DAYS_PER_YEAR = 365.25
EVENT_RATE = 0.3


def make_data(n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    log_h = torch.randn(n, generator=gen, dtype=torch.float32)
    days = torch.randint(1, DAYS + 1, (n,), generator=gen)
    time_years = days.to(torch.float32) / DAYS_PER_YEAR
    event = torch.rand(n, generator=gen) < EVENT_RATE
    return log_h, time_years, event


def loss_fracrisk(log_h, time_years, event):
    return cox_partial_likelihood(log_h, time_years, event, ties="efron", reduction="mean")


def loss_pycox(log_h, time_years, event):
    return cox_ph_loss(log_h, time_years, event.to(torch.float32))


def loss_torchsurv(log_h, time_years, event):
    return neg_partial_log_likelihood(
        log_h, event, time_years, ties_method="efron", reduction="mean"
    )


LOSSES = {"fracrisk": loss_fracrisk, "pycox": loss_pycox, "torchsurv": loss_torchsurv}


def run_once(loss_fn, log_h, time_years, event) -> float:
    """Wall time in seconds of one forward + backward."""
    leaf = log_h.detach().clone().requires_grad_(True)
    gc.collect()
    start = time.perf_counter()
    loss = loss_fn(leaf, time_years, event)
    loss.backward()
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss) or leaf.grad is None:
        raise RuntimeError(f"{loss_fn.__name__} gave loss {loss.item()} or no gradient")
    return elapsed


def time_all(log_h, time_years, event, repeats: int) -> dict[str, float]:
    """Best (minimum) wall time in ms per library, after one warm-up run each.

    The repeats are interleaved across libraries (round robin), so that a burst of load
    from other processes does not favour one library.
    """
    for fn in LOSSES.values():
        run_once(fn, log_h, time_years, event)  # warm-up
    best = dict.fromkeys(LOSSES, float("inf"))
    for _ in range(repeats):
        for name, fn in LOSSES.items():
            best[name] = min(best[name], run_once(fn, log_h, time_years, event))
    return {name: seconds * 1e3 for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="numbers of patients n",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timed runs per cell (after one warm-up); the minimum is reported",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Ties in `time` detected")

    time_all(*make_data(1000), repeats=1)  # first-call overheads (lazy init, allocator)
    rows = []
    for n in args.sizes:
        log_h, time_years, event = make_data(n)
        rows.append((n, time_all(log_h, time_years, event, args.repeats)))

    gpu = "no GPU" if not torch.cuda.is_available() else f"GPU {torch.cuda.get_device_name(0)}"
    print(
        f"Cox loss forward+backward, CPU float32, Efron ties for fracrisk and torchsurv "
        f"(pycox ignores ties); times in days over {DAYS // 365} years, "
        f"{EVENT_RATE:.0%} events; best of {args.repeats} after 1 warm-up."
    )
    print()
    print("| n | fracrisk ms | pycox ms | torchsurv ms | fracrisk/pycox | torchsurv/fracrisk |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, ms in rows:
        print(
            f"| {n:,} | {ms['fracrisk']:.2f} | {ms['pycox']:.2f} | {ms['torchsurv']:.2f} "
            f"| {ms['fracrisk'] / ms['pycox']:.2f} | {ms['torchsurv'] / ms['fracrisk']:.2f} |"
        )
    print()
    print(
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"torch.set_num_threads({args.threads}), torch {torch.__version__}, {gpu}."
    )


if __name__ == "__main__":
    main()
