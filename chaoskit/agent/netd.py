"""Pod networking for kind clusters that have no kindnetd image.

One instance runs on every node (a host-network DaemonSet). It keeps two
things true, from the Node objects:

* this node's CNI configuration: a ``bridge`` on the node's ``spec.podCIDR``
  with ``host-local`` IPAM and ``portmap``, written atomically to
  ``/etc/cni/net.d``;
* a route to every other node's podCIDR via that node's InternalIP. The routes
  carry their own routing-protocol number, so routes to nodes that left are
  found and removed without touching anything else.

A node container that is stopped and started again gets a fresh network
namespace (its routes are gone) and may get a new address; the agent on it
restarts with the node and rewrites its routes, and the agents on the other
nodes see the changed address through their watch and follow it.

Pod-to-pod traffic is not masqueraded, so pods see each other's real
addresses (the partition faults rely on that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from chaoskit.agent.kubeapi import KubeApi, Obj

ROUTE_PROTOCOL = "201"
"""The routing-protocol number that marks routes this agent owns."""
CNI_FILE = "10-chaoskit.conflist"
RESYNC_SECONDS = 30


def cni_config(pod_cidr: str) -> Obj:
    """The CNI configuration list of a node whose pods live in ``pod_cidr``."""
    return {
        "cniVersion": "0.4.0",
        "name": "chaoskit",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def internal_ip(node: Obj) -> str | None:
    """The node's InternalIP address, if it has reported one."""
    for address in node.get("status", {}).get("addresses", []):
        if address.get("type") == "InternalIP":
            return str(address["address"])
    return None


def desired_routes(nodes: list[Obj], self_name: str) -> dict[str, str]:
    """Map each other node's podCIDR to the address to route it through."""
    routes: dict[str, str] = {}
    for node in nodes:
        name = node["metadata"]["name"]
        cidr = node.get("spec", {}).get("podCIDR")
        address = internal_ip(node)
        if name != self_name and cidr and address:
            routes[cidr] = address
    return routes


def own_cidr(nodes: list[Obj], self_name: str) -> str | None:
    """This node's podCIDR, once the controller manager has assigned it."""
    for node in nodes:
        if node["metadata"]["name"] == self_name:
            cidr = node.get("spec", {}).get("podCIDR")
            return str(cidr) if cidr else None
    return None


def parse_routes(output: str) -> dict[str, str]:
    """Parse ``ip -4 route show proto N`` into {destination: gateway}."""
    routes: dict[str, str] = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "via":
            routes[words[0]] = words[2]
    return routes


class NetworkAgent:
    """Reconciles this node's CNI config and routes with the Node list."""

    def __init__(self, api: KubeApi, node_name: str, cni_dir: Path) -> None:
        self.api = api
        self.node_name = node_name
        self.cni_dir = cni_dir
        self.nodes: dict[str, Obj] = {}

    def reconcile(self) -> None:
        nodes = list(self.nodes.values())
        cidr = own_cidr(nodes, self.node_name)
        if cidr:
            self._write_cni(cidr)
        want = desired_routes(nodes, self.node_name)
        have = parse_routes(_ip("-4", "route", "show", "proto", ROUTE_PROTOCOL))
        for dest, via in want.items():
            if have.get(dest) != via:
                _ip("route", "replace", dest, "via", via, "proto", ROUTE_PROTOCOL)
                log(f"route {dest} via {via}")
        for dest in set(have) - set(want):
            _ip("route", "del", dest, "proto", ROUTE_PROTOCOL)
            log(f"removed route {dest}")

    def _write_cni(self, cidr: str) -> None:
        text = json.dumps(cni_config(cidr), indent=2) + "\n"
        target = self.cni_dir / CNI_FILE
        if target.exists() and target.read_text() == text:
            return
        self.cni_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cni_dir / f".{CNI_FILE}.tmp"
        tmp.write_text(text)
        tmp.rename(target)
        log(f"wrote {target} for podCIDR {cidr}")

    def run(self) -> None:
        _enable_bridge_netfilter()
        while True:
            listing = self.api.list("/api/v1/nodes")
            self.nodes = {n["metadata"]["name"]: n for n in listing["items"]}
            self.reconcile()
            version = listing["metadata"]["resourceVersion"]
            for event in self.api.watch("/api/v1/nodes", version, RESYNC_SECONDS):
                node = event.get("object", {})
                name = node.get("metadata", {}).get("name")
                if event.get("type") == "ERROR" or not name:
                    break
                if event["type"] == "DELETED":
                    self.nodes.pop(name, None)
                else:
                    self.nodes[name] = node
                self.reconcile()


def _enable_bridge_netfilter() -> None:
    # Service traffic between two pods on one bridge must pass iptables, or
    # kube-proxy's DNAT is never undone on the reply.
    path = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    try:
        path.write_text("1\n")
    except OSError as exc:
        log(f"cannot enable {path}: {exc} (same-node Service traffic may fail)")


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} netd: {message}", flush=True)


def main() -> int:
    agent = NetworkAgent(KubeApi(), os.environ["NODE_NAME"], Path(os.environ.get("CNI_DIR", "/etc/cni/net.d")))
    while True:  # runs until the pod is stopped
        try:
            agent.run()
        except Exception as exc:  # the API server restarts; keep the node's network right
            log(f"error: {exc!r}; retrying in 2 s")
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
