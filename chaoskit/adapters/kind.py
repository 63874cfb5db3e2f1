"""The kind CLI: create, list, delete clusters and load images into them."""

from __future__ import annotations

from pathlib import Path

from chaoskit.adapters.shell import run, run_logged

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


def load_image(name: str, image: str, log: Path) -> None:
    run_logged(
        ["kind", "load", "docker-image", "--name", name, image], log, what=f"loading {image} into {name}", timeout=600
    )


def images_on_nodes(name: str) -> set[str]:
    """Images present on every node of the cluster (by ``repo:tag``)."""
    from chaoskit.adapters import docker

    common: set[str] | None = None
    for node in docker.containers(f"{docker.KIND_CLUSTER_LABEL}={name}"):
        listing = docker.run_in(node.name, ["ctr", "-n", "k8s.io", "images", "ls", "-q"], timeout=60)
        names = {_short(line) for line in listing.stdout.split()} if listing.code == 0 else set()
        common = names if common is None else common & names
    return common or set()


def _short(ref: str) -> str:
    # ctr lists docker.io/library/x:tag and docker.io/chaoskit/x:tag; docker names them without the registry.
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref
