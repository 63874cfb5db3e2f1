"""Experiment files: a ``*.chaos.yaml`` turned into checked, frozen objects, or refused with every problem located.

A file goes through three passes, each on what the one before left clean, and
every problem any of them finds is reported (one line each, in file order) as
``{file}:{line}: {field}: {problem}; {fix}`` in one :class:`ExperimentFileError`:

1. **YAML to plain data**, keeping a map from each field's path
   (``faults[0].duration``) to the line it is written on, read from the nodes
   ``yaml.compose`` gives. This pass also refuses what PyYAML would let pass
   silently: a key written twice (PyYAML keeps the last), a key that is not
   text, a number that is not finite.
2. **The JSON Schema** (draft 2020-12) that editors use too: shape, types and
   ranges. jsonschema's errors are translated into the one-line form, each fix
   built from the schema's own ``examples``, so the schema is the one place a
   field is described.
3. **What no schema can say**: each fault's options against the signature of
   the :class:`~chaoskit.chaos.Chaos` method of its kind (the source of truth
   for which options a fault takes and needs), then its spec dataclass built;
   the load, the objectives and the stop conditions built by their own
   classes, whose :class:`~chaoskit.errors.SpecError` becomes a located one;
   times against the load's run time; files that must exist.

Where the schema lives: the canonical copy is the package's own
(``chaoskit/gameday/chaoskit-experiment.schema.json``, package data), since the
loader needs it wherever chaoskit is installed, editable or not; the
repository publishes a byte-identical copy at
``schema/chaoskit-experiment.schema.json`` for editors to point at, and a unit
test keeps the two the same. The schema is written by hand, not generated:
its titles, descriptions and examples are documentation. The parts of it that
must agree with code (each fault kind's options and the ones it needs, the
load's fields) are checked against the code by unit tests.

``${namespace}`` stands for the run's namespace everywhere: in manifests and
PromQL queries, and as the namespace of faults and workloads that did not name
one; under ``namespace: auto`` it stays until the run knows the name
(:meth:`ExperimentFile.with_namespace` fills it in).
``${node_port}`` stands for the NodePort the run gives a deployed system, in
manifests and in ``load.host``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import math
import re
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml
from jsonschema import Draft202012Validator, ValidationError

from chaoskit.adapters.kube import WorkloadKind
from chaoskit.chaos import Chaos
from chaoskit.errors import ChaoskitError, SpecError
from chaoskit.experiment import Workload
from chaoskit.faults import FaultRecord, Safety
from chaoskit.faults.catalog import CATALOG
from chaoskit.images import image_name
from chaoskit.load import LoadSpec
from chaoskit.slo import Availability, ErrorBurst, LatencyPercentile, Objective, PromQL, RecoveryTime
from chaoskit.stops import AvailabilityBelow, ErrorBurstOver, LatencyAbove, PromQLAbove, StopCondition

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
CHECK_NODE_PORT = 30080
"""The port put in for ``${node_port}`` when a file is checked, before the run knows the real one."""
UNTIL_RECOVERED = "until_recovered"
"""A fault's ``duration`` that holds it until the workloads are whole again."""
DEFAULT_SETTLE_SECONDS = 5.0

FAULT_KINDS: Mapping[str, str] = MappingProxyType({kind.name: kind.method for kind in CATALOG})
"""A fault's ``kind`` in a file, and the :class:`~chaoskit.chaos.Chaos` method that injects it (from the catalog)."""

_FAULT_SPECS: Mapping[str, type] = MappingProxyType({kind.name: kind.spec for kind in CATALOG})
"""The spec each method builds from its arguments (every argument but ``max_share``): built here to check them."""

_FAULT_KEYS = ("kind", "at", "duration")
"""A fault's keys that are the timeline's, not the method's."""
_CHECK_NAMESPACE = "chaoskit-check"
"""Stands for the run's namespace when fault specs are built to check them under ``namespace: auto``."""
MAX_FILE_BYTES = 1024 * 1024
"""The largest experiment file read (real ones are a few KiB)."""
_MAX_NODES = 100_000
"""The most YAML nodes a file may expand to (aliases included): a guard against alias bombs."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_IMPERATIVE = ("give ", "write ", "use ", "add ", "drop ")

Loc = tuple[str | int, ...]
"""Where a value is in the file's data: keys and list indices from the top."""
_SYNTAX: Loc = ("(YAML)",)
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
    def needs_node_port(self) -> bool:
        """Whether the load's host waits for the run's NodePort (``${node_port}``)."""
        return NODE_PORT_PLACEHOLDER in str(self.load.get("host", ""))

    def load_spec(self, node_port: int | None = None, run_seconds: float | None = None) -> LoadSpec:
        """The load, with ``${node_port}`` filled in; ``run_seconds`` for a shorter run (the steady state)."""
        kwargs = dict(self.load)
        host = str(kwargs["host"])
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


# ---- the public calls ---------------------------------------------------------------------------------


def load_experiment(path: Path) -> ExperimentFile:
    """Read and check the experiment file at ``path``; raise :class:`ExperimentFileError` naming every problem.

    Paths in the file (images, manifests, a locustfile) are relative to the file's directory.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:  # judged before a byte is parsed: a huge file is refused at once
            fix = f"an experiment file is a few KiB; keep it under {MAX_FILE_BYTES // 1024} KiB"
            problem = f"is {size / 1048576:.1f} MiB, too big to be an experiment file"
            raise ExperimentFileError([Problem(str(path), 0, "(file)", problem, fix)])
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fix = "give the path of a readable UTF-8 experiment file, such as experiments/web.chaos.yaml"
        raise ExperimentFileError([Problem(str(path), 0, "(file)", f"cannot be read ({reason})", fix)]) from None
    return parse_experiment(text, str(path))


def parse_experiment(text: str, source: str) -> ExperimentFile:
    """Check the experiment written in ``text``; ``source`` names it in messages and is where relative paths
    start from (its directory)."""
    if len(text) > MAX_FILE_BYTES:
        fix = f"an experiment file is a few KiB; keep it under {MAX_FILE_BYTES // 1024} KiB"
        raise ExperimentFileError([Problem(source, 0, "(file)", f"is {len(text)} characters, too big", fix)])
    doc = _Document(source, text)
    data = doc.plain()
    if data is not None:
        _schema_pass(doc, data)
        if isinstance(data, dict):
            built = _Semantics(doc, data).build()
            if not doc.found:
                assert built is not None
                return built
    raise ExperimentFileError(doc.problems())


def schema() -> dict[str, Any]:
    """The experiment file's JSON Schema (draft 2020-12), a fresh copy of the package's."""
    return cast(dict[str, Any], json.loads(_schema_text()))


def check_fault(kind: str, arguments: Mapping[str, object], safety: Safety) -> None:
    """Build a fault's spec from its arguments and judge its namespace by ``safety``, as its Chaos method would,
    before anything touches the cluster (``chaoskit inject``): raises the spec's own SpecError or SafetyError."""
    spec_class = _FAULT_SPECS[kind]
    fields = {f.name for f in dataclasses.fields(spec_class)}
    spec_class(**{k: v for k, v in arguments.items() if k in fields})
    namespace = arguments.get("namespace")
    if isinstance(namespace, str):
        safety.check_namespace(namespace)


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Seconds in a duration as a file writes it: a number of seconds, or a string such as ``30s``, ``1m30s``,
    ``500ms`` or ``2m``. Zero (unless ``allow_zero``), negative and anything else raise SpecError."""
    seconds, problem, fix = _duration(value, allow_zero=allow_zero)
    if seconds is None:
        raise SpecError(f"{problem}; {fix}")
    return seconds


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


# ---- the file as plain data, with its lines -------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    loc: Loc
    problem: str
    fix: str
    line: int | None = None
    """The line, when it is not the one the path is written on."""
    scope: Loc | None = None
    """Other problems at or under this path are left out: they follow from this one."""
    missing: bool = False
    """A key that is not there (left out when a misspelt key was taken for it)."""
    meant: Loc | None = None
    """For a key not known here: the known key it is likely a misspelling of."""


class _TooLarge(Exception):
    pass


class _Document:
    """One file being checked: its lines by path, and what was found wrong."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self.base = Path(source).parent
        self.lines: dict[Loc, int] = {}
        self.found: list[_Found] = []
        self._nodes = 0

    def add(
        self,
        loc: Loc,
        problem: str,
        fix: str,
        *,
        line: int | None = None,
        scope: Loc | None = None,
        missing: bool = False,
        meant: Loc | None = None,
    ) -> None:
        self.found.append(_Found(loc, problem, fix, line, scope, missing, meant))

    def line(self, loc: Loc) -> int:
        while loc not in self.lines and loc:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def clean(self, loc: Loc) -> bool:
        """Whether nothing was found at, under or (as a scope) above ``loc``."""
        for f in self.found:
            if f.loc[: len(loc)] == loc or (f.scope is not None and loc[: len(f.scope)] == f.scope):
                return False
        return True

    def problems(self) -> list[Problem]:
        kept: dict[str, Problem] = {}
        scopes = [f for f in self.found if f.scope is not None]
        meant = {f.meant for f in self.found if f.meant is not None}
        for f in self.found:
            if any(f is not s and s.scope is not None and f.loc[: len(s.scope)] == s.scope for s in scopes):
                continue
            if f.missing and f.loc in meant:  # "lood: did you mean load?" says it already
                continue
            name = field_name(f.loc)
            if name not in kept:
                kept[name] = Problem(self.source, f.line or self.line(f.loc), name, f.problem, f.fix)
        return sorted(kept.values(), key=lambda p: p.line)

    def plain(self) -> object | None:
        """The file's data (None when it has none to check), every path's line recorded."""
        loader = yaml.SafeLoader(self.text)
        try:
            node = loader.get_single_node()
            if node is None:
                self.add((), "the file is empty", "write at least namespace:, load:, faults: and objectives:", line=1)
                return None
            self.lines[()] = node.start_mark.line + 1
            return self._value(loader, node, (), frozenset())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
            fix = "fix the YAML there (indentation, a missing ':' or '-', an unclosed quote or bracket)"
            if "single document" in problem:
                fix = "write one experiment per file: drop the '---' and what follows it"
            self.add(_SYNTAX, problem, fix, line=mark.line + 1 if mark else 1)
        except yaml.YAMLError as exc:
            self.add(_SYNTAX, f"not valid YAML ({exc})", "fix the YAML", line=1)
        except _TooLarge:
            self.add((), f"expands to more than {_MAX_NODES} values", "write it out without nested aliases", line=1)
        finally:
            loader.dispose()
        return None

    def _value(self, loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, holding: frozenset[int]) -> object:
        self._nodes += 1
        if self._nodes > _MAX_NODES:
            raise _TooLarge
        if id(node) in holding:
            self.add(loc, "refers to itself (an alias of the mapping or list that holds it)", "write the value out")
            return None
        inside = holding | {id(node)}
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, loc, inside)
        if isinstance(node, yaml.SequenceNode):
            items: list[object] = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self._value(loader, item, (*loc, index), inside))
            return items
        value = loader.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            self.add(loc, f"{_show(value)} is not a finite number", "write a number such as 10")
            return None
        return value

    def _mapping(self, loader: yaml.SafeLoader, node: yaml.MappingNode, loc: Loc, inside: frozenset[int]) -> object:
        first: dict[object, int] = {}
        for key_node, _ in node.value:  # the keys as written, before merge keys (<<) bring in others
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in first:
                self.add((*loc, key), f"is written twice (first on line {first[key]})", "keep one", line=line)
            first.setdefault(key, line)
        loader.flatten_mapping(node)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(loc, "has a key that is a mapping or a list", "write each key as plain text", line=line)
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                text = _show(key)
                self.add((*loc, str(key)), f"the key {text} is not text", f'write it in quotes: "{key}":', line=line)
                continue
            self.lines[(*loc, key)] = line
            out[key] = self._value(loader, value_node, (*loc, key), inside)
        return out


def field_name(loc: Loc) -> str:
    """A path as messages write it: ``faults[0].duration``, ``deploy.images["my.image"]``."""
    out = ""
    if loc == _SYNTAX:
        return str(loc[0])
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(top level)"


def _parent_field(field: str) -> str | None:
    match = re.match(r"^(.+?)(?:\.[^.\[\]]+|\[[^\[\]]*\])$", field)
    return match.group(1) if match else None


# ---- the schema pass ---------------------------------------------------------------------------------


@functools.cache
def _schema_text() -> str:
    return resources.files("chaoskit.gameday").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _root() -> Mapping[str, Any]:
    """The schema the validator holds (the one its errors' subschemas are parts of)."""
    return cast(Mapping[str, Any], _validator().schema)


def _schema_pass(doc: _Document, data: object) -> None:
    for error in _validator().iter_errors(data):
        _Explain(doc, data, error).add()


class _Explain:
    """One jsonschema error, said as problems with their fixes."""

    def __init__(self, doc: _Document, data: object, error: ValidationError) -> None:
        self.doc = doc
        self.data = data
        self.error = error
        self.loc: Loc = tuple(error.absolute_path)
        self.schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
        self.instance: object = error.instance
        self.value: Any = error.validator_value
        """What the failed keyword asked for: the required keys, the type, the bound..."""

    def add(self) -> None:
        kind = self.error.validator
        handler = {
            "required": self._required,
            "additionalProperties": self._unknown_keys,
            "type": self._type,
            "enum": self._choice,
            "const": self._choice,
            "anyOf": self._alternatives,
            "oneOf": self._alternatives,
            "minimum": self._range,
            "exclusiveMinimum": self._range,
            "maximum": self._range,
            "exclusiveMaximum": self._range,
            "minItems": self._empty,
            "minLength": self._empty,
            "pattern": self._pattern,
        }.get(str(kind))
        if handler is not None:
            handler()
        else:
            self.doc.add(self.loc, self.error.message, f"write it as the schema describes it{self._such_as()}")

    def _such_as(self) -> str:
        """ " such as EXAMPLE" from the schema: the failed subschema's, the field's, or the list's first item's."""
        example = _example(self.schema)
        if example is None:
            example = _example(_documented(self.loc, self.data))
        if example is None and self.loc and isinstance(self.loc[-1], int):
            in_list = _example(_documented(self.loc[:-1], self.data))
            example = in_list[0] if isinstance(in_list, list) and in_list else None
        return f" such as {_flow(example)}" if example is not None else ""

    def _required(self) -> None:
        if not isinstance(self.instance, dict):
            return
        properties = self.schema.get("properties", {})
        what = _what(self.loc, self.data)
        for key in self.value:
            if key in self.instance:
                continue
            example = _example(_resolve(properties.get(key, {})))
            fix = f"add {key}: {_flow(example)}" if example is not None else f"add {key}:"
            problem = "is missing" if not self.loc else f"is missing: {what} needs it"
            self.doc.add((*self.loc, key), problem, fix, line=self.doc.line(self.loc), missing=True)

    def _unknown_keys(self) -> None:
        if not isinstance(self.instance, dict):
            return
        allowed = list(self.schema.get("properties", {}))
        what = _what(self.loc, self.data)
        fault_kind = _fault_kind(self.loc, self.data)
        if fault_kind is not None:
            allowed = [*_FAULT_KEYS, *fault_options(fault_kind).parameters]
        patterns = list(self.schema.get("patternProperties", {}))
        for key in self.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            if self.loc == ("cluster",) and key in ("context", "name"):
                fix = (
                    "write provider: existing to use a kubeconfig context, or drop context"
                    if key == "context"
                    else "an existing cluster is named by its context: drop name, or write context:"
                )
                self.doc.add((*self.loc, key), f"is not for {what}", fix)
                continue
            if key == "window" and "recovery" in self.instance:
                fix = "drop it: recovery is timed over the fault window (from the first injection until whole again)"
                self.doc.add((*self.loc, key), "does not apply to a recovery objective", fix)
                continue
            if fault_kind is not None:
                problem = f"{fault_kind} takes no option {key} (Chaos.{FAULT_KINDS[fault_kind]} has no such argument)"
                options = [k for k in allowed if k not in _FAULT_KEYS]
                listed = f"{fault_kind} takes {', '.join(options)} (besides kind, at and duration)"
            else:
                problem = "is not a key of the file" if not self.loc else f"is not a key of {what}"
                listed = f"{_possessive(what)} keys are {', '.join(allowed)}"
                if patterns == ["^x-"]:
                    listed += ", and any starting with x- (ignored: for YAML anchors)"
                if all(k in self.instance for k in allowed):
                    listed = f"drop it: {what} takes only {_or(allowed)}"
            free = [k for k in allowed if k not in self.instance]
            near = difflib.get_close_matches(key, free, n=1, cutoff=0.6)
            fix = f"did you mean {near[0]}? {listed}" if near else listed
            self.doc.add((*self.loc, key), problem, fix, meant=(*self.loc, near[0]) if near else None)

    def _type(self) -> None:
        expected = self.value
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        self.doc.add(self.loc, f"{_is_a(self.instance)}, not {wanted}", f"write {wanted}{self._such_as()}")

    def _choice(self) -> None:
        choices = [self.value] if self.error.validator == "const" else self.value
        words = [str(c) for c in choices]
        near = (
            difflib.get_close_matches(self.instance, words, n=1, cutoff=0.6) if isinstance(self.instance, str) else []
        )
        guess = f"did you mean {near[0]}? " if near else ""
        if len(self.loc) == 3 and self.loc[0] == "faults" and self.loc[2] == "kind":
            problem = f"unknown fault kind {_show(self.instance)}"
            fix = f"{guess}the known kinds are {', '.join(FAULT_KINDS)}"
            self.doc.add(self.loc, problem, fix, scope=self.loc[:2])  # nothing else about the fault can be checked
            return
        self.doc.add(self.loc, f"{_show(self.instance)} is not {_or(words)}", f"{guess}write {_or(words)}")

    def _alternatives(self) -> None:
        last = self.loc[-1] if self.loc else None
        in_fault = len(self.loc) == 3 and self.loc[0] == "faults"
        if in_fault and last in ("at", "duration"):
            _, problem, fix = _duration(self.instance, allow_zero=last == "at", allow_until=last == "duration")
            self.doc.add(self.loc, problem, fix)
            return
        if self.loc == ("namespace",):
            if not isinstance(self.instance, str):
                self.doc.add(self.loc, f"{_is_a(self.instance)}, not a string", "write a namespace such as shop")
            else:
                self.doc.add(
                    self.loc,
                    f"{_show(self.instance)} is not a namespace name",
                    "write lower-case letters, digits and '-' (at most 63), such as shop, or auto for a fresh "
                    "namespace of the run's own",
                )
            return
        branches = self.value
        keys = [
            b["required"][0]
            for b in branches
            if isinstance(b, dict) and set(b) == {"required"} and len(b["required"]) == 1
        ]
        if len(keys) != len(branches):
            self.doc.add(
                self.loc,
                f"{_show(self.instance)} is not valid here",
                f"write it as the schema describes it{self._such_as()}",
            )
            return
        if not isinstance(self.instance, dict):
            return  # branches of required keys pass anything but a mapping: its type error says it
        present = [k for k in keys if k in self.instance]
        if self.error.validator == "anyOf":  # bounds: at least one of them
            documented = _documented(self.loc, self.data).get("properties", {})
            examples = [f"{k}: {_flow(_example(_resolve(documented.get(k, {}))))}" for k in keys]
            self.doc.add(self.loc, f"needs {_or(keys)}", f"add {_or(examples)}")
            return
        noun = "a stop condition" if self.loc[:1] == ("stop_conditions",) else "an objective"
        if not present:
            near = [m for k in self.instance for m in difflib.get_close_matches(str(k), keys, n=1, cutoff=0.6)]
            fix = f"write one of {', '.join(keys)}"
            if near:
                fix = f"did you mean {near[0]}? {fix}"
            self.doc.add(self.loc, f"is not {noun}: it names none of {', '.join(keys)}", fix, scope=self.loc)
        else:
            self.doc.add(
                self.loc,
                f"names {' and '.join(present)} at once",
                f"write each as {noun} of its own (one per list item)",
                scope=self.loc,
            )

    def _range(self) -> None:
        bound = self.value
        words = {
            "minimum": f"is less than {bound:g}",
            "exclusiveMinimum": "is not positive" if bound == 0 else f"is not above {bound:g}",
            "maximum": f"is more than {bound:g}",
            "exclusiveMaximum": f"is not below {bound:g}",
        }[str(self.error.validator)]
        self.doc.add(self.loc, f"{_show(self.instance)} {words}", f"write {_range_text(self.schema)}{self._such_as()}")

    def _empty(self) -> None:
        what = "an empty list" if isinstance(self.instance, list) else "empty"
        self.doc.add(self.loc, f"is {what}", f"write at least one{self._such_as()}")

    def _pattern(self) -> None:
        loc = self.loc
        if "propertyNames" in self.error.relative_schema_path:
            loc = (*loc, str(self.instance))
            self.doc.add(
                loc,
                f"{_show(self.instance)} cannot name an image",
                "name it with letters, digits, '_' and '-', as ${image.NAME} writes it",
            )
            return
        pattern = str(self.value)
        problem, fix = _PATTERN_WORDS.get(pattern, (f"does not match {pattern}", "write it as the schema describes it"))
        such_as = self._such_as()
        self.doc.add(loc, f"{_show(self.instance)} {problem}", fix + such_as if such_as else fix.rstrip(","))


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing",
}
_DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_NAME = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_PATTERN_WORDS = {
    _DNS_LABEL: (
        "is not a Kubernetes name",
        "write lower-case letters, digits and '-', starting and ending with a letter or digit,",
    ),
    _DNS_NAME: (
        "is not a Kubernetes name",
        "write lower-case letters, digits, '-' and '.', starting and ending with a letter or digit,",
    ),
    "\\S": ("is blank", "write it out,"),
    "^/\\S*$": ("is not a URL path", "start it with / and leave out spaces,"),
    "^[A-Za-z_][A-Za-z0-9_]*$": ("is not a Python class name", "write the class's name,"),
    "^(Deployment|StatefulSet|DaemonSet|ReplicaSet)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$": (
        "is not Kind/name",
        "write the kind (Deployment, StatefulSet, DaemonSet or ReplicaSet), '/' and the name,",
    ),
}
"""What a value that does not match a pattern of the schema is, and the start of its fix (ended by an example)."""


def _resolve(schema: object) -> Mapping[str, Any]:
    """A subschema with its local ``$ref`` followed (its own title, description and examples kept first)."""
    if not isinstance(schema, Mapping):
        return {}
    if "$ref" not in schema:
        return schema
    target: Any = _root()
    for part in str(schema["$ref"]).removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}


def _example(schema: Mapping[str, Any]) -> object | None:
    examples = _resolve(schema).get("examples")
    return examples[0] if examples else None


def _documented(loc: Loc, data: object) -> Mapping[str, Any]:
    """The schema that documents the value at ``loc``: titles, descriptions and examples (not the if/then parts
    that only constrain it)."""
    schema = _resolve(_root())
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            schema = _resolve(schema.get("items", {}))
            fault = _fault_kind(loc[: depth + 1], data)
            if fault is not None:
                schema = _resolve(_root()["$defs"][f"fault-{fault}"])
        else:
            schema = _resolve(schema.get("properties", {}).get(part, {}))
    return schema


def _range_text(schema: Mapping[str, Any]) -> str:
    noun = "a whole number" if schema.get("type") == "integer" else "a number"
    low, low_open = (
        (schema["exclusiveMinimum"], True) if "exclusiveMinimum" in schema else (schema.get("minimum"), False)
    )
    high, high_open = (
        (schema["exclusiveMaximum"], True) if "exclusiveMaximum" in schema else (schema.get("maximum"), False)
    )
    if low is not None and high is not None:
        return f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        if low == 0:
            return f"a positive {noun.removeprefix('a ')}" if low_open else f"{noun} of 0 or more"
        return f"{noun} {'above' if low_open else 'of at least'} {low:g}"
    if high is not None:
        return f"{noun} {'below' if high_open else 'of at most'} {high:g}"
    return noun


def _what(loc: Loc, data: object) -> str:
    """The mapping at ``loc``, in words: "a pod-kill fault", "an availability objective"."""
    if not loc:
        return "the file"
    node = _at(data, loc)
    fault = _fault_kind(loc, data)
    if fault is not None:
        return f"a {fault} fault"
    if len(loc) == 2 and loc[0] == "faults":
        return "a fault"
    if loc == ("cluster",) and isinstance(node, dict):
        return f"{_a(str(node.get('provider', 'kind')))} cluster"
    if isinstance(node, dict) and len(loc) >= 2 and isinstance(loc[-1], int):
        if loc[-2] == "objectives":
            key = next((k for k in node if k != "window"), None)
            return f"{_a(key)} objective" if key else "an objective"
        if loc[-2] == "stop_conditions":
            key = next(iter(node), None)
            return f"{_a(key)} stop condition" if key else "a stop condition"
        if loc[-2] == "workloads":
            return "a workload"
    if len(loc) >= 3 and loc[-3] == "objectives" and isinstance(loc[-1], str):
        return f"{_a(loc[-1])} objective"
    return field_name(loc)


def _fault_kind(loc: Loc, data: object) -> str | None:
    if len(loc) == 2 and loc[0] == "faults":
        node = _at(data, loc)
        if isinstance(node, dict) and node.get("kind") in FAULT_KINDS:
            return str(node["kind"])
    return None


def _at(data: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _a(word: str | None) -> str:
    if not word:
        return "a"
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _possessive(what: str) -> str:
    return "the file's" if what == "the file" else f"{what}'s"


def _or(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _show(value: object) -> str:
    """A value as the message quotes it: strings in double quotes, YAML's words for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def _is_a(value: object) -> str:
    """What a value is: '"one" is a string', "a list", "nothing"."""
    if value is None:
        return "is empty"
    if isinstance(value, list | dict):
        return f"is {_show(value)}"
    if isinstance(value, bool):
        kind = "true or false"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, int):
        kind = "a whole number"
    elif isinstance(value, float):
        kind = "a number"
    else:
        kind = type(value).__name__
    return f"{_show(value)} is {kind}"


def _flow(value: object) -> str:
    """A value as YAML would write it on one line, for a fix."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z0-9_./=-][A-Za-z0-9_./=:-]*", value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    return _show(value)


# ---- durations -----------------------------------------------------------------------------------------


def _duration(value: object, *, allow_zero: bool = False, allow_until: bool = False) -> tuple[float | None, str, str]:
    """(seconds, "", "") for a good duration, else (None, problem, fix)."""
    if allow_zero:
        fix = "write 0 or a duration such as 5s, 1m or 1m30s"
    else:
        fix = "write a positive duration such as 30s, 1m30s or 500ms"
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(f"(?:{_DURATION.pattern})+", value):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))
    if seconds is None or not math.isfinite(seconds):
        if allow_until and isinstance(value, str):
            near = difflib.get_close_matches(value, [UNTIL_RECOVERED], n=1, cutoff=0.6)
            if near:
                return None, f"{_show(value)} is not a duration", f"did you mean {UNTIL_RECOVERED}?"
        return None, f"{_show(value)} is not a duration", fix
    if seconds < 0 or (seconds == 0 and not allow_zero):
        return None, f"{_show(value)} {'is negative' if allow_zero else 'is not a positive duration'}", fix
    return seconds, "", ""


# ---- the semantic pass ---------------------------------------------------------------------------------


def _split(message: str, owner: str) -> tuple[str, str]:
    """A SpecError's message as (problem, fix)."""
    if message.startswith(_IMPERATIVE):
        return f"refused by {owner}", message
    for sep in ("; ", ": "):
        if sep in message:
            problem, fix = message.split(sep, 1)
            return problem, fix
    return message, f"see {owner} for what it takes"


def _culprit(message: str, given: Mapping[str, object]) -> str | None:
    """The key a message names first, by its name or by its (text) value, if any."""
    hits = []
    for key, value in given.items():
        match = re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message)
        if match is None and isinstance(value, str) and len(value) > 2:
            match = re.search(re.escape(repr(value)), message)
        if match:
            hits.append((match.start(), key))
    return min(hits)[1] if hits else None


def _coerce(value: object, hint: object) -> object:
    """A file's value as the argument's type wants it: a list as a tuple, 2.0 as 2 for an int."""
    if isinstance(value, list):
        return tuple(value)
    args = typing.get_args(hint) or (hint,)
    if isinstance(value, float) and value.is_integer() and int in args and float not in args:
        return int(value)
    return value


class _Semantics:
    """The checks no schema can make, on the parts the schema pass left clean; then the objects."""

    def __init__(self, doc: _Document, data: dict[str, Any]) -> None:
        self.doc = doc
        self.data = data
        self.namespace = data.get("namespace") if doc.clean(("namespace",)) else None

    def located(self, loc: Loc, exc: ChaoskitError, given: Mapping[str, object], owner: str) -> None:
        """A class's refusal of what the file gave it, at the key its message names (else at ``loc``)."""
        message = str(exc)
        key = _culprit(message, given)
        problem, fix = _split(message, owner)
        self.doc.add((*loc, key) if key is not None else loc, problem, fix)

    def build(self) -> ExperimentFile | None:
        data, doc = self.data, self.doc
        if self.namespace == AUTO and "deploy" not in data:
            doc.add(
                ("namespace",),
                "auto needs deploy: a fresh namespace holds nothing until the run deploys the system into it",
                "add a deploy: section, or name the namespace the system runs in",
            )
        workloads = self.workloads()
        deploy = self.deploy(workloads)
        load = self.load()
        run_seconds = load.get("run_seconds") if load is not None else None
        faults = self.faults(workloads, run_seconds if isinstance(run_seconds, int | float) else None)
        objectives = self.objectives(("objectives",), workloads, steady=False)
        steady = self.steady_state()
        stops = self.stop_conditions()
        if doc.found:
            return None
        assert load is not None and faults is not None and objectives is not None and stops is not None
        return ExperimentFile(
            path=Path(doc.source),
            name=str(data.get("name") or _default_name(doc.source)),
            description=str(data.get("description", "")).strip(),
            namespace=str(self.namespace),
            cluster=self.cluster(),
            deploy=deploy,
            workloads=workloads or (),
            load=MappingProxyType(load),
            steady_state=steady,
            faults=faults,
            stop_conditions=stops,
            objectives=objectives,
            settle_seconds=float(data.get("settle_seconds", DEFAULT_SETTLE_SECONDS)),
            lines=MappingProxyType({field_name(loc): line for loc, line in doc.lines.items()}),
        )

    def default_namespace(self) -> str:
        """The namespace of a fault or workload that names none (a stand-in when the file's own is wrong)."""
        if self.namespace is None:
            return _CHECK_NAMESPACE
        return NAMESPACE_PLACEHOLDER if self.namespace == AUTO else str(self.namespace)

    def cluster(self) -> ClusterChoice | None:
        raw = self.data.get("cluster")
        if not isinstance(raw, dict):
            return None
        provider = cast(Literal["kind", "existing"], raw.get("provider", "kind"))
        return ClusterChoice(provider, raw.get("name"), raw.get("context"))

    def workloads(self) -> tuple[Workload, ...] | None:
        loc: Loc = ("workloads",)
        if not self.doc.clean(loc):
            return None
        out = []
        for index, raw in enumerate(self.data.get("workloads", [])):
            try:
                out.append(
                    Workload(
                        namespace=raw.get("namespace", self.default_namespace()),
                        name=raw["name"],
                        service=raw.get("service"),
                        kind=raw.get("kind", "Deployment"),
                    )
                )
            except SpecError as exc:
                self.located((*loc, index), exc, raw, "chaoskit.experiment.Workload")
        return tuple(out)

    def deploy(self, workloads: tuple[Workload, ...] | None) -> Deploy | None:
        loc: Loc = ("deploy",)
        raw = self.data.get("deploy")
        if raw is None or not self.doc.clean(loc):
            return None
        images: dict[str, Path | str] = {}
        for name, value in raw.get("images", {}).items():
            image = self.image((*loc, "images", name), value)
            if image is not None:
                images[name] = image
        manifests = []
        for index, value in enumerate(raw["manifests"]):
            manifest = self.manifest((*loc, "manifests", index), value, raw.get("images", {}))
            if manifest is not None:
                manifests.append(manifest)
        if "wait" in raw:
            wait = tuple((cast(WorkloadKind, k), n) for k, n in (w.split("/", 1) for w in raw["wait"]))
        else:
            here = self.default_namespace()
            wait = tuple((w.kind, w.name) for w in workloads or () if w.namespace == here)
        return Deploy(images=MappingProxyType(images), manifests=tuple(manifests), wait=wait)

    def image(self, loc: Loc, value: str) -> Path | str | None:
        directory = (self.doc.base / value).expanduser()
        if directory.is_dir():
            if not (directory / "Dockerfile").is_file():
                self.doc.add(
                    loc,
                    f"{directory} has no Dockerfile",
                    "write one that starts with 'ARG BASE' and 'FROM $BASE', or give an image name",
                )
                return None
            return directory.resolve()
        if value.startswith((".", "/", "~")):
            self.doc.add(
                loc,
                f"there is no directory {directory}",
                f"give the directory holding the Dockerfile, relative to {self.doc.base}/, or an image name",
            )
            return None
        try:
            image_name(value)
        except ChaoskitError as exc:
            self.doc.add(loc, f"{_show(value)} is neither a directory nor an image name", str(exc))
            return None
        return value

    def manifest(self, loc: Loc, value: str, images: Mapping[str, object]) -> Path | None:
        path = (self.doc.base / value).expanduser()
        if not path.is_file():
            self.doc.add(loc, f"there is no file {path}", f"give the manifest's path relative to {self.doc.base}/")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.doc.add(loc, f"{path} cannot be read ({exc})", "give a readable UTF-8 YAML file")
            return None
        known = {"namespace", "node_port", *(f"image.{name}" for name in images)}
        bad = [(name, line) for name, line in placeholders(text) if name not in known]
        if bad:
            name, line = bad[0]
            if name.startswith("image."):
                fix = f"add {name.removeprefix('image.')}: to deploy.images, or use one of " + ", ".join(
                    "${" + k + "}" for k in sorted(known)
                )
            else:
                fix = (
                    "use ${namespace}, ${node_port} or ${image.NAME} (NAME a key of deploy.images); "
                    "$${ for a literal ${"
                )
            self.doc.add(loc, f"{value}:{line} uses ${{{name}}}, which is not a placeholder here", fix)
            return None
        checked = fill_placeholders(
            text,
            {"namespace": _CHECK_NAMESPACE, "node_port": str(CHECK_NODE_PORT)}
            | {f"image.{name}": f"chaoskit/{name.lower()}:check" for name in images},
        )
        try:
            documents = [d for d in yaml.safe_load_all(checked) if d is not None]
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            at = f"{value}:{mark.line + 1}" if mark else value
            self.doc.add(loc, f"{at} is not valid YAML ({exc.problem})", "fix the manifest")
            return None
        except yaml.YAMLError as exc:
            self.doc.add(loc, f"{value} is not valid YAML ({exc})", "fix the manifest")
            return None
        if not documents:
            self.doc.add(loc, f"{value} holds no objects", "write the Kubernetes objects to apply into it")
            return None
        for number, document in enumerate(documents, 1):
            if not isinstance(document, dict) or "kind" not in document or "apiVersion" not in document:
                self.doc.add(
                    loc,
                    f"document {number} of {value} is not a Kubernetes object",
                    "give each document apiVersion:, kind: and metadata:",
                )
                return None
        return path.resolve()

    def load(self) -> dict[str, object] | None:
        loc: Loc = ("load",)
        raw = self.data.get("load")
        if not isinstance(raw, dict) or not self.doc.clean(loc):
            return None
        hints = typing.get_type_hints(LoadSpec)
        kwargs: dict[str, object] = {k: _coerce(v, hints.get(k)) for k, v in raw.items()}
        kwargs.setdefault("host", DEFAULT_HOST)
        host = str(kwargs["host"])
        for name, _ in placeholders(host):
            if name != "node_port":
                self.doc.add(
                    (*loc, "host"),
                    f"${{{name}}} is not a placeholder of the host",
                    "write the port, or ${node_port} for the deployed system's NodePort",
                )
                return None
        if NODE_PORT_PLACEHOLDER in host and "deploy" not in self.data:
            where: Loc = (*loc, "host") if "host" in raw else loc
            problem = (
                f"{host} needs the NodePort of a deployed system, and the file deploys none"
                if "host" in raw
                else f"gives no host, and the default {DEFAULT_HOST} needs the NodePort of a deployed system"
            )
            self.doc.add(where, problem, "give host: http://127.0.0.1:PORT with the NodePort your Service publishes")
            return None
        if isinstance(kwargs.get("locustfile"), str):
            locustfile = (self.doc.base / str(kwargs["locustfile"])).expanduser()
            if not locustfile.is_file():
                fix = f"give the locustfile's path relative to {self.doc.base}/"
                self.doc.add((*loc, "locustfile"), f"there is no file {locustfile}", fix)
                return None
            kwargs["locustfile"] = str(locustfile.resolve())
        checked = dict(kwargs, host=host.replace(NODE_PORT_PLACEHOLDER, str(CHECK_NODE_PORT)))
        try:
            LoadSpec(**cast(dict[str, Any], checked))
        except SpecError as exc:
            self.located(loc, exc, kwargs, "chaoskit.load.LoadSpec")
            return None
        return kwargs

    def faults(
        self, workloads: tuple[Workload, ...] | None, run_seconds: float | None
    ) -> tuple[TimelineFault, ...] | None:
        raw = self.data.get("faults")
        if not isinstance(raw, list):
            return None
        out = []
        for index, item in enumerate(raw):
            fault = self.fault(("faults", index), item, workloads, run_seconds)
            if fault is not None:
                out.append(fault)
        return tuple(out) if len(out) == len(raw) else None

    def fault(
        self, loc: Loc, raw: dict[str, Any], workloads: tuple[Workload, ...] | None, run_seconds: float | None
    ) -> TimelineFault | None:
        doc = self.doc
        if not doc.clean(loc):
            return None
        kind = str(raw["kind"])
        options = fault_options(kind)
        given = {k: v for k, v in raw.items() if k not in _FAULT_KEYS}
        # The schema says the same; the signature is the truth, should the two ever part.
        for key in given:
            if key not in options.parameters:
                doc.add((*loc, key), f"{kind} takes no option {key}", f"{kind} takes {', '.join(options.parameters)}")
        for key in options.required:
            if key not in given:
                doc.add((*loc, key), f"is missing: a {kind} fault needs it", f"add {key}:", line=doc.line(loc))
        if not doc.clean(loc):
            return None
        kwargs = {k: _coerce(v, options.hints[k]) for k, v in given.items()}
        if "namespace" in options.parameters:
            kwargs.setdefault("namespace", self.default_namespace())
        self.fault_spec(loc, kind, kwargs)
        at, problem, fix = _duration(raw["at"], allow_zero=True)
        if at is None:
            doc.add((*loc, "at"), problem, fix)
        duration_raw = raw.get("duration")
        until_recovered = duration_raw == UNTIL_RECOVERED
        duration = None
        if duration_raw is not None and not until_recovered:
            duration, problem, fix = _duration(duration_raw)
            if duration is None:  # the schema's pattern lets "0s" through
                doc.add((*loc, "duration"), problem, fix)
        if until_recovered and workloads is not None and not workloads:
            doc.add(
                (*loc, "duration"),
                "until_recovered needs workloads to watch, and the file names none",
                "add workloads: [{kind: Deployment, name: web}], or give a duration such as 30s",
            )
        if at is not None and run_seconds is not None:
            if at >= run_seconds:
                doc.add(
                    (*loc, "at"),
                    f"{_show(raw['at'])} is not before the end of the load (load.run_seconds: {run_seconds:g})",
                    f"inject it earlier, or make load.run_seconds more than {at:g}",
                )
            elif duration is not None and at + duration > run_seconds:
                doc.add(
                    (*loc, "duration"),
                    f"the fault would still be held when the load ends ({at:g} s + {duration:g} s > "
                    f"load.run_seconds: {run_seconds:g})",
                    f"hold it at most {run_seconds - at:g}s, or make load.run_seconds at least {at + duration:g}",
                )
        if not doc.clean(loc) or at is None:
            return None
        return TimelineFault(
            kind=kind,
            method=options.method,
            options=MappingProxyType(kwargs),
            at=at,
            duration=duration,
            until_recovered=until_recovered,
            line=doc.line(loc),
        )

    def fault_spec(self, loc: Loc, kind: str, kwargs: Mapping[str, object]) -> None:
        """Build the fault's spec (and its blast-radius cap) as its Chaos method would: refused here, not later."""
        spec_class = _FAULT_SPECS[kind]
        fields = {f.name for f in dataclasses.fields(spec_class)}
        arguments = {k: (_CHECK_NAMESPACE if v == NAMESPACE_PLACEHOLDER else v) for k, v in kwargs.items()}
        try:
            spec_class(**{k: v for k, v in arguments.items() if k in fields})
            if kwargs.get("max_share") is not None:
                Safety(max_share=cast(float, kwargs["max_share"]))
        except ChaoskitError as exc:
            self.located(loc, exc, kwargs, f"chaoskit.{spec_class.__name__}")

    def objectives(
        self, loc: Loc, workloads: tuple[Workload, ...] | None, *, steady: bool
    ) -> tuple[Objective, ...] | None:
        raw = _at(self.data, loc)
        if not isinstance(raw, list):
            return None
        out = []
        for index, item in enumerate(raw):
            objective = self.objective((*loc, index), item, workloads, steady)
            if objective is not None:
                out.append(objective)
        return tuple(out) if len(out) == len(raw) else None

    def objective(
        self, loc: Loc, raw: dict[str, Any], workloads: tuple[Workload, ...] | None, steady: bool
    ) -> Objective | None:
        if not self.doc.clean(loc):
            return None
        window = raw.get("window", "whole")
        if steady and "recovery" in raw:
            self.doc.add(
                (*loc, "recovery"),
                "the steady state holds no fault, so there is no recovery to time",
                "move it to objectives:",
            )
            return None
        if steady and window != "whole":
            self.doc.add(
                (*loc, "window"),
                f"the steady state holds no fault, so it has no {window} window",
                "drop window (the steady state is judged whole)",
            )
            return None
        if "recovery" in raw and workloads is not None and not workloads:
            self.doc.add(
                (*loc, "recovery"),
                "recovery is timed on the workloads, and the file names none",
                "add workloads: [{kind: Deployment, name: web, service: web}], or drop this objective",
            )
            return None
        try:
            if "availability" in raw:
                return Availability(raw["availability"], window)
            if "latency" in raw:
                return LatencyPercentile(raw["latency"]["percentile"], raw["latency"]["at_most_ms"], window)
            if "error_burst" in raw:
                return ErrorBurst(raw["error_burst"]["at_most_seconds"], window)
            if "recovery" in raw:
                return RecoveryTime(raw["recovery"]["within_seconds"])
            promql = raw["promql"]
            query = self.query((*loc, "promql", "query"), promql["query"])
            if query is None:
                return None
            return PromQL(query, promql.get("at_most"), promql.get("at_least"), window)
        except SpecError as exc:
            key = next(k for k in raw if k != "window")
            self.located(loc, exc, {key: raw[key], "window": window}, "chaoskit.slo")
            return None

    def query(self, loc: Loc, query: str) -> str | None:
        """A PromQL query with ``${namespace}`` filled in (kept under ``namespace: auto``); None if refused."""
        for name, _ in placeholders(query):
            if name != "namespace":
                self.doc.add(loc, f"${{{name}}} is not a placeholder of a query", "write ${namespace} or the value")
                return None
        if self.namespace == AUTO:
            return query
        return fill_placeholders(query, {"namespace": self.default_namespace()})

    def steady_state(self) -> SteadyState | None:
        raw = self.data.get("steady_state")
        if not isinstance(raw, dict) or not self.doc.clean(("steady_state",)):
            return None
        objectives = self.objectives(("steady_state", "objectives"), None, steady=True)
        if objectives is None:
            return None
        return SteadyState(float(raw["seconds"]), objectives)

    def stop_conditions(self) -> tuple[StopCondition, ...] | None:
        out: list[StopCondition] = []
        raw = self.data.get("stop_conditions", [])
        for index, item in enumerate(raw):
            loc: Loc = ("stop_conditions", index)
            if not self.doc.clean(loc):
                continue
            query = self.query((*loc, "promql"), item["promql"]) if "promql" in item else None
            if "promql" in item and query is None:
                continue
            try:
                out.append(_stop_condition(item if query is None else {**item, "promql": query}))
            except SpecError as exc:
                self.located(loc, exc, item, "chaoskit.stops")
        return tuple(out) if len(out) == len(raw) else None


def _stop_condition(raw: Mapping[str, Any]) -> StopCondition:
    if "availability_below" in raw:
        return AvailabilityBelow(
            raw["availability_below"], raw.get("over_seconds", 10.0), int(raw.get("min_requests", 5))
        )
    if "latency_above_ms" in raw:
        return LatencyAbove(
            raw["latency_above_ms"],
            raw.get("percentile", 95.0),
            raw.get("over_seconds", 10.0),
            int(raw.get("min_requests", 5)),
        )
    if "error_burst_over_seconds" in raw:
        return ErrorBurstOver(raw["error_burst_over_seconds"])
    return PromQLAbove(raw["promql"], raw.get("above"), raw.get("below"))


def _default_name(source: str) -> str:
    name = Path(source).name
    for suffix in (SUFFIX, ".chaos.yml", ".yaml", ".yml"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return name
