"""Two runners on one cluster, as two CI machines would be: each ``chaoskit run`` has its own cache directory
(so no file lock of one is seen by the other) and its own owner Lease, and each drains the same worker node
under load. Their turns are held in the cluster: the second waits, says for whom, and drains only once the
first's drain is undone and its experiment has ended; both pass, and no hold is left on the lock Leases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from residue import lock_holds

from chaoskit.adapters.kube import Kube

REPO = Path(__file__).resolve().parents[2]

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: "${{namespace}}"}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: {image}
          imagePullPolicy: IfNotPresent
          ports: [{{containerPort: 8080}}]
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: "${{namespace}}"}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""

EXPERIMENT = """\
name: turns {name}
namespace: auto
deploy:
  manifests: [{manifest}]
  wait: [Deployment/web]
workloads:
  - {{kind: Deployment, name: web, service: web}}
load:
  port_forward: {{service: web, port: 80}}
  paths: [/]
  users: 2
  rate_per_user: 5
  run_seconds: {run_seconds}
  warmup_seconds: 2
faults:
  - kind: node-drain
    at: 3s
    duration: {duration}s
    node: {node}
    timeout: 60
{more}objectives:
  - availability: 0.5
settle_seconds: 2
"""


# The first run holds its drain 12 s (the second's experiment, deployed meanwhile, queues behind it) and its
# experiment goes on after the drain (a pod kill at 30 s), so the second's drain must wait for it.
LATER_KILL = """\
  - kind: pod-kill
    at: 30s
    selector: app=web
    count: 1
    grace_seconds: 0
"""


def runner(
    tmp_path: Path, name: str, cluster, node: str, manifest: Path, run_seconds: int, duration: int, more: str = ""
) -> subprocess.Popen[str]:
    """A ``chaoskit run`` with a cache of its own (another machine's: no file of the other's), on the cluster."""
    home = tmp_path / name
    home.mkdir()
    path = home / f"{name}.chaos.yaml"
    path.write_text(
        EXPERIMENT.format(
            name=name, manifest=manifest, node=node, run_seconds=run_seconds, duration=duration, more=more
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "chaoskit.cli", "run", str(path), "--report-dir", str(home / "out"), "--no-live",
         "--name", cluster.name],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "CHAOSKIT_CACHE": str(home / "cache")},
    )  # fmt: skip


def exclusive_holder(kube: Kube) -> str | None:
    """Who holds the experiments' lock Lease alone, read here from its annotation."""
    try:
        lease = kube.coordination.read_namespaced_lease("chaoskit-lock-experiments", "chaoskit-system")
    except Exception:
        return None
    listed = json.loads((lease.metadata.annotations or {}).get("chaoskit.io/holders") or "{}")
    return next((hold["who"] for hold in listed.values() if hold["mode"] == "exclusive"), None)


def test_two_runners_with_their_own_caches_take_turns_draining_one_node(cluster, kube: Kube, web_image, tmp_path):
    workers = sorted(n.metadata.name for n in kube.nodes() if "control-plane" not in n.metadata.name)
    node = workers[0]
    manifest = tmp_path / "web.yaml"
    manifest.write_text(MANIFEST.format(image=web_image))

    procs: list[subprocess.Popen[str]] = []
    said: dict[str, str] = {}
    try:
        first = runner(tmp_path, "first", cluster, node, manifest, run_seconds=60, duration=12, more=LATER_KILL)
        procs.append(first)
        deadline = time.monotonic() + 240
        while (holder := exclusive_holder(kube)) is None:  # bounded: the first's drain takes the cluster alone
            if first.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the first runner never drained:\n{first.communicate(timeout=60)[0][-5000:]}")
            time.sleep(0.2)
        assert holder.endswith(f"/{first.pid}"), holder
        second = runner(tmp_path, "second", cluster, node, manifest, run_seconds=60, duration=4)
        procs.append(second)
        for name, proc in (("first", first), ("second", second)):
            said[name] = proc.communicate(timeout=400)[0]
            assert proc.returncode == 0, f"{name}:\n{said[name][-5000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: the run undoes its drain on the way out
                proc.communicate(timeout=120)
            if proc.stdout is not None:
                proc.stdout.close()

    runs = {
        name: json.loads((tmp_path / name / "out" / "chaoskit-journal.json").read_text())["experiments"][0]
        for name in said
    }
    for name, run in runs.items():
        assert run["verdict"]["passed"] is True, (name, run["verdict"])
        drain = run["faults"][0]
        assert drain["kind"] == "node-drain" and drain["nodes"] == [node], drain
    one, two = runs["first"]["faults"][0], runs["second"]["faults"][0]
    # Never at once. The second's experiment started once the first's drain was undone (it queued behind it),
    # and its own drain waited for the first's experiment to end.
    assert one["reverted_at"] <= runs["second"]["started"], (one, runs["second"]["started"])
    assert runs["first"]["ended"] <= two["injected_at"], (runs["first"]["ended"], two["injected_at"])
    assert (two["lock_wait_s"] or 0) > 2, two
    # Each wait said for whom: the first's drain (the second's start, loading its images, queued behind it), then
    # the first's experiment, by host/pid and command.
    waited = [line for line in said["second"].splitlines() if " waits for " in line]
    first_run = f"/{first.pid} ("
    assert any(
        "waits for another run's node-wide fault to end: node-drain" in line and first_run in line for line in waited
    ), said["second"][-5000:]
    assert any(
        "waits for other runs' experiments to end" in line and first_run in line and "first.chaos.yaml" in line
        for line in waited
    ), said["second"][-5000:]
    assert lock_holds(str(cluster.kubeconfig)) == []
    assert not kube.core.read_node(node).spec.unschedulable
    t0 = runs["first"]["started"]
    print(
        f"two runners, own caches, seconds from the first's start: first drained {node} at "
        f"{one['injected_at'] - t0:.1f}, undone at {one['reverted_at'] - t0:.1f}, its experiment ended at "
        f"{runs['first']['ended'] - t0:.1f}; second's experiment started at {runs['second']['started'] - t0:.1f}, "
        f"its drain waited {two['lock_wait_s']:.1f} s and was injected at {two['injected_at'] - t0:.1f}"
    )
