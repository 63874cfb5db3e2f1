# The two commands a newcomer runs (see README.md):
#   make experiments   cluster up, then pytest experiments/ with its reports in reports/
#   make test          lint, cluster up, then the whole test suite (the unit tests on two processes, then
#                      the real-cluster tests in one: on 2 cores, two workers took as long, see
#                      docs/figures.md), then the fault tests again through the existing provider and the
#                      injector agent
# Both install what they need on first use: a virtualenv here, and (as root) Docker,
# kind and the air-gapped node image (Kubernetes 1.37 from Go modules), cached under ~/.cache/chaoskit.
# make test prints the cluster's Kubernetes version and the node's own kubectl version before the suite, and
# installs what the suite alone needs (chromium, tmux) where they are missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPORTS := reports

.PHONY: experiments test lint cluster down venv bench

experiments: cluster
	@mkdir -p $(REPORTS)
	$(BIN)/pytest experiments/ --junitxml=$(REPORTS)/experiments.xml --chaos-report-dir=$(REPORTS) $(PYTEST_ARGS)

# The fault tests run again with the kind cluster taken as a foreign one (the existing provider: no Docker
# path at all, faults through the injector agent; those through the API alone are the same there, and left
# out); the crash matrix of the faults that enter pods runs again
# through the agent (SIGTERM on every kind there and SIGKILL on one, SIGINT and SIGKILL on every kind through
# Docker: SIGINT and SIGTERM unwind by one path, see signals_for in tests/cluster/test_fault_residue.py).
FAULT_TESTS := tests/cluster/test_pod_faults.py tests/cluster/test_process_freeze.py tests/cluster/test_faults.py \
	tests/cluster/test_dns_faults.py tests/cluster/test_http_faults.py tests/cluster/test_stress.py \
	tests/cluster/test_disk_fill.py tests/cluster/test_pod_crash.py
CLUSTER = $${CHAOSKIT_CLUSTER:-chaoskit}
KIND_KUBECONFIG = $${CHAOSKIT_CACHE:-$$HOME/.cache/chaoskit}/clusters/$(CLUSTER)/kubeconfig

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

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@
