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

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaoskit import parallel, summary, targets
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import INJECTORS
from chaoskit.adapters.portforward import port_forward
from chaoskit.baseline import Baseline, load_shape, selected, shape_of, write_baseline
from chaoskit.chaos import Chaos
from chaoskit.cluster import PROVIDERS, Cluster, ClusterSpec, choose_provider, get_provider
from chaoskit.cluster.base import KUBERNETES_ENV, NAME_ENV, parse_node_ports
from chaoskit.errors import ChaoskitError, FaultUndoFailed, FaultUnsupported, FaultVetoed, UsageError
from chaoskit.evidence import pod_logs
from chaoskit.experiment import Experiment, ExperimentSpec, Prometheus, Workload
from chaoskit.faults.base import Fault, FaultHooks, FaultRecord, Safety
from chaoskit.faults.sweeper import undo_entry
from chaoskit.load import LoadSpec
from chaoskit.load.runner import set_default_processes
from chaoskit.namespaces import (
    DEFAULT_POD_SECURITY,
    POD_SECURITY_LEVELS,
    check_pod_security,
    own_namespace,
)
from chaoskit.prometheus import PrometheusClient, deploy_prometheus, remove_prometheus
from chaoskit.prometheus.deploy import NAMESPACE as PROMETHEUS_NAMESPACE
from chaoskit.provision.versions import DEFAULT_LINE, LINES
from chaoskit.report import write_reports
from chaoskit.results import ExperimentResult, Judgement, Regressed, figures, repeat_stats, unsupported
from chaoskit.session import Session, open_session
from chaoskit.slo import Objective, SloViolation
from chaoskit.state.ledger import Ledger


@dataclass(frozen=True)
class _Setting:
    """One option of the plugin: ``--chaos-<name>`` on the command line, ``chaos_<name>`` in the ini file."""

    name: str
    help: str
    kind: str = "string"
    """``string``, ``int``, ``float``, ``bool`` or ``list`` (repeatable)."""
    default: Any = None
    metavar: str | None = None
    env: str | None = None
    """The environment variable that sets it when neither the command line nor the ini file does."""

    @property
    def flag(self) -> str:
        return f"--chaos-{self.name}"

    @property
    def dest(self) -> str:
        return f"chaos_{self.name.replace('-', '_')}"


_SETTINGS = (
    _Setting(
        "provider",
        f"cluster provider: {', '.join(PROVIDERS)} (default: existing when --chaos-kube-context or "
        "--chaos-kubeconfig is given, else kind)",
    ),
    _Setting(
        "cluster-name", f"kind cluster name (default: ${NAME_ENV}, else chaoskit)", default="chaoskit", env=NAME_ENV
    ),
    _Setting("workers", "kind worker nodes (default: 2)", "int", 2),
    _Setting(
        "kubernetes",
        f"the Kubernetes line of the kind cluster a session creates: {', '.join(LINES)} (default: "
        f"${KUBERNETES_ENV}, else {DEFAULT_LINE})",
        metavar="LINE",
        env=KUBERNETES_ENV,
    ),
    _Setting("node-image", "force a kind node image"),
    _Setting("kube-context", "kubeconfig context (existing provider)"),
    _Setting("kubeconfig", "kubeconfig file (existing provider)"),
    _Setting(
        "node-ports",
        "existing provider: the cluster's NodePorts the host reaches on 127.0.0.1, as FIRST-LAST (a tunnel, or a "
        "kind cluster's port mappings; default none)",
        metavar="FIRST-LAST",
    ),
    _Setting("keep-cluster", "keep a cluster this session created (default: delete it)", "bool", False),
    _Setting("dry-run", "plan faults and report them; inject nothing", "bool", False),
    _Setting(
        "injector",
        "how faults reach nodes: docker (kind only) or agent, the in-cluster injector, installed if needed "
        "(default: docker on kind, agent elsewhere)",
        metavar="docker|agent",
    ),
    _Setting(
        "agent-image",
        "the injector agent's image for a cluster that is not kind (pushed to a registry it pulls from)",
        metavar="IMAGE",
    ),
    _Setting("allow-context", "allow faults in this non-kind context (repeatable)", "list", (), metavar="CONTEXT"),
    _Setting(
        "allow-namespace",
        "allow faults in this protected namespace, such as kube-system (repeatable)",
        "list",
        (),
        metavar="NAMESPACE",
    ),
    _Setting(
        "pod-security",
        f"the Pod Security level test namespaces enforce: {', '.join(POD_SECURITY_LEVELS)} (no label: the "
        f"cluster's default); a test's chaos_pod_security marker overrides it (default: {DEFAULT_POD_SECURITY})",
        default=DEFAULT_POD_SECURITY,
        metavar="LEVEL",
    ),
    _Setting("allow-control-plane", "allow node faults (drain, failure) on control-plane nodes", "bool", False),
    _Setting(
        "allow-target",
        "allow load and Prometheus queries to this host beyond 127.0.0.1 (HOST or HOST:PORT, repeatable)",
        "list",
        (),
        metavar="HOST[:PORT]",
    ),
    _Setting(
        "repeat",
        "run each experiment N times and report the spread of its recovery times (default: 1)",
        "int",
        1,
        metavar="N",
    ),
    _Setting(
        "baseline",
        "compare each experiment's figures with earlier runs' (a journal, a baseline file, or a directory of "
        "them): a figure worse than the baseline allows fails it as a regression",
        metavar="PATH",
    ),
    _Setting(
        "baseline-figures",
        "judge only these figures against the baseline: names (recovery_s), windows (whole) or kinds (p99_ms), "
        "comma-separated (default: all)",
        metavar="NAME,...",
    ),
    _Setting("baseline-write", "write this session's figures as a baseline file for later runs", metavar="PATH"),
    _Setting(
        "prometheus-url",
        "use this Prometheus (the cluster's own, port-forwarded or allowed with --chaos-allow-target) instead of "
        "deploying chaoskit's",
        metavar="URL",
    ),
    _Setting(
        "report-dir",
        "where experiments write chaoskit-journal.json and chaoskit-report.html (default: reports)",
        default="reports",
    ),
    _Setting(
        "load-workers",
        "load worker processes per load whose spec sets no processes (default: 1; one core each)",
        "int",
        1,
        metavar="N",
    ),
    _Setting("max-share", "largest share of matching pods or nodes one fault may touch (default: 0.5)", "float", 0.5),
    _Setting(
        "share-nodes",
        "let faults that stay inside their pods act on a node while another run's fault does (pytest -n "
        "workers, a game day beside a test run); node-wide faults always hold their nodes alone",
        "bool",
        False,
    ),
)
_BY_NAME = {s.name: s for s in _SETTINGS}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from chaoskit import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaoskit", "chaos and resilience testing")
    for setting in _SETTINGS:
        names = [setting.flag]  # prefixed only: another plugin's --kubeconfig or --workers is its own
        ini_help = f"{setting.help} (the ini twin of {setting.flag})"
        if setting.kind == "bool":
            group.addoption(*names, dest=setting.dest, action="store_true", default=None, help=setting.help)
            parser.addini(setting.dest, ini_help, type="bool", default=setting.default)
        elif setting.kind == "list":
            group.addoption(
                *names, dest=setting.dest, action="append", default=None, metavar=setting.metavar, help=setting.help
            )
            parser.addini(setting.dest, ini_help, type="linelist", default=list(setting.default))
        else:
            convert = {"int": int, "float": float}.get(setting.kind, str)
            group.addoption(
                *names, dest=setting.dest, type=convert, default=None, metavar=setting.metavar, help=setting.help
            )
            parser.addini(setting.dest, ini_help, type="string", default="")


def setting(config: pytest.Config, name: str) -> Any:
    """An option's value: the command line's, else the ini file's (``chaos_<name>``), else its default."""
    spec = _BY_NAME[name]
    given = config.getoption(spec.dest)
    if given is not None:
        return tuple(given) if spec.kind == "list" else given
    ini = config.getini(spec.dest)
    if spec.env and ini in ("", None) and os.environ.get(spec.env):
        ini = os.environ[spec.env]
    if spec.kind == "bool":
        return bool(ini)
    if spec.kind == "list":
        return tuple(ini)
    if ini in ("", None):
        return spec.default
    try:
        return {"int": int, "float": float}.get(spec.kind, str)(ini)
    except ValueError:
        raise pytest.UsageError(
            f"ini option {spec.dest} = {ini!r} is not a{'n' if spec.kind == 'int' else ''} {spec.kind}"
        ) from None


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
    set_default_processes(setting(config, "load-workers"))
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
    except ChaoskitError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_RESULTS] = []
    config.stash[_STARTED] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if not parallel.is_worker(config):
        config.pluginmanager.register(_Controller(config), "chaoskit-controller")


_SPEC = pytest.StashKey[ClusterSpec]()
_SAFETY = pytest.StashKey[Safety]()
_RESULTS = pytest.StashKey[list[ExperimentResult]]()
_STARTED = pytest.StashKey[str]()
"""When the session started, in UTC: the night its baseline file is of."""
_BASELINE = pytest.StashKey[Baseline | None]()


PLUGIN_FLAGS = ("--chaos-provider", "--chaos-kube-context", "--chaos-kubeconfig")


def _spec(config: pytest.Config, provider: str) -> ClusterSpec:
    kubeconfig = setting(config, "kubeconfig")
    ports = setting(config, "node-ports")
    return ClusterSpec(
        reachable_node_ports=parse_node_ports(ports, "--chaos-node-ports") if ports else (),
        provider=provider,
        name=setting(config, "cluster-name"),
        workers=setting(config, "workers"),
        node_image=setting(config, "node-image"),
        kubernetes=setting(config, "kubernetes"),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=setting(config, "kube-context"),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    repeat: int = setting(metafunc.config, "repeat")
    if repeat > 1 and "chaos_repeat_index" in metafunc.fixturenames:
        metafunc.parametrize(
            "chaos_repeat_index", range(repeat), indirect=True, ids=[f"run{i + 1}of{repeat}" for i in range(repeat)]
        )


REPEAT_ID = re.compile(r"run\d+of\d+")


def repeat_group(name: str) -> str:
    """A test's name without its ``--chaos-repeat`` id: the runs of one experiment share it (and are judged
    together: passed k of n, flaky), while variants of a parametrized test (``[graceful]``, ``[crash]``) stay
    apart."""
    base, bracket, rest = name.partition("[")
    if not bracket:
        return name
    ids = [part for part in rest.removesuffix("]").split("-") if not REPEAT_ID.fullmatch(part)]
    return f"{base}[{'-'.join(ids)}]" if ids else base


@pytest.fixture
def chaos_repeat_index(request: pytest.FixtureRequest) -> int:
    """Which of the ``--chaos-repeat`` runs of an experiment this is (0 when it runs once)."""
    index: int = getattr(request, "param", 0)
    return index


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chaoskit_cluster" in getattr(item, "fixturenames", ()):  # every chaoskit fixture on a cluster needs it
            item.add_marker(pytest.mark.cluster)


_SESSION = pytest.StashKey[Session]()


def session_of(config: pytest.Config) -> Session:
    """The pytest session's chaoskit session (:func:`chaoskit.session.open_session`), opened on first use: the
    ``cluster`` fixture and the items of ``*.chaos.yaml`` files share it. A cluster it created is deleted when
    the pytest session ends."""
    if _SESSION in config.stash:
        return config.stash[_SESSION]
    spec = config.stash[_SPEC]
    # Progress lines (and how a reused cluster differs from the options) reach the terminal,
    # not the capture of whichever test happens to set the session up.
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        session = open_session(
            spec,
            injector=setting(config, "injector"),
            agent_image=setting(config, "agent-image"),
            safety=config.stash[_SAFETY],
            loud=capture.global_and_fixture_disabled if capture else nullcontext,
        )
    except FaultUndoFailed as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except ChaoskitError as exc:
        raise pytest.fail.Exception(f"no cluster: {exc}", pytrace=False) from None  # one line, no chain
    config.stash[_SESSION] = session
    config.add_cleanup(session.close)
    if session.cluster.created and not setting(config, "keep-cluster"):
        if parallel.is_worker(config):
            parallel.created_cluster(config)  # the controller deletes it once every worker is done
        else:
            config.add_cleanup(lambda: delete_cluster(spec))
    return session


def session_cluster(config: pytest.Config) -> Cluster:
    """The session's cluster (see :func:`session_of`)."""
    return session_of(config).cluster


def delete_cluster(spec: ClusterSpec) -> None:
    """Delete the cluster this session created, and its ledger: its faults went with it."""
    get_provider(spec.provider, provision=False, recreate=False).down(spec)
    Ledger(spec.name).clear()


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


def pod_security_of(request: pytest.FixtureRequest) -> str:
    """The Pod Security level a test's namespaces enforce: its ``chaos_pod_security`` marker's (the closest:
    test, class, module), else the session's setting."""
    marker = request.node.get_closest_marker("chaos_pod_security")
    if marker is None:
        return str(setting(request.config, "pod-security"))
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        raise pytest.UsageError(
            f"{request.node.nodeid}: chaos_pod_security takes one level, one of {', '.join(POD_SECURITY_LEVELS)}"
        )
    try:
        return check_pod_security(marker.args[0])
    except UsageError as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: chaos_pod_security: {exc}") from None


class PluginHooks(FaultHooks):
    """Each step of every fault, as the ``pytest_chaoskit_fault_*`` hooks (:mod:`chaoskit.hookspecs`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.hook = config.hook

    def planned(self, record: FaultRecord) -> str | None:
        answers = self.hook.pytest_chaoskit_fault_planned(record=record)
        reasons = [a for a in answers if isinstance(a, str) and a]
        if reasons:
            return "; ".join(reasons)
        if any(a is False for a in answers):
            return "a pytest_chaoskit_fault_planned hook returned False (return a string to say why)"
        return None

    def injected(self, record: FaultRecord) -> None:
        self.hook.pytest_chaoskit_fault_injected(record=record)

    def undone(self, record: FaultRecord) -> None:
        self.hook.pytest_chaoskit_fault_undone(record=record)


class PytestChaos(Chaos):
    """Chaos for tests: a fault this cluster cannot run, or one a hook vetoed, skips the test with the reason."""

    @contextmanager
    def _active(self, fault: Fault, max_share: float | None = None) -> Iterator[FaultRecord]:
        try:
            with super()._active(fault, max_share) as record:
                yield record
        except (FaultUnsupported, FaultVetoed) as exc:  # raised while planning, before anything is injected
            pytest.skip(str(exc))


@pytest.fixture
def chaoskit_chaos(pytestconfig: pytest.Config, chaoskit_cluster: Cluster, chaoskit_kube: Kube) -> Iterator[Chaos]:
    """Faults and recovery watches for one test.

    When the test ends, its own faults (by id, whatever process runs it) that
    are still in the ledger are undone and proven undone: one the test left
    injected fails it; one whose undo could not be proven (during the test or
    now) is an error of the test, naming what is left for ``chaoskit cleanup``.
    """
    handle = session_of(pytestconfig).chaos(PluginHooks(pytestconfig), PytestChaos)
    yield handle
    check_faults_undone(chaoskit_cluster, chaoskit_kube, handle)


def check_faults_undone(cluster: Cluster, kube: Kube, handle: Chaos) -> None:
    """At the end of a test: undo (and prove) its own faults still in the ledger; fail the test for one it
    left injected, or whose undo was not proven."""
    ledger = Ledger(cluster.name)
    mine = [e for e in ledger.unsettled() if e.fault_id in handle.fault_ids]
    unproven = {r.fault_id: r.undo_error for r in handle.records if r.undo_error}
    left: list[str] = []
    still: list[str] = []
    for entry in mine:
        how, text = undo_entry(cluster, kube, ledger, entry)
        if how == "failed":
            still.append(text)
        elif entry.fault_id not in unproven:
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
            f"{'; '.join(str(u) for u in unproven.values())}",
            pytrace=False,
        )
    if left:
        pytest.fail(f"the test left faults injected (now undone): {', '.join(left)}")


@pytest.fixture(scope="session")
def chaoskit_prometheus(
    pytestconfig: pytest.Config, chaoskit_cluster: Cluster, chaoskit_kube: Kube
) -> Iterator[PrometheusClient]:
    """Prometheus in the cluster (namespace ``chaoskit-monitoring``, ``chaoskit-monitoring-gw0``... under
    ``pytest -n``), scraping annotated pods every second
    and the kubelets; a client for it on 127.0.0.1. Removed when the session ends. With
    ``--chaos-prometheus-url`` the Prometheus there instead: nothing is deployed or removed."""
    url = setting(pytestconfig, "prometheus-url")
    if url:  # the cluster's own: nothing deployed, nothing removed
        try:
            client = PrometheusClient(url)
            client.check_reachable(within=10.0)
        except ChaoskitError as exc:
            pytest.fail(f"--chaos-prometheus-url {url}: {exc}", pytrace=False)
        with client:
            yield client
        return
    worker = parallel.worker_id(pytestconfig)
    namespace = f"{PROMETHEUS_NAMESPACE}-{worker}" if worker else PROMETHEUS_NAMESPACE  # one per pytest -n worker
    try:
        deployment = deploy_prometheus(chaoskit_kube, chaoskit_cluster, namespace)
    except ChaoskitError as exc:
        pytest.fail(f"no Prometheus: {exc}", pytrace=False)
    with deployment.client() as client:
        yield client
    remove_prometheus(chaoskit_kube, deployment.namespace)


def reporter(config: pytest.Config, item: pytest.Item, kube: Kube | None = None) -> Callable[[ExperimentResult], None]:
    """What happens to an experiment's result in a session: the baseline's judgement, the hook, the session's
    reports (the controller's, under ``pytest -n``), and the headline numbers as the test's JUnit properties."""
    directory = Path(setting(config, "report-dir"))
    baseline = config.stash.get(_BASELINE, None)

    def report(result: ExperimentResult) -> None:
        worker = parallel.worker_id(config)
        result.runner = f"{worker} (pid {os.getpid()})" if worker else f"pid {os.getpid()}"
        xfail = item.get_closest_marker("xfail")
        if xfail is not None:
            result.expected_failure = str(xfail.kwargs.get("reason") or "marked xfail")
        result.shape = run_shape(config, result)
        if baseline is not None:
            result.judgements = judge(baseline, result, setting(config, "repeat"))
            result.regressions = [j for j in result.judgements if j.regressed]
            if result.regressions and not result.logs and kube is not None:
                result.logs = pod_logs(kube, result.involved_pods)  # a regressed run explains itself too
        group = {} if parallel.is_worker(config) else keep(config, result)
        config.hook.pytest_chaoskit_experiment_result(result=result)
        # What record_property does, without its warning under junit_family xunit2: the XML writer
        # puts a test's user_properties into its <properties> whatever the family.
        properties = {"chaoskit_outcome": result.outcome, **result.properties(), **group}
        properties |= {
            "chaoskit_journal": str(directory / "chaoskit-journal.json"),
            "chaoskit_report": str(directory / "chaoskit-report.html"),
        }
        item.user_properties.extend(properties.items())
        if parallel.is_worker(config):
            parallel.ship(item, result)  # the controller keeps it with the other workers' and writes the reports

    return report


def run_shape(config: pytest.Config, result: ExperimentResult) -> dict[str, Any]:
    """How the run was run: the experiments beside it (``pytest -n``), the repeat, its load and the cluster's
    Kubernetes version."""
    shape: dict[str, Any] = {"workers": parallel.workers(config), "repeat": setting(config, "repeat")}
    if isinstance(result.load.get("spec"), dict):
        shape["load"] = load_shape(result.load["spec"])
    if result.kubernetes:
        shape["kubernetes"] = result.kubernetes
    return shape


def judge(baseline: Baseline, result: ExperimentResult, repeat: int = 1) -> list[Judgement]:
    """One run of an experiment run ``repeat`` times against the baseline: each figure it measured, and the
    percentiles it measured over too few requests, said as not judged."""
    requests = {s.window: s.requests for s in result.verdict.stats}
    judged = baseline.judge_run(result.group, figures(result), shape_of(result), requests, repeated=repeat)
    left = [
        Judgement(result.group, figure, (), (), "not judged", rule=why)
        for figure, why in unsupported(result).items()
        if selected(baseline.judged, figure)
    ]
    return judged + left


def keep(config: pytest.Config, result: ExperimentResult) -> dict[str, str]:
    """Add ``result`` to the session's results and write the reports again. The last run of a repeated
    experiment judges the group against the baseline; returns the group's JUnit properties then."""
    results = config.stash[_RESULTS]
    baseline = config.stash.get(_BASELINE, None)
    repeat = setting(config, "repeat")
    group = [r for r in results if r.group == result.group] + [result]
    properties: dict[str, str] = {}
    if len(group) == repeat > 1:
        if baseline is not None:  # all of them against the baseline, if enough
            fewest: dict[str, int] = {}
            for run in group:  # availability's resolution in requests: the fewest any run had
                for window in run.verdict.stats:
                    fewest[window.window] = min(fewest.get(window.window, window.requests), window.requests)
            together = baseline.judge_night(result.group, [figures(r) for r in group], shape_of(result), fewest)
            result.judgements += together
            result.regressions += [j for j in together if j.regressed]
        (stats,) = repeat_stats(group)
        properties = {"chaoskit_runs_passed": f"{stats.passed}/{stats.runs}", "chaoskit_flaky": str(stats.flaky)}
    results.append(result)
    write_reports(results, Path(setting(config, "report-dir")), history=baseline)
    return properties


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if call.excinfo is not None and isinstance(call.excinfo.value, Regressed | SloViolation):
        # The verdict says what failed and by how much: no test source, traceback or result repr around it.
        report.longrepr = str(call.excinfo.value)
    if call.when == "teardown" and parallel.is_worker(item.config):
        parallel.attach(item, report)


class _Controller:
    """Under ``pytest -n``, in the controller: keeps the results the workers send and reports them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.created_by_worker = False

    @pytest.hookimpl(tryfirst=True)  # before the JUnit writer reads the report's properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for result in parallel.received(report):
            passed_before = result.outcome == "passed"
            group = keep(self.config, result)
            report.user_properties.extend(group.items())
            if passed_before and result.regressions and report.passed:  # its group regressed, judged here
                report.outcome = "failed"
                report.longrepr = "\n".join(r.line() for r in result.regressions)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return parallel.scheduler(config, log) if config.getvalue("dist") == "load" else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if getattr(node, "workeroutput", {}).get(parallel.CREATED):
            self.created_by_worker = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        if self.created_by_worker and not setting(self.config, "keep-cluster"):
            delete_cluster(self.config.stash[_SPEC])


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
    """``kubectl port-forward`` for a test: ``with chaoskit_port_forward("shop", "service/web", 80) as port:``
    serves the Service's port (one ready pod behind it) on ``127.0.0.1:port`` while the block runs, through the
    API server; for clusters whose Services the host cannot reach on a NodePort (see
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


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results or parallel.is_worker(config):
        return
    terminalreporter.section("chaoskit experiments")
    terminalreporter.line(summary.header(results))
    for block in summary.blocks(results):
        colour = {"PASSED": "green", "FLAKY": "yellow", "SKIPPED": "yellow"}.get(block.verdict, "red")
        for i, text in enumerate(block.lines):
            terminalreporter.line(text, **({colour: True} if i == 0 else {}))
    baseline = config.stash.get(_BASELINE, None)
    if baseline is not None:
        regressed = sum(1 for r in results if r.regressions)
        terminalreporter.line(
            f"baseline: {len(baseline.sources)} file(s) from {setting(config, 'baseline')} "
            f"({len(baseline.runs)} runs over {len(baseline.nights())} nights); "
            f"{regressed} of {len(results)} run(s) regressed"
        )
    written = setting(config, "baseline-write")
    if written:
        night = config.stash[_STARTED]
        terminalreporter.line(f"baseline written: {write_baseline(results, Path(written), night)}")
    directory = Path(setting(config, "report-dir"))
    terminalreporter.line(f"reports: {directory / 'chaoskit-report.html'}, {directory / 'chaoskit-journal.json'}")


# --- experiment files (*.chaos.yaml) as test items ------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(".chaos.yaml"):
        return ChaosFile.from_parent(parent, path=file_path)
    return None


class ChaosFile(pytest.File):
    """An experiment file: one test item, or one per run under ``--chaos-repeat N`` (``name[run2of3]``, the
    ids a Python experiment gets), checked when collected (a bad file is a collection error)."""

    def collect(self) -> Iterator[pytest.Item]:
        from chaoskit.gameday.spec import load_experiment

        try:
            experiment = load_experiment(self.path)
            experiment.check_safety(self.config.stash[_SAFETY])  # refused at collection, before any deploy
        except ChaoskitError as exc:
            raise self.CollectError(str(exc)) from None
        repeat: int = setting(self.config, "repeat")
        if repeat == 1:
            yield ChaosItem.from_parent(self, name=experiment.name, experiment=experiment)
            return
        for i in range(repeat):  # the runs share the experiment's name, so its results group as one
            yield ChaosItem.from_parent(self, name=f"{experiment.name}[run{i + 1}of{repeat}]", experiment=experiment)


class ExperimentFailed(AssertionError):
    """An experiment file's run did not pass: the verdict says why."""


class ChaosItem(pytest.Item):
    """One experiment file run as a test: the same runner as ``chaoskit run``, the session's cluster,
    safety rules, hooks and reports."""

    def __init__(self, *, experiment: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.add_marker(pytest.mark.cluster)

    def runtest(self) -> None:
        from chaoskit.gameday.runner import GameDay
        from chaoskit.gameday.view import LineView

        config = self.config
        cluster = session_cluster(config)
        with cluster.kube() as kube:
            chaos = PytestChaos(cluster, kube, config.stash[_SAFETY], PluginHooks(config))
            url = setting(config, "prometheus-url") or self.experiment.prometheus_url  # the session's wins
            prometheus = PrometheusClient(url) if url else None  # else the run deploys its own when it needs one
            game = GameDay(
                self.experiment, cluster, kube, chaos, prometheus=prometheus, on_result=[reporter(config, self, kube)]
            )
            try:
                result = game.run(LineView())
            finally:
                check_faults_undone(cluster, kube, chaos)
        if result.outcome == "skipped":
            pytest.skip(result.skipped or "skipped")
        if result.outcome != "passed":
            raise ExperimentFailed(
                f"{result.headline()}\n{result.verdict.explain()}" + (f"\n{result.error}" if result.error else "")
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ExperimentFailed | ChaoskitError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"experiment file {self.path.name}: {self.name}"
