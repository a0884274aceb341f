# aprnet-book: `make book` (render the book) and `make test` (CI). See README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= book
RECOMPUTE ?= True
# Checked before anything runs: to a notebook RECOMPUTE=no would be the string 'no' (true: recompute
# everything), and a misspelt PROFILE would render nothing.
ifneq ($(filter-out smoke book paper,$(PROFILE))$(words $(PROFILE)),1)
$(error PROFILE=$(PROFILE): must be smoke, book or paper)
endif
ifneq ($(filter-out True False,$(RECOMPUTE))$(words $(RECOMPUTE)),1)
$(error RECOMPUTE=$(RECOMPUTE): must be True or False)
endif
# The book renders the notebooks listed in _toc.yml; the smoke test runs every notebook.
NOTEBOOKS := $(patsubst %,%.ipynb,$(shell grep -o 'notebooks/[^ ]*' _toc.yml))
ALL_NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SMOKE_DIR := _build/smoke
STAMP := $(VENV)/.installed

.PHONY: help install lock book book-src notebooks reproduce test unit smoke book-html browser bench clean

help:
	@echo "make book                   render the book from committed results (creates .venv)"
	@echo "make test                   unit tests + smoke run of every notebook + strict book build + browser test"
	@echo "make reproduce PROFILE=...  recompute every notebook at PROFILE (smoke|book|paper), then build"
	@echo "make bench                  formation vs pyapr; cost against image size at fixed content; streamed training step and table memory, APR_B vs Pix_B; the input pipeline; APR steps after APR vs pixel steps"
	@echo "make fig4.7 PROFILE=book    recompute one thesis figure or table (fig4.1 ... fig4.12, table4.1 ... table4.4)"

# Said when a step that needs the network fails: the install is the only one (the book build and the
# notebooks download nothing; MathJax comes from a PyPI package).
PIP_HINT := echo "make install: pip failed. The first make needs PyPI (network access, or a pip cache or wheelhouse holding the pinned packages: PIP_FIND_LINKS) and a C++17 compiler with OpenMP to build aprlib; see README.md, prerequisites" >&2; exit 1

# Every package, and the build backend of aprlib's extension (PIP_CONSTRAINT reaches pip's isolated
# build environment), comes from the lock file at its exact version.
LOCK := book-lock.txt
PIP_LOCKED := PIP_CONSTRAINT=$(abspath $(LOCK)) $(BIN)/python -m pip install -q

$(STAMP): pyproject.toml setup.py $(LOCK) $(wildcard aprlib/_cpp/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "make install: could not create $(VENV) with $(PYTHON): Python 3.11 with its venv module is needed (Debian: apt-get install python3.11-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip || { $(PIP_HINT); }
	# torch first, at the locked version: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build)
	$(PIP_LOCKED) torch || { $(PIP_HINT); }
	$(PIP_LOCKED) -e ".[test,book]" || { $(PIP_HINT); }
	# pyapr (LibAPR) is an optional cross-check: its tests skip where it cannot be installed
	$(PIP_LOCKED) -e ".[crosscheck]" || echo "pyapr not installable here: cross-checks will be skipped"
	touch $@

# Regenerate the lock from .venv after a deliberate upgrade (then commit book-lock.txt).
lock: $(STAMP)
	{ sed -n '/^#/p' $(LOCK); echo "setuptools==$$(sed -n 's/^setuptools==//p' $(LOCK))"; echo "wheel==$$(sed -n 's/^wheel==//p' $(LOCK))"; \
	  echo "pybind11==$$(sed -n 's/^pybind11==//p' $(LOCK))"; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+cpu$$/\1/' | grep -v -i -E '^(setuptools|wheel|pybind11)=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

install: $(STAMP)

# The book is built from a copy of its sources in _build/src (results/ linked there, not copied), so
# that building it changes nothing in the tree: the committed notebooks stay as they are.
BOOK_SRC := _build/src
book-src:
	rm -rf $(BOOK_SRC)
	mkdir -p $(BOOK_SRC)
	cp -R _config.yml _toc.yml book notebooks $(BOOK_SRC)/
	ln -s ../../results $(BOOK_SRC)/results

# Execute the copies of the notebooks at PROFILE in _build/src; they load the committed results when
# they match (a summary of stored runs rewrites nothing then), and the training notebooks render only
# the runs already stored (train_missing False): make book never trains. A notebook that fails stops
# the build, naming it; the committed notebook is never touched.
notebooks: $(STAMP) book-src
	@for nb in $(NOTEBOOKS); do \
	  echo "executing $$nb at profile $(PROFILE) (in $(BOOK_SRC))"; \
	  $(BIN)/papermill "$(BOOK_SRC)/$$nb" "$(BOOK_SRC)/$$nb" -p profile $(PROFILE) -p train_missing False \
	    --cwd $(BOOK_SRC)/notebooks --no-progress-bar \
	    || { echo "make book: $$nb FAILED at profile $(PROFILE): the executed copy with the error is $(BOOK_SRC)/$$nb; the committed notebook is unchanged" >&2; exit 1; }; \
	done
	$(BIN)/python tools/hide_injected_parameters.py $(addprefix $(BOOK_SRC)/,$(NOTEBOOKS))

# _build/src -> _build/html
BOOK_BUILD = $(BIN)/jupyter-book build $(BOOK_SRC) --path-output . -W -n --keep-going

# Offline: MathJax comes from the sphinx-mathjax-offline package (the `book` extra), no npm.
# book-html renders the committed notebooks as they are (make test); book renders them executed.
book-html: $(STAMP) book-src
	$(BOOK_BUILD)
	@echo "book: _build/html/index.html"

book: notebooks
	$(BOOK_BUILD)
	@echo "book: _build/html/index.html"

# reproduce and nb-% recompute and update the committed notebooks (and results): each notebook runs
# into _build/run/ and replaces the committed one only when it ran through.
RUN_DIR := _build/run
reproduce: $(STAMP)
	mkdir -p $(RUN_DIR)
	@for nb in $(NOTEBOOKS); do \
	  out="$(RUN_DIR)/$$(basename $$nb)"; \
	  { $(BIN)/papermill "$$nb" "$$out" -p profile $(PROFILE) -p recompute True --cwd notebooks \
	    && $(BIN)/python tools/hide_injected_parameters.py "$$out" && mv "$$out" "$$nb"; } \
	    || { echo "make reproduce: $$nb FAILED at profile $(PROFILE): left unchanged (the failed run is $$out)" >&2; exit 1; }; \
	done
	$(MAKE) book-html

# One target per notebook and per thesis figure/table: recompute exactly that (PROFILE=smoke|book|paper;
# RECOMPUTE=False reuses stored results and runs), e.g. `make fig4.7 PROFILE=book`.
nb-%: $(STAMP)
	mkdir -p $(RUN_DIR)
	$(BIN)/papermill notebooks/$*.ipynb $(RUN_DIR)/$*.ipynb -p profile $(PROFILE) -p recompute $(RECOMPUTE) --cwd notebooks \
	  || { echo "make: notebooks/$*.ipynb FAILED at profile $(PROFILE): left unchanged (the failed run is $(RUN_DIR)/$*.ipynb)" >&2; exit 1; }
	$(BIN)/python tools/hide_injected_parameters.py $(RUN_DIR)/$*.ipynb
	mv $(RUN_DIR)/$*.ipynb notebooks/$*.ipynb

fig4.1 fig4.2: nb-01_apr_synthetic
table4.1 fig4.5: nb-04_synthetic_networks
fig4.3 fig4.4 table4.2: nb-05_streamed_training
fig4.6: nb-06_finite_datasets
fig4.7 fig4.8: nb-07_natural_apr
table4.3 fig4.9 table4.4: nb-08_natural_networks
fig4.10 fig4.11: nb-02_timing_scaling
fig4.12: nb-03_memory_vgg16
summary: nb-09_reproduction_summary
.PHONY: fig4.1 fig4.2 table4.1 fig4.5 fig4.3 fig4.4 table4.2 fig4.6 fig4.7 fig4.8 table4.3 fig4.9 table4.4 \
        fig4.10 fig4.11 fig4.12 summary

# Two pytest workers with one OpenMP thread each (OpenMP threads in both workers would fight over the cores).
unit: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not browser" tests

# The built book in headless Chromium: chapters, figures, math, links, no outside host; screenshots
# in _build/screenshots/. Without Chromium (CHROMIUM empty) it says how to enable the check and
# succeeds; with Chromium but no built book it fails and says to build it first.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
browser: $(STAMP)
	@if [ -z "$(CHROMIUM)" ]; then \
	  echo "browser: SKIPPED (not run, not passed): Chromium is not installed, so the built book was not opened in a browser. To enable this check: apt-get install chromium (Debian/Ubuntu), then make browser"; \
	else \
	  CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest -q -m browser tests/test_book_browser.py; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "browser: no test ran: build the book first (make book-html)" >&2; fi; \
	  exit $$rc; \
	fi

# Every notebook at the smoke profile, recomputed, into _build/smoke (the committed notebooks stay as they are).
smoke: $(STAMP)
	mkdir -p $(SMOKE_DIR)
	for nb in $(ALL_NOTEBOOKS); do \
	  $(BIN)/papermill "$$nb" "$(SMOKE_DIR)/$$(basename $$nb)" -p profile smoke -p recompute True --cwd notebooks --no-progress-bar || exit 1; \
	done

test: unit smoke book-html browser

# Benchmarks (never run by the tests; nothing asserted, the printed ratios are the result): formation
# vs pyapr; cost against canvas size at fixed content, 256^2 ... 8192^2 (formation, APR_B tables +
# forward, Pix_B forward: time and peak memory); the end-to-end streamed training step, APR_B vs
# Pix_B at 1 and 2 threads; the memory of one batch's index tables; the input pipeline (handing
# prepared batches from DataLoader workers to the trainer); the generator's polygon fill vs skimage.
# About 20 minutes on two cores.
# The operation benchmark (APR conv/pool vs dense torch) is `$(BIN)/python -m aprbook.bench [--training]`.
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_formation.py
	$(BIN)/python -m aprbook.bench scaling
	$(BIN)/python -m aprbook.bench step --channels-last
	$(BIN)/python -m aprbook.bench tables
	$(BIN)/python -m aprbook.bench pipeline
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_polygon_fill.py
	$(BIN)/python benchmarks/bench_interleaving.py

clean:
	rm -rf _build $(VENV) build *.egg-info aprlib/*.so results/*/smoke
