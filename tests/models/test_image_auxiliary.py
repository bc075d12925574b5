"""Dense supervision of image models: an auxiliary T-score head trained with the Cox loss."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from fracrisk import ImageSurvivalModel, load_model
from fracrisk.data import ImageCohortDataset
from fracrisk.encoders import FusionSurvivalNet, create_encoder
from fracrisk.losses import auxiliary_loss
from fracrisk.testing import tiny_ct_cohort

FAST = {
    "encoder_kwargs": {"backbone": "resnet10t", "shared_backbone": True, "pooling": "mean"},
    "head_kwargs": {"hidden": [8], "dropout": 0.0},
    "image_options": {"size": (24, 24), "covariates": ["age"]},
    "batch_size": 32,
    "learning_rate": 3e-3,
    "max_epochs": 10,
    "patience": 10,
    "accelerator": "cpu",
    "logger": None,
}
T = "femoral_neck_t_score"


def test_the_auxiliary_loss_is_the_masked_weighted_mean_squared_error():
    prediction = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]], requires_grad=True)
    target = torch.tensor([[0.0, float("nan")], [2.0, float("nan")], [3.0, float("nan")]])
    scale, weight = torch.tensor([2.0, 1.0]), torch.tensor([0.5, 7.0])
    loss = auxiliary_loss(prediction, target, scale, weight)
    expected = 0.5 * ((1 / 2) ** 2 + 0 + (3 / 2) ** 2) / 3  # target 2 is never observed
    assert float(loss.detach()) == pytest.approx(expected)
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and (prediction.grad[:, 1] == 0).all()
    with pytest.raises(ValueError, match=r"\(batch, k\)"):
        auxiliary_loss(prediction[:, 0], target[:, 0], scale, weight)


def test_the_fusion_net_predicts_targets_in_their_units_from_the_image_embedding():
    encoder = create_encoder("multiview_drr", backbone="resnet10t", shared_backbone=True)
    net = FusionSurvivalNet(encoder, 2, auxiliary=[T]).eval()
    net.set_auxiliary_scaling([-1.0], [2.0])
    images, covariates = torch.rand(4, 3, 24, 24), torch.randn(4, 2)
    eta, predicted = net.forward_with_auxiliary(images, covariates)
    assert torch.equal(eta, net(images, covariates)) and predicted.shape == (4, 1)
    raw = net.auxiliary_head(net.encode_images(images))
    torch.testing.assert_close(predicted, raw * 2.0 - 1.0)
    with pytest.raises(ValueError, match="no auxiliary targets"):
        FusionSurvivalNet(encoder, 2).forward_with_auxiliary(images, covariates)
    with pytest.raises(ValueError, match="scales positive"):
        net.set_auxiliary_scaling([0.0], [0.0])


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    train = tiny_ct_cohort(tmp_path_factory.mktemp("aux_train"), 160, size=16, seed=4, frax=True)
    test = tiny_ct_cohort(tmp_path_factory.mktemp("aux_test"), 80, size=16, seed=5, frax=True)
    train.loc[train.index[::4], T] = np.nan  # DXA for three patients in four
    return train, test


def test_dataset_items_carry_the_targets_with_nan_where_missing(cohorts):
    train, _ = cohorts
    from fracrisk.data import Cohort

    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
    data = ImageCohortDataset(
        cohort, "drr", covariates=["age"], targets=[T], size=(16, 16), progress=False
    )
    image, x, targets, time, event = data[0]
    assert targets.shape == (1,) and torch.isnan(targets).all()  # row 0 has no DXA
    assert float(data[1][2]) == pytest.approx(train[T].iloc[1])
    bad = train.drop(columns=[T]).assign(dxa_spine=["low"] + [0.0] * (len(train) - 1))
    with pytest.raises(ValueError, match=r"'dxa_spine' must be numeric; rows \[0\]"):
        ImageCohortDataset(bad, "drr", covariates=[], targets=["dxa_spine"], progress=False)
    with pytest.raises(ValueError, match=r"target column\(s\) \['bmd'\] are not in the table"):
        ImageCohortDataset(bad, "drr", covariates=[], targets=["bmd"], progress=False)


def test_the_auxiliary_head_learns_the_t_score_and_survives_save_and_load(cohorts, tmp_path):
    from fracrisk.data import Cohort

    train, test = cohorts
    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
    settings = {**FAST, "max_epochs": 25, "patience": 25}
    model = ImageSurvivalModel(
        "multiview_drr", auxiliary={T: 5.0}, training="end_to_end", **settings
    ).fit(cohort)
    assert model.training_ == "end_to_end"
    predicted = model.predict_auxiliary(test)
    assert list(predicted.columns) == [T] and len(predicted) == len(test)
    r = np.corrcoef(predicted[T].to_numpy(), test[T].to_numpy())[0, 1]
    assert r > 0.6, f"correlation of the image-estimated and DXA T-score: {r:.2f}"
    model.save(tmp_path / "aux")
    again = load_model(tmp_path / "aux")
    np.testing.assert_array_equal(again.predict_auxiliary(test), predicted)
    plain = ImageSurvivalModel("multiview_drr", **{**FAST, "max_epochs": 1}).fit(test)
    with pytest.raises(ValueError, match="without auxiliary targets"):
        plain.predict_auxiliary(test)
    with pytest.raises(ValueError, match="weights >= 0"):
        ImageSurvivalModel("multiview_drr", auxiliary={T: -1.0}, **FAST).fit(cohort)


def test_two_stage_training_fits_a_cox_stage_on_the_image_estimated_t_score(cohorts, tmp_path):
    """Stage 1 learns the T-score from the images; stage 2 ranks by it (the hazard is e^z)."""
    from fracrisk.data import Cohort
    from fracrisk.metrics import harrell_c

    train, test = cohorts
    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
    settings = {**FAST, "max_epochs": 25, "patience": 25}
    model = ImageSurvivalModel("multiview_drr", auxiliary={T: 1.0}, **settings).fit(cohort)
    assert model.training_ == "two_stage"  # the default with dense targets
    assert model.cox_.covariates_ == ["cov_age", f"image_{T}"]
    assert model.stage_two_penalizer_ in (0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
    r2 = model.auxiliary_r2_[T]
    assert r2["train"] > 0.3 and r2["validation"] is not None
    # The log hazard is stage 2's linear predictor on age and the predicted T-score.
    estimate = model.predict_auxiliary(test)[T]
    table = test[["time", "event"]].assign(
        cov_age=model.preprocessor_.transform(test)[:, 0], **{f"image_{T}": estimate.to_numpy()}
    )
    expected = model.cox_.predict_log_hazard(table)
    eta = model.predict_log_hazard(test)
    np.testing.assert_allclose(eta.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-9)
    assert model.cox_.coef_[f"image_{T}"] > 0  # in this toy cohort both rise with z
    c = harrell_c(test["time"], test["event"] == 1, eta.to_numpy())
    assert c > 0.6, f"two-stage C on new patients: {c:.3f}"
    surv = model.predict_survival(test, times=[1.0, 5.0])
    assert (np.diff(surv.to_numpy(), axis=1) <= 0).all()

    model.save(tmp_path / "two_stage")
    again = load_model(tmp_path / "two_stage")
    np.testing.assert_allclose(again.predict_log_hazard(test), eta)
    assert again.auxiliary_r2_ == model.auxiliary_r2_
    # Grad-CAM explains the image part of the Cox stage, sum_j beta_j * predicted target j:
    # the patients whose images raise it most get maps, scaled to a peak of 1 each.
    image_part = estimate.to_numpy() * model.cox_.coef_[f"image_{T}"]
    highest = np.argsort(-image_part)[:3]
    images, maps = model.grad_cam(test, positions=highest)
    assert maps.shape == images.shape and maps.shape[1] == 3  # three DRR views
    assert torch.isfinite(maps).all() and maps.min() >= 0
    assert (maps.amax(dim=(1, 2, 3)) == 1).all()
    with pytest.raises(ValueError, match="training='two_stage'"):
        ImageSurvivalModel("multiview_drr", training="two_stage", **FAST).fit(cohort)


def test_a_categorical_target_adds_its_masked_cross_entropy():
    prediction = torch.zeros(3, 2)
    target = torch.tensor([[0.0, 2.0], [1.0, float("nan")], [0.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0, 3.0], [5.0, 0.0, 0.0], [1.0, 2.0, 0.0]], requires_grad=True)
    scale, weight = torch.ones(2), torch.tensor([1.0, 2.0])
    loss = auxiliary_loss(prediction, target, scale, weight, logits=[None, logits])
    log_p = torch.log_softmax(logits.detach(), dim=1)
    cross_entropy = -(log_p[0, 2] + log_p[2, 0]) / 2  # row 1 is not graded
    numeric = (0.0 + 1.0 + 0.0) / 3
    assert float(loss.detach()) == pytest.approx(numeric + 2.0 * float(cross_entropy))
    loss.backward()
    assert (logits.grad[1] == 0).all() and torch.isfinite(logits.grad).all()


def test_a_categorical_auxiliary_target_is_learned_as_classes(cohorts, tmp_path):
    """A grade 0-3 cut from the T-score, trained with cross-entropy, read back as classes."""
    from scipy.stats import spearmanr

    from fracrisk.data import Cohort

    train, test = cohorts
    grade = "low_bone_grade"

    def graded(df):
        t = df[T].to_numpy()
        codes = np.digitize(-t, [-0.5, 1.0, 2.5]).astype(float)  # 0 normal .. 3 lowest
        return df.assign(**{grade: np.where(np.isnan(t), np.nan, codes)})

    with pytest.warns(Warning):
        cohort = Cohort(graded(train), missing="impute")
    settings = {**FAST, "max_epochs": 25, "patience": 25}
    model = ImageSurvivalModel(
        "multiview_drr",
        auxiliary={grade: 5.0},
        auxiliary_classes={grade: 4},
        training="end_to_end",
        **settings,
    ).fit(cohort)
    proba = model.predict_auxiliary_proba(test, grade)
    assert list(proba.columns) == [0, 1, 2, 3] and len(proba) == len(test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    expected_class = proba.to_numpy() @ np.arange(4)
    predicted = model.predict_auxiliary(test)[grade].to_numpy()
    np.testing.assert_allclose(predicted, expected_class, rtol=1e-5, atol=1e-6)
    truth = graded(test)[grade].to_numpy()
    rho = spearmanr(predicted, truth).statistic
    assert rho > 0.5, f"rank correlation of predicted and true grade: {rho:.2f}"
    model.save(tmp_path / "graded")
    again = load_model(tmp_path / "graded")
    np.testing.assert_array_equal(again.predict_auxiliary_proba(test, grade), proba)
    with pytest.raises(ValueError, match="not a categorical auxiliary target"):
        model.predict_auxiliary_proba(test, T)

    bad = graded(train)
    bad.loc[bad.index[5], grade] = 2.5
    with pytest.warns(Warning):
        bad_cohort = Cohort(bad, missing="impute")
    with pytest.raises(ValueError, match=r"categorical with 4 classes .* rows \[5\]"):
        ImageSurvivalModel(
            "multiview_drr", auxiliary={grade: 1.0}, auxiliary_classes={grade: 4}, **FAST
        ).fit(bad_cohort)
    with pytest.raises(ValueError, match="not an auxiliary target"):
        ImageSurvivalModel("multiview_drr", auxiliary_classes={grade: 4}, **FAST).fit(cohort)
    with pytest.raises(ValueError, match="an integer >= 2"):
        ImageSurvivalModel(
            "multiview_drr", auxiliary={grade: 1.0}, auxiliary_classes={grade: 1}, **FAST
        ).fit(cohort)


def test_intensity_quantiles_give_the_t_score_from_few_epochs_and_survive_save_and_load(
    cohorts, tmp_path
):
    """The T-score of a calibrated DRR is an intensity level, which the quantiles hold."""
    from fracrisk.data import Cohort

    train, test = cohorts
    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
    settings = {**FAST, "max_epochs": 3, "patience": 3}
    estimates = {}
    for name, extra in (("cnn", {}), ("quantiles", {"intensity_quantiles": (0.5, 0.9, 0.99)})):
        model = ImageSurvivalModel(
            "multiview_drr",
            {**FAST["encoder_kwargs"], **extra},
            auxiliary={T: 1.0},
            **{k: v for k, v in settings.items() if k != "encoder_kwargs"},
        ).fit(cohort)
        estimates[name] = model.predict_auxiliary(test)[T].to_numpy()
    r = {k: np.corrcoef(v, test[T].to_numpy())[0, 1] for k, v in estimates.items()}
    assert r["quantiles"] > 0.8 and r["quantiles"] > r["cnn"], r
    model.save(tmp_path / "quantiles")
    again = load_model(tmp_path / "quantiles")
    assert again.network_.encoder.intensity_quantiles == (0.5, 0.9, 0.99)
    np.testing.assert_array_equal(again.predict_auxiliary(test)[T], estimates["quantiles"])


def test_the_ridge_refit_is_the_closed_form_fit_on_the_training_embedding(cohorts, tmp_path):
    """After stage 1, the T-score layer is RidgeCV on the training rows' embedding."""
    from sklearn.linear_model import RidgeCV

    from fracrisk.data import Cohort
    from fracrisk.models.image import AUXILIARY_RIDGE_ALPHAS, _r2, _stratified_split

    train, test = cohorts
    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
    settings = {**FAST, "max_epochs": 3, "patience": 3}
    fits = {
        refit: ImageSurvivalModel(
            "multiview_drr", auxiliary={T: 1.0}, auxiliary_refit=refit, **settings
        ).fit(cohort)
        for refit in ("none", "ridge")
    }
    ridge, trained = fits["ridge"], fits["none"]
    assert trained.auxiliary_ridge_alpha_ == {} and set(ridge.auxiliary_ridge_alpha_) == {T}
    # The same seeded stage 1: the encoders are identical, only the T-score layer differs.
    for a, b in zip(
        ridge.network_.encoder.state_dict().values(),
        trained.network_.encoder.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    dataset = ridge._prediction_dataset(cohort)  # the training rows, in order
    rows, _ = _stratified_split(dataset.event, 0.2, ridge.seed)
    embedding = ridge._embeddings(dataset)[0][rows]
    target = cohort.df[T].to_numpy()[rows]
    seen = np.isfinite(target)  # a quarter of the patients have no DXA
    mean, scale = (
        float(b[0]) for b in (ridge.network_.auxiliary_mean, ridge.network_.auxiliary_scale)
    )
    x = embedding[seen].astype(np.float64)
    expected = RidgeCV(alphas=AUXILIARY_RIDGE_ALPHAS).fit(x, (target[seen] - mean) / scale)
    assert ridge.auxiliary_ridge_alpha_[T] == expected.alpha_
    # The fitted values (the coefficients of p > n features are ill-conditioned).
    refitted = ridge._auxiliary_from_embedding(embedding[seen])[:, 0]
    np.testing.assert_allclose(refitted, mean + scale * expected.predict(x), atol=1e-4)
    # On new patients the refitted layer estimates the T-score better than SGD's.
    r2 = {
        k: _r2(test[T].to_numpy(), m.predict_auxiliary(test)[T].to_numpy()) for k, m in fits.items()
    }
    assert r2["ridge"] > r2["none"] + 0.05, r2
    ridge.save(tmp_path / "ridge")
    again = load_model(tmp_path / "ridge")
    assert again.auxiliary_ridge_alpha_ == ridge.auxiliary_ridge_alpha_
    np.testing.assert_array_equal(again.predict_auxiliary(test), ridge.predict_auxiliary(test))
    with pytest.raises(ValueError, match="auxiliary_refit"):
        ImageSurvivalModel("multiview_drr", auxiliary={T: 1.0}, auxiliary_refit="sgd").fit(cohort)


def test_only_a_numeric_targets_layer_can_be_set():
    encoder = create_encoder("multiview_drr", backbone="resnet10t", shared_backbone=True)
    net = FusionSurvivalNet(encoder, 0, auxiliary=["grade", T], auxiliary_classes=[3, 0])
    net.set_numeric_auxiliary(T, torch.ones(net.image_features), 0.5)
    assert torch.equal(net.auxiliary_head.weight[3], torch.ones(net.image_features))
    assert float(net.auxiliary_head.bias.detach()[3]) == 0.5
    with pytest.raises(ValueError, match="categorical"):
        net.set_numeric_auxiliary("grade", torch.ones(net.image_features), 0.0)
    with pytest.raises(ValueError, match="not an auxiliary target"):
        net.set_numeric_auxiliary("bmd", torch.ones(net.image_features), 0.0)
    with pytest.raises(ValueError, match="finite numbers"):
        net.set_numeric_auxiliary(T, torch.full((net.image_features,), float("nan")), 0.0)


def test_a_new_stage_two_shares_the_encoder_and_fits_its_own_cox_stage(cohorts, tmp_path):
    """with_stage_two: the same stage 1, and stage 2 the penalised Cox on the new covariates."""
    from fracrisk import CoxPH
    from fracrisk.data import Cohort

    train, test = cohorts
    with pytest.warns(Warning):
        cohort = Cohort(train, missing="impute")
        fewer = Cohort(train.iloc[1:], missing="impute")
    settings = {**FAST, "max_epochs": 2, "patience": 2}
    base = ImageSurvivalModel("multiview_drr", auxiliary={T: 1.0}, **settings).fit(cohort)
    cox_before = base.cox_.coef_.copy()
    wider = base.with_stage_two(cohort, covariates=["age", "bmi"])
    alone = base.with_stage_two(cohort, covariates=[])
    assert wider.covariate_names_ == ["age", "bmi"] and alone.covariate_names_ == []
    assert wider.image_options["covariates"] == ["age", "bmi"]
    assert base.image_options["covariates"] == ["age"]  # the setting stays untouched
    assert wider.network_ is not base.network_
    for a, b in zip(
        base.network_.encoder.state_dict().values(),
        wider.network_.encoder.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    np.testing.assert_array_equal(base.predict_auxiliary(test), wider.predict_auxiliary(test))
    assert wider.auxiliary_ridge_alpha_ == base.auxiliary_ridge_alpha_
    assert wider.auxiliary_r2_ == base.auxiliary_r2_
    # Stage 2 is CoxPH on the preprocessed covariates and the predicted T-score, every row.
    predicted = base.predict_auxiliary(cohort)[T].to_numpy()
    table = pd.DataFrame(
        {
            "cov_age": wider.preprocessor_.transform(cohort.df)[:, 0],
            "cov_bmi": wider.preprocessor_.transform(cohort.df)[:, 1],
            f"image_{T}": predicted,
            "time": cohort.time,
            "event": (cohort.event == 1).astype(int),
        }
    )
    expected = CoxPH(penalizer=wider.stage_two_penalizer_).fit(
        Cohort(table, time_col="time", event_col="event"),
        covariates=["cov_age", "cov_bmi", f"image_{T}"],
    )
    np.testing.assert_allclose(wider.cox_.coef_, expected.coef_, rtol=1e-6, atol=1e-8)
    pd.testing.assert_series_equal(base.cox_.coef_, cox_before)  # base is unchanged
    assert len(alone.cox_.coef_) == 1 and np.isfinite(alone.predict_score(test)).all()
    wider.save(tmp_path / "wider")
    np.testing.assert_array_equal(
        load_model(tmp_path / "wider").predict_score(test), wider.predict_score(test)
    )
    with pytest.raises(ValueError, match="patients this model was fitted on"):
        base.with_stage_two(fewer, covariates=["age"])
    with pytest.raises(ValueError, match="fitted in this session"):
        load_model(tmp_path / "wider").with_stage_two(cohort, covariates=["age"])
    with pytest.raises(TypeError, match="not a string"):
        base.with_stage_two(cohort, covariates="age")
    other_size = copy.copy(base)  # as if stage 1 had trained on a prepared dataset
    other_size.image_options = {**base.image_options, "size": (20, 20)}
    with pytest.raises(ValueError, match="images differ from those stage 1 trained on"):
        other_size.with_stage_two(cohort, covariates=["age"])
    with pytest.raises(ValueError, match="no_such_column"):
        base.with_stage_two(cohort, covariates=["no_such_column"])
    end_to_end = ImageSurvivalModel("multiview_drr", **{**settings, "max_epochs": 1}).fit(cohort)
    with pytest.raises(ValueError, match="trained end to end"):
        end_to_end.with_stage_two(cohort, covariates=["age"])
