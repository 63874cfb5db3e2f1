"""Load under a fault on the real cluster: a verdict whose numbers agree with the records and the watch."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from workloads import Web, steady_load

from chaoskit.chaos import Chaos
from chaoskit.experiment import Workload
from chaoskit.slo import Availability, ErrorBurst, LatencyPercentile, RecoveryTime

pytest_plugins = ["pytester"]


def test_pod_kill_under_load_gives_a_verdict_that_agrees_with_records_and_watch(
    experiment, chaos: Chaos, web: Web
) -> None:
    objectives = [
        Availability(0.90),
        Availability(0.50, window="fault"),
        Availability(0.99, window="after"),
        LatencyPercentile(95, 1000),
        ErrorBurst(10),
        RecoveryTime(45),
    ]
    with experiment(steady_load(web, 30), objectives, Workload(web.namespace, "web", "web")) as run:
        time.sleep(4)
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0) as fault:
            pass
    result = run.result
    assert result is not None and result.verdict.passed, result.verdict.explain()
    records = run.records
    (whole, during, after) = result.verdict.stats
    assert whole.requests > 200, "the load should have run steadily"

    # The verdict's availability is the share of the records started in each window that succeeded.
    for stats in (whole, during, after):
        inside = [r for r in records if stats.start <= r.started < stats.end]
        assert stats.requests == len(inside)
        assert stats.errors == sum(1 for r in inside if not r.ok)

    # The recovery time is the watch's: the fault until the Deployment was whole again.
    ready = [e for e in result.events if e.kind == "ready" and e.at >= fault.injected_at]
    lost = next(e for e in ready if e.ready < 3)
    whole_again = next(e for e in ready if e.at > lost.at and e.ready == 3)
    assert result.verdict.recovery_s == pytest.approx(whole_again.at - fault.injected_at, abs=0.05)
    assert during.start == fault.injected_at and during.end == pytest.approx(whole_again.at, abs=0.05)

    # What clients saw agrees with it: the failed requests started inside the fault window. Outside it a
    # busy 2-core host may stall a request past its timeout now and then, and nothing else may fail.
    failed = [r for r in records if not r.ok]
    outside = [r for r in failed if not during.start - 0.05 <= r.started < during.end]
    steady = whole.requests - during.requests
    assert all(r.error == "TimeoutError" for r in outside) and len(outside) <= steady / 1000, [
        (r.started - fault.injected_at, r.error) for r in failed
    ]
    print(
        f"{result.headline()}; failed requests {len(failed)} "
        f"({sorted({r.error for r in failed if r.error})}); fault window {during.end - during.start:.2f} s"
    )


def test_two_kills_apart_are_each_judged_on_their_own_recovery(experiment, chaos: Chaos, web: Web) -> None:
    """Two kills 12 s apart, each whole again within a few seconds: a 10 s recovery objective is met, though
    the first kill to the second's recovery spans more than 10 s (the one span judged before)."""
    objectives = [Availability(0.80), RecoveryTime(10)]
    with experiment(steady_load(web, 30), objectives, Workload(web.namespace, "web", "web")) as run:
        time.sleep(3)
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0) as first:
            pass
        time.sleep(12)
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0) as second:
            pass
    result = run.result
    assert result is not None and result.verdict.passed, result.verdict.explain()
    assert first.injected_at is not None and second.injected_at is not None
    recovered = [e.at for e in result.events if e.kind == "recovered"]
    assert len(result.verdict.recoveries) == 2 and len(recovered) == 2, result.events

    # Each recovery is the watch's own: from that kill until the Deployment was whole again after it.
    ready = [e for e in result.events if e.kind == "ready"]
    for fault, seconds, at in zip((first, second), result.verdict.recoveries, recovered, strict=True):
        assert fault.injected_at is not None
        after = [e for e in ready if e.at >= fault.injected_at]
        lost = next(e for e in after if e.ready < 3)
        whole_again = next(e for e in after if e.at > lost.at and e.ready == 3)
        assert seconds == pytest.approx(whole_again.at - fault.injected_at, abs=0.05)
        assert at == pytest.approx(whole_again.at, abs=0.05) and seconds < 10
    assert result.verdict.recovery_s == max(result.verdict.recoveries)
    (during,) = [s for s in result.verdict.stats if s.window == "fault"]
    assert during.start == first.injected_at and during.end == pytest.approx(recovered[-1], abs=0.05)
    assert during.end - during.start > 10, "the kills should be far enough apart that one span would fail"
    (measured,) = [m.measured for m in result.verdict.measurements if m.objective == "recovery time"]
    assert "the slowest of 2 faults' own recoveries" in measured
    print(f"{result.headline()}; recovery: {measured}; first kill to last recovery {during.end - during.start:.1f} s")


def test_an_experiment_as_a_user_writes_reports_and_fails_a_too_tight_slo(pytester: pytest.Pytester, web: Web) -> None:
    pytester.makepyfile(
        f"""
        import time
        from chaoskit.experiment import Workload
        from chaoskit.load import LoadSpec
        from chaoskit.slo import Availability, LatencyPercentile, RecoveryTime

        LOAD = LoadSpec(
            host="http://127.0.0.1:{web.node_port}", users=4, rate_per_user=20, run_seconds=15, warmup_seconds=2
        )
        WEB = Workload("{web.namespace}", "web", "web")

        def test_generous(experiment, chaos):
            with experiment(LOAD, [Availability(0.5), RecoveryTime(60)], WEB):
                time.sleep(2)
                with chaos.pod_kill("{web.namespace}", "app=web"):
                    pass

        def test_too_tight(experiment):
            with experiment(LOAD, [LatencyPercentile(50, 0.001)], settle_seconds=0):
                time.sleep(2)  # the block is the run: with no fault to wait on, it ends with the block
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--chaos-report-dir=out", "--junitxml=out/junit.xml", "-W", "error"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*SLO violated:*",
            "*FAILED p50 latency (whole run): target <= 0.001 ms, measured * ms (over * successful requests)*",
            "*chaoskit experiments*",
            "PASSED test_generous; availability *; recovered in * s*",
            "FAILED test_too_tight; MISSED p50 latency (whole run): target <= 0.001 ms, measured * ms*; "
            "availability *; 0/1 objectives met",
            "reports: out/chaoskit-report.html, out/chaoskit-journal.json",
        ]
    )
    out = Path(pytester.path, "out")
    journal = json.loads((out / "chaoskit-journal.json").read_text())
    assert [e["outcome"] for e in journal["experiments"]] == ["passed", "failed"]
    assert journal["experiments"][0]["faults"][0]["kind"] == "pod-kill"
    assert "<svg class='timeline'" in (out / "chaoskit-report.html").read_text()
    properties = {
        (case.get("name"), p.get("name")): p.get("value")
        for case in ET.parse(out / "junit.xml").iter("testcase")
        for p in case.iter("property")
    }
    assert properties[("test_generous", "chaoskit_outcome")] == "passed"
    assert float(properties[("test_generous", "chaoskit_recovery_s")]) > 0
    assert properties[("test_too_tight", "chaoskit_outcome")] == "failed"


def test_a_repeated_pod_kill_ends_the_fault_window_at_the_recovery_after_its_last_round(
    experiment, chaos: Chaos, web: Web
) -> None:
    objectives = [Availability(0.80), Availability(0.99, window="after"), RecoveryTime(60)]
    with experiment(steady_load(web, 45), objectives, Workload(web.namespace, "web", "web")) as run:
        time.sleep(2)
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0, rounds=2, interval_seconds=4) as fault:
            time.sleep(5)  # the second round comes 4 s after the first
    result = run.result
    assert result is not None and result.verdict.passed, result.verdict.explain()
    assert len(fault.rounds) == 2, fault.rounds
    last = fault.rounds[-1].injected_at
    (_, during, after) = result.verdict.stats

    # The window runs from the first round's kill until the Deployment is whole again after the last round's.
    # (The drop of the last round may be seen just before its injection time is taken, or the first round's
    # replacement may still be starting then: the first whole count after the last round is the end.)
    whole_again = next(e for e in result.events if e.kind == "ready" and e.at > last and e.ready == 3)
    assert during.start == fault.injected_at
    assert during.end >= whole_again.at - 0.05 and during.end > last
    assert result.verdict.recovery_s == pytest.approx(during.end - fault.injected_at)
    assert after.start == during.end
    print(
        f"{result.headline()}; rounds at +0 and +{last - fault.injected_at:.2f} s; fault window "
        f"{during.end - during.start:.2f} s, whole {during.end - last:.2f} s after the last round"
    )
