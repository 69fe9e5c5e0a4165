# Two commands do all set-up:  make lab   and   make test
# Everything else is for authors and lecturers: make execute, exercises, bench, test-portable.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A pip constraints file (e.g. .ci/constraints-cpu.txt pins torch==2.13.0); empty = whatever pip picks.
CONSTRAINTS ?=
# Which build of torch: auto = the CPU wheel on Linux without an NVIDIA driver (no multi-GB CUDA download on a
# laptop), pip's default elsewhere; cpu = always the CPU wheel; cuda = always pip's default (the CUDA build on Linux).
TORCH ?= auto
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Threads per notebook kernel or test process, and how many notebooks/test files run side by side (pytest-xdist).
TORCH_THREADS ?= 1
JOBS ?= 2
# Jupyter
LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
LAB_ARGS ?=
# nbval: seconds a single cell may run
CELL_TIMEOUT ?= 300
CHAPTERS ?= chapters/*.ipynb
NB ?= $(CHAPTERS) solutions/*.ipynb
# make test-portable: the chapters again with these seed offsets and ATEN's portable (non-vectorised) CPU kernels.
PORTABLE_OFFSETS ?= 1000 2000

STAMP := $(VENV)/.stamp-install
PIP_FLAGS := $(if $(CONSTRAINTS),--constraint $(CONSTRAINTS),)
# glibc's malloc for every process started here: keep freed buffers up to 64 MB for reuse instead of unmapping them
# (estimate_log_likelihood frees and re-allocates buffers of a few MB thousands of times; measured a third faster).
MALLOC_ENV := MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864
# OMP_WAIT_POLICY=PASSIVE: idle threads sleep instead of spinning (on a busy 2-core machine spinning costs 100x).
RUN_ENV := OMP_WAIT_POLICY=PASSIVE GVLIB_QUIET=1 $(MALLOC_ENV)
THREADS_ENV := OMP_NUM_THREADS=$(TORCH_THREADS) MKL_NUM_THREADS=$(TORCH_THREADS) $(RUN_ENV)
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) --nbval-sanitize-with tests/sanitize.cfg
XDIST := $(if $(filter-out 0 1,$(JOBS)),-n $(JOBS) --dist loadfile,)
TIMED = sh -c 't0=$$(date +%s); "$$@"; rc=$$?; echo "== $$0: $$(( $$(date +%s) - t0 )) s (exit $$rc)"; exit $$rc'

.PHONY: install lab test unit notebooks test-portable exercises execute bench gpu-check clean help

help:
	@echo "make lab            create .venv if needed, install the course, start JupyterLab on chapters/"
	@echo "make test           install if needed, run unit tests, every notebook (nbval) and the exercise checks"
	@echo "make test-portable  the chapters again on other random streams and portable CPU kernels"
	@echo "make execute        re-execute notebooks in place (NB=chapters/01_elbo.ipynb for one)"
	@echo "make exercises      regenerate exercises/ from solutions/"
	@echo "make bench          print the speed table"
	@echo "make gpu-check      on a CUDA GPU: unit tests, each chapter's full profile at a tiny budget, bench (< 5 min)"
	@echo "variables: TORCH=auto|cpu|cuda  CONSTRAINTS=.ci/constraints-cpu.txt  LAB_PORT=8888  LAB_IP=127.0.0.1  JOBS=2"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml (or the constraints) changed.
$(STAMP): pyproject.toml $(CONSTRAINTS) scripts/install-torch.sh jupyter/overrides.json | $(BIN)/python
	sh scripts/install-torch.sh "$(BIN)/python" "$(TORCH)" "$(TORCH_CPU_INDEX)" $(PIP_FLAGS)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[dev]"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@touch $@

install: $(STAMP)

lab: $(STAMP)
	$(RUN_ENV) GVLIB_QUIET= $(BIN)/jupyter lab --ServerApp.root_dir=. --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
	  $(LAB_ARGS) chapters/00_start_here.ipynb

unit: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) tests -ra --durations=15

notebooks: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) -p coursekit.nbtime $(NBVAL) $(NB)

# The exercise checks, then one pytest run: gvlib's and coursekit's tests, then every notebook under nbval,
# JOBS files at a time. coursekit.nbtime prints each notebook's run time, so the budgets stay visible.
test: $(STAMP)
	@$(TIMED) "coursekit check" $(BIN)/coursekit check
	@$(TIMED) "pytest: unit tests and notebooks" env $(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) \
	  -p coursekit.nbtime -ra --durations=10 $(NBVAL) tests $(NB)

# Every chapter re-executed under nbval on other random streams ($$GVLIB_SEED_OFFSET) and with ATen's portable
# kernels: each claim must hold and each compared output must stay the same.
test-portable: $(STAMP)
	@for off in $(PORTABLE_OFFSETS); do \
	  $(TIMED) "test-portable GVLIB_SEED_OFFSET=$$off ATEN_CPU_CAPABILITY=default" env $(THREADS_ENV) \
	    GVLIB_SEED_OFFSET=$$off ATEN_CPU_CAPABILITY=default \
	    $(BIN)/python -m pytest $(XDIST) -p coursekit.nbtime $(NBVAL) $(CHAPTERS) || exit 1; \
	done

exercises: $(STAMP)
	$(BIN)/coursekit build

execute: $(STAMP)
	OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(RUN_ENV) $(BIN)/coursekit execute $(NB)

bench: $(STAMP)
	$(RUN_ENV) OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(BIN)/coursekit bench $(BENCH_ARGS)

# On a machine with an NVIDIA GPU (make install TORCH=cuda): unit tests on cuda, each chapter's full-profile code path
# at a tiny budget, the bench on cuda, a 2-GPU data-parallel fit where two GPUs are present (scripts/gpu-check.sh).
gpu-check: $(STAMP)
	$(RUN_ENV) bash scripts/gpu-check.sh $(BIN)/python

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
