"""A node cut off from the control plane on the real cluster: NotReady in the API while its pods keep serving,
seen through the Docker CLI (not chaoskit's code); whole again after, with nothing left (the independent scan).
Docker's way into the node only: through the injector agent it is refused (tests/unit)."""

from __future__ import annotations

import subprocess

import pytest
from residue import scan
from workloads import Web, wait_web

from chaoskit.adapters.status import node_ready
from chaoskit.chaos import Chaos
from chaoskit.errors import SafetyError, SpecError


def serves(node: str, ip: str, port: int = 8080) -> str:
    """The status line a pod answers on ``ip`` with, asked from its node by the Docker CLI."""
    script = f'exec 3<>/dev/tcp/{ip}/{port} && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && head -n 1 <&3'
    done = subprocess.run(
        ["docker", "exec", node, "timeout", "5", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() or f"no answer (exit {done.returncode}: {done.stderr.strip()})"


@pytest.mark.destructive
def test_a_node_cut_off_from_the_control_plane_goes_not_ready_while_its_pods_serve(
    cluster, chaos: Chaos, kube, web: Web
) -> None:
    if not cluster.is_kind:
        pytest.skip("a node partition needs a kind cluster (Docker's way into the node)")
    pods = [p for p in kube.pods(web.namespace, "app=web") if p.status.phase == "Running"]
    node = pods[0].spec.node_name
    cut = {p.metadata.name: p.status.pod_ip for p in pods if p.spec.node_name == node}
    assert all(serves(node, ip).endswith("200 OK") for ip in cut.values())
    with chaos.node_partition(node, max_share=1.0) as record:
        assert "blocked during" in record.effect and record.effect.endswith("node NotReady"), record.effect
        assert not node_ready(kube.core.read_node(node))
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.of(record.fault_id)) >= 2 and len(held.helpers_of(record.fault_id)) == 1, held
        during = {name: serves(node, ip) for name, ip in cut.items()}
    assert all(line.endswith("200 OK") for line in during.values()), during
    after = scan(cluster.name, str(cluster.kubeconfig))
    assert after.empty() and after.of(record.fault_id) == [], after
    assert node_ready(kube.core.read_node(node))
    wait_web(kube, web.namespace)  # the Deployment whole again (its pods there were evicted meanwhile)
    print(
        f"node partition of {node}: {record.effect}; cut {record.inject_to_effect:.2f} s after the injection; "
        f"its {len(cut)} web pod(s) answered during it: {sorted(during.values())}; undo: {record.undo_proof}"
    )


def test_a_node_partition_ends_by_itself_at_its_dead_man_timer(cluster, chaos: Chaos, kube) -> None:
    if not cluster.is_kind:
        pytest.skip("a node partition needs a kind cluster (Docker's way into the node)")
    node = sorted(n.metadata.name for n in kube.nodes() if "control-plane" not in n.metadata.name)[0]
    with chaos.node_partition(node, wait_not_ready=False, max_seconds=10, max_share=1.0) as record:
        assert scan(cluster.name, str(cluster.kubeconfig)).of(record.fault_id)
        for _ in range(40):  # the timer deletes the rules 10 s after they went in: nothing of chaoskit runs
            held = scan(cluster.name, str(cluster.kubeconfig))
            if not held.of(record.fault_id) and not held.helpers_of(record.fault_id):
                break
            subprocess.run(["sleep", "0.5"], check=True)
        assert not held.of(record.fault_id) and not held.helpers_of(record.fault_id), held
    assert record.reverted and scan(cluster.name, str(cluster.kubeconfig)).empty()
    print(f"node partition of {node} healed by its own timer; the undo then found: {record.undo_proof}")


def test_node_partitions_refuse_the_control_plane_unknown_nodes_and_bad_timers(cluster, chaos: Chaos, kube) -> None:
    control_plane = next(n.metadata.name for n in kube.nodes() if "control-plane" in n.metadata.name)
    with pytest.raises(SafetyError, match="control-plane node"):
        with chaos.node_partition(control_plane, max_share=1.0):
            pass
    with pytest.raises(SpecError, match="no node named"):
        with chaos.node_partition("no-such-node", max_share=1.0):
            pass
    with pytest.raises(SpecError, match="max_seconds must be in 10-600"):
        with chaos.node_partition(control_plane, max_seconds=5):
            pass
    assert chaos.records == [] and scan(cluster.name, str(cluster.kubeconfig)).empty()
