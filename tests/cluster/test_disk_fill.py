"""Disk fill on the real cluster: a volume filled to a percentage, seen by the pod's own df, and the fill file
gone after the undo, after a container restart, and after a SIGKILLed run's cleanup (independent scan)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from residue import scan
from test_fault_residue import cleanup, start_inner_run
from workloads import Web, wait_pod_running

from chaoskit.adapters.kube import is_control_plane
from chaoskit.chaos import Chaos
from chaoskit.errors import SafetyError, SpecError
from chaoskit.faults.disk import parse_df

pytestmark = pytest.mark.chaos_pod_security("privileged")  # its pod mounts a hostPath: more than baseline allows

MOUNT = "/mnt/chaoskit-disk-test"
"""A 64 MiB tmpfs the test mounts on a worker (this Kubernetes ignores an emptyDir's sizeLimit for its size)."""


def node_sh(node: str, script: str) -> str:
    result = subprocess.run(["docker", "exec", node, "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def disk_pod(web: Web, node: str) -> dict:
    """A web container on ``node`` with the small filesystem at /data."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "disk", "namespace": web.namespace, "labels": {"role": "disk"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,  # the web app drains on SIGTERM; the teardown need not wait
            "containers": [
                {
                    "name": "web",
                    "image": web.image,
                    "imagePullPolicy": "Never",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "hostPath": {"path": MOUNT, "type": "Directory"}}],
        },
    }


@pytest.fixture
def disk(cluster, kube, web: Web) -> Iterator[str]:
    if not cluster.is_kind:
        pytest.skip("the test mounts its small filesystem on a kind node")
    node = sorted(n.metadata.name for n in kube.nodes() if not is_control_plane(n))[0]
    node_sh(node, f"mkdir -p {MOUNT} && (mountpoint -q {MOUNT} || mount -t tmpfs -o size=64m tmpfs {MOUNT})")
    try:
        kube.apply([disk_pod(web, node)])
        wait_pod_running(kube, web.namespace, "disk")
        yield node
        kube.delete("Pod", "disk", web.namespace)
        wait_gone(kube, web.namespace, "disk")
    finally:
        node_sh(node, f"umount {MOUNT} 2>/dev/null; rmdir {MOUNT} 2>/dev/null; true")


def df_in_pod(kube, namespace: str, path: str = "/data") -> float:
    code, output = kube.exec(namespace, "disk", ["df", "-P", "-B1", path])
    assert code == 0, output
    return parse_df(output).percent


def fills(cluster, node: str) -> list[str]:
    """Fill files anywhere the independent scan looks, and on the small filesystem itself."""
    here = [f"{node} {line}" for line in node_sh(node, f"ls -a {MOUNT}").split() if line.startswith(".chaoskit-fill-")]
    return sorted(set(scan(cluster.name, str(cluster.kubeconfig)).fills) | set(here))


def wait_gone(kube, namespace: str, name: str) -> None:
    for _ in range(240):  # its grace period (30 s) and the kubelet teardown, on a busy machine
        if name not in {p.metadata.name for p in kube.pods(namespace, "role=disk")}:
            return
        time.sleep(0.5)
    raise AssertionError(f"pod {name} still there")


def test_a_volume_is_filled_to_the_percentage_and_emptied_again(cluster, chaos: Chaos, kube, web: Web, disk) -> None:
    before = df_in_pod(kube, web.namespace)
    with chaos.disk_fill(web.namespace, "role=disk", 80, path="/data", max_share=1.0) as record:
        assert "the pod's own df" in record.effect, record.effect
        during = df_in_pod(kube, web.namespace)
        assert any(record.fault_id in f for f in fills(cluster, disk))  # seen by the scan and on the filesystem
    after = df_in_pod(kube, web.namespace)
    assert before < 10 and 80 <= during < 90 and after < 10, (before, during, after)
    assert fills(cluster, disk) == [] and record.reverted, record.undo_proof
    print(f"disk fill: {record.effect}; effect after {record.inject_to_effect:.2f} s; undo: {record.undo_proof}")


def test_the_fill_survives_a_container_restart_in_its_volume_and_the_undo_still_finds_it(
    cluster, chaos: Chaos, kube, web: Web, disk
) -> None:
    with chaos.disk_fill(web.namespace, "role=disk", 70, path="/data", max_share=1.0) as record:
        with chaos.container_kill(web.namespace, "role=disk", max_share=1.0):
            pass
        wait_pod_running(kube, web.namespace, "disk")
        assert df_in_pod(kube, web.namespace) >= 70  # the volume kept it: a new container, the same file
    assert fills(cluster, disk) == [] and df_in_pod(kube, web.namespace) < 10
    assert record.reverted and "no .chaoskit-fill-" in (record.undo_proof or ""), record.undo_proof


def test_a_sigkilled_run_leaves_its_fill_to_the_cleanup(cluster, kube, web: Web, disk, tmp_path, pytestconfig) -> None:
    injector = pytestconfig.getoption("chaos_injector")
    fault = f'chaos.disk_fill("{web.namespace}", "role=disk", 60, path="/data", max_share=1.0)'
    proc, fault_id = start_inner_run(tmp_path, fault, injector=injector)
    assert [f for f in fills(cluster, disk) if fault_id in f], "the fill is in place while held"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert [f for f in fills(cluster, disk) if fault_id in f], "a SIGKILLed run leaves its fill behind"
    result = cleanup(cluster, injector)
    assert result.returncode == 0 and f"undone: {fault_id}: " in result.stdout, result.stdout
    assert fills(cluster, disk) == [] and df_in_pod(kube, web.namespace) < 10


def test_bad_fills_are_refused_before_anything_is_written(cluster, chaos: Chaos, web: Web, disk) -> None:
    for options, error, message in (
        ({"percent": 0}, SpecError, "percent must be in 1-99"),
        ({"percent": 50, "path": "data"}, SpecError, "path must be an absolute directory"),
        ({"percent": 50, "path": "/data/../etc"}, SpecError, "without '..'"),
        ({"percent": 99, "path": "/"}, SafetyError, "over max_bytes 1024 MiB"),
    ):
        with pytest.raises(error, match=message):
            with chaos.disk_fill(web.namespace, "role=disk", max_share=1.0, **options):
                pass
    assert fills(cluster, disk) == [] and chaos.records == []
