"""ImageSurvivalModel on the CT volume (``kind="volume"``, the 3-D ResNet ``ct_volume``)."""

from __future__ import annotations

import numpy as np
import pytest

from fracrisk import ImageSurvivalModel, load_model
from fracrisk.data import ImageCohortDataset
from fracrisk.metrics import harrell_c
from tests.models.test_image import N, cohort  # noqa: F401 - the small density-ball CTs

SIZE = (12, 12, 12)
FAST = {
    "encoder_kwargs": {"widths": (8, 16, 16, 32)},
    "head_kwargs": {"hidden": [16], "dropout": 0.0},
    "batch_size": 32,
    "learning_rate": 3e-3,
    "max_epochs": 12,
    "patience": 12,
    "accelerator": "cpu",
    "progress": False,
    "seed": 0,
}


def test_volume_items_keep_the_density_and_are_cached(cohort, tmp_path):  # noqa: F811
    df, z = cohort
    data = ImageCohortDataset(df, "volume", size=SIZE, cache_dir=tmp_path, progress=False)
    image = data[0][0]
    assert image.shape == (1, *SIZE) and data.image_shape == (1, *SIZE)
    centre = np.array([float(data[i][0][0, 6, 6, 6]) for i in range(len(data))])
    assert np.corrcoef(centre, z)[0, 1] > 0.99  # the ball's HU / 1000 follows z
    assert data.image_options == {
        "kind": "volume",
        "image_shape": [1, *SIZE],
        "window": None,
        "ct_spacing": 1.0,
    }
    again = ImageCohortDataset(df, "volume", size=SIZE, cache_dir=tmp_path, progress=False)
    assert again.cache_info["from_cache"] == N and again.cache_info["loaded"] == 0
    windowed = ImageCohortDataset(df.iloc[:4], "volume", size=SIZE, window=(-1000, 1000))
    assert 0.0 <= float(windowed[0][0].min()) and float(windowed[0][0].max()) <= 1.0
    with pytest.raises(ValueError, match=r"three integers \(D, H, W\)"):
        ImageCohortDataset(df.iloc[:4], "volume", size=(12, 12))


@pytest.mark.filterwarnings("ignore:.*resamples left the metric undefined")
def test_the_3d_model_learns_the_hazard_and_saves(cohort, tmp_path):  # noqa: F811
    df, z = cohort
    train, test = df.iloc[:110], df.iloc[110:]
    model = ImageSurvivalModel(
        "ct_volume", image_options={"size": SIZE, "covariates": ["age"]}, **FAST
    ).fit(train)
    assert model.image_config_["kind"] == "volume" and model.item_names_ == ["ct"]
    score = model.predict_score(test)
    c = harrell_c(test["time"].to_numpy(), test["event"].to_numpy(), score)
    assert c > 0.65, c  # the true hazard is exp(1.5 z), z set by the ball's density
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_score(test), score)
    with pytest.raises(TypeError, match="arrange_feature_maps"):
        model.grad_cam(test, [0])
