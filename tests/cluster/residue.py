"""An independent count of what faults can leave behind, for tests to assert on.

Nothing here uses chaoskit's own fault code (no ``netns``, no ``revert``): it runs the Docker CLI
and the official Kubernetes client by itself, so a bug in the code under test cannot hide its own
residue. It scans, on every node of the cluster, the node's own network namespace and every running
container's (deduplicated by inode): iptables rules (filter, mangle and nat tables; IPv6's filter) whose comment
starts with ``chaoskit:`` and root qdiscs of ``eth0`` that are ``tbf`` or ``netem``; on the node,
processes with a ``--tag=chaoskit:...`` argument (the latency delayer, the DNS responder, the HTTP
proxy, the stressor, a node partition's dead-man timer) and disk-fill files (``.chaoskit-fill-*``)
in containers' roots and pods' volumes; processes stopped by a signal (state ``T``, what a process
freeze leaves); kubelets that systemd does not report active; and nodes that are unschedulable or
whose container is not running. Apart from the state, it lists the fault records left in
``chaoskit-system`` (``faults.chaoskit.io`` objects), which are bookkeeping, not faults.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from kubernetes import client, config

# iptables -S, not iptables-save: a test shadows iptables-save to make chaoskit's own undo fail.
SCAN = r"""
seen=" "
for pid in 1 $(ctr -n k8s.io task ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" {print $2}'); do
    ino=$(stat -L -c %i /proc/$pid/ns/net 2>/dev/null) || continue
    case "$seen" in *" $ino "*) continue;; esac
    seen="$seen$ino "
    nsenter -t $pid -n iptables -w -S 2>/dev/null | grep -e '--comment "\?chaoskit:' | sed "s|^|rule $ino |"
    nsenter -t $pid -n ip6tables -w -S 2>/dev/null | grep -e '--comment "\?chaoskit:' | sed "s|^|rule $ino ipv6 |"
    nsenter -t $pid -n iptables -w -t mangle -S 2>/dev/null | grep -e '--comment "\?chaoskit:' \
        | sed "s|^|rule $ino mangle |"
    nsenter -t $pid -n iptables -w -t nat -S 2>/dev/null | grep -e '--comment "\?chaoskit:' \
        | sed "s|^|rule $ino nat |"
    nsenter -t $pid -n tc qdisc show dev eth0 root 2>/dev/null | grep -E '^qdisc (tbf|netem)' | sed "s|^|qdisc $ino |"
done
for pid in $(ctr -n k8s.io task ls 2>/dev/null | awk 'NR > 1 && $3 == "RUNNING" {print $2}'); do
    for f in /proc/$pid/root/.chaoskit-fill-* /proc/$pid/root/*/.chaoskit-fill-*; do [ -e "$f" ] && echo "fill $f"; done
done
find /var/lib/kubelet/pods -name '.chaoskit-fill-*' 2>/dev/null | sed "s|^|fill |"
ps -eo stat=,pid=,comm= | awk '$1 ~ /^T/ {print "stopped " $2 " " $3}'
for f in $(grep -lzxE -e '--tag=(chaoskit:.+)' /proc/[0-9]*/cmdline 2>/dev/null); do
    echo "helper $(echo $f | cut -d/ -f3) $(tr '\0' ' ' < $f)"
done
echo "kubelet $(systemctl is-active kubelet)"
echo scanned
"""


@dataclass
class Residue:
    rules: list[str] = field(default_factory=list)
    """``node inode rule`` for every chaoskit-commented iptables rule."""
    qdiscs: list[str] = field(default_factory=list)
    """``node inode qdisc ...`` for every tbf/netem root qdisc."""
    unschedulable: list[str] = field(default_factory=list)
    not_running: list[str] = field(default_factory=list)
    """Node containers that are not running (``name: state``)."""
    not_ready: list[str] = field(default_factory=list)
    """Nodes whose Ready condition is not True."""
    fills: list[str] = field(default_factory=list)
    """``node path`` of every disk-fill file (``.chaoskit-fill-*``) in a container's root or a pod's volumes."""
    helpers: list[str] = field(default_factory=list)
    """``node pid command line`` of every process started for a fault (tagged ``--tag=chaoskit:...``)."""
    stopped: list[str] = field(default_factory=list)
    """``node pid command`` of every process stopped by a signal (state T)."""
    kubelets_down: list[str] = field(default_factory=list)
    """``node: state`` of every running node whose kubelet systemd does not report active."""
    fault_records: list[str] = field(default_factory=list)
    """Names of the fault records (ConfigMaps) in chaoskit-system; not counted by :meth:`empty`."""

    def empty(self) -> bool:
        return not (
            self.rules
            or self.qdiscs
            or self.unschedulable
            or self.not_running
            or self.not_ready
            or self.stopped
            or self.helpers
            or self.fills
            or self.kubelets_down
        )

    def of(self, fault_id: str) -> list[str]:
        """The rules carrying this fault's comment."""
        return [r for r in self.rules if f"chaoskit:{fault_id}" in r]

    def helpers_of(self, fault_id: str) -> list[str]:
        """The processes started for this fault."""
        return [h for h in self.helpers if f"--tag=chaoskit:{fault_id}" in h.split()]


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def scan(cluster_name: str, kubeconfig: str | None = None) -> Residue:
    """Scan the whole kind cluster ``cluster_name`` (or ``kind-NAME``, its context's name, as the ``existing``
    provider names it)."""
    residue = Residue()
    names: list[str] = []
    for candidate in dict.fromkeys([cluster_name, cluster_name.removeprefix("kind-")]):
        label = f"label=io.x-k8s.kind.cluster={candidate}"
        names = _docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
        if names:
            break
    assert names, f"no node containers of kind cluster {cluster_name}: nothing to scan"
    for node in names:
        state = _docker("inspect", "-f", "{{.State.Status}}{{if .State.Paused}}/paused{{end}}", node).stdout.strip()
        if state != "running":
            residue.not_running.append(f"{node}: {state}")
            continue
        result = _docker("exec", node, "bash", "-c", SCAN, timeout=120)
        assert result.returncode == 0 and "scanned" in result.stdout, f"scan of {node} failed: {result.stderr}"
        for line in result.stdout.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "rule":
                residue.rules.append(f"{node} {rest}")
            elif kind == "qdisc":
                residue.qdiscs.append(f"{node} {rest}")
            elif kind == "fill":
                residue.fills.append(f"{node} {rest}")
            elif kind == "helper":
                residue.helpers.append(f"{node} {rest}")
            elif kind == "stopped":
                residue.stopped.append(f"{node} {rest}")
            elif kind == "kubelet" and rest != "active":
                residue.kubelets_down.append(f"{node}: {rest}")
    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        core = client.CoreV1Api(api)
        try:
            listing = client.CustomObjectsApi(api).list_namespaced_custom_object(
                "chaoskit.io", "v1alpha1", "chaoskit-system", "faults", _request_timeout=30
            )
            residue.fault_records = [r["metadata"]["name"] for r in listing.get("items") or []]
        except client.exceptions.ApiException as exc:
            if exc.status != 404:  # 404: no Fault CRD yet, so no record
                raise
        for node in core.list_node(_request_timeout=30).items:
            if node.spec.unschedulable:
                residue.unschedulable.append(node.metadata.name)
            ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
            if ready != ["True"]:
                residue.not_ready.append(node.metadata.name)
    finally:
        api.close()
    return residue


def lock_holds(kubeconfig: str | None = None) -> list[str]:
    """Every hold listed on chaoskit's lock Leases in ``chaoskit-system`` (label ``chaoskit.io/lock``), as
    ``LEASE: OWNER MODE``, read with the official client and parsed here: what runs that ended left held."""
    import json

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        leases = client.CoordinationV1Api(api).list_namespaced_lease(
            "chaoskit-system", label_selector="chaoskit.io/lock", _request_timeout=30
        )
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return []
        raise
    finally:
        api.close()
    holds = []
    for lease in leases.items:
        listed = json.loads((lease.metadata.annotations or {}).get("chaoskit.io/holders") or "{}")
        holds += [f"{lease.metadata.name}: {owner} {hold.get('mode')}" for owner, hold in listed.items()]
    return holds
