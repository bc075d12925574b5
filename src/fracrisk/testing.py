"""Assertions shared by fracrisk's tests and useful in users' own tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["assert_valid_survival", "tiny_ct_cohort"]


def assert_valid_survival(surv: pd.DataFrame | np.ndarray, *, atol: float = 0.0) -> None:
    """Assert that survival curves (patients x increasing times) are valid.

    Every value is finite and in [0, 1], and every row is non-increasing in time (up to
    ``atol``). Raises :class:`AssertionError` naming the first offending patient.
    """
    values = np.asarray(surv, dtype=np.float64)
    if values.ndim != 2:
        raise AssertionError(f"survival must be 2-D (patients x times), got shape {values.shape}")
    if isinstance(surv, pd.DataFrame):
        times = np.asarray(surv.columns, dtype=np.float64)
        if np.any(np.diff(times) <= 0):
            raise AssertionError("survival columns (times) must be strictly increasing")
    rows = surv.index if isinstance(surv, pd.DataFrame) else np.arange(len(values))
    bad = ~np.isfinite(values).all(1) | (values < -atol).any(1) | (values > 1 + atol).any(1)
    if bad.any():
        raise AssertionError(f"survival outside [0, 1] or not finite for patient {rows[bad][0]!r}")
    rising = (np.diff(values, axis=1) > atol).any(1)
    if rising.any():
        raise AssertionError(f"survival increases over time for patient {rows[rising][0]!r}")


def tiny_ct_cohort(
    directory, n: int = 60, *, size: int = 16, seed: int = 0, frax: bool = False
) -> pd.DataFrame:
    """Write ``n`` tiny hip-CT-like volumes whose dense ball sets the hazard; return the table.

    Each volume (``size``³ voxels of 1 mm, NIfTI) is air with a ball of HU
    :math:`400 + 300 z`; the fracture hazard is :math:`0.2 e^{z}` per year and follow-up is
    censored uniformly on 0.5-8 years, so an image model can learn :math:`z` from the
    images. Columns: ``patient_id``, ``time``, ``event``, ``age`` (noise) and
    ``hip_ct_path``. For fast tests and smoke benchmarks of the image models.

    With ``frax=True`` the table also holds the FRAX risk factors (noise, except a
    femoral-neck T-score of :math:`-1 + 0.9 z` plus noise, which the ball's density shows)
    and a third of the censored rows become deaths (event 2), for models that need both.
    """
    from pathlib import Path

    import nibabel as nib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    grid = np.indices((size, size, size)).astype(np.float32) - (size - 1) / 2
    ball = (grid**2).sum(0) <= (size * 5 / 16) ** 2
    paths = []
    for i in range(n):
        volume = np.full(grid.shape[1:], -1000.0) + rng.normal(0, 20, grid.shape[1:])
        volume[ball] = 400.0 + 300.0 * z[i]
        path = directory / f"ct_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)), path)
        paths.append(str(path))
    event_time = rng.exponential(1.0 / (0.2 * np.exp(z)))
    censor = rng.uniform(0.5, 8.0, n)
    table = pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(n)],
            "time": np.minimum(event_time, censor).round(4),
            "event": (event_time <= censor).astype(int),
            "age": rng.uniform(50, 80, n).round(),
            "hip_ct_path": paths,
        }
    )
    if frax:
        from fracrisk.data.schema import BINARY_RISK_FACTORS

        table["sex"] = np.where(rng.random(n) < 0.7, "F", "M")
        table["bmi"] = rng.normal(27, 4, n).clip(16, 45).round(1)
        for name in BINARY_RISK_FACTORS:
            table[name] = (rng.random(n) < 0.2).astype(int)
        t_score = -1.0 + 0.9 * z + rng.normal(0, 0.3, n)
        table["femoral_neck_t_score"] = t_score.clip(-4.9, 2.9).round(2)
        died = (table["event"] == 0) & (rng.random(n) < 1 / 3)
        table.loc[died, "event"] = 2
    return table
