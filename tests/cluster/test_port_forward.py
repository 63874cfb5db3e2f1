"""A Service's port on 127.0.0.1 through the API server, on the real cluster: requests reach each ready pod of
the web tier in turn, a bad target is one clear error, and the port is closed when the block ends; and an
experiment file whose system has only a ClusterIP Service is loaded through it while one of its pods is killed,
with every record kept."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from workloads import Web

from chaoskit.adapters.kube import Kube
from chaoskit.errors import SpecError

REQUESTS = 30


def test_a_service_port_forwarded_to_the_host_serves_its_pods_and_closes_with_the_block(
    chaoskit_port_forward: Callable[[str, str, int], AbstractContextManager[int]], web: Web, kube: Kube
) -> None:
    ready = {
        p.metadata.name
        for p in kube.pods(web.namespace, "app=web")
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }
    started = time.monotonic()
    pods = set()
    with chaoskit_port_forward(web.namespace, "service/web", 80) as port:
        for _ in range(REQUESTS):  # bounded: 30 requests
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                assert response.status == 200
                pods.add(json.loads(response.read())["pod"])
    took = time.monotonic() - started
    # Each request a new connection (urllib keeps none alive), each connection the next ready pod in turn.
    assert len(ready) >= 2 and pods == ready, (pods, ready)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # nothing listens on the port once the block ended
    with (
        pytest.raises(SpecError, match=r"service .*/nothing does not exist"),
        chaoskit_port_forward(web.namespace, "service/nothing", 80),
    ):
        pass
    with (
        pytest.raises(SpecError, match=r"has no port 81 \(it has 80\)"),
        chaoskit_port_forward(web.namespace, "service/web", 81),
    ):
        pass
    print(f"{REQUESTS} requests through a port-forward to {pods}: {took / REQUESTS * 1000:.0f} ms each, bounded")


REPO = Path(__file__).resolve().parents[2]
CLUSTER_IP = """\
name: web behind a ClusterIP Service, loaded through a port-forward
namespace: auto
deploy:
  images: {{web: {repo}/fixtures/web}}
  manifests: [{manifests}]
  wait: [Deployment/web]
workloads:
  - {{kind: Deployment, name: web, service: web}}
load:
  port_forward: {{service: web, port: 80}}
  paths: [/]
  users: 4
  rate_per_user: 10
  run_seconds: 15
  warmup_seconds: 2
faults:
  - kind: pod-kill
    at: 3s
    selector: app=web
    count: 1
    grace_seconds: 0
objectives:
  - availability: 0.9
  - recovery: {{within_seconds: 30}}
settle_seconds: 2
"""


def test_a_system_with_only_a_cluster_ip_service_is_loaded_through_the_port_forward_with_every_record_kept(
    cluster, tmp_path: Path
) -> None:
    """``chaoskit run`` of a file with ``load.port_forward``: the web tier's Service is ClusterIP (no NodePort
    at all), the load reaches it through the API server, a pod of it is killed, and the verdict stands on a
    complete record stream (every request Locust counted arrived as a record)."""
    tier = "".join(
        line
        for line in (REPO / "experiments" / "systems" / "web-tier.yaml").read_text().splitlines(keepends=True)
        if not line.startswith("#")  # its header speaks of the NodePort the file no longer has
    )
    cluster_ip = tier.replace("type: NodePort", "type: ClusterIP").replace(", nodePort: ${node_port}", "")
    assert "ClusterIP" in cluster_ip and "node_port" not in cluster_ip and "NodePort" not in cluster_ip
    (tmp_path / "web-tier.yaml").write_text(cluster_ip)
    path = tmp_path / "clusterip.chaos.yaml"
    path.write_text(CLUSTER_IP.format(repo=REPO, manifests=tmp_path / "web-tier.yaml"))
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "run", str(path), "--report-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    assert "the load goes through a port-forward: 127.0.0.1:" in said and "service ck-" in said, said[-4000:]
    (run,) = json.loads((tmp_path / "out" / "chaoskit-journal.json").read_text())["experiments"]
    assert run["verdict"]["passed"] is True, run["verdict"]
    assert [f["kind"] for f in run["faults"]] == ["pod-kill"] and len(run["faults"][0]["targets"]) == 1
    stream = run["load"]["stream"]
    assert stream["complete"] is True and stream["shortfall"] is None, stream
    assert stream["received"] == stream["locust_requests"] > 100, stream
    assert run["load"]["spec"]["host"].startswith("http://127.0.0.1:"), run["load"]["spec"]
    print(
        f"through the port-forward: {stream['received']} requests, every one a record; "
        f"availability {run['figures']['whole.availability']:.4f}, recovery {run['figures']['recovery_s']:.1f} s"
    )
