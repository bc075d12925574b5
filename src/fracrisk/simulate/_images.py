"""Write the simulated images of a cohort to disk, patient by patient, in shards."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk.data.schema import (
    HIP_CT_COLUMN,
    SPINE_KEYPOINTS_COLUMN,
    SPINE_PIXEL_SPACING_COLUMN,
    SPINE_XRAY_COLUMN,
)
from fracrisk.imaging.anatomy import VERTEBRAE

__all__ = ["RADIOGRAPH_SCALE", "write_images"]

#: Radiographs are stored as 16-bit PNG holding round(line integral * RADIOGRAPH_SCALE).
RADIOGRAPH_SCALE = 1000.0
SHARD_SIZE = 1000
CHUNK = 50  # patients per task handed to a worker process
_BMD_REF_MEAN, _BMD_REF_SD = 0.858, 0.120


def _save_png16(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from fracrisk._io import atomic_path

    values = np.clip(np.round(image * RADIOGRAPH_SCALE), 0, 65535).astype(np.uint16)
    with atomic_path(path) as tmp:
        Image.fromarray(values).save(tmp, format="PNG")


def write_images(
    clinical: pd.DataFrame,
    truth: pd.DataFrame,
    images,
    out_dir,
    *,
    seed: int,
    shape=None,
    progress: bool = False,
    ct_format: str = "nii.gz",
    workers: int | None = None,
) -> dict[str, list]:
    """Generate and write every patient's images; returns the manifest columns.

    Patient *i* draws from its own generator ``default_rng([seed, i])``, so a patient's
    images do not depend on the others, on ``n`` or on ``workers``. With ``workers`` > 1,
    patients are handed to that many processes (spawned: call from a script guarded by
    ``if __name__ == "__main__"``, or from the ``fracrisk simulate`` command) in chunks of
    ``CHUNK``. Each patient's images are written as soon as they are made, so memory does
    not grow with ``n``. ``ct_format`` is ``"nii.gz"``, ``"nii"`` or ``"dicom"`` (a
    directory with one file per slice). Paths are absolute.
    """
    if ct_format not in ("nii.gz", "nii", "dicom"):
        raise ValueError(f"ct_format must be 'nii.gz', 'nii' or 'dicom', got {ct_format!r}")
    out = Path(out_dir).resolve()
    n = len(clinical)
    workers = 1 if workers is None else max(1, int(workers))
    chunks = [(start, min(start + CHUNK, n)) for start in range(0, n, CHUNK)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="images", unit="patient")
    tasks = [
        (
            clinical.iloc[start:stop],
            truth.iloc[start:stop],
            images,
            out,
            seed,
            shape,
            ct_format,
            start,
        )
        for start, stop in chunks
    ]
    parts = []
    if workers == 1 or len(chunks) == 1:
        for task in tasks:
            parts.append(_write_range(*task))
            if bar is not None:
                bar.update(len(task[0]))
    else:
        context = multiprocessing.get_context("spawn")  # safe with torch and threads
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_one_thread_per_worker
        ) as pool:
            results = pool.map(_write_range, *zip(*tasks, strict=True))
            for task, part in zip(tasks, results, strict=True):
                parts.append(part)
                if bar is not None:
                    bar.update(len(task[0]))
    if bar is not None:
        bar.close()
    return {key: [v for part in parts for v in part[key]] for key in parts[0]}


def _one_thread_per_worker() -> None:
    """Worker processes share the cores: one torch thread each avoids oversubscription."""
    import torch

    torch.set_num_threads(1)


def _write_range(
    clinical: pd.DataFrame,
    truth: pd.DataFrame,
    images,
    out: Path,
    seed: int,
    shape,
    ct_format: str,
    offset: int,
) -> dict[str, list]:
    """Make and write the images of patients ``offset``, ``offset + 1``, ..."""
    columns: dict[str, list] = {}
    if "hip_ct" in images:
        from fracrisk.simulate.hip_ct import hip_ct_volume, write_dicom_series, write_nifti

        columns[HIP_CT_COLUMN] = []
    if "spine" in images:
        from fracrisk.simulate.spine import lateral_radiograph, spine_volume

        columns.update(
            {SPINE_XRAY_COLUMN: [], SPINE_KEYPOINTS_COLUMN: [], SPINE_PIXEL_SPACING_COLUMN: []}
        )
    true_bmd = np.clip(_BMD_REF_MEAN + _BMD_REF_SD * truth["true_t_score"].to_numpy(), 0.2, 1.6)
    for k in range(len(clinical)):
        i = offset + k
        rng = np.random.default_rng([seed, i])
        row, hidden = clinical.iloc[k], truth.iloc[k]
        shard = out / "images" / f"shard_{i // SHARD_SIZE:04d}"
        shard.mkdir(parents=True, exist_ok=True)
        pid = row["patient_id"]
        if "hip_ct" in images:
            kwargs = {} if shape is None else {"shape": tuple(shape)}
            ct = hip_ct_volume(
                femoral_neck_bmd=float(true_bmd[k]),
                z=float(hidden["z"]),
                bmi=float(row["bmi"]),
                sex=str(row["sex"]),
                hip_axis_length=float(hidden["hip_axis_length"]),
                neck_shaft_angle=float(hidden["neck_shaft_angle"]),
                rng=rng,
                **kwargs,
            )
            if ct_format == "dicom":  # a series: one file per slice in a directory
                path = write_dicom_series(ct, shard / f"{pid}_hip_ct", patient_id=str(pid))
            else:
                path = shard / f"{pid}_hip_ct.{ct_format}"
                write_nifti(ct, path)
            columns[HIP_CT_COLUMN].append(str(path))
        if "spine" in images:
            spine = spine_volume(
                femoral_neck_bmd=float(true_bmd[k]),
                z=float(hidden["z"]),
                genant_grades=[int(hidden[f"genant_{v}"]) for v in VERTEBRAE],
                deformity_types=[str(hidden[f"deformity_{v}"]) for v in VERTEBRAE],
                bmi=float(row["bmi"]),
                sex=str(row["sex"]),
                rng=rng,
            )
            xray = lateral_radiograph(spine)
            path = shard / f"{pid}_spine_lateral.png"
            _save_png16(xray.image, path)
            columns[SPINE_XRAY_COLUMN].append(str(path))
            columns[SPINE_KEYPOINTS_COLUMN].append(json.dumps(np.round(xray.keypoints, 2).tolist()))
            columns[SPINE_PIXEL_SPACING_COLUMN].append(float(xray.pixel_spacing[0]))
    return columns
