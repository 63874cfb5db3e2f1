"""Container kill: a signal to a container's main process, so the kubelet restarts it in place.

Unlike a pod kill, the pod (its name, UID, IP and node) stays; only the process
dies. The proof is the container's restart count going up in the pod status.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, SpecError
from chaoskit.faults.base import Fault, FaultRecord, how_it_ended
from chaoskit.faults.netns import PodProcess, locate_all
from chaoskit.faults.safety import check_selector

SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT")


@dataclass(frozen=True)
class ContainerKillSpec:
    """Which containers to signal."""

    namespace: str
    """The namespace of the pods."""
    selector: str
    """A label selector; empty is refused."""
    container: str | None = None
    """The container's name (default: the pod's first container)."""
    signal: str = "SIGKILL"
    """SIGKILL (a crash) or SIGTERM (a clean stop), SIGINT, SIGQUIT."""
    count: int = 1
    """How many pods' containers to signal."""
    seed: int | None = None
    """Seed of the random pick."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if self.signal not in SIGNALS:
            raise SpecError(f"signal must be one of {', '.join(SIGNALS)}, not {self.signal!r}")
        if self.count < 1:
            raise SpecError(f"count must be at least 1, not {self.count}")


class ContainerKill(Fault):
    kind = "container-kill"
    node_access = "signals the process from its node"
    spec: ContainerKillSpec
    _processes: list[PodProcess]
    _restarts: dict[str, int]

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._processes})

    def plan(self) -> list[str]:
        spec = self.spec
        pods = self.live_pods(spec.namespace, spec.selector)
        if spec.count > len(pods):
            raise SpecError(f"count {spec.count} is more than the {len(pods)} pods matching {spec.selector!r}")
        self.safety.check_share(spec.count, len(pods), f"pods matching {spec.selector!r}", self.active_on(pods))
        chosen = random.Random(spec.seed).sample(sorted(pods, key=lambda p: p.metadata.name), spec.count)
        self._processes = locate_all(self.cluster.node_shell, chosen, spec.container)
        self._restarts = {p.metadata.name: self._restart_count(p) for p in chosen}
        return [f"{p.pod}/{spec.container or 'first container'}@{p.node}" for p in self._processes]

    def _restart_count(self, pod: Any) -> int:
        for status in pod.status.container_statuses or []:
            if self.spec.container in (None, status.name):
                return int(status.restart_count)
        return 0

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return None

    def inject(self, targets: list[str]) -> None:
        for process in self._processes:
            nodes.check(
                self.cluster.node_shell,
                process.node,
                ["kill", "-s", self.spec.signal.removeprefix("SIG"), str(process.pid)],
                10,
            )

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        # The kill takes effect when the process is gone (seen on the node); the restart count
        # going up, which can lag by the kubelet's back-off, confirms it from the API.
        for process in self._processes:
            gone = self.cluster.node_shell.run(
                process.node, ["sh", "-c", f"while [ -d /proc/{process.pid} ]; do sleep 0.02; done"], 10
            )
            if gone.code != 0:
                raise FaultNotEffective(f"process {process.pid} of {process.pod} still runs 10 s after the signal")
        record.effect_mono = time.monotonic()

        seen: dict[str, Any] = {}

        def restarted(pods: dict[str, Any]) -> bool:
            seen.update({name: pods[name] for name in self._restarts if name in pods})
            return all(name in pods and self._restart_count(pods[name]) > n for name, n in self._restarts.items())

        self.await_effect(
            record,
            self.kube.core.list_namespaced_pod,
            restarted,
            60,
            "the signalled containers to be restarted",
            namespace=self.spec.namespace,
        )
        for process, target in zip(self._processes, targets, strict=True):
            for status in seen[process.pod].status.container_statuses or []:
                if self.spec.container in (None, status.name):
                    last = status.last_state.terminated if status.last_state else None
                    record.deaths[target] = f"{self.spec.signal} from its node to pid {process.pid}; " + how_it_ended(
                        status.name, last
                    )
                    break
        return f"{self.spec.signal} to {', '.join(targets)}; restart count up"

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        """Nothing to undo: the kubelet's restart is the recovery under test."""
