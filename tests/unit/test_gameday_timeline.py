"""The fault timeline on a clock a pause stops (fake faults that record what happened; no cluster)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest

from chaoskit.faults.base import FaultRecord
from chaoskit.gameday.timeline import PlayedFault, Timeline


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def fault(self, name: str, fail: bool = False) -> Any:
        @contextmanager
        def manager() -> Any:
            if fail:
                raise RuntimeError(f"{name} could not be injected")
            self.lines.append(f"inject {name}")
            record = FaultRecord(fault_id=name, kind=name, cluster="c", spec={}, targets=[f"{name}-target"])
            record.verified = True
            try:
                yield record
            finally:
                self.lines.append(f"undo {name}")

        return manager


def played(log: Log, name: str, at: float, duration: float | None, until_recovered: bool = False, **kw: Any):
    return PlayedFault(0, name, at, duration, until_recovered, log.fault(name, **kw))


def test_faults_start_at_their_offset_overlap_and_end_after_their_duration():
    log = Log()
    timeline = Timeline([played(log, "a", 5, 10), played(log, "b", 8, 2)], recovered=lambda: False)
    timeline.start(now=100)
    for t in (104, 105, 106, 108, 109, 110, 115):
        timeline.tick(now=100 + t - 100)
        log.lines.append(f"t={t - 100}")
    assert log.lines == [
        "t=4",
        "inject a",
        "t=5",
        "t=6",
        "inject b",
        "t=8",
        "t=9",
        "undo b",
        "t=10",
        "undo a",
        "t=15",
    ]
    assert timeline.done


def test_a_pause_undoes_what_is_in_place_stops_the_clock_and_resume_holds_what_was_left():
    log = Log()
    fault = played(log, "a", 1, 10)
    timeline = Timeline([fault], recovered=lambda: False)
    timeline.start(now=0)
    timeline.tick(now=1)
    timeline.tick(now=4)  # held 3 s
    assert timeline.pause(now=4) == [fault] and fault.state == "paused"
    timeline.tick(now=50)  # paused: nothing moves
    assert log.lines == ["inject a", "undo a"] and timeline.clock(now=50) == pytest.approx(4)
    assert timeline.resume(now=60) == [fault] and fault.state == "injected" and fault.injections == 2
    assert fault.left(timeline.clock(now=60)) == pytest.approx(7)
    timeline.tick(now=66)
    assert fault.state == "injected"
    timeline.tick(now=67)
    assert fault.state == "undone" and log.lines == ["inject a", "undo a", "inject a", "undo a"]


def test_until_recovered_holds_until_the_workloads_are_whole():
    log = Log()
    whole = {"now": False}
    fault = played(log, "node", 0, None, until_recovered=True)
    timeline = Timeline([fault], recovered=lambda: whole["now"])
    timeline.start(now=0)
    timeline.tick(now=0)
    timeline.tick(now=30)
    assert fault.state == "injected"
    whole["now"] = True
    timeline.tick(now=31)
    assert fault.state == "undone" and timeline.done


def test_undo_all_undoes_what_is_in_place_and_skips_what_never_started():
    log = Log()
    timeline = Timeline([played(log, "a", 0, 100), played(log, "b", 50, 1)], recovered=lambda: False)
    timeline.start(now=0)
    timeline.tick(now=1)
    timeline.undo_all()
    assert log.lines == ["inject a", "undo a"]
    assert [f.state for f in timeline.faults] == ["undone", "skipped"]


def test_a_fault_that_cannot_be_injected_fails_the_timeline_with_its_error():
    log = Log()
    timeline = Timeline([played(log, "bad", 0, 5, fail=True)], recovered=lambda: False)
    timeline.start(now=0)
    with pytest.raises(RuntimeError, match="bad could not be injected"):
        timeline.tick(now=0)
    (fault,) = timeline.faults
    assert fault.state == "failed" and fault.error == "RuntimeError: bad could not be injected"
    assert timeline.describe(0)[0]["detail"] == "RuntimeError: bad could not be injected"


def test_a_fault_without_duration_is_undone_at_the_next_tick_once_proven():
    log = Log()
    timeline = Timeline([played(log, "kill", 2, None)], recovered=lambda: False)
    timeline.start(now=0)
    timeline.tick(now=2)
    assert log.lines == ["inject kill"]
    timeline.tick(now=2.1)
    assert log.lines == ["inject kill", "undo kill"] and timeline.done


def test_while_its_undo_runs_a_fault_is_shown_undoing_not_undone_or_paused():
    seen: list[tuple[str, str]] = []
    timeline: Timeline

    @contextmanager
    def manager() -> Any:
        record = FaultRecord(fault_id="a", kind="a", cluster="c", spec={}, targets=["a-target"])
        record.verified = True
        yield record
        (view,) = timeline.describe(timeline.clock())  # what the live view draws while the undo runs
        seen.append((view["state"], view["detail"]))

    fault = PlayedFault(0, "a", 0, 10, False, manager)
    timeline = Timeline([fault], recovered=lambda: False)
    timeline.start(now=0)
    timeline.tick(now=0)
    timeline.pause(now=1)
    assert seen == [("undoing", "undoing, then proving the undo")] and fault.state == "paused"
    timeline.resume(now=2)
    timeline.undo_all()
    assert seen[-1][0] == "undoing" and fault.state == "undone"


def test_without_a_terminal_progress_is_one_line_per_stage_each_its_last_snapshot():
    import io

    from chaoskit.gameday.view import LineView, Snapshot

    out = io.StringIO()
    fault = {"label": "pod-kill", "detail": ""}
    with LineView(out) as view:
        for t in range(8):  # 3 s of warm-up, the fault pending for 2 s, then injected for 3 s
            phase = "warm-up" if t < 3 else "running"
            state = "pending" if t < 5 else "injected"
            view.show(Snapshot("exp", phase, float(t), 10.0 - t, [{**fault, "state": state}], rps=float(t)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "warm-up t=2s" in lines[0] and "pod-kill pending" in lines[1] and "t=4s" in lines[1]
    assert "pod-kill injected" in lines[2] and "t=7s" in lines[2] and "7.0 req/s" in lines[2]


def test_the_time_left_is_the_timelines_planned_end_and_a_pause_stops_it():
    log = Log()
    timeline = Timeline([played(log, "a", 5, 10), played(log, "b", 8, 2), played(log, "c", 3, None)], lambda: False)
    assert timeline.left() == pytest.approx(15)  # not started: a's start plus its duration
    timeline.start(now=0)
    timeline.tick(now=6)  # a injected at 6 s: 10 s to hold from there; c undone once proven
    assert timeline.left(timeline.clock(now=6)) == pytest.approx(10)
    timeline.tick(now=9)
    assert timeline.left(timeline.clock(now=9)) == pytest.approx(7)
    timeline.pause(now=9)
    assert timeline.left(timeline.clock(now=40)) == pytest.approx(7)  # the clock stopped
    timeline.resume(now=40)
    timeline.tick(now=48)
    assert timeline.done and timeline.left(timeline.clock(now=48)) == 0
