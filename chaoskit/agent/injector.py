"""The injector agent: one per node, privileged, in the host's PID and network namespaces.

It has two jobs.

* **A shell on the node for the runner.** The runner execs commands in this
  pod through the Kubernetes API (:mod:`chaoskit.adapters.nodes`); with the
  host's PID namespace they see every process of the node, and ``nsenter``
  enters a pod's network namespace. Who may exec here is root on the node:
  that right is the runner's ClusterRole's (``chaoskit-runner``), never this
  agent's. At start the agent switches the image's iptables to the backend
  (legacy or nf_tables) the node's own rules use.
* **Faults that undo themselves.** Every active fault is a ``Fault`` object
  (``faults.chaoskit.io``) in ``chaoskit-system``, naming the Lease of the
  process that owns it and holding, per node, typed steps
  (:mod:`chaoskit.agent.actions`): what undoes it there, and, for the one
  fault an exec cannot do (stopping the kubelet breaks the very exec that
  would ask), what injects it. The agent watches the objects and the Leases
  (one LIST each at start, then watches: no polling of the API), and every
  second judges from what it holds. When a fault has undo steps for this
  node and either its owner's Lease has gone unrenewed for its
  ``leaseDurationSeconds`` or is gone, or the object asks for the undo
  (``spec.undoRequested``), the agent runs the steps and writes
  ``status.nodes.NODE.undone`` (when, why, what each step did). A failing
  step is tried again every few seconds, its last failure kept in
  ``undoFailed``.

**It runs nothing it was handed.** Each step is validated (kind, DNS-1123
names, integers, hex, the ``chaoskit:`` comment) and built into argument
vectors here; a record that does not validate is refused, with the reason in
``status.nodes.NODE.refused``, and nothing of it runs. An inject runs only for
a live owner, once, and never on a control-plane node (one that runs a
``kube-apiserver`` process) unless the record carries ``allowControlPlane``.
The agent's service account may read the objects and Leases and write the
objects' status, nothing else (see :mod:`chaoskit.cluster.injector`): it can
neither ask an agent for anything nor change what a record asks.

A Lease counts as expired by this agent's own clock: its ``renewTime`` has
not changed for longer than its duration since the agent first saw that
value, so clocks that differ between the runner and the node do not matter.
An agent that restarts starts its clocks again, which can delay an undo by one
lease duration, never hasten it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chaoskit.agent import actions
from chaoskit.agent.actions import Refused, Step, StepFailed
from chaoskit.agent.kubeapi import ApiError, KubeApi, Obj

NAMESPACE = "chaoskit-system"
GROUP = "chaoskit.io"
VERSION = "v1alpha1"
PLURAL = "faults"
OWNER_LABEL = "chaoskit.io/owner"
OWNER_LEASE_LABEL = "chaoskit.io/owner-lease"
TICK_SECONDS = 1.0
RETRY_SECONDS = 5.0
WATCH_SECONDS = 300
"""How long one watch runs before it is opened again (from where it ended: no new LIST)."""
OUTPUT_TAIL = 2000
DEFAULT_PROTECTED = ("kube-system", "chaoskit-system")


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class LeaseClock:
    """When this agent first saw each Lease's current renewTime (monotonic seconds)."""

    seen: dict[str, tuple[str, float]] = field(default_factory=dict)

    def observe(self, leases: list[Obj], at: float) -> None:
        current = {}
        for lease in leases:
            name = lease["metadata"]["name"]
            renewed = str(lease.get("spec", {}).get("renewTime") or lease["metadata"].get("resourceVersion"))
            before = self.seen.get(name)
            current[name] = before if before and before[0] == renewed else (renewed, at)
        self.seen = current

    def expired(self, name: str, leases: dict[str, Obj], at: float) -> str | None:
        """Why the owner Lease ``name`` counts as expired, or None while it is alive."""
        lease = leases.get(name)
        if lease is None:
            return f"its owner's lease {name} is gone"
        duration = float(lease.get("spec", {}).get("leaseDurationSeconds") or 15)
        _, since = self.seen.get(name, ("", at))
        if at - since > duration:
            holder = lease.get("spec", {}).get("holderIdentity", "?")
            return f"its owner's lease {name} ({holder}) was not renewed for {at - since:.0f} s (> {duration:g} s)"
        return None


@dataclass(frozen=True)
class Asked:
    """What one record asks of this node's agent, validated."""

    fault_id: str
    owner: str
    undo: list[Step]
    inject: list[Step]
    undo_requested: bool
    allow_control_plane: bool
    namespaces: tuple[str, ...]


def read_record(obj: Obj, node: str) -> Asked | None:
    """The validated asks of ``obj`` for ``node``; None when it has none here. Raises Refused."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise Refused("the record has no spec")
    fault_id = actions._name(spec.get("faultId"), "spec.faultId")
    owner = actions._name(spec.get("ownerLease"), "spec.ownerLease")
    nodes = spec.get("nodes")
    if not isinstance(nodes, dict):
        raise Refused("spec.nodes must be a mapping of node name to steps")
    if len(nodes) > 5000:
        raise Refused("spec.nodes: more than 5000 nodes")
    # The whole record is judged, not only this node's part: every agent refuses a bad record alike.
    steps: dict[str, tuple[list[Step], list[Step]]] = {}
    for name, asks in nodes.items():
        actions.check_node(name, "spec.nodes")
        if not isinstance(asks, dict) or set(asks) - {"undo", "inject"}:
            raise Refused(f"spec.nodes.{name} may hold only undo and inject")
        steps[name] = (
            actions.check_steps(asks.get("undo", []), actions.UNDO_OPS),
            actions.check_steps(asks.get("inject", []), actions.INJECT_OPS),
        )
    namespaces = spec.get("namespaces", [])
    if not isinstance(namespaces, list) or len(namespaces) > 1000:
        raise Refused("spec.namespaces must be a list")
    checked = tuple(actions._name(n, "spec.namespaces", actions.DNS_LABEL, 63) for n in namespaces)
    allow = spec.get("allowControlPlane", False)
    if not isinstance(allow, bool):
        raise Refused("spec.allowControlPlane must be true or false")
    if node not in steps:
        return None
    return Asked(
        fault_id=fault_id,
        owner=owner,
        undo=steps[node][0],
        inject=steps[node][1],
        undo_requested=bool(spec.get("undoRequested")),
        allow_control_plane=allow,
        namespaces=checked,
    )


@dataclass(frozen=True)
class Rules:
    """The agent's own judgement of an inject, whoever wrote the record."""

    protected: tuple[str, ...] = DEFAULT_PROTECTED
    control_plane: bool = False
    """Whether this node runs the control plane."""

    def refuse_inject(self, asked: Asked) -> str | None:
        hit = sorted(set(asked.namespaces) & set(self.protected))
        if hit:
            return f"namespace(s) {', '.join(hit)} are protected on this cluster"
        if self.control_plane and not asked.allow_control_plane:
            return "this node runs the control plane, and the record does not carry allowControlPlane"
        return None


def due(
    obj: Obj, node: str, leases: dict[str, Obj], clock: LeaseClock, at: float, rules: Rules = Rules()
) -> tuple[str, str, list[Step]] | None:
    """(action, why, steps) this agent owes the record ``obj`` now, or None.

    ``refuse`` (a record that does not validate, or an inject the agent's rules
    forbid) is owed once; the undo comes before an inject, and an inject never
    once the undo is due: a fault whose owner is gone is never started.
    """
    status = ((obj.get("status") or {}).get("nodes") or {}).get(node) or {}
    try:
        asked = read_record(obj, node)
    except Refused as exc:
        return None if "refused" in status else ("refuse", str(exc), [])
    if asked is None:
        return None
    undo_reason = None
    if asked.undo and "undone" not in status:
        if asked.undo_requested:
            undo_reason = f"its owner asked at {obj['spec']['undoRequested']}"
        else:
            undo_reason = clock.expired(asked.owner, leases, at)
    if undo_reason:
        return "undo", undo_reason, asked.undo
    tried = any(key in status for key in ("injected", "injectFailed", "undone", "refused"))
    if asked.inject and not tried:
        if clock.expired(asked.owner, leases, at) is not None or asked.owner not in clock.seen:
            return None  # no live owner: never started (its undo follows once the lease is judged expired)
        refusal = rules.refuse_inject(asked)
        if refusal:
            return "refuse", refusal, []
        return "inject", "its owner asked", asked.inject
    return None


def is_control_plane(node: actions.Node) -> bool:
    """Whether a ``kube-apiserver`` process runs on this node (read from ``/proc``; no API right needed)."""
    for pid in node.pids():
        try:
            with open(f"{node.proc}/{pid}/comm") as handle:
                if handle.read().strip() == "kube-apiserver":
                    return True
        except OSError:
            continue
    return False


class Cache:
    """A collection held current by one LIST and then watches (re-opened from the last resourceVersion)."""

    def __init__(self, api: KubeApi, path: str, counter: Counter) -> None:
        self.api, self.path, self.counter = api, path, counter
        self.items: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.lock = threading.Lock()

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.items.values())

    def run(self) -> None:
        while True:
            try:
                self.counter.add("list")
                listing = self.api.list(self.path)
                with self.lock:
                    self.items = {o["metadata"]["name"]: o for o in listing.get("items") or []}
                self.synced.set()
                version = listing["metadata"]["resourceVersion"]
                while True:
                    self.counter.add("watch")
                    ended = version
                    # Bookmarks keep the version current on a quiet collection, so the next watch starts from
                    # one the server still has (no 410, no new LIST).
                    for event in self.api.watch(self.path, version, WATCH_SECONDS, bookmarks=True):
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":  # 410 Gone: too old, list again
                            raise ApiError(int(obj.get("code", 410)), str(obj.get("message", "")))
                        if event.get("type") == "BOOKMARK":
                            ended = obj["metadata"].get("resourceVersion", ended)
                            continue
                        name = obj["metadata"]["name"]
                        with self.lock:
                            if event["type"] == "DELETED":
                                self.items.pop(name, None)
                            else:
                                self.items[name] = obj
                        ended = obj["metadata"].get("resourceVersion", ended)
                    version = ended
            except Exception as exc:  # the API server restarting, a dropped connection, 410: list again
                print(f"watch of {self.path} ended: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                time.sleep(1)


@dataclass
class Counter:
    """The agent's own API requests, by verb (printed every minute: the figure of its cost at rest)."""

    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, verb: str) -> None:
        with self.lock:
            self.counts[verb] = self.counts.get(verb, 0) + 1

    def take(self) -> dict[str, int]:
        with self.lock:
            counts, self.counts = self.counts, {}
            return counts


class Injector:
    def __init__(self, api: KubeApi, node: str, rules: Rules, where: actions.Node | None = None) -> None:
        self.api = api
        self.node = node
        self.rules = rules
        self.where = where or actions.Node()
        self.clock = LeaseClock()
        self.failed_at: dict[str, float] = {}
        self.counter = Counter()
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"
        self.records_path = base
        self.records = Cache(api, base, self.counter)
        self.leases = Cache(
            api,
            f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases?labelSelector={OWNER_LEASE_LABEL}",
            self.counter,
        )

    def start(self) -> None:
        for cache in (self.records, self.leases):
            threading.Thread(target=cache.run, daemon=True, name=f"watch-{cache.path[-12:]}").start()

    def step(self) -> None:
        if not (self.records.synced.is_set() and self.leases.synced.is_set()):
            return  # judge nothing before both are read: a Lease not yet seen is not a gone one
        at = time.monotonic()
        leases_list = self.leases.snapshot()
        self.clock.observe(leases_list, at)
        leases = {lease["metadata"]["name"]: lease for lease in leases_list}
        for obj in self.records.snapshot():
            name = obj["metadata"]["name"]
            owed = due(obj, self.node, leases, self.clock, at, self.rules)
            if owed is None or at - self.failed_at.get(name, -RETRY_SECONDS) < RETRY_SECONDS:
                continue
            if owed[0] == "undo" and not (obj.get("spec") or {}).get("undoRequested"):
                owner = str((obj.get("spec") or {}).get("ownerLease", ""))
                if not self.confirm_expired(owner, leases, at):
                    continue
            self.act(obj, *owed)

    def confirm_expired(self, owner: str, leases: dict[str, Obj], at: float) -> bool:
        """Whether the owner's Lease is expired by a fresh read, not only by the watch's copy.

        A watch cut off from the API server (this node partitioned, the API server paused) goes silent
        without an error, and its copy of a live owner's Lease then looks unrenewed: an undo judged from it
        would take a live run's fault away. So before an undo for an expired owner the agent reads the Lease
        itself: gone (404) or still unrenewed confirms it; a read that fails judges nothing this round.
        """
        self.counter.add("get")
        try:
            lease = self.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{owner}")
        except ApiError as exc:
            return exc.status == 404
        except Exception:  # unreachable: what it knows is too old to act on
            return False
        self.clock.observe([*(v for k, v in leases.items() if k != owner), lease], at)
        return self.clock.expired(owner, {**leases, owner: lease}, at) is not None

    def act(self, obj: Obj, action: str, why: str, steps: list[Step]) -> None:
        name = obj["metadata"]["name"]
        print(f"{name}: {action} on {self.node}: {why}", flush=True)
        began = time.time()
        done, failure = [], ""
        for item in steps:
            try:
                done.append(f"{item}: {actions.run_step(self.where, item)}")
            except (StepFailed, Refused) as exc:
                failure = f"{item}: {exc}"
                break
        mark: dict[str, Any] = {"at": now_text(), "began": began, "why": why, "steps": done[-50:]}
        if failure:
            mark["output"] = failure[-OUTPUT_TAIL:]
        if action == "refuse":
            key, mark = "refused", {"at": now_text(), "reason": why}
        elif failure:
            key = "undoFailed" if action == "undo" else "injectFailed"
            self.failed_at[name] = time.monotonic()
            print(f"{name}: {action} failed: {failure[-300:]}", flush=True)
        else:
            key = "undone" if action == "undo" else "injected"
            self.failed_at.pop(name, None)
        self.counter.add("patch")
        try:
            self.api.patch(f"{self.records_path}/{name}/status", {"status": {"nodes": {self.node: {key: mark}}}})
        except ApiError as exc:
            if exc.status != 404:  # 404: the owner settled it meanwhile
                raise
        if action == "refuse":
            self.failed_at[name] = time.monotonic()
            # the cache still holds the record without the mark until the watch brings it: remember it here
            status = obj.setdefault("status", {}).setdefault("nodes", {}).setdefault(self.node, {})
            status["refused"] = mark


def rule_count(command: str) -> int:
    try:
        done = subprocess.run([command], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("-A ") for line in done.stdout.splitlines()) if done.returncode == 0 else 0


def match_node_iptables() -> str:
    """Use the iptables backend the node itself uses (legacy or nf_tables), judged by which one holds the
    host's rules (kube-proxy's, the CNI's), as kind's iptables wrapper does: rules written through one are
    invisible to the other, and the undo and its proof must see what the node sees. Returns the backend."""
    if rule_count("iptables-legacy-save") > rule_count("iptables-nft-save"):
        for tool in ("iptables", "ip6tables"):
            subprocess.run(
                ["update-alternatives", "--set", tool, f"/usr/sbin/{tool}-legacy"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        return "legacy"
    return "nf_tables"


def protected_namespaces() -> tuple[str, ...]:
    """``kube-system``, ``chaoskit-system`` and those the admin lists in ``CHAOSKIT_PROTECTED_NAMESPACES``."""
    extra = [n.strip() for n in os.environ.get("CHAOSKIT_PROTECTED_NAMESPACES", "").split(",") if n.strip()]
    return tuple(dict.fromkeys([*DEFAULT_PROTECTED, *extra]))


def main() -> None:
    node = os.environ["NODE_NAME"]
    backend = match_node_iptables()
    print(f"iptables backend: {backend}, as the node's own rules", flush=True)
    where = actions.Node()
    rules = Rules(protected_namespaces(), is_control_plane(where))
    injector = Injector(KubeApi(), node, rules, where)
    injector.start()
    print(
        f"chaoskit injector on {node}: watching {PLURAL}.{GROUP} in {NAMESPACE}; protected namespaces: "
        f"{', '.join(rules.protected)}; control plane: {'yes' if rules.control_plane else 'no'}",
        flush=True,
    )
    minute = time.monotonic()
    while True:
        started = time.monotonic()
        try:
            injector.step()
        except Exception as exc:  # a failed status write: the record is judged again next round
            print(f"round failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if started - minute >= 60:
            counts = injector.counter.take()
            print(
                f"api requests in the last {started - minute:.0f} s: {json.dumps(counts, sort_keys=True)}", flush=True
            )
            minute = started
        time.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
