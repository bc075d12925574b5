"""What every fracrisk survival estimator shares: data handling, prediction, save and load."""

from __future__ import annotations

import fnmatch
import inspect
import json
import os
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from fracrisk._io import file_sha256, staged_output_dir
from fracrisk._params import validate_params
from fracrisk.baseline_hazard import BreslowBaselineHazard, cumulative_incidence
from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.discrete_time import fit_time_grid, interpolate_incidence
from fracrisk.exceptions import DataWarning, NotFittedError
from fracrisk.heads import create_head, head_class
from fracrisk.preprocessing import TabularPreprocessor

__all__ = [
    "RISK_TYPES",
    "SurvivalEstimator",
    "SurvivalModel",
    "create_model",
    "list_models",
    "load_model",
]

_CONFIG = "config.json"
_WEIGHTS = "weights.safetensors"
_FORMAT = "fracrisk-model/1"
_ESTIMATORS: dict[str, type[SurvivalModel]] = {}  # class name -> class, for load_model
_MODELS: dict[str, type[SurvivalModel]] = {}  # registry name -> class, for create_model

#: What a model's ``predict_risk`` is, and the label reports print for it.
RISK_TYPES = {
    "cause_specific": "cause-specific risk (death censored)",
    "absolute": "absolute risk (death competing)",
}


class SurvivalModel:
    r"""The one protocol of every fracrisk model, from Kaplan-Meier to the image models.

    * ``fit(cohort, ...)`` returns ``self``; settings are checked there against
      ``_parameter_constraints`` (``__init__`` only stores them, so that
      ``sklearn.base.clone`` works).
    * ``predict_score(cohort)``: one number per patient, higher = higher risk.
    * ``predict_survival(cohort, times)``: patients x times (years) DataFrame,
      :math:`S(t \mid x) = 1 - F(t \mid x)`, with :math:`F` the model's risk.
    * ``predict_risk(cohort, horizon)``: :math:`F(h \mid x) = 1 - S(h \mid x)`.
    * ``risk_type``: ``"cause_specific"`` (death censored: the risk in a world without
      competing death) or ``"absolute"`` (death competing: the cumulative incidence of
      fracture). Predictions carry it in ``.attrs["risk_type"]``.
    * ``save(path)`` and :func:`load_model` (JSON + safetensors, never pickle).

    A concrete subclass joins the registry by naming itself in the class statement,
    ``class MyModel(SurvivalModel, name="my_model")``, and with it the conformance tests
    (``tests/models/test_conformance.py``) that every registered model passes.
    """

    risk_type: ClassVar[str] = "cause_specific"
    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: False for models that only serialise by pickle (their ``save`` refuses, and says why).
    _can_save: ClassVar[bool] = True
    #: Attribute set by ``fit``; its absence means "not fitted".
    _fitted_attribute: ClassVar[str] = "n_train_"
    #: Registry name (None for abstract bases).
    model_name: ClassVar[str | None] = None
    #: What the model reads: "tabular" (covariates) or "images" (path columns name them).
    input_kind: ClassVar[str] = "tabular"

    @classmethod
    def _test_params(cls) -> dict:
        """Settings that make the conformance tests fast (small networks, few epochs)."""
        return {}

    def __init_subclass__(cls, name: str | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.risk_type not in RISK_TYPES:
            raise TypeError(f"{cls.__name__}.risk_type must be one of {sorted(RISK_TYPES)}")
        _ESTIMATORS[cls.__name__] = cls
        cls.model_name = name
        if name is not None:
            if name in _MODELS and _MODELS[name] is not cls:
                raise ValueError(f"a model named {name!r} is already registered")
            _MODELS[name] = cls

    # ------------------------------------------------------------------ settings
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict:
        """Settings as passed to ``__init__`` (scikit-learn's protocol; ``deep`` is unused)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> SurvivalModel:
        """Change settings; they are checked at the next ``fit``. Returns ``self``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; its parameters: "
                    f"{', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def _validate_params(self) -> None:
        validate_params(self, self._parameter_constraints)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def risk_label(self) -> str:
        """Words for :attr:`risk_type`, as reports print it."""
        return RISK_TYPES[self.risk_type]

    # ------------------------------------------------------------------ protocol
    def fit(self, data, *args, **kwargs) -> SurvivalModel:
        """Fit to a cohort and return ``self``."""
        raise NotImplementedError

    def predict_score(self, data) -> np.ndarray:
        """Ranking score per patient, higher = higher risk."""
        raise NotImplementedError

    def predict_survival(self, data, times=None) -> pd.DataFrame:
        """Patients x times (years): one minus the model's risk by each time."""
        raise NotImplementedError

    def _requires_fit(self) -> bool:
        """False for models that learn nothing (they predict before ``fit``, which is a no-op)."""
        return True

    def _check_fitted(self) -> None:
        if self._requires_fit() and not hasattr(self, self._fitted_attribute):
            raise NotFittedError(f"this {type(self).__name__} is not fitted; call fit() first")

    def predict_risk(self, data, horizon: float = 10.0) -> pd.Series:
        r"""Risk of fracture by ``horizon`` years, :math:`1 - S(h \mid x)`, in [0, 1].

        Cause-specific or absolute as :attr:`risk_type` says (also in ``.attrs``).
        """
        if isinstance(horizon, bool) or not np.isfinite(horizon) or horizon <= 0:
            raise ValueError(f"horizon must be a positive number of years, got {horizon!r}")
        surv = self.predict_survival(data, [float(horizon)])
        risk = pd.Series(
            1.0 - surv.iloc[:, 0].to_numpy(), index=surv.index, name=f"risk_{horizon:g}y"
        )
        risk.attrs["risk_type"] = self.risk_type
        return risk

    def predict_cumulative_incidence(
        self, data, times: Sequence[float] | np.ndarray | None = None, *, cause: int = 1
    ) -> pd.DataFrame:
        r"""Cumulative incidence :math:`F_c(t \mid x) = P(T \le t, \text{cause} = c \mid x)`.

        The absolute risk of ``cause`` (1 fracture, 2 death) by each time, the other
        cause competing; patients x times (years). Only for models whose
        :attr:`risk_type` is ``"absolute"``: a cause-specific model's :math:`1 - S(t)`
        is the risk in a world without death, not a cumulative incidence, and asking
        it for one is an error that says so.
        """
        if cause not in (1, 2):
            raise ValueError(f"cause must be 1 (fracture) or 2 (death), got {cause!r}")
        if self.risk_type != "absolute":
            raise ValueError(
                f"this {type(self).__name__} models the cause-specific hazard of fracture "
                "(death censored); its 1 - S(t) is not a cumulative incidence. Use a model "
                "with death competing, e.g. DeepSurv(head='cause_specific')"
            )
        if cause == 2:
            raise ValueError(f"this {type(self).__name__} does not model death (cause 2)")
        surv = self.predict_survival(data, times)
        out = 1.0 - surv
        out.attrs["risk_type"] = "absolute"
        return out

    def _set_curves(self, curves: OutputCurves) -> None:
        """Keep what turns outputs into curves (and its fracture baseline, if it has one)."""
        self.curves_ = curves
        if hasattr(curves, "baseline_hazard_"):
            self.baseline_hazard_ = curves.baseline_hazard_

    def _survival_frame(self, values: np.ndarray, index: pd.Index, times) -> pd.DataFrame:
        """Patients x times frame labelled with the risk type."""
        frame = pd.DataFrame(
            values,
            index=index,
            columns=pd.Index(np.asarray(times, dtype=np.float64), name="time (years)"),
        )
        frame.attrs["risk_type"] = self.risk_type
        return frame

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """What ``save`` writes: a JSON-able config and named tensors."""
        raise NotImplementedError

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict[str, torch.Tensor]):
        """Rebuild a fitted model from :meth:`_state`'s output."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save to a directory: ``config.json`` plus ``weights.safetensors``; nothing executable.

        :func:`load_model` (or ``Class.load``) rebuilds a model whose predictions are
        bit-identical. An existing directory is only replaced with ``overwrite=True``.
        After a distributed fit, only the process of global rank 0 writes.
        """
        if not self._can_save:
            raise NotImplementedError(
                f"{type(self).__name__} cannot be saved safely: it serialises only by pickle"
            )
        self._check_fitted()
        if getattr(self, "fit_rank_", 0) != 0:  # a distributed fit: only rank 0 writes
            return Path(path)
        state, tensors = self._state()
        return self._write(path, {"state": state}, tensors, overwrite=overwrite)

    def _write(self, path, config: dict, tensors: dict, *, overwrite: bool) -> Path:
        """Write ``config`` (with format, class and versions added) and ``tensors``."""
        from safetensors.torch import save_file

        import fracrisk

        config = {
            "format": _FORMAT,
            "estimator": type(self).__name__,
            "risk_type": self.risk_type,
            "params": _jsonable_params(self),
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
            config["checksums"] = {_WEIGHTS: file_sha256(staging / _WEIGHTS)}
            (staging / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return Path(path)

    @classmethod
    def _from_saved(cls, config: dict, tensors: dict[str, torch.Tensor]) -> SurvivalModel:
        if "state" not in config or not isinstance(config.get("params"), dict):
            raise ValueError(
                "the model was saved by an earlier fracrisk version (no 'state' in its "
                "config); fit and save it again with this version"
            )
        unknown = sorted(set(config["params"]) - set(cls._param_names()))
        if unknown:
            raise ValueError(
                f"the saved {cls.__name__} has settings this version does not know: {unknown}"
            )
        return cls._from_state(config["params"], config["state"], tensors)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SurvivalModel:
        """Load a model saved with ``save``; see :func:`load_model`."""
        model = load_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{str(path)!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _jsonable_params(model: SurvivalModel) -> dict:
    """The settings as JSON, or a clear error for one that has no JSON form."""
    params = model._saved_params() if hasattr(model, "_saved_params") else model.get_params()
    try:
        json.dumps(params)
    except TypeError as err:
        raise ValueError(
            f"{type(model).__name__} cannot be saved: a setting has no JSON form ({err}); "
            "settings must be numbers, strings, lists or dicts"
        ) from err
    return params


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted.

    Examples
    --------
    >>> "deepsurv" in list_models()
    True
    """
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **params) -> SurvivalModel:
    """Build the model registered as ``name`` with ``params`` (see :func:`list_models`).

    Examples
    --------
    >>> create_model("coxph", ties="breslow")
    CoxPH(ties='breslow', penalizer=0.0, max_iter=100, tol=1e-10)
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name](**params)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix + "."``, without it."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _baseline_tensors(
    baseline: BreslowBaselineHazard, prefix: str = "baseline_hazard"
) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{key}": torch.from_numpy(np.ascontiguousarray(value))
        for key, value in baseline.state_arrays().items()
    }


def _baseline_from_tensors(
    tensors: dict[str, torch.Tensor], prefix: str = "baseline_hazard"
) -> BreslowBaselineHazard:
    return BreslowBaselineHazard.from_state_arrays(
        {k: v.numpy() for k, v in _prefixed(tensors, prefix).items()}
    )


class HeadRiskType:
    """``risk_type`` of a model that follows its head: the head class's, by the head's name.

    Read on the class it is ``"cause_specific"`` (the default head's); read on an instance
    it is the risk type of the head named by ``instance._head_name``.
    """

    def __get__(self, instance, owner) -> str:
        if instance is None:
            return "cause_specific"
        try:
            return head_class(instance._head_name).risk_type
        except ValueError:  # an unknown head: fit() will say so
            return "cause_specific"


class OutputCurves:
    r"""Survival curves from a fitted head's outputs, by its objective.

    * ``"cox"``: :math:`S(t) = \exp(-H_0(t) e^{\eta})` (Breslow), death censored;
    * ``"cause_specific"``: the cumulative incidences of the Cox pair, with Breslow
      baselines for fracture and death (:func:`~fracrisk.baseline_hazard.cumulative_incidence`);
    * ``"discrete"``: the head's cumulative incidences on its grid, interpolated
      (:func:`~fracrisk.discrete_time.interpolate_incidence`).

    Shared by the tabular and the image models, so that both give the same curves from
    the same outputs.
    """

    def __init__(self, head: nn.Module) -> None:
        self.objective = getattr(head, "objective", "cox")
        self.head = head

    def fit(self, output: np.ndarray, time: np.ndarray, event: np.ndarray) -> OutputCurves:
        """Fit the Breslow baselines a Cox objective needs (nothing for a discrete head)."""
        if self.objective == "cox":
            self.baseline_hazard_ = BreslowBaselineHazard().fit(output.reshape(-1), time, event)
        elif self.objective == "cause_specific":
            self.baseline_hazard_ = BreslowBaselineHazard().fit(output[:, 0], time, event)
            died = np.where(np.asarray(event) == 2, 1, 0)
            self.death_baseline_hazard_ = BreslowBaselineHazard().fit(output[:, 1], time, died)
        return self

    @property
    def max_time(self) -> float:
        """Longest time the curves are estimated to (years); held flat after it."""
        if self.objective == "discrete":
            return float(self.head.cuts[-1])
        return float(self.baseline_hazard_.max_time_)

    def incidence(self, output: np.ndarray, times: np.ndarray, cause: int = 1) -> np.ndarray:
        r""":math:`F_c(t \mid x)` (absolute objectives only), shape (n, n_times)."""
        times = np.asarray(times, dtype=np.float64)
        if self.objective == "cause_specific":
            self._warn_beyond(times)
            pair = (self.baseline_hazard_, self.death_baseline_hazard_)
            eta = (output[:, 0], output[:, 1])
            k = cause - 1
            return cumulative_incidence(pair[k], pair[1 - k], eta[k], eta[1 - k], times)
        if self.objective == "discrete":
            self._warn_beyond(times)
            with torch.no_grad():
                phi = torch.as_tensor(output, dtype=torch.float32)
                at_cuts = self.head.incidence_at_cuts(phi)[:, cause - 1, :].double().numpy()
            return interpolate_incidence(at_cuts, self.head.cuts.cpu().numpy(), times)
        raise ValueError("a Cox head gives the cause-specific hazard, not a cumulative incidence")

    def survival(self, output: np.ndarray, times: np.ndarray) -> np.ndarray:
        """One minus the model's fracture risk by each time, shape (n, n_times)."""
        if self.objective == "cox":
            return self.baseline_hazard_.survival(output.reshape(-1), times)
        return 1.0 - self.incidence(output, times, cause=1)

    def score(self, output: np.ndarray) -> np.ndarray:
        """Fracture ranking score: the log hazard (Cox heads), or the head's risk score."""
        if self.objective == "discrete":
            with torch.no_grad():
                phi = torch.as_tensor(output, dtype=torch.float32)
                return self.head.risk_score(phi).double().numpy()
        return output[:, 0] if output.ndim == 2 else output

    def _warn_beyond(self, times: np.ndarray) -> None:
        if np.any(times > self.max_time):
            warnings.warn(
                f"times beyond the longest training follow-up ({self.max_time:.3g} years) "
                "are extrapolated flat",
                DataWarning,
                stacklevel=4,
            )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The baselines as named tensors, for ``save``."""
        out: dict[str, torch.Tensor] = {}
        if self.objective in ("cox", "cause_specific"):
            out.update(_baseline_tensors(self.baseline_hazard_))
        if self.objective == "cause_specific":
            out.update(_baseline_tensors(self.death_baseline_hazard_, "death_baseline_hazard"))
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> OutputCurves:
        """Set the baselines saved by :meth:`tensors`."""
        if self.objective in ("cox", "cause_specific"):
            self.baseline_hazard_ = _baseline_from_tensors(tensors)
        if self.objective == "cause_specific":
            self.death_baseline_hazard_ = _baseline_from_tensors(tensors, "death_baseline_hazard")
        return self


class SurvivalEstimator(SurvivalModel):
    """Base class of neural and Cox estimators on tabular covariates.

    An estimator is a head (:mod:`fracrisk.heads`) from features to the parameters of a
    survival model, the preprocessing fitted with it, and what turns the head's outputs
    into curves (:class:`OutputCurves`): a Breslow baseline hazard for a Cox head (death
    censored: a cause-specific risk), a Breslow baseline per cause for the cause-specific
    pair, or the head's own time grid for the discrete-time heads (death competing: an
    absolute risk). :attr:`risk_type` follows the head.

    Subclasses implement ``_fit_network(network, x, time, event, cohort, **fit_options)``
    (returning the trained network) and set ``_head_name`` (and ``_head_kwargs``); a
    discrete-time head's grid has ``_n_intervals()`` intervals.
    """

    _head_name: ClassVar[str] = ""
    risk_type = HeadRiskType()

    def _head_kwargs(self) -> dict:
        return {}

    def _n_intervals(self) -> int:
        return 20

    # ------------------------------------------------------------- fitting
    def fit(
        self,
        data: Cohort | pd.DataFrame,
        covariates: Sequence[str] | None = None,
        **fit_options,
    ) -> SurvivalEstimator:
        """Fit the model to a cohort (or a DataFrame with ``time`` and ``event`` columns).

        Parameters
        ----------
        data : Cohort or pandas.DataFrame
            Training patients. Event code 1 is the event of interest; code 2 (death) is
            censoring for a Cox head (the cause-specific hazard of fracture) and the
            competing event for the heads that give absolute risk.
        covariates : sequence of str, optional
            Columns to use; by default the canonical clinical columns present in the data
            plus the cohort's named extra covariates.
        **fit_options
            Options of the training run of the neural models (``resume``, ``callbacks``;
            see :meth:`fracrisk.DeepSurv.fit`).

        Returns
        -------
        self
        """
        self._validate_params()
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
        preprocessor = TabularPreprocessor(columns).fit(cohort.df)
        x = preprocessor.transform(cohort.df, warn=False)
        self.preprocessor_ = preprocessor
        kwargs = self._head_kwargs()
        if head_class(self._head_name).objective == "discrete":
            grid = fit_time_grid(cohort.time, cohort.event, self._n_intervals())
            kwargs["cuts"] = grid.tolist()
        with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG is untouched
            torch.manual_seed(getattr(self, "seed", 0))
            network = create_head(self._head_name, x.shape[1], **kwargs)
            if hasattr(network, "initialise_baseline"):
                network.initialise_baseline(cohort.time, cohort.event)
            network = self._fit_network(
                network, x, cohort.time, cohort.event, cohort, **fit_options
            )
        self.head_kwargs_ = kwargs
        self.covariates_ = columns
        self.network_ = network.cpu().eval()
        self._set_curves(
            OutputCurves(self.network_).fit(self._output_array(x), cohort.time, cohort.event)
        )
        self.n_train_ = len(cohort)
        return self

    def _fit_network(
        self,
        network: nn.Module,
        x: np.ndarray,
        time: np.ndarray,
        event: np.ndarray,
        cohort: Cohort,
        **fit_options,
    ) -> nn.Module:
        raise NotImplementedError

    # ------------------------------------------------------------- prediction
    def _design(self, data: Cohort | pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
        self._check_fitted()
        df, index = table_and_ids(data)
        return self.preprocessor_.transform(df), index

    def _output_array(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """The head's outputs: (n,) for a Cox head, (n, ...) otherwise."""
        param = next(self.network_.parameters())
        out = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                chunk = torch.as_tensor(
                    x[start : start + batch_size], dtype=param.dtype, device=param.device
                )
                value = self.network_(chunk).double().cpu()
                if value.dim() == 2 and value.shape[1] == 1:
                    value = value.reshape(-1)
                out.append(value.numpy())
        if out:
            return np.concatenate(out)
        return np.empty(
            (0, *self.network_(torch.zeros(1, x.shape[1], dtype=param.dtype)).shape[1:])
        )

    def _log_hazard_array(self, x: np.ndarray) -> np.ndarray:
        output = self._output_array(x)
        objective = getattr(self.network_, "objective", "cox")
        if objective == "discrete":
            raise ValueError(
                f"head={self._head_name!r} is a discrete-time model and has no log hazard "
                "ratio; use predict_cumulative_incidence, predict_risk or predict_score"
            )
        return output[:, 0] if objective == "cause_specific" else output

    def predict_log_hazard(self, data: Cohort | pd.DataFrame) -> pd.Series:
        """Log hazard ratio of fracture per patient (higher = higher risk), vs the baseline.

        The baseline is a patient with the average training features (0 after
        standardisation). For the cause-specific pair it is the fracture hazard's; the
        discrete-time heads have none.
        """
        x, index = self._design(data)
        return pd.Series(self._log_hazard_array(x), index=index, name="log_hazard")

    def predict_score(self, data: Cohort | pd.DataFrame) -> np.ndarray:
        """Ranking score for concordance metrics (higher = higher risk).

        The log hazard ratio of fracture for the Cox heads (the pair included); the
        cumulative incidence of fracture by the last cut of the grid for the
        discrete-time heads.
        """
        x, _ = self._design(data)
        return self.curves_.score(self._output_array(x))

    def predict_survival(
        self, data: Cohort | pd.DataFrame, times: Sequence[float] | np.ndarray | None = None
    ) -> pd.DataFrame:
        r"""One minus the risk of fracture by each time: :math:`1 - F(t \mid x)`.

        For a Cox head, :math:`S(t \mid x) = \exp(-H_0(t)\, e^{\eta(x)})`, death
        censored (cause-specific); for the heads with death competing, one minus the
        cumulative incidence of fracture (absolute; ``attrs["risk_type"]`` says which).

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
            non-increasing along each row.
        """
        x, index = self._design(data)
        times = self._default_times() if times is None else np.asarray(times, dtype=np.float64)
        surv = self.curves_.survival(self._output_array(x), times)
        return self._survival_frame(surv, index, times)

    def predict_cumulative_incidence(
        self, data, times: Sequence[float] | np.ndarray | None = None, *, cause: int = 1
    ) -> pd.DataFrame:
        r"""Cumulative incidence of ``cause`` (1 fracture, 2 death), the other competing.

        :math:`F_c(t \mid x) = P(T \le t, \text{cause} = c \mid x)`, patients x times
        (years); for the heads that give absolute risk (``cause_specific``, ``deephit``,
        ``pmf``, ``logistic_hazard``). A Cox head is refused (see
        :meth:`SurvivalModel.predict_cumulative_incidence`).
        """
        if cause not in (1, 2):
            raise ValueError(f"cause must be 1 (fracture) or 2 (death), got {cause!r}")
        if self.risk_type != "absolute":
            return super().predict_cumulative_incidence(data, times, cause=cause)
        x, index = self._design(data)
        times = self._default_times() if times is None else np.asarray(times, dtype=np.float64)
        values = self.curves_.incidence(self._output_array(x), times, cause=cause)
        frame = self._survival_frame(values, index, times)
        frame.attrs["cause"] = cause
        return frame

    def _default_times(self) -> np.ndarray:
        years = np.arange(1.0, np.floor(self.curves_.max_time) + 1.0)
        return years if years.size else np.array([self.curves_.max_time])

    # ------------------------------------------------------------- persistence
    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        tensors = {
            f"network.{k}": v.detach().cpu().contiguous()
            for k, v in self.network_.state_dict().items()
        }
        tensors.update(self.curves_.tensors())
        state = {
            "head": {
                "name": self._head_name,
                "in_features": len(self.preprocessor_.feature_names_),
                "kwargs": getattr(self, "head_kwargs_", self._head_kwargs()),
                "dtype": str(next(self.network_.parameters()).dtype).removeprefix("torch."),
            },
            "covariates": self.covariates_,
            "preprocessor": self.preprocessor_.to_dict(),
            "n_train": self.n_train_,
            "extra": self._extra_state(),
        }
        return state, tensors

    @classmethod
    def _from_state(
        cls, params: dict, state: dict, tensors: dict[str, torch.Tensor]
    ) -> SurvivalEstimator:
        model = cls(**params)
        head: nn.Module = create_head(
            state["head"]["name"], state["head"]["in_features"], **state["head"]["kwargs"]
        )
        dtype = state["head"]["dtype"]
        if dtype not in ("float32", "float64"):
            raise ValueError(f"unsupported weight dtype {dtype!r}")
        head = head.to(getattr(torch, dtype))
        head.load_state_dict(_prefixed(tensors, "network"))
        model.network_ = head.eval()
        model.head_kwargs_ = state["head"]["kwargs"]
        model._set_curves(OutputCurves(model.network_).load(tensors))
        model.preprocessor_ = TabularPreprocessor.from_dict(state["preprocessor"])
        model.covariates_ = state["covariates"]
        model.n_train_ = state["n_train"]
        model._load_extra_state(state["extra"])
        return model


def load_model(path: str | os.PathLike[str]) -> SurvivalModel:
    """Load any fracrisk model from a directory written by ``save``; executes no code.

    ``config.json`` is parsed as JSON and ``weights.safetensors`` read as plain tensors,
    after its SHA-256 is checked against the one the config records; the class named in
    the config (one of fracrisk's, from a registry) rebuilds the model, and the saved
    baseline hazards are validated.
    """
    from safetensors.torch import load_file

    path = Path(path)
    config_path, weights_path = path / _CONFIG, path / _WEIGHTS
    for required in (config_path, weights_path):
        if not required.exists():
            raise FileNotFoundError(f"{str(required)!r} not found: not a fracrisk model directory")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{config_path} is not a fracrisk model config: not JSON ({err})"
        ) from None
    if config.get("format") != _FORMAT:
        raise ValueError(
            f"{str(config_path)!r} has format {config.get('format')!r}, expected {_FORMAT!r}"
        )
    if config["estimator"] not in _ESTIMATORS:
        raise ValueError(f"unknown estimator {config['estimator']!r} in {str(config_path)!r}")
    expected = (config.get("checksums") or {}).get(_WEIGHTS)
    if expected is not None and file_sha256(weights_path) != expected:  # older models have none
        raise ValueError(
            f"{str(weights_path)!r} does not match the SHA-256 in its config: the file is "
            "damaged or was changed after saving; save the model again"
        )
    tensors = load_file(str(weights_path))
    try:
        return _ESTIMATORS[config["estimator"]]._from_saved(config, tensors)
    except ValueError as err:
        raise ValueError(f"{str(path)!r}: {err}") from err
    except (RuntimeError, KeyError) as err:  # load_state_dict: missing or misshapen tensors
        raise ValueError(
            f"{str(path)!r}: the weights do not match the model the config describes "
            f"({type(err).__name__}: {str(err).splitlines()[0][:300]})"
        ) from err
