"""CPU and memory stress on the real cluster: counted by the container's own cgroup, seen inside its PID
namespace, and past the memory limit the container's OOM kill and restart."""

from __future__ import annotations

import subprocess
import time

import pytest
from residue import scan
from workloads import Web, steady_load, wait_pod_running, web_whole_again

from chaoskit import Availability, RecoveryTime, Workload
from chaoskit.chaos import Chaos
from chaoskit.errors import SpecError

MIB = 1 << 20
PROCESSES = (
    "import os\n"
    "for p in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        print(open(f'/proc/{p}/cmdline').read().replace(chr(0), ' '))\n"
    "    except OSError:\n"
    "        pass\n"
)


def in_container(kube, namespace: str, pod: str) -> list[str]:
    """The command lines of every process the container itself sees (its own PID namespace)."""
    code, output = kube.exec(namespace, pod, ["python3", "-c", PROCESSES], timeout=30)
    assert code == 0, output
    return output.splitlines()


def cgroup_of(node: str, pid: str) -> str:
    """A process's cgroups as its node shows them (``docker exec``, not chaoskit's code)."""
    return subprocess.run(
        ["docker", "exec", node, "cat", f"/proc/{pid}/cgroup"], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def test_cpu_stress_runs_inside_the_container_and_ends(cluster, chaos: Chaos, kube, web: Web) -> None:
    with chaos.stress(web.namespace, "app=web", cpu_workers=1) as record:
        assert "CPU" in record.effect and record.verified, record.effect
        pod = record.targets[0].split("/")[0]
        node = record.targets[0].rsplit("@", 1)[1]
        # Seen from inside the container: the stressor is one of its processes.
        assert any(
            "stress" in line and f"--tag=chaoskit:{record.fault_id}" in line
            for line in in_container(kube, web.namespace, pod)
        )
        held = scan(cluster.name, str(cluster.kubeconfig)).helpers_of(record.fault_id)
        assert held, "no stressor found on the node"
        # Seen from the node: the stressor's cgroups are the container's main process's.
        main = next(p for p in kube.pods(web.namespace, "app=web") if p.metadata.name == pod)
        stressor = next(h.split()[1] for h in held if h.split()[2] == "python3")  # not its nsenter
        assert stressor and main.status.container_statuses[0].container_id.split("//")[1][:12] in cgroup_of(
            node, stressor
        )
    assert scan(cluster.name, str(cluster.kubeconfig)).helpers_of(record.fault_id) == []
    assert not any("stress" in line for line in in_container(kube, web.namespace, pod))
    assert record.reverted and "no stressor" in (record.undo_proof or ""), record.undo_proof
    print(f"cpu stress: {record.effect}; effect after {record.inject_to_effect:.2f} s")


def hog(web: Web, limit_mib: int) -> dict:
    """One web pod with a memory limit, to be pushed past it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hog", "namespace": web.namespace, "labels": {"role": "hog"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": web.image,
                    "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"memory": f"{limit_mib}Mi"}, "requests": {"memory": f"{limit_mib}Mi"}},
                }
            ]
        },
    }


def test_memory_stress_holds_memory_and_past_the_limit_the_container_is_oom_killed(
    cluster, chaos: Chaos, kube, web: Web
) -> None:
    kube.apply([hog(web, 128)])
    wait_pod_running(kube, web.namespace, "hog")
    with chaos.stress(web.namespace, "role=hog", memory_bytes=48 * MIB, max_share=1.0) as held:
        assert "memory" in held.effect and "OOM" not in held.effect, held.effect
    with chaos.stress(web.namespace, "role=hog", memory_bytes=160 * MIB, max_share=1.0) as oom:
        assert "OOM-killed" in oom.effect and "restarted" in oom.effect, oom.effect
    pod = kube.core.read_namespaced_pod("hog", web.namespace)
    status = pod.status.container_statuses[0]
    assert status.restart_count >= 1 and status.last_state.terminated.reason == "OOMKilled"
    wait_pod_running(kube, web.namespace, "hog")  # the restart is the recovery
    assert scan(cluster.name, str(cluster.kubeconfig)).helpers_of(oom.fault_id) == []
    print(
        f"memory stress: {held.effect} (after {held.inject_to_effect:.2f} s); past the limit: {oom.effect} "
        f"(after {oom.inject_to_effect:.2f} s)"
    )


def cpu_stat(kube, namespace: str, pod: str) -> dict[str, int]:
    """The CFS counters of ``pod``'s first container, read from its cgroup on its node with the Docker CLI
    (independent of the stressor's own reading)."""
    found = kube.core.read_namespaced_pod(pod, namespace)
    container = found.status.container_statuses[0].container_id.split("//")[1]
    script = (
        f"for f in $(find /sys/fs/cgroup -path '*{container}*' -name cpu.stat 2>/dev/null); do "
        'grep -q nr_throttled "$f" && cat "$f" && break; done'
    )
    out = subprocess.run(
        ["docker", "exec", found.spec.node_name, "sh", "-c", script], capture_output=True, text=True, timeout=30
    ).stdout
    return {key: int(value) for key, value in (line.split() for line in out.splitlines() if line.strip())}


def test_cpu_stress_against_a_cpu_limit_is_throttled_and_says_by_how_much(
    cluster, chaos: Chaos, kube, web: Web
) -> None:
    limited = hog(web, 128)
    limited["metadata"]["name"] = limited["metadata"]["labels"]["role"] = "throttled"
    limited["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "200m", "memory": "128Mi"}}
    kube.apply([limited])
    wait_pod_running(kube, web.namespace, "throttled")
    before = cpu_stat(kube, web.namespace, "throttled")
    with chaos.stress(web.namespace, "role=throttled", cpu_workers=1, max_share=1.0) as record:
        assert "throttled in " in record.effect and "(CPU limit 0.2)" in record.effect, record.effect
        after = cpu_stat(kube, web.namespace, "throttled")
    assert after["nr_throttled"] > before["nr_throttled"], (before, after)  # the cgroup's own count
    said = int(record.effect.split("throttled in ")[1].split()[0])
    assert 0 < said <= after["nr_throttled"] - before["nr_throttled"], (record.effect, before, after)
    print(f"cpu stress at a 200m limit: {record.effect}")


def limit_memory(kube, web: Web, limit: str) -> None:
    """The web tier's container memory limit set, rolled out and whole again."""
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": limit}}}]}}}
    }
    kube.apps.patch_namespaced_deployment("web", web.namespace, patch)
    kube.wait_for(
        kube.apps.list_namespaced_deployment,
        lambda deps: "web" in deps and deps["web"].status.updated_replicas == 3
        and deps["web"].status.ready_replicas == 3 and (deps["web"].status.replicas or 0) == 3,
        180, "the web tier rolled out", namespace=web.namespace,
    )  # fmt: skip
    web_whole_again(kube, web)


def test_an_oom_kill_under_load_is_proven_and_its_recovery_and_availability_are_judged(
    experiment, chaos: Chaos, kube, web: Web
) -> None:
    """The web tier at a 96 MiB memory limit, one pod's container pushed past it under load: OOMKilled proven
    from the container's last state (reason and exit code 137), its restart the recovery, clients' view in
    the verdict."""
    limit_memory(kube, web, "96Mi")  # this test's own web tier: its namespace goes with it
    objectives = [Availability(0.5), Availability(0.95, window="after"), RecoveryTime(60)]
    with experiment(steady_load(web, 25), objectives, Workload(web.namespace, "web", "web")) as run:
        time.sleep(3)
        with chaos.stress(web.namespace, "app=web", memory_bytes=128 * MIB) as oom:
            assert "OOM-killed" in oom.effect and "restarted" in oom.effect, oom.effect
    result = run.result
    assert result is not None and result.verdict.passed, result.verdict.explain()
    assert result.verdict.recovery_s is not None and result.verdict.recovery_s > 0
    pod = oom.targets[0].split("/")[0]
    status = kube.core.read_namespaced_pod(pod, web.namespace).status.container_statuses[0]
    terminated = status.last_state.terminated
    assert status.restart_count >= 1 and terminated.reason == "OOMKilled" and terminated.exit_code == 137
    print(f"OOM under load: {oom.effect}; {result.headline()}; {result.verdict.explain()}")


def test_bad_stress_specs_are_refused_before_anything_is_injected(chaos: Chaos, web: Web) -> None:
    for options, message in (
        ({}, "nothing to stress"),
        ({"cpu_workers": 65}, "cpu_workers must be in 0-64"),
        ({"cpu_workers": 1, "cpu_percent": 0}, "cpu_percent must be in 1-100"),
        ({"memory_bytes": 1000}, "memory_bytes must be 0 or in 1 MiB-64 GiB"),
    ):
        with pytest.raises(SpecError, match=message):
            with chaos.stress(web.namespace, "app=web", **options):
                pass
    assert chaos.records == []
