"""Process freeze on the real cluster: a web pod's processes stopped, seen from outside, continued after.

The state of the frozen container's processes is read independently of the
fault's code: the container's main PID from ``ctr`` on its node, then
``ps`` of every process in its PID namespace.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from residue import scan
from workloads import Web, get_from_host

from chaoskit import SpecError
from chaoskit.chaos import Chaos

pytestmark = pytest.mark.shared_web  # each test injects a fault and undoes it


def states(kube, namespace: str, pod: str) -> list[str]:
    """The state letters of every process of the pod's container, read with ctr and ps on its node."""
    status = kube.core.read_namespaced_pod(pod, namespace)
    node = status.spec.node_name
    container_id = status.status.container_statuses[0].container_id.split("://", 1)[1]
    script = (
        f"pid=$(ctr -n k8s.io task ls | awk '$1 == \"{container_id}\" {{print $2}}'); "
        "ns=$(readlink /proc/$pid/ns/pid); "
        'for p in /proc/[0-9]*; do [ "$(readlink $p/ns/pid 2>/dev/null)" = "$ns" ] && ps -o stat= -p ${p#/proc/}; '
        "done; true"
    )
    out = subprocess.run(["docker", "exec", node, "bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_frozen_pod_stops_answering_and_answers_again_after(cluster, chaos: Chaos, kube, web: Web) -> None:
    with chaos.process_freeze(web.namespace, "app=web", port=8080) as record:
        pod = record.targets[0].split("/")[0]  # "web-...-xyz/first container@node"
        frozen = states(kube, web.namespace, pod)
        assert frozen and all(s.startswith("T") for s in frozen), frozen
        assert "stopped (state T)" in (record.effect or "") and "gives no answer in 1 s" in (record.effect or "")
        assert record.inject_to_effect is not None and record.inject_to_effect < 3, record.inject_to_effect
        still = kube.core.read_namespaced_pod(pod, web.namespace)
        assert still.status.phase == "Running", "a frozen pod is hung, not dead"
    assert record.reverted and "none stopped" in (record.undo_proof or ""), record.undo_proof
    thawed = states(kube, web.namespace, pod)
    assert thawed and not any(s.startswith("T") for s in thawed), thawed
    # The tier answers from the host again, and nothing is left stopped anywhere.
    deadline = time.monotonic() + 30
    while True:
        try:
            get_from_host(web.node_port)
            break
        except OSError:
            assert time.monotonic() < deadline, "the web tier did not answer again after the freeze"
            time.sleep(0.5)
    assert scan(cluster.name, str(cluster.kubeconfig)).empty()
    print(f"froze {record.targets[0]}: effect seen after {record.inject_to_effect * 1000:.0f} ms; {record.effect}")


def test_a_port_that_does_not_answer_before_is_refused_before_anything_is_stopped(chaos: Chaos, web: Web) -> None:
    with pytest.raises(SpecError, match="does not answer on port 9 before the freeze"):
        with chaos.process_freeze(web.namespace, "app=web", port=9):
            pass
    assert chaos.records == []
