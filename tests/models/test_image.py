"""ImageSurvivalModel: learning from images, absolute curves, safe save/load, checks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from fracrisk import ImageSurvivalModel, load_model
from fracrisk.data import ImageCohortDataset
from fracrisk.exceptions import DataWarning, NotFittedError
from fracrisk.imaging import default_train_transform
from fracrisk.metrics import harrell_c
from fracrisk.testing import assert_valid_survival

N = 160
ENCODER = {
    "backbone": "resnet10t",
    "backbone_kwargs": {"output_stride": 8},  # 4 x 4 feature maps of 32 x 32 DRRs (Grad-CAM)
    "shared_backbone": True,
    "pooling": "mean",
}
FAST = {
    "encoder_kwargs": ENCODER,
    "head_kwargs": {"hidden": [16], "dropout": 0.0},
    "batch_size": 32,
    "learning_rate": 3e-3,
    "max_epochs": 12,
    "patience": 12,
    "accelerator": "cpu",
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Small CTs whose bone density sets the hazard: h = exp(1.5 z), density = 500 + 400 z.

    Each CT is air with a water cylinder and a dense ball whose HU follows the patient's
    latent z; age is a noise covariate. Times are exponential, censored uniformly.
    """
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("cts")
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
    event_time = rng.exponential(1.0 / (0.15 * np.exp(1.5 * z)))
    censor = rng.uniform(0.5, 8.0, N)
    df = pd.DataFrame(
        {
            "patient_id": [f"p{i:03d}" for i in range(N)],
            "time": np.minimum(event_time, censor),
            "event": (event_time <= censor).astype(int),
            "age": rng.uniform(50, 80, N).round(),
            "hip_ct_path": paths,
        }
    )
    return df, z


def _datasets(df, cache, *, train_rows, test_rows, covariates=("age",)):
    train = ImageCohortDataset(
        df.iloc[train_rows],
        "drr",
        covariates=list(covariates),
        size=(32, 32),
        cache_dir=cache,
        transform=default_train_transform("drr", seed=0),
        progress=False,
    )
    test = ImageCohortDataset(
        df.iloc[test_rows],
        "drr",
        covariates=list(covariates),
        preprocessor=train.preprocessor,
        size=(32, 32),
        cache_dir=cache,
        progress=False,
    )
    return train, test


@pytest.fixture(scope="module")
def fitted(cohort, tmp_path_factory):
    df, z = cohort
    cache = tmp_path_factory.mktemp("cache")
    train, test = _datasets(df, cache, train_rows=slice(0, 110), test_rows=slice(110, N))
    model = ImageSurvivalModel("multiview_drr", **FAST).fit(train)
    return model, train, test, z[110:]


def test_the_model_learns_the_hazard_from_the_images(fitted):
    model, _, test, z_test = fitted
    score = model.predict_score(test)
    c_model = harrell_c(test.time, test.event, score)
    c_truth = harrell_c(test.time, test.event, z_test)
    print(f"held-out Harrell C: model {c_model:.3f}, true latent z {c_truth:.3f}")
    assert c_model > 0.7
    assert c_model > c_truth - 0.1


def test_grad_cam_of_the_highest_and_lowest_risk_patients(fitted):
    """Against the average test patient, the highest-risk patients have something that raises
    their hazard (maps scaled to a peak of 1); the lowest-risk have less of it."""
    model, _, test, _ = fitted
    order = np.argsort(-model.predict_score(test))
    images, maps = model.grad_cam(test, positions=order[:6])
    assert images.shape == maps.shape == (6, 3, 32, 32)
    assert float(maps.min()) >= 0.0
    torch.testing.assert_close(maps.amax(dim=(1, 2, 3)), torch.ones(6))
    signed_high = model.grad_cam(test, positions=order[:6])[1]
    assert torch.equal(signed_high, maps)  # deterministic
    _, low = model.grad_cam(test, positions=order[-6:])
    assert float(low.mean()) < float(maps.mean())


def test_absolute_curves_and_risk(fitted):
    model, _, test, _ = fitted
    times = [0.5, 1.0, 2.0, 4.0]
    surv = model.predict_survival(test, times=times)
    assert surv.shape == (len(test), 4) and list(surv.index) == list(test.patient_ids)
    assert_valid_survival(surv)
    risk = model.predict_risk(test, horizon=2.0)
    np.testing.assert_allclose(risk.to_numpy(), 1.0 - surv[2.0].to_numpy())
    # Higher log hazard, lower survival.
    eta = model.predict_log_hazard(test).to_numpy()
    order = np.argsort(eta)
    assert np.all(np.diff(surv[4.0].to_numpy()[order]) <= 1e-12)
    assert len(model.history_.train_loss) >= 1 and model.n_train_ == 110


def test_save_and_load_give_identical_predictions(fitted, tmp_path):
    model, _, test, _ = fitted
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "config.json",
        "weights.safetensors",
    ]
    again = load_model(tmp_path / "model")
    assert isinstance(again, ImageSurvivalModel) and again.get_params() == model.get_params()
    pd.testing.assert_frame_equal(
        again.predict_survival(test, times=[1.0, 3.0]), model.predict_survival(test, times=[1, 3])
    )
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "model")
    model.save(tmp_path / "model", overwrite=True)
    assert ImageSurvivalModel.load(tmp_path / "model").n_train_ == 110


def test_prediction_ignores_the_datasets_augmentation(fitted):
    model, train, _, _ = fitted
    first = model.predict_log_hazard(train)
    train.set_epoch(3)
    torch.testing.assert_close(
        torch.from_numpy(model.predict_log_hazard(train).to_numpy()),
        torch.from_numpy(first.to_numpy()),
    )


def test_datasets_must_match_the_training_images_and_covariates(fitted, cohort, tmp_path):
    model, train, _, _ = fitted
    df, _ = cohort
    other_size = ImageCohortDataset(
        df.iloc[:8], "drr", covariates=["age"], preprocessor=train.preprocessor, size=(24, 24)
    )
    with pytest.raises(ValueError, match="does not match the training images"):
        model.predict_survival(other_size)
    cone = ImageCohortDataset(
        df.iloc[:8],
        "drr",
        covariates=["age"],
        preprocessor=train.preprocessor,
        size=(32, 32),
        render_options={"geometry": "cone"},
    )
    with pytest.raises(ValueError, match="'type': 'cone'"):
        model.predict_score(cone)
    own_preprocessing = ImageCohortDataset(df.iloc[:8], "drr", covariates=["age"], size=(32, 32))
    with pytest.raises(ValueError, match="preprocessor=model.preprocessor_"):
        model.predict_log_hazard(own_preprocessing)
    with pytest.raises(TypeError, match="a Cohort, a DataFrame or an ImageCohortDataset"):
        model.predict_log_hazard(df.to_numpy())


def test_fitting_is_seeded_and_leaves_the_callers_rng_alone(cohort, tmp_path):
    df, _ = cohort
    train, test = _datasets(
        df, tmp_path, train_rows=slice(0, 40), test_rows=slice(40, 60), covariates=()
    )
    quick = {**FAST, "max_epochs": 1, "validation_fraction": 0.0}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = ImageSurvivalModel("multiview_drr", **quick).fit(train)
    assert torch.equal(torch.rand(3), expected_next)
    second = ImageSurvivalModel("multiview_drr", **quick).fit(train)
    pd.testing.assert_series_equal(first.predict_log_hazard(test), second.predict_log_hazard(test))
    assert first.preprocessor_ is None and first.covariate_names_ == []


def test_errors():
    with pytest.raises(NotFittedError):
        ImageSurvivalModel().predict_score(None)
    # settings are checked by fit, before any image is read
    with pytest.raises(ValueError, match="unknown encoder 'resnet'"):
        ImageSurvivalModel("resnet").fit(pd.DataFrame())
    with pytest.raises(ValueError, match="parameter 'batch_size' must be an int in"):
        ImageSurvivalModel(batch_size=1).fit(pd.DataFrame())
    with pytest.raises(ValueError, match="parameter 'validation_fraction'"):
        ImageSurvivalModel(validation_fraction=1.0).fit(pd.DataFrame())
    with pytest.raises(ValueError, match="has no num_features"):
        ImageSurvivalModel(torch.nn.Linear(2, 2)).fit(pd.DataFrame())
    with pytest.raises(TypeError, match="a Cohort, a DataFrame or an ImageCohortDataset"):
        ImageSurvivalModel().fit([1, 2])


def test_skipped_training_images_are_listed_and_prediction_never_skips(cohort, tmp_path):
    """``on_error="skip"`` leaves a training row out and records it; prediction refuses."""
    from fracrisk.data import Cohort
    from fracrisk.imaging import ImageReadError

    df, _ = cohort
    df = df.iloc[:40].copy()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not a volume")
    df.loc[df.index[7], "hip_ct_path"] = str(broken)
    options = {"size": (32, 32), "covariates": [], "on_error": "skip", "progress": False}
    model = ImageSurvivalModel(
        "multiview_drr",
        image_options={**options, "cache_dir": str(tmp_path / "cache")},
        **{**FAST, "max_epochs": 1, "validation_fraction": 0.0},
    )
    found = model.check_images(Cohort(df))  # prepares, trains nothing
    assert [(f.patient_id, f.path) for f in found] == [("p007", str(broken))]
    with pytest.warns(DataWarning, match=r"1 of 40 rows left out.*p007"):
        model.fit(Cohort(df))
    assert [f.patient_id for f in model.skipped_images_] == ["p007"]
    with pytest.raises(ImageReadError, match=r"broken.nii.gz.*row 7, patient_id 'p007'"):
        model.predict_score(Cohort(df))
    assert len(model.predict_score(Cohort(df.drop(index=df.index[7])))) == 39
