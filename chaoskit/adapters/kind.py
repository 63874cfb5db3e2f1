"""The kind CLI: create, list, delete clusters and load images into them; the images their nodes hold."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from chaoskit.adapters.shell import run, run_logged
from chaoskit.errors import ClusterError

if TYPE_CHECKING:
    from chaoskit.adapters.docker import Container

NETWORK_ENV = "KIND_EXPERIMENTAL_DOCKER_NETWORK"


def clusters() -> list[str]:
    """Names of the kind clusters on this machine."""
    return run(["kind", "get", "clusters"], timeout=60).stdout.split()


def create(name: str, image: str | None, config: Path, kubeconfig: Path, network: str, log: Path) -> None:
    """Create a cluster; its nodes join the Docker network ``network``."""
    args = ["kind", "create", "cluster", "--name", name, "--config", str(config), "--kubeconfig", str(kubeconfig)]
    if image:
        args += ["--image", image]
    run_logged(args, log, what=f"kind create cluster {name}", env={NETWORK_ENV: network}, heartbeat=15, timeout=600)


def delete(name: str, kubeconfig: Path | None) -> None:
    args = ["kind", "delete", "cluster", "--name", name]
    if kubeconfig is not None:
        args += ["--kubeconfig", str(kubeconfig)]
    run(args, timeout=180)


def write_kubeconfig(name: str, kubeconfig: Path) -> None:
    """Write the cluster's (host-side) kubeconfig to ``kubeconfig``."""
    text = run(["kind", "get", "kubeconfig", "--name", name], timeout=60).stdout
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(text)
    kubeconfig.chmod(0o600)


def load_image(name: str, image: str, log: Path, nodes: Sequence[str] = ()) -> None:
    """Load a local Docker image into the cluster's nodes (``nodes``: only those; default: every node)."""
    args = ["kind", "load", "docker-image", "--name", name, image]
    if nodes:
        args += ["--nodes", ",".join(nodes)]
    run_logged(args, log, what=f"loading {image} into {name}", timeout=600)


def nodes(name: str) -> list[Container]:
    """The node containers of the cluster, running or not."""
    from chaoskit.adapters import docker

    return docker.containers(f"{docker.KIND_CLUSTER_LABEL}={name}")


def local_image_id(image: str) -> str | None:
    """The ID (``sha256:...``) of a local Docker image, as ``kind load`` would send it; None if there is none."""
    result = run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60)
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def node_image_id(node: str, image: str) -> str | None:
    """The ID of the image called ``image`` in a node's containerd; None if the node has no image by that name.

    The ID is the digest of the image's config, which is the Docker image ID of
    the image that was loaded, so a name that now points at another build
    (rebuilt under the same tag) is told apart from the one the node holds.
    """
    from chaoskit.adapters import docker

    ref = containerd_ref(image)
    listing = docker.run_in(node, ["ctr", "-n", "k8s.io", "images", "ls", f"name=={ref}"], timeout=60)
    if listing.code != 0:
        raise ClusterError(f"cannot list the images of node {node}: {listing.output.strip()[:200]}")
    rows = [line.split() for line in listing.stdout.splitlines()[1:] if line.strip()]
    digests = [row[2] for row in rows if row and row[0] == ref and len(row) > 2]
    if not digests:
        return None
    manifest = docker.run_in(node, ["ctr", "-n", "k8s.io", "content", "get", digests[0]], timeout=60)
    if manifest.code != 0:
        return None  # the name is there but not its content: load it again
    try:
        config: str = json.loads(manifest.stdout)["config"]["digest"]
    except (ValueError, KeyError, TypeError):
        return None  # an index of several platforms, not what 'kind load' makes: load it again
    return config


def containerd_ref(image: str) -> str:
    """The name containerd gives a Docker image name: ``web:1`` is ``docker.io/library/web:1``."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image  # it names its registry
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"
