"""The chaoskit pytest plugin: cluster options, markers and fixtures.

Registered through the ``pytest11`` entry point. It stays thin: the work is in
:mod:`chaoskit.cluster`. Fixtures:

* ``cluster`` (session): a ready cluster. A running one is used as it is, never
  deleted or recreated; one this session created is deleted at the end unless
  ``--keep-cluster`` is given.
* ``kube`` (session): API clients bound to that cluster.
* ``cluster_image`` (session): ``cluster_image(directory_or_image)`` builds a
  directory with a Dockerfile (or takes a local image name), loads it into
  every node once per session and returns the name to put in a manifest.
* ``namespace`` (function): a fresh namespace for one test, deleted on
  teardown. Namespaces left by a killed session are deleted when the next one
  starts.
* ``chaos`` (function): faults (``chaos.pod_kill``, ``chaos.node_failure``) and
  recovery watches bound to the cluster, under the session's safety rules. A
  test that ends with a fault still injected fails, and the fault is undone.
* ``prometheus`` (session): Prometheus deployed in the cluster and a client
  for it, for PromQL objectives; removed at the end of the session.
* ``experiment`` (function): ``experiment(load, objectives, workload)``
  gives an :class:`~chaoskit.experiment.Experiment` bound to the test's
  ``chaos``; its verdict goes into the session's JSON journal and HTML report
  (``--chaos-report-dir``), into the JUnit XML as properties, and into the
  terminal summary.

SIGTERM unwinds the session like Ctrl-C, so faults are undone; faults left by a
SIGKILLed run are undone by the sweeper when the next session starts.

Tests that use ``cluster`` are marked ``cluster`` automatically, so
``-m "not cluster"`` selects the tests that need no cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path
from typing import Any

import pytest

from chaoskit import parallel, targets
from chaoskit.adapters import shell
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import INJECTORS
from chaoskit.adapters.portforward import port_forward
from chaoskit.baseline import Baseline
from chaoskit.chaos import Chaos
from chaoskit.cluster import Cluster, choose_provider
from chaoskit.errors import ChaoskitError, FaultUnsupported, FaultVetoed, UsageError
from chaoskit.experiment import Experiment, ExperimentSpec, Prometheus, Workload
from chaoskit.faults.safety import Safety
from chaoskit.grafana import check_url as check_grafana_url
from chaoskit.load import LoadSpec
from chaoskit.load.runner import set_default_workers
from chaoskit.namespaces import (
    check_pod_security,
    own_namespace,
)
from chaoskit.plugin.files import ChaosFile, ChaosItem, ExperimentFailed, pytest_collect_file
from chaoskit.plugin.options import (
    _BASELINE,
    _RESULTS,
    _SAFETY,
    _SESSION,
    _SPEC,
    _STARTED,
    PLUGIN_FLAGS,
    _spec,
    prometheus_service,
    pytest_addoption,
    setting,
)
from chaoskit.plugin.results import (
    _Controller,
    judge,
    keep,
    pytest_runtest_makereport,
    pytest_terminal_summary,
    reporter,
    run_shape,
)
from chaoskit.plugin.runs import (
    REPEAT_ID,
    PluginHooks,
    PytestChaos,
    check_faults_undone,
    delete_cluster,
    plugin_hooks,
    pod_security_of,
    repeat_group,
    session_cluster,
    session_of,
)
from chaoskit.prometheus import PrometheusClient, deploy_prometheus, remove_prometheus
from chaoskit.prometheus.deploy import NAMESPACE as PROMETHEUS_NAMESPACE
from chaoskit.prometheus.service import reach_prometheus
from chaoskit.slo import Objective

__all__ = [  # the hooks and helpers the submodules hold, kept here for pytest (which reads this module) and users
    "PLUGIN_FLAGS",
    "REPEAT_ID",
    "_BASELINE",
    "_RESULTS",
    "_SAFETY",
    "_SESSION",
    "_SPEC",
    "_STARTED",
    "ChaosFile",
    "ChaosItem",
    "ExperimentFailed",
    "PluginHooks",
    "PytestChaos",
    "_Controller",
    "_spec",
    "check_faults_undone",
    "delete_cluster",
    "judge",
    "keep",
    "pod_security_of",
    "pytest_addoption",
    "pytest_collect_file",
    "pytest_runtest_makereport",
    "pytest_terminal_summary",
    "repeat_group",
    "reporter",
    "run_shape",
    "session_cluster",
    "session_of",
    "setting",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from chaoskit import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a real Kubernetes cluster")
    config.addinivalue_line(
        "markers",
        "chaos_node_wide: the test injects node-wide faults (found by itself in the test's code); under "
        "pytest -n such tests run in turn on one worker",
    )
    config.addinivalue_line(
        "markers",
        "chaos_pod_security(level): the Pod Security level the test's namespace enforces (privileged, baseline, "
        "restricted or none), for a system under test that needs more than --chaos-pod-security allows",
    )
    try:
        check_pod_security(setting(config, "pod-security"))
    except UsageError as exc:
        raise pytest.UsageError(f"--chaos-pod-security: {exc}") from None
    try:
        shell.set_level(setting(config, "log-level"))
    except ValueError as exc:
        raise pytest.UsageError(f"--chaos-log-level: {exc}") from None
    try:
        provider = choose_provider(
            setting(config, "provider"), setting(config, "kube-context"), setting(config, "kubeconfig"), PLUGIN_FLAGS
        )
    except ChaoskitError as exc:
        raise pytest.UsageError(str(exc)) from None
    if provider == "existing" and setting(config, "kube-context") is None:
        raise pytest.UsageError(
            "an existing cluster needs --chaos-kube-context=NAME (see 'kubectl config get-contexts')"
        )
    if setting(config, "repeat") < 1:
        raise pytest.UsageError(f"--chaos-repeat must be 1 or more, not {setting(config, 'repeat')}")
    injector_choice = setting(config, "injector")
    if injector_choice is not None and injector_choice not in INJECTORS:
        raise pytest.UsageError(f"--chaos-injector={injector_choice!r} is unknown: use docker or agent")
    if setting(config, "load-workers") < 1:
        raise pytest.UsageError(f"--chaos-load-workers must be 1 or more, not {setting(config, 'load-workers')}")
    set_default_workers(setting(config, "load-workers"))
    try:
        targets.allow(setting(config, "allow-target"))
        config.stash[_SPEC] = _spec(config, provider)
        baseline = setting(config, "baseline")
        judged = [n.strip() for n in (setting(config, "baseline-figures") or "").split(",") if n.strip()]
        config.stash[_BASELINE] = Baseline.load(Path(baseline), judged) if baseline else None
        config.stash[_SAFETY] = Safety(
            allowed_contexts=setting(config, "allow-context"),
            allowed_namespaces=setting(config, "allow-namespace"),
            allow_control_plane=setting(config, "allow-control-plane"),
            max_share=setting(config, "max-share"),
            dry_run=setting(config, "dry-run"),
            share_nodes=setting(config, "share-nodes"),
            front_end="pytest",
        )
        prometheus_service(config)  # a bad one is refused now, not when the first experiment asks
        if setting(config, "grafana-url"):
            check_grafana_url(setting(config, "grafana-url"))  # refused now, not at a fault's injection
    except ChaoskitError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_RESULTS] = []
    config.stash[_STARTED] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if not parallel.is_worker(config):
        config.pluginmanager.register(_Controller(config), "chaoskit-controller")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat: int = setting(metafunc.config, "repeat")
    if repeat > 1 and "chaos_repeat_index" in metafunc.fixturenames:
        metafunc.parametrize(
            "chaos_repeat_index", range(repeat), indirect=True, ids=[f"run{i + 1}of{repeat}" for i in range(repeat)]
        )


@pytest.fixture
def chaos_repeat_index(request: pytest.FixtureRequest) -> int:
    """Which of the ``--chaos-repeat`` runs of an experiment this is (0 when it runs once)."""
    index: int = getattr(request, "param", 0)
    return index


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chaoskit_cluster" in getattr(item, "fixturenames", ()):  # every chaoskit fixture on a cluster needs it
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def chaoskit_cluster(pytestconfig: pytest.Config) -> Cluster:
    """A ready cluster for the whole session (also ``cluster``, unless a fixture of yours has that name).

    A running cluster is used as it is, never deleted or recreated: it is not this
    session's. One that differs from the options says so in one line; an unhealthy
    one fails the session with the ``chaoskit cluster up`` command that fixes it.
    """
    return session_cluster(pytestconfig)


@pytest.fixture(scope="session")
def chaoskit_kube(pytestconfig: pytest.Config, chaoskit_cluster: Cluster) -> Kube:
    """API clients (``.core``, ``.apps``, ``.api_client``) for the session's cluster (also ``kube``)."""
    return session_of(pytestconfig).kube


@pytest.fixture(scope="session")
def chaoskit_cluster_image(pytestconfig: pytest.Config, chaoskit_cluster: Cluster) -> Callable[[str | Path], str]:
    """``cluster_image(source) -> image name``: your own image, on every node of the cluster (also
    ``cluster_image``).

    ``source`` is a directory holding a Dockerfile (a ``Path``, or a string that
    is a directory or is written as a path), built on chaoskit's base image
    (``ARG BASE`` then ``FROM $BASE``), or the name of a local image. Each is
    built and loaded once per session; pods use the returned name with
    ``imagePullPolicy: IfNotPresent`` (or ``Never``). A failure fails the test
    with one line.
    """
    from chaoskit.images import ClusterImages

    images = ClusterImages(chaoskit_cluster)
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def image(source: str | Path) -> str:
        try:
            # A build can take a minute: its progress lines reach the terminal, as the cluster's do.
            with capture.global_and_fixture_disabled() if capture else nullcontext():
                return images(source)
        except ChaoskitError as exc:
            raise pytest.fail.Exception(f"cluster_image({str(source)!r}): {exc}", pytrace=False) from None

    return image


@pytest.fixture
def chaoskit_namespace(request: pytest.FixtureRequest, chaoskit_cluster: Cluster, chaoskit_kube: Kube) -> Iterator[str]:
    """A namespace of this test's own, deleted when the test ends (also ``namespace``). It enforces the Pod
    Security level of the test's ``chaos_pod_security`` marker, else of ``--chaos-pod-security``."""
    with own_namespace(chaoskit_cluster, chaoskit_kube, request.node.name, pod_security_of(request)) as name:
        yield name


@pytest.fixture
def chaoskit_chaos(pytestconfig: pytest.Config, chaoskit_cluster: Cluster, chaoskit_kube: Kube) -> Iterator[Chaos]:
    """Faults and recovery watches for one test.

    When the test ends, its own faults (by id, whatever process runs it) that
    are still in the ledger are undone and proven undone: one the test left
    injected fails it; one whose undo could not be proven (during the test or
    now) is an error of the test, naming what is left for ``chaoskit cleanup``.
    """
    handle = session_of(pytestconfig).chaos(plugin_hooks(pytestconfig), PytestChaos)
    yield handle
    check_faults_undone(chaoskit_cluster, chaoskit_kube, handle)


@pytest.fixture(scope="session")
def chaoskit_prometheus(
    pytestconfig: pytest.Config, chaoskit_cluster: Cluster, chaoskit_kube: Kube
) -> Iterator[PrometheusClient]:
    """Prometheus in the cluster (namespace ``chaoskit-monitoring``, ``chaoskit-monitoring-gw0``... under
    ``pytest -n``), scraping annotated pods every second
    and the kubelets; a client for it on 127.0.0.1. Removed when the session ends. With
    ``--chaos-prometheus-url`` the Prometheus there instead, or with ``--chaos-prometheus-service`` the one behind
    that Service, through a port-forward: nothing is deployed or removed. ``--chaos-prometheus-rules FILE``: the
    alerting rules the deployed one evaluates (the user's own Prometheus has its own)."""
    url = setting(pytestconfig, "prometheus-url")
    service = prometheus_service(pytestconfig)
    if url or service:  # the cluster's own: nothing deployed, nothing removed
        option = f"--chaos-prometheus-url {url}" if url else f"--chaos-prometheus-service {service}"
        with ExitStack() as stack:
            try:
                client = stack.enter_context(reach_prometheus(chaoskit_kube, url, service))
            except ChaoskitError as exc:
                pytest.fail(f"{option}: {exc}", pytrace=False)
            assert client is not None
            yield client
        return
    worker = parallel.worker_id(pytestconfig)
    namespace = f"{PROMETHEUS_NAMESPACE}-{worker}" if worker else PROMETHEUS_NAMESPACE  # one per pytest -n worker
    rules_file = setting(pytestconfig, "prometheus-rules")
    try:
        rules = Path(rules_file).read_text() if rules_file else None
    except OSError as exc:
        pytest.fail(f"--chaos-prometheus-rules {rules_file}: {exc.strerror}", pytrace=False)
    try:
        deployment = deploy_prometheus(chaoskit_kube, chaoskit_cluster, namespace, rules=rules)
    except ChaoskitError as exc:
        pytest.fail(f"no Prometheus: {exc}", pytrace=False)
    with deployment.client() as client:
        yield client
    remove_prometheus(chaoskit_kube, deployment.namespace)


@pytest.fixture
def chaoskit_experiment(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    chaoskit_chaos: Chaos,
    chaos_repeat_index: int,
) -> Callable[..., Experiment]:
    """Make an experiment bound to this test's ``chaos``; its result is reported when it ends."""
    report = reporter(pytestconfig, request.node, chaoskit_chaos.kube)

    def make(
        load: LoadSpec,
        objectives: Sequence[Objective] = (),
        workload: Workload | None = None,
        name: str | None = None,
        prometheus: Prometheus | None = None,
        **options: Any,
    ) -> Experiment:
        spec = ExperimentSpec(name or request.node.name, load, tuple(objectives), workload, **options)
        return Experiment(
            spec,
            chaoskit_chaos,
            prometheus=prometheus,
            on_result=[report],
            skip_exceptions=(FaultUnsupported, FaultVetoed, pytest.skip.Exception),
            group=name or repeat_group(request.node.name),
        )

    return make


@pytest.fixture(scope="session")
def chaoskit_port_forward(chaoskit_kube: Kube) -> Callable[[str, str, int], AbstractContextManager[int]]:
    """A port-forward for a test: ``with chaoskit_port_forward("shop", "service/web", 80) as port:`` serves the
    Service's port on ``127.0.0.1:port`` while the block runs, through the API server, each new connection to
    the next ready pod behind it; for clusters whose Services the host cannot reach on a NodePort (see
    :mod:`chaoskit.adapters.portforward` for what it does not model)."""

    def forward(namespace: str, target: str, port: int) -> AbstractContextManager[int]:
        return port_forward(chaoskit_kube, namespace, target, port)

    return forward


# The short names, for tests that have no fixture of their own by those names. Each is the prefixed fixture
# itself, and chaoskit's own fixtures depend only on the prefixed names: a conftest's own ``cluster`` or
# ``namespace`` replaces the short name for its tests and nothing else.


@pytest.fixture(scope="session")
def cluster(chaoskit_cluster: Cluster) -> Cluster:
    """``chaoskit_cluster``."""
    return chaoskit_cluster


@pytest.fixture(scope="session")
def kube(chaoskit_kube: Kube) -> Kube:
    """``chaoskit_kube``."""
    return chaoskit_kube


@pytest.fixture(scope="session")
def cluster_image(chaoskit_cluster_image: Callable[[str | Path], str]) -> Callable[[str | Path], str]:
    """``chaoskit_cluster_image``."""
    return chaoskit_cluster_image


@pytest.fixture
def namespace(chaoskit_namespace: str) -> str:
    """``chaoskit_namespace``."""
    return chaoskit_namespace


@pytest.fixture
def chaos(chaoskit_chaos: Chaos) -> Chaos:
    """``chaoskit_chaos``."""
    return chaoskit_chaos


@pytest.fixture(scope="session")
def prometheus(chaoskit_prometheus: PrometheusClient) -> PrometheusClient:
    """``chaoskit_prometheus``."""
    return chaoskit_prometheus


@pytest.fixture
def experiment(chaoskit_experiment: Callable[..., Experiment]) -> Callable[..., Experiment]:
    """``chaoskit_experiment``."""
    return chaoskit_experiment
