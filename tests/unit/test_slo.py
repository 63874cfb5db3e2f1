"""The SLO maths on synthetic request records with known answers."""

from dataclasses import dataclass

import pytest

from chaoskit.errors import SpecError
from chaoskit.slo import (
    Availability,
    ErrorBurst,
    LatencyPercentile,
    LostWrites,
    PromQL,
    RecoveryTime,
    SloViolation,
    Windows,
    error_bursts,
    evaluate,
    percentile,
)


@dataclass(frozen=True)
class R:
    started: float
    latency_ms: float = 10.0
    ok: bool = True


def steady(start: float, end: float, every: float = 0.1, ok: bool = True, latency_ms: float = 10.0) -> list[R]:
    count = round((end - start) / every)
    return [R(start + i * every, latency_ms, ok) for i in range(count)]


WHOLE = Windows(start=0, end=30, fault_start=10, fault_end=20)


def test_availability_counts_the_requests_started_in_each_window():
    records = steady(0, 10) + steady(10, 20, ok=False)[:5] + steady(10.5, 20) + steady(20, 30)
    verdict = evaluate(
        [Availability(0.9), Availability(0.99, window="fault"), Availability(1.0, window="after")], records, WHOLE
    )
    whole, fault, after = verdict.measurements
    assert whole.value == pytest.approx(295 / 300) and whole.passed
    assert fault.value == pytest.approx(95 / 100) and not fault.passed
    assert after.value == 1.0 and after.passed
    assert "95 of 100 requests succeeded" in fault.measured
    assert [s.requests for s in verdict.stats] == [300, 100, 100]


def test_latency_percentiles_are_nearest_rank_over_successful_requests():
    records = [R(i * 0.01, latency_ms=i) for i in range(1, 101)]
    records += [R(0.5, latency_ms=5000, ok=False)]  # a failure is not a latency sample
    verdict = evaluate(
        [LatencyPercentile(50, 60), LatencyPercentile(95, 90), LatencyPercentile(99, 99)],
        records,
        Windows(start=0, end=2),
    )
    assert [m.value for m in verdict.measurements] == [50, 95, 99]
    assert [m.passed for m in verdict.measurements] == [True, False, True]
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0


def test_error_bursts_run_from_the_first_failure_to_the_last_ones_end():
    records = [R(1.0, ok=False, latency_ms=100), R(1.5, ok=False, latency_ms=200), R(2.0), R(3.0, ok=False)]
    assert error_bursts(records) == pytest.approx([0.7, 0.01])
    assert error_bursts([R(1.0), R(2.0)]) == []


def test_a_burst_at_the_windows_edge_is_cut_at_the_edge():
    records = steady(0, 9.5) + steady(9.5, 10.5, ok=False, latency_ms=50) + steady(10.5, 12)
    verdict = evaluate([ErrorBurst(0.3, window="whole")], records, Windows(start=0, end=10))
    (burst,) = verdict.measurements
    # Failures starting at 9.5 .. 9.9 fall inside [0, 10); the burst ends with the last one's response.
    assert burst.value == pytest.approx(0.45) and not burst.passed


def test_no_requests_proves_nothing():
    verdict = evaluate([Availability(0.5), LatencyPercentile(95, 100), ErrorBurst(1)], [], Windows(start=0, end=10))
    assert not verdict.passed
    assert all(m.measured == "none: no requests in the window" and m.value is None for m in verdict.measurements)


def test_all_failed_requests():
    records = steady(0, 1, ok=False)
    availability, latency = evaluate(
        [Availability(0.5), LatencyPercentile(95, 100)], records, Windows(0, 1)
    ).measurements
    assert availability.value == 0 and not availability.passed
    assert latency.measured == "none: all 10 requests failed" and not latency.passed


def test_fault_windows_without_a_fault_fail_their_objectives():
    (m,) = evaluate([Availability(0.5, window="fault")], steady(0, 1), Windows(0, 1)).measurements
    assert not m.passed and m.measured == "none: the run had no fault"


def test_recovery_and_lost_writes_come_from_outside_the_records():
    objectives = [RecoveryTime(10), LostWrites()]
    verdict = evaluate(objectives, [], WHOLE, recovery_s=4.2, lost_writes=0)
    assert verdict.passed and [m.value for m in verdict.measurements] == [4.2, 0]
    verdict = evaluate(objectives, [], WHOLE, recovery_s=None, lost_writes=3)
    assert [m.measured for m in verdict.measurements] == ["none: no recovery was seen", "3"]


def test_promql_objectives_use_every_sample_of_the_window():
    asked = []

    def query(expr: str, start: float, end: float) -> list[float]:
        asked.append((expr, start, end))
        return [0.0, 2.0, 5.0]

    objectives = [PromQL("rate(errors[10s])", at_most=4, window="fault"), PromQL("up", at_least=0)]
    verdict = evaluate(objectives, [], WHOLE, prometheus=query)
    assert [m.passed for m in verdict.measurements] == [False, True]
    assert asked == [("rate(errors[10s])", 10, 20), ("up", 0, 30)]
    (unmeasured,) = evaluate(objectives[:1], [], WHOLE).measurements
    assert unmeasured.measured == "none: no Prometheus was given"


def test_a_failed_verdict_names_target_measured_value_and_window_in_one_line_each():
    records = steady(0, 10) + steady(10, 20, ok=False)
    verdict = evaluate([Availability(0.99, window="fault"), LatencyPercentile(95, 100)], records, WHOLE)
    with pytest.raises(SloViolation) as failure:
        verdict.check()
    lines = str(failure.value).splitlines()
    assert lines == [
        "SLO violated:",
        "FAILED availability (during fault): target >= 99.00%, measured 0.00% (0 of 100 requests succeeded)",
    ]
    assert isinstance(failure.value, AssertionError)
    assert verdict.explain().splitlines()[0] == "SLO violated: 1 of 2 objectives failed"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Availability(1.5), r"availability must be a ratio in \(0, 1\] such as 0.99, not 1.5"),
        (lambda: Availability(0), "availability must be a ratio"),
        (lambda: LatencyPercentile(95, -5), "latency target must be positive milliseconds, not -5"),
        (lambda: LatencyPercentile(101, 5), r"percentile must be in \(0, 100\]"),
        (lambda: ErrorBurst(-1), "error burst target must be 0 s or more"),
        (lambda: RecoveryTime(0), "recovery target must be positive seconds"),
        (lambda: LostWrites(-1), "lost writes target must be 0 or more"),
        (lambda: Availability(0.9, window="later"), "window must be one of whole, fault, after, not 'later'"),
        (lambda: PromQL("up"), "needs at_most or at_least"),
        (lambda: PromQL(" ", at_most=1), "needs a query"),
    ],
)
def test_bad_objectives_are_refused(make, message):
    with pytest.raises(SpecError, match=message):
        make()


def test_records_known_to_be_partial_fail_every_objective():
    records = steady(0, 30)  # every request succeeded, as far as the records at hand go
    objectives = [Availability(0.5), LatencyPercentile(95, 100, window="fault"), RecoveryTime(10), LostWrites()]
    partial = "the load stream lost 12 of 10,400 records"
    verdict = evaluate(objectives, records, WHOLE, recovery_s=1.0, lost_writes=0, partial_data=partial)
    assert verdict.partial_data == partial
    assert not verdict.passed and verdict.met == 0
    assert all(m.value is None for m in verdict.measurements)
    first = verdict.measurements[0]
    assert first.line() == (
        "FAILED availability (whole run): target >= 50.00%, measured the load stream lost 12 of 10,400 records: "
        "no verdict over partial data (the records at hand gave 100.00% (300 of 300 requests succeeded))"
    )
    assert verdict.explain().splitlines()[0] == (
        "SLO violated: 4 of 4 objectives failed "
        "(the load stream lost 12 of 10,400 records: no verdict over partial data)"
    )
    # The numbers behind it are still reported, for whoever reads the journal.
    assert [s.requests for s in verdict.stats] == [300, 100, 100]
    assert evaluate(objectives, records, WHOLE, recovery_s=1.0, lost_writes=0).passed
