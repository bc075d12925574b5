"""Does loading plus augmentation keep up with training? ImageCohortDataset against a step.

For each image kind (multi-view hip DRRs, L1-L5 vertebral patches) on a simulated cohort:

* **cold preparation**: building the dataset with an empty disk cache (read the CT and render
  the DRRs; read the radiograph and cut the patches from the table's keypoints), ms per item;
* **loader throughput**, warm cache: items per second through
  ``DataLoader(dataset, batch_size, shuffle=True)`` with the default training augmentation
  (``default_train_transform(kind)``), with 0 workers (everything in the main process) and
  2 workers (persistent), timed over whole epochs after one warm-up epoch;
* **training throughput**: samples per second of one training step -- forward, Cox loss,
  backward and an AdamW step -- on a batch of the same size, median of ``--steps`` steps after
  two warm-up steps. The network is ``fracrisk.encoders.FusionSurvivalNet`` with
  ``create_encoder("multiview_drr" | "vertebral_patches")`` and the covariates when
  ``fracrisk.encoders`` is available, else ``timm.create_model("resnet18", in_chans=V,
  num_classes=1)``.

PASS when the loader with **0 workers** (the conservative figure: on this 2-core machine
worker processes and training share the same cores) delivers at least as many samples per
second as training consumes.

Usage::

    python benchmarks/bench_dataset.py [--n 64] [--batch-size 16] [--epochs 3] [--steps 5]

Run it on an otherwise idle machine: with two torch threads on two cores, another busy
process makes every intra-op parallel kernel wait (100x slower element-wise ops were seen).

A quick check that it runs: ``python benchmarks/bench_dataset.py --quick``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from torch.utils.data import DataLoader

COVARIATES = ["age", "bmi", "femoral_neck_t_score"]  # numeric: never constant, even for tiny n


def _machine() -> str:
    memory = "unknown"
    try:
        with open("/proc/meminfo") as fh:
            kib = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
        memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}), {memory}, {gpu}; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"Python {platform.python_version()}"
    )


def _model(kind: str, n_views: int, n_covariates: int) -> tuple[torch.nn.Module, str, bool]:
    """(network, description, takes covariates)."""
    try:
        from fracrisk.encoders import DEFAULT_BACKBONE, FusionSurvivalNet, create_encoder
    except ImportError:
        import timm

        net = timm.create_model("resnet18", pretrained=False, in_chans=n_views, num_classes=1)
        return net, f"timm resnet18 (in_chans={n_views}, {_millions(net)} M parameters)", False
    name = "multiview_drr" if kind == "drr" else "vertebral_patches"
    net = FusionSurvivalNet(create_encoder(name), n_covariates)
    description = (
        f"FusionSurvivalNet(create_encoder({name!r}), {n_covariates} covariates), default "
        f"{DEFAULT_BACKBONE} backbone, {_millions(net)} M parameters"
    )
    return net, description, True


def _millions(net: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in net.parameters()) / 1e6:.1f}"


def _train_samples_per_second(kind, batch, steps: int) -> tuple[float, str]:
    from fracrisk.losses import cox_partial_likelihood

    images, covariates, time_, _ = batch
    event = torch.ones_like(time_, dtype=torch.bool)  # every sample in the loss: full cost
    torch.manual_seed(0)
    net, description, with_covariates = _model(kind, images.shape[1], covariates.shape[1])
    net.train()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        out = net(images, covariates) if with_covariates else net(images)
        loss = cox_partial_likelihood(out.reshape(-1), time_, event)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return len(time_) / statistics.median(times), description


def _loader_items_per_second(dataset, batch_size: int, workers: int, epochs: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in loader:  # warm-up epoch: worker start-up, page cache
        pass
    count = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        dataset.set_epoch(epoch + 1)
        for images, *_ in loader:
            count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="simulated patients")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3, help="timed loader epochs")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--drr-size", type=int, default=224, help="DRR height and width")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny run: does it work?")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n, args.batch_size, args.epochs, args.steps, args.drr_size = 12, 4, 1, 1, 64

    from fracrisk.data import ImageCohortDataset
    from fracrisk.imaging import default_train_transform
    from fracrisk.simulate import cohort

    print(f"Machine: {_machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sim = cohort(args.n, seed=0, images=("hip_ct", "spine"), out_dir=tmp)
        print(
            f"Simulated {args.n} patients (hip CT 96x128x128 + spine) in "
            f"{time.perf_counter() - start:.1f} s"
        )
        for kind in ("drr", "patches"):
            options = {"size": (args.drr_size, args.drr_size)} if kind == "drr" else {}
            cache = os.path.join(tmp, "cache")
            start = time.perf_counter()
            ImageCohortDataset(sim, kind, covariates=COVARIATES, cache_dir=cache, **options)
            cold_ms = (time.perf_counter() - start) / args.n * 1e3
            dataset = ImageCohortDataset(
                sim,
                kind,
                covariates=COVARIATES,
                cache_dir=cache,
                transform=default_train_transform(kind),
                seed=0,
                **options,
            )
            assert dataset.cache_info["from_cache"] == args.n  # warm: nothing re-rendered
            loader = {
                w: _loader_items_per_second(dataset, args.batch_size, w, args.epochs)
                for w in (0, 2)
            }
            batch = next(iter(DataLoader(dataset, batch_size=args.batch_size)))
            train, description = _train_samples_per_second(kind, batch, args.steps)
            rows.append((kind, dataset.image_shape, cold_ms, loader, train, description))

    print()
    print(
        f"ImageCohortDataset throughput, batch size {args.batch_size}, {args.n} patients, "
        f"default training augmentation, warm disk cache"
    )
    print()
    print(
        "| kind | item shape | cold prepare ms/item | loader items/s (0 workers) | "
        "loader items/s (2 workers) | training samples/s | loader / training |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, shape, cold_ms, loader, train, _ in rows:
        print(
            f"| {kind} | {'x'.join(map(str, shape))} | {cold_ms:.1f} | {loader[0]:.0f} | "
            f"{loader[2]:.0f} | {train:.1f} | {loader[0] / train:.0f}x |"
        )
    print()
    for kind, _, _, _, _, description in rows:
        print(f"Training step ({kind}): {description}, forward + Cox loss + backward + AdamW.")
    print()
    for kind, _, _, loader, train, _ in rows:
        verdict = "PASS" if loader[0] >= train else "FAIL"
        print(
            f"{verdict} {kind}: loader {loader[0]:.0f} samples/s (0 workers) >= training "
            f"{train:.1f} samples/s"
        )


if __name__ == "__main__":
    main()
