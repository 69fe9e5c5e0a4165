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
# The learner's working copy that make lab opens (ignored by git; see coursekit workspace).
WORK ?= my-work
# nbval: seconds a single cell may run
CELL_TIMEOUT ?= 300
CHAPTERS ?= chapters/*.ipynb
NB ?= $(CHAPTERS) solutions/*.ipynb
# make book: MathJax as the theme loads it (cdn) or a local copy from make web-assets (local: renders offline).
BOOK_MATHJAX ?= cdn
# make slides: the notebooks to turn into decks, and where reveal.js and MathJax come from (local or cdn).
SLIDES_NB ?= $(CHAPTERS)
SLIDES_ASSETS ?= local
# npm's cache folder for reveal.js and MathJax (make web-assets; ignored by git).
WEB := build/web
# Extra pytest arguments for make test (CI: -m "not browser", since it runs the browser test once with the website).
PYTEST_ARGS ?=
# make test-portable: the chapters again with these seed offsets and ATEN's portable (non-vectorised) CPU kernels.
PORTABLE_OFFSETS ?= 1000 2000

STAMP := $(VENV)/.stamp-install
DOCS_STAMP := $(VENV)/.stamp-docs
WEB_STAMP := $(WEB)/node_modules/.stamp
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

.PHONY: install lab lab-refresh test unit notebooks test-portable test-grader exercises execute bench gpu-check clean help \
        docs-install web-assets book slides gallery gallery-check test-browser test-docs

help:
	@echo "make lab            create .venv if needed, install the course, copy the notebooks to my-work/, start JupyterLab there"
	@echo "make lab-refresh    bring the course's newer notebooks into my-work/ (your edited ones are kept, the new one beside)"
	@echo "make test           install if needed, run unit tests, every notebook (nbval) and the exercise checks"
	@echo "make test-portable  the chapters again on other random streams and portable CPU kernels"
	@echo "make execute        re-execute notebooks in place (NB=chapters/01_elbo.ipynb for one)"
	@echo "make exercises      regenerate exercises/ from solutions/"
	@echo "make test-grader    the grader's attack suite and the nbgrader round trip (installs bubblewrap, nbgrader)"
	@echo "make bench          print the speed table"
	@echo "make book           the course as a website in build/book/_build/html (BOOK_MATHJAX=local: offline MathJax)"
	@echo "make slides         a reveal.js deck per chapter in build/slides (SLIDES_NB=chapters/01_elbo.ipynb for one)"
	@echo "make gallery        regenerate the README's gallery and chapter table (gallery-check: fail if stale)"
	@echo "make test-browser   JupyterLab, the website and a deck in headless Chromium (needs Debian's chromium)"
	@echo "make test-docs      the website's, slides' and gallery's tests with their tools, then the browser test"
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

# The website's and the slides' tools (jupyter-book 1.x, nbconvert), on top of the course.
$(DOCS_STAMP): pyproject.toml $(CONSTRAINTS) | $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[dev,docs]"
	@touch $@

docs-install: $(DOCS_STAMP)

# reveal.js and MathJax as pinned in book/package-lock.json, into an ignored cache folder (npm, once; then offline).
$(WEB_STAMP): book/package.json book/package-lock.json
	mkdir -p $(WEB)
	cp book/package.json book/package-lock.json $(WEB)/
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

web-assets: $(WEB_STAMP)

# The notebooks are not re-executed: the site shows their stored outputs. Warnings are errors.
book: $(DOCS_STAMP) $(if $(filter local,$(BOOK_MATHJAX)),$(WEB_STAMP))
	$(BIN)/coursekit book --mathjax $(BOOK_MATHJAX)

slides: $(DOCS_STAMP) $(if $(filter local,$(SLIDES_ASSETS)),$(WEB_STAMP))
	$(BIN)/coursekit slides --assets $(SLIDES_ASSETS) $(SLIDES_NB)

gallery: $(STAMP)
	$(BIN)/coursekit gallery

gallery-check: $(STAMP)
	$(BIN)/coursekit gallery --check

# The real-browser test alone (make test runs it too when Chromium is there); screenshots in build/test-artifacts.
test-browser: $(DOCS_STAMP) $(WEB_STAMP)
	$(THREADS_ENV) COURSE_NO_SKIP=1 $(BIN)/python -m pytest -m browser -ra --durations=5 tests/test_browser.py

# The website's, the slides' and the gallery's tests with their tools installed (make test skips what needs them),
# then the browser test; nothing is skipped for a missing prerequisite.
test-docs: $(DOCS_STAMP) $(WEB_STAMP)
	$(THREADS_ENV) COURSE_NO_SKIP=1 $(BIN)/python -m pytest -ra --durations=5 \
	  tests/test_book.py tests/test_slides.py tests/test_gallery.py tests/test_browser.py

# JupyterLab on the learner's working copy (my-work/, ignored by git): running a chapter never dirties what git pull
# updates. The copy is made once; `make lab-refresh` brings in the course's newer notebooks without losing edits.
lab: $(STAMP)
	$(BIN)/coursekit workspace --dest $(WORK)
	$(RUN_ENV) GVLIB_QUIET= $(BIN)/jupyter lab --ServerApp.root_dir=. --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root ) \
	  $(LAB_ARGS) $(WORK)/chapters/00_start_here.ipynb

lab-refresh: $(STAMP)
	$(BIN)/coursekit workspace --dest $(WORK) --refresh

unit: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) tests -ra --durations=15

notebooks: $(STAMP)
	$(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) -p coursekit.nbtime $(NBVAL) $(NB)

# The exercise checks, then one pytest run: gvlib's and coursekit's tests, then every notebook under nbval,
# JOBS files at a time. coursekit.nbtime prints each notebook's run time, so the budgets stay visible.
test: $(STAMP)
	@$(TIMED) "coursekit check" $(BIN)/coursekit check
	@$(TIMED) "pytest: unit tests and notebooks" env $(THREADS_ENV) $(BIN)/python -m pytest $(XDIST) \
	  -p coursekit.nbtime -ra --durations=10 $(PYTEST_ARGS) $(NBVAL) tests $(NB)

# Every chapter re-executed under nbval on other random streams ($$GVLIB_SEED_OFFSET) and with ATen's portable
# kernels: each claim must hold and each compared output must stay the same.
test-portable: $(STAMP)
	@for off in $(PORTABLE_OFFSETS); do \
	  $(TIMED) "test-portable GVLIB_SEED_OFFSET=$$off ATEN_CPU_CAPABILITY=default" env $(THREADS_ENV) \
	    GVLIB_SEED_OFFSET=$$off ATEN_CPU_CAPABILITY=default \
	    $(BIN)/python -m pytest $(XDIST) -p coursekit.nbtime $(NBVAL) $(CHAPTERS) || exit 1; \
	done

# The grader's own suite: a student's attacks on it (tests/test_attacks.py) and every master through real nbgrader
# and coursekit grade (tests/test_nbgrader.py). Installs bubblewrap (as root, with apt) and build/nbgrader-venv if missing.
test-grader: $(STAMP)
	sh scripts/grader-prereqs.sh $(VENV)
	@$(TIMED) "pytest: grader attacks and nbgrader round trip" env COURSEKIT_GRADER_SUITE=1 $(THREADS_ENV) \
	  $(BIN)/python -m pytest -p no:cacheprovider -ra --durations=5 tests/test_attacks.py tests/test_nbgrader.py

exercises: $(STAMP)
	$(BIN)/coursekit build

execute: $(STAMP)
	$(RUN_ENV) $(BIN)/coursekit execute $(NB)

bench: $(STAMP)
	$(RUN_ENV) GVLIB_THREADS=2 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 $(BIN)/coursekit bench $(BENCH_ARGS)

# Every chapter's claims with what each random stream measured (about 15 minutes here): results/claims_over_seeds.md
CLAIM_OFFSETS ?= 0 1000 2000 7
claims: $(STAMP)
	env $(THREADS_ENV) $(BIN)/coursekit claims --offsets $(CLAIM_OFFSETS) --out results/claims_over_seeds.md $(CHAPTERS)

# On a machine with an NVIDIA GPU (make install TORCH=cuda): unit tests on cuda, each chapter's full-profile code path
# at a tiny budget, the bench on cuda, a 2-GPU data-parallel fit where two GPUs are present (scripts/gpu-check.sh).
gpu-check: $(STAMP)
	$(RUN_ENV) bash scripts/gpu-check.sh $(BIN)/python

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info build/book build/slides build/web build/test-artifacts \
	  build/nbgrader-venv
