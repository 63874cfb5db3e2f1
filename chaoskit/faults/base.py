"""What every fault does: plan, record, inject, prove, undo.

A fault runs as a context manager (:meth:`Fault.active`), in this order:

1. **plan**: resolve the targets (pods, nodes) and check the spec and the
   safety rules. Anything wrong raises before the cluster is touched.
2. **record**: write the undo data to the ledger (write-ahead), so a killed
   process leaves enough behind for the sweeper.
3. **inject**, then **verify**: observe the effect from outside (the pod's UID
   gone, the node NotReady) and time it. A fault whose effect cannot be seen
   raises :class:`FaultNotEffective`; a test never trusts an unproven fault.
4. **undo** on the way out, whatever happened: success, failure, exception,
   Ctrl-C, SIGTERM (see :mod:`.signals`; a signal that arrives while the undo
   runs waits until it is done), then **prove the undo** by reading the state
   again (no rule with the fault's comment, the root qdisc not ours, the node
   Ready and schedulable), and only then settle the ledger entry. An undo that
   cannot be proven raises :class:`FaultUndoFailed` and leaves the entry
   unsettled, so ``chaoskit cleanup`` tries again; a read that fails is never
   taken for "nothing there".

In dry-run mode only step 1 runs, and the record says what would have happened.
Undo (``revert``) and its proof (``check_undone``) are class methods working
from the recorded data alone, so the sweeper can call them in another process,
long after the injecting one died; ``moot`` says when a fault's targets are
gone altogether (a deleted node), so its entry is settled instead of blocking
every later sweep.
"""

from __future__ import annotations

import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from chaoskit.adapters.kube import Kube
from chaoskit.adapters.shell import say
from chaoskit.cluster.base import Cluster
from chaoskit.errors import (
    ClusterError,
    CommandTimedOut,
    FaultNotEffective,
    FaultUndoFailed,
    FaultVetoed,
    SpecError,
)
from chaoskit.faults import objects, signals
from chaoskit.faults.safety import Safety
from chaoskit.state import leases, turns
from chaoskit.state.ledger import Ledger, LedgerEntry


@dataclass(frozen=True)
class FaultRound:
    """One round of a repeated fault."""

    targets: list[str]
    injected_at: float
    """Unix time of the round's injection."""
    inject_to_effect: float | None
    """Seconds until its effect was seen."""


@dataclass
class FaultRecord:
    """What a fault did, with timestamps (Unix for the journal, monotonic for durations)."""

    fault_id: str
    kind: str
    cluster: str
    spec: dict[str, Any]
    targets: list[str] = field(default_factory=list)
    dry_run: bool = False
    injected_at: float | None = None
    injected_mono: float | None = None
    effect: str | None = None
    effect_mono: float | None = None
    verified: bool = False
    reverted_mono: float | None = None
    reverted_at: float | None = None
    reverted: bool = False
    undoable: bool = True
    """False for faults with nothing to undo (a deleted pod is replaced by its controller)."""
    error: str | None = None
    rounds: list[FaultRound] = field(default_factory=list)
    """Every round of a repeated fault, the first included; empty for a one-shot fault."""
    max_share: float = 0.5
    """The blast-radius cap this fault was checked against."""
    max_share_raised: bool = False
    """Whether the fault set its own cap (``max_share=``) rather than the session's."""
    undo_proof: str | None = None
    """What the state read after the undo showed (the proof that it was undone)."""
    undo_error: str | None = None
    """Why the undo could not be proven; what it left may still be in place."""
    vetoed: str | None = None
    """Why a hook refused the fault before it acted (nothing was injected), if one did."""
    nodes: list[str] = field(default_factory=list)
    """The nodes it acted on, held against other runs' faults while it did (:mod:`chaoskit.state.locks`)."""
    lock_wait_s: float | None = None
    """Seconds the fault waited for its nodes while another run's faults held them (0 when it did not)."""
    deaths: dict[str, str] = field(default_factory=dict)
    """How each target died, as read from outside: target -> the signal its node sent, the exit codes and
    reasons its kubelet posted (faults that kill: pod and container kills, node failures)."""
    event_errors: list[str] = field(default_factory=list)
    """Kubernetes Events that could not be posted on the fault's targets (say, no right to create events)."""

    @property
    def inject_to_effect(self) -> float | None:
        """Seconds from the injection to its observed effect."""
        if self.injected_mono is None or self.effect_mono is None:
            return None
        return self.effect_mono - self.injected_mono

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inject_to_effect": self.inject_to_effect}


def how_it_ended(container: str, terminated: Any) -> str:
    """A container's end as its kubelet posted it (``state.terminated`` or ``lastState.terminated``), and
    what the exit code says of the signal: 128 + N is death by signal N."""
    if terminated is None:
        return f"{container}: no end posted"
    code = terminated.exit_code
    reason = f", {terminated.reason}" if terminated.reason else ""
    if code == 137:
        said = "killed by SIGKILL"
    elif code == 143:
        said = "ended by SIGTERM (no handler)"
    elif code == 0:
        said = "exited 0 (a clean shutdown)"
    elif code is not None and 128 < code < 160:
        said = f"ended by signal {code - 128}"
    else:
        said = "exited by its own hand"
    return f"{container}: exit {code}{reason} ({said})"


class FaultHooks:
    """Called at each step of every fault; subclass it and override what you need.

    The pytest plugin calls the ``pytest_chaoskit_fault_*`` hooks through one
    of these (see :mod:`chaoskit.hookspecs`); scripts pass their own to
    :class:`~chaoskit.Chaos`. An exception raised by a hook after the fault
    acted still undoes the fault.
    """

    def planned(self, record: FaultRecord) -> str | None:
        """The targets are chosen and nothing has acted yet: return a reason to veto the fault, or None."""
        return None

    def injected(self, record: FaultRecord) -> None:
        """The fault acted and its effect was seen (``record.effect``)."""

    def undone(self, record: FaultRecord) -> None:
        """The fault's undo is over: ``record.reverted`` when it was proven, else ``record.undo_error``
        says what may be left. Faults with nothing to undo (a killed pod) get it when their block ends."""


class Fault(ABC):
    """One fault kind. Subclasses implement plan, undo_data, inject, verify and revert."""

    kind: ClassVar[str]
    """The kind's one name, as :mod:`chaoskit.faults.catalog` lists it."""
    kind_only: ClassVar[str | None] = None
    """Why this fault needs a kind cluster, if it does (it acts through the node containers)."""
    node_wide: ClassVar[bool] = False
    """Whether the fault touches every pod of its nodes (a drain, CPU stress): then it holds its nodes alone
    even when runs may share nodes (``Safety.share_nodes``)."""
    node_access: ClassVar[str | None] = None
    """Why this fault runs commands on nodes, if it does: on kind Docker reaches them, anywhere else only
    the injector agent (:mod:`chaoskit.adapters.nodes`)."""
    hits_nodes: ClassVar[bool] = False
    """Whether the fault acts on whole nodes (a node failure, a drain): its Events go on the nodes, not on pods."""

    def __init__(self, cluster: Cluster, kube: Kube, spec: Any, safety: Safety | None = None) -> None:
        self.cluster = cluster
        self.kube = kube
        self.spec = spec
        """The fault's frozen spec dataclass."""
        self.safety = safety or Safety()
        self.max_share_raised = False
        """Whether :meth:`with_max_share` set this fault's own cap."""
        self.fault_id = f"{self.kind}-{uuid.uuid4().hex[:8]}"
        """Known before the fault starts (so a caller can look for it in the ledger whatever happens);
        marks every rule and object it touches."""
        self.hooks = FaultHooks()
        """Called at each step (:class:`FaultHooks`); :class:`~chaoskit.Chaos` sets its own."""
        self.hit_pods: tuple[str, ...] = ()
        """``namespace/name`` of the pods :meth:`choose` chose, recorded in the cluster for the blast-radius
        cap of faults that follow while this one holds."""
        self.hit_uids: dict[str, str] = {}
        """Each chosen pod's UID, as :meth:`choose` read it (its Events name it without reading the pod again)."""
        self.record: FaultRecord | None = None
        """The fault's record, once it has been planned (a vetoed fault's included)."""
        self.halted: Callable[[], bool] = lambda: False
        """Whether the run this fault belongs to was aborted: a repeated fault starts no further round.
        :class:`~chaoskit.Chaos` sets it."""

    def nodes(self) -> list[str]:
        """The nodes the planned fault acts on: it holds them against other runs' faults
        (:mod:`chaoskit.state.locks`). A fault kind that does not say holds every node."""
        return [n.metadata.name for n in self.kube.nodes()]

    def with_max_share(self, max_share: float | None) -> Fault:
        """Check this fault against its own blast-radius cap instead of the session's (shown in its record)."""
        if max_share is not None:
            self.safety = self.safety.with_max_share(max_share)
            self.max_share_raised = True
        return self

    @abstractmethod
    def plan(self) -> list[str]:
        """Resolve and check the targets; raise before anything is injected."""

    @abstractmethod
    def undo_data(self, targets: list[str]) -> dict[str, Any] | None:
        """What :meth:`revert` needs; None for faults with nothing to undo (a deleted pod)."""

    @abstractmethod
    def inject(self, targets: list[str]) -> None:
        """Act."""

    @abstractmethod
    def verify(self, targets: list[str], record: FaultRecord) -> str:
        """Wait until the effect is visible from outside; describe it. Raise FaultNotEffective if it is not."""

    @classmethod
    @abstractmethod
    def revert(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> None:
        """Undo from the recorded data alone; must be idempotent."""

    def live_pods(self, namespace: str, selector: str) -> list[Any]:
        """The pods a fault may target: not being deleted, in an allowed namespace, at least one."""
        self.safety.check_namespace(namespace)
        pods = [p for p in self.kube.pods(namespace, selector) if p.metadata.deletion_timestamp is None]
        if not pods:
            raise SpecError(f"selector {selector!r} matches no pod in namespace {namespace!r}")
        return pods

    def choose(self, pods: list[Any], count: int | None, seed: int | None, what: str) -> list[Any]:
        """``count`` of ``pods`` (all when None), checked against the blast-radius cap; chosen by ``seed``, from
        the pods no other active fault hits first."""
        wanted = len(pods) if count is None else count
        if wanted > len(pods):
            raise SpecError(f"count {wanted} is more than the {len(pods)} {what}")
        active = self.active_on(pods)
        self.safety.check_share(wanted, len(pods), what, active)
        held = {item for items in active.values() for item in items}
        ordered = sorted(pods, key=lambda p: p.metadata.name)
        free = [p for p in ordered if f"{p.metadata.namespace}/{p.metadata.name}" not in held]
        # Pods another active fault already hits are chosen last, as the cap counted them: a second fault on
        # a pod already cut or killed would take nothing more down, and could not prove its own effect.
        if wanted == len(pods):
            chosen = ordered
        elif wanted <= len(free):
            chosen = random.Random(seed).sample(free, wanted)
        else:
            rest = [p for p in ordered if p not in free]
            chosen = free + random.Random(seed).sample(rest, wanted - len(free))
        self.hit_pods = tuple(f"{p.metadata.namespace}/{p.metadata.name}" for p in chosen)
        self.hit_uids = {f"{p.metadata.namespace}/{p.metadata.name}": p.metadata.uid for p in chosen}
        return chosen

    def active_on(self, pods: list[Any]) -> dict[str, list[str]]:
        """The active faults recorded in the cluster (this run's and other runs') that hold any of ``pods``:
        fault id -> the pods it holds of them. A record all of whose agents undid it holds nothing."""
        pool = {f"{p.metadata.namespace}/{p.metadata.name}" for p in pods}
        held: dict[str, list[str]] = {}
        for found in objects.listed(self.kube):
            if found.nodes and set(found.undone_on) >= set(found.nodes):
                continue
            mine = sorted(pool & set(found.pods))
            if mine:
                held[found.fault_id] = mine
        return held

    def _judge_lapse(self, record: FaultRecord, lapse: float) -> None:
        """The owner lease went unrenewed past its duration while the fault was held: say what the record shows
        (which agent undid what, when and why), failing the fault when one did or when it cannot be told."""
        head = (
            f"{self.kind}: this process's owner lease went unrenewed for {lapse:.0f} s while the fault was held "
            f"(it lasts {leases.LEASE_SECONDS} s)"
        )
        try:
            found = objects.read(self.kube, record.fault_id)
        except ClusterError as exc:
            raise FaultNotEffective(
                f"{head}, and its record cannot be read ({exc}): whether an agent undid it "
                "early cannot be told, so what was measured meanwhile is not judged"
            ) from None
        marks = objects.node_marks(found, "undone")
        if not marks:
            nodes = ", ".join(sorted((found or {}).get("spec", {}).get("nodes", {}))) or "its nodes"
            say(f"{head}; its record shows no agent undid it (none of {nodes} marked it undone): it held throughout")
            return
        said = "; ".join(
            f"the agent on {node} undid it at {mark.get('at')} ({mark.get('why')})"
            for node, mark in sorted(marks.items())
        )
        raise FaultNotEffective(f"{head}: {said}; what was measured after that did not have the fault")

    def own_pid_pods(self, namespace: str, selector: str, count: int | None, seed: int | None, harm: str) -> list[Any]:
        """:meth:`choose` among the live pods that have a PID namespace of their own; a matching pod on its
        node's (hostPID) is refused, ``harm`` saying what the fault would do there."""
        pods = self.live_pods(namespace, selector)
        shared = [p.metadata.name for p in pods if p.spec.host_pid]
        if shared:
            raise SpecError(
                f"pods {', '.join(shared)} share the node's PID namespace (hostPID): {harm}; choose pods of their own"
            )
        return self.choose(pods, count, seed, f"pods matching {selector!r}")

    @classmethod
    def check_undone(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str:
        """Read the state again after :meth:`revert` and describe it; raise FaultUndoFailed if the fault
        is still (or may still be) in place. Faults with nothing to undo never get here."""
        raise NotImplementedError(f"{cls.__name__} does not prove its undo")

    @classmethod
    def moot(cls, cluster: Cluster, kube: Kube, undo: dict[str, Any]) -> str | None:
        """Why nothing is left to undo because the targets themselves are gone (a deleted node), or None."""
        return None

    @classmethod
    def agent_steps(cls, undo: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Per node, the typed steps (:mod:`chaoskit.agent.actions`) that undo this fault there: the injector
        agent runs them when the fault's owner is gone (:mod:`.objects`), building every command itself.
        Idempotent, like :meth:`revert`. Empty for faults the agent cannot undo on a node (an API change such
        as a cordon: ``chaoskit cleanup`` undoes those from the cluster's record)."""
        return {}

    def await_effect(
        self, record: FaultRecord, list_call: Any, done: Any, timeout: float, what: str, **kwargs: Any
    ) -> None:
        """Watch a collection until the effect shows; no effect is FaultNotEffective.

        Stamps the effect time unless an earlier, more direct observation already did.
        """
        try:
            self.kube.wait_for(list_call, done, timeout, what, **kwargs)
        except CommandTimedOut:
            raise  # the API server hung: that says nothing about the fault's effect
        except ClusterError as exc:
            raise FaultNotEffective(f"{self.kind}: {exc}") from None
        if record.effect_mono is None:
            record.effect_mono = time.monotonic()

    @contextmanager
    def active(self) -> Iterator[FaultRecord]:
        """Inject the fault for the duration of the block, proven, and always undone."""
        self.safety.check_cluster(self.cluster)
        if self.kind_only and not self.cluster.is_kind:
            raise SpecError(f"{self.kind} {self.kind_only}: it needs a kind cluster")
        if self.node_access and self.cluster.node_shell.name == "docker" and not self.cluster.is_kind:
            raise SpecError(
                f"{self.kind} {self.node_access}: on a cluster that is not kind only the injector agent reaches "
                f"nodes; install it ('chaoskit agent install') and use {self.safety.option('injector', 'agent')}"
            )
        record = FaultRecord(
            fault_id=self.fault_id,
            kind=self.kind,
            cluster=self.cluster.name,
            spec=asdict(self.spec),
            dry_run=self.safety.dry_run,
            max_share=self.safety.max_share,
            max_share_raised=self.max_share_raised,
        )
        record.targets = self.plan()
        self.record = record
        veto = self.hooks.planned(record)
        if veto:
            record.vetoed = veto
            raise FaultVetoed(f"{self.kind} of {', '.join(record.targets)} vetoed before it acted: {veto}")
        if self.safety.dry_run:
            if not self.safety.preflight:
                say(f"dry run: {self.kind} would hit {', '.join(record.targets)}")
            yield record
            return
        with (
            signals.held(),  # SIGTERM unwinds (the undo runs) while the fault is held, and only then
            leases.turns(self.cluster, self.kube).cluster_alone(
                self.kube, f"{self.kind} {self.fault_id}", waited=self._waited(record)
            )
            if self.node_wide
            else nullcontext(),
        ):
            yield from self._locked(record)

    def event_objects(self) -> list[tuple[Literal["Pod", "Node"], str, str | None, str | None]]:
        """What the fault's Events are about, as (kind, name, namespace, UID when known): the pods it chose, or
        for a fault on nodes (:attr:`hits_nodes`) the nodes it acts on."""
        if self.hits_nodes:
            return [("Node", node, None, None) for node in self.nodes()]
        return [("Pod", pod.split("/", 1)[1], pod.split("/", 1)[0], self.hit_uids.get(pod)) for pod in self.hit_pods]

    def announce(self, record: FaultRecord, reason: str, message: str) -> None:
        """A Kubernetes Event on each object the fault hit (reason ``ChaoskitFaultInjected`` once it is proven,
        ``ChaoskitFaultUndone`` once its undo is): chaos shows where SREs look, in ``kubectl describe`` and
        ``kubectl get events``. An Event that cannot be posted is noted in the record, never a failure."""
        for kind, name, namespace, uid in self.event_objects():
            try:
                self.kube.post_event(kind, name, namespace, reason, message, uid)
            except Exception as exc:  # the account may not create events: the fault stands all the same
                record.event_errors.append(f"{reason} on {kind} {namespace + '/' if namespace else ''}{name}: {exc}")
                return

    def _waited(self, record: FaultRecord) -> Callable[[float], None]:
        def add(seconds: float) -> None:
            record.lock_wait_s = (record.lock_wait_s or 0.0) + seconds

        return add

    def _locked(self, record: FaultRecord) -> Iterator[FaultRecord]:
        """Hold the planned fault's nodes against other runs' faults (planning again after a wait), then act."""
        held = set(self.nodes())
        while True:
            with leases.turns(self.cluster, self.kube).holding(
                self.kube,
                sorted(held),
                exclusive=self.node_wide or not self.safety.share_nodes,
                what=f"{self.kind} {self.fault_id}",
                waited=self._waited(record),
            ):
                record.nodes = sorted(held)
                if (record.lock_wait_s or 0.0) > 2 * turns.POLL_SECONDS:
                    # Another run's fault held the nodes meanwhile (a drain moves pods): plan again, and hold
                    # the nodes of the new plan too if it moved beyond them.
                    record.targets = self.plan()
                    moved = set(self.nodes()) - held
                    if moved:
                        held |= moved
                        continue
                yield from self._act(record)
                return

    def _act(self, record: FaultRecord) -> Iterator[FaultRecord]:
        """Record, inject and prove the planned fault; yield while it holds; always undo and prove the undo."""
        undo = self.undo_data(record.targets)
        record.undoable = undo is not None
        ledger = Ledger(self.cluster.name)
        if undo is not None:
            # The cluster's record first: if it cannot be written, nothing was recorded and nothing acts.
            objects.record(
                self.cluster,
                self.kube,
                record.fault_id,
                self.kind,
                undo,
                type(self).agent_steps(undo),
                namespaces=objects.namespaces_of(undo),
                pods=self.hit_pods,
                allow_control_plane=bool(getattr(self.safety, "allow_control_plane", False)),
            )
            ledger.record(LedgerEntry(record.fault_id, self.kind, self.cluster.name, undo, pods=self.hit_pods))
        try:
            record.injected_at = time.time()
            record.injected_mono = time.monotonic()
            self.inject(record.targets)
            record.effect = self.verify(record.targets, record)
            record.verified = True
            self.announce(record, "ChaoskitFaultInjected", f"{self.kind} {record.fault_id}: {record.effect}")
            self.hooks.injected(record)
            yield record
            lapse = leases.owner(self.cluster).lapsed_since(record.injected_mono) if undo is not None else None
            if lapse is not None:
                self._judge_lapse(record, lapse)
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            try:
                if undo is not None:
                    with signals.deferred(f"undoing {record.fault_id}"):
                        try:
                            record.undo_proof = undo_and_prove(
                                type(self), self.cluster, self.kube, record.fault_id, undo
                            )
                        except FaultUndoFailed as failed:
                            record.undo_error = str(failed)
                            raise
                        ledger.settle(record.fault_id)
                        objects.settle_or_warn(self.kube, record.fault_id)
                        record.reverted = True
                        record.reverted_mono = time.monotonic()
                        record.reverted_at = time.time()
                        self.announce(
                            record, "ChaoskitFaultUndone", f"{self.kind} {record.fault_id} undone: {record.undo_proof}"
                        )
            finally:
                self.hooks.undone(record)


def undo_and_prove(kind: type[Fault], cluster: Cluster, kube: Kube, fault_id: str, undo: dict[str, Any]) -> str:
    """Undo a fault from its recorded data and prove it by reading the state again; return the proof.

    Whatever goes wrong (the undo itself failing, a read that cannot see, a
    state that still shows the fault) is a FaultUndoFailed naming the fault and
    what may be left: the caller must not settle its ledger entry. Callers run
    it and the settling inside :func:`.signals.deferred`, so that no signal cuts
    either short.
    """
    try:
        kind.revert(cluster, kube, undo)
        return kind.check_undone(cluster, kube, undo)
    except FaultUndoFailed as exc:
        raise FaultUndoFailed(f"undo of {fault_id} not proven: {exc}") from None
    except Exception as exc:
        raise FaultUndoFailed(f"undo of {fault_id} not proven: {type(exc).__name__}: {exc}") from exc
