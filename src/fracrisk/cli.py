"""The ``fracrisk`` command line.

Commands
--------
``demo``
    Simulate a cohort, fit the baselines and the models, and write a report.
``simulate``
    Write a simulated cohort (Parquet manifest plus hip CTs and spine radiographs; image
    paths relative to the manifest, so that the folder can be moved).
``frax``
    FRAX-style 10-year probabilities for a CSV of patients.
``train-keypoints``
    Train the spine keypoint detector on simulated radiographs.
``prepare-images``
    Fill the image cache of a cohort manifest (DRRs, L1-L5 patches or CT volumes) once, in
    parallel, before training, and report the rows whose images could not be used.
    ``--shard I/N`` prepares one shard of the manifest, so that a cluster job array fills one
    shared cache.

User errors (a missing or invalid file, an output that exists) end with a one-line message
naming the problem (a validation error lists every problem) and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

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
    from fracrisk.demo import STUDIES

    parser.description = (
        "Simulate a population cohort, a spine-radiograph cohort (Kong 2022) and a hip-CT "
        "cohort (Kim 2024) with images; fit the FRAX-style baselines, CoxPH, DeepSurv and the "
        "image CNNs; evaluate on a temporal split with bootstrap CIs; write report.html."
    )
    parser.epilog = (
        "examples:\n  fracrisk demo                          # all three studies, small "
        "defaults\n  fracrisk demo --studies population     # clinical only, seconds\n"
        "  fracrisk demo --cohort my.parquet      # the clinical models on your own table\n"
        "  fracrisk demo --full                   # published sizes, for a GPU"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    parser.add_argument(
        "--studies",
        nargs="+",
        choices=list(STUDIES),
        default=list(STUDIES),
        help="which studies to run (default all)",
    )
    parser.add_argument(
        "--n", type=int, default=None, help="patients per study (default: each study's own)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="CNN epochs (default: each study's own)"
    )
    parser.add_argument(
        "--full", action="store_true", help="published cohort sizes and training (for a GPU)"
    )
    parser.add_argument(
        "--cohort", default=None, help="your own cohort table (CSV/Parquet): clinical models only"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing demo output directory"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=500,
        help="bootstrap resamples for confidence intervals (default 500)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


@_command("demo", _demo_arguments)
def _run_demo(args: argparse.Namespace) -> int:
    from fracrisk.demo import run_demo

    run_demo(
        args.out,
        studies=tuple(args.studies),
        n=args.n,
        epochs=args.epochs,
        full=args.full,
        cohort=args.cohort,
        seed=args.seed,
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
        # The images lie under the staging directory, so the manifest stores their paths
        # relative to itself and still finds them once the directory is moved into place.
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
    parser.add_argument(
        "--accelerator",
        default="auto",
        choices=["auto", "cpu", "gpu", "cuda", "mps"],
        help="Lightning's accelerator (default auto: a GPU if there is one)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


@_command("train-keypoints", _train_keypoints_arguments)
def _run_train_keypoints(args: argparse.Namespace) -> int:
    """Train the spine keypoint detector on simulated lateral radiographs."""
    from pathlib import Path

    from fracrisk.imaging.keypoints import save_keypoint_detector, train_keypoint_detector
    from fracrisk.simulate import simulate_training_set

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
        accelerator=args.accelerator,
        progress=not args.no_progress,
    )
    save_keypoint_detector(model, stem)
    print(f"saved the keypoint detector to {stem}.safetensors and {stem}.json")
    return 0


#: Failed rows printed to the terminal; the --report file lists them all.
_PREPARE_SHOWN_FAILURES = 5


def _shard(text: str) -> tuple[int, int]:
    """Parse ``--shard I/N``: shard ``I`` (0-based) of ``N``.

    Parameters
    ----------
    text : str
        The option's value, e.g. ``"0/4"``.

    Returns
    -------
    (int, int)
        ``(I, N)`` with ``0 <= I < N``.

    Raises
    ------
    argparse.ArgumentTypeError
        The value is not two integers ``I/N``, ``N`` is 0, or ``I`` is not below ``N``
        (argparse reports it as ``argument --shard: ...``, exit code 2).
    """
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected I/N, shard I of N counted from 0 (e.g. 0/4 to 3/4), got {text!r}"
        )
    index, count = (int(part) for part in parts)
    if count < 1:
        raise argparse.ArgumentTypeError(f"the number of shards N must be at least 1, got {text!r}")
    if index >= count:
        raise argparse.ArgumentTypeError(
            f"shard {index} does not exist in {count} shard(s): I runs from 0 to {count - 1} "
            f"(0-based), got {text!r}"
        )
    return index, count


def _shard_positions(n_rows: int, shard: tuple[int, int]) -> list[int]:
    """Row positions (0-based, in manifest order) of ``shard = (I, N)``: ``p % N == I``."""
    index, count = shard
    return list(range(index, n_rows, count))


def _prepare_images_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        required=True,
        metavar="FILE",
        help="cohort table (CSV or Parquet): one row per patient with an image path column "
        "and the outcome columns time (years) and event (0 censored, 1 fracture, 2 death)",
    )
    parser.add_argument(
        "--kind",
        required=True,
        choices=["drr", "patches", "volume"],
        help="drr: multi-view DRRs of a hip CT; patches: L1-L5 patches of a lateral spine "
        "radiograph; volume: the hip CT on a small 3-D grid (for the ct_volume encoder)",
    )
    parser.add_argument(
        "--cache",
        required=True,
        metavar="DIR",
        help="cache directory, created if needed; entries are added, never replaced (pass "
        "the same directory as cache_dir= when training)",
    )
    parser.add_argument(
        "--image-column",
        default=None,
        metavar="COL",
        help="column of image paths (default hip_ct_path for drr and volume, spine_xray_path "
        "for patches)",
    )
    parser.add_argument(
        "--image-root",
        default=None,
        metavar="DIR",
        help="directory that relative image paths start from (default: the manifest's "
        "directory, so that a moved folder still works); when given, a path that resolves "
        "outside it (../, absolute, or through a symlink) is a bad row and is never read",
    )
    parser.add_argument(
        "--time-column",
        default=None,
        metavar="COL",
        help="follow-up column in years (default time, or the role saved with the table)",
    )
    parser.add_argument(
        "--event-column",
        default=None,
        metavar="COL",
        help="event code column (default event, or the role saved with the table)",
    )
    parser.add_argument(
        "--geometry",
        choices=["parallel", "cone"],
        default=None,
        help="DRR beam geometry (default: ImageCohortDataset's, a parallel beam; drr only)",
    )
    parser.add_argument(
        "--sdd",
        type=float,
        default=None,
        metavar="MM",
        help="cone beam source-to-detector distance in mm (default 1020; --geometry cone)",
    )
    parser.add_argument(
        "--sid",
        type=float,
        default=None,
        metavar="MM",
        help="cone beam source-to-isocentre distance in mm (default 850; --geometry cone)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="image size: H W pixels (default 224 224 for drr, 64 64 for patches), or D H W "
        "voxels for volume (default 32 48 48)",
    )
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="intensity window mapped to [0, 1]: optical depth for drr, HU for volume "
        "(default none: physical line integrals, or HU / 1000; not for patches)",
    )
    parser.add_argument(
        "--views",
        nargs="+",
        choices=["frontal", "lateral", "axial"],
        default=None,
        metavar="VIEW",
        help="DRR views in channel order: frontal, lateral, axial (default all three; drr only)",
    )
    parser.add_argument(
        "--keypoint-columns",
        nargs="*",
        default=None,
        metavar="COL",
        help="vertebral corners in the manifest: one column of 40 numbers (JSON) or 40 "
        "numeric columns (default spine_keypoints if present); the flag alone always runs "
        "the keypoint detector (patches only)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="prepare only shard I of N (0-based): the rows at positions p (0, 1, ... in "
        "manifest order) with p %% N == I, so that N jobs of a cluster job array fill one "
        "shared --cache in parallel (default: every row)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="processes preparing images; 0 prepares them in this process (default: CPU "
        "cores, at most 4)",
    )
    parser.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default="raise",
        help="a row whose image cannot be used: stop with an error (raise, the default) or "
        "leave it out and list it (skip)",
    )
    parser.add_argument(
        "--report",
        default=None,
        metavar="CSV",
        help="write the failed rows (row, patient_id, column, path, reason; with --shard, "
        "a first column shard) to this CSV",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --report file"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _prepare_render_options(args: argparse.Namespace) -> dict:
    """Check the kind-specific options and build ``render_options`` (the beam geometry).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``prepare-images`` arguments.

    Returns
    -------
    dict
        ``{}`` without ``--geometry`` (the dataset's default, so that a training run that
        does not name a geometry finds the same cache entries), else ``{"geometry": ...}``
        with ``"parallel"`` or a :class:`~fracrisk.imaging.geometry.ConeBeam`.

    Raises
    ------
    ValueError
        An option of another kind (DRR options with ``patches`` or ``volume``, ``--window``
        with ``patches``, keypoint columns without ``patches``), a ``--size`` of the wrong
        length for the kind, ``--sdd``/``--sid`` without ``--geometry cone``, or an
        impossible cone beam.
    """
    cone_options = [
        flag for flag, value in (("--sdd", args.sdd), ("--sid", args.sid)) if value is not None
    ]
    dimensions = 3 if args.kind == "volume" else 2
    if args.size is not None and (len(args.size) != dimensions or min(args.size) < 1):
        wanted = "three positive integers D H W" if dimensions == 3 else "two positive integers H W"
        raise ValueError(f"--size of --kind {args.kind} must be {wanted}, got {args.size}")
    if args.kind == "patches" and args.window is not None:
        raise ValueError("--window applies to --kind drr and volume, not to patches")
    if args.kind != "patches" and args.keypoint_columns is not None:
        raise ValueError(f"--keypoint-columns applies to --kind patches only, not to {args.kind}")
    if args.kind != "drr":
        drr_only = [
            flag
            for flag, value in (
                ("--geometry", args.geometry),
                ("--sdd", args.sdd),
                ("--sid", args.sid),
                ("--views", args.views),
            )
            if value is not None
        ]
        if drr_only:
            verb = "applies" if len(drr_only) == 1 else "apply"
            raise ValueError(f"{', '.join(drr_only)} {verb} to --kind drr only, not to {args.kind}")
        return {}
    if cone_options and args.geometry != "cone":
        verb = "needs" if len(cone_options) == 1 else "need"
        raise ValueError(f"{' and '.join(cone_options)} {verb} --geometry cone")
    if args.geometry is None:
        return {}
    if args.geometry == "parallel":
        return {"geometry": "parallel"}
    from fracrisk.imaging.geometry import ConeBeam

    distances = {}
    if args.sdd is not None:
        distances["source_to_detector"] = args.sdd
    if args.sid is not None:
        distances["source_to_isocentre"] = args.sid
    try:
        beam = ConeBeam(**distances)
    except ValueError as err:
        given = ", ".join(
            f"{flag} {value:g}"
            for flag, value in (("--sdd", args.sdd), ("--sid", args.sid))
            if value is not None
        )
        raise ValueError(f"invalid cone beam ({given}): {err}") from err
    return {"geometry": beam}


def _read_image_manifest(args: argparse.Namespace, image_column: str):
    """The manifest's rows as a :class:`~fracrisk.data.Cohort` of the columns the images need.

    Only the id, outcome, image path and keypoint columns are kept and validated: the
    clinical columns play no part in the images (the training run validates them).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed ``prepare-images`` arguments.
    image_column : str
        The image path column.

    Returns
    -------
    cohort : Cohort
        Validated rows, labelled by CSV line number (header = line 1) when the manifest is
        a plain CSV, else by the table's own index.
    note : str or None
        How rows are numbered, for error messages (None when they are the table's labels).

    Raises
    ------
    ValueError
        The outcome, image or keypoint columns are absent (naming them), or a value is
        invalid (:class:`~fracrisk.exceptions.CohortValidationError`, naming each column,
        row and reason).
    """
    from pathlib import Path

    import pandas as pd

    from fracrisk.data.cohort import Cohort, read_table
    from fracrisk.data.schema import SPINE_KEYPOINTS_COLUMN

    path = Path(args.manifest)
    if path.is_dir():
        raise ValueError(f"--manifest {str(path)!r} is a directory; give a CSV or Parquet file")
    df, meta = read_table(path)
    note = None
    if meta is None and path.suffix.lower() == ".csv":
        df.index = pd.RangeIndex(2, len(df) + 2, name="line")
        note = f"rows are line numbers in {path}"
    roles = (meta or {}).get("roles", {})
    time_col = args.time_column or roles.get("time_col", "time")
    event_col = args.event_column or roles.get("event_col", "event")
    id_col = roles.get("id_col", "patient_id")
    columns = ", ".join(map(str, df.columns))

    absent = [c for c in (time_col, event_col) if c not in df.columns]
    if absent:
        raise ValueError(
            f"{str(path)!r} has no {' or '.join(map(repr, absent))} column: the cache is "
            "filled for ImageCohortDataset, which needs every patient's follow-up in years "
            f"({time_col!r}) and event code ({event_col!r}: 0 censored, 1 fracture, 2 death) "
            "even though the images do not depend on them, and fracrisk does not invent "
            "outcomes; add them, or name yours with --time-column/--event-column (the table "
            f"has: {columns})"
        )
    if image_column not in df.columns:
        paths = [str(c) for c in df.columns if str(c).endswith("_path")]
        hint = f"; path-like columns: {', '.join(paths)}" if paths else ""
        raise ValueError(
            f"image column {image_column!r} is not in {str(path)!r}; name it with "
            f"--image-column (the table has: {columns}){hint}"
        )
    keypoints: list[str] = []
    if args.kind == "patches":
        if args.keypoint_columns is None:
            keypoints = [SPINE_KEYPOINTS_COLUMN] if SPINE_KEYPOINTS_COLUMN in df.columns else []
        else:
            keypoints = list(args.keypoint_columns)
            missing = [c for c in keypoints if c not in df.columns]
            if missing:
                raise ValueError(
                    f"keypoint column(s) {', '.join(map(repr, missing))} are not in "
                    f"{str(path)!r} (the table has: {columns})"
                )
    id_col = id_col if id_col in df.columns else None
    used = list(dict.fromkeys([*([id_col] if id_col else []), time_col, event_col]))
    used = list(dict.fromkeys([*used, image_column, *keypoints]))
    try:
        cohort = Cohort(
            df[used], time_col=time_col, event_col=event_col, id_col=id_col, source=str(path)
        )
    except ValueError as err:
        raise ValueError(_with_note(str(err), note)) from err
    return cohort, note


def _with_note(message: str, note: str | None) -> str:
    """``message`` in command-line terms, with how rows are numbered if it names rows."""
    message = message.replace("on_error='skip'", "--on-error skip")
    if note is None or "row" not in message:
        return message
    return f"{message}\n({note})" if "\n" in message else f"{message} ({note})"


def _is_left_out_warning(warning: warnings.WarningMessage) -> bool:
    # The dataset's summary warning; the command prints the failed rows itself.
    return "rows left out of the" in str(warning.message)


def _shard_rows(cohort, positions: list[int]):
    """Rows of a shard as a new :class:`~fracrisk.data.Cohort` with the same roles.

    Parameters
    ----------
    cohort : Cohort
        The whole manifest, validated.
    positions : list of int
        The shard's row positions (:func:`_shard_positions`), not empty.

    Returns
    -------
    Cohort
        Those rows, in manifest order, keeping their labels (CSV line numbers in a plain
        CSV).
    """
    from fracrisk.data.cohort import Cohort

    return Cohort(
        cohort.df.iloc[positions],
        time_col=cohort.time_col,
        event_col=cohort.event_col,
        id_col=cohort.id_col,
        source=cohort.source,
    )


def _failure_report(failures, shard_label: str | None):
    """The ``--report`` table: the failed rows, with a first column ``shard`` if sharded."""
    from fracrisk.data.image_dataset import failure_table

    table = failure_table(failures)
    if shard_label is not None:
        table.insert(0, "shard", shard_label)
    return table


@_command("prepare-images", _prepare_images_arguments)
def _run_prepare_images(args: argparse.Namespace) -> int:
    """Fill the image cache (DRRs, L1-L5 patches or CT volumes) of a manifest before training."""
    import time
    from pathlib import Path

    from fracrisk._io import atomic_path
    from fracrisk.data.image_dataset import ImageCohortDataset
    from fracrisk.data.schema import DEFAULT_IMAGE_COLUMNS
    from fracrisk.exceptions import NoUsableImagesError

    command = "fracrisk prepare-images"
    # Every check that needs no image runs before the (possibly long) preparation.
    render_options = _prepare_render_options(args)
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    cache = Path(args.cache)
    if cache.exists() and not cache.is_dir():
        raise ValueError(f"--cache {str(cache)!r} is a file; give a directory")
    image_root = None if args.image_root is None else Path(args.image_root)
    if image_root is not None and not image_root.is_dir():
        raise FileNotFoundError(f"--image-root {str(image_root)!r} is not a directory")
    report = None if args.report is None else Path(args.report)
    if report is not None:
        if report.is_dir():
            raise ValueError(f"--report {str(report)!r} is a directory; give a CSV file name")
        if report.exists() and not args.overwrite:
            raise FileExistsError(f"{str(report)!r} exists; pass --overwrite to replace it")
    image_column = args.image_column or DEFAULT_IMAGE_COLUMNS[args.kind]
    cohort, note = _read_image_manifest(args, image_column)
    if image_root is None:
        # Relative paths in a manifest start from the manifest's own directory, so that a
        # folder holding the manifest and its images can be moved or mounted elsewhere.
        image_root = Path(os.path.abspath(Path(args.manifest).parent))

    # The whole manifest is validated above (ids unique across shards); then one shard.
    shard_label = None
    where = ""
    if args.shard is not None:
        index, count = args.shard
        shard_label = f"{index}/{count}"
        positions = _shard_positions(len(cohort), args.shard)
        where = (
            f", shard {shard_label} ({len(positions)} of the manifest's {len(cohort)} rows: "
            f"positions p with p % {count} == {index})"
        )
        if not positions:  # more shards than rows: this job has nothing to do
            if report is not None:
                with atomic_path(report) as tmp:
                    _failure_report([], shard_label).to_csv(tmp, index=False)
            print(f"{args.kind}{where}: no row to prepare; cache {cache}")
            return 0
        cohort = _shard_rows(cohort, positions)

    options: dict = {"image_column": image_column}
    if args.size is not None:
        options["size"] = tuple(args.size)
    if args.window is not None:
        options["window"] = tuple(args.window)
    if args.kind == "drr":
        options["render_options"] = render_options
        if args.views is not None:
            options["views"] = tuple(args.views)
    elif args.keypoint_columns is not None:
        options["keypoint_columns"] = tuple(args.keypoint_columns)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = ImageCohortDataset(
                cohort,
                args.kind,
                covariates=[],  # images only: the covariates are the training run's business
                cache_dir=cache,
                image_root=image_root,
                # --image-root is a promise: nothing outside it is read
                confine_to_root=args.image_root is not None,
                on_error=args.on_error,
                prepare_workers=args.workers,
                progress=not args.no_progress,
                **options,
            )
        except ValueError as err:
            for warning in caught:
                print(f"{command}: warning: {warning.message}", file=sys.stderr)
            message = str(err)
            if shard_label is not None:
                message += f" [shard {shard_label}]"
            if isinstance(err, NoUsableImagesError) and report is not None:
                with atomic_path(report) as tmp:
                    _failure_report(err.failures, shard_label).to_csv(tmp, index=False)
                message += f"; every failed row is listed in {report}"
            raise ValueError(_with_note(message, note)) from err
    seconds = time.perf_counter() - start
    for warning in caught:
        if not _is_left_out_warning(warning):
            print(f"{command}: warning: {warning.message}", file=sys.stderr)

    failures = dataset.failures
    for failure in failures[:_PREPARE_SHOWN_FAILURES]:
        print(f"{command}: failed: {failure.describe()}", file=sys.stderr)
    if report is not None:
        with atomic_path(report) as tmp:
            _failure_report(failures, shard_label).to_csv(tmp, index=False)

    info = dataset.cache_info
    made = {
        "drr": f"{info['rendered']} rendered",
        "volume": f"{info['rendered']} resized",
        "patches": f"{info['detected']} keypoints detected, {info['cut']} cut",
    }[args.kind]
    made = f"{info['loaded']} images read, {made}"
    prepared = info["rows"] - len(failures)
    rate = prepared / seconds if seconds > 0 else float("inf")
    shape = " x ".join(map(str, dataset.image_shape))
    print(
        f"{args.kind} ({shape}){where}: {prepared} of {info['rows']} rows prepared "
        f"({info['from_cache']} from cache, {made}), {len(failures)} failed; "
        f"{seconds:.2f} s, {rate:.1f} images/s; cache {cache}"
    )
    of_shard = "" if shard_label is None else f" of shard {shard_label}"
    if failures:
        where = (
            f"listed in {report}" if report is not None else "pass --report FILE to list them all"
        )
        print(f"{len(failures)} row(s){of_shard} failed and were left out: {where}")
    elif report is not None:
        print(f"no row{of_shard} failed; wrote an empty report to {report}")
    if note is not None and (failures or report is not None):
        print(f"({note})")
    return 0


def _pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Self-supervised (SimCLR) pretraining of an image backbone on unlabelled images; the "
        "weights start an image model with encoder_kwargs={'backbone_kwargs': {'weights': "
        "FILE}}."
    )
    parser.epilog = (
        "example: fracrisk pretrain --manifest archive.csv --kind patches --cache cache "
        "--epochs 20 --out spine_resnet10t.safetensors"
    )
    parser.add_argument(
        "--manifest",
        required=True,
        metavar="FILE",
        help="table (CSV or Parquet) with one image path per row; no outcome is needed",
    )
    parser.add_argument("--kind", required=True, choices=["drr", "patches"])
    parser.add_argument(
        "--image-column",
        default=None,
        metavar="COL",
        help="column of image paths (default hip_ct_path for drr, spine_xray_path for patches)",
    )
    parser.add_argument("--cache", default=None, metavar="DIR", help="prepared-image cache")
    parser.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--backbone", default="resnet10t", help="timm model name")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"])
    parser.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    parser.add_argument("--workers", type=int, default=0, help="image preparation processes")
    parser.add_argument("--out", required=True, metavar="FILE.safetensors")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


@_command("pretrain", _pretrain_arguments)
def _pretrain(args: argparse.Namespace) -> int:
    """Pretrain an image backbone on unlabelled images (contrastive, SimCLR)."""
    from pathlib import Path

    from fracrisk.data.cohort import read_table, resolve_image_path
    from fracrisk.data.schema import DEFAULT_IMAGE_COLUMNS
    from fracrisk.training.pretrain import (
        load_unlabelled_images,
        pretrain_backbone,
        save_backbone_weights,
    )

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {str(out)!r}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} exists; pass --overwrite to replace it")
    manifest = Path(args.manifest)
    df, _ = read_table(manifest)
    column = args.image_column or DEFAULT_IMAGE_COLUMNS[args.kind]
    if column not in df.columns:
        raise ValueError(
            f"image column {column!r} is not in {str(manifest)!r}; name it with --image-column "
            f"(the table has: {', '.join(map(str, df.columns))})"
        )
    missing = df[column].isna()
    if missing.any():
        rows = df.index[missing].tolist()[:5]
        raise ValueError(f"{int(missing.sum())} row(s) of {column!r} have no path: rows {rows}")
    paths = [resolve_image_path(v, manifest.parent) for v in df[column]]
    images, failures = load_unlabelled_images(
        paths,
        args.kind,
        size=args.size,
        cache_dir=args.cache,
        on_error=args.on_error,
        workers=args.workers,
        progress=args.progress,
    )
    for position, path, reason in failures[:10]:
        print(f"pretrain: left out row {df.index[position]!r} ({path}): {reason}", file=sys.stderr)
    history: list[float] = []
    backbone = pretrain_backbone(
        images,
        backbone=args.backbone,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        seed=args.seed,
        accelerator=args.accelerator,
        progress=args.progress,
        history=history,
    )
    save_backbone_weights(backbone, out, overwrite=args.overwrite)
    n_images = images.shape[0] * images.shape[1]
    losses = ", ".join(f"{v:.3f}" for v in history)
    print(
        f"pretrained {args.backbone} on {n_images} images ({images.shape[0]} of {len(df)} rows, "
        f"{len(failures)} left out) for {args.epochs} epochs; contrastive loss per epoch: "
        f"{losses}; weights: {out}"
    )
    return 0


def _examples(parser: argparse.ArgumentParser, description: str, *lines: str) -> None:
    parser.description = description
    parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _fit_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "Fit the models of a YAML run configuration (cohort, column mapping, split, models, "
        "evaluation), evaluate them on the test split and write a run directory with the "
        "models, predictions and report.html. See fracrisk.config for the layout.",
        "fracrisk fit --config run.yaml",
        "fracrisk fit --config run.yaml --out runs/second_try --overwrite",
    )
    parser.add_argument("--config", required=True, help="YAML run configuration")
    parser.add_argument("--out", default=None, help="run directory (default: the config's out)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


@_command("fit", _fit_arguments)
def _run_fit(args: argparse.Namespace) -> int:
    """Fit, evaluate and report the models of a YAML run configuration."""
    from fracrisk.config import read_config
    from fracrisk.run import fit_run

    config = read_config(args.config)
    fit_run(config, args.out, overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def _load_models(paths: Sequence[str]) -> dict:
    from fracrisk.models import load_model

    models = {}
    for path in paths:
        model = load_model(path)
        name = Path(path).name
        if name in models:
            raise ValueError(f"two models are named {name!r} (the folder name); rename one")
        models[name] = model
    return models


def _cohort_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="run configuration whose column mapping applies to the cohort (optional)",
    )


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "Evaluate saved models on a cohort (C-indices with CIs, td-AUC, calibration, decision "
        "curves, subgroups) and write report.html, report.md and evaluation.json.",
        "fracrisk evaluate --model runs/a/models/coxph runs/a/models/deepsurv "
        "--cohort test.parquet --out runs/a_external",
    )
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories")
    parser.add_argument("--cohort", required=True, help="cohort table (CSV or Parquet)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--horizons", nargs="+", type=float, default=[5.0, 10.0])
    parser.add_argument("--reference", default=None, help="model folder name to compare with")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _cohort_arguments(parser)


@_command("evaluate", _evaluate_arguments)
def _run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate saved models on a cohort and write the report."""
    from fracrisk._io import atomic_write_json, staged_output_dir
    from fracrisk.config import read_config
    from fracrisk.evaluation import evaluate, write_report
    from fracrisk.run import RUN_MARKER, load_cohort

    config = read_config(args.config) if args.config else None
    models = _load_models(args.model)
    cohort = load_cohort(config, args.cohort)
    evaluation = evaluate(
        models,
        cohort,
        horizons=args.horizons,
        reference=args.reference,
        n_boot=args.bootstrap,
        seed=args.seed,
        progress=not args.no_progress,
        context={"cohort": str(args.cohort), "models": ", ".join(args.model)},
    )
    final = Path(args.out)
    with staged_output_dir(
        final, overwrite=args.overwrite, is_ours=lambda p: (p / RUN_MARKER).exists()
    ) as out:
        write_report(evaluation, out, title=f"fracrisk evaluation: {Path(args.cohort).name}")
        atomic_write_json(
            out / RUN_MARKER,
            {"command": "fracrisk evaluate", "models": list(args.model), "cohort": args.cohort},
        )
    print(evaluation.summary_table().to_string(index=False))
    print(f"report: {final / 'report.html'}")
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "Per-patient survival curves and risks from a saved model: one row per patient, "
        "columns '<model> | risk 5 y' and '<model> | S(2 y)'. The risk type (cause-specific "
        "or absolute) is printed and stored beside the table.",
        "fracrisk predict --model runs/a/models/coxph --cohort new.csv --out preds.csv",
        "fracrisk predict --model M --cohort new.csv --horizons 5 10 --times 1 2 3 "
        "--out preds.csv --plots curves/",
    )
    parser.add_argument("--model", required=True, help="saved model directory")
    parser.add_argument("--cohort", required=True, help="patients (CSV or Parquet)")
    parser.add_argument("--out", required=True, help="output CSV")
    parser.add_argument("--horizons", nargs="+", type=float, default=[5.0, 10.0])
    parser.add_argument("--times", nargs="+", type=float, default=None, help="curve times, years")
    parser.add_argument("--plots", default=None, help="folder for one PNG curve per patient")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _cohort_arguments(parser)


@_command("predict", _predict_arguments)
def _run_predict(args: argparse.Namespace) -> int:
    """Survival curves and risks per patient from a saved model."""
    from fracrisk._io import atomic_path, atomic_write_json
    from fracrisk.config import read_config
    from fracrisk.run import load_cohort, predict_table

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    config = read_config(args.config) if args.config else None
    models = _load_models([args.model])
    cohort = load_cohort(config, args.cohort)
    table = predict_table(models, cohort, horizons=args.horizons, times=args.times)
    with atomic_path(out) as tmp:
        table.to_csv(tmp)
    atomic_write_json(
        out.with_name(out.name + ".json"),
        {"model": args.model, "cohort": args.cohort, "risk_types": table.attrs["risk_types"]},
    )
    if args.plots:
        _plot_patients(Path(args.plots), models, cohort, args.horizons, args.times)
    for name, kind in table.attrs["risk_types"].items():
        print(f"{name}: {kind.replace('_', '-')} risk; {len(table)} patients -> {out}")
    return 0


def _plot_patients(folder: Path, models: dict, cohort, horizons, times) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from fracrisk._io import atomic_path

    grid = np.linspace(0.0, max(horizons), 101)
    folder.mkdir(parents=True, exist_ok=True)
    curves = {
        name: m.predict_survival(cohort, grid)
        for name, m in models.items()
        if hasattr(m, "predict_survival")
    }
    ids = [str(i) for i in np.asarray(cohort.ids)]
    for k, patient in enumerate(tqdm(ids, desc="plots", unit="patient", leave=False)):
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for name, surv in curves.items():
            ax.step(grid, surv.iloc[k].to_numpy(), where="post", label=name)
        ax.set_xlabel("years")
        ax.set_ylabel("probability of no fracture")
        ax.set_title(f"patient {patient}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in patient)
        with atomic_path(folder / f"patient_{safe}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "Render report.html (and report.md) again from a run's evaluation.json.",
        "fracrisk report runs/my_study",
    )
    parser.add_argument("run_dir", help="a run directory with evaluation.json")


@_command("report", _report_arguments)
def _run_report(args: argparse.Namespace) -> int:
    """Re-render a run's report from its evaluation.json."""
    from fracrisk.evaluation import read_evaluations, write_report

    run = Path(args.run_dir)
    source = run / "evaluation.json"
    if not source.exists():
        raise FileNotFoundError(f"{source} not found: is {run} a fracrisk run directory?")
    evaluations = read_evaluations(source)
    paths = write_report(evaluations, run, title=f"fracrisk report: {run.name}")
    print(f"report: {paths['html']}")
    return 0


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "Grad-CAM overlays of an image model: what in each image raises the predicted hazard "
        "above the cohort's average, for the highest-risk patients (or --patients).",
        "fracrisk explain --model runs/a/models/images_clinical --cohort test.parquet "
        "--out gradcam/",
    )
    parser.add_argument("--model", required=True, help="saved image model directory")
    parser.add_argument("--cohort", required=True, help="patients with images")
    parser.add_argument("--out", required=True, help="output folder for the PNGs")
    parser.add_argument("--top", type=int, default=6, help="highest-risk patients (default 6)")
    parser.add_argument("--patients", nargs="+", default=None, help="patient ids instead")
    _cohort_arguments(parser)


@_command("explain", _explain_arguments)
def _run_explain(args: argparse.Namespace) -> int:
    """Grad-CAM PNGs of an image model for chosen or the highest-risk patients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fracrisk._io import atomic_path
    from fracrisk.config import read_config
    from fracrisk.explain import plot_grad_cam
    from fracrisk.models import ImageSurvivalModel
    from fracrisk.run import load_cohort

    config = read_config(args.config) if args.config else None
    ((name, model),) = _load_models([args.model]).items()
    if not isinstance(model, ImageSurvivalModel):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, not an image model")
    cohort = load_cohort(config, args.cohort)
    ids = [str(i) for i in np.asarray(cohort.ids)]
    if args.patients:
        unknown = [p for p in args.patients if p not in ids]
        if unknown:
            raise ValueError(f"patients {unknown} are not in {args.cohort}")
        positions = [ids.index(p) for p in args.patients]
    else:
        if args.top < 1:
            raise ValueError(f"--top must be at least 1, got {args.top}")
        score = np.asarray(model.predict_score(cohort))
        positions = [int(i) for i in np.argsort(-score)[: args.top]]
    images, maps = model.grad_cam(cohort, positions=positions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for k, position in enumerate(positions):
        fig = plot_grad_cam(
            images[k : k + 1],
            maps[k : k + 1],
            labels=model.item_names_,
            titles=[f"patient {ids[position]}"],
        )
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ids[position])
        with atomic_path(out / f"gradcam_{safe}.png") as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
    print(f"{len(positions)} Grad-CAM figure(s) of {name} -> {out}")
    return 0


def _benchmark_folder() -> Path:
    """``benchmarks/`` of the source checkout fracrisk runs from (not part of a wheel)."""
    import fracrisk

    folder = Path(fracrisk.__file__).resolve().parents[2] / "benchmarks"
    if not folder.is_dir():
        raise FileNotFoundError(
            "fracrisk bench runs the scripts of a source checkout's benchmarks/ folder, and "
            f"there is none beside this installation ({folder}); clone the repository"
        )
    return folder


def _benchmarks() -> dict[str, tuple[Path, str]]:
    import ast

    found = {}
    for path in sorted(_benchmark_folder().glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        found[path.stem] = (path, doc.strip().splitlines()[0] if doc else "")
    return found


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    _examples(
        parser,
        "List or run the benchmark scripts of the source checkout (each prints what it "
        "measured on this machine, with the peers in the same run). Arguments after the "
        "name go to the script.",
        "fracrisk bench                     # list them",
        "fracrisk bench bench_metrics -- --repeats 3",
        "fracrisk bench power -- --replicates 50",
    )
    parser.add_argument("name", nargs="?", default=None, help="benchmark to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


@_command("bench", _bench_arguments)
def _run_bench(args: argparse.Namespace) -> int:
    """List or run the benchmark scripts."""
    import subprocess

    found = _benchmarks()
    if args.name is None:
        width = max(map(len, found))
        for name, (_, summary) in found.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    if args.name not in found:
        import difflib

        close = difflib.get_close_matches(args.name, list(found), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"no benchmark {args.name!r}{hint}; run `fracrisk bench` for the list")
    extra = [a for a in args.args if a != "--"] if args.args[:1] == ["--"] else args.args
    return subprocess.call([sys.executable, str(found[args.name][0]), *extra])


#: Exit status of an internal error (BSD sysexits EX_SOFTWARE): a bug, not a usage error.
EXIT_BUG = 70


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fracrisk`` command."""
    parser = argparse.ArgumentParser(prog="fracrisk", description="Survival-based fracture risk.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, _) in _COMMANDS.items():
        add_arguments(sub.add_parser(name, help=(_COMMANDS[name][1].__doc__ or "").strip()))
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command][1](args)
    except (
        FileExistsError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    ) as err:
        # fracrisk raises ValueError (or a subclass) for every problem with the user's input
        print(f"fracrisk {args.command}: error: {err}", file=sys.stderr)
        if ", row" in str(err):
            print(
                "(rows are counted as pandas does: 0 is the first data row under the header)",
                file=sys.stderr,
            )
        return 2
    except KeyboardInterrupt:
        print(
            f"fracrisk {args.command}: interrupted; nothing half-written is kept", file=sys.stderr
        )
        return 130
    except Exception:  # an internal error: say so, with the traceback to report
        import traceback

        traceback.print_exc()
        print(
            f"fracrisk {args.command}: internal error (a bug in fracrisk, not in your input); "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_BUG
