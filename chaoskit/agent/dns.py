"""Cluster DNS for kind clusters with no CoreDNS image: dnsmasq fed from the API.

The agent watches Services and Endpoints and writes one hosts file into a
directory that dnsmasq watches (``--hostsdir``), so a change is served
without restarting dnsmasq. It answers, for the ``cluster.local`` domain:

* ``<service>.<namespace>.svc.cluster.local`` with the ClusterIP, or, for a
  headless Service, with every ready endpoint address;
* ``<hostname>.<service>.<namespace>.svc.cluster.local`` for endpoints that
  carry a hostname (StatefulSet pods behind a headless Service).

Short names (``web``, ``web.<namespace>``) resolve through the search path
the kubelet writes into every pod's resolv.conf. Names in ``cluster.local``
that do not exist get NXDOMAIN at once; records have a TTL of one second, so
a failover shows within a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from chaoskit.agent.kubeapi import KubeApi, Obj

DOMAIN = "cluster.local"
RESYNC_SECONDS = 30


def records(services: list[Obj], endpoints: list[Obj]) -> list[tuple[str, str]]:
    """The (address, name) pairs to serve, sorted, from Services and Endpoints."""
    by_key = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    pairs: set[tuple[str, str]] = set()
    for service in services:
        meta = service["metadata"]
        fqdn = f"{meta['name']}.{meta['namespace']}.svc.{DOMAIN}"
        spec = service.get("spec", {})
        cluster_ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            continue
        if cluster_ip and cluster_ip != "None":
            pairs.add((cluster_ip, fqdn))
        endpoint = by_key.get((meta["namespace"], meta["name"]))
        if endpoint is None:
            continue
        for subset in endpoint.get("subsets") or []:
            for address in subset.get("addresses") or []:
                ip = address["ip"]
                if cluster_ip == "None":
                    pairs.add((ip, fqdn))
                if address.get("hostname"):
                    pairs.add((ip, f"{address['hostname']}.{fqdn}"))
    return sorted(pairs)


def hosts_file(pairs: list[tuple[str, str]]) -> str:
    """Render (address, name) pairs as a hosts file."""
    return "".join(f"{ip} {name}\n" for ip, name in pairs)


def dnsmasq_command(hosts_dir: Path, port: int = 53) -> list[str]:
    """The dnsmasq command line that serves ``hosts_dir`` for the cluster domain."""
    return [
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        f"--port={port}",
        "--no-resolv",
        "--no-hosts",
        f"--hostsdir={hosts_dir}",
        f"--local=/{DOMAIN}/",
        "--local-ttl=1",
        "--no-negcache",
        "--cache-size=0",
        "--user=root",
    ]


class DnsAgent:
    """Keeps the hosts file in step with Services and Endpoints."""

    def __init__(self, api: KubeApi, hosts_dir: Path) -> None:
        self.api = api
        self.hosts_dir = hosts_dir
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {"services": {}, "endpoints": {}}
        self.lock = threading.Lock()
        self.last = ""

    def write(self) -> None:
        with self.lock:
            text = hosts_file(
                records(list(self.objects["services"].values()), list(self.objects["endpoints"].values()))
            )
            if text == self.last:
                return
            tmp = self.hosts_dir / ".cluster.tmp"
            tmp.write_text(text)
            tmp.rename(self.hosts_dir / "cluster")
            self.last = text
            log(f"serving {text.count(chr(10))} records")

    def follow(self, kind: str) -> None:
        path = f"/api/v1/{kind}"
        while True:
            try:
                listing = self.api.list(path)
                with self.lock:
                    self.objects[kind] = {_key(o): o for o in listing["items"]}
                self.write()
                for event in self.api.watch(path, listing["metadata"]["resourceVersion"], RESYNC_SECONDS):
                    obj = event.get("object", {})
                    if event.get("type") == "ERROR" or "namespace" not in obj.get("metadata", {}):
                        break
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.objects[kind].pop(_key(obj), None)
                        else:
                            self.objects[kind][_key(obj)] = obj
                    self.write()
            except Exception as exc:  # the API server restarts; keep serving what we have
                log(f"{kind}: error {exc!r}; retrying in 2 s")
                time.sleep(2)


def _key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} dns: {message}", flush=True)


def main() -> int:
    hosts_dir = Path(os.environ.get("HOSTS_DIR", "/run/chaoskit-dns"))
    hosts_dir.mkdir(parents=True, exist_ok=True)
    (hosts_dir / "cluster").touch()
    agent = DnsAgent(KubeApi(), hosts_dir)
    for kind in ("services", "endpoints"):
        threading.Thread(target=agent.follow, args=(kind,), daemon=True).start()
    server = subprocess.Popen(dnsmasq_command(hosts_dir))
    code = server.wait()
    log(f"dnsmasq exited with {code}")
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
