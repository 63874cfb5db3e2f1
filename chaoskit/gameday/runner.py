"""Run an experiment file: deploy, steady state, the fault timeline under load, one verdict.

:class:`GameDay` serves ``chaoskit run FILE`` and the pytest items of
``*.chaos.yaml`` alike:

1. **prepare**: a fresh namespace for ``namespace: auto`` (owned by this
   process, so a killed run's is swept), the images built and loaded, the
   manifests applied with their placeholders filled in, the listed workloads
   waited for;
2. **steady state** (optional): a short load whose objectives must hold before
   any fault, else the run fails without injecting anything (its result, with
   the steady state's numbers, is reported like any other);
3. **the experiment**: the load, the recovery watch of the first workload, the
   stop conditions (:mod:`chaoskit.stops`), and the timeline of faults
   (:mod:`.timeline`) played from the main thread; commands (``pause``,
   ``resume``, ``abort``) arrive from the keys or a test through
   :meth:`GameDay.command`; Ctrl-C and SIGTERM abort;
4. **teardown**: every fault undone, the namespace deleted (``auto`` only).

An abort (a key, Ctrl-C, SIGTERM) undoes everything at once, stops the load
and judges what was seen: the verdict fails with "aborted by the operator".
A stop condition's trip or ``chaoskit abort`` from another terminal undo the
faults and keep the load on to watch the recovery, then judge.
"""

from __future__ import annotations

import dataclasses
import functools
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.portforward import port_forward
from chaoskit.adapters.shell import say, warn
from chaoskit.chaos import Chaos
from chaoskit.cluster.base import Cluster
from chaoskit.errors import SafetyError, SpecError
from chaoskit.experiment import Experiment, ExperimentSpec, Prometheus
from chaoskit.faults.base import FaultRecord
from chaoskit.gameday.spec import ExperimentFile, fill_placeholders
from chaoskit.gameday.timeline import PlayedFault, Timeline
from chaoskit.gameday.view import WINDOW_SECONDS, Snapshot
from chaoskit.load import Load, RequestRecord
from chaoskit.load.pods import WorkerPods
from chaoskit.namespaces import owned_namespace
from chaoskit.observe import RecoveryWatch
from chaoskit.results import ExperimentResult, Series
from chaoskit.slo import AlertFires, AlertResolves, PromQL, Windows, evaluate, percentile
from chaoskit.state import leases
from chaoskit.stops import PromQLAbove

TICK_SECONDS = 0.1
OPERATOR_ABORT = "aborted by the operator"


class View(Protocol):
    interval: float

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def show(self, snapshot: Snapshot) -> None: ...


@dataclass
class Prepared:
    namespace: str
    node_port: int | None
    images: dict[str, str] = field(default_factory=dict)
    created_namespace: bool = False
    forward_port: int | None = None
    """The local port of the load's port-forward (``load.port_forward``), open until the teardown."""
    forwarding: ExitStack = field(default_factory=ExitStack)


class GameDay:
    """One run of an experiment file against ``cluster``, faults through ``chaos``."""

    def __init__(
        self,
        experiment: ExperimentFile,
        cluster: Cluster,
        kube: Kube,
        chaos: Chaos,
        prometheus: Prometheus | None = None,
        on_result: Sequence[Callable[[ExperimentResult], None]] = (),
    ) -> None:
        self.file = experiment
        self.cluster = cluster
        self.kube = kube
        self.chaos = chaos
        self.prometheus = prometheus
        self.on_result = on_result
        self.commands: queue.Queue[str] = queue.Queue()
        self.phase = "preparing"
        self.message = ""
        self.spec_: ExperimentSpec | None = None
        """The experiment's spec once its run is about to start (the view's time left reads it)."""
        self.run_: Experiment | None = None
        self.timeline: Timeline | None = None
        self.watches: list[RecoveryWatch] = []
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._operator_abort: str | None = None

    # --- commands --------------------------------------------------------------------------------

    def command(self, what: str) -> None:
        """``pause``, ``resume`` or ``abort`` (the keys p, r, a), from any thread."""
        self.commands.put(what)

    def on_key(self, key: str) -> None:
        command = {"p": "pause", "r": "resume", "a": "abort", "q": "abort"}.get(key.lower())
        if command:
            self.command(command)

    # --- the run ---------------------------------------------------------------------------------

    def run(self, view: View) -> ExperimentResult:
        """Prepare, check the steady state, play the timeline under load, and judge; always tear down."""
        with ExitStack() as stack:
            if self.prometheus is None and self._needs_prometheus():
                stack.enter_context(self._own_prometheus())
            prepared = self.prepare()
            stack.callback(self.teardown, prepared)
            experiment = self.file.with_namespace(prepared.namespace) if self.file.namespace == "auto" else self.file
            with view, self._showing(view):  # the last snapshot is shown before the view closes
                self.preflight(experiment)
                if experiment.steady_state is not None:
                    failed = self.steady_state(experiment, prepared)
                    if failed is not None:
                        return failed
                return self.execute(experiment, prepared)
        raise AssertionError("unreachable")

    def _needs_prometheus(self) -> bool:
        steady = self.file.steady_state.objectives if self.file.steady_state else ()
        wanted = (*self.file.objectives, *steady, *self.file.stop_conditions)
        return any(isinstance(o, PromQL | PromQLAbove | AlertFires | AlertResolves) for o in wanted)

    @contextmanager
    def _own_prometheus(self) -> Iterator[None]:
        """Prometheus for the file's PromQL and alert objectives and stop conditions, deployed for this run with
        the file's rules."""
        from chaoskit.prometheus import deploy_prometheus, remove_prometheus

        self.message = "deploying Prometheus for the PromQL and alert objectives"
        deployment = deploy_prometheus(self.kube, self.cluster, rules=self.file.prometheus_rules)
        with deployment.client() as client:
            self.prometheus = client
            try:
                yield
            finally:
                self.prometheus = None
                remove_prometheus(self.kube, deployment.namespace)

    def prepare(self) -> Prepared:
        file = self.file
        namespace = file.namespace
        created = False
        if namespace == "auto":
            base = "".join(c if c.isalnum() else "-" for c in file.name.lower()).strip("-")[:30].strip("-") or "run"
            namespace = f"ck-{base}-{uuid.uuid4().hex[:5]}"
            say(f"creating namespace {namespace}")
            body: Any = owned_namespace(namespace, leases.owner(self.cluster).ensure(self.kube))
            self.kube.core.create_namespace(body)
            self.kube.wait_for_default_service_account(namespace)
            created = True
        else:
            try:
                self.kube.core.read_namespace(namespace)
            except Exception as exc:
                if getattr(exc, "status", None) == 404:
                    raise file.error(
                        "namespace",
                        f"namespace {namespace!r} does not exist in cluster {self.cluster.name}",
                        "deploy the system first, or write namespace: auto with a deploy: section",
                    ) from None
                raise
        prepared = Prepared(namespace, None, created_namespace=created)
        try:
            needs_port = file.needs_node_port or (
                file.deploy is not None and any("${node_port}" in p.read_text() for p in file.deploy.manifests)
            )
            if needs_port:
                prepared.node_port = self.cluster.free_node_port(self.kube)
            if file.deploy is not None:
                self._deploy(prepared)
            if file.port_forward is not None:
                self._forward(prepared, *file.port_forward)
        except BaseException:
            self.teardown(prepared)
            raise
        return prepared

    def _forward(self, prepared: Prepared, service: str, port: int) -> None:
        """The load's port-forward to ``service``'s ``port``, open until the teardown."""
        self.phase, self.message = "preparing", f"opening a port-forward to service {service}"
        try:
            forward = port_forward(self.kube, prepared.namespace, f"service/{service}", port)
            prepared.forward_port = prepared.forwarding.enter_context(forward)
        except SpecError as exc:
            raise self.file.error(
                "load.port_forward", str(exc), "deploy the Service first, or name one that is there"
            ) from None
        say(
            f"the load goes through a port-forward: 127.0.0.1:{prepared.forward_port} to service "
            f"{prepared.namespace}/{service} port {port}, each connection to its next ready pod"
        )

    def _deploy(self, prepared: Prepared) -> None:
        from chaoskit.images import ClusterImages

        deploy = self.file.deploy
        assert deploy is not None
        images = ClusterImages(self.cluster)
        for name, source in deploy.images.items():
            self.phase, self.message = "preparing", f"building and loading image {name}"
            prepared.images[name] = images(source)
        values = {"namespace": prepared.namespace, **{f"image.{k}": v for k, v in prepared.images.items()}}
        if prepared.node_port is not None:
            values["node_port"] = str(prepared.node_port)
        objects: list[dict[str, Any]] = []
        for path in deploy.manifests:
            text = fill_placeholders(path.read_text(), values)
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("metadata", {}).setdefault("namespace", prepared.namespace)
                    objects.append(doc)
        say(f"applying {len(objects)} object(s) of {', '.join(p.name for p in deploy.manifests)}")
        self.kube.apply(objects)
        for kind, name in deploy.wait:
            self.message = f"waiting for {kind} {name}"
            took = self.kube.wait_whole(prepared.namespace, name, kind, timeout=180)
            say(f"{kind} {prepared.namespace}/{name} whole in {took:.1f} s")

    def steady_state(self, experiment: ExperimentFile, prepared: Prepared) -> ExperimentResult | None:
        """Run the steady state's short load and judge it; None when it holds, else the run's result: a
        failure saying so, with the steady state's numbers, and no fault injected (it is reported too)."""
        steady = experiment.steady_state
        assert steady is not None
        self.phase, self.message = "steady state", f"checking the steady state for {steady.seconds:g} s"
        spec = experiment.load_spec(prepared.node_port, steady.seconds, prepared.forward_port)
        with Load(spec, WorkerPods(self.kube, self.cluster) if spec.in_cluster else None) as load:
            result = load.wait()
        records = result.measured()
        reason = "the steady state does not hold before any fault, so nothing was injected"
        verdict = evaluate(
            steady.objectives,
            records,
            Windows(result.warmup_ended_at, result.ended_at, None, None),
            prometheus=self.prometheus.values if self.prometheus is not None else None,
            partial_data=result.stream.shortfall,
        )
        if verdict.passed:
            say(f"steady state holds: {', '.join(m.line() for m in verdict.measurements)}")
            return None
        self.phase, self.message = "done", reason
        failed = ExperimentResult(
            name=experiment.name,
            started=result.warmup_ended_at,
            ended=result.ended_at,
            verdict=dataclasses.replace(verdict, aborted=reason),
            series=Series.from_records(records, result.warmup_ended_at, result.ended_at),
            load={"spec": dataclasses.asdict(spec), "requests": len(records), "phase": "steady state"},
            kubernetes=self.kube.kubernetes_version(),
        )
        for callback in self.on_result:
            callback(failed)
        return failed

    def preflight(self, experiment: ExperimentFile) -> None:
        """Plan every fault now, injecting nothing: a selector that matches nothing, a safety rule that
        refuses it, is an error naming the fault's line before any load or fault starts."""
        dry = Chaos(self.cluster, self.kube, dataclasses.replace(self.chaos.safety, dry_run=True, preflight=True))
        for index in range(len(experiment.faults)):
            with planned(experiment, index, dry):
                pass

    def execute(self, experiment: ExperimentFile, prepared: Prepared) -> ExperimentResult:
        spec = ExperimentSpec(
            experiment.name,
            experiment.load_spec(prepared.node_port, forward_port=prepared.forward_port),
            experiment.objectives,
            experiment.workloads[0] if experiment.workloads else None,
            experiment.settle_seconds,
            experiment.stop_conditions,
        )
        run = Experiment(spec, self.chaos, prometheus=self.prometheus, on_result=self.on_result, check=False)
        played = [
            PlayedFault(i, f.kind, f.at, f.duration, f.until_recovered, functools.partial(f.enter, self.chaos))
            for i, f in enumerate(experiment.faults)
        ]
        self.timeline = Timeline(played, run.recovered_now)
        self.phase = "warm-up"  # the steady state's message goes: the view says what happens now
        self.message = f"the load warms up for {spec.load.warmup_seconds:g} s; the timeline starts after it"
        self.spec_ = spec
        with ExitStack() as watches:
            for w in experiment.workloads[1:]:
                self.watches.append(
                    watches.enter_context(RecoveryWatch(self.kube, w.namespace, w.name, w.service, w.kind))
                )
            with run:
                self.run_ = run
                self.phase, self.message = "running", ""
                try:
                    self._play(run, self.timeline)
                except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (chaoskit's handler raises it)
                    self._operator_abort = OPERATOR_ABORT + " (interrupted)"
                finally:
                    self.phase = "aborting" if self._operator_abort else "recovering"
                    self.timeline.undo_all()
                if self._operator_abort:
                    run.abort(self._operator_abort)
                    run.end_now()
            self.phase = "done"
        assert run.result is not None
        return run.result

    def _play(self, run: Experiment, timeline: Timeline) -> None:
        timeline.start()
        deadline = time.monotonic() + run.spec.load.run_seconds
        while run.aborted is None:
            self._take_commands(timeline)
            if self._operator_abort:
                return
            timeline.tick()
            if timeline.done:
                return
            if time.monotonic() > deadline:
                self.message = "the load's run time ended before the timeline did"
                return
            time.sleep(TICK_SECONDS)

    def _take_commands(self, timeline: Timeline) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if command == "abort":
                self._operator_abort = OPERATOR_ABORT
                self.message = "abort: undoing every fault, stopping the load"
            elif command == "pause" and not timeline.paused:
                undone = timeline.pause()
                self.phase, self.message = "paused", f"paused: {len(undone)} fault(s) undone; r resumes"
                if self.run_ is not None:
                    self.run_.mark("paused")
            elif command == "resume" and timeline.paused:
                again = timeline.resume()
                self.phase, self.message = "running", f"resumed: {len(again)} fault(s) injected again"
                if self.run_ is not None:
                    self.run_.mark("resumed")

    def teardown(self, prepared: Prepared) -> None:
        prepared.forwarding.close()
        if prepared.created_namespace:
            say(f"deleting namespace {prepared.namespace}")
            try:
                self.kube.core.delete_namespace(prepared.namespace, propagation_policy="Background")
            except Exception as exc:  # a namespace left behind is swept by the next run; say so, do not mask
                warn(f"could not delete namespace {prepared.namespace} ({exc}); 'chaoskit cleanup' deletes it")

    # --- the view --------------------------------------------------------------------------------

    @contextmanager
    def _showing(self, view: View) -> Iterator[None]:
        stop = threading.Event()

        def show_forever() -> None:
            while not stop.wait(view.interval):
                view.show(self.snapshot())

        thread = threading.Thread(target=show_forever, name="chaoskit-view", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)
            view.show(self.snapshot())

    def snapshot(self) -> Snapshot:
        """Where the run stands now, for the view (any thread)."""
        run, timeline = self.run_, self.timeline
        now = time.time()
        elapsed = 0.0
        rps: float | None = None  # none yet: the warm-up's requests are not the run's
        error_rate, p95 = None, None
        workloads: list[str] = []
        spec = self.spec_
        # What is left of the run: the timeline's planned end plus the settle time, within the load's limit
        # (a wait for recovery may add to it; an abort ends it sooner).
        remaining = 0.0
        if spec is not None:
            remaining = min(
                (timeline.left() if timeline is not None else 0.0) + spec.settle_for(), spec.load.run_seconds
            )
        if run is not None and run.load is not None:
            load = run.load
            with self._lock:
                self._records.extend(load.records_from(len(self._records)))
                recent = [r for r in self._records if now - WINDOW_SECONDS <= r.started <= now]
            elapsed = max(0.0, now - load.warmup_ended_at)
            remaining = min(remaining, max(0.0, run.spec.load.run_seconds - elapsed))
            rps = len(recent) / WINDOW_SECONDS
            if recent:
                error_rate = sum(1 for r in recent if not r.ok) / len(recent)
                p95 = percentile(sorted(r.latency_ms for r in recent if r.ok), 95)
            for watch in [w for w in [run.watch] if w is not None] + self.watches:
                workloads.append(_ready(watch))
        faults = timeline.describe(timeline.clock()) if timeline is not None else []
        stops = [(r.text, r.tripped) for r in run.readings] if run is not None else []
        return Snapshot(
            name=self.file.name,
            phase=self.phase,
            elapsed=elapsed,
            remaining=remaining,
            faults=faults,
            rps=rps,
            error_rate=error_rate,
            p95_ms=p95,
            workloads=workloads,
            stops=stops,
            aborted=run.aborted if run is not None else None,
            message=self.message,
        )


def _ready(watch: RecoveryWatch) -> str:
    source = watch.workload_source
    last = next((e for e in reversed(watch.events) if e.source == source), None)
    counts = f"{last.ready}/{last.desired} ready" if last is not None else "no status yet"
    return f"{watch.name} {counts}"


@contextmanager
def planned(experiment: ExperimentFile, index: int, dry: Chaos) -> Iterator[FaultRecord]:
    """Plan fault ``index`` of the file through ``dry`` (a dry-run ``Chaos``): its record, with the targets
    it would hit. A selector that matches nothing or a safety rule that refuses it is an error located in
    the file (``file:line: faults[i]: ...``) with its fix, as the loader's own are: the preflight of a run
    and ``chaoskit run --dry-run`` say it alike."""
    fault = experiment.faults[index]
    try:
        with fault.enter(dry) as record:
            yield record
    except (SpecError, SafetyError) as exc:
        raise experiment.error(
            f"faults[{index}]",
            f"{fault.kind} cannot run: {exc}",
            "fix its options (or the system it targets) before the run; nothing was injected",
        ) from None


def result_exit_code(result: ExperimentResult) -> int:
    """0 for a run that passed, 1 for one that failed, was aborted or ended in an error."""
    return 0 if result.outcome == "passed" else 1
