"""FraxStyleCalculator: published UK FRAX rows, structural properties and input checks."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fracrisk.baselines import FraxStyleCalculator, list_countries
from fracrisk.data import BINARY_RISK_FACTORS
from fracrisk.exceptions import DataWarning
from fracrisk.simulate import clinical_cohort

AGES = (50, 60, 70, 80)

# UK FRAX 10-year probability (%), women, BMI 25, no BMD, ages 50 / 60 / 70 / 80:
# Kanis et al. 2008, Osteoporos Int 19:385, Tables 2-3 [V], as quoted in
# shared/reference/epidemiology.md ("Calibration targets for a FRAX-style calculator").
PUBLISHED = {
    ("mof", "no_crf"): (3.5, 6.0, 11.0, 17.0),
    ("mof", "prior_fracture"): (7.4, 12.0, 20.0, 28.0),
    ("hip", "no_crf"): (0.2, 0.7, 2.3, 7.0),
    ("hip", "prior_fracture"): (0.8, 2.1, 4.9, 11.0),
}
PUBLISHED_CASES = [
    pytest.param(
        outcome, profile, age, PUBLISHED[outcome, profile][k], id=f"{outcome}-{profile}-age{age}"
    )
    for (outcome, profile) in PUBLISHED
    for k, age in enumerate(AGES)
]

OTHER_RISK_FACTORS = [
    "parental_hip_fracture",
    "current_smoking",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3_or_more_units",
]

# Mean femoral-neck T-score by age and sex used by the calculator (frax_gradients.T_SCORE_MEAN:
# ~ -0.6/-1.1/-1.6/-2.1 in women's 50s..80s, men 0.5 higher [R/I]).
MEAN_T_AT_55 = {"F": -0.6, "M": -0.1}


def mean_t_score(sex: str, age: float) -> float:
    return MEAN_T_AT_55[sex] - 0.05 * (age - 55.0)


def patients(*rows: dict) -> pd.DataFrame:
    """Patients (women, BMI 25, no risk factor, no BMD unless overridden)."""
    base = {"age": 65.0, "sex": "F", "bmi": 25.0, **{f: 0 for f in BINARY_RISK_FACTORS}}
    return pd.DataFrame([{**base, **row} for row in rows])


@pytest.fixture(scope="module")
def calc() -> FraxStyleCalculator:
    return FraxStyleCalculator()


def published_table(calc: FraxStyleCalculator) -> pd.DataFrame:
    rows = []
    for (outcome, profile), values in PUBLISHED.items():
        prior = int(profile == "prior_fracture")
        out = calc.predict(patients(*[{"age": a, "prior_fracture": prior} for a in AGES]))
        for k, age in enumerate(AGES):
            ours = 100 * out[f"{outcome}_10y"].iloc[k]
            rows.append(
                {
                    "outcome": outcome,
                    "profile": profile,
                    "age": age,
                    "ours_%": round(ours, 2),
                    "published_%": values[k],
                    "rel_error": round(ours / values[k] - 1, 3),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- published rows
@pytest.mark.parametrize(("outcome", "profile", "age", "published_percent"), PUBLISHED_CASES)
def test_reproduces_published_uk_row(calc, outcome, profile, age, published_percent):
    # Kanis 2008 Tables 2-3 (UK, women, BMI 25, no BMD): see PUBLISHED above.
    row = patients({"age": age, "prior_fracture": int(profile == "prior_fracture")})
    ours = 100 * calc.predict(row)[f"{outcome}_10y"].iloc[0]
    assert ours == pytest.approx(published_percent, rel=0.15), (
        f"{outcome} {profile} age {age}: ours {ours:.2f}% vs published {published_percent}%"
    )


def test_prints_table_of_ours_vs_published(calc):
    table = published_table(calc)
    print("\nFraxStyleCalculator vs UK FRAX (Kanis 2008 Tables 2-3), women, BMI 25, no BMD")
    print(table.to_string(index=False))
    assert len(table) == 16
    worst = table.loc[table["rel_error"].abs().idxmax()]
    assert table["rel_error"].abs().max() < 0.15, f"worst row:\n{worst}"


# --------------------------------------------------------------------------- structure
def test_probabilities_are_in_unit_interval_for_random_profiles(calc):
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "age": rng.uniform(40, 90, n),
            "sex": rng.choice(["F", "M"], n),
            "bmi": rng.uniform(15, 45, n),
            **{f: rng.integers(0, 2, n) for f in BINARY_RISK_FACTORS},
            "femoral_neck_t_score": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(-5, 3, n)),
        }
    )
    out = calc.predict(df)
    for column in ("mof_10y", "hip_10y"):
        values = out[column].to_numpy()
        assert np.all(np.isfinite(values)), column
        assert np.all((values >= 0) & (values <= 1)), column
    # the input columns are kept, rows in order
    pd.testing.assert_frame_equal(out[df.columns], df)


@pytest.mark.parametrize("outcome", ["mof", "hip"])
def test_probability_increases_with_age_for_women_without_risk_factors(calc, outcome):
    ages = np.arange(40, 91, 5)
    p = calc.predict(patients(*[{"age": a} for a in ages]))[f"{outcome}_10y"].to_numpy()
    assert np.all(np.diff(p) > 0), dict(zip(ages, p, strict=True))


@pytest.mark.parametrize("with_bmd", [False, True], ids=["no_bmd", "t_score_-2"])
@pytest.mark.parametrize("outcome", ["mof", "hip"])
@pytest.mark.parametrize("factor", OTHER_RISK_FACTORS)
@pytest.mark.parametrize("age", [55, 75])
def test_each_risk_factor_raises_probability(calc, factor, outcome, with_bmd, age):
    bmd = {"femoral_neck_t_score": -2.0} if with_bmd else {}
    out = calc.predict(patients({"age": age, **bmd}, {"age": age, factor: 1, **bmd}))
    without, with_factor = out[f"{outcome}_10y"]
    if with_bmd and factor == "secondary_osteoporosis":
        # FRAX rule: with BMD given, secondary osteoporosis no longer counts (FRAX tool page)
        assert with_factor == without
    else:
        assert with_factor > without


def test_prior_fracture_raises_probability_with_bmd_too(calc):
    out = calc.predict(
        patients(
            {"femoral_neck_t_score": -1.5}, {"femoral_neck_t_score": -1.5, "prior_fracture": 1}
        )
    )
    assert out["mof_10y"].iloc[1] > out["mof_10y"].iloc[0]
    assert out["hip_10y"].iloc[1] > out["hip_10y"].iloc[0]


@pytest.mark.parametrize("t_score", [None, -2.0], ids=["no_bmd", "t_score_-2"])
def test_higher_bmi_lowers_hip_probability(calc, t_score):
    bmd = {} if t_score is None else {"femoral_neck_t_score": t_score}
    bmis = [18.0, 22.0, 25.0, 30.0, 35.0]
    out = calc.predict(patients(*[{"age": 70, "bmi": b, **bmd} for b in bmis]))
    assert np.all(np.diff(out["hip_10y"].to_numpy()) < 0)
    if t_score is None:  # MOF gradient 0.97/unit without BMD, 1.0 with (De Laet 2005)
        assert np.all(np.diff(out["mof_10y"].to_numpy()) < 0)


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("outcome", ["mof", "hip"])
def test_lower_t_score_gives_higher_probability(calc, outcome, sex):
    t_scores = np.arange(2.5, -5.0, -0.5)
    out = calc.predict(
        patients(*[{"age": 65, "sex": sex, "femoral_neck_t_score": t} for t in t_scores])
    )
    assert np.all(np.diff(out[f"{outcome}_10y"].to_numpy()) > 0)


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("age", AGES)
def test_mof_at_age_mean_t_score_is_close_to_no_bmd_model(calc, age, sex):
    out = calc.predict(
        patients(
            {"age": age, "sex": sex},
            {"age": age, "sex": sex, "femoral_neck_t_score": mean_t_score(sex, age)},
        )
    )
    no_bmd, at_mean = out["mof_10y"]
    assert at_mean == pytest.approx(no_bmd, rel=0.25)


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("age", AGES)
def test_bmd_model_averaged_over_t_scores_matches_no_bmd_model(calc, age, sex):
    # The BMD term is -g (T - mean T) - g^2/2, so that averaged over T ~ N(mean, 1) the
    # hazard equals the no-BMD one. For hip, g is large (2.88/SD at 65, ~3.68 at 50;
    # Johnell 2005), so a patient AT the mean T-score is well below average risk (factor
    # ~exp(-g^2/2)): "close at the mean T-score" only holds for MOF (g = 1.38), while the
    # population average holds for both outcomes.
    d = np.linspace(-3.5, 3.5, 71)
    weight = stats.norm.pdf(d) / stats.norm.pdf(d).sum()
    # FRAX accepts T in [-5, 3]; clipping the far upper tail (risk ~0 there) changes little
    t_scores = np.clip(mean_t_score(sex, age) + d, -5.0, 3.0)
    out = calc.predict(
        patients(
            {"age": age, "sex": sex},
            *[{"age": age, "sex": sex, "femoral_neck_t_score": t} for t in t_scores],
        )
    )
    for outcome in ("mof", "hip"):
        p = out[f"{outcome}_10y"].to_numpy()
        assert np.sum(weight * p[1:]) == pytest.approx(p[0], rel=0.05), outcome
    at_mean = calc.predict(
        patients({"age": age, "sex": sex, "femoral_neck_t_score": mean_t_score(sex, age)})
    )
    ratio = at_mean["hip_10y"].iloc[0] / out["hip_10y"].iloc[0]
    assert 0.4 < ratio < 0.85


def test_secondary_osteoporosis_ignored_when_t_score_given(calc):
    out = calc.predict(
        patients(
            {"age": 70, "femoral_neck_t_score": -2.5},
            {"age": 70, "femoral_neck_t_score": -2.5, "secondary_osteoporosis": 1},
            {"age": 70},
            {"age": 70, "secondary_osteoporosis": 1},
        )
    )
    assert out["mof_10y"].iloc[1] == out["mof_10y"].iloc[0]
    assert out["hip_10y"].iloc[1] == out["hip_10y"].iloc[0]
    assert out["mof_10y"].iloc[3] > out["mof_10y"].iloc[2]  # counts without BMD


@pytest.mark.parametrize("age", [40, 50, 65, 80, 90])
def test_men_lower_than_women_at_same_inputs(calc, age):
    out = calc.predict(
        patients(
            {"age": age, "sex": "F", "prior_fracture": 1},
            {"age": age, "sex": "M", "prior_fracture": 1},
            {"age": age, "sex": "F"},
            {"age": age, "sex": "M"},
        )
    )
    for outcome in ("mof", "hip"):
        p = out[f"{outcome}_10y"].to_numpy()
        assert p[1] < p[0] and p[3] < p[2], outcome


@pytest.mark.parametrize("age", [40, 50, 65, 80, 90])
def test_men_and_women_at_same_t_score(calc, age):
    # With BMD, MOF stays lower in men. For hip, the risk at a given T-score (female
    # reference) is similar in men and women (Johnell 2005 JBMR 20:1185: hip gradient 2.94
    # men vs 2.88 women), so men may be at or slightly above women at 40-50.
    out = calc.predict(
        patients(
            {"age": age, "sex": "F", "femoral_neck_t_score": -2.0},
            {"age": age, "sex": "M", "femoral_neck_t_score": -2.0},
        )
    )
    assert out["mof_10y"].iloc[1] < out["mof_10y"].iloc[0]
    assert 0.5 < out["hip_10y"].iloc[1] / out["hip_10y"].iloc[0] < 1.2


def test_hip_below_mof_up_to_80_without_bmd_or_with_moderate_t_scores(calc):
    # Hip fractures are part of MOF.
    rows = [
        {"age": a, "sex": s, "femoral_neck_t_score": t, **({f: 1} if f else {})}
        for a in (40, 45, 55, 65, 75, 80)
        for s in ("F", "M")
        for t in (np.nan, -2.0, -1.0, 0.5)
        for f in [None, "prior_fracture", *OTHER_RISK_FACTORS]
    ]
    out = calc.predict(patients(*rows))
    bad = out[out["hip_10y"] >= out["mof_10y"]]
    assert bad.empty, bad[["age", "sex", "femoral_neck_t_score", "mof_10y", "hip_10y"]]


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param({"age": 85, "sex": "M", "parental_hip_fracture": 1}, id="man85-no-bmd-parent"),
        pytest.param({"age": 90, "sex": "M", "current_smoking": 1}, id="man90-no-bmd-smoker"),
        pytest.param({"age": 90, "sex": "M", "femoral_neck_t_score": -3.0}, id="man90-T-3"),
        pytest.param(
            {"age": 90, "sex": "M", "femoral_neck_t_score": -2.5, "parental_hip_fracture": 1},
            id="man90-T-2.5-parent",
        ),
        pytest.param({"age": 80, "sex": "M", "femoral_neck_t_score": -3.5}, id="man80-T-3.5"),
        pytest.param(
            {"age": 45, "femoral_neck_t_score": -3.5, "prior_fracture": 1}, id="woman45-T-3.5-prior"
        ),
        pytest.param({"age": 50, "femoral_neck_t_score": -5.0}, id="woman50-T-5"),
        pytest.param({"age": 90, "femoral_neck_t_score": -4.5}, id="woman90-T-4.5"),
        pytest.param(
            {"age": 70, "bmi": 15.0, **{f: 1 for f in BINARY_RISK_FACTORS}},
            id="woman70-all-risk-factors-bmi15",
        ),
    ],
)
def test_hip_never_exceeds_mof(calc, profile):
    out = calc.predict(patients(profile))
    assert out["hip_10y"].iloc[0] <= out["mof_10y"].iloc[0]


# --------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(("age", "clamped"), [(35.0, 40.0), (95.0, 90.0)], ids=["35", "95"])
def test_age_outside_40_90_is_computed_at_the_limit_with_warning(calc, age, clamped):
    reference = calc.predict(patients({"age": clamped, "prior_fracture": 1}))
    with pytest.warns(DataWarning, match=r"age outside 40-90 in rows \[1\]"):
        out = calc.predict(patients({"age": 60.0}, {"age": age, "prior_fracture": 1}))
    assert out["age"].iloc[1] == age  # the input is not modified
    for column in ("mof_10y", "hip_10y"):
        assert out[column].iloc[1] == reference[column].iloc[0]


@pytest.mark.parametrize("t_score", [-5.5, 3.2], ids=["below_-5", "above_3"])
def test_t_score_outside_range_raises_naming_column_and_row(calc, t_score):
    df = patients(
        {"femoral_neck_t_score": -1.0},
        {"femoral_neck_t_score": t_score},
        {"femoral_neck_t_score": np.nan},
    ).set_axis(["p1", "p2", "p3"])
    expected = "column 'femoral_neck_t_score', row ['p2']"
    with pytest.raises(ValueError, match=re.escape(expected)):
        calc.predict(df)


def test_t_score_at_range_limits_is_accepted(calc):
    out = calc.predict(patients({"femoral_neck_t_score": -5.0}, {"femoral_neck_t_score": 3.0}))
    assert out["mof_10y"].iloc[0] > out["mof_10y"].iloc[1]


@pytest.mark.parametrize("code", ["W", "female", None], ids=["W", "female", "missing"])
def test_unknown_sex_code_raises_naming_row_and_column(calc, code):
    df = patients({"sex": "F"}, {"sex": code})
    with pytest.raises(ValueError, match=re.escape("column 'sex', row [1]: unknown sex code")):
        calc.predict(df)


@pytest.mark.parametrize("column", ["age", "sex", "bmi", *BINARY_RISK_FACTORS])
def test_missing_column_raises(calc, column):
    df = patients({}).drop(columns=[column])
    with pytest.raises(ValueError, match=re.escape(f"missing column(s) ['{column}']")):
        calc.predict(df)


def test_unknown_country_raises_listing_available():
    assert "UK" in list_countries()
    calculator = FraxStyleCalculator(country="XX")  # stored; checked at fit or first use
    with pytest.raises(ValueError, match=r"no FRAX-style tables for country 'XX'; available: .*UK"):
        calculator.fit()


def test_country_code_is_case_insensitive():
    lower, upper = FraxStyleCalculator("uk").params_, FraxStyleCalculator("UK").params_
    assert lower["prior_fracture"] == upper["prior_fracture"]
    for sex in ("F", "M"):
        for kind in ("age", "mof", "hip", "death"):
            np.testing.assert_array_equal(lower["rates"][sex][kind], upper["rates"][sex][kind])


@pytest.mark.parametrize("outcome", ["mof", "hip"])
def test_predict_risk_at_10_years_equals_predict(calc, outcome):
    df = patients(
        *[
            {"age": a, "prior_fracture": a % 20 == 0, "femoral_neck_t_score": t}
            for a, t in [(50, np.nan), (60, -1.0), (70, np.nan), (80, -2.5)]
        ]
    )
    risk = calc.predict_risk(df, 10, outcome=outcome)
    assert risk.name == f"{outcome}_10y"
    np.testing.assert_array_equal(risk.to_numpy(), calc.predict(df)[f"{outcome}_10y"].to_numpy())
    if outcome == "mof":
        np.testing.assert_array_equal(calc.predict_score(df), risk.to_numpy())


@pytest.mark.parametrize("outcome", ["mof", "hip"])
def test_predict_survival_is_one_minus_risk_and_non_increasing(calc, outcome):
    df = patients(*[{"age": a, "current_smoking": 1} for a in (45, 65, 85)])
    times = [0.5, 1.0, 2.0, 5.0, 10.0, 15.0]
    surv = calc.predict_survival(df, times, outcome=outcome)
    assert list(surv.columns) == times
    assert np.all(np.diff(surv.to_numpy(), axis=1) <= 0)
    assert np.all(np.diff(surv.to_numpy(), axis=1)[:, 1:] < 0)
    for horizon in times:
        risk = calc.predict_risk(df, horizon, outcome=outcome).to_numpy()
        np.testing.assert_allclose(surv[horizon].to_numpy(), 1.0 - risk, rtol=0, atol=1e-12)


def test_predict_on_a_cohort_is_indexed_by_patient_id(calc):
    cohort = clinical_cohort(50, seed=1)
    risk = calc.predict_risk(cohort, 10.0)
    assert list(risk.index) == list(cohort.ids)
    np.testing.assert_array_equal(risk.to_numpy(), calc.predict(cohort.df)["mof_10y"].to_numpy())


@pytest.mark.parametrize("blank", [np.nan, None], ids=["nan", "none"])
@pytest.mark.parametrize("factor", list(BINARY_RISK_FACTORS))
def test_blank_binary_answer_counts_as_no(calc, factor, blank):
    # FRAX tool page [V]: a blank answer counts as "no"
    df = patients({"age": 70}, {"age": 70})
    df[factor] = pd.Series([0, blank], dtype=object)
    out = calc.predict(df)
    assert out["mof_10y"].iloc[1] == out["mof_10y"].iloc[0]
    assert out["hip_10y"].iloc[1] == out["hip_10y"].iloc[0]


def test_binary_answer_other_than_0_1_raises(calc):
    df = patients({}, {}, {"current_smoking": 2})
    with pytest.raises(ValueError, match=re.escape("column 'current_smoking', row [2]")):
        calc.predict(df)


def test_invalid_outcome_raises(calc):
    with pytest.raises(ValueError, match="outcome must be one of"):
        calc.predict_risk(patients({}), 10.0, outcome="wrist")


def test_predict_survival_invalid_outcome_raises_value_error(calc):
    with pytest.raises(ValueError, match="outcome must be one of"):
        calc.predict_survival(patients({}), [5.0, 10.0], outcome="wrist")


def test_survival_at_time_zero_is_one(calc):
    df = patients({"age": 80, "prior_fracture": 1})
    surv = calc.predict_survival(df, [0.0, 1.0, 10.0])
    assert surv[0.0].iloc[0] == 1.0
    assert calc.predict_risk(df, 0.0).iloc[0] == 0.0
