# mlnmf: every target a newcomer would guess. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench experiments fuzz clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlnmf decompose sample_images/camera.png --layers 3 --ranks 64,32,16 --out out --force
	@echo
	@echo "Pictures are in out/camera/: summary.png, original.png, reconstruction.png,"
	@echo "reconstruction_depth{1,2,3}.png, features_layer{1,2,3}.png, coefficients_layer{1,2,3}.png;"
	@echo "the numbers are in out/camera/report.json."

# One BLAS thread: on a shared 2-core machine two threads collapse when another process is busy,
# and the batch tests compare --jobs 1 with --jobs 2 bit for bit.
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_collections.py

experiments: $(STAMP)
	$(BIN)/python benchmarks/run_experiments.py

FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q tests/test_fuzz.py tests/test_engine_properties.py --hypothesis-show-statistics

clean:
	rm -rf $(VENV) out mlnmf-out .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
