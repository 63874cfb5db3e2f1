"""The write-ahead fault ledger (files only, no cluster)."""

import subprocess
import sys

from chaoskit.faults.ledger import Ledger, LedgerEntry


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
