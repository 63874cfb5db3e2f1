"""The write-ahead fault ledger (files only, no cluster)."""

import json
import os
import subprocess
import sys

import psutil
import pytest

from chaoskit.state.ledger import Ledger, LedgerEntry
from chaoskit.state.owners import START_TIME_TOLERANCE, current_boot_id, process_alive


def test_unsettled_entries_are_those_injected_and_not_settled(tmp_path):
    ledger = Ledger("c1", tmp_path)
    ledger.record(LedgerEntry("f-1", "node-failure", "c1", {"node": "w1"}))
    ledger.record(LedgerEntry("f-2", "node-failure", "c1", {"node": "w2"}))
    ledger.settle("f-1")
    assert [(e.fault_id, e.undo) for e in Ledger("c1", tmp_path).unsettled()] == [("f-2", {"node": "w2"})]


def test_a_torn_last_line_is_ignored(tmp_path):
    ledger = Ledger("c1", tmp_path)
    ledger.record(LedgerEntry("f-1", "node-failure", "c1", {"node": "w1"}))
    with ledger.path.open("a") as handle:
        handle.write('{"op": "inject", "fault_id": "f-2", "ki')
    assert [e.fault_id for e in ledger.unsettled()] == ["f-1"]


def test_entries_of_dead_processes_are_residue_and_live_ones_are_not(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = LedgerEntry("f-1", "node-failure", "c1", {}, pid=int(dead.stdout))
    mine = LedgerEntry("f-2", "node-failure", "c1", {})
    assert not gone.owner_alive()
    assert mine.owner_alive()
    assert not LedgerEntry("f-3", "node-failure", "c1", {}, boot_id="another-boot").owner_alive()


def test_an_entry_records_when_its_process_started(tmp_path):
    ledger = Ledger("c1", tmp_path)
    ledger.record(LedgerEntry("f-1", "node-failure", "c1", {}))
    (entry,) = ledger.unsettled()
    assert entry.started_at == psutil.Process(os.getpid()).create_time()
    assert entry.owner_alive()


def test_a_live_pid_with_another_start_time_is_an_unrelated_process():
    # Pids repeat, and containers share the host's boot id: the same pid started at another time
    # is someone else, and the owner is dead.
    pid, boot, started = os.getpid(), current_boot_id(), psutil.Process(os.getpid()).create_time()
    assert process_alive(pid, boot, started)
    assert process_alive(pid, boot, started + START_TIME_TOLERANCE / 2)
    assert not process_alive(pid, boot, started - 3600)
    assert not process_alive(pid, boot, started + START_TIME_TOLERANCE + 1)
    assert not LedgerEntry("f-1", "node-failure", "c1", {}, started_at=started - 3600).owner_alive()
    assert LedgerEntry("f-2", "node-failure", "c1", {}, started_at=started).owner_alive()


def test_a_zombie_is_dead():
    child = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        started = psutil.Process(child.pid).create_time()
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
        assert not process_alive(child.pid, current_boot_id(), started)
        assert not process_alive(child.pid, current_boot_id())
    finally:
        child.wait()


def test_lines_written_before_start_times_were_recorded_are_judged_by_pid_and_boot(tmp_path):
    ledger = Ledger("c1", tmp_path)
    old = {"op": "inject", "fault_id": "f-1", "kind": "node-failure", "cluster": "c1", "undo": {}, "at": 1.0}
    with ledger.path.open("a") as handle:
        handle.write(json.dumps({**old, "pid": os.getpid(), "boot_id": current_boot_id()}) + "\n")
        handle.write(json.dumps({**old, "fault_id": "f-2", "pid": os.getpid(), "boot_id": "another-boot"}) + "\n")
    mine, other_boot = ledger.unsettled()
    assert mine.started_at is None and other_boot.started_at is None
    assert mine.owner_alive()
    assert not other_boot.owner_alive()


def test_a_field_added_by_a_newer_chaoskit_does_not_stop_the_entry_being_read(tmp_path):
    ledger = Ledger("c1", tmp_path)
    line = {"op": "inject", "fault_id": "f-1", "kind": "pod-kill", "cluster": "c1", "undo": {}, "pid": 1}
    ledger.path.write_text(json.dumps({**line, "boot_id": "b", "at": 1.0, "started_at": 2.0, "later": "x"}) + "\n")
    (entry,) = ledger.unsettled()
    assert (entry.fault_id, entry.started_at) == ("f-1", 2.0)


def test_kind_cluster_names_keep_their_ledger_file(tmp_path):
    assert Ledger("chaoskit", tmp_path).path == tmp_path / "chaoskit.jsonl"
    assert Ledger("my-cluster-2", tmp_path).path == tmp_path / "my-cluster-2.jsonl"


@pytest.mark.parametrize(
    ("context", "readable"),
    [
        ("arn:aws:eks:eu-west-1:123456789012:cluster/name", "arn_aws_eks_eu-west-1_123456789012_cluster_name"),
        ("gke_project_zone_name", "gke_project_zone_name"),
        ("Prod Cluster", "Prod_Cluster"),
    ],
)
def test_any_context_name_gets_one_flat_readable_ledger_file(tmp_path, context, readable):
    ledger = Ledger(context, tmp_path)
    assert ledger.path.parent == tmp_path
    assert ledger.path.name.startswith(readable + ".") and ledger.path.name.endswith(".jsonl")
    assert not set(ledger.path.name) & set(":/ ")
    ledger.record(LedgerEntry("f-1", "pod-kill", context, {}))
    assert [e.fault_id for e in Ledger(context, tmp_path).unsettled()] == ["f-1"]
    assert list(tmp_path.iterdir()) == [ledger.path]


def test_names_that_slug_alike_never_share_a_ledger_file(tmp_path):
    names = ["team/a", "team_a", "team:a", "team-a", "team a", "arn:aws:eks:r:1:cluster/x", "arn:aws:eks:r:1:cluster_x"]
    for name in names:
        Ledger(name, tmp_path).record(LedgerEntry(f"fault-of-{name}", "pod-kill", name, {}))
    for name in names:
        assert [e.fault_id for e in Ledger(name, tmp_path).unsettled()] == [f"fault-of-{name}"]
    assert sorted(tmp_path.iterdir()) == sorted(Ledger(name, tmp_path).path for name in names)  # one flat file each


def test_a_ledger_written_under_a_context_name_before_names_were_made_safe_is_still_read(tmp_path):
    legacy = tmp_path / "gke_project_zone_name.jsonl"
    entry = {"op": "inject", "fault_id": "f-1", "kind": "pod-kill", "cluster": "gke_project_zone_name", "undo": {}}
    legacy.write_text(json.dumps({**entry, "pid": 1, "boot_id": "b", "at": 1.0}) + "\n")
    ledger = Ledger("gke_project_zone_name", tmp_path)
    assert [e.fault_id for e in ledger.unsettled()] == ["f-1"]
    assert not legacy.exists() and ledger.path.exists()


def test_clear_deletes_the_file_and_returns_what_was_unsettled(tmp_path):
    ledger = Ledger("c1", tmp_path)
    ledger.record(LedgerEntry("f-1", "node-failure", "c1", {}))
    ledger.record(LedgerEntry("f-2", "node-failure", "c1", {}))
    ledger.settle("f-1")
    assert [e.fault_id for e in ledger.clear()] == ["f-2"]
    assert not ledger.path.exists()
    assert ledger.clear() == []
