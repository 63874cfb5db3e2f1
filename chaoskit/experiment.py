"""An experiment: load on the system, faults injected under it, one verdict with the numbers.

``with Experiment(spec, chaos) as run:`` checks what can be checked before
anything starts (a PromQL objective needs a reachable Prometheus), starts the
recovery watch and the load, and returns once the load's warm-up is over. The
block injects faults through ``chaos``; every fault injected while the block
runs belongs to the experiment. On the way out the experiment waits until the
watched workload is whole again (bounded by the load's own run time), keeps
the load on for ``settle_seconds`` so there is an "after recovery" window,
stops the load, and judges: :attr:`Experiment.result` holds the verdict, the
fault records, the timeline, the load series and how the load's record stream
did, and the verdict is checked (a violated SLO raises
:class:`~chaoskit.slo.SloViolation`) unless the block itself raised.

The recovery time is each fault's own: from its injection until the workload
is whole again after its last injection (every round of a repeated pod kill
counts, so a kill's recovery is the one after its last round, measured from
its first). With several faults, the slowest of their recoveries is judged;
a fault injected before the workload was whole again from the one before
joins it, and the two are measured as one. The fault window runs from the
*first* injection of any fault until the workload is whole again after the
*last*. "Whole again" means a loss seen on the watch after the injection,
then the workload whole by its kind's own status (a Deployment, StatefulSet,
DaemonSet or ReplicaSet) and the Service's ready endpoints (EndpointSlices)
both back. Without a watched workload the window ends when the last fault is
undone (or last injected, for a fault with nothing to undo).

A verdict needs every request: if the load stream lost records (Locust counted
more requests than arrived) or sent lines that could not be read, every
objective fails, saying what is missing.

Clocks: the load's records and the fault records carry Unix time; the watch
stamps its events with the monotonic clock, converted here with one offset
taken when the experiment starts, so every line of the timeline shares one axis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Protocol

from chaoskit.adapters.status import WorkloadKind, check_workload_kind
from chaoskit.chaos import Chaos, external_abort_reason
from chaoskit.errors import ClusterError, FaultUnsupported, FaultVetoed, SpecError
from chaoskit.evidence import cluster_events, involved_pods, pod_logs
from chaoskit.faults.base import FaultRecord
from chaoskit.load import Load, LoadSpec, RequestRecord, StreamStats
from chaoskit.load.pods import WorkerPods
from chaoskit.observe import RecoveryWatch
from chaoskit.results import ExperimentResult, Series, TimelineEvent, Timings
from chaoskit.slo import AlertFires, AlertResolves, Objective, PromQL, RangeQuery, Windows, evaluate
from chaoskit.state import leases
from chaoskit.state.ledger import Ledger
from chaoskit.stops import PromQLAbove, Reading, StopCondition, first_trip


@dataclass(frozen=True)
class Workload:
    """The workload (and its Service) whose recovery an experiment measures."""

    namespace: str
    """Its namespace."""
    name: str
    """Its name (the second argument, called ``deployment`` before other kinds could be watched)."""
    service: str | None = None
    """The Service in front of it, whose ready endpoints must be back too (None: no Service watched)."""
    kind: WorkloadKind = "Deployment"
    """``Deployment``, ``StatefulSet``, ``DaemonSet`` or ``ReplicaSet``; each is whole by its own status."""

    def __post_init__(self) -> None:
        check_workload_kind(self.kind)

    @property
    def deployment(self) -> str:
        """The workload's name, by its name from when only Deployments were watched."""
        return self.name


@dataclass(frozen=True)
class ExperimentSpec:
    """What to run and how to judge it."""

    name: str
    load: LoadSpec
    objectives: tuple[Objective, ...] = ()
    workload: Workload | None = None
    """Watched for the recovery time; without it, the fault window ends when the fault is undone."""
    settle_seconds: float = 5.0
    """Load kept on after recovery: the "after recovery" window."""
    stop_conditions: tuple[StopCondition, ...] = ()
    """Checked every second on the load's records (see :mod:`chaoskit.stops`): when one trips, the
    experiment's faults are undone at once, no new one may start, and the run fails saying which."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop_conditions", tuple(self.stop_conditions))
        if not self.name.strip():
            raise SpecError("an experiment needs a name")
        if self.settle_seconds < 0:
            raise SpecError(f"settle_seconds must be 0 or more, not {self.settle_seconds}")

    def settle_for(self) -> float:
        """How long the load runs on after the recovery: ``settle_seconds``, or longer where an
        :class:`~chaoskit.slo.AlertResolves` objective needs the time to see its alert stop firing (its
        ``within_s`` and 2 s for Prometheus's last evaluations), within the load's own limit."""
        resolves = [o.within_s + 2.0 for o in self.objectives if isinstance(o, AlertResolves)]
        return max([self.settle_seconds, *resolves])


class Prometheus(Protocol):
    """What an experiment needs of Prometheus: reachable, and a range query of sample values. Alert objectives
    also read ``alert_states(name, start, end)`` (:data:`chaoskit.slo.AlertStates`) where the object has it, as
    :class:`~chaoskit.prometheus.PrometheusClient` does."""

    def check_reachable(self) -> None: ...

    def values(self, query: str, start: float, end: float) -> list[float]: ...


@dataclass
class Experiment:
    """Load, faults and one verdict: ``with Experiment(spec, chaos) as run:`` (see the module's text).

    Inside the block, :meth:`record` states what only the experiment can
    measure (a recovery it saw itself, lost writes), :meth:`wait_recovered`
    waits for the watched workload, :meth:`mark` marks the timeline. After it,
    :attr:`result` holds the verdict and :attr:`records` the load's requests.
    """

    spec: ExperimentSpec
    chaos: Chaos
    prometheus: Prometheus | None = None
    on_result: Sequence[Callable[[ExperimentResult], None]] = ()
    """Called with the result as soon as it exists (the pytest plugin writes the reports)."""
    check: bool = True
    """Raise SloViolation on exit when the SLO is violated (Regressed when a figure regressed against the
    session's baseline)."""
    skip_exceptions: tuple[type[BaseException], ...] = (FaultUnsupported, FaultVetoed)
    """Exceptions that mean "cannot run here" rather than "broke": the result is a skip, with the reason."""
    group: str = ""
    """What repeated runs of one experiment share (default: its name), for the spread of their figures."""
    result: ExperimentResult | None = field(default=None, init=False)
    """The verdict and everything behind it, once the experiment has ended."""
    records: list[RequestRecord] = field(default_factory=list, init=False)
    """The measured run's request records, once the experiment has ended."""
    lost_writes: int | None = field(default=None, init=False)
    """Lost writes stated with :meth:`record`, for a LostWrites objective."""
    recovered_after: float | None = field(default=None, init=False)
    """A recovery time stated with :meth:`record`, in seconds after the first fault's injection."""
    timings: Timings = field(default_factory=Timings, init=False)
    """Where the run's wall time went (setup, warm-up, block, recovery wait, settle, teardown)."""
    aborted: str | None = field(default=None, init=False)
    """Why the run was aborted (a stop condition tripped, or ``chaoskit abort``), once it was."""
    aborted_at: float | None = field(default=None, init=False)
    """Unix time of the trip (or of the abort seen)."""
    abort_undone_at: float | None = field(default=None, init=False)
    """Unix time by which every fault in place at the trip was undone and proven."""
    readings: list[Reading] = field(default_factory=list, init=False)
    """The stop conditions' latest readings, in the spec's order."""
    _guard: _Guard | None = field(default=None, init=False, repr=False)
    _abort_seen: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _end_now: bool = field(default=False, init=False, repr=False)
    _stack: ExitStack = field(default_factory=ExitStack, init=False, repr=False)
    _load: Load | None = field(default=None, init=False, repr=False)
    _watch: RecoveryWatch | None = field(default=None, init=False, repr=False)
    _first_fault: int = field(default=0, init=False, repr=False)
    _first_fault_id: int = field(default=0, init=False, repr=False)
    _offset: float = field(default=0.0, init=False, repr=False)
    _block_started: float = field(default=0.0, init=False, repr=False)

    def __enter__(self) -> Experiment:
        needs_prometheus = any(isinstance(o, PromQL | AlertFires | AlertResolves) for o in self.spec.objectives)
        if needs_prometheus:
            if self.prometheus is None:
                raise SpecError(
                    f"experiment {self.spec.name!r} has PromQL or alert objectives but no Prometheus to ask"
                )
            self.prometheus.check_reachable()  # before any load or fault
        self._offset = time.time() - time.monotonic()
        self._first_fault = len(self.chaos.records)
        self._first_fault_id = len(self.chaos.fault_ids)
        started = time.monotonic()
        with ExitStack() as stack:
            # Another run's node-wide fault (pytest -n) would hit this experiment's pods: none while it runs.
            kube = self.chaos.kube
            stack.enter_context(leases.turns(self.chaos.cluster, kube).experiment_running(kube))
            if self.spec.workload is not None:
                w = self.spec.workload
                self._watch = stack.enter_context(self.chaos.recovery_watch(w.namespace, w.name, w.service, w.kind))
            pods = WorkerPods(kube, self.chaos.cluster) if self.spec.load.in_cluster else None
            self._load = stack.enter_context(Load(self.spec.load, pods))
            self._guard = _Guard(self)
            self._guard.start()
            stack.callback(self._guard.stop)  # closed first: no trip while the load winds down
            self._stack = stack.pop_all()
        self.timings.warmup = self._load.warmup_ended_at - self._load.started_at
        self.timings.setup = time.monotonic() - started - self.timings.warmup
        self._block_started = time.monotonic()
        return self

    def wait_recovered(self, timeout: float) -> float:
        """Inside the block: wait until the workload is whole again after the last injection so far.

        Returns the recovery time as :class:`~chaoskit.slo.RecoveryTime` judges
        it: each fault's from its own injection, the slowest of them. For faults that stay
        injected while the system heals around them (a node that is down while
        its pods are rescheduled elsewhere).
        """
        faults = self.chaos.records[self._first_fault :]
        if self._watch is None or not faults:
            raise SpecError("wait_recovered needs a workload to watch and a fault injected in this experiment")
        deadline = min(time.time() + timeout, self._deadline())
        recoveries = self._await_recoveries(faults, deadline)
        if recoveries is None:
            watched = f"{self._watch.namespace}/{self._watch.deployment}"
            raise ClusterError(f"{watched} was not whole again within {timeout:g} s of the fault")
        return max(seconds for _, seconds in recoveries)

    def record(self, *, recovery_seconds: float | None = None, lost_writes: int | None = None) -> None:
        """Inside the block: state what the experiment measured itself.

        ``recovery_seconds``: how long after the first fault's injection the
        system was whole again by your own measure (a new leader elected); it
        then stands for the watch's recovery time, for
        :class:`~chaoskit.slo.RecoveryTime` and the end of the fault window.
        :meth:`seconds_since_first_fault` gives it at the moment you see it.
        ``lost_writes``: acknowledged writes missing or wrong when read back
        (``len(read_back(...).lost)``), for :class:`~chaoskit.slo.LostWrites`,
        which fails without it. A value given again replaces the earlier one.
        """
        assert self._load is not None, "record() is for inside the experiment's block"
        if recovery_seconds is not None:
            if isinstance(recovery_seconds, bool) or not isinstance(recovery_seconds, int | float):
                raise SpecError(f"recovery_seconds must be a number of seconds, not {recovery_seconds!r}")
            if not 0 <= recovery_seconds < float("inf"):
                raise SpecError(f"recovery_seconds must be 0 or more and finite, not {recovery_seconds!r}")
            if self._first_injection() is None:
                raise SpecError("recovery_seconds counts from the first fault's injection, and none was injected yet")
            self.recovered_after = float(recovery_seconds)
        if lost_writes is not None:
            if isinstance(lost_writes, bool) or not isinstance(lost_writes, int) or lost_writes < 0:
                raise SpecError(f"lost_writes must be a whole number, 0 or more, not {lost_writes!r}")
            self.lost_writes = lost_writes

    def seconds_since_first_fault(self) -> float:
        """Seconds from the first injection of a fault of this experiment until now (SpecError before one)."""
        first = self._first_injection()
        if first is None:
            raise SpecError("no fault of this experiment has been injected yet")
        return time.monotonic() - first

    @property
    def load(self) -> Load | None:
        """The running load (its records so far: ``run.load.records()``), once the experiment started."""
        return self._load

    @property
    def watch(self) -> RecoveryWatch | None:
        """The recovery watch of the spec's workload, if it has one."""
        return self._watch

    def recovered_now(self) -> bool:
        """Whether the watched workload is whole again after the last injection so far (False without
        a watched workload or before any fault)."""
        faults = self.chaos.records[self._first_fault :]
        return bool(faults) and self._watch is not None and self._recoveries(faults) is not None

    def end_now(self) -> None:
        """Leave the block without waiting for recovery or settling (an operator's abort): the verdict is
        judged on what was seen so far."""
        self._end_now = True

    def hold(self, seconds: float) -> bool:
        """Inside the block: wait ``seconds`` with the faults in place, or less if the run is aborted
        meanwhile (a stop condition, ``chaoskit abort``): then it returns once the abort has undone (and
        proven undone) every fault of the run. Returns whether the whole time passed."""
        return not self._abort_seen.wait(seconds)

    def _first_injection(self) -> float | None:
        span = injection_span(self.chaos.records[self._first_fault :], self._offset)
        return None if span is None else span[0]

    def _deadline(self) -> float:
        assert self._load is not None, "the experiment has not started"
        return self._load.warmup_ended_at + self.spec.load.run_seconds

    def mark(self, label: str) -> None:
        """Mark a moment on the timeline."""
        assert self._load is not None, "the experiment has not started"
        self._load.mark(label)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        faults = self.chaos.records[self._first_fault :]
        deadline = self._deadline()
        timings = self.timings
        timings.block = time.monotonic() - self._block_started
        try:
            if kind is None and not self._end_now:
                mark = time.monotonic()
                recoveries = self._await_recoveries(faults, deadline)
                timings.recovery_wait = time.monotonic() - mark
                settle_until = min(time.time() + self.spec.settle_for(), deadline)
                timings.settle = max(0.0, settle_until - time.time())
                time.sleep(timings.settle)
            end = time.time()
            teardown = time.monotonic()
        finally:
            self._stack.close()  # stops the load, then the watch
        if kind is not None or self._end_now:
            recoveries = self._recoveries(faults)
        self.result = self._judge(faults, recoveries, min(end, deadline), error=exc)
        self.result.kubernetes = self.chaos.kube.kubernetes_version()
        self._gather_evidence(self.result)
        timings.teardown = time.monotonic() - teardown
        self.result.timings = timings
        for callback in self.on_result:
            callback(self.result)
        if kind is None and self.check:
            self.result.check()

    def _recoveries(self, faults: list[FaultRecord]) -> list[tuple[float, float]] | None:
        """Each fault's recovery as (its first injection in Unix time, seconds until whole again), in the
        order they were injected; None until the workload is whole again after the last injection.

        A fault injected before the workload was whole again from the one before joins it: the two are
        measured as one, from the first's injection to whole again after the second's last injection. A
        recovery stated with :meth:`record` stands for the whole run's, from the first injection."""
        spans = fault_spans(faults, self._offset)
        if not spans:
            return None
        if self.recovered_after is not None:
            return [(spans[0][2], self.recovered_after)]
        if self._watch is None:
            return None
        found = []
        start, last, start_unix = spans[0]
        for first, final, first_unix in spans[1:]:
            seconds = self._watch.recovery(start, last, until=first).seconds
            if seconds is None:  # not whole again before this fault: measured with it
                last = max(last, final)
                continue
            found.append((start_unix, seconds))
            start, last, start_unix = first, final, first_unix
        seconds = self._watch.recovery(start, last).seconds
        return None if seconds is None else [*found, (start_unix, seconds)]

    def _await_recoveries(self, faults: list[FaultRecord], deadline: float) -> list[tuple[float, float]] | None:
        """Wait (on the watch's timeline, bounded by the load's end) until the workload is whole again."""
        if self._watch is None:
            return self._recoveries(faults)  # nothing to wait on; a recovery stated by the experiment stands
        if not faults:
            return None
        # Woken by every event of the watch, so the wait ends as soon as the workload is whole.
        return self._watch.wait_until(lambda: self._recoveries(faults), max(0.0, deadline - time.time()))

    def _judge(
        self,
        faults: list[FaultRecord],
        recoveries: list[tuple[float, float]] | None,
        end: float,
        error: BaseException | None,
    ) -> ExperimentResult:
        assert self._load is not None
        load = self._load
        start = load.warmup_ended_at
        records = [r for r in load.records() if r.started >= start]
        self.records = records
        stream = load.stream_stats()
        fault_start = fault_end = None
        injected = injection_times(faults)
        recovery_s = None if not recoveries else max(seconds for _, seconds in recoveries)
        if injected:
            fault_start = injected[0]
            if recoveries:
                fault_end = max(at + seconds for at, seconds in recoveries)
            else:
                fault_end = max([injected[-1], *(f.reverted_at for f in faults if f.reverted_at is not None)])
        windows = Windows(start, end, fault_start, fault_end)
        query: RangeQuery | None = self.prometheus.values if self.prometheus else None
        verdict = evaluate(
            self.spec.objectives,
            records,
            windows,
            recovery_s,
            self.lost_writes,
            query,
            stream.shortfall,
            aborted=self.aborted,
            recoveries=[seconds for _, seconds in recoveries or ()],
            alerts=getattr(self.prometheus, "alert_states", None),
        )
        return ExperimentResult(
            name=self.spec.name,
            group=self.group,
            started=start,
            ended=end,
            verdict=verdict,
            faults=list(faults),
            events=self._events(faults, recoveries),
            series=Series.from_records(records, start, end),
            load=_load_summary(self.spec.load, len(records), stream),
            error=None if error is None else f"{type(error).__name__}: {error}",
            skipped=str(error) if isinstance(error, self.skip_exceptions) else None,
        )

    def _gather_evidence(self, result: ExperimentResult) -> None:
        """The cluster's Events during the run, the pods involved, and (for a run that did not pass) their
        last log lines (:mod:`chaoskit.evidence`)."""
        if result.outcome == "skipped":
            return
        kube = self.chaos.kube
        workload = self.spec.workload
        namespaces = {str(f.spec["namespace"]) for f in result.faults if f.spec.get("namespace")}
        if workload is not None:
            namespaces.add(workload.namespace)
        result.cluster_events, result.evidence_note = cluster_events(kube, namespaces, result.started, result.ended)
        result.involved_pods = involved_pods(kube, result.faults, namespaces)
        if result.outcome != "passed":
            result.logs = pod_logs(kube, result.involved_pods)

    def _events(self, faults: list[FaultRecord], recoveries: list[tuple[float, float]] | None) -> list[TimelineEvent]:
        assert self._load is not None
        events = [TimelineEvent(at, "mark", label) for at, label in self._load.marks]
        for f in faults:
            if f.injected_at is not None:
                events.append(TimelineEvent(f.injected_at, "fault", f"{f.kind} {', '.join(f.targets)}"))
                if f.inject_to_effect is not None:
                    events.append(TimelineEvent(f.injected_at + f.inject_to_effect, "effect", f.effect or ""))
            if f.reverted_at is not None:
                events.append(TimelineEvent(f.reverted_at, "undo", f"{f.kind} undone"))
        if self._watch is not None:
            last: tuple[int, int] | None = None
            for ev in self._watch.events:
                # The watch records every sighting of a short workload; the timeline shows changes.
                if ev.source == self._watch.workload_source and (ev.ready, ev.desired) != last:
                    last = (ev.ready, ev.desired)
                    label = f"{ev.ready}/{ev.desired} ready"
                    events.append(TimelineEvent(ev.at + self._offset, "ready", label, ready=ev.ready))
        for at, seconds in recoveries or ():
            events.append(TimelineEvent(at + seconds, "recovered", f"whole again ({seconds:.1f} s)"))
        if self.aborted is not None and self.aborted_at is not None:
            events.append(TimelineEvent(self.aborted_at, "aborted", self.aborted))
        if self.abort_undone_at is not None:
            events.append(TimelineEvent(self.abort_undone_at, "abort-undone", "every fault in place undone and proven"))
        return sorted(events, key=lambda e: e.at)

    def abort(self, reason: str) -> None:
        """Abort the run now: refuse new faults, undo (and prove) every fault of it still in place, and
        fail the verdict with ``reason``. The load keeps running, so the recovery is seen. Called by the
        stop conditions and on ``chaoskit abort``; a second call does nothing."""
        if self.aborted is not None:
            return
        self.aborted, self.aborted_at = reason, time.time()
        self.chaos.stop(reason)
        if self._load is not None:
            self._load.mark(reason)
        from chaoskit.faults.sweeper import undo_entry

        ledger = Ledger(self.chaos.cluster.name)
        # Every fault this run started (by id, so one still being injected is included): the ledger says
        # which of them are in place.
        active = set(self.chaos.fault_ids[self._first_fault_id :])
        try:
            for entry in ledger.unsettled():
                if entry.fault_id in active:
                    how, text = undo_entry(self.chaos.cluster, self.chaos.kube, ledger, entry)
                    if how == "failed":
                        self.aborted = f"{reason}; and the undo of {entry.fault_id} is NOT proven: {text}"
            self.abort_undone_at = time.time()
        finally:
            # Only now: a block waiting in hold() goes on with every fault of the run already undone.
            self._abort_seen.set()


def injection_times(faults: Sequence[FaultRecord]) -> list[float]:
    """Every injection of the faults, in Unix time, ascending: each round of a repeated fault counts."""
    times = set()
    for f in faults:
        if f.injected_at is not None:
            times.add(f.injected_at)
        times.update(r.injected_at for r in f.rounds)
    return sorted(times)


def fault_spans(faults: Sequence[FaultRecord], offset: float) -> list[tuple[float, float, float]]:
    """Each injected fault's (first, last) injection on the monotonic clock and its first in Unix time, in
    the order they were first injected; a later round carries Unix time only, converted with ``offset``."""
    spans = []
    for f in faults:
        if f.injected_mono is None or f.injected_at is None:
            continue
        rounds = [r.injected_at - offset for r in f.rounds]
        spans.append((f.injected_mono, max([f.injected_mono, *rounds]), f.injected_at))
    return sorted(spans)


def injection_span(faults: Sequence[FaultRecord], offset: float) -> tuple[float, float] | None:
    """(first, last) injection of the faults on the monotonic clock; None when none was injected.

    The first is the fault's own monotonic stamp; a later round carries Unix
    time only, converted with ``offset`` (``time.time() - time.monotonic()``,
    taken once when the experiment started).
    """
    spans = fault_spans(faults, offset)
    if not spans:
        return None
    return spans[0][0], max(last for _, last, _ in spans)


def _load_summary(spec: LoadSpec, requests: int, stream: StreamStats) -> dict[str, Any]:
    """The load's spec and totals for the journal, with how its record stream did."""
    return {
        "spec": asdict(spec),
        "requests": requests,
        "stream": {**asdict(stream), "complete": stream.complete, "shortfall": stream.shortfall},
    }


class _Guard(threading.Thread):
    """Watches a running experiment: its stop conditions every second, ``chaoskit abort`` every 0.2 s."""

    POLL_SECONDS = 0.2

    def __init__(self, run: Experiment) -> None:
        super().__init__(name=f"guard-{run.spec.name}", daemon=True)
        self.run_ = run
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as exc:  # reported with the result, never lost in a thread
            self.error = exc
            self.run_.aborted = self.run_.aborted or f"the stop-condition guard failed: {type(exc).__name__}: {exc}"

    def _watch(self) -> None:
        run = self.run_
        assert run._load is not None
        load = run._load
        ledger = Ledger(run.chaos.cluster.name)
        since = run.chaos.created_at
        conditions = run.spec.stop_conditions
        query = _instant_query(run.prometheus) if any(isinstance(c, PromQLAbove) for c in conditions) else None
        start = load.warmup_ended_at
        records: list[RequestRecord] = []
        size = -1
        next_check = time.monotonic()
        while not self.stopping.wait(self.POLL_SECONDS) and run.aborted is None:
            if ledger.size() != size:
                size = ledger.size()
                aborts = ledger.aborts(since, run.chaos.fault_ids)
                if aborts:
                    run.abort(external_abort_reason(aborts[0], start))
                    return
            if conditions and time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                records.extend(load.records_from(len(records)))
                now = time.time()
                recent = [r for r in records if r.started >= start]
                run.readings, trip = first_trip(conditions, recent, now, start, query)
                if trip is not None:
                    run.abort(trip.reason())
                    return


def _instant_query(prometheus: Prometheus | None) -> Callable[[str], float | None] | None:
    if prometheus is None:
        return None

    def query(expression: str) -> float | None:
        now = time.time()
        values = prometheus.values(expression, now - 5, now)
        return values[-1] if values else None

    return query
