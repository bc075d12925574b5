"""The true log hazard term by term, and the modality ceilings built from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fracrisk.data import Cohort
from fracrisk.metrics import harrell_c
from fracrisk.simulate import cohort
from fracrisk.simulate.truth import (
    MODALITY_TERMS,
    TERMS,
    ceiling_log_hazard,
    modality_ceiling,
    oracle_c,
)


@pytest.fixture(scope="module", params=["kong2022", "kim2024"])
def sim(request):
    return cohort(6000, preset=request.param, seed=11)


def test_the_terms_add_up_to_the_true_log_hazard(sim):
    terms = sim.truth[[f"term_{t}" for t in TERMS]].to_numpy().sum(axis=1)
    np.testing.assert_allclose(terms, sim.truth["true_log_hazard"], rtol=0, atol=1e-12)


def test_each_term_is_the_documented_effect(sim):
    truth = sim.truth
    np.testing.assert_allclose(truth["term_bmd"], -np.log(1.4) * (truth["true_t_score"] + 1.5))
    np.testing.assert_allclose(truth["term_bone_quality"], -np.log(1.3) * truth["z"])
    np.testing.assert_allclose(truth["term_falls"], np.log(1.9) * truth["falls_propensity"])
    vertebral_hr = 4.0 if "kong2022" in sim.source else 2.0
    expected = np.log(vertebral_hr) * (truth["n_prevalent_vertebral"] > 0)
    np.testing.assert_allclose(truth["term_vertebral_deformities"], expected)
    if "kong2022" in sim.source:  # a vertebral outcome: hip geometry plays no part
        assert (truth["term_hip_geometry"] == 0).all()
    else:
        assert truth["term_hip_geometry"].std() > 0


def test_ceilings_grow_with_what_a_modality_shows(sim):
    c = {m: modality_ceiling(sim, m) for m in MODALITY_TERMS}
    assert c["clinical"] < c["clinical_bmd"] < c["oracle"]
    assert c["clinical_bmd"] < c["hip_ct"] < c["oracle"]
    assert c["clinical_bmd"] < c["spine_xray"] < c["oracle"]
    assert oracle_c(sim) == pytest.approx(
        harrell_c(sim.time, sim.event == 1, sim.truth["true_log_hazard"].to_numpy())
    )


def test_ceiling_by_term_names_equals_by_modality(sim):
    by_name = ceiling_log_hazard(sim, MODALITY_TERMS["hip_ct"])
    np.testing.assert_array_equal(by_name, ceiling_log_hazard(sim, "hip_ct"))


def test_errors_name_the_problem(sim):
    with pytest.raises(ValueError, match="unknown modality 'mri'"):
        modality_ceiling(sim, "mri")
    with pytest.raises(ValueError, match="unknown term"):
        ceiling_log_hazard(sim, ["clinical", "genes"])
    plain = Cohort(pd.DataFrame({"time": [1.0, 2.0], "event": [1, 0], "age": [60, 70]}))
    with pytest.raises(ValueError, match="needs a simulated cohort"):
        modality_ceiling(plain, "clinical")
