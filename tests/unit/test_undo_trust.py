"""No fault is called undone unless it was: the pure logic behind undo proofs, the cap, moot entries.

The cluster is faked here only at the adapter boundary (Docker's exec, the API's
pod list) to drive the decisions; that every one of these holds on a real
cluster is shown in tests/cluster (test_fault_residue.py, test_pod_faults.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from chaoskit.adapters import docker
from chaoskit.adapters.nodes import DockerShell
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultUndoFailed, SafetyError
from chaoskit.faults import netns, netrules, network, objects
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.network import PacketLoss, PacketLossSpec, Partition, PartitionSpec
from chaoskit.faults.safety import Safety
from chaoskit.faults.shaping import Bandwidth, BandwidthSpec
from chaoskit.faults.sweeper import sweep
from chaoskit.state.ledger import Ledger, LedgerEntry

CLUSTER = Cluster("unit", "kind", None, None, "airgap")
NS = netns.Netns("unit-worker", 4242, 4026532000, "shop/web-1")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))


@pytest.fixture(autouse=True)
def records(monkeypatch):
    """The cluster's fault records (:mod:`chaoskit.faults.objects`), kept in memory: these faults have no cluster."""
    kept: dict[str, tuple[str, dict[str, Any]]] = {}

    def record(cluster, kube, fault_id, kind, undo, steps, **_):
        kept[fault_id] = (kind, undo)

    monkeypatch.setattr(objects, "record", record)
    monkeypatch.setattr(objects, "settle", lambda kube, fault_id: kept.pop(fault_id, None))
    monkeypatch.setattr(objects, "listed", lambda kube: [])
    monkeypatch.setattr(objects, "sweep_leases", lambda kube: [])
    return kept


def exec_answers(monkeypatch, answer):
    """Docker's exec on a node answers ``answer(script) -> ExecResult``."""
    monkeypatch.setattr(docker, "run_in", lambda node, command, timeout: answer(command[-1]))


def sections(script: str, outputs: list[tuple[str, int]]) -> str:
    """What the per-namespace script would print: each namespace's output and status between markers."""
    token = script.split("@@", 2)[1].split()[0]
    return "".join(f"@@{token} begin {i}\n{out}\n@@{token} end {i} {code}\n" for i, (out, code) in enumerate(outputs))


# --- a read that fails is never "nothing there" -------------------------------------------------------


def test_a_failing_iptables_save_is_unreadable_not_empty(monkeypatch):
    exec_answers(monkeypatch, lambda s: docker.ExecResult(0, sections(s, [("iptables-save: error", 1)]), ""))
    with pytest.raises(netns.NamespaceUnreadable, match="iptables-save -t filter' failed in shop/web-1"):
        netrules.rules_in(DockerShell(), [NS], "chaoskit:x")


def test_a_node_that_cannot_be_reached_is_unreadable_not_empty(monkeypatch):
    def paused(node, command, timeout):
        raise ClusterError("cannot run ...: container is paused")

    monkeypatch.setattr(docker, "run_in", paused)
    monkeypatch.setattr(docker, "state", lambda node: "paused")
    with pytest.raises(netns.NamespaceUnreadable, match=r"on node unit-worker \(paused\)"):
        netrules.rules_in(DockerShell(), [NS], "chaoskit:x")


def test_a_stopped_node_took_its_namespaces_with_it(monkeypatch):
    def stopped(node, command, timeout):
        raise ClusterError("cannot run ...: container is not running")

    monkeypatch.setattr(docker, "run_in", stopped)
    monkeypatch.setattr(docker, "state", lambda node: "exited")
    assert netrules.rules_in(DockerShell(), [NS], "chaoskit:x") == {NS: None}


def test_a_failing_delete_is_not_an_undo(monkeypatch):
    rule = "-A INPUT -s 10.244.1.5/32 -m comment --comment chaoskit:x -j DROP"

    def answer(script):  # the delete ran, and the listing after it still shows the rule
        left = f"chaoskit-matched 1\n{rule}\nchaoskit: still in place after the delete"
        return docker.ExecResult(0, sections(script, [(left, 1)]), "")

    exec_answers(monkeypatch, answer)
    with pytest.raises(netns.NamespaceUnreadable, match="deleting rules in shop/web-1 on unit-worker failed"):
        netrules.delete_rules(DockerShell(), [NS], "chaoskit:x")


def test_check_undone_names_the_rules_still_in_place(monkeypatch):
    rule = "-A OUTPUT -d 10.244.1.5/32 -m comment --comment chaoskit:partition-1 -j DROP"
    exec_answers(monkeypatch, lambda s: docker.ExecResult(0, sections(s, [(rule, 0)]), ""))
    undo = {"comment": "chaoskit:partition-1", "namespaces": [NS.to_undo()]}
    with pytest.raises(FaultUndoFailed, match=r"still in place: 1 rule\(s\) in shop/web-1 on unit-worker"):
        Partition.check_undone(CLUSTER, None, undo)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("probe=0", "open"),
        ("probe=124", "blocked"),
        ("bash: connect: Operation not permitted\nprobe=1", "blocked"),
        ("bash: connect: Connection refused\nprobe=1", "refused"),
    ],
)
def test_probe_verdicts(output, verdict):
    assert netns.probe_verdict(netns.Outcome(False, 0, output), "pod", "10.96.0.1:443") == verdict


@pytest.mark.parametrize(
    "outcome",
    [
        netns.Outcome(False, 1, "nsenter: cannot open /proc/4242/ns/net: No such file or directory"),
        netns.Outcome(False, 0, "bash: timeout: command not found\nprobe=127"),
        netns.Outcome(True, -1, ""),
    ],
)
def test_a_probe_that_did_not_run_is_an_error_not_blocked(outcome):
    with pytest.raises(netns.NamespaceUnreadable):
        netns.probe_verdict(outcome, "pod", "10.96.0.1:443")


def test_old_ledger_namespaces_without_an_inode_still_read():
    assert netns.Netns.from_undo(["n", 12]) == netns.Netns("n", 12, 0, "")


# --- the blast-radius cap covers network faults ----------------------------------------------------


def pods(n: int) -> list[Any]:
    return [
        SimpleNamespace(
            metadata=SimpleNamespace(name=f"web-{i}", namespace="shop", uid=f"uid-{i}", deletion_timestamp=None)
        )
        for i in range(n)
    ]


class FakeKube:
    def __init__(self, matching: int) -> None:
        self.matching = matching

    def pods(self, namespace: str, selector: str | None = None) -> list[Any]:
        return pods(self.matching)


@pytest.mark.parametrize(
    "fault",
    [
        lambda kube: Partition(CLUSTER, kube, PartitionSpec("shop", "app=web")),
        lambda kube: PacketLoss(CLUSTER, kube, PacketLossSpec("shop", "app=web", 10)),
        lambda kube: Bandwidth(CLUSTER, kube, BandwidthSpec("shop", "app=web", 1000)),
    ],
    ids=["partition", "packet-loss", "bandwidth"],
)
def test_network_faults_on_every_pod_are_over_the_default_cap(fault, monkeypatch):
    monkeypatch.setattr(network, "locate_all", lambda chosen, container=None: pytest.fail("located before the cap"))
    with pytest.raises(SafetyError, match=r"3 of 3 pods matching 'app=web' in 'shop' \(100%\).*max_share=1"):
        fault(FakeKube(3)).plan()


def test_a_fault_may_raise_its_own_cap_and_its_record_says_so():
    fault = PacketLoss(CLUSTER, FakeKube(3), PacketLossSpec("shop", "app=web", 10)).with_max_share(1.0)  # type: ignore[arg-type]
    assert fault.safety.max_share == 1.0 and fault.max_share_raised
    assert len(fault.choose(pods(3), None, None, "pods")) == 3
    with pytest.raises(SafetyError):
        Safety().with_max_share(1.5)


def test_count_picks_within_the_cap():
    fault = PacketLoss(CLUSTER, FakeKube(4), PacketLossSpec("shop", "app=web", 10, count=2))  # type: ignore[arg-type]
    chosen = fault.choose(pods(4), 2, 7, "pods")
    assert len(chosen) == 2
    # Its Events name each chosen pod with the UID read here: nothing is read again to post them.
    assert [(kind, name, uid) for kind, name, _, uid in fault.event_objects()] == [
        ("Pod", p.metadata.name, p.metadata.uid) for p in chosen
    ]
    with pytest.raises(SafetyError):
        fault.choose(pods(4), 3, 7, "pods")


def test_pods_another_fault_already_hits_are_chosen_last(monkeypatch):
    fault = PacketLoss(CLUSTER, FakeKube(4), PacketLossSpec("shop", "app=web", 10)).with_max_share(1.0)  # type: ignore[arg-type]
    monkeypatch.setattr(fault, "active_on", lambda chosen: {"other-1": ["shop/web-0", "shop/web-2"]})
    for seed in range(20):
        picked = sorted(p.metadata.name for p in fault.choose(pods(4), 2, seed, "pods"))
        assert picked == ["web-1", "web-3"], (seed, picked)
    three = [p.metadata.name for p in fault.choose(pods(4), 3, 5, "pods")]
    assert set(three) >= {"web-1", "web-3"} and len(set(three)) == 3, three


# --- a fault whose undo cannot be proven ----------------------------------------------------------


@dataclass(frozen=True)
class StubSpec:
    name: str = "stub"


class Sticky(Fault):
    """A fault whose undo runs but whose state still shows it afterwards."""

    kind = "unit-sticky"
    still_there: ClassVar[bool] = True

    def nodes(self) -> list[str]:
        return ["unit-node"]

    def plan(self) -> list[str]:
        return ["thing"]

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {"thing": targets[0]}

    def inject(self, targets: list[str]) -> None:
        pass

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        return "injected"

    @classmethod
    def revert(cls, cluster: Cluster, kube: Any, undo: dict[str, Any]) -> None:
        pass

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Any, undo: dict[str, Any]) -> str:
        if cls.still_there:
            raise FaultUndoFailed(f"{undo['thing']} is still there")
        return "gone"

    @classmethod
    def moot(cls, cluster: Cluster, kube: Any, undo: dict[str, Any]) -> str | None:
        return "its thing was deleted" if undo.get("deleted") else None


def test_an_unproven_undo_raises_and_leaves_the_entry_unsettled(records):
    fault = Sticky(CLUSTER, None, StubSpec())  # type: ignore[arg-type]
    with pytest.raises(FaultUndoFailed, match=r"undo of unit-sticky-\w+ not proven: thing is still there") as raised:
        with fault.active() as record:
            pass
    assert not record.reverted and record.undo_error == str(raised.value)
    assert [e.fault_id for e in Ledger("unit").unsettled()] == [record.fault_id]
    assert records == {record.fault_id: ("unit-sticky", {"thing": "thing"})}  # the cluster's record stays too


def test_a_proven_undo_settles_and_says_how(records):
    Sticky.still_there = False
    try:
        with Sticky(CLUSTER, None, StubSpec()).active() as record:  # type: ignore[arg-type]
            pass
    finally:
        Sticky.still_there = True
    assert record.reverted and record.undo_proof == "gone" and Ledger("unit").unsettled() == []
    assert records == {}


def test_the_sweeper_settles_entries_whose_targets_are_gone_and_keeps_unproven_ones():
    ledger = Ledger("unit")
    dead = {"pid": 1, "boot_id": "an-earlier-boot"}
    ledger.record(LedgerEntry("unit-sticky-moot", "unit-sticky", "unit", {"thing": "a", "deleted": True}, **dead))
    ledger.record(LedgerEntry("unit-sticky-left", "unit-sticky", "unit", {"thing": "b"}, **dead))
    result = sweep(CLUSTER, None, kinds={Sticky.kind: Sticky})  # type: ignore[arg-type]
    assert result.moot == ("unit-sticky-moot: its thing was deleted",)
    assert result.failed == ("undo of unit-sticky-left not proven: b is still there",)
    assert [e.fault_id for e in ledger.unsettled()] == ["unit-sticky-left"]


# --- signals wait for an undo ------------------------------------------------------------------------


def run_script(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a new Python with SIGINT's default disposition: a pytest-xdist worker ignores SIGINT,
    a child inherits that, and a Python started with SIGINT ignored never raises KeyboardInterrupt."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_a_second_sigterm_waits_until_the_undo_is_done():
    result = run_script(
        """
        import os, signal, time
        from chaoskit.faults.signals import deferred, install
        install()
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                with deferred("undoing unit-1"):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)
                    print("undo finished", flush=True)
        except KeyboardInterrupt as exc:
            print("interrupted:", exc)
        """
    )
    assert result.stdout.splitlines() == ["undo finished", "interrupted: received signal SIGTERM"], result
    assert "SIGTERM received while undoing unit-1: finishing the undo first" in result.stderr


def test_a_third_signal_in_quick_succession_forces_the_exit_naming_cleanup():
    # The first signal started the unwind (here: the interrupt raised in the block); the second, during
    # the undo, waits for it; the third, within 2 s of the second, forces the exit.
    result = run_script(
        """
        import os, signal, time
        from chaoskit.faults.signals import deferred
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            with deferred("undoing unit-2"):
                for _ in range(2):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.05)
                time.sleep(5)
                print("not reached")
        """
    )
    assert result.returncode == 130 and "not reached" not in result.stdout
    assert "SIGINT received while undoing unit-2: finishing the undo first" in result.stderr
    assert "exiting now; what is left is in the ledger, undo it with 'chaoskit cleanup'" in result.stderr


def test_signals_go_back_to_their_handlers_after_the_undo():
    before = signal.getsignal(signal.SIGINT)
    from chaoskit.faults.signals import deferred

    with deferred("nothing"):
        pass
    assert signal.getsignal(signal.SIGINT) is before
    assert os.getpid() > 0


class NeedsTheOther(Fault):
    """A fault whose undo can only be proven once another entry of the same run is undone."""

    kind = "unit-needs-the-other"
    unblocked: ClassVar[bool] = False

    def nodes(self) -> list[str]:
        return ["unit-node"]

    def plan(self) -> list[str]:
        return []

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return {}

    def inject(self, targets: list[str]) -> None:
        pass

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        return ""

    @classmethod
    def revert(cls, cluster: Cluster, kube: Any, undo: dict[str, Any]) -> None:
        if undo.get("unblocks"):
            cls.unblocked = True

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Any, undo: dict[str, Any]) -> str:
        if not undo.get("unblocks") and not cls.unblocked:
            raise FaultUndoFailed("its node is paused")
        return "clean"


def test_the_sweeper_tries_a_failed_entry_again_after_the_others():
    ledger = Ledger("unit")
    dead = {"pid": 1, "boot_id": "an-earlier-boot"}
    ledger.record(LedgerEntry("first", "unit-needs-the-other", "unit", {}, **dead))
    ledger.record(LedgerEntry("second", "unit-needs-the-other", "unit", {"unblocks": True}, **dead))
    result = sweep(CLUSTER, None, kinds={NeedsTheOther.kind: NeedsTheOther})  # type: ignore[arg-type]
    assert result.failed == () and sorted(result.undone) == ["first: clean", "second: clean"]
    assert ledger.unsettled() == []


def test_two_signals_during_an_undo_no_signal_started_wait_for_it_and_a_third_forces_the_exit():
    # The undo runs because the block ended; two SIGTERMs 0.1 s apart arrive during it: neither is the third.
    result = run_script(
        """
        import os, signal, time
        from chaoskit.faults.signals import deferred, install
        install()
        try:
            with deferred("undoing unit-3"):
                for _ in range(2):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.1)
                print("undo finished", flush=True)
        except KeyboardInterrupt as exc:
            print("interrupted:", exc)
        try:
            with deferred("undoing unit-4"):
                for _ in range(3):
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.1)
                print("not reached", flush=True)
        except KeyboardInterrupt:
            pass
        """
    )
    assert result.stdout.splitlines() == ["undo finished", "interrupted: received signal SIGTERM"], result
    assert "(2 more within 2 s of each other force the exit)" in result.stderr, result.stderr
    assert result.returncode == 130 and "SIGTERM again while undoing unit-4: exiting now" in result.stderr


def test_a_sweep_within_a_scope_undoes_the_faults_on_its_pods_and_counts_the_others():
    from chaoskit.faults.scope import Resolved, Scope

    Sticky.still_there = False
    try:
        ledger = Ledger("unit")
        dead = {"pid": 1, "boot_id": "an-earlier-boot"}
        ledger.record(LedgerEntry("in-shop", "unit-sticky", "unit", {"thing": "a"}, pods=("shop/web-1",), **dead))
        ledger.record(LedgerEntry("in-other", "unit-sticky", "unit", {"thing": "b"}, pods=("other/web-1",), **dead))
        ledger.record(LedgerEntry("on-a-node", "unit-sticky", "unit", {"thing": "c"}, **dead))
        result = sweep(CLUSTER, None, kinds={Sticky.kind: Sticky}, scope=Resolved(Scope("shop"), None))  # type: ignore[arg-type]
        assert result.undone == ("in-shop: gone",) and result.outside == 2
        assert [e.fault_id for e in ledger.unsettled()] == ["in-other", "on-a-node"]
        assert [e.pods for e in ledger.unsettled()] == [("other/web-1",), ()]  # read back as written
    finally:
        Sticky.still_there = True
