"""Locks between runs on one machine (files and processes only, no cluster): other processes really hold them."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from chaoskit.errors import FaultBlocked
from chaoskit.state import locks
from chaoskit.state.ledger import Ledger, LedgerEntry


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(locks, "POLL_SECONDS", 0.05)
    yield tmp_path
    for proc in STARTED:
        stop(proc)
    STARTED.clear()


STARTED: list[subprocess.Popen[str]] = []


def other_run(cache, nodes, *, exclusive=True, hold=30.0):
    """Another process holding ``nodes`` of cluster c1; returns once it holds them."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from chaoskit.state import locks
        with locks.holding("c1", {nodes!r}, exclusive={exclusive!r}, what="other"):
            print("held", flush=True)
            time.sleep({hold})
        """
    )
    return holder(cache, code)


def holder(cache, code):
    """Run ``code`` in another process with the test's cache; return once it prints "held"."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "CHAOSKIT_CACHE": str(cache)},
    )
    STARTED.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_a_fault_waits_while_another_run_holds_its_node_and_names_that_runs_fault(cache):
    proc = other_run(cache, ["w1"])
    Ledger("c1").record(LedgerEntry("pod-kill-1234", "pod-kill", "c1", {}, pid=proc.pid, started_at=None))
    with pytest.raises(FaultBlocked) as blocked:
        with locks.holding("c1", ["w1", "w2"], what="latency x", wait_seconds=0.5):
            pytest.fail("took a node another run holds")
    assert "pod-kill pod-kill-1234 of pid" in str(blocked.value)
    assert "nothing was injected" in str(blocked.value)
    assert locks.held_here() == {}  # w2 was not kept: all or nothing


def test_other_nodes_are_free_and_a_killed_run_leaves_no_lock(cache):
    proc = other_run(cache, ["w1"])
    with locks.holding("c1", ["w2"], wait_seconds=0.5):
        assert locks.held_here() == {"node-w2.lock": True}
    proc.send_signal(signal.SIGKILL)
    stop(proc)
    waited = []
    with locks.holding("c1", ["w1"], wait_seconds=5, waited=waited.append):
        pass
    assert waited[0] < 1.0


def test_a_waiting_fault_gets_the_node_when_the_other_run_lets_go(cache):
    proc = other_run(cache, ["w1"], hold=1.0)
    waited = []
    with locks.holding("c1", ["w1"], wait_seconds=20, waited=waited.append):
        assert proc.poll() is not None or proc.wait(timeout=5) == 0  # the holder has finished
    assert 0.3 < waited[0] < 10


def test_shared_locks_share_a_node_and_an_exclusive_one_waits_for_them(cache):
    other_run(cache, ["w1"], exclusive=False)
    with locks.holding("c1", ["w1"], exclusive=False, wait_seconds=0.5):
        pass
    with pytest.raises(FaultBlocked):
        with locks.holding("c1", ["w1"], exclusive=True, wait_seconds=0.3):
            pass


def test_faults_of_one_process_do_not_lock_each_other_out():
    with locks.holding("c1", ["w1"], wait_seconds=0.3):
        with locks.holding("c1", ["w1", "w2"], wait_seconds=0.3):
            assert locks.held_here() == {"node-w1.lock": True, "node-w2.lock": True}
        assert locks.held_here() == {"node-w1.lock": True}
    assert locks.held_here() == {}


def test_two_runs_choosing_a_node_port_at_once_are_handed_different_ones(cache):
    code = "from chaoskit.state import locks; print(locks.reserve_port('c1', [30080, 30081, 30082]))"
    env = {**os.environ, "CHAOSKIT_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code + "; import time; time.sleep(2)"], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(3)
    ]
    STARTED.extend(procs)
    chosen = [int(p.communicate(timeout=30)[0]) for p in procs]
    assert sorted(chosen) == [30080, 30081, 30082]
    time.sleep(0.1)
    assert locks.reserve_port("c1", [30080]) == 30080  # their processes ended: the reservations went with them
    assert locks.reserve_port("c1", [30080]) == 30080  # this process may ask again for its own


def other_experiment(cache, then_node_wide=False, hold=30.0):
    """Another process in an experiment (and, if asked, then in a node-wide fault inside it)."""
    code = textwrap.dedent(
        f"""
        import time
        from chaoskit.state import locks
        locks.POLL_SECONDS = 0.05
        with locks.experiment_running("c1"):
            print("held", flush=True)
            if {then_node_wide!r}:
                time.sleep(0.5)
                with locks.cluster_alone("c1", "their drain", wait_seconds=20):
                    began = time.time()
                    time.sleep(1)
                    print("alone", began, time.time(), flush=True)
            time.sleep({hold})
        """
    )
    return holder(cache, code)


def test_a_node_wide_fault_waits_for_other_runs_experiments_but_not_for_its_own(cache):
    with locks.experiment_running("c1"):
        with locks.cluster_alone("c1", "my drain", wait_seconds=0.5):
            pass  # its own experiment does not hold it off
    proc = other_experiment(cache, hold=1.5)
    with pytest.raises(FaultBlocked, match="my drain waits for other runs' experiments to end"):
        with locks.cluster_alone("c1", "my drain", wait_seconds=0.3):
            pass
    waited = []
    with locks.cluster_alone("c1", "my drain", wait_seconds=20, waited=waited.append):
        assert proc.wait(timeout=5) == 0  # it could not be in its experiment meanwhile
    assert waited[0] > 0.3


def test_an_experiment_does_not_start_while_another_runs_node_wide_fault_holds_the_cluster(cache):
    with locks.cluster_alone("c1", "my drain", wait_seconds=1):
        with pytest.raises(FaultBlocked, match="the experiment waits for another run's node-wide fault"):
            code = "from chaoskit.state import locks\nwith locks.experiment_running('c1', wait_seconds=0.5): pass"
            done = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                env={**os.environ, "CHAOSKIT_CACHE": str(cache)},
                timeout=30,
            )
            raise FaultBlocked(done.stderr.strip().splitlines()[-1])


def test_two_experiments_that_each_want_the_cluster_alone_do_not_wait_for_each_other_for_ever(cache):
    proc = other_experiment(cache, then_node_wide=True, hold=0.5)
    with locks.experiment_running("c1"):
        time.sleep(0.2)
        with locks.cluster_alone("c1", "my drain", wait_seconds=20):
            began = time.time()
            time.sleep(1)
            mine = (began, time.time())
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
    (line,) = [line for line in rest.splitlines() if line.startswith("alone")]
    theirs = tuple(float(x) for x in line.split()[1:])
    assert mine[1] <= theirs[0] or theirs[1] <= mine[0], (mine, theirs)  # one after the other, both done


def test_an_image_is_loaded_only_once_another_runs_node_wide_fault_has_its_nodes_back(cache, monkeypatch):
    """pytest -n: one worker's node failure stops a node; another worker's fixture loading an image into every
    node waits for the undo instead of failing on the stopped node (seen: 'cannot list the images of node')."""
    from chaoskit.adapters import kind
    from chaoskit.cluster.base import Cluster

    code = textwrap.dedent(
        """
        import time
        from chaoskit.state import locks
        locks.POLL_SECONDS = 0.05
        with locks.cluster_alone("c1", "their node failure", wait_seconds=20):
            print("held", flush=True)
            time.sleep(1.5)
            print("undone", time.time(), flush=True)
        """
    )
    proc = holder(cache, code)
    listed: list[float] = []
    node = type("Node", (), {"name": "c1-worker", "state": "running"})()
    monkeypatch.setattr(kind, "local_image_id", lambda image: "sha256:1")
    monkeypatch.setattr(kind, "nodes", lambda name: listed.append(time.time()) or [node])
    monkeypatch.setattr(kind, "node_image_id", lambda node, image: "sha256:1")
    cluster = Cluster(name="c1", provider="kind", kubeconfig=None, context=None, flavor="airgap")
    assert cluster.load_image("app:1") == ()  # every node had it
    assert proc.stdout is not None
    undone = float(proc.stdout.readline().split()[1])
    assert listed and listed[0] >= undone - 0.01, (listed, undone)
