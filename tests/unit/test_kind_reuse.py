"""What ``up`` does to a kind cluster that already runs, with Docker, kind and the API faked.

The pytest plugin must never delete or recreate a cluster it did not create: it
uses a running one as it is, saying how it differs from the options, or fails
with the ``chaoskit cluster up`` command that fixes it. ``chaoskit cluster up``
keeps recreating a cluster that does not fit: its user asked for that cluster.

Only the adapters are faked (``chaoskit.adapters.kind``, ``chaoskit.adapters.docker``
and the API client); the cluster is called ``ck-unit`` so that nothing here could
touch a real one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import chaoskit.cluster.base
import chaoskit.cluster.kind
import chaoskit.plugin
import chaoskit.session
from chaoskit import cli
from chaoskit.adapters import docker, kind
from chaoskit.cluster import ClusterSpec, get_provider
from chaoskit.cluster.kind import kind_config
from chaoskit.errors import ClusterError, UsageError
from chaoskit.faults.sweeper import SweepResult

pytest_plugins = ["pytester"]

NAME = "ck-unit"
IMAGE = "kindest/node:unit"


def node(name: str, role: str, image: str = IMAGE) -> docker.Container:
    return docker.Container(
        name=name,
        image=image,
        state="running",
        labels={docker.KIND_CLUSTER_LABEL: NAME, docker.KIND_ROLE_LABEL: role},
        volumes=(),
        networks=(f"chaoskit-{NAME}",),
        started_at=1000.0,
    )


def nodes_of(workers: int, image: str = IMAGE) -> list[docker.Container]:
    return [node(f"{NAME}-control-plane", "control-plane", image)] + [
        node(f"{NAME}-worker{i + 1 if i else ''}", "worker", image) for i in range(workers)
    ]


@dataclass
class FakeMachine:
    """What the faked kind and Docker hold, and every call that changes it."""

    nodes: list[docker.Container]
    clusters: list[str] = field(default_factory=lambda: [NAME])
    calls: list[tuple[str, ...]] = field(default_factory=list)
    waited_for: list[str] = field(default_factory=list)
    healthy: bool = True
    applied: list[str] = field(default_factory=list)
    """``Kind/name`` of every object applied to the cluster (the add-ons)."""
    zones: dict[str, str] = field(default_factory=dict)
    """The zone label each node was given."""

    def delete(self, name: str, kubeconfig: Path | None) -> None:
        self.calls.append(("delete", name))
        self.clusters.remove(name)
        self.nodes = []

    def create(self, name: str, image: str | None, config: Path, kubeconfig: Path, network: str, log: Path) -> None:
        self.calls.append(("create", name, str(image)))
        self.clusters.append(name)
        workers = sum(n["role"] == "worker" for n in yaml.safe_load(config.read_text())["nodes"])
        self.nodes = nodes_of(workers, str(image))


class FakeKube:
    """The API client as ``_finish`` and ``wait_healthy`` use it."""

    machine: FakeMachine

    def __init__(self, kubeconfig: Path | None, context: str | None, rate: object = None) -> None:
        machine = self.machine

        def patch_node(name: str, body: dict[str, Any], **_: Any) -> None:
            machine.zones[name] = body["metadata"]["labels"]["topology.kubernetes.io/zone"]

        self.core = type("Core", (), {"list_node": None, "list_namespaced_pod": None})()
        self.core.patch_node = patch_node  # type: ignore[attr-defined]

    def nodes(self) -> list[Any]:
        """The API's nodes: the containers' names, the control plane by its role label."""
        return [
            SimpleNamespace(
                metadata=SimpleNamespace(
                    name=n.name,
                    labels={"node-role.kubernetes.io/control-plane": ""} if n.name.endswith("control-plane") else {},
                )
            )
            for n in self.machine.nodes
        ]

    def __enter__(self) -> FakeKube:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def server_version(self, timeout: float = 10) -> str:
        return "v1.20.2"

    def apply(self, objects: Any) -> None:
        self.machine.applied += [f"{o['kind']}/{o['metadata']['name']}" for o in objects]

    def get(self, kind: str, name: str, namespace: str | None = None, api_version: str = "v1") -> Any:
        return None

    def delete(self, kind: str, name: str, namespace: str | None = None, api_version: str = "v1") -> bool:
        self.machine.calls.append(("delete-object", kind, name))
        return True

    def wait_for(self, list_call: Any, predicate: Any, timeout: float, what: str, **selector: Any) -> float:
        if not self.machine.healthy:
            raise ClusterError(f"timed out after {timeout:.0f} s\nwaiting for {what}")
        self.machine.waited_for.append(what)
        return 0.1


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeMachine:
    """A machine where kind runs cluster ck-unit with 1 control plane and 1 worker (2 nodes)."""
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path / "cache"))
    fake = FakeMachine(nodes=nodes_of(1))
    monkeypatch.setattr(kind, "clusters", lambda: list(fake.clusters))
    monkeypatch.setattr(kind, "delete", fake.delete)
    monkeypatch.setattr(kind, "create", fake.create)
    monkeypatch.setattr(kind, "write_kubeconfig", lambda name, path: path.write_text("fake\n"))
    monkeypatch.setattr(docker, "require_daemon", lambda: None)
    monkeypatch.setattr(docker, "containers", lambda label, *a, **k: list(fake.nodes))
    monkeypatch.setattr(docker, "inspect", lambda name, *a, **k: next(n for n in fake.nodes if n.name == name))
    monkeypatch.setattr(docker, "start", lambda name, *a, **k: fake.calls.append(("start", name)))
    monkeypatch.setattr(docker, "unpause", lambda name, *a, **k: fake.calls.append(("unpause", name)))
    monkeypatch.setattr(docker, "network_exists", lambda name, *a, **k: False)
    monkeypatch.setattr(chaoskit.cluster.kind, "_have", lambda tool: True)
    FakeKube.machine = fake
    monkeypatch.setattr(chaoskit.cluster.base, "Kube", FakeKube)
    return fake


def test_the_pytest_path_uses_a_cluster_with_fewer_nodes_as_it_is(machine, capsys):
    provider = get_provider("kind", provision=False, recreate=False)
    cluster = provider.up(ClusterSpec(name=NAME, workers=2, node_image=IMAGE))
    assert machine.calls == []  # neither deleted nor created
    assert (cluster.name, cluster.created, cluster.flavor) == (NAME, False, "stock")
    assert machine.waited_for[0] == "2 Ready nodes"  # waits for the nodes it has, not the 3 asked for
    err = capsys.readouterr().err
    assert (
        f"[chaoskit] cluster {NAME} has 2 nodes, not the 3 asked for (1 control plane + 2 workers): "
        f"using it as it is ('chaoskit cluster up --name {NAME} --workers 2 --node-image {IMAGE}' recreates it to fit)"
    ) in err.splitlines()


def test_the_pytest_path_uses_a_cluster_on_a_stale_image_with_a_warning(machine, capsys):
    provider = get_provider("kind", provision=False, recreate=False)
    cluster = provider.up(ClusterSpec(name=NAME, workers=1, node_image="kindest/node:newer"))
    assert machine.calls == []
    assert not cluster.created
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "using it as it is" in line]
    assert line.startswith(f"[chaoskit] warning: cluster {NAME} runs node image {IMAGE}, not kindest/node:newer")


def test_the_pytest_path_fails_on_an_unhealthy_cluster_with_the_command_that_fixes_it(machine):
    machine.healthy = False
    provider = get_provider("kind", provision=False, recreate=False)
    with pytest.raises(ClusterError) as raised:
        provider.up(ClusterSpec(name=NAME, workers=2, node_image=IMAGE))
    assert machine.calls == []
    assert str(raised.value) == (
        f"cluster {NAME} is not healthy (timed out after 240 s waiting for 2 Ready nodes): "
        f"run 'chaoskit cluster up --name {NAME} --workers 2 --node-image {IMAGE}', which repairs or recreates it"
    )


def test_the_cli_still_recreates_a_cluster_that_does_not_fit(machine, capsys):
    code = cli.main(["cluster", "up", "--no-provision", "--name", NAME, "--workers", "2", "--node-image", IMAGE])
    assert code == 0, capsys.readouterr().err
    assert machine.calls == [("delete", NAME), ("create", NAME, IMAGE)]
    assert len(machine.nodes) == 3
    assert f"cluster {NAME} is ready" in capsys.readouterr().out


def test_the_cluster_fixture_never_deletes_a_cluster_it_did_not_create(machine, monkeypatch, pytester):
    monkeypatch.setattr(chaoskit.session, "sweep_namespaces", lambda kube, only=None: [])
    monkeypatch.setattr(chaoskit.session, "sweep", lambda cluster, kube, scope=None: SweepResult((), (), ()))
    pytester.makepyfile(
        """
        def test_uses_it(cluster):
            print("CREATED=" + str(cluster.created))
        """
    )
    result = pytester.runpytest_inprocess(
        "-s",
        "-p",
        "no:cacheprovider",
        f"--chaos-cluster-name={NAME}",
        "--chaos-workers=2",
        f"--chaos-node-image={IMAGE}",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CREATED=False*"])
    result.stderr.fnmatch_lines([f"*cluster {NAME} has 2 nodes, not the 3 asked for*using it as it is*"])
    assert machine.calls == []  # not recreated at the start, not deleted at the end


def test_the_cluster_fixture_fails_in_one_line_on_an_unhealthy_cluster(machine, pytester):
    machine.healthy = False
    pytester.makepyfile("def test_uses_it(cluster):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--chaos-cluster-name={NAME}", "--chaos-workers=2", f"--chaos-node-image={IMAGE}"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"no cluster: cluster {NAME} is not healthy (*): run 'chaoskit cluster up --name {NAME} --workers 2 *"]
    )
    assert "During handling" not in result.stdout.str()  # the one line, not a chain of two
    assert machine.calls == []


def test_a_cluster_on_kinds_stock_image_keeps_kindnetd_and_coredns(machine):
    """kindest/node brings kindnetd and CoreDNS: chaoskit's network and DNS agents must stay out of it."""
    cluster = get_provider("kind", provision=False).up(ClusterSpec(name=NAME, workers=1, node_image=IMAGE))
    assert cluster.flavor == "stock"
    assert machine.applied == []
    assert ("delete-object", "Deployment", "coredns") not in machine.calls
    config = kind_config(ClusterSpec(name=NAME, workers=1), airgap=False)
    assert "networking" not in config  # kind's default CNI (kindnetd) stays


def test_a_cluster_on_the_airgap_image_gets_chaoskits_network_dns_and_volumes(machine):
    airgap = "chaoskit/node:v1.20.2-b2-r3-unit"
    machine.nodes = nodes_of(1, airgap)
    cluster = get_provider("kind", provision=False).up(ClusterSpec(name=NAME, workers=1, node_image=airgap))
    assert cluster.flavor == "airgap"
    assert {"DaemonSet/chaoskit-netd", "Deployment/chaoskit-dns", "DaemonSet/chaoskit-volumes"} <= set(machine.applied)
    assert ("delete-object", "Deployment", "coredns") in machine.calls  # kubeadm's, whose image is absent
    assert kind_config(ClusterSpec(name=NAME, workers=1), airgap=True)["networking"] == {"disableDefaultCNI": True}


def test_every_node_gets_a_zone_the_control_plane_its_own_and_the_workers_two_in_turn(machine, monkeypatch):
    from chaoskit.provision import images

    monkeypatch.setattr(images, "image_exists", lambda name: True)  # the node image is built (on this machine or not)
    machine.nodes = nodes_of(3, "kindest/node:v1.37.0")
    get_provider("kind", provision=False).up(ClusterSpec(name=NAME, workers=3))
    assert machine.zones == {
        f"{NAME}-control-plane": "zone-a",
        f"{NAME}-worker": "zone-b",
        f"{NAME}-worker2": "zone-c",
        f"{NAME}-worker3": "zone-b",
    }


def test_a_session_asking_for_a_line_not_built_here_warns_on_a_running_cluster_and_refuses_to_create(
    machine, monkeypatch, capsys
):
    """pytest builds no node image: asked for 1.20 where none is built, it neither pulls kind's 1.37 stock
    image nor keeps quiet about a running cluster of another version."""
    from chaoskit.provision import images

    monkeypatch.setattr(images, "image_exists", lambda name: False)
    provider = get_provider("kind", provision=False, recreate=False)
    provider.up(ClusterSpec(name=NAME, workers=1, kubernetes="1.20"))  # the running one runs IMAGE
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "using it as it is" in line]
    assert f"runs node image {IMAGE}, not Kubernetes 1.20 as asked" in line, line
    machine.clusters.clear()
    monkeypatch.setattr(chaoskit.cluster.kind, "run", lambda *a, **k: pytest.fail(f"ran {a}: pulled or built"))
    with pytest.raises(UsageError, match=r"no node image of Kubernetes v1\.20\.2 is on this machine: run "):
        provider.up(ClusterSpec(name=NAME, workers=1, kubernetes="1.20"))
    assert not [c for c in machine.calls if c[0] == "create"]
