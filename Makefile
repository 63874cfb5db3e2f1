# The two commands a newcomer runs (see README.md):
#   make experiments   cluster up, then pytest experiments/ with its reports in reports/
#   make test          lint, cluster up, then the whole test suite (the unit tests on two processes, then
#                      the real-cluster tests in one), then the fault tests again through the existing
#                      provider and the injector agent. make test-lanes runs the cluster tests in two lanes
#                      on two clusters (tests/lanes.sh), for machines with more than 2 cores
# Both install what they need on first use: a virtualenv here, and (as root) Docker,
# kind and the air-gapped node image (Kubernetes 1.37 from Go modules), cached under ~/.cache/chaoskit.
# make test prints the cluster's Kubernetes version and the node's own kubectl version before the suite, and
# installs what the suite alone needs (chromium, tmux) where they are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORTS := reports

.PHONY: experiments test test-lanes lint cluster clusters down venv bench

experiments: cluster
	@mkdir -p $(REPORTS)
	$(BIN)/pytest experiments/ --junitxml=$(REPORTS)/experiments.xml --chaos-report-dir=$(REPORTS) $(PYTEST_ARGS)

CLUSTER = $${CHAOSKIT_CLUSTER:-chaoskit}
# The second cluster, for the second lane of the cluster tests (tests/lanes.sh), with NodePorts 30090-30099.
CLUSTER_B = $(CLUSTER)-gw1
SIDE_BY_SIDE = $(MAKE) --no-print-directory -j2 --output-sync=target

FAULT_TESTS := tests/cluster/test_pod_faults.py tests/cluster/test_process_freeze.py tests/cluster/test_faults.py \
	tests/cluster/test_dns_faults.py tests/cluster/test_http_faults.py tests/cluster/test_stress.py \
	tests/cluster/test_disk_fill.py tests/cluster/test_pod_crash.py
KIND_KUBECONFIG = $${CHAOSKIT_CACHE:-$$HOME/.cache/chaoskit}/clusters/$(CLUSTER)/kubeconfig

# In one process on one cluster: the two lanes (test-lanes) took 46 min here with a timing test failing beside
# the other lane (docs/figures.md), so on 2 cores make test stays serial.
test: lint cluster
	@mkdir -p $(REPORTS)
	$(BIN)/chaoskit cluster status
	docker exec $(CLUSTER)-control-plane kubectl --kubeconfig /etc/kubernetes/admin.conf version
	$(BIN)/python -m chaoskit.provision.host test-tools
	$(BIN)/pytest tests/unit -n 2 --junitxml=$(REPORTS)/tests-unit.xml
	$(BIN)/pytest tests/cluster --junitxml=$(REPORTS)/tests.xml --durations=30
	$(BIN)/pytest tests/cluster/test_fault_residue.py --chaos-injector agent \
		-k "zero_residue and not node" --junitxml=$(REPORTS)/tests-agent-crash.xml
	$(BIN)/pytest $(FAULT_TESTS) -m "not api_only" --chaos-provider existing --chaos-kube-context kind-$(CLUSTER) \
		--chaos-kubeconfig "$(KIND_KUBECONFIG)" --chaos-allow-context kind-$(CLUSTER) --chaos-node-ports 30080-30089 \
		--junitxml=$(REPORTS)/tests-existing.xml

# The same suite in two lanes on two clusters (tests/lanes.sh), for a machine with more cores than this one.
test-lanes: venv
	@mkdir -p $(REPORTS)
	$(SIDE_BY_SIDE) lint clusters
	$(BIN)/python -m chaoskit.provision.host test-tools
	$(BIN)/pytest tests/unit -n 2 --junitxml=$(REPORTS)/tests-unit.xml
	BIN=$(BIN) REPORTS=$(REPORTS) CLUSTER_B=$(CLUSTER_B) tests/lanes.sh

# make test-lanes' two clusters, beside the lint: the first as make cluster brings it up, then the second.
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
