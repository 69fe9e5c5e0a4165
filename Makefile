# Two commands do all set-up:  make lab   and   make test
# Everything else is for authors: make execute, make exercises, make bench.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A pip constraints file (e.g. .ci/constraints-cpu.txt pins the CPU build of torch); empty = normal install.
CONSTRAINTS ?=
# TORCH=cpu installs torch from the PyTorch CPU wheel index first (no CUDA download on laptops).
TORCH ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Stored notebook outputs are made, and compared, with this many threads (results differ in the last digits otherwise).
TORCH_THREADS ?= 2
# Jupyter
LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
LAB_ARGS ?=
# nbval: seconds a single cell may run
CELL_TIMEOUT ?= 300
NB ?= chapters/*.ipynb solutions/*.ipynb

STAMP := $(VENV)/.stamp-install
PIP_FLAGS := $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS),)
# OMP_WAIT_POLICY=PASSIVE: idle threads sleep instead of spinning (on a busy 2-core machine spinning costs 100x).
THREADS_ENV := OMP_NUM_THREADS=$(TORCH_THREADS) MKL_NUM_THREADS=$(TORCH_THREADS) OMP_WAIT_POLICY=PASSIVE GVLIB_QUIET=1

.PHONY: install lab test unit notebooks exercises execute bench clean help

help:
	@echo "make lab        create .venv if needed, install the course, start JupyterLab on chapters/"
	@echo "make test       install if needed, run unit tests, every notebook (nbval) and the exercise checks"
	@echo "make execute    re-execute notebooks in place (NB=chapters/01_elbo.ipynb for one)"
	@echo "make exercises  regenerate exercises/ from solutions/"
	@echo "make bench      print the speed table"
	@echo "variables: CONSTRAINTS=.ci/constraints-cpu.txt  TORCH=cpu  LAB_PORT=8888  LAB_IP=127.0.0.1"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml (or the constraints) changed.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(if $(filter cpu,$(TORCH)),$(BIN)/python -m pip install torch --index-url $(TORCH_CPU_INDEX),)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[dev]"
	@touch $@

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
	  $(LAB_ARGS) chapters/00_start_here.ipynb

unit: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest tests -ra --durations=15

notebooks: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest -p gvlib._nbtime --nbval-lax --nbval-current-env \
	  --nbval-cell-timeout=$(CELL_TIMEOUT) --nbval-sanitize-with tests/sanitize.cfg $(NB)

# One pytest run: gvlib's unit tests, the pipeline tests, then every notebook re-executed under nbval.
# gvlib._nbtime prints each notebook's run time at the end, so the 15-minute budget stays visible.
test: $(STAMP)
	$(BIN)/python -m gvlib.course check
	$(THREADS_ENV) $(BIN)/python -m pytest -p gvlib._nbtime -ra --durations=10 \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
	  --nbval-sanitize-with tests/sanitize.cfg tests $(NB)

exercises: $(STAMP)
	$(BIN)/python -m gvlib.course build

execute: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m gvlib.course execute $(NB)

bench: $(STAMP)
	$(BIN)/python -m gvlib.bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
