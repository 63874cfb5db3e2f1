"""A crash is a crash: what a pod's processes receive from ``pod_kill(crash=True)`` and from the API delete.

The target logs every signal it gets, and a tick every 50 ms, to a file on its node (a hostPath volume), in
each of its two containers; it ignores SIGTERM, so only a SIGKILL ends it. The log is read afterwards with
``docker exec`` on the node, none of chaoskit's code: after the crash no container logged SIGTERM, after
the API delete each did, and the ticks say how long the kubelet let it live after the SIGTERM.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from chaoskit.chaos import Chaos

# its target logs signals to a hostPath file on its node: more than Pod Security's baseline allows
pytestmark = [pytest.mark.destructive, pytest.mark.chaos_pod_security("privileged")]

LOGGER = """
import os, signal, sys, time
path = f"/signals/{os.environ['POD']}-{sys.argv[1]}.log"
log = open(path, "a", buffering=1)
def note(signum, frame):
    log.write(f"signal {signal.Signals(signum).name} {time.time():.3f}\\n")
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(sig, note)
log.write(f"start {os.getpid()} {time.time():.3f}\\n")
while True:
    log.write(f"tick {time.time():.3f}\\n")
    time.sleep(0.05)
"""


def deployment(namespace: str, image: str, directory: str, node: str | None = None) -> dict:
    container = {
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", LOGGER],
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "signals", "mountPath": "/signals"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "signals", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "signals"}},
            "template": {
                "metadata": {"labels": {"app": "signals"}},
                "spec": {
                    **({"nodeSelector": {"kubernetes.io/hostname": node}} if node else {}),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {**container, "name": "main", "args": ["main"]},
                        {**container, "name": "sidecar", "args": ["sidecar"]},
                    ],
                    "volumes": [{"name": "signals", "hostPath": {"path": directory, "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }


def node_logs(node: str, directory: str, pod: str) -> dict[str, str]:
    """Each container's log on the node, read by Docker alone."""
    logs = {}
    for container in ("main", "sidecar"):
        done = subprocess.run(
            ["docker", "exec", node, "cat", f"{directory}/{pod}-{container}.log"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        logs[container] = done.stdout
    return logs


def the_pod(kube, namespace: str):
    pods = [p for p in kube.pods(namespace, "app=signals") if p.metadata.deletion_timestamp is None]
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


@pytest.fixture
def target(cluster, kube, namespace: str, web_image: str):
    directory = f"/var/lib/chaoskit-signals-{namespace}"  # not /tmp: a kind node's /tmp is a tmpfs
    kube.apply([deployment(namespace, web_image, directory)])
    kube.wait_whole(namespace, "signals", timeout=120)
    yield directory
    for node in (n.metadata.name for n in kube.nodes()):
        subprocess.run(["docker", "exec", node, "rm", "-rf", directory], capture_output=True, timeout=30, check=False)


def settled(kube, namespace: str, directory: str) -> tuple[str, str]:
    """The live pod once both its loggers are ticking: (name, node)."""
    pod = the_pod(kube, namespace)
    deadline = time.monotonic() + 30
    while True:
        try:
            logs = node_logs(pod.spec.node_name, directory, pod.metadata.name)
            if all("tick" in log for log in logs.values()):
                return pod.metadata.name, pod.spec.node_name
        except subprocess.CalledProcessError:
            pass
        assert time.monotonic() < deadline, "the signal loggers never started"
        time.sleep(0.2)


def last_tick(log: str) -> float:
    return max(float(line.split()[1]) for line in log.splitlines() if line.startswith("tick "))


def lives(log: str) -> list[str]:
    """The log cut at each ``start`` line: one piece per life of the container (a restart in place appends)."""
    pieces = log.split("\nstart ")
    return [pieces[0], *("start " + piece for piece in pieces[1:])]


def ended_logs(node: str, directory: str, pod: str, timeout: float = 90) -> dict[str, str]:
    """Each container's log once its process has ended: no new tick for 1 s (it ticks every 50 ms).

    A delete with grace 0 removes the object at once; the kubelet stops the containers afterwards, so the
    logs are read only when both loggers have gone quiet.
    """
    deadline = time.monotonic() + timeout
    before = node_logs(node, directory, pod)
    while True:
        time.sleep(1.0)
        now = node_logs(node, directory, pod)
        if now == before:
            return now
        assert time.monotonic() < deadline, f"the loggers of {pod} still tick {timeout:.0f} s after the kill"
        before = now


def test_a_crashed_pod_gets_no_sigterm_and_a_deleted_one_does(chaos: Chaos, kube, namespace: str, target: str) -> None:
    pod, node = settled(kube, namespace, target)
    with chaos.pod_kill(namespace, "app=signals", crash=True, max_share=1.0) as record:
        pass
    print("crash:", record.effect)
    assert (
        record.effect.startswith(f"pods {pod} crashed: SIGKILL from the node to ")
        and "no SIGTERM first" in record.effect
    )
    print("crash, per target:", record.deaths)
    assert list(record.deaths) == [pod] and record.deaths[pod].startswith("SIGKILL from its node, no SIGTERM first")
    crashed = ended_logs(node, target, pod)
    for container, log in crashed.items():
        first, *later = lives(log)
        assert "signal " not in first, f"{container} of the crashed pod got a signal it could see: {first[-300:]}"
        # Between the SIGKILL and the force delete the kubelet may restart a container in place; that new
        # instance is then stopped as any deleted pod's container is, SIGTERM first (docs/faults.md says so).
        print(f"FIGURE crash, {container}: {len(later)} restart(s) in place before the force delete took effect")
        for life in later:
            started = float(life.split("\n", 1)[0].split()[2])
            terms = [line for line in life.splitlines() if line.startswith("signal SIGTERM ")]
            print(
                f"FIGURE crash, {container}, restarted in place: {'SIGTERM' if terms else 'no signal'}, "
                f"then dead {last_tick(life) - started:.1f} s after it started"
            )

    kube.wait_whole(namespace, "signals", timeout=120)
    pod, node = settled(kube, namespace, target)
    with chaos.pod_kill(namespace, "app=signals", grace_seconds=0, max_share=1.0) as record:
        pass
    print("graceful:", record.effect)
    print("graceful, per target:", record.deaths)
    # Grace 0: the object leaves the API at once, before the kubelet posts any end; the record says so.
    assert record.deaths[pod].startswith("API delete, grace 0 s (SIGTERM first); the API removed the object at once")
    deleted = ended_logs(node, target, pod)
    graces = []
    for container, log in deleted.items():
        terms = [float(line.split()[2]) for line in log.splitlines() if line.startswith("signal SIGTERM ")]
        assert terms, f"{container} of the deleted pod logged no SIGTERM: {log[-300:]}"
        graces.append(last_tick(log) - terms[0])
    # Grace 0 asked: SIGTERM first all the same, then SIGKILL (the last tick bounds it within 50 ms).
    print(f"FIGURE pod_kill(grace_seconds=0): SIGTERM, then dead {min(graces):.2f}-{max(graces):.2f} s later")
    assert all(grace < 30 for grace in graces), graces  # the pod's own 30 s grace was not what applied

    # With a grace period the kubelet posts each container's end before the object goes: the loggers ignore
    # SIGTERM, so each died by the SIGKILL after the grace (exit 137), as the record says per target.
    kube.wait_whole(namespace, "signals", timeout=120)
    pod, node = settled(kube, namespace, target)
    with chaos.pod_kill(namespace, "app=signals", grace_seconds=2, max_share=1.0) as record:
        pass
    print("grace 2, per target:", record.deaths)
    assert record.deaths[pod].startswith("API delete, grace 2 s (SIGTERM first); "), record.deaths
    assert record.deaths[pod].count("exit 137, Error (killed by SIGKILL)") == 2, record.deaths  # main, sidecar


def test_a_crash_is_refused_with_a_grace_period(chaos: Chaos, namespace: str) -> None:
    from chaoskit.errors import SpecError

    with pytest.raises(SpecError, match="a crash gives no grace period"):
        with chaos.pod_kill(namespace, "app=signals", crash=True, grace_seconds=5):
            pass


def test_a_crashed_node_gives_its_pods_no_sigterm_and_comes_back_ready(
    cluster, chaos: Chaos, kube, namespace: str, web_image: str
) -> None:
    """``node_failure(mode="crash")``: SIGKILL to the node's init (kind), or to its kubelet, pod processes and
    shims from the injector agent (the existing provider, as off kind). The loggers on it log no SIGTERM (a
    ``stop`` would have shut them down with one), the node goes NotReady, the undo brings it back Ready, and
    the independent scan finds nothing left."""
    from residue import scan

    worker = sorted(n.metadata.name for n in kube.nodes() if "worker" in n.metadata.name)[-1]
    directory = f"/var/lib/chaoskit-signals-{namespace}"
    kube.apply([deployment(namespace, web_image, directory, node=worker)])
    kube.wait_whole(namespace, "signals", timeout=120)
    try:
        pod, node = settled(kube, namespace, directory)
        assert node == worker
        with chaos.node_failure(worker, mode="crash", max_share=1.0) as record:
            print("node crash:", record.effect, f"{record.inject_to_effect:.1f} s")
            if cluster.is_kind:
                said = f"node container {worker} exited by SIGKILL to its init (exit 137: nothing shut down)"
            else:  # the existing provider: through the injector agent on the node
                said = f"node {worker} crashed by its injector agent: kubelet SIGKILLed (systemd: inactive); "
            assert record.effect.startswith(said) and "node NotReady" in record.effect, record.effect
        print("undo:", record.undo_proof)
        assert record.deaths == {worker: record.effect.split("; node NotReady")[0]}, record.deaths
        logs = node_logs(worker, directory, pod)  # the node's own disk, kept across the crash
        for container, log in logs.items():
            assert "tick" in log and "signal " not in log, f"{container} on the crashed node: {log[-300:]}"
        after = scan(cluster.name, str(cluster.kubeconfig))
        assert after.empty(), after
    finally:
        subprocess.run(["docker", "exec", worker, "rm", "-rf", directory], capture_output=True, timeout=30)
