"""A run killed in the middle of a fault: SIGTERM undoes it at once, SIGKILL leaves residue
that ``chaoskit cleanup`` finds in the ledger and undoes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from workloads import Web, probe_eventually

from chaoskit.adapters import docker
from chaoskit.adapters.kube import node_ready
from chaoskit.faults.ledger import Ledger
from chaoskit.faults.netns import root_qdisc, rules_with

pytestmark = pytest.mark.destructive

INNER = """
import pathlib, time

def test_hold_a_fault(chaos):
    with {fault}:
        pathlib.Path("{marker}").write_text("injected")
        time.sleep(300)
"""


def start_inner_run(tmp_path: Path, fault: str) -> tuple[subprocess.Popen[str], Path]:
    """A pytest run in a subprocess that injects ``fault`` (code using ``chaos``) and holds it."""
    marker = tmp_path / "injected"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(INNER.format(fault=fault, marker=marker)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(test_file), "-p", "no:cacheprovider", "-q", "-s"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the inner run never injected its fault"
        time.sleep(0.2)
    return proc, marker


@pytest.fixture(autouse=True)
def cluster_not_recreated(cluster):
    """Undoing a fault on one worker must never make chaoskit recreate the whole cluster."""
    control_plane = f"{cluster.name}-control-plane"
    before = docker.inspect(control_plane).started_at
    yield
    assert docker.inspect(control_plane).started_at == before, "the control plane was restarted or recreated"


def worker(kube) -> str:
    return sorted(
        n.metadata.name for n in kube.nodes() if "node-role.kubernetes.io/master" not in (n.metadata.labels or {})
    )[0]


def test_sigkill_mid_fault_leaves_residue_that_cleanup_undoes(cluster, kube, tmp_path: Path) -> None:
    if not cluster.is_kind:
        pytest.skip("node failure needs a kind cluster")
    node = worker(kube)
    proc, _ = start_inner_run(tmp_path, f'chaos.node_failure("{node}", mode="stop", wait_not_ready=False)')
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The residue is real: the node is down and the ledger knows.
    assert docker.inspect(node).state == "exited"
    residue = Ledger(cluster.name).unsettled()
    assert [(e.kind, e.undo["node"], e.pid) for e in residue] == [("node-failure", node, proc.pid)]

    result = cleanup(cluster)
    assert result.returncode == 0, result
    assert "1 fault(s) undone" in result.stdout
    assert docker.inspect(node).state == "running"
    assert node_ready({n.metadata.name: n for n in kube.nodes()}[node])
    assert Ledger(cluster.name).unsettled() == []


def test_sigterm_mid_fault_undoes_it_before_exiting(cluster, kube, tmp_path: Path) -> None:
    if not cluster.is_kind:
        pytest.skip("node failure needs a kind cluster")
    node = worker(kube)
    proc, _ = start_inner_run(tmp_path, f'chaos.node_failure("{node}", mode="stop", wait_not_ready=False)')
    assert docker.inspect(node).state == "exited"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 2 and "KeyboardInterrupt" in output, output  # pytest's "interrupted"
    assert docker.inspect(node).state == "running"
    assert node_ready({n.metadata.name: n for n in kube.nodes()}[node])
    assert Ledger(cluster.name).unsettled() == []


def cleanup(cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "cleanup", "--name", cluster.name],
        capture_output=True,
        text=True,
        timeout=400,
    )


def holding(entry) -> list[tuple[str, int]]:
    """The (node, pid) namespaces the fault recorded that still hold its rules or qdisc.

    Read from the ledger entry, not from the pods listed now: a pod replaced since
    (a node hiccup evicts it after 2 s) has no running container to locate."""
    namespaces = [(node, int(pid)) for node, pid in entry.undo["namespaces"]]
    if "handle" in entry.undo:
        return [(n, p) for n, p in namespaces if (root_qdisc(n, p) or ("", ""))[1] == entry.undo["handle"]]
    return [(n, p) for n, p in namespaces if rules_with(n, p, entry.undo["comment"])]


@pytest.mark.parametrize(
    "fault",
    [
        'chaos.partition("{ns}", "role=client", peer_selector="app=web")',
        'chaos.packet_loss("{ns}", "app=web", percent=30)',
        'chaos.bandwidth("{ns}", "app=web", rate_kbit=1000)',
    ],
    ids=["partition", "packet-loss", "bandwidth"],
)
def test_sigkill_mid_network_fault_leaves_residue_that_cleanup_removes(
    cluster, kube, web: Web, client: str, tmp_path: Path, fault: str
) -> None:
    proc, _ = start_inner_run(tmp_path, fault.format(ns=web.namespace))
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    (entry,) = Ledger(cluster.name).unsettled()
    assert holding(entry), "a SIGKILLed run should have left its rules or qdisc behind"

    result = cleanup(cluster)
    assert result.returncode == 0 and "1 fault(s) undone" in result.stdout, result
    assert holding(entry) == []
    assert Ledger(cluster.name).unsettled() == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


def test_sigkill_mid_drain_leaves_a_cordon_that_cleanup_lifts(cluster, kube, tmp_path: Path) -> None:
    node = worker(kube)
    proc, _ = start_inner_run(tmp_path, f'chaos.node_drain("{node}")')
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert kube.core.read_node(node).spec.unschedulable, "a SIGKILLed drain should leave its cordon behind"

    result = cleanup(cluster)
    assert result.returncode == 0 and "1 fault(s) undone" in result.stdout, result
    after = kube.core.read_node(node)
    assert not after.spec.unschedulable
    assert "chaoskit.io/cordoned-by" not in (after.metadata.annotations or {})
    assert Ledger(cluster.name).unsettled() == []
