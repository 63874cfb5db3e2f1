"""Abort on burn, and the big red button, on the real cluster.

A stop condition that trips undoes the experiment's faults at once while its
block still runs; ``chaoskit abort`` from another process undoes a live run's
fault and the run fails saying so. What is left is counted by :mod:`residue`,
the independent scan (Docker CLI and the official client).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from residue import scan
from workloads import UNDONE_AT_ONCE, Web

from chaoskit import Availability, AvailabilityBelow, Experiment, ExperimentSpec, LoadSpec
from chaoskit.state.ledger import Ledger


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_stop_condition_that_trips_undoes_the_fault_at_once_and_fails_the_run(cluster, chaos, web: Web) -> None:
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()
    load = LoadSpec(
        host=f"http://127.0.0.1:{web.node_port}",
        run_seconds=60,
        users=4,
        rate_per_user=10,
        warmup_seconds=2,
        timeout_seconds=1,
    )
    spec = ExperimentSpec(
        "trip on purpose",
        load,
        (Availability(0.5),),
        stop_conditions=(AvailabilityBelow(0.8, over_seconds=3),),
        settle_seconds=2,
    )
    run = Experiment(spec, chaos, check=False)
    with run:
        # Every web pod cut off from everything: the host's requests through the NodePort time out.
        with chaos.partition(web.namespace, "app=web", max_share=1.0) as cut:
            assert scan(cluster.name, str(cluster.kubeconfig)).of(cut.fault_id), "the cut is in place"
            held_all = run.hold(40)
            # Still inside the fault's block: the trip has undone it already.
            inside = scan(cluster.name, str(cluster.kubeconfig))
    assert not held_all, "the stop condition should have cut the hold short"
    assert run.aborted is not None and run.aborted_at is not None and run.abort_undone_at is not None
    assert run.aborted.startswith("aborted by stop condition availability below 80% over 3 s at t="), run.aborted
    assert inside.of(cut.fault_id) == [] and inside.empty(), inside
    took = run.abort_undone_at - run.aborted_at
    assert took < UNDONE_AT_ONCE, f"the faults were undone {took:.2f} s after the trip"
    result = run.result
    assert result is not None and result.outcome == "failed" and not result.verdict.passed
    assert result.verdict.aborted == run.aborted and "ABORTED: aborted by stop condition" in result.headline()
    assert any(e.kind == "aborted" for e in result.events)
    assert Ledger(cluster.name).unsettled() == []
    print(f"{run.aborted}; faults undone and proven {took * 1000:.0f} ms after the trip")


INNER = """
import pathlib
from chaoskit import Availability, LoadSpec

def test_held_until_aborted(experiment, chaos):
    load = LoadSpec(host="http://127.0.0.1:{port}", run_seconds=60, users=2, rate_per_user=5, warmup_seconds=1)
    with experiment(load, [Availability(0.5)], settle_seconds=1) as run:
        with chaos.partition("{ns}", "role=client", peer_selector="app=web", max_share=1.0) as cut:
            pathlib.Path("{marker}").write_text(cut.fault_id)
            run.hold(60)
"""


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_chaoskit_abort_from_another_terminal_undoes_a_live_experiment(
    cluster, web: Web, client: str, tmp_path: Path
) -> None:
    marker = tmp_path / "injected"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(INNER).format(port=web.node_port, ns=web.namespace, marker=marker))
    inner = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(test_file), "-p", "no:cacheprovider", "-q", "-s", "-rA"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text():
            assert inner.poll() is None, inner.communicate()[0]
            assert time.monotonic() < deadline, "the inner run never injected its fault"
            time.sleep(0.1)
        fault_id = marker.read_text()
        assert scan(cluster.name, str(cluster.kubeconfig)).of(fault_id), "the fault is in place"

        status = cli("status", "--name", cluster.name)
        dead = "DEAD (residue)" in status.stdout or any(  # another run's, if any, not yet being deleted
            " dead  age " in line and "  Terminating  " not in line for line in status.stdout.splitlines()
        )
        assert status.returncode == (1 if dead else 0), status.stdout + status.stderr  # a live fault is no residue
        assert f"{fault_id}  partition  since " in status.stdout, status.stdout
        assert f"by pid {inner.pid} on " in status.stdout and ", running: " in status.stdout, status.stdout

        started = time.monotonic()
        aborted = cli("abort", "--name", cluster.name)
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        after = scan(cluster.name, str(cluster.kubeconfig))
        assert after.of(fault_id) == [], after
        assert f"abort of {cluster.name}: 1 fault(s) undone in " in aborted.stdout, aborted.stdout
        undo_seconds = float(aborted.stdout.split(" undone in ")[1].split(" s")[0])
        assert undo_seconds < UNDONE_AT_ONCE, aborted.stdout
        output, _ = inner.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if inner.poll() is None:
            inner.kill()
    assert inner.returncode == 1, output
    assert "aborted externally by chaoskit abort (pid " in output, output
    assert "FAILED test_held_until_aborted; ABORTED: aborted externally by chaoskit abort" in output, output
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()
    assert Ledger(cluster.name).unsettled() == []
    print(f"chaoskit abort undid {fault_id} in {undo_seconds:.2f} s; the live run ended {took:.1f} s after the abort")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_an_abort_stops_the_rounds_of_a_repeated_pod_kill(chaos, web: Web) -> None:
    load = LoadSpec(host=f"http://127.0.0.1:{web.node_port}", run_seconds=30, users=2, rate_per_user=5)
    spec = ExperimentSpec("rounds then abort", load, (Availability(0.5),), settle_seconds=0)
    run = Experiment(spec, chaos, check=False)
    with run:
        with chaos.pod_kill(web.namespace, "app=web", rounds=10, interval_seconds=1, grace_seconds=0) as kill:
            run.abort("aborted by the test")
            time.sleep(4)  # four more rounds were due in this time
    assert len(kill.rounds) == 1, [r.targets for r in kill.rounds]
    assert run.result is not None and run.result.verdict.aborted == "aborted by the test"
