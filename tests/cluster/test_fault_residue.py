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

from chaoskit.adapters import docker
from chaoskit.adapters.kube import node_ready
from chaoskit.faults.ledger import Ledger

pytestmark = pytest.mark.destructive

INNER = """
import pathlib, time

def test_hold_a_node_failure(chaos):
    with chaos.node_failure("{node}", mode="stop", wait_not_ready=False):
        pathlib.Path("{marker}").write_text("injected")
        time.sleep(300)
"""


def start_inner_run(tmp_path: Path, node: str) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "injected"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(textwrap.dedent(INNER.format(node=node, marker=marker)))
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
    proc, _ = start_inner_run(tmp_path, node)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The residue is real: the node is down and the ledger knows.
    assert docker.inspect(node).state == "exited"
    residue = Ledger(cluster.name).unsettled()
    assert [(e.kind, e.undo["node"], e.pid) for e in residue] == [("node-failure", node, proc.pid)]

    result = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "cleanup", "--name", cluster.name],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result
    assert "1 fault(s) undone" in result.stdout
    assert docker.inspect(node).state == "running"
    assert node_ready({n.metadata.name: n for n in kube.nodes()}[node])
    assert Ledger(cluster.name).unsettled() == []


def test_sigterm_mid_fault_undoes_it_before_exiting(cluster, kube, tmp_path: Path) -> None:
    if not cluster.is_kind:
        pytest.skip("node failure needs a kind cluster")
    node = worker(kube)
    proc, _ = start_inner_run(tmp_path, node)
    assert docker.inspect(node).state == "exited"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=400)
    assert proc.returncode == 2 and "KeyboardInterrupt" in output, output  # pytest's "interrupted"
    assert docker.inspect(node).state == "running"
    assert node_ready({n.metadata.name: n for n in kube.nodes()}[node])
    assert Ledger(cluster.name).unsettled() == []
