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
# PUBLISH=1 makes the figure targets (fig4.1 ...) publish: replace the committed notebook and results.
PUBLISH ?= 0
ifneq ($(filter-out 0 1,$(PUBLISH))$(words $(PUBLISH)),1)
$(error PUBLISH=$(PUBLISH): must be 0 (run into _build/run, the repository unchanged) or 1 (publish))
endif
# More papermill parameters for nb-%, publish-% and the figure targets, e.g. PARAMS="-p data_dir /path/to/train"
PARAMS ?=
# The book renders the notebooks listed in _toc.yml; the smoke test runs every notebook.
NOTEBOOKS := $(patsubst %,%.ipynb,$(shell grep -o 'notebooks/[^ ]*' _toc.yml))
ALL_NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SMOKE_DIR := _build/smoke
# The install stamp every target depends on. `STAMP=` (empty) skips the install check, for a venv made
# elsewhere (e.g. a clone run with BIN=/path/to/venv/bin STAMP=: nothing is installed then).
STAMP := $(VENV)/.installed

.PHONY: help install lock book book-src notebooks reproduce test unit smoke book-html browser bench clean

help:
	@echo "make book                   render the book from committed results (creates .venv)"
	@echo "make test                   unit tests + smoke run of every notebook + strict book build + browser test"
	@echo "make reproduce PROFILE=...  recompute and publish every notebook at PROFILE (smoke|book|paper), then build"
	@echo "make bench                  formation vs pyapr; cost against image size at fixed content; streamed training step and table memory, APR_B vs Pix_B; the input pipeline; APR steps after APR vs pixel steps; 3D formation, convolution and memory"
	@echo "make fig4.7 PROFILE=book    recompute one thesis figure or table (fig4.1 ... fig4.12, table4.1 ... table4.4, summary)"
	@echo "                            into _build/run/<notebook>/ (notebook and results): the repository is not changed"
	@echo "make nb-07_natural_apr      the same for one notebook; PARAMS=\"-p data_dir /path\" passes more parameters"
	@echo "make publish-07_natural_apr recompute one notebook at PROFILE and replace the committed notebook and results/"
	@echo "                            (or PUBLISH=1 with a figure target: make fig4.7 PROFILE=book PUBLISH=1)"

# Said when a step that needs the network fails: the install is the only one (the book build and the
# notebooks download nothing; MathJax comes from a PyPI package).
PIP_HINT := echo "make install: pip failed. The first make needs PyPI (network access, or a pip cache or wheelhouse holding the pinned packages: PIP_FIND_LINKS) and a C++17 compiler with OpenMP to build aprlib; see README.md, prerequisites" >&2; exit 1

# Every package, and the build backend of aprlib's extension (PIP_CONSTRAINT reaches pip's isolated
# build environment), comes from the lock file at its exact version.
LOCK := book-lock.txt
PIP_LOCKED := PIP_CONSTRAINT=$(abspath $(LOCK)) $(BIN)/python -m pip install -q

ifneq ($(STAMP),)
$(STAMP): pyproject.toml setup.py $(LOCK) $(wildcard aprlib/_cpp/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "make install: could not create $(VENV) with $(PYTHON): Python 3.11 with its venv module is needed (Debian: apt-get install python3.11-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip || { $(PIP_HINT); }
	# torch first, at the locked version: the CPU wheel (an unpinned torch would pull a multi-GB CUDA build)
	$(PIP_LOCKED) torch || { $(PIP_HINT); }
	$(PIP_LOCKED) -e ".[test,book]" || { $(PIP_HINT); }
	# pyapr (LibAPR) is an optional cross-check: its tests skip where it cannot be installed
	$(PIP_LOCKED) -e ".[crosscheck]" || echo "pyapr not installable here: cross-checks will be skipped"
	# StarDist's sample images with ground truth (aprlib.data.stardist_samples): the package without its
	# deep-learning dependencies; its tests skip where it cannot be installed
	$(PIP_LOCKED) --no-deps stardist || echo "stardist not installable here: the StarDist sample tests will be skipped"
	touch $@
endif

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

# Reruns leave the repository as it is unless asked to publish (issue 40).
#
# nb-% (and the figure targets) run notebooks/%.ipynb at PROFILE into $(RUN_DIR)/%/: the executed
# notebook is $(RUN_DIR)/%/%.ipynb and its results_dir (checkpoint_dir, for the training notebooks) is
# $(RUN_DIR)/%/results, a fresh copy of results/, so that the notebook loads the stored runs and the
# results of other chapters as they are in the tree, and writes only there. Nothing tracked (or
# ignored) in the repository is written. It prints where the notebook and each figure and table went,
# and whether each differs from the committed one.
#
# publish-% does what nb-% did before: run at PROFILE with the notebook's own results_dir (results/),
# and replace notebooks/%.ipynb with the executed notebook if it ran through (a run that fails leaves
# the notebook as it was; results it wrote before failing stay in results/). reproduce publishes every
# notebook of the book, recomputed, then builds the book.
RUN_DIR := _build/run
NB_RUN = $(BIN)/papermill notebooks/$*.ipynb
reproduce: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
	  $(MAKE) --no-print-directory publish-$$(basename $$nb .ipynb) RECOMPUTE=True || exit 1; \
	done
	$(MAKE) book-html

nb-%: $(STAMP)
	@test -f notebooks/$*.ipynb || { echo "make nb-$*: there is no notebooks/$*.ipynb" >&2; exit 2; }
	@out="$(RUN_DIR)/$*"; res="$$PWD/$$out/results"; \
	rm -rf "$$out" && mkdir -p "$$out" && cp -pR results "$$res" && touch "$$out/.started" || exit 1; \
	extra=(); if grep -q '"checkpoint_dir = ' notebooks/$*.ipynb; then extra=(-p checkpoint_dir "$$res/checkpoints"); fi; \
	echo "nb-$*: running notebooks/$*.ipynb at profile $(PROFILE) into $$out/ (results_dir $$out/results, a copy of results/; the repository is not changed)"; \
	$(NB_RUN) "$$out/$*.ipynb" -p profile $(PROFILE) -p recompute $(RECOMPUTE) -p results_dir "$$res" "$${extra[@]}" $(PARAMS) \
	    --cwd notebooks --no-progress-bar \
	  || { echo "make nb-$*: notebooks/$*.ipynb FAILED at profile $(PROFILE): the executed copy with the error is $$out/$*.ipynb; nothing in the repository changed" >&2; exit 1; }; \
	$(BIN)/python tools/hide_injected_parameters.py "$$out/$*.ipynb" || exit 1; \
	echo "nb-$*: done; nothing in the repository changed (make publish-$* PROFILE=$(PROFILE) would replace notebooks/$*.ipynb and its results)"; \
	$(BIN)/python tools/report_run.py "$$out/$*.ipynb" "$$out/results" "$$out/.started" results

publish-%: $(STAMP)
	@test -f notebooks/$*.ipynb || { echo "make publish-$*: there is no notebooks/$*.ipynb" >&2; exit 2; }
	@mkdir -p $(RUN_DIR) && touch "$(RUN_DIR)/.publish-$*.started" || exit 1; \
	echo "publish-$*: running notebooks/$*.ipynb at profile $(PROFILE); it writes its results under results/ and replaces notebooks/$*.ipynb"; \
	$(NB_RUN) $(RUN_DIR)/$*.ipynb -p profile $(PROFILE) -p recompute $(RECOMPUTE) $(PARAMS) --cwd notebooks --no-progress-bar \
	  || { echo "make publish-$*: notebooks/$*.ipynb FAILED at profile $(PROFILE): left unchanged (the failed run is $(RUN_DIR)/$*.ipynb; results it wrote before failing are in results/: git status)" >&2; exit 1; }; \
	$(BIN)/python tools/hide_injected_parameters.py $(RUN_DIR)/$*.ipynb && mv $(RUN_DIR)/$*.ipynb notebooks/$*.ipynb || exit 1; \
	echo "publish-$*: replaced notebooks/$*.ipynb; review and commit (git status)"; \
	$(BIN)/python tools/report_run.py notebooks/$*.ipynb results "$(RUN_DIR)/.publish-$*.started"

# One target per thesis figure/table: run the notebook that makes it (PROFILE=smoke|book|paper;
# RECOMPUTE=False reuses stored results and runs), into _build/run/ (nb-%), or with PUBLISH=1 replacing
# the committed notebook and results (publish-%): `make fig4.7 PROFILE=book [PUBLISH=1]`.
RUN := $(if $(filter 1,$(PUBLISH)),publish,nb)
fig4.1 fig4.2: $(RUN)-01_apr_synthetic
table4.1 fig4.5: $(RUN)-04_synthetic_networks
fig4.3 fig4.4 table4.2: $(RUN)-05_streamed_training
fig4.6: $(RUN)-06_finite_datasets
fig4.7 fig4.8: $(RUN)-07_natural_apr
table4.3 fig4.9 table4.4: $(RUN)-08_natural_networks
fig4.10 fig4.11: $(RUN)-02_timing_scaling
fig4.12: $(RUN)-03_memory_vgg16
summary: $(RUN)-09_reproduction_summary
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
	  CHROMIUM="$(CHROMIUM)" $(BIN)/python -m pytest -q -m browser tests/test_book_browser.py tests/test_book_layout.py; rc=$$?; \
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
# prepared batches from DataLoader workers to the trainer); the generator's polygon fill vs skimage;
# 3D: formation vs pyapr, APRConv3d forward + backward vs F.conv3d on the voxel volume and the memory
# of each, 64^3 ... 256^3 at three CR settings (aprbook.cost3d; 11 more minutes on 2026-12-07).
# About 30 minutes on two cores.
# The operation benchmark (APR conv/pool vs dense torch) is `$(BIN)/python -m aprbook.bench [--training]`.
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_formation.py
	$(BIN)/python -m aprbook.bench scaling
	$(BIN)/python -m aprbook.bench step --channels-last
	$(BIN)/python -m aprbook.bench tables
	$(BIN)/python -m aprbook.bench pipeline
	OMP_NUM_THREADS=1 $(BIN)/python -m aprbook.bench cost3d --profile book
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_tables3d.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_polygon_fill.py
	$(BIN)/python benchmarks/bench_interleaving.py

clean:
	rm -rf _build $(VENV) build *.egg-info aprlib/*.so results/*/smoke
