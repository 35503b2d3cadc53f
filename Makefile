# `make test` and `make demo` set up everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Ray, torch and the simulators each use one thread per process unless told otherwise.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export RAY_DEDUP_LOGS ?= 0

.PHONY: install test test-fast demo toy lint bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned. From PyPI on Linux this is the CUDA build; for the CPU build:
	# make TORCH_INDEX=https://download.pytorch.org/whl/cpu
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q

# Everything but the tests marked slow (Ray, long simulator runs, the wheel): about a minute.
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow"

# The main job on the embedded default: a PointMaze UMaze sweep, then its report. --resume
# makes a re-run continue an interrupted sweep (or re-print a finished one); rm -r
# results/demo to start over. The suite also holds pointmaze-medium; the demo's budget is
# planned for UMaze alone.
demo: $(STAMP)
	$(PY) -m diffcps_ray.tune --suite pointmaze --budget demo --tasks pointmaze-umaze --storage results --name demo --resume
	$(PY) -m analysis.aggregate results/demo --out results/demo/report

# The paper's toy bandit (section 3.1); the full default takes about an hour on one core.
toy: $(STAMP)
	$(PY) -m diffcps_ray.toy --out results/toy

bench: $(STAMP)
	$(PY) bench/train_step.py --threads 1 --clock cpu
	$(PY) bench/rllib_step.py
	$(PY) bench/data.py
	$(PY) bench/tune_overhead.py
	$(PY) bench/schedule_model.py --slots 16 32

# On a CUDA machine (with a CUDA build of torch): the GPU path in one run, within 8 minutes;
# docs/performance.md "The GPU check". Without CUDA it says so and fails.
gpu-check: $(STAMP)
	$(PY) bench/gpu_check.py

clean:
	rm -rf results .pytest_cache .ruff_cache
