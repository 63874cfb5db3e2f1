"""Reaching a pod's processes and network namespace from its kind node, with no helper pod.

A kind node is a Docker container whose containerd runs the pod, so
``docker exec NODE ctr -n k8s.io task ls`` gives the PID of each container
(in the node's PID namespace) and ``docker exec NODE nsenter -t PID -n CMD``
runs CMD, with the node's own tools (iptables, tc), inside the pod's network
namespace. The peers start a privileged helper pod per run for this, which
costs tens of seconds; here it costs one ``docker exec``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import docker
from chaoskit.adapters.shell import run
from chaoskit.errors import ClusterError, SpecError

COMMENT_PREFIX = "chaoskit:"


@dataclass(frozen=True)
class PodProcess:
    """Where a pod's container runs."""

    namespace: str
    pod: str
    node: str
    """The kind node (and its container's name)."""
    container_id: str
    pid: int
    """The container's main process, in the node's PID namespace."""
    ip: str
    """The pod's IP address."""


def locate(pod: Any, container: str | None = None) -> PodProcess:
    """Find a running pod's container (the first one unless named) on its node."""
    name = pod.metadata.name
    statuses = pod.status.container_statuses or []
    if container:
        statuses = [s for s in statuses if s.name == container]
    running = [s for s in statuses if s.container_id and s.state and s.state.running]
    if not running or not pod.spec.node_name or not pod.status.pod_ip:
        which = f"container {container}" if container else "container"
        raise SpecError(f"pod {pod.metadata.namespace}/{name} has no running {which}")
    container_id = running[0].container_id.split("://", 1)[1]
    node = pod.spec.node_name
    tasks = docker.exec_in(node, "ctr", "-n", "k8s.io", "task", "ls")
    for line in tasks.splitlines()[1:]:
        words = line.split()
        if len(words) >= 3 and words[0] == container_id and words[2] == "RUNNING":
            return PodProcess(pod.metadata.namespace, name, node, container_id, int(words[1]), pod.status.pod_ip)
    raise SpecError(f"container {container_id[:12]} of pod {name} is not running on node {node}")


def in_netns(node: str, pid: int, *command: str, check: bool = True) -> tuple[int, str]:
    """Run a command of the node inside the network namespace of process ``pid``."""
    result = run(["docker", "exec", node, "nsenter", "-t", str(pid), "-n", *command], check=check)
    return result.returncode, result.stdout + result.stderr


def tcp_blocked(node: str, pid: int, ip: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from the namespace of ``pid`` to ip:port fails (bounded by ``timeout``)."""
    code, _ = in_netns(node, pid, "timeout", str(timeout), "bash", "-c", f"echo > /dev/tcp/{ip}/{port}", check=False)
    return code != 0


def rules_with(node: str, pid: int, comment: str) -> list[str]:
    """The iptables rules (``-A ...`` lines) in the namespace that carry ``comment``."""
    code, output = in_netns(node, pid, "iptables-save", check=False)
    if code != 0:
        return []
    return [line for line in output.splitlines() if line.startswith("-A ") and comment in _unquote(line.split())]


def delete_rules(node: str, pid: int, comment: str) -> int:
    """Delete every rule carrying ``comment``; return how many. Idempotent."""
    removed = 0
    for line in rules_with(node, pid, comment):
        words = line.split()
        spec = ["-D", *_unquote(words[1:])]
        code, _ = in_netns(node, pid, "iptables", "-w", *spec, check=False)
        removed += code == 0
    return removed


def netem_available(node: str) -> tuple[bool, str]:
    """Whether the kernel has the netem qdisc, tried in a throwaway network namespace of the node."""
    result = run(
        ["docker", "exec", node, "unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
        check=False,
    )
    detail = (result.stderr or result.stdout).strip()
    return result.returncode == 0, detail


def qdisc_handle(fault_id: str) -> str:
    """A qdisc handle (``major:``) derived from a fault id, clear of the kernel's own (0:, 8001: and up)."""
    digest = int(hashlib.sha256(fault_id.encode()).hexdigest()[:8], 16)
    return f"{0x100 + digest % 0x7E00:x}:"


def root_qdisc(node: str, pid: int, device: str = "eth0") -> tuple[str, str] | None:
    """The kind and handle of the root qdisc on ``device`` in the namespace (None if unreadable)."""
    code, output = in_netns(node, pid, "tc", "qdisc", "show", "dev", device, "root", check=False)
    words = output.split()
    if code != 0 or len(words) < 3 or words[0] != "qdisc":
        return None
    return words[1], words[2]


def timed_send(process: PodProcess, size: int, timeout: float) -> float:
    """Seconds for ``size`` bytes sent from the pod's namespace to arrive at a listener on its node.

    The listener binds the pod's default gateway (the node's bridge address) in
    the node's own namespace; the clock stops when the listener has read
    everything, so bytes still queued in the pod count against the time.
    """
    code, gateway = in_netns(process.node, process.pid, "ip", "-4", "route", "show", "default")
    words = gateway.split()
    if code != 0 or "via" not in words:
        raise ClusterError(f"pod {process.pod} has no default route to send a probe along: {gateway.strip()}")
    via = words[words.index("via") + 1]
    limit = f"{timeout:.1f}"
    script = f"""
        port=$((40000 + RANDOM % 20000))
        timeout {limit} socat -u TCP-LISTEN:$port,bind={via},reuseaddr OPEN:/dev/null & listener=$!
        for i in $(seq 200); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.01; done
        start=$(date +%s%N)
        head -c {size} /dev/zero | timeout {limit} nsenter -t {process.pid} -n socat -u - TCP:{via}:$port
        wait $listener
        echo $(( $(date +%s%N) - start ))
    """
    result = run(["docker", "exec", process.node, "bash", "-ec", script], check=False)
    if result.returncode != 0:
        raise ClusterError(f"the probe transfer from {process.pod} failed: {(result.stderr or result.stdout).strip()}")
    return int(result.stdout.split()[-1]) / 1e9


def pid_alive(node: str, pid: int) -> bool:
    return run(["docker", "exec", node, "test", "-d", f"/proc/{pid}"], check=False).returncode == 0


def _unquote(words: list[str]) -> list[str]:
    # iptables-save quotes comments that contain spaces; ours have none, but strip quotes anyway.
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]
