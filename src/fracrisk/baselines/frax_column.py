r"""FRAX probabilities computed by the official tool and carried in the cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fracrisk._params import InstanceOf, Options
from fracrisk.baselines._competing import cumulative_incidence, pair_state, restore_pair
from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.models._base import SurvivalModel
from fracrisk.models.coxph import CoxPH

__all__ = ["FraxColumn"]


class FraxColumn(SurvivalModel, name="frax_column"):
    r"""A FRAX probability column (``frax_mof_10y`` or ``frax_hip_10y``) as a model.

    The most faithful baseline: the official FRAX tool's 10-year probability, computed for
    each patient and stored in the cohort. The ranking score is the probability itself.

    Risk at other horizons :math:`t` assumes proportional hazards in time.
    Without recalibration the hazard is taken as constant over the ten years:
    :math:`P(t) = 1 - (1 - P_{10})^{t/10}`. With ``recalibrate=True``, ``fit`` estimates,
    on the training cohort, cause-specific Cox models of fracture and of death on
    :math:`x = \log(-\log(1 - P_{10}))`, and :math:`P(t)` is their cumulative incidence
    of fracture with death competing (the quantity FRAX reports). The risk is absolute
    (death competing), as FRAX's is.

    Parameters
    ----------
    column : str, default "frax_mof_10y"
        Column with the 10-year probability, in [0, 1].
    recalibrate : bool, default False
        Fit the baseline shape and slope on the training data. Without it nothing is
        learned: the model predicts before ``fit``.
    """

    risk_type = "absolute"
    _fitted_attribute = "fracture_model_"
    _parameter_constraints = {
        "column": [InstanceOf(str, description="a column name")],
        "recalibrate": [Options(True, False)],
    }

    def __init__(self, column: str = "frax_mof_10y", *, recalibrate: bool = False) -> None:
        self.column, self.recalibrate = column, recalibrate

    def _requires_fit(self) -> bool:
        return bool(self.recalibrate)

    def _probability(self, data) -> tuple[np.ndarray, pd.Index]:
        df, index = table_and_ids(data)
        if self.column not in df.columns:
            raise ValueError(f"column {self.column!r} (FRAX probability) is not in the data")
        p = pd.to_numeric(df[self.column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(p) | (p < 0) | (p > 1)
        if bad.any():
            rows = df.index[bad].tolist()[:5]
            raise ValueError(
                f"column {self.column!r}, rows {rows}: FRAX probabilities must be "
                "numbers in [0, 1] (convert percentages by dividing by 100)"
            )
        return p, index

    @staticmethod
    def _cloglog(p: np.ndarray) -> np.ndarray:
        return np.log(-np.log1p(-np.clip(p, 1e-12, 1 - 1e-12)))

    def fit(self, data: Cohort | pd.DataFrame | None = None) -> FraxColumn:
        """Recalibrate on ``data`` if asked; otherwise nothing to learn."""
        self._validate_params()
        self.n_train_ = 0 if data is None else len(as_cohort(data))
        if self.recalibrate:
            if data is None:
                raise ValueError("recalibrate=True needs training data")
            cohort = as_cohort(data)
            p, _ = self._probability(cohort)
            x = self._cloglog(p)
            for name, code in (("fracture_model_", 1), ("death_model_", 2)):
                frame = pd.DataFrame(
                    {
                        "time": cohort.time,
                        "frax_cloglog": x,
                        "event": (cohort.event == code).astype(np.int64),
                    }
                )
                setattr(self, name, CoxPH().fit(frame, covariates=["frax_cloglog"]))
        return self

    def predict_score(self, data) -> np.ndarray:
        """Ranking score: the FRAX probability."""
        return self._probability(data)[0]

    def predict_cumulative_incidence(self, data, times) -> pd.DataFrame:
        """Probability of fracture by each time (years), death competing; patients x times."""
        surv = self.predict_survival(data, times)
        return self._survival_frame(1.0 - surv.to_numpy(), surv.index, surv.columns)

    def predict_survival(self, data, times) -> pd.DataFrame:
        """Probability of no fracture by each time (years), death competing (1 - CIF)."""
        self._check_fitted()
        p, index = self._probability(data)
        grid = np.asarray(times, dtype=np.float64)
        if self.recalibrate:
            frame = pd.DataFrame({"frax_cloglog": self._cloglog(p)})
            surv = 1.0 - cumulative_incidence(
                self.fracture_model_.baseline_hazard_,
                self.death_model_.baseline_hazard_,
                self.fracture_model_.predict_log_hazard(frame).to_numpy(),
                self.death_model_.predict_log_hazard(frame).to_numpy(),
                grid,
            )
        else:
            surv = (1.0 - p[:, None]) ** (grid[None, :] / 10.0)
        return self._survival_frame(surv, index, grid)

    def _state(self) -> tuple[dict, dict]:
        models, tensors = pair_state(self) if self.recalibrate else ({}, {})
        return {"n_train": self.n_train_, "models": models}, tensors

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict) -> FraxColumn:
        model = cls(**params)
        model.n_train_ = state["n_train"]
        restore_pair(model, state["models"], tensors)
        return model
