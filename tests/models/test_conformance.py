"""Every registered model keeps the one estimator protocol (a new model gets these by registering).

The checks: ``fit`` returns self; shapes and index of every prediction; S(0) = 1 and curves
non-increasing in [0, 1]; risk = 1 - S(horizon); predictions unchanged when the rows are
shuffled; a bit-identical save/load round trip; ``sklearn.base.clone``; a clear error
before ``fit``; a declared risk type carried by the predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import fracrisk
from fracrisk import create_model, list_models, load_model
from fracrisk.baselines import FraxStyleCalculator
from fracrisk.exceptions import NotFittedError
from fracrisk.models import RISK_TYPES
from fracrisk.simulate import clinical_cohort
from fracrisk.testing import assert_valid_survival, tiny_ct_cohort

TIMES = [0.0, 0.5, 1.0, 2.5, 5.0]
ALL_MODELS = list_models()


def test_every_model_family_is_registered():
    expected = {
        "coxph",
        "deepsurv",
        "image_survival",
        "frax_column",
        "frax_refit",
        "frax_calculator",
        "random_survival_forest",
        "gradient_boosting",
        "kaplan_meier",
        "texture_cox",
        "opportunistic_frax",
    }
    assert expected <= set(ALL_MODELS)


@pytest.fixture(scope="module")
def tabular():
    cohort = clinical_cohort(500, seed=3)
    df = cohort.df.copy()
    df["frax_mof_10y"] = FraxStyleCalculator().predict(df)["mof_10y"].to_numpy()
    df.index = pd.RangeIndex(len(df))
    return df


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """60 tiny CTs whose dense ball's HU sets the hazard and the T-score; FRAX risk factors."""
    return tiny_ct_cohort(tmp_path_factory.mktemp("conformance_cts"), 60, seed=0, frax=True)


def _data(name, tabular, images):
    return images if create_model(name).input_kind == "images" else tabular


def _model(name):
    cls = type(create_model(name))
    return create_model(name, **cls._test_params())


@pytest.fixture(scope="module")
def fitted(tabular, images):
    cache = {}

    def get(name):
        if name not in cache:
            model = _model(name)
            returned = model.fit(_data(name, tabular, images))
            cache[name] = (model, returned)
        return cache[name][0], cache[name][1]

    return get


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fit_returns_self_and_states_its_risk_type(name, fitted):
    model, returned = fitted(name)
    assert returned is model
    assert model.risk_type in RISK_TYPES
    assert model.risk_label == RISK_TYPES[model.risk_type]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_prediction_shapes_index_and_valid_curves(name, fitted, tabular, images):
    model, _ = fitted(name)
    data = _data(name, tabular, images)
    ids = pd.Index(data["patient_id"])
    surv = model.predict_survival(data, TIMES)
    assert surv.shape == (len(data), len(TIMES))
    assert surv.index.equals(ids)
    np.testing.assert_array_equal(surv.columns.to_numpy(), TIMES)
    assert surv.attrs["risk_type"] == model.risk_type
    assert_valid_survival(surv, atol=1e-12)
    np.testing.assert_allclose(surv[0.0].to_numpy(), 1.0, atol=1e-12)  # S(0) = 1
    score = np.asarray(model.predict_score(data))
    assert score.shape == (len(data),) and np.isfinite(score).all()
    risk = model.predict_risk(data, 5.0)
    assert risk.index.equals(ids) and risk.attrs["risk_type"] == model.risk_type
    np.testing.assert_allclose(risk.to_numpy(), 1.0 - surv[5.0].to_numpy(), atol=1e-12)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_predictions_do_not_depend_on_row_order(name, fitted, tabular, images):
    model, _ = fitted(name)
    data = _data(name, tabular, images)
    shuffled = data.sample(frac=1.0, random_state=1)
    direct = model.predict_survival(data, TIMES)
    permuted = model.predict_survival(shuffled, TIMES)
    assert permuted.index.equals(pd.Index(shuffled["patient_id"]))
    # float32 networks: a row's result may differ in the last bits with the rows batched
    # beside it (BLAS blocking); anything beyond float32 rounding is a real dependence.
    network = getattr(model, "network_", None)
    float32 = network is not None and next(network.parameters()).dtype == torch.float32
    rtol = 1e-6 if float32 else 1e-10
    pd.testing.assert_frame_equal(permuted.loc[direct.index], direct, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(
        pd.Series(model.predict_score(shuffled), index=permuted.index).loc[direct.index].to_numpy(),
        model.predict_score(data),
        rtol=rtol,
        atol=1e-6 if float32 else 1e-12,
    )


@pytest.mark.parametrize("name", ALL_MODELS)
def test_save_load_round_trip_is_bit_identical(name, fitted, tabular, images, tmp_path):
    model, _ = fitted(name)
    data = _data(name, tabular, images)
    if not model._can_save:
        with pytest.raises(NotImplementedError, match="cannot be saved safely"):
            model.save(tmp_path / "model")
        return
    model.save(tmp_path / "model")
    again = load_model(tmp_path / "model")
    assert type(again) is type(model) and again.risk_type == model.risk_type
    pd.testing.assert_frame_equal(
        again.predict_survival(data, TIMES), model.predict_survival(data, TIMES), check_exact=True
    )
    np.testing.assert_array_equal(again.predict_score(data), model.predict_score(data))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "model")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_clone_gives_the_same_settings_unfitted(name, fitted, tabular, images):
    model, _ = fitted(name)
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model
    assert copy.get_params().keys() == model.get_params().keys()
    assert repr(copy) == repr(model)
    if copy._requires_fit():
        with pytest.raises(NotFittedError, match="not fitted"):
            copy.predict_survival(_data(name, tabular, images), TIMES)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_clear_error_before_fit(name, tabular, images):
    model = _model(name)
    data = _data(name, tabular, images)
    if not model._requires_fit():  # learns nothing: predicts the same before and after fit
        before = model.predict_survival(data, TIMES)
        pd.testing.assert_frame_equal(before, model.fit(data).predict_survival(data, TIMES))
        return
    for call in (
        lambda: model.predict_survival(data, TIMES),
        lambda: model.predict_risk(data, 5.0),
        lambda: model.predict_score(data),
    ):
        with pytest.raises(NotFittedError, match=f"this {type(model).__name__} is not fitted"):
            call()
    if model._can_save:
        with pytest.raises(NotFittedError):
            model.save("never-written")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_settings_are_stored_as_given_and_checked_in_fit(name, tabular, images):
    model = _model(name)
    params = model.get_params()
    for key, value in params.items():
        assert getattr(model, key) is value
    constraints = type(model)._parameter_constraints
    bad = next((k for k in constraints if k in params), None)
    if bad is None:
        pytest.skip(f"{name} has no settings to check")
    model.set_params(**{bad: object()})  # accepted by __init__/set_params, refused by fit
    with pytest.raises(ValueError, match=f"parameter '{bad}' must be"):
        model.fit(_data(name, tabular, images))


def test_set_params_refuses_unknown_names():
    with pytest.raises(ValueError, match="has no parameter 'epochs'.*max_epochs"):
        fracrisk.DeepSurv().set_params(epochs=3)


def test_create_model_names_the_registered_models():
    with pytest.raises(ValueError, match="unknown model 'cox'.*coxph"):
        create_model("cox")


def test_an_image_model_takes_a_built_encoder(images, tmp_path):
    from fracrisk import ImageSurvivalModel
    from fracrisk.encoders import create_encoder

    settings = {**ImageSurvivalModel._test_params(), "max_epochs": 1}
    del settings["encoder"], settings["encoder_kwargs"]
    built = create_encoder("multiview_drr", backbone="resnet10t", shared_backbone=True)
    model = ImageSurvivalModel(built, **settings).fit(images)
    assert model.encoder is built  # the setting is not trained in place
    model.save(tmp_path / "built")
    again = load_model(tmp_path / "built")
    assert again.encoder == "multiview_drr"
    pd.testing.assert_frame_equal(
        again.predict_survival(images, TIMES), model.predict_survival(images, TIMES)
    )

    class Plain(torch.nn.Module):  # not from the registry: trains, but cannot be rebuilt
        def __init__(self):
            super().__init__()
            self.num_features = 4
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    plain = ImageSurvivalModel(
        Plain(),
        image_options={"kind": "drr", "size": (32, 32)},
        **{k: v for k, v in settings.items() if k != "image_options"},
    ).fit(images)
    assert np.isfinite(plain.predict_score(images)).all()
    with pytest.raises(ValueError, match="not built by fracrisk.encoders.create_encoder"):
        plain.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="needs 'kind'"):
        ImageSurvivalModel(Plain(), **settings).fit(images)
