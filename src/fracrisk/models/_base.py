"""What every fracrisk survival estimator shares: data handling, prediction, save and load."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from fracrisk._io import staged_output_dir
from fracrisk.baseline_hazard import BreslowBaselineHazard
from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.exceptions import NotFittedError
from fracrisk.heads import create_head
from fracrisk.preprocessing import TabularPreprocessor

__all__ = ["RiskFromSurvival", "SavedModel", "SurvivalEstimator", "load_model"]

_CONFIG = "config.json"
_WEIGHTS = "weights.safetensors"
_FORMAT = "fracrisk-model/1"
_ESTIMATORS: dict[str, type[SavedModel]] = {}


class RiskFromSurvival:
    """``predict_risk`` for any model with ``predict_survival(data, times)``."""

    def predict_risk(self, data: Cohort | pd.DataFrame, horizon: float = 10.0) -> pd.Series:
        r"""Absolute fracture risk by ``horizon`` years: :math:`1 - S(h \mid x)`, in [0, 1]."""
        if not np.isfinite(horizon) or horizon <= 0:
            raise ValueError(f"horizon must be a positive number of years, got {horizon!r}")
        surv = self.predict_survival(data, [float(horizon)])
        return pd.Series(
            1.0 - surv.iloc[:, 0].to_numpy(), index=surv.index, name=f"risk_{horizon:g}y"
        )


class SavedModel:
    """Hyper-parameters, a name in the registry of :func:`load_model`, and safe files.

    A saved model is a directory with ``config.json`` (hyper-parameters, preprocessing,
    versions: data, never code) and ``weights.safetensors`` (tensors). Subclasses list their
    hyper-parameters in ``_params`` and rebuild themselves in ``_from_saved``.
    """

    _params: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        _ESTIMATORS[cls.__name__] = cls

    def get_params(self) -> dict:
        """Hyper-parameters as passed to ``__init__``."""
        return {name: getattr(self, name) for name in self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _write(self, path, config: dict, tensors: dict, *, overwrite: bool) -> Path:
        """Write ``config`` (with format, class and versions added) and ``tensors``."""
        from safetensors.torch import save_file

        import fracrisk

        config = {
            "format": _FORMAT,
            "estimator": type(self).__name__,
            "params": self.get_params(),
            **config,
            "versions": {
                "fracrisk": fracrisk.__version__,
                "torch": torch.__version__,
                "numpy": np.__version__,
                "pandas": pd.__version__,
                "python": platform.python_version(),
            },
        }
        with staged_output_dir(
            path, overwrite=overwrite, is_ours=lambda p: (p / _CONFIG).exists()
        ) as staging:
            save_file(tensors, str(staging / _WEIGHTS))
            (staging / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return Path(path)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict[str, torch.Tensor]) -> SavedModel:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SavedModel:
        """Load a model saved with ``save``; see :func:`load_model`."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{str(path)!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix + "."``, without it."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _baseline_tensors(baseline: BreslowBaselineHazard) -> dict[str, torch.Tensor]:
    return {
        f"baseline_hazard.{key}": torch.from_numpy(np.ascontiguousarray(value))
        for key, value in baseline.state_arrays().items()
    }


def _baseline_from_tensors(tensors: dict[str, torch.Tensor]) -> BreslowBaselineHazard:
    return BreslowBaselineHazard.from_state_arrays(
        {k: v.numpy() for k, v in _prefixed(tensors, "baseline_hazard").items()}
    )


class SurvivalEstimator(SavedModel, RiskFromSurvival):
    """Base class of Cox-type estimators on tabular covariates.

    An estimator is a network from features to a log hazard ratio, the preprocessing
    fitted with it, and a Breslow baseline hazard for absolute risk.

    Subclasses implement ``_fit_network(x, time, event, cohort)`` and list their
    hyper-parameters in ``_params``.
    """

    _head_name: str = ""

    def _head_kwargs(self) -> dict:
        return {}

    # ------------------------------------------------------------- fitting
    def fit(self, data: Cohort | pd.DataFrame, covariates: Sequence[str] | None = None):
        """Fit the model to a cohort (or a DataFrame with ``time`` and ``event`` columns).

        Parameters
        ----------
        data : Cohort or pandas.DataFrame
            Training patients. Event code 1 is the event of interest; code 2 (death) is
            treated as censoring, giving the cause-specific hazard of fracture.
        covariates : sequence of str, optional
            Columns to use; by default the canonical clinical columns present in the data
            plus the cohort's named extra covariates.

        Returns
        -------
        self
        """
        cohort = as_cohort(data)
        columns = list(covariates) if covariates is not None else cohort.default_covariates
        if not columns:
            raise ValueError(
                "no covariates: name them with covariates=[...] or include the "
                "canonical clinical columns"
            )
        if cohort.n_events == 0:
            raise ValueError(
                "the training data hold no event (code 1); a Cox model cannot be fitted"
            )
        cohort.check_covariates(columns)
        self.covariates_ = columns
        self.preprocessor_ = TabularPreprocessor(columns).fit(cohort.df)
        x = self.preprocessor_.transform(cohort.df)
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(getattr(self, "seed", 0))
            self.network_ = create_head(self._head_name, x.shape[1], **self._head_kwargs())
            self._fit_network(x, cohort.time, cohort.event, cohort)
        self.network_.eval()
        eta = self._log_hazard_array(x)
        self.baseline_hazard_ = BreslowBaselineHazard().fit(eta, cohort.time, cohort.event)
        self.n_train_ = len(cohort)
        return self

    def _fit_network(
        self, x: np.ndarray, time: np.ndarray, event: np.ndarray, cohort: Cohort
    ) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "baseline_hazard_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() first")

    def _design(self, data: Cohort | pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
        self._check_fitted()
        df, index = table_and_ids(data)
        return self.preprocessor_.transform(df), index

    def _log_hazard_array(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        param = next(self.network_.parameters())
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                chunk = torch.as_tensor(
                    x[start : start + batch_size], dtype=param.dtype, device=param.device
                )
                out.append(self.network_(chunk).reshape(-1).double().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)

    def predict_log_hazard(self, data: Cohort | pd.DataFrame) -> pd.Series:
        """Log hazard ratio per patient (higher = higher risk), relative to the baseline.

        The baseline is a patient with the average training features (0 after
        standardisation).
        """
        x, index = self._design(data)
        return pd.Series(self._log_hazard_array(x), index=index, name="log_hazard")

    def predict_score(self, data: Cohort | pd.DataFrame) -> np.ndarray:
        """Ranking score for concordance metrics (higher = higher risk): the log hazard."""
        return self.predict_log_hazard(data).to_numpy()

    def predict_survival(
        self, data: Cohort | pd.DataFrame, times: Sequence[float] | np.ndarray | None = None
    ) -> pd.DataFrame:
        r"""Absolute survival from fracture :math:`S(t \mid x)`, patients x times.

        Parameters
        ----------
        data : Cohort or pandas.DataFrame
            Patients to predict for.
        times : array-like of float, optional
            Times in years. By default every whole year up to the longest training
            follow-up. Times beyond it warn (the curve is held flat after the last event).

        Returns
        -------
        pandas.DataFrame
            Rows are patients (by id), columns are the times; values in [0, 1] and
            non-increasing along each row. Competing death is treated as censoring, so
            this is the cause-specific (fracture-free, death-free-world) survival.
        """
        x, index = self._design(data)
        times = self._default_times() if times is None else np.asarray(times, dtype=np.float64)
        surv = self.baseline_hazard_.survival(self._log_hazard_array(x), times)
        return pd.DataFrame(surv, index=index, columns=pd.Index(times, name="time (years)"))

    def _default_times(self) -> np.ndarray:
        years = np.arange(1.0, np.floor(self.baseline_hazard_.max_time_) + 1.0)
        return years if years.size else np.array([self.baseline_hazard_.max_time_])

    # ------------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save to a directory: ``config.json`` plus ``weights.safetensors``.

        Nothing in the files is executable: the config is JSON (hyper-parameters,
        preprocessing, versions) and the tensors are safetensors. :func:`load_model`
        (or ``Class.load``) rebuilds a model whose predictions are bit-identical.
        """
        self._check_fitted()
        tensors = {
            f"network.{k}": v.detach().cpu().contiguous()
            for k, v in self.network_.state_dict().items()
        }
        tensors.update(_baseline_tensors(self.baseline_hazard_))
        config = {
            "head": {
                "name": self._head_name,
                "in_features": len(self.preprocessor_.feature_names_),
                "kwargs": self._head_kwargs(),
                "dtype": str(next(self.network_.parameters()).dtype).removeprefix("torch."),
            },
            "covariates": self.covariates_,
            "preprocessor": self.preprocessor_.to_dict(),
            "n_train": self.n_train_,
            "extra": self._extra_state(),
        }
        return self._write(path, config, tensors, overwrite=overwrite)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict[str, torch.Tensor]) -> SurvivalEstimator:
        model = cls(**config["params"])
        head: nn.Module = create_head(
            config["head"]["name"], config["head"]["in_features"], **config["head"]["kwargs"]
        )
        dtype = config["head"]["dtype"]
        if dtype not in ("float32", "float64"):
            raise ValueError(f"unsupported weight dtype {dtype!r}")
        head = head.to(getattr(torch, dtype))
        head.load_state_dict(_prefixed(tensors, "network"))
        model.network_ = head.eval()
        model.baseline_hazard_ = _baseline_from_tensors(tensors)
        model.preprocessor_ = TabularPreprocessor.from_dict(config["preprocessor"])
        model.covariates_ = config["covariates"]
        model.n_train_ = config["n_train"]
        model._load_extra_state(config["extra"])
        return model


def load_model(path: str | os.PathLike[str]) -> SavedModel:
    """Load any fracrisk model from a directory written by ``save``; executes no code.

    ``config.json`` is parsed as JSON and ``weights.safetensors`` read as plain tensors;
    the class named in the config (one of fracrisk's, from a registry) rebuilds the model.
    """
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / _CONFIG, path / _WEIGHTS
    for required in (config_path, weights_path):
        if not required.exists():
            raise FileNotFoundError(f"{str(required)!r} not found: not a fracrisk model directory")
    config = json.loads(config_path.read_text())
    if config.get("format") != _FORMAT:
        raise ValueError(
            f"{str(config_path)!r} has format {config.get('format')!r}, expected {_FORMAT!r}"
        )
    if config["estimator"] not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {config['estimator']!r} in {str(config_path)!r}")
    tensors = load_file(str(weights_path))
    try:
        return _ESTIMATORS[config["estimator"]]._from_saved(config, tensors)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from err
