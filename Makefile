# The two commands a newcomer runs (see README.md):
#   make experiments   cluster up, then pytest experiments/ with its reports in reports/
#   make test          lint, cluster up, then the whole test suite (unit and real-cluster tests)
# Both install what they need on first use: a virtualenv here, and (as root) Docker,
# kind and the air-gapped node image, cached under ~/.cache/chaoskit.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORTS := reports

.PHONY: experiments test lint cluster down venv

experiments: cluster
	@mkdir -p $(REPORTS)
	$(BIN)/pytest experiments/ --junitxml=$(REPORTS)/experiments.xml --chaos-report-dir=$(REPORTS) $(PYTEST_ARGS)

test: lint cluster
	@mkdir -p $(REPORTS)
	$(BIN)/pytest tests/ --junitxml=$(REPORTS)/tests.xml

lint: venv
	$(BIN)/ruff check chaoskit tests fixtures experiments benchmarks conftest.py
	$(BIN)/ruff format --check chaoskit tests fixtures experiments benchmarks conftest.py
	$(BIN)/mypy

cluster: venv
	$(BIN)/chaoskit cluster up

down: venv
	$(BIN)/chaoskit cluster down

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@
