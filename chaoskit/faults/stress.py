"""CPU and memory stress inside a container: processes in its cgroups and namespaces, not a sidecar.

A stressor (:mod:`chaoskit.agent.stress`, a python3 helper copied to the node)
enters the container's PID, network, IPC and UTS namespaces from the node and
moves itself into every cgroup of the container's main process, so the CPU it
burns and the memory it holds are the container's own: counted by its cgroup,
throttled by its CPU limit, and up against its memory limit.

Proof of effect, from the container's cgroup accounting read on its node: CPU
stress raises the container's CPU usage by at least a quarter of what was
asked (``cpu_workers`` x ``cpu_percent``, capped by its CPU limit and the
node's CPUs), measured on the node over a second before and over up to three
seconds during (a quarter: where every CPU of the node is busy, the stressor
gets only its share; the proof names how busy the node was). Memory stress
raises its memory usage by at least 90 % of ``memory_bytes``; where that
would pass the container's limit, the effect to see is the OOM kill instead:
the container terminated ``OOMKilled`` and restarted (the stressor's bytes are
in an in-memory file that no process maps, so the OOM killer picks the
application, as when it grows by itself). The restart is the recovery.

Undo ends the stressors (found by their tag on the node) and proves none is
left; a stressor in a container that restarted ended with it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.nodes import NodeShell
from chaoskit.agent import actions
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, FaultNotEffective, FaultUndoFailed, SpecError
from chaoskit.faults.base import Fault, FaultRecord
from chaoskit.faults.netns import COMMENT_PREFIX, STEP_TIMEOUT, PodProcess, locate_all, on_nodes
from chaoskit.faults.netrules import helper_path, helpers_snippet, start_helper_snippet, write_helpers
from chaoskit.faults.safety import check_selector

STRESSOR = "stress.py"
MAX_WORKERS = 64
MIB = 1 << 20
CPU_WINDOW_SECONDS = 1.0
CPU_WINDOWS = 3
"""CPU stress is measured over up to this many windows of CPU_WINDOW_SECONDS, until one shows the rise."""
CPU_RISE_SHARE = 0.25
"""The rise in the container's CPU use that proves CPU stress: this share of what could show. A quarter, not
more: on a node whose CPUs are all busy the stressor gets only its fair share of them."""
MEMORY_PROOF_SECONDS = 20.0
"""How long memory stress waits for the usage to rise (or for the OOM kill) before it is not effective."""


@dataclass(frozen=True)
class StressSpec:
    """How much CPU to burn and memory to hold, in which containers."""

    namespace: str
    selector: str
    cpu_workers: int = 0
    """Processes each keeping one CPU busy (0: no CPU stress)."""
    cpu_percent: int = 100
    """How busy each worker keeps its CPU, in 1-100."""
    memory_bytes: int = 0
    """Bytes to hold in the container (0: no memory stress); past its limit, the container is OOM-killed."""
    container: str | None = None
    """The container to stress (default: the pod's first container)."""
    count: int | None = 1
    """How many of the matching pods (None: every one, under the blast-radius cap)."""
    seed: int | None = None
    """Seed of the random pick."""

    def __post_init__(self) -> None:
        check_selector(self.selector)
        if not 0 <= self.cpu_workers <= MAX_WORKERS:
            raise SpecError(f"cpu_workers must be in 0-{MAX_WORKERS}, not {self.cpu_workers}")
        if not 1 <= self.cpu_percent <= 100:
            raise SpecError(f"cpu_percent must be in 1-100, not {self.cpu_percent}")
        if self.memory_bytes and not MIB <= self.memory_bytes <= 64 << 30:
            raise SpecError(f"memory_bytes must be 0 or in 1 MiB-64 GiB, not {self.memory_bytes}")
        if not self.cpu_workers and not self.memory_bytes:
            raise SpecError("nothing to stress: give cpu_workers, memory_bytes, or both")
        if self.count is not None and (isinstance(self.count, bool) or self.count < 1):
            raise SpecError(f"count must be at least 1 (or None for every matching pod), not {self.count!r}")


def read_stats(shell: NodeShell, process: PodProcess, over: float = 0.0) -> dict[str, float | None]:
    """The container's cgroup figures, read on its node by the stressor's own code (``--stats``); with
    ``over``, also its CPU use in cores over that many seconds and the node's busy share meanwhile."""
    command = ["python3", helper_path(STRESSOR), f"--stats={process.pid}", f"--over={over}"]
    output = nodes.check(shell, process.node, command, STEP_TIMEOUT + over)
    try:
        figures: dict[str, float | None] = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ClusterError(f"the cgroup figures of {process.pod} could not be read: {output[-200:]}") from None
    return figures


def cpu_rate(shell: NodeShell, process: PodProcess, seconds: float = CPU_WINDOW_SECONDS) -> tuple[float, float | None]:
    """The container's CPU use in cores over ``seconds``, from its cgroup's usage counter, and the share of
    its node's CPUs busy meanwhile (None: unknown). Both are sampled on the node."""
    figures = read_stats(shell, process, over=seconds)
    rate = figures.get("cpu_rate")
    if rate is None:
        raise ClusterError(f"{process.pod}'s cgroup shows no CPU usage counter")
    return rate, figures.get("node_busy")


def throttling(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The CFS throttling of a container between two readings of its cgroup, in words (empty where it has no
    CPU limit, or its cgroup no ``cpu.stat``): ``; throttled in 9 of 10 periods, 0.41 s waited (CPU limit 0.2)``."""
    if not after.get("cpu_quota"):
        return ""
    try:
        periods = after["cpu_periods"] - before["cpu_periods"]
        throttled = after["cpu_throttled_periods"] - before["cpu_throttled_periods"]
        waited = after["cpu_throttled_seconds"] - before["cpu_throttled_seconds"]
    except (KeyError, TypeError):  # a counter missing in either reading
        return ""
    return (
        f"; throttled in {throttled:.0f} of {periods:.0f} periods, {waited:.2f} s waited "
        f"(CPU limit {after['cpu_quota']:g})"
    )


def _busy(share: float | None) -> str:
    return f"; node CPUs {share:.0%} busy" if share is not None else ""


class Stress(Fault):
    kind = "stress"
    node_wide = True
    node_access = "runs stress processes in containers' cgroups from their node"
    spec: StressSpec
    _processes: list[PodProcess]
    _before: dict[PodProcess, dict[str, Any]]

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}{self.fault_id}"

    def nodes(self) -> list[str]:
        return sorted({p.node for p in self._processes})

    def plan(self) -> list[str]:
        spec = self.spec
        harm = "their container's cgroup is not theirs alone to stress"
        chosen = self.own_pid_pods(spec.namespace, spec.selector, spec.count, spec.seed, harm)
        self._processes = locate_all(self.cluster.node_shell, chosen, spec.container)
        write_helpers(self.cluster.node_shell, STRESSOR, sorted({p.node for p in self._processes}), "stress")
        self._before = {}
        for process in self._processes:
            figures: dict[str, Any] = dict(read_stats(self.cluster.node_shell, process))
            if spec.cpu_workers:
                figures["cpu_rate"] = cpu_rate(self.cluster.node_shell, process)[0]
            figures["restarts"] = self._restarts(process)
            self._before[process] = figures
        return [f"{p.pod}/{spec.container or 'first container'}@{p.node}" for p in self._processes]

    def _container_status(self, process: PodProcess) -> Any:
        pod: Any = self.kube.core.read_namespaced_pod(process.pod, process.namespace, _request_timeout=10)
        statuses = pod.status.container_statuses or []
        wanted = self.spec.container or pod.spec.containers[0].name
        return next((s for s in statuses if s.name == wanted), None)

    def _restarts(self, process: PodProcess) -> int:
        status = self._container_status(process)
        return int(status.restart_count) if status is not None else 0

    def _oom(self, process: PodProcess) -> bool:
        """Whether the container restarted since the plan, last terminated by the OOM killer."""
        status = self._container_status(process)
        if status is None or int(status.restart_count) <= self._before[process]["restarts"]:
            return False
        terminated = status.last_state.terminated if status.last_state else None
        return terminated is not None and terminated.reason == "OOMKilled"

    def _expect_oom(self, process: PodProcess) -> bool:
        figures = self._before[process]
        limit, used = figures.get("memory_limit"), figures.get("memory_bytes") or 0
        return bool(self.spec.memory_bytes and limit and used + self.spec.memory_bytes >= limit)

    def undo_data(self, targets: list[str]) -> dict[str, Any]:
        items = [{"node": p.node, "target": t} for p, t in zip(self._processes, targets, strict=True)]
        return {"comment": self.comment, "containers": items}

    def inject(self, targets: list[str]) -> None:
        spec = self.spec
        args = [f"--cpu-workers={spec.cpu_workers}", f"--cpu-percent={spec.cpu_percent}"]
        args.append(f"--memory-bytes={spec.memory_bytes}")

        def start(node: str, processes: list[PodProcess]) -> list[tuple[PodProcess, Any]]:
            results = []
            for p in processes:
                enter = ["nsenter", "-t", str(p.pid), "-p", "-n", "-i", "-u", "--"]
                snippet = start_helper_snippet(STRESSOR, [f"--join={p.pid}", *args], self.comment, prefix=enter)
                results.append((p, self.cluster.node_shell.run(node, ["bash", "-c", snippet], STEP_TIMEOUT)))
            return results

        groups: dict[str, list[PodProcess]] = {}
        for p in self._processes:
            groups.setdefault(p.node, []).append(p)
        for results in on_nodes(groups, start).values():
            for p, result in results:
                if result.code != 0 and not (self._expect_oom(p) and self._oom(p)):
                    raise FaultNotEffective(f"stress: starting the stressor in {p.pod} failed: {result.output[-300:]}")
        self._in_place_mono = time.monotonic()

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        spec = self.spec
        record.effect_mono = self._in_place_mono
        proofs = []
        for process in self._processes:
            before = self._before[process]
            parts = []
            if spec.memory_bytes:
                parts.append(self._memory_effect(process, before))
                if "OOM" in parts[-1]:
                    proofs.append(f"{process.pod}: {parts[-1]}")
                    continue
            if spec.cpu_workers:
                parts.append(self._cpu_effect(process, before))
            proofs.append(f"{process.pod}: {'; '.join(parts)}")
        return " | ".join(proofs)

    def _cpu_effect(self, process: PodProcess, before: dict[str, Any]) -> str:
        spec = self.spec
        asked = spec.cpu_workers * spec.cpu_percent / 100
        ceiling = min(asked, before.get("cpu_quota") or asked, before.get("cpus") or asked)
        during, busy, latest = -1.0, None, before
        for _ in range(CPU_WINDOWS):
            latest = read_stats(self.cluster.node_shell, process, over=CPU_WINDOW_SECONDS)
            rate, node_busy = latest.get("cpu_rate"), latest.get("node_busy")
            if rate is None:
                raise ClusterError(f"{process.pod}'s cgroup shows no CPU usage counter")
            if rate > during:
                during, busy = rate, node_busy
            if during - before["cpu_rate"] >= CPU_RISE_SHARE * ceiling:
                break
        else:
            raise FaultNotEffective(
                f"stress: {process.pod} used {before['cpu_rate']:.2f} CPU before and at most {during:.2f} during "
                f"{spec.cpu_workers} worker(s) at {spec.cpu_percent} % over {CPU_WINDOWS} x {CPU_WINDOW_SECONDS:g} s "
                f"(at most {ceiling:.2f} could show; {CPU_RISE_SHARE:.0%} of it is needed){_busy(busy)}"
            )
        return (
            f"CPU {before['cpu_rate']:.2f} -> {during:.2f} cores (asked {asked:g}, at most {ceiling:.2f} here)"
            f"{_busy(busy)}{throttling(before, latest)}"
        )

    def _memory_effect(self, process: PodProcess, before: dict[str, Any]) -> str:
        spec = self.spec
        expect_oom = self._expect_oom(process)
        deadline = time.monotonic() + MEMORY_PROOF_SECONDS
        used = before.get("memory_bytes") or 0
        now = used
        while time.monotonic() < deadline:
            if self._oom(process):
                limit = before.get("memory_limit") or 0
                return (
                    f"OOM-killed at its limit ({limit / MIB:.0f} MiB; {used / MIB:.0f} MiB used + "
                    f"{spec.memory_bytes / MIB:.0f} MiB held) and restarted"
                )
            if not expect_oom:
                now = read_stats(self.cluster.node_shell, process).get("memory_bytes") or 0
                if now - used >= 0.9 * spec.memory_bytes:
                    return f"memory {used / MIB:.0f} -> {now / MIB:.0f} MiB (held {spec.memory_bytes / MIB:.0f} MiB)"
            time.sleep(0.5)
        if expect_oom:
            raise FaultNotEffective(
                f"stress: {spec.memory_bytes / MIB:.0f} MiB more should pass {process.pod}'s memory limit, but no "
                f"OOM kill was seen in {MEMORY_PROOF_SECONDS:g} s"
            )
        raise FaultNotEffective(
            f"stress: {process.pod}'s memory went {used / MIB:.0f} -> {now / MIB:.0f} MiB, not up by "
            f"{spec.memory_bytes / MIB:.0f} MiB"
        )

    @classmethod
    def _nodes(cls, undo: dict[str, Any]) -> list[str]:
        return sorted({item["node"] for item in undo["containers"]})

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        stop = ["bash", "-c", helpers_snippet(str(undo["comment"]), stop=True)]
        for node in cls._nodes(undo):
            if cluster.node_shell.state(node) in ("exited", "missing"):
                continue
            result = cluster.node_shell.run(node, stop, STEP_TIMEOUT)
            if result.code != 0:
                raise FaultUndoFailed(f"ending the stressors on {node} failed: {result.output[-200:]}")

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {node: [actions.step("stop-helpers", comment=str(undo["comment"]))] for node in cls._nodes(undo)}

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        comment = str(undo["comment"])
        count = ["bash", "-c", helpers_snippet(comment)]
        running = []
        for node in cls._nodes(undo):
            if cluster.node_shell.state(node) in ("exited", "missing"):
                continue
            result = cluster.node_shell.run(node, count, STEP_TIMEOUT)
            found = re.search(r"helpers=(\d+)", result.output)
            if result.code != 0 or found is None:
                raise FaultUndoFailed(f"the stressors of {comment} could not be counted on {node}: {result.output}")
            if int(found.group(1)):
                running.append(f"{found.group(1)} on {node}")
        if running:
            raise FaultUndoFailed(f"stressors of {comment} still run: {', '.join(running)}")
        return f"no stressor of {comment} left on {', '.join(cls._nodes(undo))}"
