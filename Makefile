# Every target makes or updates the virtual environment first: no setup step by hand.
#   make book                 execute every notebook in place (default profile), render _build/html
#   make book PROFILE=smoke   execute copies at another profile into runs/smoke/, render runs/smoke/_build/html
#   make run NB=01_elbo PARAMS="-p T 4000"   one chapter, new parameters, into runs/01_elbo-<UTC time>/
#   make test                 unit tests, nbval on the committed notebooks, smoke runs, browser check
#   make lab                  JupyterLab on notebooks/
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

.PHONY: venv test book run lab mathjax browser-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

test: $(STAMP)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory mathjax; \
	else echo "npm not found: the browser check needs MathJax (apt-get install npm)"; fi
	$(PY) -m pytest

# MathJax ships with the book (pages load nothing from the network); from the npm registry.
mathjax: $(MATHJAX)

$(MATHJAX):
	@command -v npm >/dev/null || { echo "npm is needed to fetch MathJax: apt-get install npm"; exit 1; }
	tmp=$$(mktemp -d) && \
	npm install --prefix "$$tmp" --no-save --no-audit --no-fund --loglevel=error mathjax@$(MATHJAX_VERSION) && \
	rm -rf book/_static/mathjax && mkdir -p book/_static && cp -r "$$tmp/node_modules/mathjax/es5" book/_static/mathjax && \
	rm -rf "$$tmp"

ifeq ($(PROFILE),cpu)
book: $(STAMP) $(MATHJAX)
	$(PY) -m diffusion_study.notebook execute $(NOTEBOOKS)
	$(PY) -m diffusion_study.ledger --results results --claims book/claims.yml --out book/_generated/claims.md
	$(JB) build . --config book/_config.yml --toc book/_toc.yml $(JBFLAGS)
	@echo "book: $(CURDIR)/_build/html/index.html"
else
# Another profile never touches the committed notebooks or results: a self-contained
# copy of the book's sources is executed and rendered under runs/$(PROFILE)/.
book: $(STAMP) $(MATHJAX)
	rm -rf runs/$(PROFILE) && mkdir -p runs/$(PROFILE) && cp -r book runs/$(PROFILE)/book
	$(PY) -m diffusion_study.notebook execute --dest runs/$(PROFILE)/notebooks -p profile $(PROFILE) $(NOTEBOOKS)
	$(PY) -m diffusion_study.ledger --results runs/$(PROFILE)/results --claims book/claims.yml \
		--out runs/$(PROFILE)/book/_generated/claims.md
	cd runs/$(PROFILE) && $(CURDIR)/$(JB) build . --config book/_config.yml --toc book/_toc.yml $(JBFLAGS)
	@echo "book ($(PROFILE) profile): $(CURDIR)/runs/$(PROFILE)/_build/html/index.html"
endif

# One chapter with new parameters, into a folder of its own (the committed notebook stays).
run: $(STAMP)
	@test -n "$(NB)" || { echo 'usage: make run NB=01_elbo PARAMS="-p T 4000"'; exit 2; }
	@test -f notebooks/$(NB).ipynb || { echo "no such notebook: notebooks/$(NB).ipynb"; exit 2; }
	dir=runs/$(NB)-$$(date -u +%Y%m%dT%H%M%SZ) && mkdir -p $$dir && \
	$(VENV)/bin/papermill notebooks/$(NB).ipynb $$dir/$(NB).ipynb --cwd notebooks \
		-p out_dir "$(CURDIR)/$$dir" $(PARAMS) && \
	echo "executed notebook, figures and results: $$dir/"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $$(test "$$(id -u)" = 0 && echo --allow-root)

browser-deps:
	$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y chromium chromium-driver

clean:
	rm -rf _build runs book/_generated test-artifacts
