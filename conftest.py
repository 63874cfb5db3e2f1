"""The systems under test as pytest fixtures, for the cluster tests and the experiments alike.

Each is deployed into the test's own namespace (the plugin's ``namespace``
fixture) and goes with it. Their images are built from ``fixtures/`` and
loaded into the cluster once per session."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from systems import ShopSystem, deploy_redis, deploy_shop
from workloads import Web, client_running, deploy_web, web_whole_again

from chaoskit.cluster import Cluster
from chaoskit.namespaces import own_namespace
from chaoskit.plugin import pod_security_of
from chaoskit.provision.userimages import build_fixture_image

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def loaded_image(cluster: Cluster, name: str) -> str:
    """Build (or reuse) the image of ``fixtures/<name>`` and load it into the cluster's nodes.

    A cluster of the ``existing`` provider cannot be loaded into: there the image must be on the nodes
    already (the project's own run through that provider uses the kind cluster a kind session loaded)."""
    image = build_fixture_image(FIXTURES / name)
    if cluster.is_kind:
        cluster.load_image(image)
    return image


@pytest.fixture(scope="session")
def web_image(cluster: Cluster) -> str:
    return loaded_image(cluster, "web")


@pytest.fixture
def web(request: pytest.FixtureRequest, cluster: Cluster, kube, web_image: str) -> Web:  # type: ignore[no-untyped-def]
    """The web tier: 3 replicas behind a NodePort Service published on 127.0.0.1, at least 2 kept by a PDB.

    In the test's own namespace; in a module marked ``shared_web``, the module's one tier (``module_web``),
    taken whole again for each test."""
    if request.node.get_closest_marker("shared_web"):
        shared: Web = request.getfixturevalue("module_web")
        return web_whole_again(kube, shared)
    namespace = request.getfixturevalue("namespace")
    return deploy_web(kube, namespace, web_image, cluster.free_node_port(kube), min_available=2)


@pytest.fixture(scope="module")
def module_web(request: pytest.FixtureRequest, cluster: Cluster, kube, web_image: str) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    """One web tier for a module whose tests each inject a fault and undo it (``shared_web``): deploying
    a tier of its own cost each test 5-7 s."""
    base = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with own_namespace(cluster, kube, base, pod_security_of(request)) as ns:
        yield deploy_web(kube, ns, web_image, cluster.free_node_port(kube), min_available=2)


@pytest.fixture
def client(kube, web: Web) -> str:  # type: ignore[no-untyped-def]
    """A pod beside the web pods to probe from (it has the probe script and nothing running); in a shared
    tier, made again if a drain of a test before evicted it."""
    return client_running(kube, web)


@pytest.fixture(scope="session")
def redis_image(cluster: Cluster) -> str:
    return loaded_image(cluster, "redis")


@pytest.fixture(scope="session")
def shop_image(cluster: Cluster) -> str:
    return loaded_image(cluster, "shop")


@pytest.fixture
def shop(cluster: Cluster, kube, namespace: str, redis_image: str, shop_image: str) -> Iterator[ShopSystem]:  # type: ignore[no-untyped-def]
    """The stateful system: Redis (1 master, 2 replicas) with 3 Sentinels, and 3 shop pods writing to it,
    the shop on a 127.0.0.1 NodePort (see fixtures/systems.py)."""
    deploy_redis(kube, namespace, redis_image)
    yield deploy_shop(kube, namespace, shop_image, cluster.free_node_port(kube))


def pytest_configure(config: pytest.Config) -> None:
    """A session started in the background (``nohup``, ``&``) inherits SIGINT ignored, and so would every run
    it starts: the tests that stop a run with SIGINT, as Ctrl-C does, need SIGINT's default there. (xdist's
    workers ignore it on purpose, and are left so.)"""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and "PYTEST_XDIST_WORKER" not in os.environ:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The experiment files under tests/unit/data are inputs of the loader's unit tests, not experiments to run.
collect_ignore_glob = ["tests/unit/data/*"]
