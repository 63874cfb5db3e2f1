"""How chaoskit runs a command on a node: through Docker (kind) or through its injector agent (any cluster).

Faults that act inside a node (a pod's network namespace, its processes, the
kubelet) run small bash scripts there. Two ways reach a node:

* ``docker``: ``docker exec`` into the kind node's container. Fast, and needs
  nothing in the cluster, but only for kind clusters on this machine.
* ``agent``: an exec, through the Kubernetes API, into the ``chaoskit-injector``
  pod on that node (a privileged DaemonSet with the host's PID and network
  namespaces; see :mod:`chaoskit.cluster.injector`). Works on any conformant
  cluster the runner can reach by its API alone.

The scripts are the same on both: they need bash, coreutils, ``nsenter``,
``iptables``, ``tc`` and ``socat``, which the kind node image and the injector
image both have, and they see the node's processes in ``/proc``. The way is
chosen once, when a session opens the cluster (:func:`chaoskit.session.open_session`),
and travels with the session's cluster handle (``Cluster.node_shell``): there is no
process-wide choice, so two sessions in one process each keep their own.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from chaoskit.adapters import docker
from chaoskit.adapters.docker import ExecResult
from chaoskit.errors import ClusterError

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube

INJECTORS = ("docker", "agent")
INJECTOR_NAMESPACE = "chaoskit-system"
INJECTOR_NAME = "chaoskit-injector"
INJECTOR_SELECTOR = f"app={INJECTOR_NAME}"
REPLACEMENT_WAIT = 60.0
"""How long a command waits for the node's injector pod to be replaced when there is none running."""


class NodeShell(Protocol):
    """Runs a command on a node, in the node's own namespaces (PID and network)."""

    name: str
    """``docker`` or ``agent``."""

    def run(self, node: str, command: list[str], timeout: float) -> ExecResult:
        """Run ``command``, killed after ``timeout`` s; a command that ran and failed is returned with its status.
        Raises ClusterError when the node cannot be reached."""

    def state(self, node: str) -> str:
        """``running`` when the node can be reached; a :data:`chaoskit.faults.netns.GONE_STATES` word when
        the node (and every pod namespace on it) is gone; anything else when it is unreachable."""


class DockerShell:
    """``docker exec`` into a kind node's container."""

    name = "docker"

    def run(self, node: str, command: list[str], timeout: float) -> ExecResult:
        return docker.run_in(node, command, timeout)

    def state(self, node: str) -> str:
        return docker.state(node)


class AgentShell:
    """An exec into the injector pod on the node, through the Kubernetes API."""

    name = "agent"

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._pods: dict[str, str] = {}
        self._lock = threading.Lock()

    def pod_on(self, node: str, refresh: bool = False) -> str | None:
        """The running injector pod on ``node`` (cached), or None when there is none."""
        with self._lock:
            if refresh or node not in self._pods:
                pods = self.kube.pods(INJECTOR_NAMESPACE, INJECTOR_SELECTOR)
                self._pods = {
                    p.spec.node_name: p.metadata.name
                    for p in pods
                    if p.spec.node_name and p.status.phase == "Running" and p.metadata.deletion_timestamp is None
                }
            return self._pods.get(node)

    def serving(self, node: str, wait: float = REPLACEMENT_WAIT) -> str:
        """The injector pod serving ``node`` now, waiting up to ``wait`` s (on the watch API) for a replacement
        to run when there is none (a rollout, a deleted pod, a restart)."""
        pod = self.pod_on(node)  # a node missing from the cache is looked up afresh
        if pod is not None:
            return pod

        def running(pods: dict[str, Any]) -> bool:
            return any(
                p.spec.node_name == node and p.status.phase == "Running" and p.metadata.deletion_timestamp is None
                for p in pods.values()
            )

        try:
            self.kube.wait_for(
                self.kube.core.list_namespaced_pod,
                running,
                wait,
                f"an injector pod running on {node}",
                namespace=INJECTOR_NAMESPACE,
                label_selector=INJECTOR_SELECTOR,
            )
        except ClusterError:
            pass
        pod = self.pod_on(node, refresh=True)
        if pod is None:
            raise ClusterError(
                f"no running {INJECTOR_NAME} pod on node {node} (waited {wait:g} s): install the agent with "
                "'chaoskit agent install'"
            )
        return pod

    def run(self, node: str, command: list[str], timeout: float) -> ExecResult:
        pod = self.serving(node)
        bounded = ["timeout", "-k", "2", f"{timeout:g}", *command]
        try:
            code, out, err = self.kube.exec_streams(INJECTOR_NAMESPACE, pod, bounded, timeout + 10)
        except ClusterError:
            # The pod may have been replaced (deleted, restarted, a new image rolled out): a pod that is gone
            # ran nothing of it, or took what it ran with it, so the command goes to the one serving now.
            self.pod_on(node, refresh=True)
            fresh = self.serving(node)
            if fresh == pod:
                raise
            code, out, err = self.kube.exec_streams(INJECTOR_NAMESPACE, fresh, bounded, timeout + 10)
        return ExecResult(code, out, err)

    def state(self, node: str) -> str:
        try:
            names = {n.metadata.name for n in self.kube.nodes()}
        except Exception as exc:
            return f"unknown ({type(exc).__name__}: {exc})"
        if node not in names:
            return "missing"
        return "running" if self.pod_on(node, refresh=True) else "without an injector pod"


def check(shell: NodeShell, node: str, command: list[str], timeout: float) -> str:
    """Run ``command`` on ``node`` through ``shell`` and return its standard output; a non-zero exit is a
    ClusterError naming the node, the shell and the last lines it printed."""
    started = time.monotonic()
    result = shell.run(node, command, timeout)
    if result.code != 0:
        detail = " | ".join(result.output.strip().splitlines()[-5:])
        took = time.monotonic() - started
        reason = f"ran over {timeout:g} s" if result.code == 124 else f"failed (exit {result.code}, {took:.1f} s)"
        raise ClusterError(f"'{' '.join(command)[:120]}' on node {node} via {shell.name} {reason}: {detail}")
    return result.stdout
