"""The loader's third pass: what no schema can say. Each fault's options against its Chaos method, its
spec built; the load, objectives and stop conditions built by their own classes; times against the run's;
files that must exist. Then the :class:`~chaoskit.gameday.model.ExperimentFile`."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

import yaml

from chaoskit.adapters.status import WorkloadKind
from chaoskit.errors import ChaoskitError, SpecError, UsageError
from chaoskit.experiment import Workload
from chaoskit.faults import Safety
from chaoskit.gameday.document import Document, field_name
from chaoskit.gameday.explain import value_at
from chaoskit.gameday.model import (
    AUTO,
    CHECK_NAMESPACE,
    CHECK_NODE_PORT,
    DEFAULT_HOST,
    DEFAULT_SETTLE_SECONDS,
    FAULT_KEYS,
    FAULT_SPECS,
    FORWARD_HOST,
    FORWARD_PORT_PLACEHOLDER,
    NAMESPACE_PLACEHOLDER,
    NODE_PORT_PLACEHOLDER,
    SUFFIX,
    UNTIL_RECOVERED,
    ClusterChoice,
    Deploy,
    ExperimentFile,
    Loc,
    SteadyState,
    TimelineFault,
    fault_options,
    fill_placeholders,
    placeholders,
)
from chaoskit.gameday.words import coerce, culprit, read_duration, show, split_message
from chaoskit.images import image_name
from chaoskit.load import LoadSpec
from chaoskit.prometheus.deploy import check_rules
from chaoskit.prometheus.service import PrometheusService
from chaoskit.slo import (
    AlertFires,
    AlertResolves,
    Availability,
    ErrorBurst,
    LatencyPercentile,
    Objective,
    PromQL,
    RecoveryTime,
)
from chaoskit.stops import AvailabilityBelow, ErrorBurstOver, LatencyAbove, PromQLAbove, StopCondition


class Semantics:
    """The checks no schema can make, on the parts the schema pass left clean; then the objects."""

    def __init__(self, doc: Document, data: dict[str, Any]) -> None:
        self.doc = doc
        self.data = data
        self.namespace = data.get("namespace") if doc.clean(("namespace",)) else None

    def located(self, loc: Loc, exc: ChaoskitError, given: Mapping[str, object], owner: str) -> None:
        """A class's refusal of what the file gave it, at the key its message names (else at ``loc``)."""
        message = str(exc)
        key = culprit(message, given)
        problem, fix = split_message(message, owner)
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
            prometheus_url=self.prometheus_url(),
            prometheus_service=self.prometheus_service(),
            prometheus_rules=self.prometheus_rules(),
        )

    def prometheus_rules(self) -> str | None:
        """The text of ``prometheus: {rules: FILE}`` (relative to the file), checked to be a rules file."""
        loc: Loc = ("prometheus", "rules")
        raw = self.data.get("prometheus")
        if not isinstance(raw, dict) or "rules" not in raw or not self.doc.clean(("prometheus",)):
            return None
        path = (self.doc.base / str(raw["rules"])).expanduser()
        try:
            return check_rules(path.read_text(encoding="utf-8"), f"the rules in {path}")
        except (OSError, UnicodeDecodeError) as exc:
            self.doc.add(
                loc, f"{path} cannot be read ({exc})", f"give a rules file's path relative to {self.doc.base}/"
            )
        except UsageError as exc:
            self.doc.add(loc, str(exc), "write it as Prometheus's rules files are: groups: [{name, rules: [...]}]")
        return None

    def prometheus_url(self) -> str | None:
        raw = self.data.get("prometheus")
        return str(raw["url"]) if isinstance(raw, dict) and "url" in raw else None

    def prometheus_service(self) -> PrometheusService | None:
        """``prometheus: {service, namespace, port}``; the schema holds each field's form, and here what it cannot
        say: a url or a service, one of them, and a service with its namespace and port."""
        loc: Loc = ("prometheus",)
        raw = self.data.get("prometheus")
        if not isinstance(raw, dict) or not self.doc.clean(loc):
            return None
        named = [key for key in ("service", "namespace", "port") if key in raw]
        if "rules" in raw and ("url" in raw or named):
            self.doc.add(
                (*loc, "rules"),
                "rules go to the Prometheus the run deploys, and url or service names one already running",
                "drop rules (the cluster's own Prometheus evaluates its own rules), or url and service",
            )
            return None
        if "rules" in raw:
            return None
        if "url" in raw and named:
            self.doc.add(
                loc,
                f"gives url and {', '.join(named)}: the run asks one Prometheus",
                "keep url for a Prometheus the host reaches, or service, namespace and port for the cluster's own "
                "through a port-forward",
            )
            return None
        if "url" in raw:
            return None
        missing = [key for key in ("service", "namespace", "port") if key not in raw]
        if missing:
            self.doc.add(
                (*loc, missing[0]),
                "is missing: prometheus needs url, or service with namespace and port",
                "add url: http://127.0.0.1:9090, or service: prometheus-k8s, namespace: monitoring, port: 9090",
            )
            return None
        return PrometheusService(str(raw["namespace"]), str(raw["service"]), int(raw["port"]))

    def default_namespace(self) -> str:
        """The namespace of a fault or workload that names none (a stand-in when the file's own is wrong)."""
        if self.namespace is None:
            return CHECK_NAMESPACE
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
            self.doc.add(loc, f"{show(value)} is neither a directory nor an image name", str(exc))
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
            {"namespace": CHECK_NAMESPACE, "node_port": str(CHECK_NODE_PORT)}
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
        kwargs: dict[str, object] = {k: coerce(v, hints.get(k)) for k, v in raw.items()}
        if "port_forward" in raw:  # its shape is the schema's; here what the schema cannot say
            if "host" in raw:
                self.doc.add(
                    (*loc, "port_forward"),
                    "gives both host and port_forward: the load goes to one of them",
                    "drop host to load through the port-forward, or port_forward to load the host",
                )
                return None
            kwargs["host"] = FORWARD_HOST
        elif not self.host(loc, raw, kwargs):
            return None
        if isinstance(kwargs.get("locustfile"), str):
            locustfile = (self.doc.base / str(kwargs["locustfile"])).expanduser()
            if not locustfile.is_file():
                fix = f"give the locustfile's path relative to {self.doc.base}/"
                self.doc.add((*loc, "locustfile"), f"there is no file {locustfile}", fix)
                return None
            kwargs["locustfile"] = str(locustfile.resolve())
        host = str(kwargs["host"]).replace(NODE_PORT_PLACEHOLDER, str(CHECK_NODE_PORT))
        host = host.replace(NAMESPACE_PLACEHOLDER, CHECK_NAMESPACE if self.namespace == AUTO else str(self.namespace))
        checked = {k: v for k, v in kwargs.items() if k != "port_forward"} | {
            "host": host.replace(FORWARD_PORT_PLACEHOLDER, str(CHECK_NODE_PORT))
        }
        try:
            LoadSpec(**cast(dict[str, Any], checked))
        except SpecError as exc:
            self.located(loc, exc, kwargs, "chaoskit.load.LoadSpec")
            return None
        return kwargs

    def host(self, loc: Loc, raw: Mapping[str, object], kwargs: dict[str, object]) -> bool:
        """``load.host``, defaulted, with no placeholder but a deployed system's ``${node_port}`` (and, for
        workers in the cluster, the run's ``${namespace}``: ``http://web.${namespace}.svc:80``)."""
        kwargs.setdefault("host", DEFAULT_HOST)
        host = str(kwargs["host"])
        allowed = ("node_port", "namespace") if kwargs.get("in_cluster") is True else ("node_port",)
        for name, _ in placeholders(host):
            if name not in allowed:
                fix = "write the port, or ${node_port} for the deployed system's NodePort"
                if name == "namespace":
                    fix = "${namespace} is for workers in the cluster (in_cluster: true) sending to a Service"
                self.doc.add((*loc, "host"), f"${{{name}}} is not a placeholder of the host", fix)
                return False
        if NODE_PORT_PLACEHOLDER in host and "deploy" not in self.data:
            where: Loc = (*loc, "host") if "host" in raw else loc
            problem = (
                f"{host} needs the NodePort of a deployed system, and the file deploys none"
                if "host" in raw
                else f"gives no host, and the default {DEFAULT_HOST} needs the NodePort of a deployed system"
            )
            fix = "give host: http://127.0.0.1:PORT with the NodePort your Service publishes, or port_forward:"
            self.doc.add(where, problem, fix)
            return False
        return True

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
        given = {k: v for k, v in raw.items() if k not in FAULT_KEYS}
        # The schema says the same; the signature is the truth, should the two ever part.
        for key in given:
            if key not in options.parameters:
                doc.add((*loc, key), f"{kind} takes no option {key}", f"{kind} takes {', '.join(options.parameters)}")
        for key in options.required:
            if key not in given:
                doc.add((*loc, key), f"is missing: a {kind} fault needs it", f"add {key}:", line=doc.line(loc))
        if not doc.clean(loc):
            return None
        kwargs = {k: coerce(v, options.hints[k]) for k, v in given.items()}
        if "namespace" in options.parameters:
            kwargs.setdefault("namespace", self.default_namespace())
        self.fault_spec(loc, kind, kwargs)
        at, problem, fix = read_duration(raw["at"], allow_zero=True)
        if at is None:
            doc.add((*loc, "at"), problem, fix)
        duration_raw = raw.get("duration")
        until_recovered = duration_raw == UNTIL_RECOVERED
        duration = None
        if duration_raw is not None and not until_recovered:
            duration, problem, fix = read_duration(duration_raw)
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
                    f"{show(raw['at'])} is not before the end of the load (load.run_seconds: {run_seconds:g})",
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
        spec_class = FAULT_SPECS[kind]
        fields = {f.name for f in dataclasses.fields(spec_class)}
        arguments = {k: (CHECK_NAMESPACE if v == NAMESPACE_PLACEHOLDER else v) for k, v in kwargs.items()}
        try:
            spec_class(**{k: v for k, v in arguments.items() if k in fields})
            if kwargs.get("max_share") is not None:
                Safety(max_share=cast(float, kwargs["max_share"]))
        except ChaoskitError as exc:
            self.located(loc, exc, kwargs, f"chaoskit.{spec_class.__name__}")

    def objectives(
        self, loc: Loc, workloads: tuple[Workload, ...] | None, *, steady: bool
    ) -> tuple[Objective, ...] | None:
        raw = value_at(self.data, loc)
        if not isinstance(raw, list):
            return None
        out: list[Objective] = []
        judged = 0
        for index, item in enumerate(raw):
            objective = self.objective((*loc, index), item, workloads, steady)
            if objective is not None:
                out.extend(objective if isinstance(objective, tuple) else (objective,))
                judged += 1
        return tuple(out) if judged == len(raw) else None

    def objective(
        self, loc: Loc, raw: dict[str, Any], workloads: tuple[Workload, ...] | None, steady: bool
    ) -> Objective | tuple[Objective, ...] | None:
        """One objective of the file (``alert:`` gives one for each of ``fires_within`` and
        ``resolves_within``)."""
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
        if steady and "alert" in raw:
            self.doc.add(
                (*loc, "alert"),
                "the steady state holds no fault, so no alert is expected to fire",
                "move it to objectives:",
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
            if "alert" in raw:
                alert = raw["alert"]
                judged: list[Objective] = []
                if "fires_within" in alert:
                    judged.append(AlertFires(alert["name"], alert["fires_within"]))
                if "resolves_within" in alert:
                    judged.append(AlertResolves(alert["name"], alert["resolves_within"]))
                return tuple(judged)
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
