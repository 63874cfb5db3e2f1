"""Pod kill: delete pods chosen by a label selector, and prove they are gone.

Two ways to die, and the record says which one was asked:

* **Graceful** (the default): an API delete with ``grace_seconds``. The kubelet
  sends SIGTERM to every container's main process, then SIGKILL once the
  grace period has passed. With 0 asked, SIGTERM still comes first, and a
  process that ignores it is dead 1.93-2.04 s later (15 runs on Kubernetes
  1.20 of ``tests/cluster/test_pod_crash.py``: the kubelet gives at least
  2 s). A process that acts on SIGTERM at once (an etcd leader handing its
  leadership over, which takes milliseconds) gets its chance.
* **Crash** (``crash=True``): every process of every running container of
  the pod gets SIGKILL from its node (one ``kill -KILL`` per node, as argument
  vectors, through Docker or the injector agent), with no SIGTERM first, as an
  OOM kill, a kernel panic or a power loss would leave it; then the pod object
  is force-deleted (grace 0) so its controller replaces it. The proof: none of
  the killed processes is left on the node, and the pod's UID has left the API.
  Not modelled: the pod's network namespace (its sandbox) ends with the force
  delete, not with the processes, and the node itself lives on. Between the
  SIGKILL and the force delete the kubelet may restart a container in place
  (in 8 of 15 runs of the test above); that second instance is then stopped
  as any deleted pod's containers are, SIGTERM first and SIGKILL only after
  the pod's own termination grace (dead 31.4-32.9 s after it started, with a
  30 s grace), so for that long it runs beside the replacement.

Nothing is undone: the workload's controller replacing the pod *is* the
recovery under test. The proof is that every killed pod's UID has left the API
(a replacement may reuse the name, as StatefulSet pods do, but never the UID).

A repeated kill (``rounds`` > 1) kills once on entry, proven as above, then
again every ``interval_seconds`` from a background thread while the block runs,
choosing afresh among the live pods each time. Leaving the block stops the
rounds; a round that fails is raised when the block ends.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultNotEffective, SpecError
from chaoskit.faults.base import Fault, FaultRecord, FaultRound, how_it_ended
from chaoskit.faults.netns import (
    STEP_TIMEOUT,
    container_listing,
    container_processes,
    find_containers_script,
    on_nodes,
)
from chaoskit.faults.safety import check_selector

PICKS = ("random", "oldest")
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class PodKillSpec:
    """Which pods to kill and how."""

    namespace: str
    """The namespace of the pods."""
    selector: str
    """A label selector such as ``app=web``; empty is refused (it would mean every pod)."""
    count: int | None = None
    """How many pods to kill (default 1 when ``percent`` is not given)."""
    percent: float | None = None
    """Or: this share of the matching pods, rounded up."""
    grace_seconds: int = 0
    """Termination grace period of the API delete: SIGTERM, then SIGKILL after it (with 0, about 0.1 s after).
    Not used with ``crash``."""
    crash: bool = False
    """SIGKILL every process of the pod from its node, with no SIGTERM first, then force-delete the pod."""
    pick: str = "random"
    """``random`` or ``oldest``."""
    seed: int | None = None
    """Seed of the random pick, to replay a run."""
    names: tuple[str, ...] = ()
    """Kill exactly these pods (they must match the selector), such as a database's current leader.
    The blast-radius cap still counts them against every pod the selector matches."""
    rounds: int = 1
    """How many times to kill: 1 is one shot; more repeat while the block runs."""
    interval_seconds: float = 0
    """Seconds between the rounds of a repeated kill."""

    def __post_init__(self) -> None:
        if not self.namespace:
            raise SpecError("pod kill needs a namespace")
        check_selector(self.selector)
        if self.count is not None and self.percent is not None:
            raise SpecError("give either count or percent, not both")
        if isinstance(self.names, str):
            raise SpecError(f"names must be a list of pod names, not the string {self.names!r}")
        object.__setattr__(self, "names", tuple(self.names))
        if self.names and (self.count is not None or self.percent is not None):
            raise SpecError("give names, or count/percent, not both")
        if self.count is not None and self.count < 1:
            raise SpecError(f"count must be at least 1, not {self.count}")
        if self.percent is not None and not 0 < self.percent <= 100:
            raise SpecError(f"percent must be in (0, 100], not {self.percent}")
        if self.grace_seconds < 0:
            raise SpecError(f"grace_seconds must be 0 or more, not {self.grace_seconds}")
        if self.pick not in PICKS:
            raise SpecError(f"pick must be one of {', '.join(PICKS)}, not {self.pick!r}")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise SpecError(f"rounds must be in 1-{MAX_ROUNDS}, not {self.rounds}")
        if self.crash and self.grace_seconds:
            raise SpecError("a crash gives no grace period: drop grace_seconds, or crash")
        if self.rounds > 1 and not 0 < self.interval_seconds <= 3600:
            raise SpecError(f"a repeated kill needs interval_seconds in (0, 3600], not {self.interval_seconds}")

    def how_many(self, matching: int) -> int:
        if self.names:
            return len(self.names)
        if self.percent is not None:
            return max(1, math.ceil(matching * self.percent / 100))
        return self.count or 1


class PodKill(Fault):
    kind = "pod-kill"

    spec: PodKillSpec
    _uids: dict[str, str]
    _nodes: list[str]
    _processes: dict[str, list[tuple[str, list[int]]]]
    _containers: dict[str, dict[str, str]]
    """Pod name -> its containers' IDs -> their names."""
    """With ``crash``: per node, (container ID, every pid of that container) of the chosen pods."""

    def plan(self) -> list[str]:
        spec = self.spec
        pods = self.live_pods(spec.namespace, spec.selector)
        wanted = spec.how_many(len(pods))
        if wanted > len(pods):
            raise SpecError(f"count {wanted} is more than the {len(pods)} pods matching {spec.selector!r}")
        self.safety.check_share(wanted, len(pods), f"pods matching {spec.selector!r}", self.active_on(pods))
        if spec.names:
            by_name = {p.metadata.name: p for p in pods}
            missing = [n for n in spec.names if n not in by_name]
            if missing:
                raise SpecError(
                    f"pods {', '.join(missing)} are not live pods matching {spec.selector!r} in {spec.namespace!r}"
                )
            chosen = [by_name[n] for n in spec.names]
        elif spec.pick == "oldest":
            chosen = sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))[:wanted]
        else:
            chosen = random.Random(spec.seed).sample(sorted(pods, key=lambda p: p.metadata.name), wanted)
        self._uids = {p.metadata.name: p.metadata.uid for p in chosen}
        self._processes = container_processes(self.cluster.node_shell, chosen) if spec.crash else {}
        self._containers = (
            {
                p.metadata.name: {
                    s.container_id.split("://", 1)[1]: s.name
                    for s in p.status.container_statuses or []
                    if s.container_id
                }
                for p in chosen
            }
            if spec.crash
            else {}
        )
        # Later rounds pick among the replacements, wherever they were scheduled: those hold every node.
        self._nodes = sorted({p.spec.node_name for p in chosen if p.spec.node_name})
        return sorted(self._uids)

    def nodes(self) -> list[str]:
        return super().nodes() if self.spec.rounds > 1 else self._nodes

    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        return None

    def inject(self, targets: list[str]) -> None:
        if self.spec.crash:
            self._crash(targets)
            return
        self.kube.delete_pods(self.spec.namespace, targets, self.spec.grace_seconds)

    def _crash(self, targets: list[str]) -> None:
        """SIGKILL every process of the pods from their nodes (the nodes in parallel), then force-delete them."""

        def kill(node: str, pids: list[int]) -> None:
            result = self.cluster.node_shell.run(node, ["kill", "-KILL", *map(str, pids)], STEP_TIMEOUT)
            # kill fails for a process that ended meanwhile; the proof below counts what is left.
            if result.code != 0 and "No such process" not in result.output:
                raise FaultNotEffective(f"SIGKILL on node {node} failed (exit {result.code}): {result.output[-300:]}")

        on_nodes({n: [pid for _, pids in items for pid in pids] for n, items in self._processes.items()}, kill)
        self.kube.delete_pods(self.spec.namespace, targets, 0)

    def _crash_proof(self) -> str:
        """How the crashed pods died, read again from their nodes (in parallel): no killed process is left."""

        def alive(node: str, items: list[tuple[str, list[int]]]) -> list[int]:
            script = find_containers_script([cid for cid, _ in items])
            still = {
                pid
                for procs in container_listing(
                    nodes.check(self.cluster.node_shell, node, ["bash", "-c", script], STEP_TIMEOUT)
                ).values()
                for pid, _, _ in procs
            }
            return sorted({pid for _, pids in items for pid in pids} & still)

        counted = sum(len(pids) for items in self._processes.values() for _, pids in items)
        left = [f"{pid} on {node}" for node, pids in on_nodes(self._processes, alive).items() for pid in pids]
        if left:
            raise FaultNotEffective(f"pod crash: processes still alive after SIGKILL: {', '.join(left)}")
        return f"SIGKILL from the node to {counted} process(es), no SIGTERM first; none left"

    def verify(self, targets: list[str], record: FaultRecord) -> str:
        uids = set(self._uids.values())
        last: dict[str, Any] = {}  # uid -> the pod as last seen before it left: its containers' ends

        def gone(pods: dict[str, Any]) -> bool:
            for pod in pods.values():
                if pod.metadata.uid in uids:
                    last[pod.metadata.uid] = pod
            return not uids & {p.metadata.uid for p in pods.values()}

        self.await_effect(
            record,
            self.kube.core.list_namespaced_pod,
            gone,
            self.spec.grace_seconds + 60,
            f"killed pods {', '.join(targets)} to leave the API",
            namespace=self.spec.namespace,
        )
        if self.spec.crash:
            proof = self._crash_proof()
            killed = {cid: len(pids) for items in self._processes.values() for cid, pids in items}
            for name in targets:
                each = [f"{c}: {killed[cid]} process(es)" for cid, c in self._containers[name].items() if cid in killed]
                record.deaths[name] = (
                    f"SIGKILL from its node, no SIGTERM first ({'; '.join(each)}), none left; "
                    "then force-deleted (grace 0)"
                )
            return f"pods {', '.join(targets)} crashed: {proof}; force-deleted (grace 0), UIDs gone"
        for name, uid in self._uids.items():
            statuses = getattr(getattr(last.get(uid), "status", None), "container_statuses", None) or []
            ends = [c.state.terminated if c.state else None for c in statuses]
            if any(ends):
                said = "; ".join(how_it_ended(c.name, end) for c, end in zip(statuses, ends, strict=True))
            elif self.spec.grace_seconds == 0:
                said = (
                    "the API removed the object at once, and its kubelet stopped the containers afterwards, "
                    "SIGTERM first: their ends were never posted"
                )
            else:
                said = "it left the API before its containers' ends were posted"
            record.deaths[name] = f"API delete, grace {self.spec.grace_seconds} s (SIGTERM first); {said}"
        return (
            f"pods {', '.join(targets)} deleted with grace {self.spec.grace_seconds} s (SIGTERM, then SIGKILL after "
            "the grace the kubelet applies); their UIDs are gone"
        )

    @classmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        """Nothing to undo: the controller's replacement is the recovery being measured."""

    @contextmanager
    def active(self) -> Iterator[FaultRecord]:
        with super().active() as record:
            if self.spec.rounds == 1 or record.dry_run:
                yield record
                return
            record.rounds.append(FaultRound(record.targets, record.injected_at or 0.0, record.inject_to_effect))
            rounds = _Rounds(self, record)
            rounds.start()
            try:
                yield record
            finally:
                rounds.stop()
            if rounds.error is not None:
                raise rounds.error

    def kill_once(self) -> FaultRound:
        """One more round: choose, kill, prove."""
        record = FaultRecord(self.fault_id, self.kind, self.cluster.name, spec={})
        record.targets = self.plan()
        record.injected_at = time.time()
        record.injected_mono = time.monotonic()
        self.inject(record.targets)
        self.verify(record.targets, record)
        return FaultRound(record.targets, record.injected_at, record.inject_to_effect)


class _Rounds(threading.Thread):
    """The later rounds of a repeated kill, until they are done or the block ends."""

    def __init__(self, fault: PodKill, record: FaultRecord) -> None:
        super().__init__(name=f"{fault.fault_id}-rounds", daemon=True)
        self.fault = fault
        self.record = record
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        spec = self.fault.spec
        for _ in range(spec.rounds - 1):
            if self.stopping.wait(spec.interval_seconds):
                return
            if self.fault.halted():  # the run was aborted (a stop condition, chaoskit abort): no more rounds
                return
            try:
                self.record.rounds.append(self.fault.kill_once())
            except Exception as exc:  # handed to the test's thread when the block ends
                self.error = exc
                self.record.error = f"round {len(self.record.rounds) + 1}: {type(exc).__name__}: {exc}"
                return

    def stop(self) -> None:
        self.stopping.set()
        # A round under way finishes (its proof is bounded by the grace period plus a minute).
        self.join(timeout=self.fault.spec.grace_seconds + 90)
