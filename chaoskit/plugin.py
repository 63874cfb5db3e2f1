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

import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from chaoskit.adapters.kube import Kube
from chaoskit.chaos import Chaos
from chaoskit.cluster import PROVIDERS, Cluster, ClusterSpec, get_provider
from chaoskit.errors import ChaoskitError, FaultUndoFailed, FaultUnsupported
from chaoskit.experiment import Experiment, ExperimentSpec, Prometheus, Workload
from chaoskit.faults import signals
from chaoskit.faults.base import Fault, FaultRecord, Safety, undo_and_prove
from chaoskit.faults.ledger import Ledger
from chaoskit.faults.sweeper import sweep
from chaoskit.load import LoadSpec
from chaoskit.namespaces import owned_namespace, sweep_namespaces
from chaoskit.prometheus import PrometheusClient, deploy_prometheus, remove_prometheus
from chaoskit.report import ExperimentResult, repeat_stats, write_reports
from chaoskit.slo import Objective


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
    group.addoption("--chaos-dry-run", action="store_true", help="plan faults and report them; inject nothing")
    group.addoption(
        "--chaos-allow-context",
        action="append",
        default=[],
        metavar="CONTEXT",
        help="allow faults in this non-kind context (repeatable)",
    )
    group.addoption(
        "--chaos-allow-namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="allow faults in this protected namespace, such as kube-system (repeatable)",
    )
    group.addoption(
        "--chaos-allow-control-plane",
        action="store_true",
        help="allow node faults (drain, failure) on control-plane nodes",
    )
    group.addoption(
        "--chaos-repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each experiment N times and report the spread of its recovery times (default: 1)",
    )
    group.addoption(
        "--chaos-report-dir",
        default="reports",
        help="where experiments write chaoskit-journal.json and chaoskit-report.html (default: reports)",
    )
    group.addoption(
        "--chaos-max-share",
        type=float,
        default=0.5,
        help="largest share of matching pods or nodes one fault may touch (default: 0.5)",
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
    if config.getoption("--chaos-repeat") < 1:
        raise pytest.UsageError(f"--chaos-repeat must be 1 or more, not {config.getoption('--chaos-repeat')}")
    try:
        config.stash[_SPEC] = _spec(config)
        config.stash[_SAFETY] = Safety(
            allowed_contexts=tuple(config.getoption("--chaos-allow-context")),
            allowed_namespaces=tuple(config.getoption("--chaos-allow-namespace")),
            allow_control_plane=config.getoption("--chaos-allow-control-plane"),
            max_share=config.getoption("--chaos-max-share"),
            dry_run=config.getoption("--chaos-dry-run"),
        )
    except ChaoskitError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_RESULTS] = []
    signals.install()


_SPEC = pytest.StashKey[ClusterSpec]()
_SAFETY = pytest.StashKey[Safety]()
_RESULTS = pytest.StashKey[list[ExperimentResult]]()


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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat: int = metafunc.config.getoption("--chaos-repeat")
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
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A ready cluster for the whole session.

    A running cluster is used as it is, never deleted or recreated: it is not this
    session's. One that differs from the options says so in one line; an unhealthy
    one fails the session with the ``chaoskit cluster up`` command that fixes it.
    """
    spec = pytestconfig.stash[_SPEC]
    provider = get_provider(spec.provider, provision=False, recreate=False)
    # Progress lines (and how a reused cluster differs from the options) reach the terminal,
    # not the capture of whichever test happens to set the session up.
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    try:
        with capture.global_and_fixture_disabled() if capture else nullcontext():
            handle = provider.up(spec)
    except ChaoskitError as exc:
        raise pytest.fail.Exception(f"no cluster: {exc}", pytrace=False) from None  # one line, no chain
    with handle.kube() as kube:
        sweep_namespaces(kube)
        result = sweep(handle, kube)
    if result.failed:
        pytest.fail(f"faults left by an earlier run could not be undone: {'; '.join(result.failed)}", pytrace=False)
    yield handle
    if handle.created and not pytestconfig.getoption("--keep-cluster"):
        provider.down(spec)
        Ledger(handle.name).clear()  # its faults went with it


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[Kube]:
    """API clients (``.core``, ``.apps``, ``.api_client``) for the session's cluster."""
    with cluster.kube() as handle:
        yield handle


@pytest.fixture(scope="session")
def cluster_image(pytestconfig: pytest.Config, cluster: Cluster) -> Callable[[str | Path], str]:
    """``cluster_image(source) -> image name``: your own image, on every node of the cluster.

    ``source`` is a directory holding a Dockerfile (a ``Path``, or a string that
    is a directory or is written as a path), built on chaoskit's base image
    (``ARG BASE`` then ``FROM $BASE``), or the name of a local image. Each is
    built and loaded once per session; pods use the returned name with
    ``imagePullPolicy: IfNotPresent`` (or ``Never``). A failure fails the test
    with one line.
    """
    from chaoskit.images import ClusterImages

    images = ClusterImages(cluster)
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
def namespace(request: pytest.FixtureRequest, kube: Kube) -> Iterator[str]:
    """A namespace of this test's own, deleted when the test ends."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-") or "test"
    name = f"ck-{base}-{uuid.uuid4().hex[:5]}"
    body: Any = owned_namespace(name)
    kube.core.create_namespace(body)
    kube.wait_for_default_service_account(name)
    yield name
    kube.core.delete_namespace(name, propagation_policy="Background", grace_period_seconds=0)


class PytestChaos(Chaos):
    """Chaos for tests: a fault this cluster cannot run skips the test with the reason."""

    @contextmanager
    def _active(self, fault: Fault, max_share: float | None = None) -> Iterator[FaultRecord]:
        try:
            with super()._active(fault, max_share) as record:
                yield record
        except FaultUnsupported as exc:  # raised while planning, before anything is injected
            pytest.skip(str(exc))


@pytest.fixture
def chaos(pytestconfig: pytest.Config, cluster: Cluster, kube: Kube) -> Iterator[Chaos]:
    """Faults and recovery watches for one test.

    When the test ends, its own faults (by id, whatever process runs it) that
    are still in the ledger are undone and proven undone: one the test left
    injected fails it; one whose undo could not be proven (during the test or
    now) is an error of the test, naming what is left for ``chaoskit cleanup``.
    """
    handle = PytestChaos(cluster, kube, pytestconfig.stash[_SAFETY])
    yield handle
    ledger = Ledger(cluster.name)
    mine = [e for e in ledger.unsettled() if e.fault_id in handle.fault_ids]
    unproven = {r.fault_id: r.undo_error for r in handle.records if r.undo_error}
    left: list[str] = []
    still: list[str] = []
    for entry in mine:
        with signals.deferred(f"undoing {entry.fault_id}"):
            try:
                undo_and_prove(Fault.registry[entry.kind], cluster, kube, entry.fault_id, entry.undo)
            except FaultUndoFailed as exc:
                still.append(str(exc))
                continue
            ledger.settle(entry.fault_id)
        if entry.fault_id not in unproven:
            left.append(entry.fault_id)
    if still:
        pytest.fail(
            f"faults of this test are NOT undone: {'; '.join(still)}; run 'chaoskit cleanup --name {cluster.name}' "
            "once the cause is fixed",
            pytrace=False,
        )
    if unproven:
        pytest.fail(
            f"the undo of this test's faults could not be proven when they ended (undone since): "
            f"{'; '.join(unproven.values())}",
            pytrace=False,
        )
    if left:
        pytest.fail(f"the test left faults injected (now undone): {', '.join(left)}")


@pytest.fixture(scope="session")
def prometheus(cluster: Cluster, kube: Kube) -> Iterator[PrometheusClient]:
    """Prometheus in the cluster (namespace ``chaoskit-monitoring``), scraping annotated pods every second
    and the kubelets; a client for it on 127.0.0.1. Removed when the session ends."""
    try:
        deployment = deploy_prometheus(kube, cluster)
    except ChaoskitError as exc:
        pytest.fail(f"no Prometheus: {exc}", pytrace=False)
    with deployment.client() as client:
        yield client
    remove_prometheus(kube, deployment.namespace)


@pytest.fixture
def experiment(
    request: pytest.FixtureRequest,
    pytestconfig: pytest.Config,
    chaos: Chaos,
    chaos_repeat_index: int,
) -> Callable[..., Experiment]:
    """Make an experiment bound to this test's ``chaos``; its result is reported when it ends."""
    results = pytestconfig.stash[_RESULTS]
    directory = Path(pytestconfig.getoption("--chaos-report-dir"))

    def report(result: ExperimentResult) -> None:
        results.append(result)
        journal, html = write_reports(results, directory)
        # What record_property does, without its warning under junit_family xunit2: the XML writer
        # puts a test's user_properties into its <properties> whatever the family.
        properties = {"chaoskit_outcome": result.outcome, **result.properties()}
        properties |= {"chaoskit_journal": str(journal), "chaoskit_report": str(html)}
        request.node.user_properties.extend(properties.items())

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
            chaos,
            prometheus=prometheus,
            on_result=[report],
            skip_exceptions=(FaultUnsupported, pytest.skip.Exception),
            group=name or getattr(request.node, "originalname", request.node.name),
        )

    return make


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    terminalreporter.section("chaoskit experiments")
    for result in results:
        terminalreporter.line(
            result.headline(), red=result.outcome in ("failed", "error"), green=result.outcome == "passed"
        )
    for stats in repeat_stats(results):
        terminalreporter.line(stats.line())
    directory = Path(config.getoption("--chaos-report-dir"))
    terminalreporter.line(f"reports: {directory / 'chaoskit-report.html'}, {directory / 'chaoskit-journal.json'}")
