"""Quick start: simulate a cohort, fit Cox and DeepSurv, get absolute risks and curves.

Run with ``.venv/bin/python examples/quickstart.py``.
"""

from fracrisk import CoxPH, DeepSurv, load_model
from fracrisk.metrics import bootstrap, calibration, compare, harrell_c, uno_c
from fracrisk.simulate import clinical_cohort


def main(n: int = 4000) -> None:
    cohort = clinical_cohort(n, seed=0)  # the embedded ground-truth simulator
    train, test = cohort.split(0.3, method="temporal", by="entry_date")

    cox = CoxPH(ties="efron").fit(train)  # FRAX inputs by default
    print(cox.summary_[["coef", "exp(coef)", "p"]].round(3))

    deep = DeepSurv(hidden=(32, 32), dropout=0.1, seed=0).fit(train)

    for name, model in {"CoxPH": cox, "DeepSurv": deep}.items():
        c = harrell_c(test.time, test.event, model.predict_log_hazard(test).to_numpy())
        print(f"{name}: held-out Harrell C = {c:.3f}")

    print(
        "Uno C (95% CI):",
        bootstrap(uno_c, test.time, test.event, deep.predict_log_hazard(test), tau=5),
    )
    print(
        compare(
            uno_c,
            test.time,
            test.event,
            cox.predict_log_hazard(test),
            deep.predict_log_hazard(test),
            tau=5,
        )
    )
    calib = calibration(test.time, test.event, deep.predict_risk(test, 5), horizon=5)
    print(f"O/E {calib.observed_expected:.2f}, slope {calib.slope:.2f}, ICI {calib.ici:.3f}")

    curves = cox.predict_survival(test, times=[1, 2, 5])  # patients x years
    print(curves.head())
    print(cox.predict_risk(test, horizon=5).describe())

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cox.save(f"{tmp}/cox")  # config.json + weights.safetensors
        again = load_model(f"{tmp}/cox")
        assert (again.predict_survival(test, [5]) == cox.predict_survival(test, [5])).all().all()


if __name__ == "__main__":
    main()
