"""Stop conditions read the recent past of the load's own records (synthetic records; no cluster)."""

from __future__ import annotations

import pytest

from chaoskit import AvailabilityBelow, ErrorBurstOver, LatencyAbove, PromQLAbove, RequestRecord, SpecError
from chaoskit.stops import first_trip

NOW = 1000.0


def rec(started: float, ok: bool = True, ms: float = 10.0) -> RequestRecord:
    return RequestRecord(started, "/", ms, ok, None if ok else "HTTP 503", 0)


def test_availability_below_reads_only_the_last_window():
    old_failures = [rec(NOW - 30 + i * 0.1, ok=False) for i in range(50)]  # long ago: no longer counts
    recent = [rec(NOW - 9 + i, ok=i % 4 != 0) for i in range(9)]  # 3 of 9 failed: 66.7 %
    condition = AvailabilityBelow(0.8, over_seconds=10)
    reading = condition.read(old_failures + recent, NOW)
    assert reading.tripped and reading.value == pytest.approx(6 / 9)
    assert reading.text == "availability 66.7% over 10 s (stop below 80%)"
    assert not AvailabilityBelow(0.5, over_seconds=10).read(old_failures + recent, NOW).tripped


def test_too_few_requests_is_no_data_and_never_trips():
    reading = AvailabilityBelow(0.99, over_seconds=10).read([rec(NOW - 1, ok=False)], NOW)
    assert reading.value is None and not reading.tripped and "no data (1 requests" in reading.text


def test_latency_above_takes_the_percentile_of_successes():
    records = [rec(NOW - 5 + i * 0.1, ms=100 + i) for i in range(40)] + [rec(NOW - 1, ok=False, ms=1)]
    reading = LatencyAbove(120, percentile=95, over_seconds=10).read(records, NOW)
    assert reading.tripped and reading.value == 137.0, reading
    assert not LatencyAbove(200, percentile=95).read(records, NOW).tripped


def test_an_error_burst_counts_only_while_it_lasts():
    going = [rec(NOW - 10), rec(NOW - 6, ok=False), rec(NOW - 3, ok=False)]
    reading = ErrorBurstOver(5).read(going, NOW)
    assert reading.tripped and reading.value == pytest.approx(6.0)
    healed = [*going, rec(NOW - 1)]
    assert ErrorBurstOver(5).read(healed, NOW).value == 0.0


def test_promql_reads_the_current_value_and_without_prometheus_has_no_data():
    condition = PromQLAbove("errors_per_second", above=5)
    assert condition.read([], NOW, lambda q: 7.5).tripped
    assert not condition.read([], NOW, lambda q: 2.0).tripped
    assert condition.read([], NOW, None).value is None
    assert PromQLAbove("up", below=1).read([], NOW, lambda q: 0.0).tripped


def test_first_trip_names_the_condition_and_the_time_into_the_run():
    conditions = (LatencyAbove(5000), AvailabilityBelow(0.9, over_seconds=5))
    records = [rec(NOW - 4 + i * 0.5, ok=i % 2 == 0) for i in range(8)]
    readings, trip = first_trip(conditions, records, NOW, start=NOW - 42.5)
    assert len(readings) == 2 and trip is not None
    assert trip.reason() == (
        "aborted by stop condition availability below 90% over 5 s at t=42.5 s: "
        "availability 50.0% over 5 s (stop below 90%)"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AvailabilityBelow(1.5), r"availability_below must be a share in \(0, 1\]"),
        (lambda: AvailabilityBelow(0.8, over_seconds=-5), "over_seconds must be a number of seconds"),
        (lambda: LatencyAbove(0), "latency_above_ms must be a positive number"),
        (lambda: ErrorBurstOver(0), "error_burst_over_seconds must be"),
        (lambda: PromQLAbove("up"), "needs above or below"),
    ],
)
def test_bad_stop_conditions_are_refused(make, message):
    with pytest.raises(SpecError, match=message):
        make()
