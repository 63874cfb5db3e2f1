"""The plugin's options (``--chaos-<name>`` on the command line, ``chaos_<name>`` in the ini file) and what
a session keeps in pytest's stash."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaoskit.adapters.rate import ApiRate
from chaoskit.baseline import Baseline
from chaoskit.cluster import PROVIDERS, ClusterSpec
from chaoskit.cluster.base import KUBERNETES_ENV, NAME_ENV, parse_node_ports
from chaoskit.errors import UsageError
from chaoskit.faults.safety import Safety
from chaoskit.namespaces import (
    DEFAULT_POD_SECURITY,
    POD_SECURITY_LEVELS,
)
from chaoskit.prometheus.service import PrometheusService
from chaoskit.provision.versions import DEFAULT_LINE, LINES
from chaoskit.results import ExperimentResult
from chaoskit.session import Session


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
        "kube-qps",
        "API requests a second each of chaoskit's clients may make on average (default: 50)",
        "float",
        metavar="QPS",
    ),
    _Setting("kube-burst", "API requests each client may make at once (default: 100)", "int", metavar="N"),
    _Setting(
        "node-ports",
        "kind: the NodePorts a cluster this session creates publishes on 127.0.0.1 (default 30080-30089; a "
        "running cluster keeps its own); existing provider: the cluster's NodePorts the host reaches on 127.0.0.1 "
        "(a tunnel, or a kind cluster's port mappings; default none), as FIRST-LAST",
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
        "prometheus-rules",
        "a Prometheus rules file (alerting and recording rules) the Prometheus chaoskit deploys evaluates every "
        "second, for AlertFires and AlertResolves objectives",
        metavar="FILE",
    ),
    _Setting(
        "prometheus-service",
        "use the cluster's own Prometheus through a port-forward to its Service, NAMESPACE/SERVICE:PORT (e.g. "
        "monitoring/prometheus-k8s:9090), instead of deploying chaoskit's",
        metavar="NS/SVC:PORT",
    ),
    _Setting(
        "report-dir",
        "where experiments write chaoskit-journal.json and chaoskit-report.html (default: reports)",
        default="reports",
    ),
    _Setting(
        "load-workers",
        "Locust workers (under one master) for every load whose spec sets none (default: 1, no master)",
        "int",
        1,
        metavar="N",
    ),
    _Setting(
        "grafana-url",
        "annotate each fault in this Grafana, from injection to undo (token: $CHAOSKIT_GRAFANA_TOKEN; 127.0.0.1, "
        "a port-forward, or a host allowed with --chaos-allow-target)",
        metavar="URL",
        env="CHAOSKIT_GRAFANA_URL",
    ),
    _Setting(
        "log-level",
        "chaoskit's progress lines from this level up: debug (each host command too), info, warning or error "
        "(default: info; they show with -s or in a failed test's captured stderr)",
        default="info",
        metavar="LEVEL",
        env="CHAOSKIT_LOG_LEVEL",
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


def prometheus_service(config: pytest.Config) -> PrometheusService | None:
    """``--chaos-prometheus-service`` parsed (None when not given); a bad one, or one beside
    ``--chaos-prometheus-url``, is a UsageError naming the option."""
    given = setting(config, "prometheus-service")
    if not given:
        return None
    if setting(config, "prometheus-url"):
        raise UsageError("--chaos-prometheus-url and --chaos-prometheus-service are both given: name one Prometheus")
    return PrometheusService.parse(given, "--chaos-prometheus-service")


_SPEC = pytest.StashKey[ClusterSpec]()
_SAFETY = pytest.StashKey[Safety]()
_RESULTS = pytest.StashKey[list[ExperimentResult]]()
_STARTED = pytest.StashKey[str]()
"""When the session started, in UTC: the night its baseline file is of."""
_BASELINE = pytest.StashKey[Baseline | None]()


PLUGIN_FLAGS = ("--chaos-provider", "--chaos-kube-context", "--chaos-kubeconfig")


_SESSION = pytest.StashKey[Session]()


def _spec(config: pytest.Config, provider: str) -> ClusterSpec:
    kubeconfig = setting(config, "kubeconfig")
    given = setting(config, "node-ports")
    ports = parse_node_ports(given, "--chaos-node-ports") if given else None
    return ClusterSpec(
        **({"node_ports": ports} if provider == "kind" and ports is not None else {}),
        reachable_node_ports=ports if provider != "kind" and ports is not None else (),
        provider=provider,
        name=setting(config, "cluster-name"),
        workers=setting(config, "workers"),
        node_image=setting(config, "node-image"),
        kubernetes=setting(config, "kubernetes"),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=setting(config, "kube-context"),
        api_rate=ApiRate.given(setting(config, "kube-qps"), setting(config, "kube-burst")),
    )
