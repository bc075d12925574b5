"""Write the simulated images of a cohort to disk, patient by patient, in shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fracrisk.simulate.cohort import VERTEBRAE

__all__ = ["RADIOGRAPH_SCALE", "write_images"]

#: Radiographs are stored as 16-bit PNG holding round(line integral * RADIOGRAPH_SCALE).
RADIOGRAPH_SCALE = 1000.0
SHARD_SIZE = 1000
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
) -> dict[str, list]:
    """Generate and write every patient's images; returns the manifest columns.

    Patient *i* draws from its own generator ``default_rng([seed, i])``, so a patient's
    images do not depend on the others (or on ``n``). Only one patient's volumes are in
    memory at a time. Paths are absolute.
    """
    out = Path(out_dir).resolve()
    columns: dict[str, list] = {}
    if "hip_ct" in images:
        from fracrisk.simulate.hip_ct import hip_ct_volume, write_nifti

        columns["hip_ct_path"] = []
    if "spine" in images:
        from fracrisk.simulate.spine import lateral_radiograph, spine_volume

        columns.update({"spine_xray_path": [], "spine_keypoints": [], "spine_pixel_spacing_mm": []})
    iterator = range(len(clinical))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="images", unit="patient")
    true_bmd = _BMD_REF_MEAN + _BMD_REF_SD * truth["true_t_score"].to_numpy()
    for i in iterator:
        rng = np.random.default_rng([seed, i])
        row, hidden = clinical.iloc[i], truth.iloc[i]
        shard = out / "images" / f"shard_{i // SHARD_SIZE:04d}"
        shard.mkdir(parents=True, exist_ok=True)
        pid = row["patient_id"]
        if "hip_ct" in images:
            kwargs = {} if shape is None else {"shape": tuple(shape)}
            ct = hip_ct_volume(
                femoral_neck_bmd=float(true_bmd[i]),
                z=float(hidden["z"]),
                bmi=float(row["bmi"]),
                sex=str(row["sex"]),
                hip_axis_length=float(hidden["hip_axis_length"]),
                neck_shaft_angle=float(hidden["neck_shaft_angle"]),
                rng=rng,
                **kwargs,
            )
            columns["hip_ct_path"].append(str(write_nifti(ct, shard / f"{pid}_hip_ct.nii.gz")))
        if "spine" in images:
            spine = spine_volume(
                femoral_neck_bmd=float(true_bmd[i]),
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
            columns["spine_xray_path"].append(str(path))
            columns["spine_keypoints"].append(json.dumps(np.round(xray.keypoints, 2).tolist()))
            columns["spine_pixel_spacing_mm"].append(float(xray.pixel_spacing[0]))
    return columns
