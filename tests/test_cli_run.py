"""fracrisk fit / evaluate / predict / report on a hospital-style CSV export, end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fracrisk.cli import EXIT_BUG, main
from fracrisk.simulate import clinical_cohort

CONFIG = """
cohort:
  path: export.csv
  mapping:
    columns: {patient_id: PID, age: Age, sex: SEX, bmi: BMI, prior_fracture: Prior Fracture,
              femoral_neck_t_score: T score, time: FU_days, event: Outcome,
              entry_date: Enrolled}
    values:
      sex: {female: F, male: M}
      prior_fracture: {yes: 1, no: 0}
      event: {none: 0, fracture: 1, died: 2}
    dates: {entry_date: "%d/%m/%Y"}
    time_unit: days
split: {method: temporal, by: entry_date, test_size: 0.3}
models:
  - {name: CoxPH, type: coxph, covariates: [age, sex, bmi, prior_fracture, femoral_neck_t_score]}
  - {name: DeepSurv, type: deepsurv, params: {hidden: [8], max_epochs: 5},
     covariates: [age, sex, bmi, prior_fracture, femoral_neck_t_score]}
evaluation: {horizons: [2, 5], reference: CoxPH, n_boot: 40}
out: run
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A simulated cohort written as a hospital would: other names, words, dd/mm/yyyy."""
    folder = tmp_path_factory.mktemp("hospital")
    df = clinical_cohort(3000, seed=4).df
    export = pd.DataFrame(
        {
            "PID": [f"H{k:05d}" for k in range(len(df))],
            "Age": df["age"].round(1),
            "SEX": df["sex"].map({"F": "Female", "M": "male"}),
            "BMI": df["bmi"].round(2),
            "Prior Fracture": df["prior_fracture"].map({1: "Yes", 0: "no"}),
            "T score": df["femoral_neck_t_score"].round(2),
            "FU_days": (df["time"] * 365.25).round(3),
            "Outcome": df["event"].map({0: "none", 1: "fracture", 2: "died"}),
            "Enrolled": pd.to_datetime(df["entry_date"]).dt.strftime("%d/%m/%Y"),
        }
    )
    export.to_csv(folder / "export.csv", index=False)
    export.head(12).to_csv(folder / "new_patients.csv", index=False)
    (folder / "run.yaml").write_text(CONFIG)
    return folder


def test_fit_then_predict_evaluate_and_report(export_dir, capsys):
    assert main(["fit", "--config", str(export_dir / "run.yaml"), "--no-progress"]) == 0
    run = export_dir / "run"
    names = {p.name for p in run.iterdir()}
    assert {"run.json", "report.html", "report.md", "evaluation.json", "predictions.csv"} <= names
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["models"][1]["params"] == {"hidden": [8], "max_epochs": 5}
    assert record["versions"]["torch"] and record["n_test"] == 900
    assert record["models"]["DeepSurv"]["params"]["hidden"] == [8]
    evaluation = json.loads((run / "evaluation.json").read_text())
    harrell = {r["model"]: r["harrell"] for r in evaluation["discrimination"]}
    assert 0.6 < harrell["CoxPH"] < 0.9  # the mapped covariates carry the signal
    # the temporal split used real dates: test patients entered after the training ones
    predictions = pd.read_csv(run / "predictions.csv", index_col=0)
    assert len(predictions) == 900 and predictions.index[0].startswith("H")
    assert main(["fit", "--config", str(export_dir / "run.yaml"), "--no-progress"]) == 2
    assert "overwrite" in capsys.readouterr().err

    new = export_dir / "new_patients.csv"
    out = export_dir / "preds.csv"
    args = ["predict", "--model", str(run / "models" / "coxph"), "--cohort", str(new)]
    args += ["--config", str(export_dir / "run.yaml"), "--horizons", "2", "5"]
    args += ["--times", "1", "3", "--out", str(out), "--plots", str(export_dir / "plots")]
    assert main(args) == 0
    table = pd.read_csv(out, index_col="patient_id")
    assert len(table) == 12 and table.index[0] == "H00000"
    assert list(table.columns) == [
        "coxph | score",
        "coxph | risk 2 y",
        "coxph | risk 5 y",
        "coxph | S(1 y)",
        "coxph | S(3 y)",
    ]
    assert (table["coxph | S(1 y)"] >= table["coxph | S(3 y)"]).all()
    risk2, risk5 = table["coxph | risk 2 y"], table["coxph | risk 5 y"]
    assert ((risk2 < risk5) & (risk5 < 1)).all()
    assert json.loads(out.with_name("preds.csv.json").read_text())["risk_types"] == {
        "coxph": "cause_specific"
    }
    assert len(list((export_dir / "plots").glob("patient_*.png"))) == 12
    assert "cause-specific risk" in capsys.readouterr().out
    assert main(args) == 2  # the CSV exists: no silent overwrite

    external = export_dir / "external"
    args = ["evaluate", "--model", str(run / "models" / "coxph"), str(run / "models" / "deepsurv")]
    args += ["--cohort", str(export_dir / "export.csv"), "--config", str(export_dir / "run.yaml")]
    args += ["--horizons", "2", "5", "--bootstrap", "20", "--out", str(external), "--no-progress"]
    assert main(args) == 0
    assert (external / "report.html").exists()
    (external / "report.html").unlink()
    assert main(["report", str(external)]) == 0
    assert "<img" in (external / "report.html").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("type: coxph,", "type: coxphh,"), "models[0].type: 'coxphh' is not a registered model"),
        (("hidden: [8]", "hiden: [8]"), "models[1].params: deepsurv has no setting 'hiden'"),
        (("method: temporal", "method: temporl"), "split.method: 'temporl' is not one of"),
        (("n_boot: 40", "n_bot: 40"), "evaluation: unknown key 'n_bot' (did you mean 'n_boot'?)"),
        (
            ("Age, sex", "AGE, sex"),
            "column 'AGE': mapped to 'age' but not in the table (did you mean 'Age'?)",
        ),
    ],
)
def test_config_errors_name_the_key_and_exit_2(export_dir, tmp_path, capsys, edit, message):
    config = tmp_path / "bad.yaml"
    text = CONFIG.replace("path: export.csv", f"path: {export_dir / 'export.csv'}")
    config.write_text(text.replace(*edit).replace("out: run", f"out: {tmp_path / 'run'}"))
    assert main(["fit", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "run").exists()


def test_unmapped_value_names_the_row_and_exits_2(export_dir, tmp_path, capsys):
    frame = pd.read_csv(export_dir / "export.csv")
    frame.loc[17, "Outcome"] = "transferred"
    frame.to_csv(tmp_path / "export.csv", index=False)
    (tmp_path / "run.yaml").write_text(CONFIG)
    assert main(["fit", "--config", str(tmp_path / "run.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "event" in err and "[17]" in err and "transferred" in err
    assert "0 is the first data row" in err


def test_an_internal_error_is_reported_as_a_bug(monkeypatch, capsys):
    import fracrisk.cli as cli

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setitem(cli._COMMANDS, "report", (cli._COMMANDS["report"][0], broken))
    assert main(["report", "anywhere"]) == EXIT_BUG
    assert "internal error (a bug in fracrisk" in capsys.readouterr().err


def test_bench_lists_and_runs_the_benchmarks(capsys):
    assert main(["bench"]) == 0
    listed = capsys.readouterr().out
    assert "bench_losses" in listed and "power" in listed and "reproduce" in listed
    assert main(["bench", "bench_losss"]) == 2
    assert "did you mean 'bench_losses'" in capsys.readouterr().err
    assert main(["bench", "power", "--", "--help"]) == 0  # arguments reach the script


@pytest.mark.parametrize(
    "command", ["fit", "evaluate", "predict", "report", "explain", "demo", "bench"]
)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "examples:" in capsys.readouterr().out


IMAGE_CONFIG = """
cohort: {path: spine.parquet}
split: {method: stratified, test_size: 0.3, seed: 0}
models:
  - {name: CoxPH, type: coxph, covariates: [age, sex, bmi]}
  - name: images + clinical
    type: image_survival
    covariates: [age, sex]
    params:
      encoder: vertebral_patches
      encoder_kwargs: {backbone: resnet10t, pooling: mean}
      image_options: {size: [32, 32]}
      max_epochs: 1
      batch_size: 32
      progress: false
evaluation: {horizons: [2, 4], n_boot: 20, subgroups: false}
out: run
"""


def _fit_image_run(tmp_path, config: str, cohort_file: str, n: int, preset: str, seed: int):
    """Simulate ``n`` patients with the preset's images into ``cohort_file``, then ``fit``."""
    from fracrisk.simulate import cohort

    images = ("spine",) if preset == "kong2022" else ("hip_ct",)
    simulated = cohort(n, preset=preset, seed=seed, images=images, out_dir=tmp_path / "img")
    simulated.save(tmp_path / cohort_file)
    (tmp_path / "run.yaml").write_text(config)
    assert main(["fit", "--config", str(tmp_path / "run.yaml"), "--no-progress"]) == 0
    return tmp_path / "run"


@pytest.mark.slow
def test_an_image_model_from_a_config_then_explain(tmp_path, capsys):
    run = _fit_image_run(tmp_path, IMAGE_CONFIG, "spine.parquet", 240, "kong2022", seed=2)
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert "images + clinical" in {r["model"] for r in evaluation["discrimination"]}
    model_dir = run / "models" / "images_clinical"
    args = ["explain", "--model", str(model_dir), "--cohort", str(tmp_path / "spine.parquet")]
    assert main([*args, "--out", str(tmp_path / "gradcam"), "--top", "2"]) == 0
    assert len(list((tmp_path / "gradcam").glob("gradcam_*.png"))) == 2
    assert "2 Grad-CAM figure(s)" in capsys.readouterr().out
    coxph = run / "models" / "coxph"
    assert main(["explain", "--model", str(coxph), *args[3:], "--out", str(tmp_path / "x")]) == 2
    assert "not an image model" in capsys.readouterr().err


VOLUME_CONFIG = """
cohort: {path: hip.parquet}
split: {method: stratified, test_size: 0.3, seed: 0}
models:
  - name: 3-D CNN + clinical
    type: image_survival
    covariates: [age, sex]
    params:
      encoder: ct_volume
      image_options: {size: [8, 16, 16]}
      max_epochs: 1
      batch_size: 16
      progress: false
evaluation: {horizons: [2], n_boot: 20, subgroups: false}
out: run
"""


@pytest.mark.slow
def test_a_3d_cnn_from_a_config_then_predict(tmp_path, capsys):
    run = _fit_image_run(tmp_path, VOLUME_CONFIG, "hip.parquet", 200, "kim2024", seed=3)
    record = json.loads((run / "run.json").read_text())
    assert record["models"]["3-D CNN + clinical"]["params"]["encoder"] == "ct_volume"
    (model_dir,) = (run / "models").iterdir()
    config = json.loads((model_dir / "config.json").read_text())
    assert config["state"]["image_config"]["kind"] == "volume"  # chosen by the encoder
    assert config["state"]["image_config"]["image_shape"] == [1, 8, 16, 16]
    out = tmp_path / "preds.csv"
    args = ["predict", "--model", str(model_dir), "--cohort", str(tmp_path / "hip.parquet")]
    assert main([*args, "--horizons", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 200 and table.filter(like="risk 2 y").iloc[:, 0].between(0, 1).all()
