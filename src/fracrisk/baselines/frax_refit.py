r"""FRAX's structure refitted on the user's own cohort.

This is Kim et al. 2024's "clinical model with FRAX-equivalent variables".

Two cause-specific Cox models on the FRAX inputs, one for fracture (death censored) and one
for death (fracture censored), as FRAX models fracture and death hazards separately. The
probability of fracture with death competing is the plug-in cumulative incidence of
:func:`fracrisk.baselines._competing.cumulative_incidence`. The fracture model includes
FRAX's age interaction of BMD (the T-score gradient steepens at younger ages; Johnell 2005)
when a T-score is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fracrisk._params import Interval, Options
from fracrisk.baselines._competing import cumulative_incidence, pair_state, restore_pair
from fracrisk.data.cohort import Cohort, as_cohort, table_and_ids
from fracrisk.data.schema import BINARY_RISK_FACTORS
from fracrisk.models._base import SurvivalModel
from fracrisk.models.coxph import CoxPH

__all__ = ["FraxStyleRefit"]

_AGE_CENTRE = 65.0


class FraxStyleRefit(SurvivalModel, name="frax_refit"):
    """FRAX-style competing-risk model refitted on a training cohort.

    Parameters
    ----------
    outcome : {"mof", "hip"}, default "mof"
        The fracture modelled: the cohort's event (code 1, a major osteoporotic fracture in
        the simulator's ``population`` preset), or a hip fracture, which needs a
        ``fracture_site`` column; a fracture at another site then ends follow-up without
        the event (the data hold first fractures only).
    with_bmd : bool, default True
        Use the femoral-neck T-score (and its age interaction). As in FRAX, secondary
        osteoporosis is then dropped; without BMD it is kept and the T-score is not used.
    ties : {"efron", "breslow"}, default "efron"
        Tie handling of both Cox models.
    penalizer : float, default 0.0
        Ridge penalty of both Cox models.

    Attributes
    ----------
    fracture_model_, death_model_ : CoxPH
        The cause-specific hazard models; ``fracture_model_.summary_`` holds the fitted
        gradients of risk (hazard ratios with CIs).
    covariates_ : list of str
        The design's columns, including ``age_x_t_score`` = (age - 65) x T-score.
    constant_dropped_ : list of str
        Risk factors left out because every training patient has the same value (e.g.
        ``prior_fracture`` in a cohort recruited after a fracture): their effect cannot be
        estimated and is absorbed in the baseline hazards.
    """

    risk_type = "absolute"
    _fitted_attribute = "fracture_model_"
    _parameter_constraints = {
        "outcome": [Options("mof", "hip")],
        "with_bmd": [Options(True, False)],
        "ties": [Options("efron", "breslow")],
        "penalizer": [Interval(float, 0, None)],
    }

    def __init__(
        self,
        *,
        outcome: str = "mof",
        with_bmd: bool = True,
        ties: str = "efron",
        penalizer: float = 0.0,
    ) -> None:
        self.outcome = outcome
        self.with_bmd, self.ties, self.penalizer = with_bmd, ties, penalizer

    def _design(self, df: pd.DataFrame) -> pd.DataFrame:
        flags = [
            f for f in BINARY_RISK_FACTORS if not (self.with_bmd and f == "secondary_osteoporosis")
        ]
        columns = ["age", "sex", "bmi", *flags]
        if self.with_bmd:
            columns.append("femoral_neck_t_score")
        absent = [c for c in columns if c not in df.columns]
        if absent:
            raise ValueError(
                f"FraxStyleRefit needs column(s) {absent}"
                + (
                    "; pass with_bmd=False for the model without BMD"
                    if absent == ["femoral_neck_t_score"]
                    else ""
                )
            )
        design = df[columns].copy()
        if self.with_bmd:
            design["age_x_t_score"] = (df["age"] - _AGE_CENTRE) * df["femoral_neck_t_score"]
        return design

    def fit(self, data: Cohort | pd.DataFrame) -> FraxStyleRefit:
        """Fit the fracture (code 1, or hip) and death (code 2) cause-specific hazard models."""
        self._validate_params()
        cohort = as_cohort(data)
        design = self._design(cohort.df)
        # A risk factor every training patient shares (e.g. prior_fracture after a hip
        # fracture, preset kim2024) has no gradient to fit: its effect is in the baseline.
        self.constant_dropped_ = [
            c for c in BINARY_RISK_FACTORS if c in design.columns and design[c].nunique() < 2
        ]
        design = design.drop(columns=self.constant_dropped_)
        self.covariates_ = list(design.columns)
        if not np.any(cohort.event == 2):
            raise ValueError(
                "FraxStyleRefit needs deaths (event code 2) to model the "
                "competing mortality; none in the training data"
            )
        fracture = cohort.event == 1
        if self.outcome == "hip":
            if "fracture_site" not in cohort.df.columns:
                raise ValueError(
                    "outcome='hip' needs a 'fracture_site' column (hip, vertebral, "
                    "other) for the fractures"
                )
            fracture = fracture & (cohort.df["fracture_site"] == "hip").to_numpy()
        frames = {}
        for name, happened in (("fracture", fracture), ("death", cohort.event == 2)):
            frame = design.copy()
            frame["time"] = cohort.time
            frame["event"] = happened.astype(np.int64)
            frames[name] = frame
        options = {"ties": self.ties, "penalizer": self.penalizer}
        self.fracture_model_ = CoxPH(**options).fit(frames["fracture"], covariates=self.covariates_)
        self.death_model_ = CoxPH(**options).fit(frames["death"], covariates=self.covariates_)
        self.n_train_ = len(cohort)
        return self

    def predict_fracture_log_hazard(self, data) -> pd.Series:
        """The fracture model's log hazard ratio per patient: the cause-specific ranking.

        Harrell's C of this score compares like with like with the cause-specific Cox
        models; the 10-year absolute risk (:meth:`predict_score`) also ranks by mortality.
        """
        self._check_fitted()
        df, index = table_and_ids(data)
        eta = self.fracture_model_.predict_log_hazard(self._design(df)).to_numpy()
        return pd.Series(eta, index=index, name="fracture_log_hazard")

    def _cumulative_incidence(self, data, times) -> tuple[np.ndarray, pd.Index]:
        self._check_fitted()
        df, index = table_and_ids(data)
        design = self._design(df)
        cif = cumulative_incidence(
            self.fracture_model_.baseline_hazard_,
            self.death_model_.baseline_hazard_,
            self.fracture_model_.predict_log_hazard(design).to_numpy(),
            self.death_model_.predict_log_hazard(design).to_numpy(),
            times,
        )
        return cif, index

    def predict_cumulative_incidence(self, data, times) -> pd.DataFrame:
        """Probability of fracture by each time (years), death competing; patients x times."""
        cif, index = self._cumulative_incidence(data, times)
        return self._survival_frame(cif, index, times)

    def predict_survival(self, data, times) -> pd.DataFrame:
        """1 - cumulative incidence of fracture (death competing), patients x times."""
        cif, index = self._cumulative_incidence(data, times)
        return self._survival_frame(1.0 - cif, index, times)

    def _state(self) -> tuple[dict, dict]:
        models, tensors = pair_state(self)
        state = {
            "n_train": self.n_train_,
            "covariates": self.covariates_,
            "constant_dropped": self.constant_dropped_,
            "models": models,
        }
        return state, tensors

    @classmethod
    def _from_state(cls, params: dict, state: dict, tensors: dict) -> FraxStyleRefit:
        model = cls(**params)
        model.n_train_ = state["n_train"]
        model.covariates_ = state["covariates"]
        model.constant_dropped_ = state["constant_dropped"]
        restore_pair(model, state["models"], tensors)
        return model

    def predict_score(self, data) -> np.ndarray:
        """Ranking score: the 10-year probability of fracture."""
        return self.predict_risk(data, 10.0).to_numpy()
