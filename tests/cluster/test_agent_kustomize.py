"""The injector agent as a cluster admin installs it: its image built from ``deploy/agent/Dockerfile``,
``kubectl apply -k`` of an overlay on the repository's kustomize base (``deploy/agent``) naming that image, a
fault through that agent, then ``kubectl delete -k`` leaving nothing.

The Dockerfile is built with ``docker build`` as its header says, on the injector's own Debian base
(``--build-arg BASE=``, which has every package, so no apt and no registry): where a registry is reachable
its default base is ``debian:bookworm-slim``, which this machine cannot pull.

kubectl is the cluster's own (copied out of the control-plane node, so its version is the server's), and
what is left is read by it too (``kubectl get -k``), not by chaoskit. The fault is run by a pytest session
that takes the kind cluster as a foreign one (the existing provider), which uses the agent it finds and never
installs one, so the agent that acts is the one kubectl applied. The test deletes ``chaoskit-system`` and the
Fault CRD, so it runs with nothing beside it, and puts chaoskit's own install back at the end.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException
from residue import scan
from workloads import Web

from chaoskit.adapters.nodes import INJECTOR_NAME, INJECTOR_NAMESPACE
from chaoskit.cluster import Cluster
from chaoskit.cluster import injector as agent
from chaoskit.provision import images
from chaoskit.state import leases

pytestmark = pytest.mark.destructive

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "deploy" / "agent"
INNER = """
import pathlib, time

def test_partition_through_the_agent_kubectl_applied(chaos):
    with chaos.partition("{ns}", "role=client", peer_selector="app=web", max_share=1.0) as cut:
        pathlib.Path("{held}").write_text(cut.fault_id)
        deadline = time.monotonic() + 120
        while not pathlib.Path("{release}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
"""


def test_kubectl_apply_k_installs_a_working_agent_and_delete_k_leaves_nothing(
    cluster: Cluster, kube, web: Web, client: str, tmp_path: Path
) -> None:
    if not cluster.is_kind:
        pytest.skip("the test loads the agent's image into kind's nodes")
    kubectl = tmp_path / "kubectl"
    subprocess.run(["docker", "cp", f"{cluster.name}-control-plane:/usr/bin/kubectl", str(kubectl)], check=True)

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        command = [str(kubectl), "--kubeconfig", str(cluster.kubeconfig), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    image = dockerfile_image()
    cluster.load_image(image)
    name, _, tag = image.rpartition(":")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources: [{os.path.relpath(BASE, overlay)}]
            images:
              - {{name: chaoskit/injector, newName: {name}, newTag: {tag}}}
            """
        )
    )
    lease = leases.owner(cluster).name
    had_lease = lease_exists(kube, lease)
    try:
        # From nothing: whatever chaoskit installed before is deleted the admin's way first.
        gone = run("delete", "-k", str(overlay), "--ignore-not-found", "--wait=true", "--timeout=180s")
        assert gone.returncode == 0, gone.stderr
        assert run("get", "-k", str(overlay), "--ignore-not-found", "-o", "name").stdout.strip() == ""

        applied = run("apply", "-k", str(overlay))
        assert applied.returncode == 0, applied.stderr
        assert f"daemonset.apps/{INJECTOR_NAME} created" in applied.stdout, applied.stdout
        rolled = run("-n", INJECTOR_NAMESPACE, "rollout", "status", f"daemonset/{INJECTOR_NAME}", "--timeout=180s")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert agent.installed_image(kube) == image
        # This session's owner Lease went with the namespace; its renewal makes it again. Until it is back, a
        # new session's sweep would take this session's namespaces for a dead owner's.
        if had_lease:
            wait_for_lease(kube, lease)

        held, release = tmp_path / "held", tmp_path / "release"
        (tmp_path / "test_inner.py").write_text(INNER.format(ns=web.namespace, held=held, release=release))
        context = f"kind-{cluster.name}"
        inner = subprocess.Popen(
            [
                sys.executable, "-m", "pytest", str(tmp_path / "test_inner.py"), "-p", "no:cacheprovider", "-q",
                "-s", "--chaos-provider", "existing", "--chaos-kube-context", context, "--chaos-kubeconfig",
                str(cluster.kubeconfig), "--chaos-allow-context", context, "--chaos-injector", "agent",
            ],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not held.exists() or not held.read_text():
            assert inner.poll() is None, inner.communicate()[0]
            assert time.monotonic() < deadline, "the inner run never injected its partition"
            time.sleep(0.2)
        fault_id = held.read_text()
        assert scan(cluster.name, str(cluster.kubeconfig)).of(fault_id), "no rule of the partition on any node"
        release.write_text("done")
        output, _ = inner.communicate(timeout=240)
        assert inner.returncode == 0, output
        after = scan(cluster.name, str(cluster.kubeconfig))
        assert after.of(fault_id) == [] and after.empty(), after
        managers = {
            m["manager"]
            for m in kube.get("DaemonSet", INJECTOR_NAME, INJECTOR_NAMESPACE, api_version="apps/v1")["metadata"][
                "managedFields"
            ]
        }
        assert "chaoskit" not in managers, managers  # nothing of chaoskit's own install touched it

        deleted = run("delete", "-k", str(overlay), "--wait=true", "--timeout=180s")
        assert deleted.returncode == 0, deleted.stderr
        left = run("get", "-k", str(overlay), "--ignore-not-found", "-o", "name")
        assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr
        print(
            f"kubectl apply -k: agent {image} on every node; partition {fault_id} through it; delete -k: nothing left"
        )
    finally:
        agent.install(cluster, kube)  # chaoskit's own install again, for the tests after this one
        if had_lease:
            wait_for_lease(kube, lease)


def dockerfile_image() -> str:
    """deploy/agent/Dockerfile built from the repository's root, named by a digest of what it copies."""
    digest = hashlib.sha256((BASE / "Dockerfile").read_bytes())
    for path in sorted((REPO / "chaoskit" / "agent").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    tag = f"chaoskit/injector:dockerfile-{digest.hexdigest()[:12]}"
    base = images.injector_base_image()
    built = subprocess.run(
        ["docker", "build", "-q", "-f", str(BASE / "Dockerfile"), "--build-arg", f"BASE={base}", "-t", tag, str(REPO)],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    ran = subprocess.run(
        ["docker", "run", "--rm", tag, "sh", "-c", "python3 -c 'import chaoskit.agent.injector' && nsenter --version "
         "&& iptables --version && socat -V | head -1 && ls /opt/chaoskit/chaoskit/agent"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0 and "injector.py" in ran.stdout, ran.stdout + ran.stderr
    return tag


def lease_exists(kube, name: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        kube.coordination.read_namespaced_lease(name, leases.NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def wait_for_lease(kube, name: str, within: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Until this session's owner Lease is back (its renewal makes it again once the namespace is)."""
    deadline = time.monotonic() + within
    while not lease_exists(kube, name):
        assert time.monotonic() < deadline, f"owner lease {name} not made again within {within:g} s"
        time.sleep(0.5)
