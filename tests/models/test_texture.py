"""Texture Cox and opportunistic FRAX: they read the density that the images show."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk import Cohort, OpportunisticFrax, TextureCox
from fracrisk.exceptions import DataWarning
from fracrisk.metrics import harrell_c
from fracrisk.testing import tiny_ct_cohort

OPTIONS = {"size": (24, 24)}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    train = tiny_ct_cohort(tmp_path_factory.mktemp("train_cts"), 120, seed=0, frax=True)
    test = tiny_ct_cohort(tmp_path_factory.mktemp("test_cts"), 80, seed=1, frax=True)
    return train, test


def test_opportunistic_frax_estimates_the_t_score_of_new_patients(cohorts):
    train, test = cohorts
    model = OpportunisticFrax("drr", image_options=OPTIONS, cv_folds=3).fit(train)
    estimate = model.predict_t_score(test)
    y = test["femoral_neck_t_score"].to_numpy()
    r2 = 1 - ((y - estimate.to_numpy()) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 > 0.6 and model.t_score_r2_ > 0.6  # the T-score is 0.9 z + noise (SD 0.3)
    assert estimate.index.equals(test.set_index("patient_id").index)
    cif = model.predict_cumulative_incidence(test, [1.0, 5.0])
    surv = model.predict_survival(test, [1.0, 5.0])
    np.testing.assert_allclose(cif.to_numpy(), 1 - surv.to_numpy(), atol=1e-12)
    assert model.risk_type == "absolute" and cif.attrs["risk_type"] == "absolute"


def test_prediction_needs_no_dxa(cohorts):
    train, test = cohorts
    model = OpportunisticFrax("drr", image_options=OPTIONS, cv_folds=3).fit(train)
    without = test.drop(columns=["femoral_neck_t_score"])
    np.testing.assert_array_equal(model.predict_score(without), model.predict_score(test))


def test_rows_without_dxa_are_masked_from_the_t_score_fit(cohorts):
    train, _ = cohorts
    partial = train.copy()
    partial.loc[partial.index[::3], "femoral_neck_t_score"] = np.nan
    with pytest.warns(DataWarning, match="missing"):
        partial = Cohort(partial, missing="impute")  # DXA for two patients in three
    model = OpportunisticFrax("drr", image_options=OPTIONS, cv_folds=3).fit(partial)
    assert model.n_train_ == len(train) and model.t_score_r2_ > 0.5
    few = train.copy()
    few.loc[few.index[4:], "femoral_neck_t_score"] = np.nan
    with pytest.warns(DataWarning, match="missing"):
        few = Cohort(few, missing="impute")
    with pytest.raises(ValueError, match="only 4 rows have a 'femoral_neck_t_score' value"):
        OpportunisticFrax("drr", image_options=OPTIONS, cv_folds=3).fit(few)
    with pytest.raises(ValueError, match="'dxa_t' .* is not in the table"):
        OpportunisticFrax("drr", image_options=OPTIONS, target="dxa_t").fit(train)


def test_texture_cox_ranks_new_patients_by_what_the_images_show(cohorts):
    train, test = cohorts
    model = TextureCox("drr", image_options=OPTIONS, cv_folds=3).fit(train, covariates=["age"])
    assert model.penalizer_ in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
    c = harrell_c(test["time"], test["event"] == 1, model.predict_score(test))
    assert c > 0.6  # the hazard is exp(z), z the ball's density; age is noise
    fixed = TextureCox("drr", image_options=OPTIONS, penalizer=5.0).fit(train, covariates=[])
    assert fixed.penalizer_ == 5.0 and "age" not in fixed.cox_.covariates_


@pytest.fixture(scope="module")
def spine(tmp_path_factory):
    from fracrisk.simulate import cohort

    root = tmp_path_factory.mktemp("spine")
    return cohort(160, preset="kong2022", seed=3, images=("spine",), out_dir=root / "images")


def test_texture_cox_on_spine_patches_measures_the_vertebrae_shape(spine, tmp_path, monkeypatch):
    from fracrisk.encoders.texture import TextureFeatures
    from fracrisk.models import load_model

    options = {"size": (32, 32), "cache_dir": str(tmp_path / "cache")}
    model = TextureCox("patches", image_options=options, penalizer=10.0).fit(spine, ["age"])
    assert model.morphometry_ is not None and "n_deformed" in model.feature_columns_
    # The shape features see the simulator's prevalent vertebral fractures.
    table = model._feature_frame(spine)[0]
    fractured = spine.truth.loc[table.index, "n_prevalent_vertebral"].to_numpy() > 0
    assert fractured.any() and (~fractured).any()
    counted = table["n_deformed"].to_numpy() > 0
    assert (counted == fractured).mean() > 0.95

    # Features of cached images are described once: a second prediction reads no image.
    first = model.predict_score(spine)
    calls = []
    original = TextureFeatures.transform
    monkeypatch.setattr(
        TextureFeatures, "transform", lambda self, x: calls.append(1) or original(self, x)
    )
    np.testing.assert_array_equal(model.predict_score(spine), first)
    assert calls == []

    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.morphometry_ is not None
    np.testing.assert_allclose(loaded.predict_score(spine), first)
    plain = TextureCox("patches", image_options=options, penalizer=10.0, morphometry=False)
    assert "n_deformed" not in plain.fit(spine, ["age"]).feature_columns_


def test_morphometry_needs_spine_patches(cohorts):
    train, _ = cohorts
    with pytest.raises(ValueError, match="morphometry=True needs spine patches"):
        TextureCox("drr", image_options=OPTIONS, morphometry=True).fit(train, ["age"])
