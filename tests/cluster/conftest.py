"""The cluster tests on pytest-xdist workers (``pytest tests/cluster -n 2 --dist loadfile``): one kind cluster per
worker; and the order that puts the tests judging timings last (:data:`LATE`). ``make test`` runs two lanes of its
own on two clusters instead (tests/lanes.sh), which lets it place each file where it costs least.

Worker ``gw0`` uses the session's cluster (``--chaos-cluster-name``, else ``$CHAOSKIT_CLUSTER``, else
``chaoskit``). Worker ``gwN`` uses its own, named ``<that name>-gwN``, which publishes NodePorts 10 x N above
the default ones (``gw1``: 30090-30099). A worker brings its own up where it is missing, and the controller
deletes what the workers created (unless ``--chaos-keep-cluster``).

Why a cluster each rather than turns on one: most of these tests count residue over the whole cluster, stop
nodes, or undo every run's faults (``chaoskit abort``, ``cleanup``), so on one cluster 78 of 148 needed it alone
and two workers were no faster than one. Two clusters share no node, no ledger and no lock, so every test runs
beside any other; what they share is this machine's CPU.

The worker's cluster name goes into ``$CHAOSKIT_CLUSTER`` too, so the ``chaoskit`` commands and inner pytest
runs a test starts reach the same cluster. The existing-provider pass (``--chaos-kube-context``) names its
cluster itself and is left alone."""

from __future__ import annotations

import os

import pytest

from chaoskit import parallel
from chaoskit.cluster.base import DEFAULT_NODE_PORTS, NAME_ENV

PORTS_PER_WORKER = 10


def worker_cluster(base: str, worker: str) -> tuple[str, str]:
    """The cluster name and the NodePorts (``FIRST-LAST``) of xdist worker ``worker`` (``gw1``...)."""
    index = int(worker.removeprefix("gw"))
    first = DEFAULT_NODE_PORTS[0] + PORTS_PER_WORKER * index
    return f"{base}-{worker}", f"{first}-{first + PORTS_PER_WORKER - 1}"


@pytest.hookimpl(tryfirst=True)  # before chaoskit's plugin reads the cluster's name and ports
def pytest_configure(config: pytest.Config) -> None:
    worker = parallel.worker_id(config)
    if worker in (None, "gw0") or config.getoption("chaos_kube_context") or config.getoption("chaos_kubeconfig"):
        return
    base = config.getoption("chaos_cluster_name") or os.environ.get(NAME_ENV) or "chaoskit"
    name, ports = worker_cluster(base, str(worker))
    os.environ[NAME_ENV] = name
    config.option.chaos_cluster_name = name
    config.option.chaos_node_ports = ports


LATE = (
    "test_nightly.py",
    "test_lifecycle.py",
    "test_stop_and_abort.py",
    "test_experiment.py",
    "test_parallel.py",
    "test_systems.py",
)
"""Files whose tests judge timings (recoveries against objectives, nights against a baseline, a stop condition's
reaction, a cluster's creation within its timeout): they run last, so that in ``make test`` they run once the
other lane (tests/lanes.sh) has finished and the machine's two cores are theirs."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name in LATE)  # stable: the order within each part stays
