# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates (once) and reuses a virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fracrisk-installed

# torch and torchvision are pinned to builds that install together (timm needs torchvision).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench bench-drr bench-training docs clean chromium

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PINS)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fracrisk demo --out runs/demo --overwrite

# The report test opens the HTML report in headless Chromium: Debian's package, installed once.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks examples scripts
	$(PY) -m pytest -n 2 -q

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples scripts
	$(PY) -m ruff format --check src tests benchmarks examples scripts

bench: $(STAMP)
	$(PY) benchmarks/bench_losses.py --repeats 9

# Encoder throughput, data-wait share, Lightning overhead, peak RSS (and GPU figures with CUDA).
bench-training: $(STAMP)
	$(PY) benchmarks/bench_training.py

# DiffDRR is a benchmark-only peer: installed beside fracrisk without its viewer stack.
bench-drr: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps diffdrr==0.6.1
	$(PY) -m pip install --quiet --disable-pip-version-check fastcore einops torchio kornia roma imageio
	$(PY) benchmarks/bench_drr.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
