"""An experiment checks what it can before any load or fault starts, and judges from what it was given:
the fault window after every injection, and no verdict over a load stream that lost records."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import chaoskit.experiment
from chaoskit.errors import SpecError
from chaoskit.experiment import Experiment, ExperimentSpec, Workload
from chaoskit.faults.base import FaultRecord, FaultRound
from chaoskit.load import LoadSpec, RequestRecord, StreamStats
from chaoskit.observe import Event, RecoveryWatch
from chaoskit.prometheus import PrometheusClient, PrometheusUnreachable
from chaoskit.report import write_reports
from chaoskit.slo import Availability, PromQL, RecoveryTime, SloViolation


class NoChaos:
    """Stands in for the chaos handle: an experiment that refuses to start must never touch it."""

    def __init__(self) -> None:
        self.records: list[object] = []

    def recovery_watch(self, *args: object) -> object:
        raise AssertionError("the experiment started a watch before its checks passed")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOAD = LoadSpec(host="http://127.0.0.1:1", run_seconds=5)


def test_an_unreachable_prometheus_fails_before_the_load_starts():
    spec = ExperimentSpec("promql", LOAD, (PromQL("up", at_least=1),))
    with PrometheusClient.on_port(closed_port()) as prometheus:
        run = Experiment(spec, NoChaos(), prometheus=prometheus)  # type: ignore[arg-type]
        with pytest.raises(PrometheusUnreachable, match=r"http://127\.0\.0\.1:\d+"), run:
            pytest.fail("the block must not run")
    assert run.result is None and run.records == []


def test_promql_objectives_need_a_prometheus():
    run = Experiment(ExperimentSpec("promql", LOAD, (PromQL("up", at_least=1),)), NoChaos())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="has PromQL or alert objectives but no Prometheus to ask"), run:
        pytest.fail("the block must not run")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " "}, "an experiment needs a name"),
        ({"settle_seconds": -1}, "settle_seconds must be 0 or more"),
    ],
)
def test_bad_experiment_specs(kwargs, message):
    with pytest.raises(SpecError, match=message):
        ExperimentSpec(**{"name": "x", "load": LOAD, "objectives": (Availability(0.9),), **kwargs})


# --- Judging a run from fabricated parts: the fault window, and the load stream's completeness ------------

T0 = 1_800_000_000.0
"""Unix time of the first injection."""
M0 = 5_000.0
"""The same moment on the monotonic clock."""
OFFSET = T0 - M0


class FakeLoad:
    """What judging reads of a finished Load: the warm-up's end, the records, the marks, the stream."""

    def __init__(self, records: list[RequestRecord], stream: StreamStats) -> None:
        self.warmup_ended_at = T0 - 10
        self.marks: list[tuple[float, str]] = []
        self._records = records
        self._stream = stream

    def records(self) -> list[RequestRecord]:
        return list(self._records)

    def stream_stats(self) -> StreamStats:
        return self._stream


def steady_records(start: float, end: float) -> list[RequestRecord]:
    return [RequestRecord(start + i / 10, "/", 5.0, True, None, 3) for i in range(round((end - start) * 10))]


def complete_stream(records: list[RequestRecord]) -> StreamStats:
    return StreamStats(len(records), len(records), 0, 20.0, 5.0)


def repeated_kill() -> FaultRecord:
    """A pod kill of three rounds, 3 s apart, as PodKill records it."""
    fault = FaultRecord("pod-kill-1", "pod-kill", "chaoskit", {"rounds": 3}, targets=["web-1"], undoable=False)
    fault.injected_at, fault.injected_mono, fault.effect_mono, fault.verified = T0, M0, M0 + 0.05, True
    fault.rounds = [FaultRound([f"web-{i + 1}"], T0 + 3 * i, 0.05) for i in range(3)]
    return fault


def three_recoveries() -> list[Event]:
    """Lost and whole after each round (monotonic): whole at +1.5, +4.4 and +7.8 s."""
    timeline = [(0.1, 2), (1.5, 3), (3.1, 2), (4.4, 3), (6.2, 2), (7.8, 3)]
    return [Event(M0 + at, source, ready, 3) for at, ready in timeline for source in ("deployment", "endpoints")]


def judged(
    records: list[RequestRecord], stream: StreamStats, events: list[Event], faults: list[FaultRecord]
) -> Experiment:
    objectives = (Availability(0.9), Availability(0.5, window="fault"), RecoveryTime(30))
    spec = ExperimentSpec("judged", LOAD, objectives, Workload("shop", "web", "web"))
    run = Experiment(spec, NoChaos())  # type: ignore[arg-type]
    run._load = FakeLoad(records, stream)  # type: ignore[assignment]
    run._watch = RecoveryWatch(None, "shop", "web", "web", events=events)  # type: ignore[arg-type]
    run._offset = OFFSET
    run.result = run._judge(faults, run._recoveries(faults), T0 + 20, error=None)
    return run


def test_injection_span_counts_every_round_of_a_repeated_kill():
    one_shot = FaultRecord("node-1", "node-failure", "chaoskit", {}, targets=["w"])
    one_shot.injected_at, one_shot.injected_mono = T0 + 1, M0 + 1
    assert chaoskit.experiment.injection_span([repeated_kill(), one_shot], OFFSET) == pytest.approx((M0, M0 + 6))
    assert chaoskit.experiment.injection_times([repeated_kill(), one_shot]) == [T0, T0 + 1, T0 + 3, T0 + 6]
    assert (
        chaoskit.experiment.injection_span([FaultRecord("x", "pod-kill", "chaoskit", {})], OFFSET) is None
    )  # a dry run


def test_the_fault_window_ends_at_the_recovery_after_the_last_round():
    records = steady_records(T0 - 10, T0 + 20)
    faults = [repeated_kill()]
    run = judged(records, complete_stream(records), three_recoveries(), faults)
    assert run.result is not None
    verdict = run.result.verdict
    assert verdict.recovery_s == pytest.approx(7.8)  # from the first round's injection, whole after the last
    during = next(s for s in verdict.stats if s.window == "fault")
    assert (during.start, during.end) == pytest.approx((T0, T0 + 7.8))
    assert [e.at for e in run.result.events if e.kind == "recovered"] == pytest.approx([T0 + 7.8])
    assert verdict.passed, verdict.explain()

    # Before the last round's recovery shows, there is none, whatever the first rounds did.
    ((at, seconds),) = run._recoveries(faults) or [(0.0, 0.0)]
    assert (at, seconds) == pytest.approx((T0, 7.8))
    run._watch = RecoveryWatch(None, "shop", "web", "web", events=three_recoveries()[:-2])  # type: ignore[arg-type]
    assert run._recoveries(faults) is None


def pod_kill_at(seconds: float, name: str) -> FaultRecord:
    fault = FaultRecord(name, "pod-kill", "chaoskit", {}, targets=[name], undoable=False)
    fault.injected_at, fault.injected_mono, fault.verified = T0 + seconds, M0 + seconds, True
    return fault


def lost_and_whole(*pairs: tuple[float, float]) -> list[Event]:
    """The workload and its endpoints 2 of 3 ready at each loss, 3 of 3 at each whole (monotonic)."""
    timeline = sorted([(loss, 2) for loss, _ in pairs] + [(whole, 3) for _, whole in pairs])
    return [Event(M0 + at, source, ready, 3) for at, ready in timeline for source in ("deployment", "endpoints")]


def test_each_fault_recovers_on_its_own_clock_and_the_slowest_is_judged():
    """Two kills 35 s apart, each whole again within 5 s: a 30 s objective is met (measured from the first
    fault to the recovery after the last, it never could be), and the measurement lists both."""
    records = steady_records(T0 - 10, T0 + 60)
    faults = [pod_kill_at(0, "kill-1"), pod_kill_at(35, "kill-2")]
    run = judged(records, complete_stream(records), lost_and_whole((0.2, 4.1), (35.3, 38.0)), faults)
    assert run.result is not None
    verdict = run.result.verdict
    assert verdict.recoveries == pytest.approx((4.1, 3.0))
    assert verdict.recovery_s == pytest.approx(4.1)
    (recovery,) = [m for m in verdict.measurements if m.objective == "recovery time"]
    assert recovery.passed and recovery.measured == "4.10 s, the slowest of 2 faults' own recoveries (4.10, 3.00 s)"
    during = next(s for s in verdict.stats if s.window == "fault")  # from the first injection to the last recovery
    assert (during.start, during.end) == pytest.approx((T0, T0 + 38.0))
    assert [e.at for e in run.result.events if e.kind == "recovered"] == pytest.approx([T0 + 4.1, T0 + 38.0])
    assert verdict.passed, verdict.explain()


def test_a_fault_injected_before_the_last_one_healed_is_measured_with_it():
    """The second kill lands at +3 s, while the first's pod is still missing: one recovery, from the first
    kill until whole again after the second."""
    faults = [pod_kill_at(0, "kill-1"), pod_kill_at(3, "kill-2")]
    records = steady_records(T0 - 10, T0 + 20)
    run = judged(records, complete_stream(records), lost_and_whole((0.2, 9.0), (3.2, 9.0)), faults)
    assert run.result is not None
    assert run.result.verdict.recoveries == pytest.approx((9.0,))
    assert run.result.verdict.recovery_s == pytest.approx(9.0)


def test_a_loss_after_the_next_fault_is_never_taken_for_the_fault_before():
    """The first fault takes nothing down (a latency, say); the kill 20 s later does. The first fault joins
    the kill's span rather than being credited with the kill's recovery: one recovery, 20 + 2.5 s."""
    quiet = pod_kill_at(0, "quiet")
    quiet.kind = "latency"
    faults = [quiet, pod_kill_at(20, "kill")]
    records = steady_records(T0 - 10, T0 + 40)
    run = judged(records, complete_stream(records), lost_and_whole((20.2, 22.5)), faults)
    assert run.result is not None
    assert run.result.verdict.recoveries == pytest.approx((22.5,))


def test_records_the_stream_lost_fail_every_objective_and_show_everywhere(tmp_path: Path):
    records = steady_records(T0 - 10, T0 + 20)
    lost = StreamStats(len(records), len(records) + 12, 0, 20.0, 5.0)
    run = judged(records, lost, three_recoveries(), [repeated_kill()])
    result = run.result
    assert result is not None
    verdict = result.verdict
    shortfall = f"the load stream lost 12 of {len(records) + 12:,} records"
    assert verdict.partial_data == shortfall
    assert not verdict.passed and verdict.met == 0 and len(verdict.measurements) == 3
    assert all(f"{shortfall}: no verdict over partial data" in m.measured for m in verdict.measurements)
    assert result.outcome == "failed"
    assert f"NO VERDICT: {shortfall}" in result.headline()
    assert result.properties()["chaoskit_partial_data"] == shortfall
    with pytest.raises(SloViolation, match="no verdict over partial data"):
        verdict.check()

    journal, report = write_reports([result], tmp_path)
    (entry,) = json.loads(journal.read_text())["experiments"]
    assert entry["verdict"]["partial_data"] == shortfall
    stream = entry["load"]["stream"]
    assert (stream["received"], stream["locust_requests"], stream["bad_lines"]) == (300, 312, 0)
    assert stream["complete"] is False and stream["shortfall"] == shortfall
    page = report.read_text()
    assert f"No verdict: {shortfall}" in page and "INCOMPLETE" in page


def test_unreadable_lines_fail_the_verdict_too():
    records = steady_records(T0 - 10, T0 + 20)
    garbled = StreamStats(len(records), len(records), 0, 20.0, 5.0, bad_lines=3, first_bad_line="b'[1.0,'")
    run = judged(records, garbled, three_recoveries(), [repeated_kill()])
    assert run.result is not None
    assert run.result.verdict.partial_data == "the load stream sent 3 unreadable lines"
    assert not any(m.passed for m in run.result.verdict.measurements)


def test_a_complete_stream_leaves_the_verdict_to_the_records():
    records = steady_records(T0 - 10, T0 + 20)
    run = judged(records, complete_stream(records), three_recoveries(), [repeated_kill()])
    assert run.result is not None and run.result.verdict.partial_data is None
    assert run.result.load["stream"]["complete"] is True
