"""A run stopped in the middle of a fault leaves nothing behind, and a failed undo is never called done.

The crash matrix: every fault kind that has something to undo, held by a pytest
run in a subprocess, which then gets SIGINT, SIGTERM, or SIGKILL followed by
``chaoskit cleanup``. Residue is counted by :mod:`residue`, an independent scan
(the Docker CLI and the official client, none of chaoskit's fault code): rules
and qdiscs marked by chaoskit in every running pod's namespace on every node,
unschedulable nodes, node containers not running, nodes not Ready.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from inner import cleanup, start_inner_run
from residue import Residue, scan
from workloads import Web, probe_eventually

from chaoskit.adapters import docker
from chaoskit.adapters.kube import is_control_plane
from chaoskit.state.ledger import Ledger

pytestmark = [pytest.mark.destructive, pytest.mark.shared_web]


def residue_now(cluster) -> Residue:
    return scan(cluster.name, str(cluster.kubeconfig))


@pytest.fixture(autouse=True)
def cluster_not_recreated(cluster):
    """Undoing a fault on one worker must never make chaoskit recreate the whole cluster."""
    control_plane = f"{cluster.name}-control-plane"
    before = docker.inspect(control_plane).started_at
    yield
    assert docker.inspect(control_plane).started_at == before, "the control plane was restarted or recreated"


def worker(kube) -> str:
    return sorted(n.metadata.name for n in kube.nodes() if not is_control_plane(n))[0]


FAULTS = {
    "partition": 'chaos.partition("{ns}", "role=client", peer_selector="app=web", max_share=1.0)',
    "process-freeze": 'chaos.process_freeze("{ns}", "app=web", port=8080)',
    "packet-loss": 'chaos.packet_loss("{ns}", "app=web", percent=30, max_share=1.0)',
    "bandwidth": 'chaos.bandwidth("{ns}", "app=web", rate_kbit=1000, max_share=1.0)',
    "latency": 'chaos.latency("{ns}", "app=web", delay_ms=30, max_share=1.0)',
    "dns": 'chaos.dns("{ns}", "role=client", "web", max_share=1.0)',
    "http": 'chaos.http("{ns}", "app=web", 8080, abort_percent=50, max_share=1.0)',
    "stress": 'chaos.stress("{ns}", "app=web", cpu_workers=1, memory_bytes=32 << 20)',
    "node-drain": 'chaos.node_drain("{node}")',
    "node-pause": 'chaos.node_failure("{node}", mode="pause", wait_not_ready=False)',
    "node-stop": 'chaos.node_failure("{node}", mode="stop", wait_not_ready=False)',
    "node-zone-pause": 'chaos.zone_failure("{zone}", mode="pause", wait_not_ready=False)',
    "node-partition": 'chaos.node_partition("{node}", wait_not_ready=False)',
}
"""Every fault kind with an undo (latency through the user-space delayer here: this kernel has no netem)."""


def held_residue(kind: str, fault_id: str, residue: Residue, node: str) -> bool:
    """Whether the independent scan sees what a fault of ``kind`` leaves while it is held."""
    if kind in ("partition", "packet-loss"):
        return bool(residue.of(fault_id))
    if kind == "node-partition":
        return bool(residue.of(fault_id)) and bool(residue.helpers_of(fault_id))
    if kind == "bandwidth":
        return bool(residue.qdiscs)
    if kind in ("latency", "dns", "http"):
        return bool(residue.of(fault_id)) and bool(residue.helpers_of(fault_id))
    if kind == "stress":
        return bool(residue.helpers_of(fault_id))
    if kind == "process-freeze":
        return bool(residue.stopped)
    if kind == "node-drain":
        return node in residue.unschedulable
    return any(line.startswith(f"{node}:") for line in residue.not_running)


GRACEFUL_ON_NODES = {
    "node-drain": "SIGTERM",
    "node-pause": "SIGINT",
    "node-stop": "SIGTERM",
    "node-zone-pause": "SIGINT",
    "node-partition": "SIGTERM",
}


AGENT_SIGKILL = "partition"
"""The one kind SIGKILLed in the agent's pass (with ``chaoskit status`` read on its dead run)."""


def signals_for(kind: str, injector: str | None) -> list[str]:
    """The signals a kind is stopped with. Ctrl-C and SIGTERM unwind by one path in the runner
    (tests/unit/test_undo_trust.py proves each reaches it), so each kind gets one of them, and SIGKILL
    (then ``chaoskit cleanup``):

    - a fault that enters pods, through Docker: Ctrl-C and SIGKILL;
    - the same through the agent (``make test`` runs the agent's pass): SIGTERM on every kind, so
      each kind is proven to undo on both signals; SIGKILL on :data:`AGENT_SIGKILL` alone, since the
      cleanup after it undoes each kind by the agent's same undo that the existing provider's pass
      runs for every kind at the end of a test;
    - a node fault (through Docker only): the one named in :data:`GRACEFUL_ON_NODES`, and SIGKILL."""
    if kind in GRACEFUL_ON_NODES:
        return [GRACEFUL_ON_NODES[kind], "SIGKILL"]
    if injector == "agent":
        return ["SIGTERM", "SIGKILL"] if kind == AGENT_SIGKILL else ["SIGTERM"]
    return ["SIGINT", "SIGKILL"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name == "test_a_run_stopped_mid_fault_leaves_zero_residue":
        injector = metafunc.config.getoption("chaos_injector")
        cases = [
            pytest.param(
                kind, how, id=f"{kind}-{how}", marks=[pytest.mark.node_fault] if kind in GRACEFUL_ON_NODES else []
            )
            for kind in FAULTS
            for how in signals_for(kind, injector)
        ]
        metafunc.parametrize(("kind", "how"), cases)


def test_a_run_stopped_mid_fault_leaves_zero_residue(
    cluster, kube, web: Web, client: str, tmp_path: Path, kind: str, how: str, pytestconfig
) -> None:
    """With ``--chaos-injector agent`` the inner run and the cleanup go through the agent too."""
    node = worker(kube)
    injector = pytestconfig.getoption("chaos_injector")
    assert residue_now(cluster).empty(), "the cluster had residue before the test"
    zone = (kube.core.read_node(node).metadata.labels or {}).get("topology.kubernetes.io/zone", "")
    fault = FAULTS[kind].format(ns=web.namespace, node=node, zone=zone)
    proc, fault_id = start_inner_run(tmp_path, fault, injector=injector)
    assert held_residue(kind, fault_id, residue_now(cluster), node), f"{kind} left no trace while held"

    os.kill(proc.pid, getattr(signal, how))
    output, _ = proc.communicate(timeout=400)
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
        assert held_residue(kind, fault_id, residue_now(cluster), node), "a SIGKILLed run leaves its fault behind"
        assert [e.fault_id for e in Ledger(cluster.name).unsettled()] == [fault_id]
        if kind == "partition":  # once: what 'chaoskit status' tells a script about a dead run's fault
            status = subprocess.run(
                [sys.executable, "-m", "chaoskit.cli", "status", "--name", cluster.name, "-o", "json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert status.returncode == 1, status  # residue found
            said = json.loads(status.stdout)
            assert said["residue"] is True
            assert [(f["faultId"], f["ownerAlive"]) for f in said["faults"]] == [(fault_id, False)], said
        result = cleanup(cluster, injector)
        assert result.returncode == 0 and "1 fault(s) undone" in result.stdout, result
        assert f"undone: {fault_id}: " in result.stdout, result.stdout
    else:
        assert proc.returncode == 2 and "KeyboardInterrupt" in output, output  # pytest's "interrupted"
    after = residue_now(cluster)
    assert after.empty(), after
    assert Ledger(cluster.name).unsettled() == []
    if kind in ("partition", "packet-loss", "bandwidth", "latency", "dns", "http"):
        probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


SLOW_UNDO = """
from chaoskit.faults.network import Partition
_revert = Partition.revert.__func__

def _slow_revert(cls, cluster, kube, undo):
    pathlib.Path("{undoing}").write_text("undoing")
    time.sleep(1.5)  # the real undo follows; the delay lets the test signal while it runs
    _revert(cls, cluster, kube, undo)

Partition.revert = classmethod(_slow_revert)
"""


def test_a_second_sigterm_during_the_undo_of_a_partition_waits_for_it(
    cluster, kube, web: Web, client: str, tmp_path: Path
) -> None:
    undoing = tmp_path / "undoing"
    fault = FAULTS["partition"].format(ns=web.namespace)
    proc, fault_id = start_inner_run(tmp_path, fault, prelude=SLOW_UNDO.format(undoing=undoing))
    proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while not undoing.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the undo never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # while the undo runs
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert f"SIGTERM received while undoing {fault_id}: finishing the undo first" in output, output
    assert residue_now(cluster).of(fault_id) == []
    assert Ledger(cluster.name).unsettled() == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


SHADOW = "/usr/sbin/iptables-save"


def heal_iptables_save(nodes: list[str]) -> None:
    for node in nodes:
        subprocess.run(
            ["docker", "exec", node, "sh", "-c", f"[ ! -e {SHADOW}.real ] || mv -f {SHADOW}.real {SHADOW}"],
            check=True,
            timeout=30,
        )


@pytest.fixture
def workers(cluster, kube) -> Iterator[list[str]]:
    """The worker nodes; ``iptables-save`` is whole again on them whatever the test did, and a cleanup then
    undoes what a failed test left, so that nothing of it reaches the tests after it."""
    names = sorted(n.metadata.name for n in kube.nodes() if "worker" in n.metadata.name)
    yield names
    heal_iptables_save(names)
    if Ledger(cluster.name).unsettled():
        cleanup(cluster)


@pytest.fixture
def blind_agents(kube) -> Iterator[None]:
    """The injector agents, if installed, cannot read rules either (their own iptables-save fails), so they
    cannot finish the undo themselves when the inner run exits; whole again whatever the test did."""
    pods = [p.metadata.name for p in kube.pods("chaoskit-system", "app=chaoskit-injector")]
    shadow = f"mv {SHADOW} {SHADOW}.real && printf '#!/bin/sh\\nexit 1\\n' > {SHADOW} && chmod +x {SHADOW}"
    for pod in pods:
        code, output = kube.exec("chaoskit-system", pod, ["sh", "-c", shadow])
        assert code == 0, output
    yield
    for pod in pods:
        kube.exec("chaoskit-system", pod, ["sh", "-c", f"[ ! -e {SHADOW}.real ] || mv -f {SHADOW}.real {SHADOW}"])


def test_an_undo_that_cannot_see_fails_the_test_and_cleanup_finishes_it(
    cluster, kube, web: Web, client: str, tmp_path: Path, workers: list[str], blind_agents: None
) -> None:
    fault = FAULTS["partition"].format(ns=web.namespace)
    during = f"shadow({workers!r})"
    prelude = f"import subprocess\nSHADOW = {SHADOW!r}\n" + textwrap.dedent(
        """
        def shadow(nodes):
            for node in nodes:
                subprocess.run(["docker", "exec", node, "sh", "-c",
                    f"mv {SHADOW} {SHADOW}.real; printf '#!/bin/sh\\\\nexit 1\\\\n' > {SHADOW}; chmod +x {SHADOW}"],
                    check=True, timeout=30)
        """
    )
    proc, fault_id = start_inner_run(tmp_path, fault, during=during, prelude=prelude)
    output, _ = proc.communicate(timeout=300)

    # The inner test ends in error, saying which fault's undo was not proven and why.
    assert proc.returncode == 1, output
    assert f"FaultUndoFailed: undo of {fault_id} not proven: " in output, output
    assert "1 failed, 1 error" in output, output
    assert "NOT undone" in output and "chaoskit cleanup" in output, output
    # The entry stays unsettled and the rules are still there, as an independent scan counts them.
    assert [e.fault_id for e in Ledger(cluster.name).unsettled()] == [fault_id]
    assert len(residue_now(cluster).of(fault_id)) == 12

    # cleanup cannot see either: it says so, names what is left, and exits 1.
    blind = cleanup(cluster)
    assert blind.returncode == 1, blind
    assert f"NOT UNDONE: undo of {fault_id} not proven: " in blind.stdout and "iptables-save" in blind.stdout, blind
    assert len(residue_now(cluster).of(fault_id)) == 12

    heal_iptables_save(workers)
    healed = cleanup(cluster)
    assert healed.returncode == 0 and f"undone: {fault_id}: no rule with comment" in healed.stdout, healed
    assert residue_now(cluster).of(fault_id) == []
    assert Ledger(cluster.name).unsettled() == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)
