"""The injector agent: one per node, privileged, in the host's PID and network namespaces.

It has two jobs.

* **A shell on the node for the runner.** The runner execs bash scripts in
  this pod through the Kubernetes API (:mod:`chaoskit.adapters.nodes`); with
  the host's PID namespace they see every process of the node, and ``nsenter``
  enters a pod's network namespace. The agent's own process takes no part,
  except that at start it switches the image's iptables to the backend
  (legacy or nf_tables) the node's own rules use.
* **Faults that undo themselves.** Every active fault is a ConfigMap in
  ``chaoskit-system`` (label ``chaoskit.io/fault``), naming the Lease of the
  process that owns it (label ``chaoskit.io/owner``) and holding, per node, a
  bash script that undoes the fault there (``undo.NODE``). Every second this
  agent reads the fault objects and the Leases. When a fault has an undo
  script for this node and either its owner's Lease has not been renewed for
  its ``leaseDurationSeconds`` (the runner was killed, its machine is gone,
  its network cut) or was deleted, or the object asks for the undo
  (``undo-requested``), the agent runs the script and marks the object
  (``undone.NODE``: when, why, the exit status, the output's tail). A failing
  script is tried again every few seconds, its last failure kept in
  ``undo-failed.NODE``. A fault can also ask the agent to act, once
  (``inject.NODE``, answered in ``injected.NODE`` or ``inject-failed.NODE``),
  for what an exec cannot do: stopping the kubelet breaks the very exec that
  asked for it.

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
import time
from dataclasses import dataclass, field

from chaoskit.agent.kubeapi import ApiError, KubeApi, Obj

NAMESPACE = "chaoskit-system"
FAULT_LABEL = "chaoskit.io/fault"
OWNER_LABEL = "chaoskit.io/owner"
POLL_SECONDS = 1.0
RETRY_SECONDS = 5.0
SCRIPT_TIMEOUT = 120
OUTPUT_TAIL = 2000


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


def due(obj: Obj, node: str, leases: dict[str, Obj], clock: LeaseClock, at: float) -> tuple[str, str] | None:
    """(action, why) this agent owes the fault object ``obj`` now, or None.

    ``inject`` comes first, and never once the fault's undo is due: a fault whose
    owner is gone is not started.
    """
    data = obj.get("data") or {}
    undo_reason = None
    if f"undo.{node}" in data and f"undone.{node}" not in data:
        if "undo-requested" in data:
            undo_reason = f"its owner asked at {data['undo-requested']}"
        else:
            owner = (obj["metadata"].get("labels") or {}).get(OWNER_LABEL, "")
            undo_reason = clock.expired(owner, leases, at)
    if undo_reason:
        return "undo", undo_reason
    tried = f"injected.{node}" in data or f"inject-failed.{node}" in data or f"undone.{node}" in data
    if f"inject.{node}" in data and not tried:
        return "inject", "its owner asked"  # once: a failed inject is reported, never tried again later
    return None


def run_script(script: str) -> tuple[int, str]:
    try:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"ran over {SCRIPT_TIMEOUT} s"
    return done.returncode, (done.stdout + done.stderr)[-OUTPUT_TAIL:]


class Injector:
    def __init__(self, api: KubeApi, node: str) -> None:
        self.api = api
        self.node = node
        self.clock = LeaseClock()
        self.failed_at: dict[str, float] = {}

    def path(self, kind: str, name: str = "") -> str:
        group = "/apis/coordination.k8s.io/v1" if kind == "leases" else "/api/v1"
        return f"{group}/namespaces/{NAMESPACE}/{kind}" + (f"/{name}" if name else "")

    def step(self) -> None:
        selector = f"?labelSelector={FAULT_LABEL}"
        faults = self.api.list(self.path("configmaps") + selector).get("items") or []
        leases_list = self.api.list(self.path("leases")).get("items") or []
        at = time.monotonic()
        self.clock.observe(leases_list, at)
        leases = {lease["metadata"]["name"]: lease for lease in leases_list}
        for obj in faults:
            name = obj["metadata"]["name"]
            action = due(obj, self.node, leases, self.clock, at)
            if action is None:
                continue
            if at - self.failed_at.get(name, -RETRY_SECONDS) < RETRY_SECONDS:
                continue
            self.act(obj, *action)

    def act(self, obj: Obj, action: str, why: str) -> None:
        name = obj["metadata"]["name"]
        script = obj["data"][f"{action}.{self.node}"]
        print(f"{name}: {action} on {self.node}: {why}", flush=True)
        began = time.time()
        code, output = run_script(script)
        mark = {"at": now_text(), "began": began, "why": why, "code": code, "output": output}
        done_key = "undone" if action == "undo" else "injected"
        key = f"{done_key}.{self.node}" if code == 0 else f"{action}-failed.{self.node}"
        if code != 0:
            self.failed_at[name] = time.monotonic()
            print(f"{name}: {action} failed (exit {code}): {output[-300:]}", flush=True)
        else:
            self.failed_at.pop(name, None)
        try:
            self.api.patch(self.path("configmaps", name), {"data": {key: json.dumps(mark)}})
        except ApiError as exc:
            if exc.status != 404:  # 404: the owner settled it meanwhile
                raise


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


def main() -> None:
    node = os.environ["NODE_NAME"]
    backend = match_node_iptables()
    print(f"iptables backend: {backend}, as the node's own rules", flush=True)
    api = KubeApi()
    injector = Injector(api, node)
    print(f"chaoskit injector on {node}: watching fault objects in {NAMESPACE}", flush=True)
    while True:
        started = time.monotonic()
        try:
            injector.step()
        except Exception as exc:  # the API server restarting, a dropped connection: try again next round
            print(f"round failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
