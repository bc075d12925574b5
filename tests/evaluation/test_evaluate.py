"""fracrisk.evaluation.evaluate: one result object, checked against the metrics it reuses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fracrisk.evaluation import ORACLE, Evaluation, evaluate
from fracrisk.metrics import calibration, harrell_c, nri, uno_c


def test_discrimination_is_the_metrics_themselves(split, fitted, evaluation):
    train, test = split
    table = evaluation.discrimination.set_index("model")
    for name, model in fitted.items():
        score = model.predict_score(test)
        row = table.loc[name]
        assert row["harrell"] == pytest.approx(harrell_c(test.time, test.event, score))
        expected_uno = uno_c(
            test.time, test.event, score, tau=5.0, train_time=train.time, train_event=train.event
        )
        assert row["uno"] == pytest.approx(expected_uno)
        assert row["harrell_lower"] < row["harrell"] < row["harrell_upper"]
        assert 0.0 < row["ibs"] < 0.25
        assert 0.5 < row["mean_auc"] <= 1.0
        assert row["mean_auc_lower"] < row["mean_auc"] < row["mean_auc_upper"]


def test_horizon_beyond_follow_up_is_left_out_with_a_note(evaluation):
    assert evaluation.horizons == [2.0, 5.0]
    assert any("horizon 30 years: left out" in note for note in evaluation.notes)


def test_every_horizon_beyond_follow_up_is_an_error(split, fitted):
    _, test = split
    with pytest.raises(ValueError, match="every horizon .* beyond the last test follow-up"):
        evaluate(fitted, test, horizons=(40,), n_boot=5)


def test_oracle_row_scores_the_truth(split, evaluation):
    _, test = split
    row = evaluation.discrimination.set_index("model").loc[ORACLE]
    truth = test.truth["true_log_hazard"].to_numpy()
    assert row["harrell"] == pytest.approx(harrell_c(test.time, test.event, truth))
    kinds = evaluation.models.set_index("model")["risk_type"]
    assert kinds[ORACLE] == "absolute"
    assert kinds["CoxPH"] == "cause_specific"
    assert kinds["FRAX-style refit"] == "absolute"
    assert kinds["DeepSurv (death competing)"] == "absolute"


def test_without_oracle_there_is_no_truth_row(split, fitted):
    train, test = split
    result = evaluate({"CoxPH": fitted["CoxPH"]}, test, horizons=(5,), n_boot=5, oracle=False)
    assert list(result.discrimination["model"]) == ["CoxPH"]
    assert result.comparisons.empty  # nothing to compare with the reference itself


def test_calibration_matches_the_metric_and_has_observed_intervals(split, fitted, evaluation):
    _, test = split
    risk = fitted["CoxPH"].predict_risk(test, 5.0)
    direct = calibration(test.time, test.event, risk, 5.0)
    row = evaluation.calibration.query("model == 'CoxPH' and horizon == 5.0").iloc[0]
    assert row["oe"] == pytest.approx(direct.observed_expected)
    assert row["slope"] == pytest.approx(direct.slope)
    assert bool(row["competing"])  # deaths compete: Aalen-Johansen observed risk
    groups = evaluation.calibration_groups.query("model == 'CoxPH' and horizon == 5.0")
    assert len(groups) == 10
    with_events = groups[groups["events"] > 0]
    assert (with_events["observed_lower"] < with_events["observed"]).all()
    assert (with_events["observed"] < with_events["observed_upper"]).all()


def test_comparisons_are_differences_against_the_reference(split, fitted, evaluation):
    _, test = split
    assert evaluation.reference == "FRAX-style calculator"  # the first FRAX model by default
    row = evaluation.comparisons.query("model == 'CoxPH' and metric == 'Harrell C'").iloc[0]
    expected = harrell_c(test.time, test.event, fitted["CoxPH"].predict_score(test)) - harrell_c(
        test.time, test.event, fitted["FRAX-style calculator"].predict_score(test)
    )
    assert row["difference"] == pytest.approx(expected)
    assert row["lower"] <= row["difference"] <= row["upper"]
    assert ORACLE not in set(evaluation.comparisons["model"])
    nri_row = evaluation.reclassification.query("model == 'CoxPH' and horizon == 5.0").iloc[0]
    direct = nri(
        test.time,
        test.event,
        fitted["FRAX-style calculator"].predict_risk(test, 5.0),
        fitted["CoxPH"].predict_risk(test, 5.0),
        5.0,
    )
    assert nri_row["total"] == pytest.approx(direct.total)
    assert nri_row["lower"] < nri_row["upper"]


def test_unknown_reference_is_an_error(split, fitted):
    _, test = split
    with pytest.raises(ValueError, match="reference 'Cox' is not one of the models"):
        evaluate(fitted, test, reference="Cox", n_boot=5)


def test_non_finite_prediction_is_an_error_naming_model_and_row(split):
    _, test = split

    class Broken:
        risk_type = "absolute"

        def predict_score(self, data):
            score = np.zeros(len(data.df))
            score[7] = np.nan
            return score

        def predict_risk(self, data, horizon):
            return np.full(len(data.df), 0.1)

    with pytest.raises(ValueError, match=r"model 'broken' returned a non-finite score .* row 7"):
        evaluate({"broken": Broken()}, test, horizons=(5,), n_boot=5)


def test_subgroups_cover_each_sex_once(split, evaluation):
    _, test = split
    by_sex = evaluation.subgroups.query("subgroup == 'sex' and model == 'CoxPH'")
    assert set(by_sex["level"]) == set(test.df["sex"].astype(str))
    assert by_sex["n"].sum() == len(test)
    ages = evaluation.subgroups.query("subgroup == 'age' and model == 'CoxPH'")
    reported = ages["n"].sum() + sum(
        int(n.split(" among ")[1].split()[0])
        for n in evaluation.notes
        if n.startswith("subgroup age")
    )
    assert reported == len(test)  # every age band is either reported or named in the notes


def test_curves_are_valid_and_km_quartiles_order_by_risk(evaluation):
    curves = evaluation.curves
    assert curves["patient"].nunique() == 5
    for _, curve in curves.groupby(["model", "patient"]):
        values = curve.sort_values("time")["survival"].to_numpy()
        assert np.all(np.diff(values) <= 1e-12) and 0 <= values.min() <= values.max() <= 1
    km = evaluation.km_quartiles.query("model == 'CoxPH'")
    last = km[km["time"] == km["time"].max()].set_index("quartile")["survival"]
    assert last[1] > last[4]  # the lowest-risk quartile stays fracture-free more often


def test_round_trip_through_json(evaluation, tmp_path):
    path = evaluation.save_json(tmp_path / "evaluation.json")
    json.loads(path.read_text())  # valid JSON
    again = Evaluation.read_json(path)
    assert again.info == json.loads(json.dumps(evaluation.info))
    assert again.summary_table().equals(evaluation.summary_table())
    np.testing.assert_allclose(
        again.calibration_groups["observed_upper"], evaluation.calibration_groups["observed_upper"]
    )


def test_read_json_of_something_else_names_the_file(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="other.json: not a fracrisk evaluation"):
        Evaluation.read_json(path)


def test_markdown_has_every_model_and_no_nan_intervals(evaluation):
    text = evaluation.to_markdown()
    for name in evaluation.models["model"]:
        assert name in text
    assert "| nan" not in text
    assert "cause-specific risk (death censored)" in text


def test_a_model_without_a_risk_type_is_refused(split):
    _, test = split

    class Unstated:
        def predict_score(self, data):
            return np.zeros(len(data.df))

    with pytest.raises(ValueError, match="'mystery' does not state its risk_type"):
        evaluate({"mystery": Unstated()}, test, horizons=(5,), n_boot=5)


def test_chosen_pairs_tau_and_auc_times(split, fitted):
    train, test = split
    result = evaluate(
        fitted,
        test,
        horizons=(5,),
        train=train,
        n_boot=20,
        tau=3.0,
        auc_times=[1.0, 3.0, 50.0],
        pairs=[("CoxPH", "FRAX-style refit"), ("CoxPH", "FRAX-style calculator")],
        subgroups=False,
    )
    pairs = zip(result.comparisons["model"], result.comparisons["reference"], strict=True)
    assert set(pairs) == {
        ("CoxPH", "FRAX-style refit"),
        ("CoxPH", "FRAX-style calculator"),
    }
    assert sorted(set(result.auc["time"])) == [1.0, 3.0]
    assert any("td-AUC at 50 years: left out" in n for n in result.notes)
    score = fitted["CoxPH"].predict_score(test)
    uno = uno_c(
        test.time, test.event, score, tau=3.0, train_time=train.time, train_event=train.event
    )
    assert result.discrimination.set_index("model").loc["CoxPH", "uno"] == pytest.approx(uno)
    with pytest.raises(ValueError, match="pairs: 'Cox' is not one of the models"):
        evaluate(fitted, test, horizons=(5,), n_boot=5, pairs=[("Cox", "CoxPH")])
