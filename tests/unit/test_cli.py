"""The command line as a user meets it: bad input gives one line and exit 2, no traceback."""

import os
import subprocess
import sys

from chaoskit import cli
from chaoskit.faults.ledger import Ledger, LedgerEntry


def chaoskit(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def one_line_error(result):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_provider():
    line = one_line_error(chaoskit("cluster", "status", "--provider", "minikube"))
    assert line == "chaoskit: error: unknown cluster provider 'minikube': choose one of kind, existing"


def test_missing_kubeconfig_context(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n"
        "contexts: [{name: real, context: {cluster: c, user: u}}]\ncurrent-context: real\n"
    )
    line = one_line_error(
        chaoskit("cluster", "status", "--provider", "existing", "--kubeconfig", str(kubeconfig), "--context", "nope")
    )
    assert "context 'nope'" in line and "kubectl config get-contexts" in line


def test_docker_daemon_not_running(tmp_path):
    # A socket path where no daemon listens is what a stopped daemon looks like to the client.
    env = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    line = one_line_error(chaoskit("cluster", "status", env=env))
    assert "the Docker daemon is not running" in line and "chaoskit cluster up" in line


def test_bad_node_ports():
    line = one_line_error(chaoskit("cluster", "up", "--node-ports", "lots", "--no-provision"))
    assert "--node-ports 'lots' is not FIRST-LAST" in line


class _DeletedCluster:
    """A provider whose ``down`` deletes nothing real: the ledger is what is under test."""

    def __init__(self):
        self.downed = []

    def down(self, spec):
        self.downed.append(spec.name)


def test_cluster_down_clears_that_clusters_ledger_and_says_what_it_dropped(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    provider = _DeletedCluster()
    monkeypatch.setattr(cli, "get_provider", lambda name, **options: provider)
    ledger, other = Ledger("ck-unit", tmp_path / "ledger"), Ledger("ck-other", tmp_path / "ledger")
    for fault_id in ("f-1", "f-2"):
        ledger.record(LedgerEntry(fault_id, "node-failure", "ck-unit", {"node": "ck-unit-worker"}))
    ledger.settle("f-1")
    other.record(LedgerEntry("f-3", "node-failure", "ck-other", {}))

    assert cli.main(["cluster", "down", "--name", "ck-unit"]) == 0
    assert provider.downed == ["ck-unit"]
    assert not ledger.path.exists()
    assert [e.fault_id for e in other.unsettled()] == ["f-3"]  # another cluster's ledger is left alone
    captured = capsys.readouterr()
    assert captured.out == "cluster ck-unit deleted\n"
    assert captured.err == (
        f"[chaoskit] dropped 1 unsettled fault(s) from the ledger {ledger.path}: they went with the cluster (f-2)\n"
    )


def test_cluster_down_of_a_cluster_with_every_fault_settled_drops_its_ledger_quietly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "get_provider", lambda name, **options: _DeletedCluster())
    ledger = Ledger("ck-unit", tmp_path / "ledger")
    ledger.record(LedgerEntry("f-1", "pod-kill", "ck-unit", {}))
    ledger.settle("f-1")
    assert cli.main(["cluster", "down", "--name", "ck-unit"]) == 0
    assert not ledger.path.exists()
    assert capsys.readouterr().err == ""
