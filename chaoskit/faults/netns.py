"""Reaching a pod's processes and network namespace from its kind node, with no helper pod.

A kind node is a Docker container whose containerd runs the pod, so
``docker exec NODE ctr -n k8s.io task ls`` gives the PID of each container
(in the node's PID namespace) and ``docker exec NODE nsenter -t PID -n CMD``
runs CMD, with the node's own tools (iptables, tc), inside the pod's network
namespace. The peers start a privileged helper pod per run for this, which
costs tens of seconds; here it costs one ``docker exec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import docker
from chaoskit.adapters.shell import run
from chaoskit.errors import SpecError

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


def pid_alive(node: str, pid: int) -> bool:
    return run(["docker", "exec", node, "test", "-d", f"/proc/{pid}"], check=False).returncode == 0


def _unquote(words: list[str]) -> list[str]:
    # iptables-save quotes comments that contain spaces; ours have none, but strip quotes anyway.
    return [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]
