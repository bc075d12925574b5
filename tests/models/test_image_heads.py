"""Image models with the absolute-risk heads: death competing, on a small simulated CT cohort."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fracrisk import ImageSurvivalModel, load_model
from fracrisk.metrics import wolbers_c
from tests.models.test_image import FAST, _datasets

N = 140


@pytest.fixture(scope="module")
def competing(tmp_path_factory):
    """CT density sets the fracture hazard, exp(1.5 z); death (code 2) has its own hazard."""
    rng = np.random.default_rng(4)
    out = tmp_path_factory.mktemp("cts_competing")
    z = rng.normal(size=N)
    grid = np.indices((24, 24, 24)).astype(np.float32) - 11.5
    ball = (grid**2).sum(0) <= 8.0**2
    cylinder = (grid[1] ** 2 + grid[2] ** 2) <= 10.0**2
    paths = []
    for i in range(N):
        volume = np.where(cylinder, 0.0, -1000.0) + rng.normal(0, 20, grid.shape[1:])
        volume[ball] = 500.0 + 400.0 * z[i]
        path = out / f"ct_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)), path)
        paths.append(str(path))
    fracture = rng.exponential(1.0 / (0.15 * np.exp(1.5 * z)))
    death = rng.exponential(1.0 / 0.15, N)
    censor = rng.uniform(0.5, 8.0, N)
    time = np.minimum.reduce([fracture, death, censor])
    event = np.select([time == fracture, time == death], [1, 2], 0)
    df = pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(N)],
            "time": time,
            "event": event,
            "age": rng.uniform(50, 80, N).round(),
            "hip_ct_path": paths,
        }
    )
    cache = tmp_path_factory.mktemp("cache_competing")
    train, test = _datasets(df, cache, train_rows=slice(0, 100), test_rows=slice(100, N))
    return train, test, z[100:]


@pytest.mark.parametrize("head", ["cause_specific", "logistic_hazard"])
def test_image_model_gives_absolute_risks(head, competing, tmp_path):
    train, test, z_test = competing
    assert set(np.unique(train.event_code)) == {0, 1, 2}
    model = ImageSurvivalModel("multiview_drr", head=head, n_intervals=8, **FAST).fit(train)
    assert model.risk_type == "absolute"
    times = [1.0, 3.0, 5.0]
    fracture = model.predict_cumulative_incidence(test, times)
    death = model.predict_cumulative_incidence(test, times, cause=2)
    f, d = fracture.to_numpy(), death.to_numpy()
    assert f.shape == (len(test), 3) and np.all(np.diff(f, axis=1) >= -1e-9)
    assert np.all((f >= 0) & (d >= 0) & (f + d <= 1 + 1e-9))
    np.testing.assert_allclose(model.predict_risk(test, 3.0), fracture[3.0])
    # the images show density, which sets the fracture risk: the ranking follows it
    # (100 training patients, 12 epochs: a modest bar, but a wrong sign or no signal fails)
    correlation = np.corrcoef(f[:, 1], z_test)[0, 1]
    assert correlation > 0.3, correlation
    c = wolbers_c(test.time, test.event_code, f[:, 1])
    assert c > 0.6, c
    model.save(tmp_path / head)
    again = load_model(tmp_path / head)
    np.testing.assert_allclose(
        again.predict_cumulative_incidence(test, times, cause=2), death, rtol=1e-6
    )


def test_absolute_heads_refuse_two_stage_training(competing):
    train, _, _ = competing
    model = ImageSurvivalModel(
        "multiview_drr", head="deephit", training="two_stage", auxiliary={"age": 1.0}, **FAST
    )
    with pytest.raises(ValueError, match="end_to_end"):
        model.fit(train)
