"""Process freeze: a container's processes stopped (SIGSTOP) for the block, continued (SIGCONT) on undo.

A hung dependency, not a dead one: the pod stays Running, its sockets stay
open, connections are still accepted by the kernel, and nothing answers. The
container's processes are those in its own PID namespace (a container has one
unless its pod shares one), found from the node by that namespace's identity
(``pid:[inode]``), recorded before anything is stopped so the undo needs
nothing else.

Proof, from outside: every process of the container is in state ``T``
(stopped), read from ``/proc`` on its node; and with ``port``, a request from
the node to the pod's port that answered before the freeze gets no answer in
1 s during it. The undo continues every process of the namespace and proves
that none is left stopped (or that the container is gone).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultNotEffective, FaultUndoFailed, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import STEP_TIMEOUT, PodProcess, locate_all
from chaoskit.faults.safety import check_selector

PIDS_IN = r"""ck_pids() {
    for p in /proc/[0-9]*; do [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"; done
}"""
"""Shell: ``ck_pids 'pid:[INODE]'`` prints every process in that PID namespace (none when it is gone)."""
STATES = (
    PIDS_IN
    + r"""
for p in $(ck_pids "$1"); do s=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f1) && echo "$p $s"; done
echo end"""
)
"""Shell: ``pid state`` for each process of the namespace ``$1``, then ``end`` (so an empty answer is a failed read)."""
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class FreezeSpec:
    """Whose processes to stop."""

    namespace: str
    """The namespace of the pods."""
    selector: str
    """A label selector; empty is refused."""
    container: str | None = None
    """The container to freeze (default: the pod's first container)."""
    count: int | None = 1
    """How many of the matching pods (None: every one, under the blast-radius cap)."""
    seed: int | None = None
    """Seed of the random pick."""
    port: int | None = None
    """A TCP port of the pod that answers (HTTP or any protocol that replies to a request): then the proof
    includes a request that answered before the freeze and gets no answer in 1 s during it."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise SpecError(f"count must be at least 1 (or None for every matching pod), not {self.count!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise SpecError(f"port must be a TCP port in 1-65535, not {self.port!r}")


def probe_snippet(ip: str, port: int, seconds: float = PROBE_SECONDS) -> str:
    """Shell: exit 0 when the pod's port answers a request within ``seconds``, 124 when nothing answers."""
    request = shlex.quote("GET / HTTP/1.0\r\nHost: chaoskit\r\n\r\n")
    inner = f"exec 3<>/dev/tcp/{ip}/{port} && printf %s {request} >&3 && head -c 1 <&3 >/dev/null"
    return f"timeout {seconds:g} bash -c {shlex.quote(inner)}"


class Freeze(Fault):
    kind = "process-freeze"
    node_access = "stops the processes from their node"
    spec: FreezeSpec
    _processes: list[PodProcess]
    _undo: dict[str, Any]

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._processes})

    def plan(self) -> list[str]:
        spec = self.spec
        harm = "freezing them would stop every process of their node, the kubelet and chaoskit's own agent included"
        chosen = self.own_pid_pods(spec.namespace, spec.selector, spec.count, spec.seed, harm)
        self._processes = locate_all(self.cluster.node_shell, chosen, spec.container)
        if spec.port is not None:
            for process in self._processes:
                answered = self.cluster.node_shell.run(
                    process.node, ["bash", "-c", probe_snippet(process.ip, spec.port)], 10
                )
                if answered.code != 0:
                    raise SpecError(
                        f"{process.pod} does not answer on port {spec.port} before the freeze (exit {answered.code}), "
                        "so there is nothing to prove against: give a port it serves, or leave port out"
                    )
        return [f"{p.pod}/{spec.container or 'first container'}@{p.node}" for p in self._processes]

    def undo_data(self, targets: list[str]) -> dict[str, Any]:
        frozen = []
        for process, target in zip(self._processes, targets, strict=True):
            read = nodes.check(
                self.cluster.node_shell,
                process.node,
                ["readlink", f"/proc/{process.pid}/ns/pid", "/proc/1/ns/pid"],
                STEP_TIMEOUT,
            ).split()
            ns = read[0] if read else ""
            if not ns.startswith("pid:["):
                raise ClusterError(f"cannot read the PID namespace of {process.pod} on {process.node}: {read!r}")
            if len(read) > 1 and ns == read[1]:
                raise SpecError(
                    f"{process.pod} runs in its node's own PID namespace: freezing it would stop the whole node"
                )
            frozen.append({"node": process.node, "pid_ns": ns, "target": target, "ip": process.ip})
        self._undo = {"containers": frozen}
        return self._undo

    def inject(self, targets: list[str]) -> None:
        for item in self._undo_items():
            script = (
                PIDS_IN + f'\npids=$(ck_pids {shlex.quote(item["pid_ns"])}); [ -n "$pids" ] || exit 3; kill -STOP $pids'
            )
            result = self.cluster.node_shell.run(item["node"], ["bash", "-c", script], STEP_TIMEOUT)
            if result.code != 0:
                raise FaultNotEffective(f"could not stop the processes of {item['target']}: {result.output}")

    def _undo_items(self) -> list[dict[str, str]]:
        return list(self._undo["containers"])

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        counts = []
        for item in self._undo_items():
            states = _states(self.cluster.node_shell, item)
            running = [pid for pid, state in states if state != "T"]
            if not states or running:
                raise FaultNotEffective(
                    f"{item['target']}: {len(running)} of {len(states)} processes not stopped ({', '.join(running)})"
                )
            counts.append(len(states))
        record.effect_mono = time.monotonic()  # every process seen stopped; the probe below confirms it
        probed = ""
        if self.spec.port is not None:
            for item in self._undo_items():
                answer = self.cluster.node_shell.run(
                    item["node"], ["bash", "-c", probe_snippet(item["ip"], self.spec.port)], 10
                )
                if answer.code != 124:
                    raise FaultNotEffective(
                        f"{item['target']} still answers on port {self.spec.port} while its processes are stopped "
                        f"(exit {answer.code})"
                    )
            probed = f"; port {self.spec.port} answered before and gives no answer in {PROBE_SECONDS:g} s now"
        return f"{sum(counts)} process(es) of {', '.join(targets)} stopped (state T){probed}"

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        for item in undo["containers"]:
            script = PIDS_IN + f'\npids=$(ck_pids {shlex.quote(item["pid_ns"])}); [ -z "$pids" ] || kill -CONT $pids'
            result = cluster.node_shell.run(item["node"], ["bash", "-c", script], STEP_TIMEOUT)
            if result.code != 0:
                raise FaultUndoFailed(f"SIGCONT to {item['target']} failed (exit {result.code}): {result.output}")

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        steps: dict[str, list[dict[str, Any]]] = {}
        for item in undo["containers"]:
            inode = int(str(item["pid_ns"]).removeprefix("pid:[").removesuffix("]"))
            steps.setdefault(item["node"], []).append(actions.step("resume", pidNamespace=inode))
        return steps

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        proofs = []
        for item in undo["containers"]:
            states = _states(cluster.node_shell, item)
            stopped = [pid for pid, state in states if state == "T"]
            if stopped:
                raise FaultUndoFailed(f"{item['target']}: processes {', '.join(stopped)} still stopped")
            proofs.append(
                f"{item['target']}: {len(states)} process(es), none stopped" if states else f"{item['target']}: gone"
            )
        return "; ".join(proofs)

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        gone = [item["node"] for item in undo["containers"] if cluster.node_shell.state(item["node"]) == "missing"]
        if len(gone) == len(undo["containers"]):
            return f"node container(s) {', '.join(sorted(set(gone)))} no longer exist"
        return None


def _states(shell: NodeShell, item: dict[str, str]) -> list[tuple[str, str]]:
    """(pid, state) of every process of the recorded container; a read that fails raises."""
    result = shell.run(item["node"], ["bash", "-c", STATES, "states", item["pid_ns"]], STEP_TIMEOUT)
    lines = result.stdout.splitlines()
    if result.code != 0 or "end" not in [line.strip() for line in lines]:
        raise ClusterError(f"cannot read the process states of {item['target']} on {item['node']}: {result.output}")
    return [(w[0], w[1]) for w in (line.split() for line in lines) if len(w) == 2]
