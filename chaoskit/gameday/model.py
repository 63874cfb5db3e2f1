"""What an experiment file becomes: the frozen objects a run reads, the names of its fault kinds and
their options, and the placeholders (``${namespace}``, ``${node_port}``). The loader that builds them is
:mod:`chaoskit.gameday.spec`."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from chaoskit.adapters.status import WorkloadKind
from chaoskit.chaos import Chaos
from chaoskit.errors import ChaoskitError, SpecError
from chaoskit.experiment import Workload
from chaoskit.faults import FaultRecord, Safety
from chaoskit.faults.catalog import CATALOG
from chaoskit.load import LoadSpec
from chaoskit.prometheus.service import PrometheusService
from chaoskit.slo import Objective, PromQL
from chaoskit.stops import PromQLAbove, StopCondition

SCHEMA_FILE = "chaoskit-experiment.schema.json"
"""The schema's file name, in this package and in the repository's ``schema/``."""
SUFFIX = ".chaos.yaml"
"""What an experiment file's name ends with; the rest is its default name."""
AUTO = "auto"
"""``namespace: auto``: a fresh namespace of the run's own (needs ``deploy``)."""
NAMESPACE_PLACEHOLDER = "${namespace}"
"""The run's namespace, where it is not known yet (manifests; defaults under ``namespace: auto``)."""
NODE_PORT_PLACEHOLDER = "${node_port}"
"""The NodePort the run gives the deployed system (manifests and ``load.host``)."""
DEFAULT_HOST = "http://127.0.0.1:" + NODE_PORT_PLACEHOLDER
"""``load.host`` when the file gives none."""
FORWARD_PORT_PLACEHOLDER = "${port_forward}"
"""The local port of the run's port-forward (``load.port_forward``), filled in by :meth:`ExperimentFile.load_spec`;
not a placeholder a file may write."""
FORWARD_HOST = "http://127.0.0.1:" + FORWARD_PORT_PLACEHOLDER
"""``load.host`` when the file loads through ``load.port_forward``."""
CHECK_NODE_PORT = 30080
"""The port put in for ``${node_port}`` when a file is checked, before the run knows the real one."""
UNTIL_RECOVERED = "until_recovered"
"""A fault's ``duration`` that holds it until the workloads are whole again."""
DEFAULT_SETTLE_SECONDS = 5.0

FAULT_KINDS: Mapping[str, str] = MappingProxyType({kind.name: kind.method for kind in CATALOG})
"""A fault's ``kind`` in a file, and the :class:`~chaoskit.chaos.Chaos` method that injects it (from the catalog)."""

FAULT_SPECS: Mapping[str, type] = MappingProxyType({kind.name: kind.spec for kind in CATALOG})
"""The spec each method builds from its arguments (every argument but ``max_share``): built here to check them."""

FAULT_KEYS = ("kind", "at", "duration")
"""A fault's keys that are the timeline's, not the method's."""
CHECK_NAMESPACE = "chaoskit-check"
"""Stands for the run's namespace when fault specs are built to check them under ``namespace: auto``."""
MAX_FILE_BYTES = 1024 * 1024
"""The largest experiment file read (real ones are a few KiB)."""
MAX_NODES = 100_000
"""The most YAML nodes a file may expand to (aliases included): a guard against alias bombs."""
DURATION_PATTERN = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
IMPERATIVE = ("give ", "write ", "use ", "add ", "drop ")

Loc = tuple[str | int, ...]
"""Where a value is in the file's data: keys and list indices from the top."""
SYNTAX: Loc = ("(YAML)",)
"""Where a syntax error is said to be: no field can be named."""


# ---- errors -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file: where it is written, what is wrong, how to fix it."""

    file: str
    """The file as it was named to the loader."""
    line: int
    """The line it is written on, from 1; 0 when there is none (the file cannot be read)."""
    field: str
    """The field's path, such as ``faults[0].duration``."""
    problem: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.problem}; {self.fix}"


class ExperimentFileError(SpecError):
    """An experiment file that cannot be run as written: every problem found, one line each, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)
        """Each problem, the first line's first."""


# ---- what a file becomes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterChoice:
    """The cluster the file asks for (the command line or the pytest session may decide otherwise)."""

    provider: Literal["kind", "existing"]
    name: str | None = None
    """The kind cluster's name (kind only); None: the default."""
    context: str | None = None
    """The kubeconfig context (existing only); None: the current one."""


@dataclass(frozen=True)
class Deploy:
    """The system under test, applied into the namespace before the run and removed after it."""

    images: Mapping[str, Path | str]
    """By the name manifests use in ``${image.NAME}``: a directory to build (a Path, resolved) or an image name."""
    manifests: tuple[Path, ...]
    """The manifest files, resolved, in the order they are applied; they may hold placeholders
    (:func:`fill_placeholders`)."""
    wait: tuple[tuple[WorkloadKind, str], ...]
    """(kind, name) of each workload to wait for until whole after applying, in the experiment's namespace."""


@dataclass(frozen=True)
class SteadyState:
    """Objectives that must hold on a short load before any fault."""

    seconds: float
    """How long that load runs."""
    objectives: tuple[Objective, ...]


@dataclass(frozen=True)
class TimelineFault:
    """One fault of the timeline: what, when, for how long, and the arguments of its Chaos method."""

    kind: str
    """As the file names it, such as ``pod-kill``."""
    method: str
    """The :class:`~chaoskit.chaos.Chaos` method, such as ``pod_kill``."""
    options: Mapping[str, object]
    """The method's keyword arguments, checked against its signature and spec; ``namespace`` filled in
    with the experiment's when the method takes one and the file gave none."""
    at: float
    """Seconds from the end of the load's warm-up to the injection."""
    duration: float | None
    """Seconds the fault is held once injected; None: undone as soon as it is proven, or, with
    ``until_recovered``, held until the workloads are whole again."""
    until_recovered: bool
    line: int
    """The line of the file the fault starts on."""

    def enter(self, chaos: Chaos) -> AbstractContextManager[FaultRecord]:
        """The fault as ``chaos`` injects it: ``with fault.enter(chaos) as record:``."""
        method = getattr(chaos, self.method)
        return cast(AbstractContextManager[FaultRecord], method(**self.options))


@dataclass(frozen=True)
class ExperimentFile:
    """An experiment file, checked: everything a runner needs, and where each part is written."""

    path: Path
    name: str
    """From the file, or the file's name without ``.chaos.yaml``."""
    description: str
    namespace: str
    """Where the system runs, or ``auto`` (a fresh one per run; :meth:`with_namespace`)."""
    cluster: ClusterChoice | None
    deploy: Deploy | None
    workloads: tuple[Workload, ...]
    """Watched for recovery; each one's namespace defaults to the experiment's."""
    load: Mapping[str, object]
    """:class:`~chaoskit.load.LoadSpec`'s keyword arguments, checked by building one; ``host`` may still
    hold ``${node_port}`` (:meth:`load_spec` fills it in), ``locustfile`` is resolved."""
    steady_state: SteadyState | None
    faults: tuple[TimelineFault, ...]
    """In the file's order (not necessarily by ``at``)."""
    stop_conditions: tuple[StopCondition, ...]
    objectives: tuple[Objective, ...]
    settle_seconds: float
    lines: Mapping[str, int]
    """The line each field is written on, by its path (``faults[0].duration``)."""
    prometheus_url: str | None = None
    """``prometheus: {url: ...}``: a Prometheus already running to ask, instead of one the run deploys
    (the command line's and the pytest session's URL win over it)."""
    prometheus_service: PrometheusService | None = None
    """``prometheus: {service, namespace, port}``: the cluster's own Prometheus, through a port-forward to that
    Service (the command line's and the pytest session's Prometheus win over it)."""
    prometheus_rules: str | None = None
    """``prometheus: {rules: FILE}``: the text of the rules file the Prometheus the run deploys evaluates (what
    alert objectives are judged on)."""

    def line_of(self, field: str) -> int:
        """The line ``field`` is written on, or its nearest enclosing field's (1 when none is known)."""
        while True:
            if field in self.lines:
                return self.lines[field]
            parent = _parent_field(field)
            if parent is None:
                return 1
            field = parent

    def check_safety(self, safety: Safety) -> None:
        """Judge the file by the safety rules of this run (protected namespaces, as allowed on its command line)
        before anything touches the cluster: every namespace a fault would act in, the system's own included.
        Raises ExperimentFileError naming each one, file:line."""
        problems = []
        fix = "use a namespace of your own, or allow this one on the command line if you mean it"
        wanted = [("namespace", self.namespace)] if self.namespace != "auto" else []
        for index, fault in enumerate(self.faults):
            namespace = fault.options.get("namespace")
            if isinstance(namespace, str) and namespace not in (NAMESPACE_PLACEHOLDER, self.namespace):
                wanted.append((f"faults[{index}].namespace", namespace))
        for field, namespace in wanted:
            try:
                safety.check_namespace(namespace)
            except ChaoskitError as exc:
                problems.append(Problem(str(self.path), self.line_of(field), field, str(exc), fix))
        if problems:
            raise ExperimentFileError(problems)

    def error(self, field: str, problem: str, fix: str) -> ExperimentFileError:
        """A problem found later (at run time), located in the file like the loader's own."""
        return ExperimentFileError([Problem(str(self.path), self.line_of(field), field, problem, fix)])

    @property
    def port_forward(self) -> tuple[str, int] | None:
        """``load.port_forward``'s Service and port, when the load goes through a port-forward (the run opens it
        in the experiment's namespace and gives :meth:`load_spec` its local port)."""
        forward = self.load.get("port_forward")
        if not isinstance(forward, Mapping):
            return None
        return str(forward["service"]), int(forward["port"])

    @property
    def needs_node_port(self) -> bool:
        """Whether the load's host waits for the run's NodePort (``${node_port}``)."""
        return NODE_PORT_PLACEHOLDER in str(self.load.get("host", ""))

    def load_spec(
        self, node_port: int | None = None, run_seconds: float | None = None, forward_port: int | None = None
    ) -> LoadSpec:
        """The load, with ``${node_port}`` filled in, or the port-forward's local port ``forward_port``;
        ``run_seconds`` for a shorter run (the steady state)."""
        kwargs = {k: v for k, v in self.load.items() if k != "port_forward"}
        host = str(kwargs["host"])
        if NAMESPACE_PLACEHOLDER in host:
            if self.namespace == AUTO:
                raise self.error("load.host", f"{host} waits for the run's namespace", "fill it (with_namespace)")
            kwargs["host"] = host = host.replace(NAMESPACE_PLACEHOLDER, str(self.namespace))
        if FORWARD_PORT_PLACEHOLDER in host:
            if forward_port is None:
                raise self.error(
                    "load.port_forward", "the load waits for the run's port-forward", "open it (GameDay.prepare)"
                )
            kwargs["host"] = host = host.replace(FORWARD_PORT_PLACEHOLDER, str(forward_port))
        if NODE_PORT_PLACEHOLDER in host:
            if node_port is None:
                raise self.error(
                    "load.host", f"{host} waits for the run's NodePort", "give load_spec(node_port=...) the port"
                )
            kwargs["host"] = host.replace(NODE_PORT_PLACEHOLDER, str(node_port))
        if run_seconds is not None:
            kwargs["run_seconds"] = run_seconds
        return LoadSpec(**cast(dict[str, Any], kwargs))

    def with_namespace(self, namespace: str) -> ExperimentFile:
        """This ``namespace: auto`` experiment run in ``namespace``: every defaulted namespace filled in."""
        if self.namespace != AUTO:
            raise SpecError(f"{self.path} runs in namespace {self.namespace!r}, not a fresh one: use it as it is")

        def fill(value: object) -> object:
            return namespace if value == NAMESPACE_PLACEHOLDER else value

        def query(item: _Queried) -> _Queried:
            if isinstance(item, PromQL | PromQLAbove):
                return dataclasses.replace(item, query=fill_placeholders(item.query, {"namespace": namespace}))
            return item

        workloads = tuple(dataclasses.replace(w, namespace=cast(str, fill(w.namespace))) for w in self.workloads)
        faults = tuple(
            dataclasses.replace(f, options=MappingProxyType({k: fill(v) for k, v in f.options.items()}))
            for f in self.faults
        )
        steady = self.steady_state
        if steady is not None:
            steady = dataclasses.replace(steady, objectives=tuple(query(o) for o in steady.objectives))
        return dataclasses.replace(
            self,
            namespace=namespace,
            workloads=workloads,
            faults=faults,
            steady_state=steady,
            objectives=tuple(query(o) for o in self.objectives),
            stop_conditions=tuple(query(c) for c in self.stop_conditions),
            load=MappingProxyType(
                {
                    k: (str(v).replace(NAMESPACE_PLACEHOLDER, namespace) if k == "host" else v)
                    for k, v in self.load.items()
                }
            ),
        )


_Queried = typing.TypeVar("_Queried", Objective, StopCondition)


@dataclass(frozen=True)
class FaultOptions:
    """What a fault kind takes, read from the signature of its :class:`~chaoskit.chaos.Chaos` method."""

    kind: str
    method: str
    parameters: tuple[str, ...]
    """Every argument, in the signature's order."""
    required: tuple[str, ...]
    """The arguments without a default, but ``namespace`` (the experiment's by default)."""
    hints: Mapping[str, object]
    """Each argument's type."""


@functools.cache
def fault_options(kind: str) -> FaultOptions:
    """The options of fault ``kind`` (a key of :data:`FAULT_KINDS`)."""
    method_name = FAULT_KINDS[kind]
    method = getattr(Chaos, method_name)
    hints = typing.get_type_hints(method)
    parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
    required = tuple(p.name for p in parameters if p.default is inspect.Parameter.empty and p.name != "namespace")
    return FaultOptions(
        kind=kind,
        method=method_name,
        parameters=tuple(p.name for p in parameters),
        required=required,
        hints=MappingProxyType({p.name: hints[p.name] for p in parameters}),
    )


def placeholders(text: str) -> Iterator[tuple[str, int]]:
    """Each ``${name}`` in ``text`` with the line it is on (from 1); ``$${`` is a literal ``${``, not one."""
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) is not None:
            yield match.group(1), text.count("\n", 0, match.start()) + 1


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``${name}`` replaced by ``values[name]`` (``namespace``, ``node_port``,
    ``image.web``...) and each ``$${`` by ``${``; a name ``values`` lacks is a SpecError."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "${"
        if name not in values:
            raise SpecError(f"${{{name}}} is not a placeholder here; known: {', '.join(sorted(values))}")
        return values[name]

    return _PLACEHOLDER.sub(one, text)


def _parent_field(field: str) -> str | None:
    match = re.match(r"^(.+?)(?:\.[^.\[\]]+|\[[^\[\]]*\])$", field)
    return match.group(1) if match else None
