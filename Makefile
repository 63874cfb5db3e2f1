# The two commands a newcomer runs (see README.md):
#   make experiments   cluster up, then pytest experiments/ with its reports in reports/
#   make test          lint while two clusters come up, then the whole test suite: the unit tests on two
#                      processes, then the real-cluster tests in two lanes side by side, one per cluster
#                      (tests/lanes.sh: the second lane also runs the fault tests through the existing
#                      provider and the agent's crash matrix)
# Both install what they need on first use: a virtualenv here, and (as root) Docker,
# kind and the air-gapped node image (Kubernetes 1.37 from Go modules), cached under ~/.cache/chaoskit.
# make test prints the cluster's Kubernetes version and the node's own kubectl version before the suite, and
# installs what the suite alone needs (chromium, tmux) where they are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORTS := reports

.PHONY: experiments test lint cluster clusters down venv bench

experiments: cluster
	@mkdir -p $(REPORTS)
	$(BIN)/pytest experiments/ --junitxml=$(REPORTS)/experiments.xml --chaos-report-dir=$(REPORTS) $(PYTEST_ARGS)

CLUSTER = $${CHAOSKIT_CLUSTER:-chaoskit}
# The second cluster, for the second lane of the cluster tests (tests/lanes.sh), with NodePorts 30090-30099.
CLUSTER_B = $(CLUSTER)-gw1
SIDE_BY_SIDE = $(MAKE) --no-print-directory -j2 --output-sync=target

test: venv
	@mkdir -p $(REPORTS)
	$(SIDE_BY_SIDE) lint clusters
	$(BIN)/chaoskit cluster status
	docker exec $(CLUSTER)-control-plane kubectl --kubeconfig /etc/kubernetes/admin.conf version
	$(BIN)/python -m chaoskit.provision.host test-tools
	$(BIN)/pytest tests/unit -n 2 --junitxml=$(REPORTS)/tests-unit.xml
	BIN=$(BIN) REPORTS=$(REPORTS) CLUSTER_B=$(CLUSTER_B) tests/lanes.sh

# make test's two clusters, beside the lint: the first as make cluster brings it up, then the second.
clusters: cluster
	$(BIN)/chaoskit cluster up --name $(CLUSTER_B) --node-ports 30090-30099

# The figures docs/figures.md quotes, each min / median / max with the load average and its command; the
# scaling benchmark needs the cluster. Not part of make test: figures are printed, never asserted.
bench: cluster
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check chaoskit tests fixtures experiments benchmarks conftest.py
	$(BIN)/ruff format --check chaoskit tests fixtures experiments benchmarks conftest.py
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

cluster: venv
	$(BIN)/chaoskit cluster up

down: venv
	$(BIN)/chaoskit cluster down
	$(BIN)/chaoskit cluster down --name $(CLUSTER_B)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@
