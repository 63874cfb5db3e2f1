"""The chaoskit pytest plugin: cluster options, markers and fixtures.

Registered through the ``pytest11`` entry point. It stays thin: the work is in
:mod:`chaoskit.cluster`. Fixtures:

* ``cluster`` (session): a ready cluster. A running one is reused; one this
  session created is deleted at the end unless ``--keep-cluster`` is given.
* ``kube`` (session): API clients bound to that cluster.
* ``namespace`` (function): a fresh namespace for one test, deleted on
  teardown. Namespaces left by a killed session are deleted when the next one
  starts.

Tests that use ``cluster`` are marked ``cluster`` automatically, so
``-m "not cluster"`` selects the tests that need no cluster.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoskit.adapters.kube import Kube
from chaoskit.cluster import PROVIDERS, Cluster, ClusterSpec, get_provider
from chaoskit.errors import ChaoskitError

NAMESPACE_LABEL = "chaoskit.io/test-namespace"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaoskit", "chaos and resilience testing")
    group.addoption(
        "--chaos-provider", default="kind", help=f"cluster provider: {', '.join(PROVIDERS)} (default: kind)"
    )
    group.addoption("--cluster-name", default="chaoskit", help="kind cluster name (default: chaoskit)")
    group.addoption("--workers", type=int, default=2, help="kind worker nodes (default: 2)")
    group.addoption("--node-image", default=None, help="force a kind node image")
    group.addoption("--kube-context", default=None, help="kubeconfig context (existing provider)")
    group.addoption("--kubeconfig", default=None, help="kubeconfig file (existing provider)")
    group.addoption(
        "--keep-cluster", action="store_true", help="keep a cluster this session created (default: delete it)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a real Kubernetes cluster")
    provider = config.getoption("--chaos-provider")
    if provider not in PROVIDERS:
        raise pytest.UsageError(
            f"--chaos-provider={provider!r} is unknown: use one of {', '.join(PROVIDERS)} "
            "(for example --chaos-provider=kind)"
        )
    if provider == "existing" and config.getoption("--kube-context") is None:
        raise pytest.UsageError(
            "--chaos-provider=existing needs --kube-context=NAME (see 'kubectl config get-contexts')"
        )
    try:
        config.stash[_SPEC] = _spec(config)
    except ChaoskitError as exc:
        raise pytest.UsageError(str(exc)) from None


_SPEC = pytest.StashKey[ClusterSpec]()


def _spec(config: pytest.Config) -> ClusterSpec:
    kubeconfig = config.getoption("--kubeconfig")
    return ClusterSpec(
        provider=config.getoption("--chaos-provider"),
        name=config.getoption("--cluster-name"),
        workers=config.getoption("--workers"),
        node_image=config.getoption("--node-image"),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=config.getoption("--kube-context"),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A ready cluster for the whole session."""
    spec = pytestconfig.stash[_SPEC]
    provider = get_provider(spec.provider, provision=False)
    try:
        handle = provider.up(spec)
    except ChaoskitError as exc:
        pytest.fail(f"no cluster: {exc}", pytrace=False)
    with handle.kube() as kube:
        _sweep_namespaces(kube)
    yield handle
    if handle.created and not pytestconfig.getoption("--keep-cluster"):
        provider.down(spec)


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[Kube]:
    """API clients (``.core``, ``.apps``, ``.api_client``) for the session's cluster."""
    with cluster.kube() as handle:
        yield handle


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube: Kube) -> Iterator[str]:
    """A namespace of this test's own, deleted when the test ends."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    name = f"ck-{base}-{uuid.uuid4().hex[:5]}"
    body: Any = {"metadata": {"name": name, "labels": {NAMESPACE_LABEL: "true"}}}
    kube.core.create_namespace(body)
    yield name
    kube.core.delete_namespace(name, propagation_policy="Background", grace_period_seconds=0)


def _sweep_namespaces(kube: Kube) -> None:
    leftovers: list[Any] = kube.core.list_namespace(label_selector=NAMESPACE_LABEL).items
    for ns in leftovers:
        if ns.status.phase != "Terminating":
            kube.core.delete_namespace(ns.metadata.name, propagation_policy="Background")
