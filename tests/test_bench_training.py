"""benchmarks/bench_training.py in its --quick form: every table and verdict is printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"
HEADINGS = (
    "## 1. Encoder forward + backward throughput (CPU, float32)",
    "## 2. Share of step time spent waiting for data (Lightning engine, cached DRRs)",
    "## 3. Lightning overhead against a bare PyTorch loop",
    "## 4. Peak RSS of the default DRR model, forward + backward",
    "## 5. GPU throughput (bf16 autocast, channels_last)",
    "## Requirements (issue 10)",
)
BACKBONES = ("resnet10t", "resnet18", "densenet121", "efficientnet_b0", "convnext_atto")


def test_quick_benchmark_prints_tables_and_verdicts(tmp_path):
    out = tmp_path / "bench.md"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    for heading in HEADINGS:
        assert heading in text, heading
    assert "Machine: CPU " in text and "torch " in text and "threads" in text
    for backbone in BACKBONES:  # one row per encoder and backbone
        assert len(re.findall(rf"^\| \w+ \| \S+ \| {backbone} \|", text, re.M)) == 2, backbone
    for requirement in ("data wait", "Lightning overhead ratio", "peak RSS"):
        assert re.search(rf"^(PASS|FAIL): {requirement} ", text, re.M), requirement
    if not __import__("torch").cuda.is_available():
        assert "no CUDA: GPU section skipped" in text
    assert out.read_text().strip() == text.strip()
