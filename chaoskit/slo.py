"""Service-level objectives and their verdict, from the load's own per-request records.

An SLO is a list of objectives, each checked over a window of the run:

* ``whole``: the measured run, after the load's warm-up;
* ``fault``: from the first fault's injection until the system is whole again
  after the *last* injection of any fault of the run (the last round of a
  repeated pod kill included): the recovery watch's time when there is one,
  else the last fault's undo;
* ``after``: from then until the load ends.

The records are the source of truth, not Locust's rounded statistics: a
request belongs to the window its start time falls in; availability is the
share of its requests that succeeded; latency percentiles are taken (nearest
rank) over the successful requests, since a refused connection is fast and
would flatter them; an error burst is a run of consecutive failed requests
(by start time) with no success between them, lasting from the first one's
start to the last one's end.

A window with no request proves nothing: its objectives fail and say so. Nor
do records known to be incomplete (the load stream lost some, or sent lines
that could not be read): a verdict over partial data is not a verdict, so
every objective fails, naming what is missing. Each :class:`Measurement`
carries target, measured value and window, and a failed :class:`SloVerdict`
explains itself one line per objective.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chaoskit.errors import SpecError

WINDOWS = ("whole", "fault", "after")
WINDOW_NAMES = {"whole": "whole run", "fault": "during fault", "after": "after recovery"}


class Request(Protocol):
    """What the SLO maths needs of one request record."""

    @property
    def started(self) -> float: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def ok(self) -> bool: ...


def _check_window(window: str) -> None:
    if window not in WINDOWS:
        raise SpecError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")


@dataclass(frozen=True)
class Availability:
    """At least this share of requests succeed."""

    at_least: float
    """A ratio in (0, 1], such as 0.99."""
    window: str = "whole"

    def __post_init__(self) -> None:
        if not 0 < self.at_least <= 1:
            raise SpecError(f"availability must be a ratio in (0, 1] such as 0.99, not {self.at_least}")
        _check_window(self.window)


@dataclass(frozen=True)
class LatencyPercentile:
    """The given percentile of successful requests' latency is at most this."""

    percentile: float
    """50, 95, 99 or any other in (0, 100]."""
    at_most_ms: float
    window: str = "whole"

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise SpecError(f"percentile must be in (0, 100], not {self.percentile}")
        if not self.at_most_ms > 0:
            raise SpecError(f"latency target must be positive milliseconds, not {self.at_most_ms}")
        _check_window(self.window)


@dataclass(frozen=True)
class ErrorBurst:
    """The longest continuous run of failed requests lasts at most this."""

    at_most_s: float
    window: str = "whole"

    def __post_init__(self) -> None:
        if self.at_most_s < 0:
            raise SpecError(f"error burst target must be 0 s or more, not {self.at_most_s}")
        _check_window(self.window)


@dataclass(frozen=True)
class RecoveryTime:
    """Each fault's recovery takes at most this: from its injection until the workload is whole again.

    "Whole again" is on the recovery watch's timeline: the workload's ready
    count and the Service's endpoints both back, after a loss seen after the
    fault's last injection (the last round of a repeated kill included).
    Judged per fault: with several faults, each one's recovery is measured
    from its own injection, and the slowest is judged. A fault injected before
    the system was whole again from the one before joins it: the two are
    measured as one, from the first's injection to whole again after the
    second. The ``fault`` window runs from the first fault's injection to the
    last recovery.
    """

    at_most_s: float

    def __post_init__(self) -> None:
        if not self.at_most_s > 0:
            raise SpecError(f"recovery target must be positive seconds, not {self.at_most_s}")


@dataclass(frozen=True)
class LostWrites:
    """Acknowledged writes that the system later lost: at most this (normally 0)."""

    at_most: int = 0

    def __post_init__(self) -> None:
        if self.at_most < 0:
            raise SpecError(f"lost writes target must be 0 or more, not {self.at_most}")


@dataclass(frozen=True)
class PromQL:
    """A Prometheus expression whose value over the window stays within bounds."""

    query: str
    at_most: float | None = None
    """Every sample at most this."""
    at_least: float | None = None
    """Every sample at least this."""
    window: str = "whole"

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise SpecError("a PromQL objective needs a query")
        if self.at_most is None and self.at_least is None:
            raise SpecError(f"PromQL objective {self.query!r} needs at_most or at_least")
        _check_window(self.window)


_ALERT_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _check_alert(name: str, within_s: float, what: str) -> None:
    if not _ALERT_NAME.fullmatch(name):
        raise SpecError(f"alert name {name!r} is not a Prometheus alert name (letters, digits and _)")
    if not within_s > 0:
        raise SpecError(f"{what} must be positive seconds, not {within_s}")


@dataclass(frozen=True)
class AlertFires:
    """Prometheus alert ``name`` fires within ``within_s`` seconds of the first fault's injection.

    Judged from Prometheus's own alert state (its ``ALERTS`` series: ``pending`` while the rule's ``for:``
    runs, then ``firing``), over the run. An alert already firing when the fault was injected proves nothing
    of the fault, and fails."""

    name: str
    within_s: float

    def __post_init__(self) -> None:
        _check_alert(self.name, self.within_s, "an alert's fires_within")


@dataclass(frozen=True)
class AlertResolves:
    """Prometheus alert ``name``, once it fired, stops firing within ``within_s`` seconds of the system being
    whole again (the end of the ``fault`` window: the last recovery, or the last undo where no recovery was
    watched). The run's load must go on long enough after the recovery for that to be seen."""

    name: str
    within_s: float

    def __post_init__(self) -> None:
        _check_alert(self.name, self.within_s, "an alert's resolves_within")


Objective = (
    Availability | LatencyPercentile | ErrorBurst | RecoveryTime | LostWrites | PromQL | AlertFires | AlertResolves
)


@dataclass(frozen=True)
class Windows:
    """The windows of one run, in Unix time."""

    start: float
    """The measured run's start (after warm-up)."""
    end: float
    fault_start: float | None = None
    """The first injection of any fault."""
    fault_end: float | None = None
    """When the system was whole again after the last injection (or the last fault undone, if no recovery
    was watched)."""

    def bounds(self, window: str) -> tuple[float, float] | None:
        if window == "whole":
            return self.start, self.end
        if self.fault_start is None:
            return None
        fault_end = self.fault_end if self.fault_end is not None else self.end
        if window == "fault":
            return self.fault_start, fault_end
        return fault_end, self.end


@dataclass(frozen=True)
class WindowStats:
    """What the records say about one window."""

    window: str
    start: float
    end: float
    requests: int
    errors: int
    availability: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    longest_error_burst_s: float
    error_bursts: int


@dataclass(frozen=True)
class Measurement:
    """One objective checked: its target, what was measured, and where."""

    objective: str
    window: str
    target: str
    measured: str
    """The measured value in words, with what it was taken over."""
    passed: bool
    value: float | None = None
    """The measured number (ratio, ms, s or count), None when nothing could be measured."""

    def line(self) -> str:
        mark = "ok    " if self.passed else "FAILED"
        where = WINDOW_NAMES.get(self.window, self.window)
        return f"{mark} {self.objective} ({where}): target {self.target}, measured {self.measured}"


@dataclass(frozen=True)
class SloVerdict:
    """Every objective's measurement, and the numbers behind them."""

    measurements: tuple[Measurement, ...]
    stats: tuple[WindowStats, ...] = field(default=())
    recovery_s: float | None = None
    """The recovery time judged: the slowest of :attr:`recoveries` (None: no recovery was seen)."""
    partial_data: str | None = None
    """What the records are missing (such as "the load stream lost 12 of 10,400 records"), when they are
    known to be incomplete: then every objective failed, whatever the records at hand say."""
    aborted: str | None = None
    """Why the run was aborted (a stop condition tripped, or ``chaoskit abort``), if it was: an aborted run
    fails, whatever its objectives say."""
    recoveries: tuple[float, ...] = ()
    """Each fault's own recovery time, in the order the faults were injected (faults injected before the
    system was whole again from the one before count as one). A run of one fault has one."""

    @property
    def passed(self) -> bool:
        return self.aborted is None and all(m.passed for m in self.measurements)

    @property
    def failures(self) -> list[Measurement]:
        return [m for m in self.measurements if not m.passed]

    @property
    def met(self) -> int:
        """How many objectives were met."""
        return len(self.measurements) - len(self.failures)

    def explain(self) -> str:
        head = (
            "SLO met"
            if self.passed
            else f"SLO violated: {len(self.failures)} of {len(self.measurements)} objectives failed"
        )
        if self.partial_data:
            head += f" ({self.partial_data}: no verdict over partial data)"
        if self.aborted:
            head = f"{head}; {self.aborted}" if self.failures else f"run failed: {self.aborted}"
        return "\n".join([head, *(m.line() for m in self.measurements)])

    def check(self) -> None:
        """Raise :class:`SloViolation` (an AssertionError) naming each failed objective."""
        if not self.passed:
            raise SloViolation(self)


class SloViolation(AssertionError):
    def __init__(self, verdict: SloVerdict) -> None:
        lines = [verdict.aborted] if verdict.aborted else []
        super().__init__("SLO violated:\n" + "\n".join(lines + [m.line() for m in verdict.failures]))
        self.verdict = verdict


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence; None when it is empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def error_bursts(records: Iterable[Request]) -> list[float]:
    """Durations of the runs of consecutive failures (by start time), in seconds."""
    bursts: list[float] = []
    first: float | None = None
    last_end = 0.0
    for r in sorted(records, key=lambda r: r.started):
        if r.ok:
            if first is not None:
                bursts.append(last_end - first)
                first = None
            continue
        if first is None:
            first, last_end = r.started, r.started
        last_end = max(last_end, r.started + r.latency_ms / 1000)
    if first is not None:
        bursts.append(last_end - first)
    return bursts


@dataclass(frozen=True)
class _WindowRecords:
    """The records of one window, sorted into what every objective and statistic reads."""

    window: str
    start: float
    end: float
    requests: int
    ok: int
    latencies: list[float]
    """Of the successful requests, ascending."""
    bursts: list[float]

    @classmethod
    def of(cls, records: Sequence[Request], window: str, start: float, end: float) -> _WindowRecords:
        inside = [r for r in records if start <= r.started < end]
        latencies = sorted(r.latency_ms for r in inside if r.ok)
        return cls(window, start, end, len(inside), len(latencies), latencies, error_bursts(inside))

    @property
    def availability(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    @property
    def longest_burst(self) -> float:
        return max(self.bursts, default=0.0)

    def stats(self) -> WindowStats:
        return WindowStats(
            window=self.window,
            start=self.start,
            end=self.end,
            requests=self.requests,
            errors=self.requests - self.ok,
            availability=self.availability,
            p50_ms=percentile(self.latencies, 50),
            p95_ms=percentile(self.latencies, 95),
            p99_ms=percentile(self.latencies, 99),
            longest_error_burst_s=self.longest_burst,
            error_bursts=len(self.bursts),
        )


RangeQuery = Callable[[str, float, float], list[float]]
"""Values of a PromQL expression over [start, end]: every sample of every series."""
AlertStates = Callable[[str, float, float], list[tuple[float, str]]]
"""An alert's state over [start, end], as Prometheus evaluated it: ``(time, "pending" | "firing")`` at each step it
was active, oldest first (a step missing: inactive then)."""


def evaluate(
    objectives: Sequence[Objective],
    records: Sequence[Request],
    windows: Windows,
    recovery_s: float | None = None,
    lost_writes: int | None = None,
    prometheus: RangeQuery | None = None,
    partial_data: str | None = None,
    aborted: str | None = None,
    recoveries: Sequence[float] = (),
    alerts: AlertStates | None = None,
) -> SloVerdict:
    """Check every objective; a number that could not be measured fails its objective, saying why.

    ``partial_data`` says what the records are missing when they are known to
    be incomplete (see :attr:`chaoskit.load.StreamStats.shortfall`): every
    objective then fails with it, the numbers of the records at hand kept in
    words only. ``recoveries``: each fault's own recovery time when there were several (``recovery_s`` is
    the slowest of them); the recovery objective's measurement lists them.
    """
    sorted_windows = {}
    for name in WINDOWS:
        bounds = windows.bounds(name)
        if bounds is not None:
            sorted_windows[name] = _WindowRecords.of(records, name, *bounds)
    checker = _Checker(sorted_windows, windows, recovery_s, lost_writes, prometheus, tuple(recoveries), alerts)
    stats = tuple(w.stats() for w in sorted_windows.values())
    measurements = tuple(checker.measure(o) for o in objectives)
    if partial_data:
        measurements = tuple(_no_verdict(m, partial_data) for m in measurements)
    return SloVerdict(measurements, stats, recovery_s, partial_data, aborted, tuple(recoveries))


def _no_verdict(measurement: Measurement, partial_data: str) -> Measurement:
    measured = f"{partial_data}: no verdict over partial data (the records at hand gave {measurement.measured})"
    return Measurement(measurement.objective, measurement.window, measurement.target, measured, False)


@dataclass
class _Checker:
    records: dict[str, _WindowRecords]
    """Per window the run has."""
    windows: Windows
    recovery_s: float | None
    lost_writes: int | None
    prometheus: RangeQuery | None
    recoveries: tuple[float, ...] = ()
    alerts: AlertStates | None = None

    def measure(self, objective: Objective) -> Measurement:
        if isinstance(objective, RecoveryTime):
            return self._recovery(objective)
        if isinstance(objective, AlertFires | AlertResolves):
            return self._alert(objective)
        if isinstance(objective, LostWrites):
            target = f"<= {objective.at_most}"
            if self.lost_writes is None:
                return Measurement("acknowledged writes lost", "whole", target, "none: not measured", False)
            passed = self.lost_writes <= objective.at_most
            return Measurement(
                "acknowledged writes lost", "whole", target, str(self.lost_writes), passed, self.lost_writes
            )
        if isinstance(objective, PromQL):
            return self._promql(objective)
        return self._from_records(objective)

    def _recovery(self, objective: RecoveryTime) -> Measurement:
        target = f"<= {objective.at_most_s:g} s"
        if self.recovery_s is None:
            return Measurement("recovery time", "fault", target, "none: no recovery was seen", False)
        passed = self.recovery_s <= objective.at_most_s
        measured = f"{self.recovery_s:.2f} s"
        if len(self.recoveries) > 1:
            each = ", ".join(f"{s:.2f}" for s in self.recoveries)
            measured += f", the slowest of {len(self.recoveries)} faults' own recoveries ({each} s)"
        return Measurement("recovery time", "fault", target, measured, passed, self.recovery_s)

    def _from_records(self, objective: Availability | LatencyPercentile | ErrorBurst) -> Measurement:
        window = objective.window
        if isinstance(objective, Availability):
            name, target = "availability", f">= {objective.at_least:.2%}"
        elif isinstance(objective, LatencyPercentile):
            name, target = f"p{objective.percentile:g} latency", f"<= {objective.at_most_ms:g} ms"
        else:
            name, target = "longest error burst", f"<= {objective.at_most_s:g} s"
        w = self.records.get(window)
        if w is None:
            return Measurement(name, window, target, "none: the run had no fault", False)
        if not w.requests:
            return Measurement(name, window, target, "none: no requests in the window", False)
        if isinstance(objective, Availability):
            ratio = w.ok / w.requests
            measured = f"{ratio:.2%} ({w.ok} of {w.requests} requests succeeded)"
            return Measurement(name, window, target, measured, ratio >= objective.at_least, ratio)
        if isinstance(objective, LatencyPercentile):
            value = percentile(w.latencies, objective.percentile)
            if value is None:
                return Measurement(name, window, target, f"none: all {w.requests} requests failed", False)
            return Measurement(
                name,
                window,
                target,
                f"{value:.1f} ms (over {w.ok} successful requests)",
                value <= objective.at_most_ms,
                value,
            )
        longest = w.longest_burst
        measured = f"{longest:.2f} s ({len(w.bursts)} bursts, {w.requests - w.ok} failed requests)"
        return Measurement(name, window, target, measured, longest <= objective.at_most_s, longest)

    def _promql(self, objective: PromQL) -> Measurement:
        bounds = []
        if objective.at_least is not None:
            bounds.append(f">= {objective.at_least:g}")
        if objective.at_most is not None:
            bounds.append(f"<= {objective.at_most:g}")
        name, target, window = f"PromQL {objective.query}", " and ".join(bounds), objective.window
        span = self.windows.bounds(window)
        if span is None:
            return Measurement(name, window, target, "none: the run had no fault", False)
        if self.prometheus is None:
            return Measurement(name, window, target, "none: no Prometheus was given", False)
        values = self.prometheus(objective.query, *span)
        if not values:
            return Measurement(name, window, target, "none: the query returned no samples", False)
        low, high = min(values), max(values)
        passed = (objective.at_least is None or low >= objective.at_least) and (
            objective.at_most is None or high <= objective.at_most
        )
        return Measurement(name, window, target, f"min {low:g}, max {high:g} over {len(values)} samples", passed, high)

    def _alert(self, objective: AlertFires | AlertResolves) -> Measurement:
        fires = isinstance(objective, AlertFires)
        name = f"alert {objective.name} {'fires' if fires else 'resolves'}"
        target = f"<= {objective.within_s:g} s after the {'injection' if fires else 'recovery'}"
        start, fault_start, fault_end = self.windows.start, self.windows.fault_start, self.windows.fault_end
        if fault_start is None:
            return Measurement(name, "fault", target, "none: the run had no fault", False)
        if self.alerts is None:
            return Measurement(name, "fault", target, "none: no Prometheus that reads alert states was given", False)
        states = self.alerts(objective.name, start, self.windows.end)
        story = alert_story(states, fault_start, self.windows.end)
        firing = [t for t, state in states if state == "firing"]
        if fires:
            if any(t < fault_start for t in firing):
                return Measurement(name, "fault", target, f"already firing before the fault: {story}", False)
            if not firing:
                return Measurement(name, "fault", target, f"never fired: {story}", False)
            took = firing[0] - fault_start
            return Measurement(name, "fault", target, f"{took:.1f} s: {story}", took <= objective.within_s, took)
        whole = fault_end if fault_end is not None else self.windows.end
        if not firing:
            return Measurement(name, "fault", target, f"never fired, so never resolved: {story}", False)
        last = firing[-1]
        if not any(t > last for t, _ in states) and self.windows.end - last < 2 * _alert_step(states):
            return Measurement(name, "fault", target, f"still firing at the run's end: {story}", False)
        resolved = last + _alert_step(states)
        took = max(0.0, resolved - whole)
        return Measurement(name, "fault", target, f"{took:.1f} s: {story}", took <= objective.within_s, took)


def _alert_step(states: Sequence[tuple[float, str]]) -> float:
    """The step of an alert's samples (1 s when too few to tell)."""
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(states) if b > a]
    return min(gaps) if gaps else 1.0


def alert_story(states: Sequence[tuple[float, str]], origin: float, end: float) -> str:
    """An alert's state over time, in words, each change at its offset from ``origin`` (the first injection):
    ``pending at +2.0 s, firing at +12.0 s, inactive from +41.0 s``."""
    if not states:
        return f"inactive throughout (no pending or firing sample up to +{end - origin:.1f} s)"
    step = _alert_step(states)
    changes: list[str] = []
    current = "inactive"
    previous: float | None = None
    for t, state in states:
        if previous is not None and t - previous > 1.5 * step and current != "inactive":
            changes.append(f"inactive from {previous + step - origin:+.1f} s")
            current = "inactive"
        if state != current:
            changes.append(f"{state} at {t - origin:+.1f} s")
            current = state
        previous = t
    if previous is not None and end - previous > 1.5 * step:
        changes.append(f"inactive from {previous + step - origin:+.1f} s")
    return ", ".join(changes)
