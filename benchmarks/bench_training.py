"""Training throughput and memory on this machine (issue 10, section 4).

Five measurements, each printed as a markdown table, then one PASS/FAIL line per
requirement:

1. **Encoder throughput**: forward + Cox loss + backward + AdamW samples/s per timm
   backbone (resnet10t, resnet18, densenet121, efficientnet_b0, convnext_atto) inside
   ``FusionSurvivalNet(create_encoder(name, backbone=...), 3, head="deepsurv")``, for the
   multi-view DRR encoder at the default DRR size of ``ImageCohortDataset(kind="drr")``
   (3 x 224 x 224) and the vertebral patch encoder at the default patch size (5 x 64 x 64).
   Small batch (``--batch-size``, 8), median of ``--steps`` timed steps after warm-up.
2. **Data wait**: ``ImageSurvivalModel("multiview_drr")`` trained by the Lightning engine
   (default workers, default batch size, default DRR size, default augmentation) on a
   simulated hip-CT cohort whose DRRs were cached beforehand. A Lightning callback passed
   through ``model.fit(cohort, callbacks=[...])`` times ``on_train_batch_end`` -> next
   ``on_train_batch_start`` (the wait for the next batch, including the epoch's first
   fetch) against the whole epoch (``on_train_epoch_start`` -> ``on_train_epoch_end``),
   over the epochs after the first. Requirement: < 10%.
3. **Lightning overhead**: ``fracrisk.training.fit_cox_network`` against a bare PyTorch
   loop on the same network (same seed), the same batches
   (``EventStratifiedBatchSampler``, reseeded per epoch as the engine does), the same loss
   (``global_cox_loss``) and optimiser (AdamW), the same number of steps. Per-step time is
   measured from the start of the first step after the first epoch to the end of the last
   step, so Trainer start-up (reported separately) is excluded. Alternating repeats, the
   median of each. Requirement: ratio <= 1.05.
4. **Peak RSS** of the default DRR model (what ``ImageSurvivalModel("multiview_drr")``
   builds with its defaults: resnet10t branches, one per view, 224 x 224 DRRs) doing
   forward + backward + AdamW at batch 32, in a fresh subprocess started first, while this
   process is small. The figure is the child's ``VmHWM`` (``/proc/self/status``, reset at
   exec); ``getrusage(RUSAGE_SELF).ru_maxrss`` is printed beside it (Linux carries it over
   from the parent across fork + exec). Requirement: < 8 GiB.
5. **GPU** (only when ``torch.cuda.is_available()``): images/s per backbone in float32
   and with bf16 autocast + channels_last, and peak GPU memory.

Nothing is downloaded: every backbone is randomly initialised.

Usage::

    python benchmarks/bench_training.py [--steps 3] [--batch-size 8] [--repeats 5] [--out FILE]
    python benchmarks/bench_training.py --quick      # a smoke run with tiny sizes (< 1 min)

Run it on an otherwise idle machine: on 2 cores another busy process slows every
intra-op parallel kernel and makes the ratios noisy. The default configuration takes
about 7 minutes on an idle 2-core CPU (batch 8 and 3 timed steps per backbone keep
the 224 px DRR encoders, densenet121 the slowest at about 7 s a step, within that).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

BACKBONES = ("resnet10t", "resnet18", "densenet121", "efficientnet_b0", "convnext_atto")
# Default sizes of ImageCohortDataset (src/fracrisk/data/image_dataset.py, _DEFAULT_SIZES):
# checked against a prepared dataset in the data-wait section.
DRR_SIZE = (224, 224)
SECTIONS = ("rss", "encoders", "wait", "overhead", "gpu")
PATCH_SIZE = (64, 64)
N_COVARIATES = 3
DATA_WAIT_LIMIT = 0.10
OVERHEAD_LIMIT = 1.05
RSS_LIMIT_GIB = 8.0

_LINES: list[str] = []


def emit(text: str = "") -> None:
    """Print and keep for ``--out``."""
    print(text, flush=True)
    _LINES.append(text)


def table(header: list[str], rows: list[list], align: str | None = None) -> None:
    align = align or "l" + "r" * (len(header) - 1)
    emit("| " + " | ".join(header) + " |")
    emit("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        emit("| " + " | ".join(str(c) for c in row) + " |")
    emit()


# ---------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> str:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        return f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        return "unknown memory"


def load_average() -> str:
    try:
        return "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> str:
    import lightning
    import timm

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA"
    return (
        f"CPU {cpu_model()} ({platform.machine()}), {cores} cores usable of {os.cpu_count()}, "
        f"{memory_gib()}; {gpu}; torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads (torch.set_num_threads), lightning {lightning.__version__}, "
        f"timm {timm.__version__}, Python {platform.python_version()}"
    )


# ---------------------------------------------------------------------------- helpers


def millions(net: torch.nn.Module) -> float:
    return sum(p.numel() for p in net.parameters()) / 1e6


def survival_targets(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Times (years) and events (int64, about 30% events, at least two)."""
    gen = torch.Generator().manual_seed(seed)
    time_ = torch.rand(n, generator=gen, dtype=torch.float64) * 10 + 0.1
    event = (torch.rand(n, generator=gen) < 0.3).long()
    event[:2] = 1
    return time_, event


def train_step(net, optimiser, images, covariates, time_, event, autocast=None) -> None:
    """Forward, global_cox_loss, backward, AdamW step."""
    from fracrisk.training import global_cox_loss

    if autocast is None:
        eta = net(images, covariates)
    else:
        with autocast:
            eta = net(images, covariates)
    loss = global_cox_loss(eta.float(), time_, event)[0]
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def fusion_net(encoder_name: str, backbone: str, n_covariates: int = N_COVARIATES):
    from fracrisk.encoders import FusionSurvivalNet, create_encoder

    return FusionSurvivalNet(
        create_encoder(encoder_name, backbone=backbone), n_covariates, head="deepsurv"
    )


# ------------------------------------------------------------------- 1. encoder throughput


def bench_encoders(args) -> None:

    drr, patch = args.drr_size, args.patch_size
    configs = [
        ("multiview_drr", 3, drr),
        ("vertebral_patches", 5, patch),
    ]
    b = args.batch_size
    emit("## 1. Encoder forward + backward throughput (CPU, float32)")
    emit()
    emit(
        f"FusionSurvivalNet(create_encoder(encoder, backbone=...), {N_COVARIATES} covariates, "
        f'head="deepsurv"), random init; one step = forward + global_cox_loss + backward + '
        f"AdamW; batch {b}; median of {args.steps} timed steps after {args.warmup} warm-up "
        f"step(s). images/s counts each view or vertebra patch as one image."
    )
    emit()
    rows = []
    time_, event = survival_targets(b)
    for encoder_name, channels, (h, w) in configs:
        gen = torch.Generator().manual_seed(1)
        images = torch.rand(b, channels, h, w, generator=gen)
        covariates = torch.randn(b, N_COVARIATES, generator=gen)
        for backbone in args.backbones:
            torch.manual_seed(0)
            net = fusion_net(encoder_name, backbone).train()
            optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)

            step = functools.partial(train_step, net, optimiser, images, covariates, time_, event)

            for _ in range(args.warmup):
                step()
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            med = statistics.median(times)
            rows.append(
                [
                    encoder_name,
                    f"{channels}x{h}x{w}",
                    backbone,
                    f"{millions(net):.1f}",
                    b,
                    f"{med * 1e3:.0f}",
                    f"{b / med:.1f}",
                    f"{b * channels / med:.0f}",
                ]
            )
            print(f"  {encoder_name} {backbone}: {med * 1e3:.0f} ms/step", file=sys.stderr)
            del net, optimiser
    table(
        [
            "encoder",
            "input (C x H x W)",
            "backbone",
            "params M",
            "batch",
            "ms/step",
            "samples/s",
            "images/s",
        ],
        rows,
        align="lllrrrrr",
    )


# ------------------------------------------------------------------------ 2. data wait


def ct_cohort(directory: Path, n: int, side: int = 24):
    """A tiny simulated hip-CT cohort (NIfTI balls whose density drives the hazard) + BMI."""
    from fracrisk.testing import tiny_ct_cohort

    cohort = tiny_ct_cohort(directory, n, size=side, seed=1)
    cohort["bmi"] = np.random.default_rng(2).normal(26, 4, n).round(1)
    return cohort


def _files(directory: Path) -> int:
    return sum(1 for p in directory.rglob("*") if p.is_file())


def bench_data_wait(args, scratch: Path) -> dict:
    import lightning.pytorch as pl

    from fracrisk import ImageSurvivalModel
    from fracrisk.data import ImageCohortDataset

    class DataWait(pl.Callback):
        """Per epoch: time waiting for batches, and the whole epoch."""

        def __init__(self) -> None:
            self.epochs: list[dict] = []

        def on_train_epoch_start(self, trainer, module) -> None:
            now = time.perf_counter()
            self.start = self.last_end = now
            self.wait, self.batches = 0.0, 0

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.wait += time.perf_counter() - self.last_end

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.last_end = time.perf_counter()
            self.batches += 1

        def on_train_epoch_end(self, trainer, module) -> None:
            total = time.perf_counter() - self.start
            self.epochs.append({"wait": self.wait, "total": total, "batches": self.batches})

    defaults = ImageSurvivalModel("multiview_drr")
    batch = args.wait_batch or defaults.batch_size
    emit("## 2. Share of step time spent waiting for data (Lightning engine, cached DRRs)")
    emit()
    cohort = ct_cohort(scratch / "cts", args.wait_n)
    cache = scratch / "drr_cache"
    options = {"cache_dir": str(cache), "progress": False}
    if args.quick:
        options["size"] = args.drr_size
    start = time.perf_counter()
    prepared = ImageCohortDataset(cohort, "drr", **options)  # fills the cache
    prepare_s = time.perf_counter() - start
    shape = tuple(prepared[0][0].shape)
    if not args.quick and shape[1:] != DRR_SIZE:
        emit(f"NOTE: the default DRR item shape is {shape}, not 3x{DRR_SIZE[0]}x{DRR_SIZE[1]}")
    files_before = _files(cache)
    model = ImageSurvivalModel(
        "multiview_drr",
        image_options=options,
        validation_fraction=0.0,  # no validation inside the epoch: training steps only
        early_stopping=None,
        batch_size=batch,
        max_epochs=args.wait_epochs,
        accelerator="cpu",
        logger=None,
        seed=0,
    )
    callback = DataWait()
    start = time.perf_counter()
    model.fit(cohort, callbacks=[callback])
    fit_s = time.perf_counter() - start
    files_after = _files(cache)
    timed = callback.epochs[1:] or callback.epochs
    wait = sum(e["wait"] for e in timed)
    total = sum(e["total"] for e in timed)
    share = wait / total
    steps = sum(e["batches"] for e in timed)
    emit(
        f'ImageSurvivalModel("multiview_drr") defaults (backbone resnet10t, one branch per '
        f"view, augment=True, num_workers={model.num_workers}, batch_size {batch}, DRR "
        f"{'x'.join(map(str, shape))}), validation_fraction=0 and early_stopping=None so "
        f"that the epochs hold training steps only; accelerator='cpu', logger=None. "
        f"{args.wait_n} simulated hip CTs ({cohort['event'].sum()} events); DRR cache "
        f"prepared first ({prepare_s:.1f} s, {files_before} files; {files_after} after the "
        f"fit: {'no DRR rendered during training' if files_after == files_before else 'CHANGED'}"
        f"). Epoch 1 is warm-up; epochs 2-{len(callback.epochs)} timed. Wait = "
        f"on_train_batch_end -> next on_train_batch_start (and epoch start -> first batch)."
    )
    emit()
    rows = []
    for i, e in enumerate(callback.epochs, 1):
        rows.append(
            [
                i if i > 1 or len(callback.epochs) == 1 else "1 (warm-up)",
                e["batches"],
                f"{e['total']:.2f}",
                f"{e['wait']:.3f}",
                f"{100 * e['wait'] / e['total']:.1f}%",
                f"{1e3 * e['wait'] / max(e['batches'], 1):.0f}",
                f"{1e3 * (e['total'] - e['wait']) / max(e['batches'], 1):.0f}",
            ]
        )
    rows.append(
        [
            "**timed**",
            steps,
            f"{total:.2f}",
            f"{wait:.3f}",
            f"**{100 * share:.1f}%**",
            f"{1e3 * wait / steps:.0f}",
            f"{1e3 * (total - wait) / steps:.0f}",
        ]
    )
    table(
        [
            "epoch",
            "steps",
            "epoch s",
            "data wait s",
            "wait share",
            "wait ms/step",
            "rest of step ms",
        ],
        rows,
    )
    emit(f"Whole fit (incl. Trainer start-up, Breslow prediction pass): {fit_s:.1f} s")
    emit()
    return {"share": share, "workers": model.num_workers}


# ------------------------------------------------------------------ 3. Lightning overhead


class StepClock:
    """Marks when each step starts (batch in hand) and ends; start of training."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.train_start: float | None = None

    def per_step(self, skip: int) -> float:
        """Mean time per step over the timed window (everything between steps included)."""
        n = len(self.ends) - skip
        return (self.ends[-1] - self.starts[skip]) / n

    def median_cycle(self, skip: int) -> float:
        """Median start-to-next-start time of the timed steps (robust to a stray spike)."""
        return statistics.median(np.diff(self.starts[skip:]).tolist())


def _lightning_clock():
    import lightning.pytorch as pl

    class LightningClock(pl.Callback, StepClock):
        def __init__(self) -> None:
            StepClock.__init__(self)

        def on_train_start(self, trainer, module) -> None:
            self.train_start = time.perf_counter()

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.ends.append(time.perf_counter())

    return LightningClock()


def _overhead_case(
    name: str, build, dataset, event: np.ndarray, config, skip: int, repeats: int
) -> dict:
    """Alternating repeats of fit_cox_network and the bare loop; per-step medians."""
    from torch.utils.data import DataLoader

    from fracrisk.training import EventStratifiedBatchSampler, fit_cox_network, global_cox_loss
    from fracrisk.training.module import epoch_seed

    def lightning_run() -> tuple[float, float, float, torch.nn.Module]:
        torch.manual_seed(0)
        net = build()
        clock = _lightning_clock()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_cox_network(net, dataset, event, None, config, callbacks=[clock])
        end = time.perf_counter()
        startup = clock.train_start - start
        teardown = end - clock.ends[-1]
        return (clock.per_step(skip), clock.median_cycle(skip)), startup, teardown, net

    def bare_run() -> tuple[float, torch.nn.Module]:
        torch.manual_seed(0)
        net = build()
        clock = StepClock()
        with torch.random.fork_rng(devices=[]):
            optimiser = torch.optim.AdamW(
                net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
            )
            sampler = EventStratifiedBatchSampler(
                event, config.batch_size, shuffle=True, seed=config.seed
            )
            loader = DataLoader(
                dataset,
                batch_sampler=sampler,
                generator=torch.Generator().manual_seed(config.seed),
                num_workers=config.num_workers,
            )
            net.train()
            for epoch in range(config.max_epochs):
                torch.manual_seed(epoch_seed(config.seed, epoch))
                sampler.set_epoch(epoch)
                for batch in loader:
                    clock.starts.append(time.perf_counter())
                    *inputs, time_, event_ = batch
                    eta = net(*inputs)
                    loss = global_cox_loss(eta, time_, event_, ties=config.ties)[0]
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    clock.ends.append(time.perf_counter())
        net.eval()
        return (clock.per_step(skip), clock.median_cycle(skip)), net

    light, bare, light_cycle, bare_cycle, startups, teardowns = [], [], [], [], [], []
    diff = 0.0
    for _ in range(repeats):
        (per_step, cycle), startup, teardown, net_l = lightning_run()
        light.append(per_step)
        light_cycle.append(cycle)
        startups.append(startup)
        teardowns.append(teardown)
        (per_step, cycle), net_b = bare_run()
        bare.append(per_step)
        bare_cycle.append(cycle)
        diff = max(
            diff,
            *(
                float((a - b).abs().max())
                for a, b in zip(
                    net_l.state_dict().values(), net_b.state_dict().values(), strict=True
                )
                if a.is_floating_point()
            ),
        )
    ratios = [a / b for a, b in zip(light, bare, strict=True)]
    return {
        "name": name,
        "lightning": statistics.median(light),
        "bare": statistics.median(bare),
        "ratio": statistics.median(light) / statistics.median(bare),
        "cycle_ratio": statistics.median(light_cycle) / statistics.median(bare_cycle),
        "ratios": ratios,
        "startup": statistics.median(startups),
        "teardown": statistics.median(teardowns),
        "diff": diff,
    }


def bench_overhead(args) -> dict:
    from torch.utils.data import TensorDataset

    from fracrisk.training import EventStratifiedBatchSampler, TrainingConfig

    emit("## 3. Lightning overhead against a bare PyTorch loop")
    emit()
    b, n, epochs = args.overhead_batch, args.overhead_n, args.overhead_epochs
    h, w = args.patch_size
    gen = torch.Generator().manual_seed(2)
    time_, event = survival_targets(n, seed=3)
    patches = torch.rand(n, 5, h, w, generator=gen)
    covariates = torch.randn(n, N_COVARIATES, generator=gen)
    config = TrainingConfig(
        accelerator="cpu",
        logger=None,
        max_epochs=epochs,
        batch_size=b,
        early_stopping=None,
        learning_rate=3e-4,
    )
    steps_per_epoch = len(EventStratifiedBatchSampler(event.numpy() == 1, b))
    image = _overhead_case(
        "image",
        lambda: fusion_net("vertebral_patches", "resnet10t"),
        TensorDataset(patches, covariates, time_, event),
        event.numpy() == 1,
        config,
        skip=steps_per_epoch,
        repeats=args.repeats,
    )
    # Information: a small tabular DeepSurv network, where a step costs about a millisecond.
    from fracrisk.heads import create_head

    n_tab, b_tab = (1024, 256) if args.quick else (4096, 256)
    x = torch.randn(n_tab, 10, generator=gen)
    t_tab, e_tab = survival_targets(n_tab, seed=4)
    config_tab = TrainingConfig(
        accelerator="cpu",
        logger=None,
        max_epochs=epochs,
        batch_size=b_tab,
        early_stopping=None,
    )
    tab_steps = len(EventStratifiedBatchSampler(e_tab.numpy() == 1, b_tab))
    tabular = _overhead_case(
        "tabular",
        lambda: create_head("deepsurv", 10, hidden=(32, 32)),
        TensorDataset(x, t_tab, e_tab),
        e_tab.numpy() == 1,
        config_tab,
        skip=tab_steps,
        repeats=args.repeats,
    )
    emit(
        f"fit_cox_network(network, data, event, None, TrainingConfig(accelerator='cpu', "
        f"logger=None, max_epochs={epochs}, batch_size=..., early_stopping=None)) against a "
        f"hand loop over DataLoader(batch_sampler=EventStratifiedBatchSampler(...)) with "
        f"global_cox_loss and AdamW (same lr, weight decay, seed, per-epoch reseeding). "
        f"Per step = (end of the last step - start of the first step of epoch 2) / steps, "
        f"so epoch 1 (warm-up) and Trainer start-up are excluded; epoch boundaries, hooks "
        f"and batch fetching are inside. Median of {args.repeats} alternating repeats."
    )
    emit()
    rows = []
    for case, label, steps in (
        (
            image,
            f"image: FusionSurvivalNet(vertebral_patches, resnet10t), 5x{h}x{w}, "
            f"batch {b}, n={n} (requirement)",
            steps_per_epoch,
        ),
        (
            tabular,
            f"tabular: DeepSurv head 10->32->32->1, batch {b_tab}, n={n_tab} (information)",
            tab_steps,
        ),
    ):
        rows.append(
            [
                label,
                f"{steps * (epochs - 1)}",
                f"{case['bare'] * 1e3:.2f}",
                f"{case['lightning'] * 1e3:.2f}",
                f"{case['ratio']:.3f}",
                " / ".join(f"{r:.3f}" for r in case["ratios"]),
                f"{case['cycle_ratio']:.3f}",
                f"{case['startup']:.2f}",
                f"{case['teardown']:.2f}",
                f"{case['diff']:.1e}",
            ]
        )
    table(
        [
            "model",
            "timed steps",
            "bare ms/step",
            "Lightning ms/step",
            "ratio (median)",
            "ratio per repeat",
            "median-cycle ratio",
            "Trainer start-up s",
            "teardown s",
            "max abs weight diff",
        ],
        rows,
        align="lrrrrrrrrr",
    )
    emit(
        "Trainer start-up: fit_cox_network call -> on_train_start (Trainer, data module, "
        "optimiser). Teardown: end of the last step -> return (kept weights, moving the "
        "network back). Median-cycle ratio: the same comparison on the median "
        "start-to-next-start time of the timed steps (a check against a stray spike; it "
        "leaves out the epoch boundaries). max abs weight diff: final weights of the two "
        "loops over all repeats (0: the same computation, batch for batch)."
    )
    emit()
    return image | {"tabular_ratio": tabular["ratio"]}


# --------------------------------------------------------------------------- 4. peak RSS


def rss_child(batch: int, size: int) -> None:
    """In a fresh process: the default DRR model, forward + backward + AdamW at ``batch``."""
    from fracrisk import ImageSurvivalModel
    from fracrisk.encoders import DRR_VIEWS, FusionSurvivalNet, create_encoder

    def vm_hwm_kib() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM"):
                    return int(line.split()[1])
        return -1

    defaults = ImageSurvivalModel("multiview_drr")
    torch.manual_seed(0)
    encoder = create_encoder(defaults.encoder, **dict(defaults.encoder_kwargs or {}))
    net = FusionSurvivalNet(
        encoder,
        N_COVARIATES,
        head=defaults.head,
        head_kwargs=dict(defaults.head_kwargs or {}),
        covariate_dropout=defaults.covariate_dropout,
    ).train()
    built = vm_hwm_kib()
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay
    )
    images = torch.rand(batch, len(DRR_VIEWS), size, size)
    covariates = torch.randn(batch, N_COVARIATES)
    time_, event = survival_targets(batch)
    start = time.perf_counter()
    for _ in range(2):  # the second step also holds AdamW's state
        train_step(net, optimiser, images, covariates, time_, event)
    seconds = (time.perf_counter() - start) / 2
    print(
        json.dumps(
            {
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "vmhwm_kib": vm_hwm_kib(),
                "built_kib": built,
                "params_m": millions(net),
                "step_s": seconds,
                "backbone": encoder.branches[0].name,
                "branches": len(encoder.branches),
                "default_batch": defaults.batch_size,
            }
        )
    )


def bench_rss(args) -> dict:
    emit("## 4. Peak RSS of the default DRR model, forward + backward")
    emit()
    batch, size = args.rss_batch, args.rss_size
    command = [sys.executable, os.path.abspath(__file__), "--rss-child", str(batch), str(size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        emit(f"subprocess failed (exit {done.returncode}): {done.stderr[-2000:]}")
        emit()
        return {"gib": float("nan"), "maxrss_gib": float("nan")}
    info = json.loads(done.stdout.strip().splitlines()[-1])
    gib, maxrss_gib = info["vmhwm_kib"] / 2**20, info["maxrss_kib"] / 2**20
    emit(
        f'What ImageSurvivalModel("multiview_drr") builds with its defaults: '
        f"FusionSurvivalNet(create_encoder('multiview_drr'), {N_COVARIATES} covariates), "
        f"{info['branches']} x {info['backbone']} (default backbone resnet10t), "
        f"{info['params_m']:.1f} M parameters; input {batch} x 3 x {size} x {size} "
        f"(the model's default batch_size is {info['default_batch']}); two steps of forward "
        f"+ global_cox_loss + backward + AdamW in a fresh Python process (imports included)."
    )
    emit()
    table(
        [
            "batch",
            "input",
            "RSS after imports + build GiB",
            "peak RSS (VmHWM) GiB",
            "ru_maxrss GiB",
        ],
        [
            [
                batch,
                f"3x{size}x{size}",
                f"{info['built_kib'] / 2**20:.2f}",
                f"{gib:.2f}",
                f"{maxrss_gib:.2f}",
            ]
        ],
    )
    emit(
        "VmHWM (/proc/self/status) is the child's own high-water mark (reset at exec); "
        "ru_maxrss is measured too, but Linux carries it over from the parent across fork + "
        "exec, so it is at least the parent's RSS at the fork (run first for that reason)."
    )
    emit()
    return {"gib": gib, "maxrss_gib": maxrss_gib}


# ---------------------------------------------------------------------------------- 5. GPU


def bench_gpu(args) -> None:
    emit("## 5. GPU throughput (bf16 autocast, channels_last)")
    emit()
    if not torch.cuda.is_available():
        emit("no CUDA: GPU section skipped")
        emit()
        return

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    bf16 = torch.cuda.is_bf16_supported()
    emit(
        f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}; forward + global_cox_loss + backward + AdamW; "
        f"batch {args.gpu_batch}; median of {args.gpu_steps} steps after 3 warm-up steps, "
        f"timed with torch.cuda.synchronize. 'bf16 + CL' = torch.autocast(bfloat16) with the "
        f"network and the input in channels_last."
        + ("" if bf16 else " bf16 NOT supported on this GPU: bf16 column runs float16.")
    )
    emit()
    rows = []
    b = args.gpu_batch
    for encoder_name, channels, (h, w) in (
        ("multiview_drr", 3, DRR_SIZE),
        ("vertebral_patches", 5, PATCH_SIZE),
    ):
        images = torch.rand(b, channels, h, w, device=device)
        covariates = torch.randn(b, N_COVARIATES, device=device)
        time_gpu, event_gpu = (t.to(device) for t in survival_targets(b))
        for backbone in args.backbones:
            results = {}
            for mode in ("fp32", "bf16_cl"):
                torch.manual_seed(0)
                net = fusion_net(encoder_name, backbone).to(device).train()
                x = images
                if mode == "bf16_cl":
                    net = net.to(memory_format=torch.channels_last)
                    x = images.contiguous(memory_format=torch.channels_last)
                optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)
                autocast = torch.autocast(
                    "cuda",
                    dtype=torch.bfloat16 if bf16 else torch.float16,
                    enabled=mode == "bf16_cl",
                )

                step = functools.partial(
                    train_step, net, optimiser, x, covariates, time_gpu, event_gpu, autocast
                )

                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(args.gpu_steps):
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    step()
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
                med = statistics.median(times)
                results[mode] = (b * channels / med, torch.cuda.max_memory_allocated() / 2**30)
                del net, optimiser
                torch.cuda.empty_cache()
            rows.append(
                [
                    encoder_name,
                    f"{channels}x{h}x{w}",
                    backbone,
                    f"{results['fp32'][0]:.0f}",
                    f"{results['bf16_cl'][0]:.0f}",
                    f"{results['bf16_cl'][0] / results['fp32'][0]:.2f}",
                    f"{results['fp32'][1]:.2f}",
                    f"{results['bf16_cl'][1]:.2f}",
                ]
            )
    table(
        [
            "encoder",
            "input",
            "backbone",
            "fp32 images/s",
            "bf16 + CL images/s",
            "speed-up",
            "fp32 peak GiB",
            "bf16 + CL peak GiB",
        ],
        rows,
        align="lllrrrrr",
    )


# ---------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per backbone (3)")
    parser.add_argument("--batch-size", type=int, default=None, help="encoder batch (8)")
    parser.add_argument("--repeats", type=int, default=None, help="overhead repeats (5)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="which measurements to run (default all)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument("--rss-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    args.steps = args.steps or (1 if quick else 3)
    args.warmup = 1
    args.batch_size = args.batch_size or (2 if quick else 8)
    args.repeats = args.repeats or (1 if quick else 5)
    args.drr_size = (32, 32) if quick else DRR_SIZE
    args.patch_size = (32, 32) if quick else PATCH_SIZE  # densenet121 needs >= 32
    # data wait: cohort size, epochs; batch None = the model's default (32)
    args.wait_n, args.wait_epochs = (16, 2) if quick else (64, 3)
    args.wait_batch = 8 if quick else None
    # Lightning overhead: patient count, batch, epochs (the first is warm-up)
    args.overhead_n, args.overhead_batch, args.overhead_epochs = (
        (32, 16, 2) if quick else (160, 32, 3)
    )
    args.rss_batch, args.rss_size = (2, 32) if quick else (32, DRR_SIZE[0])
    args.gpu_batch, args.gpu_steps = (8, 3) if quick else (64, 10)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(*args.rss_child)
        return 0
    began = time.perf_counter()
    command = "python benchmarks/bench_training.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    emit("# Training throughput and memory (benchmarks/bench_training.py)")
    emit()
    emit(f"Command: `{command.strip()}`")
    emit(f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    emit(f"Machine: {machine()}")
    emit(f"Load average at start (1, 5, 15 min): {load_average()}")
    if args.quick:
        emit("QUICK configuration: tiny sizes and steps, a smoke test; not the requirements.")
    emit()
    timings: dict[str, float] = {}
    results: dict[str, dict] = {}
    loads: list[float] = []

    def run(name: str, function, *extra) -> None:
        if name not in args.sections:
            return
        start = time.perf_counter()
        results[name] = function(args, *extra) or {}
        timings[name] = time.perf_counter() - start
        emit(f"_{name}: {timings[name]:.0f} s; load average after it: {load_average()}_")
        emit()
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)

    # First, while this process is small: Linux keeps ru_maxrss across fork + exec, so the
    # child's ru_maxrss is at least this process's RSS at the fork (VmHWM is the child's own).
    run("rss", bench_rss)
    run("encoders", bench_encoders)
    with tempfile.TemporaryDirectory() as tmp:
        run("wait", bench_data_wait, Path(tmp))
    run("overhead", bench_overhead)
    run("gpu", bench_gpu)

    emit("## Requirements (issue 10)")
    emit()
    tag = " [quick configuration]" if args.quick else ""
    if "wait" in results:
        wait = results["wait"]
        verdict = "PASS" if wait["share"] < DATA_WAIT_LIMIT else "FAIL"
        emit(
            f"{verdict}: data wait {100 * wait['share']:.1f}% of epoch time < "
            f"{100 * DATA_WAIT_LIMIT:.0f}% (num_workers={wait['workers']}, the default){tag}"
        )
    if "overhead" in results:
        overhead = results["overhead"]
        verdict = "PASS" if overhead["ratio"] <= OVERHEAD_LIMIT else "FAIL"
        emit(
            f"{verdict}: Lightning overhead ratio {overhead['ratio']:.3f} "
            f"({100 * (overhead['ratio'] - 1):+.1f}% per step) <= {OVERHEAD_LIMIT:.2f} on "
            f"the image model (tabular DeepSurv, information: "
            f"{overhead['tabular_ratio']:.3f}){tag}"
        )
    if "rss" in results:
        rss = results["rss"]
        ok = rss["gib"] < RSS_LIMIT_GIB
        emit(
            f"{'PASS' if ok else 'FAIL'}: peak RSS {rss['gib']:.2f} GiB (VmHWM; ru_maxrss "
            f"{rss['maxrss_gib']:.2f} GiB) < {RSS_LIMIT_GIB:.0f} GiB (default DRR model, "
            f"batch {args.rss_batch}, 3x{args.rss_size}x{args.rss_size}){tag}"
        )
    busy = max(loads, default=0.0)
    if busy > torch.get_num_threads() + 1:  # this run itself accounts for about its threads
        emit()
        emit(
            f"WARNING: the 1-minute load average reached {busy:.2f} during the run (this "
            f"run itself adds about {torch.get_num_threads()}): other processes shared the "
            "cores, so the timings above are pessimistic and the ratios noisy."
        )
    emit()
    emit(
        "Section times: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {time.perf_counter() - began:.0f} s. Load average at end: {load_average()}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(_LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
