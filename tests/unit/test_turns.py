"""Turns between runs held as Leases (pure logic): a fake Lease API that keeps ``resourceVersion`` and refuses a
stale write as the API server does, and runs as threads, each with its own owner. The real cluster's part (two
runners, their own caches, one drain each) is tests/cluster/test_turns.py."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from chaoskit.errors import FaultBlocked
from chaoskit.state import leases, turns
from chaoskit.state.leases import turns as real_turns  # before the conftest puts its own in its place
from chaoskit.state.turns import EXPERIMENTS, Turns, node_lease
from conftest import FakeLeases


@pytest.fixture
def api(chaoskit_turns: FakeLeases) -> FakeLeases:
    return chaoskit_turns  # the conftest's, which every unit test's faults and experiments take their turns on


def run(api: FakeLeases, name: str) -> Turns:
    """A run with owner Lease ``name``, alive until taken out of ``api.live``."""
    api.live.add(name)
    return Turns(name, f"host-{name}/100", f"chaoskit run {name}.yaml", lambda kube: set(api.live))


def in_thread(target) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


def test_a_fault_waits_while_another_run_holds_its_node_and_names_that_run(api, caplog):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    with a.holding(api, ["w1"], what="node-drain drain-1"):
        assert api.holders(node_lease("w1"))["owner-a"]["mode"] == "exclusive"
        with pytest.raises(FaultBlocked) as blocked:
            with b.holding(api, ["w2", "w1"], what="latency x", wait_seconds=0.3):
                pytest.fail("took a node another run holds")
        assert "node-drain drain-1 of host-owner-a/100 (chaoskit run owner-a.yaml) holds it" in str(blocked.value)
        assert "nothing was injected" in str(blocked.value)
        assert b.held_here() == {} and "owner-b" not in api.holders(node_lease("w2"))  # all or nothing
    assert api.holders(node_lease("w1")) == {}  # let go: the Lease lists no one


def test_a_dead_runs_hold_does_not_count_and_is_dropped_on_the_next_write(api):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    ctx = a.holding(api, ["w1"], what="pod-kill k1")
    ctx.__enter__()  # and never left: the run is killed
    api.live.discard("owner-a")  # its owner Lease expired
    waited: list[float] = []
    with b.holding(api, ["w1"], wait_seconds=1, waited=waited.append):
        assert set(api.holders(node_lease("w1"))) == {"owner-b"}
    assert waited[0] < 0.5


def test_a_waiting_fault_gets_the_node_when_the_other_run_lets_go(api):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    held = threading.Event()

    def hold() -> None:
        with a.holding(api, ["w1"]):
            held.set()
            time.sleep(0.5)

    thread, out = in_thread(hold)
    held.wait(5)
    waited: list[float] = []
    with b.holding(api, ["w1"], wait_seconds=10, waited=waited.append):
        assert not thread.is_alive() or thread.join(5) is None
    assert 0.3 < waited[0] < 5 and "error" not in out


def test_shared_holds_share_a_node_and_an_exclusive_one_waits_for_them(api):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    with a.holding(api, ["w1"], exclusive=False):
        with b.holding(api, ["w1"], exclusive=False, wait_seconds=0.3):
            assert {h["mode"] for h in api.holders(node_lease("w1")).values()} == {"shared"}
        with pytest.raises(FaultBlocked):
            with b.holding(api, ["w1"], exclusive=True, wait_seconds=0.2):
                pass


def test_faults_of_one_run_do_not_lock_each_other_out(api):
    a = run(api, "owner-a")
    with a.holding(api, ["w1"], wait_seconds=0.3):
        with a.holding(api, ["w1", "w2"], wait_seconds=0.3):
            assert a.held_here() == {"w1": "exclusive", "w2": "exclusive"}
        assert a.held_here() == {"w1": "exclusive"}
    assert a.held_here() == {}


def test_runs_that_write_at_once_never_hold_a_node_together(api, monkeypatch):
    """Eight runs take one node 15 times each with no pause: the compare-and-swap lets one in at a time."""
    monkeypatch.setattr(turns, "POLL_SECONDS", 0.0)  # all of them at the Lease at once
    runs = [run(api, f"owner-{i}") for i in range(8)]
    inside: list[str] = []
    overlaps: list[list[str]] = []
    guard = threading.Lock()

    def work(r: Turns) -> None:
        for _ in range(15):
            with r.holding(api, ["w1"], wait_seconds=60):
                with guard:
                    inside.append(r.owner)
                    if len(inside) > 1:
                        overlaps.append(list(inside))
                time.sleep(0.001)
                with guard:
                    inside.remove(r.owner)

    threads = [in_thread(lambda r=r: work(r)) for r in runs]
    for thread, out in threads:
        thread.join(120)
        assert "error" not in out, out
    assert overlaps == []
    assert api.conflicts > 0, "the runs never wrote at once: the test proved nothing"
    assert api.holders(node_lease("w1")) == {}
    print(f"120 turns, {api.writes} writes, {api.conflicts} stale writes refused")


def test_a_node_wide_fault_waits_for_other_runs_experiments_but_not_for_its_own(api):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    with a.experiment_running(api):
        with a.cluster_alone(api, "my drain", wait_seconds=0.3):
            assert api.holders(EXPERIMENTS)["owner-a"]["mode"] == "exclusive"
        assert api.holders(EXPERIMENTS)["owner-a"]["mode"] == "shared"  # its experiment's share is back
        with pytest.raises(
            FaultBlocked,
            match=r"their drain waited 0 s for other runs' experiments and gave up .the experiment of host-owner-a/100",
        ):
            with b.cluster_alone(api, "their drain", wait_seconds=0.3):
                pass
        assert set(api.holders(EXPERIMENTS)) == {"owner-a"}  # the given-up wait left nothing behind
    assert api.holders(EXPERIMENTS) == {}


def test_no_experiment_starts_while_another_runs_node_wide_fault_acts_or_waits(api):
    a, b, c = run(api, "owner-a"), run(api, "owner-b"), run(api, "owner-c")
    with a.experiment_running(api):
        thread, out = in_thread(lambda: _alone_for(api, b, 0.1))
        _until(lambda: api.holders(EXPERIMENTS).get("owner-b", {}).get("mode") == "queued")
        with pytest.raises(
            FaultBlocked, match=r"owner-b drain of host-owner-b/100 .chaoskit run owner-b.yaml. waits for it"
        ):
            with c.experiment_running(api, wait_seconds=0.2):  # queued behind b: writers are not starved
                pass
    thread.join(10)
    assert "error" not in out, out


def _alone_for(api: FakeLeases, r: Turns, seconds: float) -> tuple[float, float]:
    with r.cluster_alone(api, f"{r.owner} drain", wait_seconds=20):
        began = time.time()
        time.sleep(seconds)
        return began, time.time()


def _until(check, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def test_two_experiments_that_each_want_the_cluster_alone_take_turns_and_do_not_deadlock(api, monkeypatch):
    a, b = run(api, "owner-a"), run(api, "owner-b")
    spans: dict[str, tuple[float, float]] = {}
    said: list[str] = []

    def experiment(r: Turns) -> None:
        with r.experiment_running(api):
            time.sleep(0.1)
            spans[r.owner] = _alone_for(api, r, 0.3)
            time.sleep(0.2)  # the experiment's recovery: no other node-wide fault lands in it

    monkeypatch.setattr(turns, "say", said.append)
    monkeypatch.setattr(turns, "SAY_AFTER", 0.05)
    threads = [in_thread(lambda r=r: experiment(r)) for r in (a, b)]
    for thread, out in threads:
        thread.join(30)
        assert "error" not in out, out
    (first, second) = sorted(spans.values())
    assert first[1] <= second[0], spans  # one after the other, both done
    assert second[0] >= first[1] + 0.15, spans  # the second waited for the first's experiment to end too
    assert api.holders(EXPERIMENTS) == {}
    assert any("drain waits for other runs' experiments to end" in line and "of host-owner-" in line for line in said)


def test_the_lease_says_who_holds_it(api):
    a = run(api, "owner-a")
    with a.holding(api, ["kind-worker"], what="node-drain drain-9"):
        lease = api.lease(node_lease("kind-worker"), turns.NAMESPACE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "host-owner-a/100"
        assert lease["metadata"]["labels"][turns.LOCK_LABEL] == "true"
        (hold,) = api.holders(node_lease("kind-worker")).values()
        assert hold["what"] == "node-drain drain-9" and hold["command"] == "chaoskit run owner-a.yaml"


def test_a_node_name_too_long_for_a_lease_name_is_shortened_with_a_digest():
    long = "n" * 250
    assert len(node_lease(long)) <= 253
    assert node_lease(long) != node_lease(long[:-1] + "m")


def test_an_image_is_loaded_only_once_another_runs_node_wide_fault_has_its_nodes_back(api, monkeypatch):
    """pytest -n: one worker's node failure stops a node; another worker's fixture loading an image into every
    node waits for the undo instead of failing on the stopped node (seen: 'cannot list the images of node')."""
    from chaoskit.adapters import kind
    from chaoskit.cluster.base import Cluster

    other = run(api, "owner-other")
    held, undone = threading.Event(), []

    def node_failure() -> None:
        with other.cluster_alone(api, "their node failure", wait_seconds=20):
            held.set()
            time.sleep(1.0)
            undone.append(time.time())

    thread, out = in_thread(node_failure)
    assert held.wait(5)
    listed: list[float] = []
    node = type("Node", (), {"name": "c1-worker", "state": "running"})()
    monkeypatch.setattr(kind, "local_image_id", lambda image: "sha256:1")
    monkeypatch.setattr(kind, "nodes", lambda name: listed.append(time.time()) or [node])
    monkeypatch.setattr(kind, "node_image_id", lambda node, image: "sha256:1")
    cluster = Cluster(name="c1", provider="kind", kubeconfig=None, context=None, flavor="airgap")
    assert cluster.load_image("app:1") == ()  # every node had it
    thread.join(10)
    assert "error" not in out, out
    assert listed and listed[0] >= undone[0] - 0.01, (listed, undone)


def test_a_runs_turns_are_held_in_the_name_of_its_own_owner_lease(monkeypatch):
    """The real factory (the conftest replaces it for every other test): it creates the owner Lease once and
    hands out one Turns per cluster, in that Lease's name, however often it is asked and from any thread."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    created: list[dict[str, Any]] = []
    kube = SimpleNamespace(
        core=SimpleNamespace(create_namespace=lambda body: None),
        coordination=SimpleNamespace(
            create_namespaced_lease=lambda namespace, body: created.append(body),
            patch_namespaced_lease=lambda *a, **k: None,
            delete_namespaced_lease=lambda *a, **k: None,
        ),
    )
    cluster = SimpleNamespace(name="unit-turns", kube=lambda: nullcontext(kube))
    monkeypatch.setattr(leases, "_owners", {})
    monkeypatch.setattr(leases, "_turns", {})
    found: list[Turns] = []
    threads = [threading.Thread(target=lambda: found.append(real_turns(cluster, kube))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), "asking for the turns hung"
    try:
        assert len(found) == 4 and all(t is found[0] for t in found)
        (lease,) = created
        assert found[0].owner == lease["metadata"]["name"] and found[0].who == lease["spec"]["holderIdentity"]
    finally:
        leases._owners["unit-turns"].close()


def test_a_run_whose_namespace_was_deleted_makes_it_again_and_takes_its_turn(api):
    """kubectl delete -k of the agent removes chaoskit-system with every Lease in it: the next turn makes it
    again (seen on the cluster: without this, loading an image waited 900 s for "another run")."""
    made: list[str] = []

    def ensure(kube: Any) -> None:
        made.append("chaoskit-system")
        api.namespace = True

    api.namespace = False
    api.live.add("owner-a")
    a = Turns("owner-a", "host-a/1", "pytest", lambda kube: set(api.live), ensure)
    with a.holding(api, ["w1"], wait_seconds=5):
        assert made == ["chaoskit-system"] and "owner-a" in api.holders(node_lease("w1"))
    api.namespace = False
    b = run(api, "owner-b")  # no way to make the namespace: an error, not a wait for a run that is not there
    with pytest.raises(turns.NamespaceMissing), b.holding(api, ["w2"], wait_seconds=5):
        pass
