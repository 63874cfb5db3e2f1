"""The ``kind`` cluster provider.

A kind cluster here is one control plane and N workers, each a privileged
Docker container on a Docker network of its own (``chaoskit-<name>``), so that
``cluster down`` can remove everything the cluster made. NodePorts are
published on 127.0.0.1 of the host, the only address tests send traffic to.

The node image is chosen without the user having to: an explicit
``--node-image`` wins; otherwise a node image already on the machine (the
air-gapped build, then kind's stock image); otherwise kind's stock image if it
can be pulled; otherwise chaoskit builds its own (:mod:`chaoskit.provision`:
Kubernetes 1.37 from Go modules by default, 1.20 from Debian's source on
request). The air-gapped flavour has no kindnetd, so chaoskit installs its own add-ons (:mod:`chaoskit.cluster.addons`).

A cluster that already runs is reused. One whose containers are stopped (the
machine restarted, or a test stopped a node and died) is started again. What
happens to one that differs from the spec (another node count, an out-of-date
node image) or cannot be made healthy depends on who asks: ``chaoskit cluster
up`` (``recreate=True``) deletes it and creates it anew, as its user asked for
that cluster; the pytest plugin (``recreate=False``) never deletes a cluster it
did not create: it uses one that differs as it is, saying how in one line, and
fails on an unhealthy one with the ``chaoskit cluster up`` command that fixes it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import yaml

from chaoskit import cache
from chaoskit.adapters import docker, kind
from chaoskit.adapters.kube import CONTROL_PLANE_LABELS, ZONE_LABEL, Kube
from chaoskit.adapters.shell import run, say
from chaoskit.adapters.status import node_ready, pod_ready
from chaoskit.cluster import addons
from chaoskit.cluster.base import NODE_PORT_RANGE, Cluster, ClusterSpec, ClusterStatus, NodeStatus
from chaoskit.errors import ChaoskitError, ClusterError, UsageError
from chaoskit.provision import versions
from chaoskit.provision.versions import LINES, STOCK_NODE_IMAGE, Line, tag_version

READY_TIMEOUT = 240.0
PULL_TIMEOUT = 60.0


def cluster_dir(name: str) -> Path:
    """Where a cluster's kubeconfig, kind config and logs live."""
    path = cache.root() / "clusters" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def kubeconfig_path(name: str) -> Path:
    return cluster_dir(name) / "kubeconfig"


def network_name(name: str) -> str:
    return f"chaoskit-{name}"


def kind_config(spec: ClusterSpec, airgap: bool, minor: int | None = None) -> dict[str, Any]:
    """The kind configuration for ``spec`` (``minor``: the node image's Kubernetes minor version, if known)."""
    control_plane: dict[str, Any] = {"role": "control-plane"}
    if spec.node_ports:
        control_plane["extraPortMappings"] = [
            {"containerPort": port, "hostPort": port, "listenAddress": "127.0.0.1", "protocol": "TCP"}
            for port in spec.node_ports
        ]
    config: dict[str, Any] = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [control_plane] + [{"role": "worker"} for _ in range(spec.workers)],
    }
    if airgap:
        # No kindnetd image exists here; chaoskit-netd configures pod networking instead.
        config["networking"] = {"disableDefaultCNI": True}
    if minor is not None and minor >= 35:
        # kubelet 1.35 and later refuse a cgroup v1 host unless told otherwise; such hosts are still common.
        config["kubeadmConfigPatches"] = ["kind: KubeletConfiguration\nfailCgroupV1: false\n"]
    return config


def image_minor(image: str) -> int | None:
    """The Kubernetes minor version of a node image, from its tag (37 for ``kindest/node:v1.37.0`` and for
    chaoskit's ``chaoskit/node:v1.37.2-...``); None for an image whose tag does not say."""
    line = image_line(image)
    if line is not None:
        return int(line.minor.split(".")[1])
    match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+(@.*)?", image)
    return int(match.group(1)) if match else None


def published_node_ports(name: str) -> tuple[int, ...]:
    """The NodePorts cluster ``name`` publishes on 127.0.0.1, read from its control-plane container:
    what the running cluster serves, whatever a spec of today asks for."""
    control_plane = docker.find(f"{name}-control-plane")
    if control_plane is None:
        return ()
    return tuple(
        sorted(
            {
                host_port
                for address, host_port, container_port in control_plane.published
                if address in ("127.0.0.1", "0.0.0.0")
                and host_port == container_port
                and NODE_PORT_RANGE[0] <= host_port <= NODE_PORT_RANGE[1]
            }
        )
    )


def is_airgap_image(image: str) -> bool:
    return image.startswith("chaoskit/node:")


def image_line(image: str) -> Line | None:
    """The Kubernetes line of one of chaoskit's node images, read from its tag (None for another image)."""
    if not is_airgap_image(image):
        return None
    version = tag_version(image)
    return next((line for line in LINES.values() if line.version == version), None)


def has_coredns(image: str) -> bool:
    """Whether a node image holds CoreDNS (chaoskit's of a line built from Go modules), so kubeadm's CoreDNS
    serves cluster DNS and chaoskit-dns is not installed."""
    line = image_line(image)
    return line is not None and line.coredns_image is not None


class KindProvider:
    """Creates, reuses and deletes kind clusters."""

    def __init__(self, provision: bool = True, recreate: bool = True) -> None:
        # provision: whether up() may install packages and start Docker (the CLI does;
        # the pytest plugin does not, it asks the user to run 'chaoskit cluster up').
        # recreate: whether up() may delete a running cluster that differs from the spec or
        # is unhealthy and create it anew (the CLI does; the pytest plugin does not).
        self.provision = provision
        self.recreate = recreate

    # --- up --------------------------------------------------------------------

    def up(self, spec: ClusterSpec) -> Cluster:
        started = time.monotonic()
        self._ensure_docker()
        running = spec.name in kind.clusters()
        if running and not self.recreate:
            # Nothing is pulled or built for a cluster that is used as it is.
            cluster = self._use_as_is(spec, self._local_image(spec))
        else:
            image = self._choose_image(spec)
            reused = self._reuse(spec, image) if running else None
            cluster = reused or self._create(spec, image)
        say(f"cluster {spec.name} ready in {time.monotonic() - started:.0f} s (KUBECONFIG={cluster.kubeconfig})")
        return cluster

    def _ensure_docker(self) -> None:
        if self.provision:
            from chaoskit.provision import host

            if not docker.daemon_answers() or host.packages_missing():
                host.ensure_packages()
            host.ensure_docker()
        docker.require_daemon()
        if not _have("kind"):
            raise UsageError("the kind CLI is not installed: run 'chaoskit cluster up', which installs it")

    def _local_image(self, spec: ClusterSpec) -> str | None:
        """The node image a new cluster would get, without pulling or building (None: none is here)."""
        from chaoskit.provision import images

        if spec.node_image:
            return spec.node_image
        airgap = images.node_image(versions.line(spec.kubernetes))
        if images.image_exists(airgap):
            return airgap
        if spec.kubernetes:  # a line asked for by name is chaoskit's own node image of it, built if missing
            return None
        if images.image_exists(STOCK_NODE_IMAGE):
            return STOCK_NODE_IMAGE
        return None

    def _choose_image(self, spec: ClusterSpec) -> str:
        local = self._local_image(spec)
        if local:
            return local
        if spec.kubernetes and self.provision:
            from chaoskit.provision import airgap_build

            line = versions.line(spec.kubernetes)
            say(f"building chaoskit's node image of Kubernetes {line.version}")
            return airgap_build.build_all(line)
        if spec.kubernetes and f"1.{image_minor(STOCK_NODE_IMAGE)}" != versions.line(spec.kubernetes).minor:
            # pytest builds nothing, and kind's stock image is of another line than the one asked for
            raise UsageError(
                f"no node image of Kubernetes {versions.line(spec.kubernetes).version} is on this machine: run "
                f"'chaoskit cluster up {_up_options(spec)}' once, which builds it"
            )
        say(f"trying to pull kind's node image {STOCK_NODE_IMAGE}")
        pulled = run(["docker", "pull", STOCK_NODE_IMAGE], check=False, timeout=PULL_TIMEOUT)
        if pulled.returncode == 0:
            return STOCK_NODE_IMAGE
        if self.provision:
            from chaoskit.provision import airgap_build, images

            say(f"no registry reachable: building chaoskit's node image of Kubernetes {images.DEFAULT.version}")
            return airgap_build.build_all()
        raise UsageError(
            "no node image is available and none can be pulled: run 'chaoskit cluster up' once "
            "(it builds chaoskit's node image, about 20 min the first time on 2 cores)"
        )

    def _reuse(self, spec: ClusterSpec, image: str) -> Cluster | None:
        """Reuse the running cluster if it fits ``spec``; else delete it and return None (the CLI)."""
        nodes = docker.containers(f"{docker.KIND_CLUSTER_LABEL}={spec.name}")
        stale = sorted({n.image for n in nodes} - {image})
        if stale:
            say(f"cluster {spec.name} runs node image {', '.join(stale)}, not {image}: recreating it")
            self._delete(spec.name)
            return None
        if len(nodes) != spec.workers + 1:
            say(f"cluster {spec.name} has {len(nodes)} nodes, not {spec.workers + 1}: recreating it")
            self._delete(spec.name)
            return None
        try:
            return self._restart_and_finish(spec, nodes)
        except ChaoskitError as exc:
            say(f"cluster {spec.name} did not become healthy ({exc}): recreating it")
            self._delete(spec.name)
            return None

    def _use_as_is(self, spec: ClusterSpec, image: str | None) -> Cluster:
        """Use the running cluster whatever its shape, never deleting it (the pytest plugin).

        ``image`` is the node image a new cluster would get (None if none is on the machine).
        """
        nodes = docker.containers(f"{docker.KIND_CLUSTER_LABEL}={spec.name}")
        fix = f"run 'chaoskit cluster up {_up_options(spec)}', which repairs or recreates it"
        if not nodes:
            raise ClusterError(f"kind lists cluster {spec.name} but it has no node containers: {fix}")
        stale = sorted({n.image for n in nodes} - {image}) if image else []
        differences = []
        if stale:
            differences.append(f"runs node image {', '.join(stale)}, not {image}")
        elif spec.kubernetes and image is None:  # the line asked for is not built here: compare by version
            wanted = versions.line(spec.kubernetes).minor
            other = sorted({n.image for n in nodes if f"1.{image_minor(n.image)}" != wanted})
            if other:
                stale = other
                differences.append(f"runs node image {', '.join(other)}, not Kubernetes {wanted} as asked")
        if len(nodes) != spec.workers + 1:
            asked = f"1 control plane + {spec.workers} workers"
            differences.append(f"has {len(nodes)} nodes, not the {spec.workers + 1} asked for ({asked})")
        if differences:
            say(
                f"{'warning: ' if stale else ''}cluster {spec.name} {' and '.join(differences)}: "
                f"using it as it is ('chaoskit cluster up {_up_options(spec)}' recreates it to fit)"
            )
        try:
            return self._restart_and_finish(spec, nodes)
        except ChaoskitError as exc:
            reason = " ".join(str(exc).split())
            raise ClusterError(f"cluster {spec.name} is not healthy ({reason}): {fix}") from None

    def _restart_and_finish(self, spec: ClusterSpec, nodes: list[docker.Container]) -> Cluster:
        """Start or unpause the nodes of a running cluster and wait until it is healthy."""
        # Each node must post a Ready heartbeat newer than its last (re)start, and its pods must
        # have turned Ready since: a node that Docker or we just started still shows the Ready
        # it posted before it stopped. Heartbeats are whole seconds: allow one of rounding.
        unpaused_at: dict[str, float] = {}
        for node in nodes:
            if node.state == "paused":
                say(f"unpausing node {node.name}")
                unpaused_at[node.name] = time.time()
                docker.unpause(node.name)
            elif node.state != "running":
                say(f"starting stopped node {node.name}")
                docker.start(node.name)
        node_since = {n.name: max(unpaused_at.get(n.name, 0.0), docker.inspect(n.name).started_at) - 1 for n in nodes}
        say(f"reusing cluster {spec.name}")
        airgap = any(is_airgap_image(n.image) for n in nodes)
        coredns = any(has_coredns(n.image) for n in nodes)
        return self._finish(spec, airgap, created=False, node_count=len(nodes), node_since=node_since, coredns=coredns)

    def _create(self, spec: ClusterSpec, image: str) -> Cluster:
        airgap = is_airgap_image(image)
        workdir = cluster_dir(spec.name)
        config = workdir / "kind.yaml"
        config.write_text(yaml.safe_dump(kind_config(spec, airgap, image_minor(image)), sort_keys=False))
        kubeconfig = kubeconfig_path(spec.name)
        kubeconfig.unlink(missing_ok=True)
        from chaoskit.provision import host

        host.ensure_inotify(change=self.provision)
        say(f"creating kind cluster {spec.name}: 1 control plane + {spec.workers} workers, image {image}")
        kind.create(spec.name, image, config, kubeconfig, network_name(spec.name), workdir / "create.log")
        return self._finish(spec, airgap, created=True, node_count=spec.workers + 1, coredns=has_coredns(image))

    def _finish(
        self,
        spec: ClusterSpec,
        airgap: bool,
        created: bool,
        node_count: int,
        node_since: dict[str, float] | None = None,
        coredns: bool = False,
    ) -> Cluster:
        """Make a created or reused cluster whole. ``coredns``: its node image holds CoreDNS (Kubernetes 1.37),
        so kubeadm's CoreDNS serves cluster DNS as on kind's stock image; else chaoskit-dns does."""
        kubeconfig = kubeconfig_path(spec.name)
        kind.write_kubeconfig(spec.name, kubeconfig)
        cluster = Cluster(
            name=spec.name,
            provider="kind",
            kubeconfig=kubeconfig,
            context=f"kind-{spec.name}",
            flavor="airgap" if airgap else "stock",
            node_ports=published_node_ports(spec.name),
            created=created,
            api_rate=spec.api_rate,
        )
        with cluster.kube() as kube:
            _wait_api(kube)
            if cluster.flavor == "airgap":
                from chaoskit.provision import images

                agent = images.agent_image()
                if not created:
                    # A reused cluster's node image holds the agent image of the chaoskit that built it: one of
                    # a newer chaoskit is built here and loaded before the add-ons are rolled to it.
                    images.build_agent_image()
                    loaded = cluster.load_image(agent)
                    if loaded:
                        say(f"agent image {agent} loaded into {', '.join(loaded)}")
                kube.apply(addons.manifests(agent, dns=not coredns))
                addons.install_storage_class(kube)
                if not coredns and kube.delete("Deployment", "coredns", "kube-system", api_version="apps/v1"):
                    say("removed kubeadm's CoreDNS (no image here); chaoskit-dns serves cluster DNS")
            label_zones(kube)
            wait_healthy(kube, cluster.flavor, node_count, node_since=node_since, coredns=coredns)
        return cluster

    def attach(self, spec: ClusterSpec) -> Cluster:
        """A handle on an existing cluster, without waiting for it to be healthy (for cleanup)."""
        docker.require_daemon()
        if spec.name not in kind.clusters():
            raise UsageError(f"no kind cluster named {spec.name}; 'chaoskit cluster status' lists what exists")
        nodes = docker.containers(f"{docker.KIND_CLUSTER_LABEL}={spec.name}")
        for node in nodes:
            if node.labels.get(docker.KIND_ROLE_LABEL) == "control-plane" and node.state != "running":
                raise ClusterError(f"the control plane {node.name} is {node.state}: run 'chaoskit cluster up' first")
        kubeconfig = kubeconfig_path(spec.name)
        kind.write_kubeconfig(spec.name, kubeconfig)
        airgap = any(is_airgap_image(n.image) for n in nodes)
        return Cluster(
            name=spec.name,
            provider="kind",
            kubeconfig=kubeconfig,
            context=f"kind-{spec.name}",
            flavor="airgap" if airgap else "stock",
            node_ports=published_node_ports(spec.name),
            api_rate=spec.api_rate,
        )

    # --- down / status ------------------------------------------------------------

    def down(self, spec: ClusterSpec) -> None:
        docker.require_daemon()
        if spec.name not in kind.clusters():
            say(f"no kind cluster named {spec.name}")
        else:
            self._delete(spec.name)
        network = network_name(spec.name)
        if docker.network_exists(network):
            docker.remove_network(network)
        kubeconfig_path(spec.name).unlink(missing_ok=True)

    def _delete(self, name: str) -> None:
        say(f"deleting kind cluster {name}")
        kind.delete(name, kubeconfig_path(name))

    def status(self, spec: ClusterSpec) -> ClusterStatus:
        docker.require_daemon()
        if spec.name not in kind.clusters():
            return ClusterStatus(name=spec.name, exists=False)
        containers = {c.name: c for c in docker.containers(f"{docker.KIND_CLUSTER_LABEL}={spec.name}")}
        kubeconfig = kubeconfig_path(spec.name)
        ready: dict[str, bool] = {}
        version = None
        problem = None
        try:
            kind.write_kubeconfig(spec.name, kubeconfig)
            with Kube(kubeconfig, f"kind-{spec.name}") as kube:
                version = kube.server_version(timeout=5)
                items: list[Any] = kube.core.list_node(_request_timeout=10).items
                ready = {n.metadata.name: node_ready(n) for n in items}
        except ChaoskitError as exc:
            problem = str(exc)
        except Exception as exc:
            problem = f"the API server does not answer: {exc}"
        nodes = tuple(
            NodeStatus(
                name=name,
                role=c.labels.get(docker.KIND_ROLE_LABEL, "?"),
                ready=ready.get(name, False),
                container_state=c.state,
            )
            for name, c in sorted(containers.items())
        )
        return ClusterStatus(
            name=spec.name,
            exists=True,
            nodes=nodes,
            server_version=version,
            kubeconfig=kubeconfig,
            context=f"kind-{spec.name}",
            problem=problem,
        )


def _up_options(spec: ClusterSpec) -> str:
    """The ``chaoskit cluster up`` options that make the cluster ``spec`` describes."""
    options = f"--name {spec.name} --workers {spec.workers}"
    if spec.node_image:
        options += f" --node-image {spec.node_image}"
    if spec.kubernetes:
        options += f" --kubernetes {spec.kubernetes}"
    return options


def _have(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def _wait_api(kube: Kube, timeout: float = 90.0) -> None:
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

    for attempt in Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(1),
        retry=retry_if_exception_type(ClusterError),
        reraise=True,
    ):
        with attempt:
            kube.server_version(timeout=5)


def wait_healthy(
    kube: Kube,
    flavor: str,
    node_count: int,
    timeout: float = READY_TIMEOUT,
    node_since: dict[str, float] | None = None,
    coredns: bool = False,
) -> None:
    """Wait until every node is Ready and the cluster's networking and DNS run.

    ``node_since`` maps node names to a Unix time (their container's last start):
    such a node must post a Ready heartbeat newer than it, and the add-on pods on
    it must have turned Ready since.
    """
    since = node_since or {}
    took = kube.wait_for(
        kube.core.list_node,
        lambda nodes: len(nodes) == node_count and all(node_ready(n, since.get(k)) for k, n in nodes.items()),
        timeout,
        f"{node_count} Ready nodes",
    )
    say(f"{node_count} nodes Ready ({took:.1f} s)")
    if flavor == "airgap":
        dns = (
            ("k8s-app=kube-dns", 1, "cluster DNS (coredns)")
            if coredns
            else ("app=chaoskit-dns", 1, "cluster DNS (chaoskit-dns)")
        )
        checks = [
            ("app=chaoskit-netd", node_count, "chaoskit-netd"),
            dns,
            ("app=chaoskit-volumes", node_count, "local volumes (chaoskit-volumes)"),
        ]
    else:
        checks = [("k8s-app=kube-dns", 1, "cluster DNS (coredns)")]
    for selector, count, what in checks:

        def enough(pods: dict[str, Any], count: int = count) -> bool:
            return sum(pod_ready(p, since.get(p.spec.node_name)) for p in pods.values()) >= count

        took = kube.wait_for(
            kube.core.list_namespaced_pod,
            enough,
            timeout,
            f"{what}: {count} ready pod(s)",
            namespace="kube-system",
            label_selector=selector,
        )
        say(f"{what} ready ({took:.1f} s)")


CONTROL_PLANE_ZONE = "zone-a"
WORKER_ZONES = ("zone-b", "zone-c")


def label_zones(kube: Kube) -> None:
    """Give every node without one a zone, as cloud nodes have: the control plane ``zone-a``, the workers
    ``zone-b``, ``zone-c``, ``zone-b``... in name order, so a tier spread over the workers spans two zones
    (for zone failures). A node's own zone label is kept."""
    nodes = sorted(kube.nodes(), key=lambda n: n.metadata.name)
    workers = [n for n in nodes if not any(k in (n.metadata.labels or {}) for k in CONTROL_PLANE_LABELS)]
    for node in nodes:
        if ZONE_LABEL in (node.metadata.labels or {}):
            continue
        zone = WORKER_ZONES[workers.index(node) % len(WORKER_ZONES)] if node in workers else CONTROL_PLANE_ZONE
        kube.core.patch_node(node.metadata.name, {"metadata": {"labels": {ZONE_LABEL: zone}}}, _request_timeout=10)
