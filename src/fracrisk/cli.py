"""The ``fracrisk`` command line: ``demo``, ``simulate``, ``frax``, ``train-keypoints``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

__all__ = ["main"]

_COMMANDS: dict[
    str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {}


def _command(name: str, add_arguments):
    def decorator(run):
        _COMMANDS[name] = (add_arguments, run)
        return run

    return decorator


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument("--n", type=int, default=8000, help="patients to simulate (default 8000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--horizon",
        type=float,
        default=5.0,
        help="risk horizon in years for calibration (default 5)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing demo output directory"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples for confidence intervals (default 1000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


@_command("demo", _demo_arguments)
def _run_demo(args: argparse.Namespace) -> int:
    from fracrisk.demo import run_demo

    run_demo(
        args.out,
        n=args.n,
        seed=args.seed,
        horizon=args.horizon,
        n_boot=args.bootstrap,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    return 0


def _frax_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        help="CSV with the canonical clinical columns (one row per patient)",
    )
    parser.add_argument("--output", required=True, help="CSV to write, with mof_10y, hip_10y")
    parser.add_argument("--country", default="UK", help="calibration tables (default UK)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


@_command("frax", _frax_arguments)
def _run_frax(args: argparse.Namespace) -> int:
    """FRAX-style 10-year MOF and hip probabilities for a CSV of patients."""
    from pathlib import Path

    import pandas as pd

    from fracrisk._io import atomic_path
    from fracrisk.baselines import FraxStyleCalculator

    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise FileExistsError(f"{str(output)!r} exists; pass --overwrite to replace it")
    source = Path(args.input)
    if not source.exists():
        raise FileNotFoundError(f"no such input file: {str(source)!r}")
    patients = pd.read_csv(source)
    # rows are named by their CSV line number (header is line 1)
    patients.index = pd.RangeIndex(2, len(patients) + 2, name="line")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = FraxStyleCalculator(args.country).predict(patients)
    except ValueError as err:
        raise ValueError(f"{err}\n(rows are line numbers in {str(source)!r})") from err
    for warning in caught:
        print(f"fracrisk frax: warning: {warning.message} (rows are line numbers)", file=sys.stderr)
    with atomic_path(output) as tmp:
        result.to_csv(tmp, index=False)
    print(f"wrote {len(result)} patients to {output} (mof_10y, hip_10y, country {args.country})")
    return 0


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="population",
        help="population, kong2022 or kim2024 (default population)",
    )
    parser.add_argument("--n", type=int, default=None, help="patients (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--images",
        nargs="*",
        default=[],
        choices=["hip_ct", "spine"],
        help="images to generate: hip_ct, spine",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--ct-format",
        default="nii.gz",
        choices=["nii.gz", "nii", "dicom"],
        help="hip CT files (default nii.gz)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="processes making images (default: CPU cores, at most 4)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing simulation directory"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@_command("simulate", _simulate_arguments)
def _run_simulate(args: argparse.Namespace) -> int:
    """Simulate a cohort (Parquet manifest plus images) that reads like a real one."""
    from pathlib import Path

    from fracrisk._io import staged_output_dir
    from fracrisk.simulate import cohort

    final = Path(args.out)
    with staged_output_dir(
        final, overwrite=args.overwrite, is_ours=lambda p: (p / "cohort.parquet").exists()
    ) as staging:
        simulated = cohort(
            args.n,
            preset=args.preset,
            seed=args.seed,
            images=args.images,
            out_dir=staging,
            ct_format=args.ct_format,
            workers=args.workers,
            progress=not args.no_progress,
        )
        # image paths point into the staging directory until it is moved into place
        for column in [c for c in simulated.df.columns if c.endswith("_path")]:
            simulated.df[column] = simulated.df[column].str.replace(
                str(staging.resolve()), str(final.resolve()), regex=False
            )
        simulated.save(staging / "cohort.parquet")
    print(f"wrote {len(simulated)} patients ({simulated!r}) to {final}")
    return 0


def _train_keypoints_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        required=True,
        help="where to save the detector (writes OUT.safetensors and OUT.json)",
    )
    parser.add_argument(
        "--n", type=int, default=2400, help="simulated training radiographs (default 2400)"
    )
    parser.add_argument("--epochs", type=int, default=16, help="training epochs (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@_command("train-keypoints", _train_keypoints_arguments)
def _run_train_keypoints(args: argparse.Namespace) -> int:
    """Train the spine keypoint detector on simulated lateral radiographs."""
    from pathlib import Path

    from fracrisk.imaging.keypoints import (
        save_keypoint_detector,
        simulate_training_set,
        train_keypoint_detector,
    )

    stem = Path(args.out)
    stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
    existing = [
        p for p in (stem.with_suffix(".safetensors"), stem.with_suffix(".json")) if p.exists()
    ]
    if existing and not args.overwrite:
        raise FileExistsError(f"{[str(p) for p in existing]} exist; pass --overwrite to replace")
    images, keypoints = simulate_training_set(args.n, seed=args.seed)
    model = train_keypoint_detector(
        images,
        keypoints,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    save_keypoint_detector(model, stem)
    print(f"saved the keypoint detector to {stem}.safetensors and {stem}.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fracrisk`` command."""
    parser = argparse.ArgumentParser(prog="fracrisk", description="Survival-based fracture risk.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=(_COMMANDS[name][1].__doc__ or "").strip()))
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command][1](args)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"fracrisk {args.command}: error: {err}", file=sys.stderr)
        return 2
