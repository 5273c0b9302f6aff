# mlnmf: every target a newcomer would guess. `make demo` and `make test` work on a fresh machine.
#
# Each target installs only what it needs into .venv (one stamp file per extra, so `make demo`
# then `make test` just adds the test extra):
#   demo        runtime only (numpy, pillow, typer, rich)
#   test, fuzz  extra `test` (pytest, hypothesis, threadpoolctl, scikit-learn, dask)
#   lint        extra `lint` (ruff, mypy)
#   bench, experiments  extra `bench` (scikit-learn, scikit-image, threadpoolctl, dask)
#   install     extra `dev` (all of the above)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# One BLAS thread: on a shared 2-core machine two threads collapse when another process is busy,
# and the batch tests compare --jobs 1 with --jobs 2 bit for bit.
ONE_THREAD := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: install demo test lint bench experiments tables fuzz clean

install: $(VENV)/.stamp-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-runtime: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.stamp-%: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[$*]'
	touch $@

demo: $(VENV)/.stamp-runtime
	$(ONE_THREAD) $(BIN)/mlnmf decompose sample_images/camera.png --layers 3 --ranks 64,32,16 --out out --force
	@echo
	@echo "Open out/index.html (the report page) or out/camera/summary.png. The pictures are in"
	@echo "out/camera/ (original.png, reconstruction_depth{1,2,3}.png, features_layer{1,2,3}.png,"
	@echo "coefficients_layer{1,2,3}.png, ...); the numbers are in out/camera/report.json."
	@echo
	@echo "mlnmf is installed in $(VENV). To run it, activate the environment first:"
	@echo "    . $(VENV)/bin/activate"
	@echo "    mlnmf --help"
	@echo "or call it by its path without activating: $(BIN)/mlnmf --help"

test: $(VENV)/.stamp-test
	$(ONE_THREAD) $(BIN)/python -m pytest -q

lint: $(VENV)/.stamp-lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python benchmarks/tables.py --check

bench: $(VENV)/.stamp-bench
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_collections.py
	$(BIN)/python benchmarks/bench_streaming.py

experiments: $(VENV)/.stamp-bench
	$(BIN)/python benchmarks/run_experiments.py

# Rewrites the figure tables in README.md and docs/*.md from benchmarks/results/*.json.
# `make lint` checks that they are up to date.
tables: $(VENV)/.stamp-runtime
	$(BIN)/python benchmarks/tables.py

FUZZ_EXAMPLES ?= 2000
fuzz: $(VENV)/.stamp-test
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py tests/test_engine_properties.py --hypothesis-show-statistics

clean:
	rm -rf $(VENV) out mlnmf-out .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
