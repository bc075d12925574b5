"""The clinical ground-truth simulator: reproducible, plausible and internally consistent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.metrics import concordance_index_censored

from fracrisk.data import BINARY_RISK_FACTORS, CANONICAL_CLINICAL, Cohort
from fracrisk.simulate import clinical_cohort, fracture_log_relative_hazard

DAYS_PER_YEAR = 365.25


@pytest.fixture(scope="module")
def big() -> Cohort:
    return clinical_cohort(5000, seed=0)


@pytest.fixture(scope="module")
def nonlinear() -> Cohort:
    return clinical_cohort(1500, seed=2, effects="nonlinear")


def test_output_is_a_valid_cohort_with_documented_columns(big):
    assert isinstance(big, Cohort)
    assert len(big) == 5000
    assert big.id_col == "patient_id"
    assert big.ids.is_unique
    assert big.clinical_columns == list(CANONICAL_CLINICAL)
    assert {"patient_id", "entry_date", "time", "event"} <= set(big.df.columns)
    assert big.df["entry_date"].dtype == "datetime64[ns]"
    assert list(big.truth.columns) == [
        "true_log_hazard",
        "risk_2y",
        "risk_5y",
        "risk_10y",
        "z",
        "true_t_score",
    ]
    # Hidden quantities never leak into the clinical table.
    assert not {"z", "true_t_score", "true_log_hazard"} & set(big.df.columns)
    assert not big.df.isna().any().any()
    assert not big.truth.isna().any().any()
    assert big.source == "clinical_cohort(n=5000, seed=0)"


@pytest.mark.parametrize(
    "effects", [pytest.param("frax", id="frax"), pytest.param("nonlinear", id="nonlinear")]
)
def test_same_seed_is_bit_identical_and_different_seeds_differ(effects):
    a = clinical_cohort(300, seed=42, effects=effects)
    b = clinical_cohort(300, seed=42, effects=effects)
    c = clinical_cohort(300, seed=43, effects=effects)
    pd.testing.assert_frame_equal(a.df, b.df, check_exact=True)
    pd.testing.assert_frame_equal(a.truth, b.truth, check_exact=True)
    for left, right in [(a.df, c.df), (a.truth, c.truth)]:
        with pytest.raises(AssertionError):
            pd.testing.assert_frame_equal(left, right, check_exact=True)
    assert not np.array_equal(a.time, c.time)
    assert not np.array_equal(a.truth["risk_10y"], c.truth["risk_10y"])


def test_truth_is_aligned_row_for_row(big):
    df, truth = big.df, big.truth
    assert truth.index.equals(df.index)
    assert len(truth) == len(df)
    # The measured T-score is the true one plus DXA precision error (SD 0.125 T units).
    assert np.corrcoef(truth["true_t_score"], df["femoral_neck_t_score"])[0, 1] > 0.98
    # Rebuild the covariate part of the true log hazard from the table's own row: what is left
    # is exactly linear in age within each sex, which fails if any row were shuffled.
    patients = pd.concat([df, truth[["z", "true_t_score"]]], axis=1)
    rest = truth["true_log_hazard"].to_numpy() - fracture_log_relative_hazard(patients, "frax")
    for sex in ("F", "M"):
        sel = (df["sex"] == sex).to_numpy()
        age = df.loc[sel, "age"].to_numpy()
        slope, intercept = np.polyfit(age, rest[sel], 1)
        assert slope > 0
        np.testing.assert_allclose(rest[sel], intercept + slope * age, atol=1e-9)


def test_times_are_positive_whole_days_with_ties(big):
    time = big.time
    assert np.all(time > 0)
    assert np.all(np.isfinite(time))
    days = time * DAYS_PER_YEAR
    np.testing.assert_allclose(days, np.round(days), atol=1e-6)
    assert days.min() >= 1 - 1e-9
    assert time.max() <= 10.0 + 1 / DAYS_PER_YEAR
    assert pd.Series(time).duplicated().sum() > 100


def test_event_codes_and_all_three_present(big):
    counts = np.bincount(big.event)
    assert set(np.unique(big.event)) == {0, 1, 2}
    assert len(counts) == 3
    assert big.n_events == counts[1]
    # Fractures are the rarer outcome; most patients are censored.
    assert 0.03 < counts[1] / 5000 < 0.15
    assert 0.05 < counts[2] / 5000 < 0.30
    assert counts[0] / 5000 > 0.5


def test_entry_is_staggered_over_the_first_half_of_the_study(big):
    entry = big.df["entry_date"]
    assert entry.min() >= pd.Timestamp("2010-01-01")
    assert entry.max() <= pd.Timestamp("2010-01-01") + pd.Timedelta(days=5 * DAYS_PER_YEAR)
    # Nobody is followed beyond the end of study, ten years after the first entry.
    end = entry + pd.to_timedelta(np.round(big.time * DAYS_PER_YEAR), unit="D")
    assert end.max() <= pd.Timestamp("2010-01-01") + pd.Timedelta(days=10 * DAYS_PER_YEAR + 2)


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        pytest.param("prior_fracture", 0.14, 0.25, id="prior_fracture-0.184"),
        pytest.param("parental_hip_fracture", 0.05, 0.10, id="parental_hip_fracture-0.075"),
        pytest.param("current_smoking", 0.06, 0.12, id="current_smoking-0.092"),
        pytest.param("glucocorticoids", 0.04, 0.08, id="glucocorticoids-0.058"),
        pytest.param("rheumatoid_arthritis", 0.015, 0.045, id="rheumatoid_arthritis-0.029"),
        pytest.param("secondary_osteoporosis", 0.11, 0.18, id="secondary_osteoporosis-0.146"),
        pytest.param("alcohol_3_or_more_units", 0.01, 0.035, id="alcohol-0.02"),
    ],
)
def test_risk_factor_prevalences_are_plausible(big, column, low, high):
    assert column in BINARY_RISK_FACTORS
    values = big.df[column]
    assert set(values.unique()) == {0, 1}
    assert low < values.mean() < high, values.mean()


def test_demographics_and_bone_measures_are_plausible(big):
    df = big.df
    assert 0.67 < (df["sex"] == "F").mean() < 0.73
    assert df["age"].between(50, 90).all()
    assert 60 < df["age"].mean() < 70
    assert 25 < df["bmi"].mean() < 30
    assert df["femoral_neck_bmd"].between(0.2, 1.6).all()
    assert -1.6 < df["femoral_neck_t_score"].mean() < -0.6
    # Men have higher T-scores than women.
    by_sex = df.groupby("sex")["femoral_neck_t_score"].mean()
    assert by_sex["M"] - by_sex["F"] > 0.3


def test_t_score_mean_decreases_with_age(big):
    df = big.df
    decade = pd.cut(df["age"], [50, 60, 70, 80, 90], include_lowest=True)
    means = df.groupby(decade, observed=True)["femoral_neck_t_score"].mean().to_numpy()
    assert len(means) == 4
    assert np.all(np.diff(means) < -0.2), means


def test_true_risks_are_ordered_probabilities(big):
    truth = big.truth
    for column in ("risk_2y", "risk_5y", "risk_10y"):
        assert truth[column].between(0, 1, inclusive="neither").all()
    assert (truth["risk_2y"] < truth["risk_5y"]).all()
    assert (truth["risk_5y"] < truth["risk_10y"]).all()
    # Higher true hazard, higher risk (same sex and age group contribute monotonically).
    rho = pd.Series(truth["true_log_hazard"]).corr(truth["risk_10y"], method="spearman")
    assert rho > 0.9


def test_true_10_year_risk_is_higher_with_prior_fracture(big):
    df, truth = big.df, big.truth
    for sex in ("F", "M"):
        sel = df["sex"] == sex
        risk = truth.loc[sel, "risk_10y"].groupby(df.loc[sel, "prior_fracture"]).mean()
        assert risk[1] > 1.5 * risk[0], (sex, risk)


@pytest.mark.parametrize(
    "which", [pytest.param("frax", id="frax"), pytest.param("nonlinear", id="nonlinear")]
)
def test_true_log_hazard_discriminates_fractures(big, nonlinear, which):
    cohort = big if which == "frax" else nonlinear
    c_index = concordance_index_censored(
        cohort.event == 1, cohort.time, cohort.truth["true_log_hazard"].to_numpy()
    )[0]
    assert c_index > 0.65


def test_effects_change_the_hazard_but_not_the_covariates():
    frax = clinical_cohort(200, seed=9, effects="frax")
    nonlin = clinical_cohort(200, seed=9, effects="nonlinear")
    columns = list(CANONICAL_CLINICAL)
    pd.testing.assert_frame_equal(frax.df[columns], nonlin.df[columns], check_exact=True)
    assert not np.allclose(frax.truth["true_log_hazard"], nonlin.truth["true_log_hazard"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"effects": "linear"},
            r"effects must be one of \('frax', 'nonlinear'\), got "
            r"'linear'",
            id="unknown-effects",
        ),
        pytest.param({"effects": "FRAX"}, r"effects must be one of", id="effects-case-sensitive"),
        pytest.param({"n": 0}, r"n must be >= 1, got 0", id="n-zero"),
    ],
)
def test_arguments_are_validated(kwargs, message):
    kwargs = {"n": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        clinical_cohort(kwargs.pop("n"), **kwargs)


def test_fracture_log_relative_hazard_validates_effects():
    with pytest.raises(ValueError, match=r"effects must be one of .* got 'cox'"):
        fracture_log_relative_hazard(pd.DataFrame(), "cox")
