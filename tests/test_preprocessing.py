"""TabularPreprocessor: fitted on training rows only, applied unchanged to new rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fracrisk.exceptions import NotFittedError, PredictionImputationWarning
from fracrisk.preprocessing import TabularPreprocessor


def train_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [60.0, 70.0, 80.0, 50.0, 65.0, 75.0],
            "sex": ["M", "F", "F", "M", "F", "F"],
            "prior_fracture": [0, 1, 1, 0, 1, 0],
            "bmi": [20.0, 30.0, 25.0, 22.0, 28.0, 26.0],
            "site": ["b", "c", "a", "b", "c", "b"],
        },
        index=[100, 101, 102, 103, 104, 105],
    )


def test_one_hot_with_sorted_reference_level():
    pre = TabularPreprocessor(["sex", "site", "age"]).fit(train_df())
    # Women (F) and site "a" are the reference levels: first in sorted order.
    assert pre.feature_names_ == ["sex[M]", "site[b]", "site[c]", "age"]
    assert pre.levels_ == {"sex": ["F", "M"], "site": ["a", "b", "c"]}
    raw = pre.transform(train_df()) * pre.scale_ + pre.mean_
    np.testing.assert_allclose(raw[:, 0], [1, 0, 0, 1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(raw[:, 1], [1, 0, 0, 1, 0, 1], atol=1e-12)
    np.testing.assert_allclose(raw[:, 2], [0, 1, 0, 0, 1, 0], atol=1e-12)


def test_reference_level_does_not_depend_on_order_of_appearance():
    df = train_df()
    reversed_df = df.iloc[::-1]
    a = TabularPreprocessor(["sex", "site"]).fit(df)
    b = TabularPreprocessor(["sex", "site"]).fit(reversed_df)
    assert a.feature_names_ == b.feature_names_ == ["sex[M]", "site[b]", "site[c]"]


def test_fit_transform_is_standardised_with_ddof_0():
    x = TabularPreprocessor(["age", "sex", "prior_fracture", "bmi"]).fit_transform(train_df())
    assert x.shape == (6, 4)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-12)


def test_transform_of_new_rows_uses_training_statistics():
    train = train_df()
    pre = TabularPreprocessor(["age", "bmi", "sex"]).fit(train)
    age_mean, age_sd = train["age"].mean(), train["age"].std(ddof=0)
    bmi_mean, bmi_sd = train["bmi"].mean(), train["bmi"].std(ddof=0)
    male = (train["sex"] == "M").to_numpy(dtype=float)
    np.testing.assert_allclose(pre.mean_, [age_mean, bmi_mean, male.mean()], rtol=1e-14)
    np.testing.assert_allclose(pre.scale_, [age_sd, bmi_sd, male.std()], rtol=1e-14)

    test = pd.DataFrame(
        {"age": [90.0, 55.0], "bmi": [40.0, 18.0], "sex": ["M", "M"]}, index=["x", "y"]
    )
    x = pre.transform(test, warn=False)  # age 90 is an extrapolation: it would warn
    expected = np.column_stack(
        [
            (test["age"] - age_mean) / age_sd,
            (test["bmi"] - bmi_mean) / bmi_sd,
            (np.ones(2) - male.mean()) / male.std(),
        ]
    )
    np.testing.assert_allclose(x, expected, rtol=1e-13)
    # Not re-standardised on the test rows: both test patients are men, yet sex[M] is not 0.
    assert np.all(x[:, 2] > 0)
    # A single row transforms to the same values as within a batch.
    np.testing.assert_array_equal(pre.transform(test.iloc[[1]], warn=False), x[[1]])


def test_missing_values_are_imputed_with_training_median_and_mode():
    train = train_df()
    train.loc[101, "age"] = np.nan  # median of 60, 80, 50, 65, 75 -> 65
    train.loc[104, "sex"] = None  # mode of M, F, M, F, F -> F
    train["prior_fracture"] = train["prior_fracture"].astype(float)
    train.loc[103, "prior_fracture"] = np.nan  # mode of 0, 1, 1, 1, 0 -> 1
    train.loc[100, "bmi"] = np.nan  # median of 30, 25, 22, 28, 26 -> 26
    pre = TabularPreprocessor(["age", "sex", "prior_fracture", "bmi"]).fit(train)
    assert pre.fill_ == {"age": 65.0, "sex": "F", "prior_fracture": 1.0, "bmi": 26.0}

    filled = train.fillna({"age": 65.0, "sex": "F", "prior_fracture": 1.0, "bmi": 26.0})
    np.testing.assert_array_equal(pre.transform(train, warn=False), pre.transform(filled))
    # Statistics are those of the imputed training data.
    np.testing.assert_allclose(pre.mean_[0], filled["age"].mean(), rtol=1e-14)

    # New rows with missing values get the *training* fill values, not their own.
    test = pd.DataFrame(
        {
            "age": [np.nan, 90.0, 90.0],
            "sex": [None, "M", "M"],
            "prior_fracture": [np.nan, 0.0, 0.0],
            "bmi": [np.nan, 40.0, 40.0],
        }
    )
    x = pre.transform(test, warn=False)  # filled and extrapolated: tested below
    np.testing.assert_array_equal(
        x[0],
        pre.transform(
            pd.DataFrame({"age": [65.0], "sex": ["F"], "prior_fracture": [1.0], "bmi": [26.0]})
        )[0],
    )


def test_mode_ties_are_broken_by_sorted_order():
    df = pd.DataFrame(
        {
            "sex": ["M", "F", "M", "F"],
            "prior_fracture": [1.0, 0.0, 0.0, 1.0],
            "falls": [1.0, 0.0, 0.0, 1.0],
        }
    )
    pre = TabularPreprocessor(["sex", "prior_fracture", "falls"]).fit(df)
    # A canonical flag gets its mode; an unknown float column is numeric and gets the median.
    assert pre.kinds_ == {"sex": "category", "prior_fracture": "binary", "falls": "numeric"}
    assert pre.fill_ == {"sex": "F", "prior_fracture": 0.0, "falls": 0.5}


@pytest.mark.parametrize(
    ("test", "match"),
    [
        pytest.param(
            pd.DataFrame({"sex": ["F", "X"], "site": ["a", "a"]}, index=[7, 8]),
            r"column 'sex', row \[8\]: level not seen in training; known levels: "
            r"\['F', 'M'\]; got 'X'",
            id="unknown-sex",
        ),
        pytest.param(
            pd.DataFrame({"sex": ["F", "F", "M"], "site": ["d", "a", "e"]}, index=["p", "q", "r"]),
            r"column 'site', rows \['p', 'r'\]: level not seen in training; known levels: "
            r"\['a', 'b', 'c'\]; got 'd', 'e'",
            id="unknown-site-two-rows",
        ),
    ],
)
def test_unknown_category_at_transform_names_column_and_rows(test, match):
    pre = TabularPreprocessor(["sex", "site"]).fit(train_df())
    with pytest.raises(ValueError, match=match):
        pre.transform(test)


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        pytest.param("age", [70.0] * 6, r"feature\(s\) \['age'\] are constant", id="numeric"),
        pytest.param(
            "prior_fracture",
            [1] * 6,
            r"feature\(s\) \['prior_fracture'\] are constant",
            id="binary",
        ),
        pytest.param("sex", ["F"] * 6, r"column 'sex' has a single level 'F'", id="category"),
        pytest.param("bmi", [np.nan] * 6, r"column 'bmi' has no observed value", id="all-missing"),
    ],
)
def test_constant_column_raises(column, values, match):
    df = train_df()
    df[column] = values
    with pytest.raises(ValueError, match=match):
        TabularPreprocessor(["age", "sex", "prior_fracture", "bmi"]).fit(df)


def test_non_numeric_value_in_numeric_column_at_transform_names_the_row():
    pre = TabularPreprocessor(["age", "bmi"]).fit(train_df())
    test = pd.DataFrame(
        {"age": [70.0, "old", 60.0, "n/a"], "bmi": [25.0] * 4}, index=[11, 12, 13, 14]
    )
    with pytest.raises(
        ValueError,
        match=r"column 'age', rows \[12, 14\]: expected numbers; "
        r"got 'old', 'n/a'",
    ):
        pre.transform(test)


@pytest.mark.parametrize(
    "column", [pytest.param("age", id="numeric"), pytest.param("prior_fracture", id="binary")]
)
def test_non_numeric_value_in_numeric_column_at_fit_names_the_row(column):
    df = train_df()
    df[column] = df[column].astype(object)
    df.loc[102, column] = "unknown"
    with pytest.raises(ValueError, match=rf"column '{column}', row \[102\]: expected numbers"):
        TabularPreprocessor(["age", "prior_fracture"]).fit(df)


def test_missing_columns_and_unfitted_use_raise():
    with pytest.raises(ValueError, match="at least one covariate column"):
        TabularPreprocessor([])
    pre = TabularPreprocessor(["age", "grip"])
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['grip'\] are missing"):
        pre.fit(train_df())
    with pytest.raises(NotFittedError, match="not fitted"):
        TabularPreprocessor(["age"]).transform(train_df())
    with pytest.raises(NotFittedError, match="not fitted"):
        TabularPreprocessor(["age"]).to_dict()
    fitted = TabularPreprocessor(["age", "bmi"]).fit(train_df())
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['bmi'\] are missing"):
        fitted.transform(train_df().drop(columns=["bmi"]))


def test_to_dict_from_dict_round_trip_through_json_gives_identical_transform():
    train = train_df()
    train.loc[101, "age"] = np.nan
    train.loc[104, "site"] = None
    train.loc[102, "sex"] = None  # imputed in training, so a missing sex may be filled
    columns = ["age", "sex", "prior_fracture", "bmi", "site"]
    pre = TabularPreprocessor(columns).fit(train)
    state = json.loads(json.dumps(pre.to_dict()))
    back = TabularPreprocessor.from_dict(state)
    assert back.feature_names_ == pre.feature_names_
    assert back.columns == columns
    np.testing.assert_array_equal(back.mean_, pre.mean_)
    np.testing.assert_array_equal(back.scale_, pre.scale_)
    test = pd.DataFrame(
        {
            "age": [np.nan, 83.3],
            "sex": ["M", None],
            "prior_fracture": [1, 0],
            "bmi": [10 + 1 / 3, 27.1],
            "site": ["c", None],
        }
    )
    for df in (train, test):
        np.testing.assert_array_equal(back.transform(df, warn=False), pre.transform(df, warn=False))
    assert json.loads(json.dumps(back.to_dict())) == state


# ---------------------------------------------------------------- prediction against training
def _fitted(**extra):
    train = pd.DataFrame(
        {"age": [60.0, 70.0, 80.0, 65.0], "prior_fracture": [0, 1, 0, 1], **extra},
        index=["a", "b", "c", "d"],
    )
    return TabularPreprocessor(list(train.columns)).fit(train)


def test_missing_at_prediction_is_an_error_when_training_had_none():
    pre = _fitted()
    new = pd.DataFrame({"age": [61.0, np.nan], "prior_fracture": [0, 1]}, index=["x", "y"])
    with pytest.raises(ValueError, match=r"age.*'y'.*missing='error'"):
        pre.transform(new)


def test_missing_at_prediction_is_filled_with_a_warning_when_training_imputed():

    train = pd.DataFrame({"age": [60.0, np.nan, 80.0, 70.0], "prior_fracture": [0, 1, 0, 1]})
    pre = TabularPreprocessor(["age", "prior_fracture"]).fit(train)
    new = pd.DataFrame({"age": [np.nan], "prior_fracture": [0]})
    with pytest.warns(PredictionImputationWarning, match="filled with the training value 70"):
        pre.transform(new)


@pytest.mark.parametrize(
    "column, value, match",
    [("age", 300.0, "plausible range"), ("prior_fracture", 7, "0 or 1")],
)
def test_impossible_values_at_prediction_are_errors_naming_the_row(column, value, match):
    pre = _fitted()
    new = pd.DataFrame({"age": [61.0, 62.0], "prior_fracture": [0, 1]}, index=["x", "y"])
    new.loc["y", column] = value
    with pytest.raises(ValueError, match=match) as err:
        pre.transform(new)
    assert "'y'" in str(err.value) and column in str(err.value)


def test_values_beyond_the_training_range_warn_and_can_be_made_errors():
    import warnings

    from fracrisk.exceptions import OutOfRangeWarning

    pre = _fitted()
    new = pd.DataFrame({"age": [95.0], "prior_fracture": [0]})
    with pytest.warns(OutOfRangeWarning, match=r"training range \[60, 80\] by more than 10%"):
        pre.transform(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfRangeWarning)
        with pytest.raises(OutOfRangeWarning):
            pre.transform(new)
    again = TabularPreprocessor.from_dict(pre.to_dict())
    with pytest.warns(OutOfRangeWarning):
        again.transform(new)


def test_a_fitted_model_refuses_an_impossible_age():
    from fracrisk import CoxPH
    from fracrisk.simulate import clinical_cohort

    cohort = clinical_cohort(400, seed=0)
    model = CoxPH().fit(cohort)
    bad = cohort.df.copy()
    bad.iloc[3, bad.columns.get_loc("age")] = 300.0
    with pytest.raises(ValueError, match="age"):
        model.predict_risk(bad, 5.0)


def test_values_too_large_to_standardise_are_an_error_not_zeros():
    train = pd.DataFrame({"age": [60.0, 70.0, 80.0], "marker": [1.0, 2.0, 1e300]})
    with pytest.raises(ValueError, match=r"\['marker'\].*too large"):
        TabularPreprocessor(["age", "marker"]).fit(train)
