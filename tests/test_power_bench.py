"""benchmarks/power.py: the power analysis runs small, and its outcome model is the simulator's."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fracrisk.simulate import PRESETS, cohort, draw_hidden_determinants, draw_patients

ROOT = Path(__file__).resolve().parents[1]


def _module():
    name = "fracrisk_bench_power"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks/power.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_outcome_at_zero_effect_is_the_simulators_own(preset):
    # Replay the simulator's random stream up to its follow-up draw: the script's rebuilt
    # hazards must then give the simulator's times and events exactly.
    bench = _module()
    n, seed = 2000, 7
    sim = cohort(n, preset=preset, seed=seed)
    design = PRESETS[preset]
    rng = np.random.default_rng(seed)
    patients = draw_patients(
        n, rng, female_fraction=design.female_fraction, age_range=design.age_range
    )
    draw_hidden_determinants(patients, rng)
    time, event = bench.outcome(rng, bench.hazards(sim, preset), preset, 0.0, np.zeros(n))
    np.testing.assert_array_equal(time, sim.time)
    np.testing.assert_array_equal(event, sim.event)


def test_wilson_and_crossing():
    bench = _module()
    lo, hi = bench.wilson(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.31
    lo, hi = bench.wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert bench.wilson(10, 10)[1] == 1.0
    assert bench.crossing([0.0, 0.01, 0.02], [0.0, 0.6, 1.0]) == pytest.approx(0.015)
    assert bench.crossing([0.0, 0.01], [0.0, 0.5]) is None


def test_small_run(tmp_path, capsys):
    bench = _module()
    out = tmp_path / "power"
    result = bench.main(
        [
            "--sizes", "300", "1500",
            "--effects", "0", "0.5",
            "--replicates", "3",
            "--n-boot", "20",
            "--truth-cohorts", "2",
            "--out", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    assert (out / "power.json").is_file() and (out / "power.md").is_file()
    saved = json.loads((out / "power.json").read_text())
    assert saved["settings"]["sizes"] == [300, 1500]
    assert len(saved["cells"]) == 4

    truth = {row["effect"]: row for row in result["truth"]}
    assert truth[0.0]["delta_c"][0] == pytest.approx(0.0, abs=1e-12)
    gain = truth[0.5]["delta_c"]
    assert gain[0] > 0.01 and gain[1] > 0  # HR 1.65 per SD: a clear gain
    assert len(truth[0.5]["delta_c_per_cohort"]) == 2
    assert truth[0.5]["c_new"][0] > truth[0.5]["c_reference"][0]

    cells = {(c["n"], c["effect"]): c for c in result["cells"]}
    for cell in cells.values():
        assert 0.0 <= cell["power"] <= 1.0
        lo, hi = cell["power_ci"]
        assert 0.0 <= lo <= cell["power"] <= hi <= 1.0
        assert cell["replicates"] == 3 and cell["events_mean"] > 0
    # identical scores at effect 0: the paired test can never call a gain
    assert cells[(300, 0.0)]["power"] == 0.0 and cells[(1500, 0.0)]["power"] == 0.0
    assert cells[(1500, 0.0)]["events_mean"] > cells[(300, 0.0)]["events_mean"]
    assert cells[(1500, 0.5)]["delta_c_mean"] > 0

    assert [m["n"] for m in result["mde"]] == [300, 1500]
    table = (out / "power.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 300 |")]
    rows += [line for line in table.splitlines() if line.startswith("| 1,500 |")]
    assert len(rows) == 2
    printed = capsys.readouterr().out
    assert "machine:" in printed and "oracle" in printed and "total wall time" in printed
