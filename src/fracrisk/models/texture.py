r"""Two-stage image models on hand-made texture features.

A penalised Cox model, and opportunistic FRAX (image → estimated T-score → FRAX-style refit).

Both read a cohort whose image path column names each patient's images, make the images
as :class:`~fracrisk.data.ImageCohortDataset` does (``kind`` and ``image_options``), and
describe each by :class:`~fracrisk.encoders.texture.TextureFeatures`.

* :class:`TextureCox` (``"texture_cox"``): a ridge-penalised Cox model on the covariates
  plus the standardised texture features; the penalty is chosen by K-fold cross-validated
  partial likelihood on the training rows (Verweij & van Houwelingen 1993). Death
  censors: its risk is cause-specific.
* :class:`OpportunisticFrax` (``"opportunistic_frax"``): the pathway of Hsieh et al.
  (Nat Commun 12:5472, 2021), radiograph → BMD → FRAX. A ridge regression estimates the
  femoral-neck T-score from the features, trained on the rows whose DXA T-score is known;
  a :class:`~fracrisk.baselines.FraxStyleRefit` is then fitted with the estimate in place of
  the DXA value (cross-fitted estimates, so that the Cox stage sees the estimate's real
  error), and predicts from the image estimate alone: no DXA is needed at prediction. Its
  risk is absolute (death competing), as the refit's.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from fracrisk._params import InstanceOf, Interval, Options
from fracrisk.data.cohort import Cohort, as_cohort
from fracrisk.data.image_dataset import ImageCohortDataset
from fracrisk.encoders.morphometry import VertebralMorphometry
from fracrisk.encoders.texture import TextureFeatures
from fracrisk.models._base import SurvivalModel, _prefixed
from fracrisk.models.coxph import CoxPH, cross_validated_penalizer

__all__ = ["OpportunisticFrax", "TextureCox"]

_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))
_RANGE_SAMPLE = 512  # training images the quantisation ranges are fitted on, at most
#: Features of cached images, by (cache file, settings digest), for this process.
_FEATURE_MEMO: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_MEMO_LIMIT = 100_000
_T_SCORE = "femoral_neck_t_score"
_KEEP = "impute"  # inner tables keep what the user's cohort allowed; the Cox fits impute


def _channel_names(dataset: ImageCohortDataset) -> list[str]:
    if dataset.kind == "drr":
        return list(dataset.views)
    from fracrisk.imaging.anatomy import VERTEBRAE

    return list(VERTEBRAE)


class _TextureInputs(SurvivalModel):
    """Images of a cohort, made as the settings say, and their texture features."""

    input_kind = "images"

    def _image_dataset(self, data) -> ImageCohortDataset:
        if isinstance(data, ImageCohortDataset):
            return data
        if not isinstance(data, (Cohort, pd.DataFrame)):
            raise TypeError(
                f"data must be a Cohort or a DataFrame with image paths, got {type(data).__name__}"
            )
        options = dict(self.image_options or {})
        options.setdefault("progress", bool(self.progress))
        options["covariates"] = []  # the model standardises its own covariates
        return ImageCohortDataset(data, self.kind, **options)

    def _features(self, dataset: ImageCohortDataset, *, fit: bool) -> np.ndarray:
        """Features of every item, columns as :meth:`_feature_names`.

        ``fit`` fits the texture ranges (and decides on morphometry). Features of images in
        a disk cache are remembered in this process by their cache file (named by content)
        and the fitted feature settings, so predicting twice on the same images, or a
        second model with the same settings, describes them once.
        """
        if fit:
            self.texture_ = TextureFeatures(_channel_names(dataset), levels=self.levels)
            positions = np.linspace(0, len(dataset) - 1, min(len(dataset), _RANGE_SAMPLE))
            sample = torch.stack([dataset[int(i)][0] for i in np.unique(positions.round())])
            self.texture_.fit(sample)
            self.morphometry_ = self._make_morphometry(dataset)
        settings = json.dumps(
            [
                self.texture_.to_dict(),
                None if self.morphometry_ is None else self.morphometry_.to_dict(),
                repr(dataset.transform),
            ]
        )
        digest = hashlib.sha256(settings.encode()).hexdigest()
        memo = _FEATURE_MEMO
        files = [dataset.cache_file(i) for i in range(len(dataset))]
        files = [None if f is None else (f, digest) for f in files]
        todo = [i for i, f in enumerate(files) if f is None or f not in memo]
        out = np.empty((len(dataset), len(self._feature_names())), dtype=np.float64)
        for start in range(0, len(todo), 256):
            block = todo[start : start + 256]
            images = torch.stack([dataset[i][0] for i in block])
            parts = [self.texture_.transform(images)]
            if self.morphometry_ is not None:
                corners = np.stack([dataset.keypoints(i) for i in block])
                parts.append(self.morphometry_.transform(corners, images))
            out[block] = np.concatenate(parts, axis=1)
            for i in block:
                if files[i] is not None:
                    memo[files[i]] = out[i].copy()
        done = set(todo)
        for i, f in enumerate(files):
            if i not in done:
                out[i] = memo[f]
        while len(memo) > _MEMO_LIMIT:
            memo.popitem(last=False)  # the oldest first
        return out

    def _make_morphometry(self, dataset: ImageCohortDataset) -> VertebralMorphometry | None:
        """Morphometry of the vertebrae for spine patches (``morphometry`` "auto" or True)."""
        wanted = getattr(self, "morphometry", False)
        if wanted is True and dataset.kind != "patches":
            raise ValueError("morphometry=True needs spine patches (kind='patches'); got 'drr'")
        if wanted is False or dataset.kind != "patches":
            return None
        return VertebralMorphometry(margin=dataset.margin)

    def _feature_names(self) -> list[str]:
        names = list(self.texture_.feature_names_)
        if getattr(self, "morphometry_", None) is not None:
            names += self.morphometry_.feature_names_
        return names

    @staticmethod
    def _rows(cohort: Cohort, dataset: ImageCohortDataset) -> pd.DataFrame:
        """The cohort's rows that have usable images, in the dataset's order."""
        return cohort.df.loc[dataset.row_labels]

    def _feature_frame(self, data) -> tuple[pd.DataFrame, pd.Index]:
        self._check_fitted()
        cohort = as_cohort(data)
        dataset = self._image_dataset(cohort)
        table = self._with_features(self._rows(cohort, dataset), self._features(dataset, fit=False))
        return table, pd.Index(dataset.patient_ids)

    def _with_features(self, table: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
        """``table`` with one column per texture feature (names from :attr:`texture_`)."""
        columns = pd.DataFrame(features, index=table.index, columns=self._feature_names())
        return pd.concat([table.drop(columns=columns.columns, errors="ignore"), columns], axis=1)


class TextureCox(_TextureInputs, name="texture_cox"):
    r"""Penalised Cox model on clinical covariates plus texture features of the images.

    :math:`h(t \mid x, f) = h_0(t) \exp(x^\top \beta + f^\top \gamma)`, ridge-penalised on
    standardised columns (:class:`~fracrisk.models.CoxPH`).

    Parameters
    ----------
    kind : {"patches", "drr"}, default "patches"
        Images: L1-L5 patches of a lateral spine radiograph, or hip-CT DRR views.
    image_options : dict, optional
        Further :class:`~fracrisk.data.ImageCohortDataset` options (``cache_dir``,
        ``size``, ``views``, ``image_column``, ...).
    penalizer : float or "cv", default "cv"
        Ridge penalty :math:`\lambda` of :class:`~fracrisk.models.CoxPH`; ``"cv"`` picks it
        from (0.3, 1, 3, 10, 30, 100, 300) by ``cv_folds``-fold cross-validated partial
        likelihood on the training rows.
    cv_folds : int, default 5
        Folds of that choice.
    levels : int, default 32
        Grey levels of the co-occurrence features.
    morphometry : {"auto", True, False}, default "auto"
        Add the vertebrae's shape (:class:`~fracrisk.encoders.morphometry.VertebralMorphometry`:
        height ratios from the corners and the patches, the count of deformed vertebrae)
        to the texture features; "auto": for spine patches. Prevalent vertebral fractures
        are deformities of shape, which the texture of a patch cut at the corners does not
        show.
    seed : int, default 0
        Seed of the fold assignment.
    progress : bool, default False
        Progress bars while the images are made.

    Attributes
    ----------
    penalizer_ : float
        The penalty used.
    cox_ : CoxPH
        The fitted Cox model (on the covariates and the feature columns).
    """

    _parameter_constraints = {
        "kind": [Options("patches", "drr")],
        "image_options": [None, InstanceOf(dict)],
        "penalizer": [Options("cv"), Interval(float, 0, None)],
        "cv_folds": [Interval(int, 2, None)],
        "levels": [Interval(int, 2, 256)],
        "morphometry": [Options("auto", True, False)],
        "seed": [Interval(int, 0, None)],
        "progress": [Options(True, False)],
    }

    def __init__(
        self,
        kind: str = "patches",
        *,
        image_options: dict | None = None,
        penalizer: float | str = "cv",
        cv_folds: int = 5,
        levels: int = 32,
        morphometry: str | bool = "auto",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.kind, self.image_options = kind, image_options
        self.penalizer, self.cv_folds, self.levels = penalizer, cv_folds, levels
        self.morphometry, self.seed, self.progress = morphometry, seed, progress

    @classmethod
    def _test_params(cls) -> dict:
        return {"kind": "drr", "image_options": {"size": (24, 24)}, "cv_folds": 3}

    def fit(self, data, covariates: Sequence[str] | None = None) -> TextureCox:
        """Fit to a cohort with image paths; ``covariates`` default to the cohort's."""
        self._validate_params()
        cohort = as_cohort(data)
        columns = list(cohort.default_covariates if covariates is None else covariates)
        if columns:
            cohort.check_covariates(columns)
        dataset = self._image_dataset(cohort)
        features = self._features(dataset, fit=True)
        table = self._with_features(self._rows(cohort, dataset), features)
        # Constant features (e.g. a bone share that never varies) carry nothing: left out.
        varying = features.std(axis=0) > 0
        self.feature_columns_ = [
            n for n, v in zip(self._feature_names(), varying, strict=True) if v
        ]
        design = [*columns, *self.feature_columns_]
        train = Cohort(table, time_col=cohort.time_col, event_col=cohort.event_col, missing=_KEEP)
        if self.penalizer == "cv":
            self.penalizer_ = cross_validated_penalizer(train, design, self.cv_folds, self.seed)
        else:
            self.penalizer_ = float(self.penalizer)
        self.cox_ = CoxPH(penalizer=self.penalizer_).fit(train, covariates=design)
        self.covariates_ = columns
        self.n_train_ = len(train)
        return self

    def predict_log_hazard(self, data) -> pd.Series:
        """Log hazard ratio per patient (higher = higher risk)."""
        table, ids = self._feature_frame(data)
        eta = self.cox_.predict_log_hazard(table).to_numpy()
        return pd.Series(eta, index=ids, name="log_hazard")

    def predict_score(self, data) -> np.ndarray:
        """Ranking score (higher = higher risk): the log hazard."""
        return self.predict_log_hazard(data).to_numpy()

    def predict_survival(self, data, times=None) -> pd.DataFrame:
        """Cause-specific survival from fracture (death censored), patients x times."""
        table, ids = self._feature_frame(data)
        surv = self.cox_.predict_survival(table, times)
        return self._survival_frame(surv.to_numpy(), ids, surv.columns.to_numpy())

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        state, tensors = self.cox_._state()
        return (
            {
                "cox": state,
                "texture": self.texture_.to_dict(),
                "morphometry": None if self.morphometry_ is None else self.morphometry_.to_dict(),
                "penalizer": self.penalizer_,
                "feature_columns": self.feature_columns_,
                "covariates": self.covariates_,
                "n_train": self.n_train_,
            },
            {f"cox.{k}": v for k, v in tensors.items()},
        )

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict[str, torch.Tensor]):
        model = cls(**params)
        cox_params = {"penalizer": state["penalizer"]}
        model.cox_ = CoxPH._from_state(cox_params, state["cox"], _prefixed(tensors, "cox"))
        model.texture_ = TextureFeatures.from_dict(state["texture"])
        shape = state.get("morphometry")
        model.morphometry_ = None if shape is None else VertebralMorphometry.from_dict(shape)
        model.penalizer_ = state["penalizer"]
        model.feature_columns_ = state["feature_columns"]
        model.covariates_ = state["covariates"]
        model.n_train_ = state["n_train"]
        return model


class OpportunisticFrax(_TextureInputs, name="opportunistic_frax"):
    r"""FRAX-style refit on the FRAX risk factors and an image-estimated T-score.

    Stage 1: :math:`\hat T = a + f^\top w`, ridge regression of the DXA T-score on the
    standardised texture features :math:`f` (penalty by efficient leave-one-out CV, as
    scikit-learn's ``RidgeCV``), trained on the rows whose ``target`` is known. Stage 2: a
    :class:`~fracrisk.baselines.FraxStyleRefit` with :math:`\hat T` in place of the DXA
    value, fitted on ``cv_folds``-fold cross-fitted :math:`\hat T`. Prediction uses the
    image estimate only.

    Parameters
    ----------
    kind : {"patches", "drr"}, default "patches"
        Images: L1-L5 patches of a lateral spine radiograph, or hip-CT DRR views.
    image_options : dict, optional
        Further :class:`~fracrisk.data.ImageCohortDataset` options.
    target : str, default "femoral_neck_t_score"
        The column holding the DXA T-score (missing where no DXA was done).
    cv_folds : int, default 5
        Folds of the cross-fitted estimates.
    penalizer : float, default 0.0
        Ridge penalty of the refit's two Cox models (:class:`~fracrisk.baselines.FraxStyleRefit`).
    levels : int, default 32
        Grey levels of the co-occurrence features.
    seed : int, default 0
        Seed of the fold assignment.
    progress : bool, default False
        Progress bars while the images are made.

    Attributes
    ----------
    t_score_r2_ : float
        Cross-validated :math:`R^2` of the T-score estimate on the training rows.
    refit_ : FraxStyleRefit
        The fitted stage 2.
    """

    risk_type = "absolute"
    _parameter_constraints = {
        "kind": [Options("patches", "drr")],
        "image_options": [None, InstanceOf(dict)],
        "target": [InstanceOf(str)],
        "cv_folds": [Interval(int, 2, None)],
        "penalizer": [Interval(float, 0, None)],
        "levels": [Interval(int, 2, 256)],
        "seed": [Interval(int, 0, None)],
        "progress": [Options(True, False)],
    }

    def __init__(
        self,
        kind: str = "patches",
        *,
        image_options: dict | None = None,
        target: str = _T_SCORE,
        cv_folds: int = 5,
        penalizer: float = 0.0,
        levels: int = 32,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        self.kind, self.image_options, self.target = kind, image_options, target
        self.cv_folds, self.penalizer = cv_folds, penalizer
        self.levels, self.seed, self.progress = levels, seed, progress

    @classmethod
    def _test_params(cls) -> dict:
        return {"kind": "drr", "image_options": {"size": (24, 24)}, "cv_folds": 3}

    def fit(self, data) -> OpportunisticFrax:
        """Fit both stages on a cohort with image paths, FRAX risk factors and ``target``."""
        from sklearn.linear_model import RidgeCV
        from sklearn.model_selection import KFold, cross_val_predict

        from fracrisk.baselines import FraxStyleRefit

        self._validate_params()
        cohort = as_cohort(data)
        if self.target not in cohort.df.columns:
            raise ValueError(f"target column {self.target!r} (the DXA T-score) is not in the table")
        dataset = self._image_dataset(cohort)
        table = self._rows(cohort, dataset).copy()
        features = self._features(dataset, fit=True)
        y = pd.to_numeric(table[self.target], errors="coerce").to_numpy(dtype=np.float64)
        known = np.isfinite(y)
        if known.sum() < 2 * self.cv_folds:
            raise ValueError(
                f"only {int(known.sum())} rows have a {self.target!r} value; the T-score "
                f"estimate needs at least {2 * self.cv_folds}"
            )
        self.mean_, self.scale_ = features.mean(axis=0), features.std(axis=0)
        self.scale_ = np.where(self.scale_ > 0, self.scale_, 1.0)
        f = (features - self.mean_) / self.scale_
        ridge = RidgeCV(alphas=_RIDGE_ALPHAS)
        folds = KFold(self.cv_folds, shuffle=True, random_state=self.seed)
        crossed = cross_val_predict(ridge, f[known], y[known], cv=folds)
        residual = ((y[known] - crossed) ** 2).sum()
        self.t_score_r2_ = float(1 - residual / ((y[known] - y[known].mean()) ** 2).sum())
        ridge.fit(f[known], y[known])
        self.coef_, self.intercept_ = ridge.coef_.astype(np.float64), float(ridge.intercept_)
        self.alpha_ = float(ridge.alpha_)
        estimate = f @ self.coef_ + self.intercept_
        estimate[known] = crossed  # the Cox stage sees out-of-fold estimates
        table[_T_SCORE] = np.clip(estimate, -5.0, 3.0)
        train = Cohort(table, time_col=cohort.time_col, event_col=cohort.event_col, missing=_KEEP)
        self.refit_ = FraxStyleRefit(with_bmd=True, penalizer=self.penalizer).fit(train)
        self.n_train_ = len(train)
        return self

    def predict_t_score(self, data) -> pd.Series:
        """The image-estimated femoral-neck T-score per patient (SD units)."""
        table, ids = self._feature_frame(data)
        return pd.Series(self._estimate(table), index=ids, name="t_score_from_images")

    def _estimate(self, table: pd.DataFrame) -> np.ndarray:
        f = (table[self._feature_names()].to_numpy() - self.mean_) / self.scale_
        return f @ self.coef_ + self.intercept_

    def _frax_table(self, data) -> tuple[pd.DataFrame, pd.Index]:
        table, ids = self._feature_frame(data)
        table[_T_SCORE] = np.clip(self._estimate(table), -5.0, 3.0)
        table = table.drop(columns=self._feature_names())
        return table, ids

    def predict_score(self, data) -> np.ndarray:
        """Ranking score (higher = higher risk): the 10-year absolute risk, as the refit's."""
        table, _ = self._frax_table(data)
        return self.refit_.predict_score(table)

    def predict_fracture_log_hazard(self, data) -> pd.Series:
        """The refit's fracture log hazard per patient: the cause-specific ranking."""
        table, ids = self._frax_table(data)
        return self.refit_.predict_fracture_log_hazard(table).set_axis(ids)

    def predict_cumulative_incidence(self, data, times=None) -> pd.DataFrame:
        """Cumulative incidence of fracture with death competing, patients x times."""
        table, ids = self._frax_table(data)
        cif = self.refit_.predict_cumulative_incidence(table, times)
        return self._survival_frame(cif.to_numpy(), ids, cif.columns.to_numpy())

    def predict_survival(self, data, times=None) -> pd.DataFrame:
        """One minus the cumulative incidence of fracture (death competing)."""
        table, ids = self._frax_table(data)
        surv = self.refit_.predict_survival(table, times)
        return self._survival_frame(surv.to_numpy(), ids, surv.columns.to_numpy())

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        state, tensors = self.refit_._state()
        tensors = {f"refit.{k}": v for k, v in tensors.items()}
        tensors.update(
            {
                "ridge.coef": torch.from_numpy(self.coef_.copy()),
                "ridge.mean": torch.from_numpy(np.asarray(self.mean_, np.float64).copy()),
                "ridge.scale": torch.from_numpy(np.asarray(self.scale_, np.float64).copy()),
            }
        )
        return (
            {
                "refit": state,
                "refit_params": self.refit_.get_params(),
                "texture": self.texture_.to_dict(),
                "intercept": self.intercept_,
                "alpha": self.alpha_,
                "t_score_r2": self.t_score_r2_,
                "n_train": self.n_train_,
            },
            tensors,
        )

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict[str, torch.Tensor]):
        from fracrisk.baselines import FraxStyleRefit

        model = cls(**params)
        model.refit_ = FraxStyleRefit._from_state(
            state["refit_params"], state["refit"], _prefixed(tensors, "refit")
        )
        model.texture_ = TextureFeatures.from_dict(state["texture"])
        model.morphometry_ = None
        model.coef_ = tensors["ridge.coef"].numpy().astype(np.float64)
        model.mean_ = tensors["ridge.mean"].numpy().astype(np.float64)
        model.scale_ = tensors["ridge.scale"].numpy().astype(np.float64)
        model.intercept_, model.alpha_ = float(state["intercept"]), float(state["alpha"])
        model.t_score_r2_ = float(state["t_score_r2"])
        model.n_train_ = state["n_train"]
        return model
