"""Stop conditions: abort on burn, judged live from the load's own per-request records.

An experiment checks each of its stop conditions every second while it runs
(from the end of the load's warm-up). When one trips, every fault of the
experiment still in place is undone at once, no new fault may start, the load
keeps running so the recovery is seen, and the verdict fails with "aborted by
stop condition ... at t=...". Each condition reads the recent past only:

* :class:`AvailabilityBelow`: the share of requests that succeeded, over the
  last ``over_seconds``, below ``threshold``;
* :class:`LatencyAbove`: a latency percentile of the successful requests over
  the last ``over_seconds``, above ``ms``;
* :class:`ErrorBurstOver`: a run of consecutive failures still going on (no
  success since it began) longer than ``seconds``;
* :class:`PromQLAbove`: a Prometheus expression's latest value above ``above``
  (or below ``below``).

A window with too few requests to judge (fewer than ``min_requests``) does not
trip: a stop condition aborts on evidence, not on silence, and an empty window
shows as "no data". (A load that stops answering altogether is an error burst.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chaoskit.errors import SpecError
from chaoskit.slo import Request, percentile

MAX_WINDOW_SECONDS = 600.0


def _positive(name: str, value: float, high: float = MAX_WINDOW_SECONDS) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or not 0 < value <= high:
        raise SpecError(f"{name} must be a number of seconds in (0, {high:g}], not {value!r}")


@dataclass(frozen=True)
class Reading:
    """One evaluation of a stop condition."""

    value: float | None
    """The current value (None: no data to judge)."""
    text: str
    """It in words, against the threshold: "availability 42% over 10 s (stop below 80%)"."""
    tripped: bool


@dataclass(frozen=True)
class AvailabilityBelow:
    """Stop when fewer than ``threshold`` of the requests of the last ``over_seconds`` succeeded."""

    threshold: float
    over_seconds: float = 10.0
    min_requests: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not 0 < self.threshold <= 1:
            raise SpecError(f"availability_below must be a share in (0, 1], such as 0.8, not {self.threshold!r}")
        _positive("over_seconds", self.over_seconds)

    @property
    def name(self) -> str:
        return f"availability below {self.threshold:.0%} over {self.over_seconds:g} s"

    def read(self, records: Sequence[Request], now: float, query: PromQuery | None = None) -> Reading:
        recent = [r for r in records if now - self.over_seconds <= r.started <= now]
        if len(recent) < self.min_requests:
            return Reading(None, f"availability: no data ({len(recent)} requests in {self.over_seconds:g} s)", False)
        share = sum(1 for r in recent if r.ok) / len(recent)
        text = f"availability {share:.1%} over {self.over_seconds:g} s (stop below {self.threshold:.0%})"
        return Reading(share, text, share < self.threshold)


@dataclass(frozen=True)
class LatencyAbove:
    """Stop when the ``percentile`` latency of the last ``over_seconds``' successful requests exceeds ``ms``."""

    ms: float
    percentile: float = 95.0
    over_seconds: float = 10.0
    min_requests: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.ms, bool) or not isinstance(self.ms, int | float) or not self.ms > 0:
            raise SpecError(f"latency_above_ms must be a positive number of milliseconds, not {self.ms!r}")
        if not 0 < self.percentile <= 100:
            raise SpecError(f"percentile must be in (0, 100], not {self.percentile!r}")
        _positive("over_seconds", self.over_seconds)

    @property
    def name(self) -> str:
        return f"p{self.percentile:g} above {self.ms:g} ms over {self.over_seconds:g} s"

    def read(self, records: Sequence[Request], now: float, query: PromQuery | None = None) -> Reading:
        latencies = sorted(r.latency_ms for r in records if r.ok and now - self.over_seconds <= r.started <= now)
        if len(latencies) < self.min_requests:
            return Reading(None, f"p{self.percentile:g}: no data ({len(latencies)} successes)", False)
        value = percentile(latencies, self.percentile)
        assert value is not None
        text = f"p{self.percentile:g} {value:.0f} ms over {self.over_seconds:g} s (stop above {self.ms:g} ms)"
        return Reading(value, text, value > self.ms)


@dataclass(frozen=True)
class ErrorBurstOver:
    """Stop when requests have failed without a single success for more than ``seconds``."""

    seconds: float

    def __post_init__(self) -> None:
        _positive("error_burst_over_seconds", self.seconds)

    @property
    def name(self) -> str:
        return f"error burst over {self.seconds:g} s"

    def read(self, records: Sequence[Request], now: float, query: PromQuery | None = None) -> Reading:
        last_success = max((r.started for r in records if r.ok), default=None)
        failures = [r.started for r in records if not r.ok and (last_success is None or r.started > last_success)]
        if not failures:
            return Reading(0.0, f"error burst 0.0 s (stop over {self.seconds:g} s)", False)
        burst = now - min(failures)
        return Reading(
            burst, f"error burst {burst:.1f} s, still going (stop over {self.seconds:g} s)", burst > self.seconds
        )


PromQuery = Callable[[str], float | None]
"""A Prometheus instant query: the expression's current value, None when it has none."""


@dataclass(frozen=True)
class PromQLAbove:
    """Stop when a Prometheus expression's value is above ``above`` (or below ``below``)."""

    query: str
    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise SpecError("a promql stop condition needs a query")
        if self.above is None and self.below is None:
            raise SpecError(f"promql stop condition {self.query!r} needs above or below")

    @property
    def name(self) -> str:
        bounds = [
            f"above {self.above:g}" if self.above is not None else "",
            f"below {self.below:g}" if self.below is not None else "",
        ]
        return f"{self.query} {' or '.join(b for b in bounds if b)}"

    def read(self, records: Sequence[Request], now: float, query: PromQuery | None = None) -> Reading:
        if query is None:
            return Reading(None, f"{self.query}: no Prometheus to ask", False)
        value = query(self.query)
        if value is None:
            return Reading(None, f"{self.query}: no data", False)
        tripped = (self.above is not None and value > self.above) or (self.below is not None and value < self.below)
        return Reading(value, f"{self.query} = {value:g} ({self.name.removeprefix(self.query).strip()} stops)", tripped)


StopCondition = AvailabilityBelow | LatencyAbove | ErrorBurstOver | PromQLAbove


@dataclass(frozen=True)
class Trip:
    """A stop condition that tripped: which, when, and what it read."""

    condition: str
    at: float
    """Unix time of the evaluation that tripped it."""
    reading: str
    offset: float
    """Seconds from the start of the measured run."""

    def reason(self) -> str:
        return f"aborted by stop condition {self.condition} at t={self.offset:.1f} s: {self.reading}"


def first_trip(
    conditions: Sequence[StopCondition],
    records: Sequence[Request],
    now: float,
    start: float,
    query: PromQuery | None = None,
) -> tuple[list[Reading], Trip | None]:
    """Read every condition at ``now``; return the readings and the first one that tripped, if any."""
    readings = [c.read(records, now, query) for c in conditions]
    for condition, reading in zip(conditions, readings, strict=True):
        if reading.tripped:
            return readings, Trip(condition.name, now, reading.text, now - start)
    return readings, None
