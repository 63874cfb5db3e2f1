"""Your own image into the cluster, as a user gets it there.

``chaoskit image build`` and ``chaoskit image load`` run as commands, and the
``cluster_image`` fixture in a user's own test session (pytester, no conftest of
ours). What each node holds is read independently of chaoskit, with
``docker exec NODE ctr -n k8s.io images ls -q``. Every image here is new (its
directory holds a marker of the test run), so it is really loaded, and it is
removed from the nodes and from Docker afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoskit.cluster import Cluster

pytest_plugins = ["pytester"]

APP_DOCKERFILE = """\
ARG BASE
FROM $BASE
COPY index.html /srv/index.html
EXPOSE 8000
CMD ["python3", "-m", "http.server", "8000", "--directory", "/srv"]
"""


def write_app(directory: Path) -> str:
    """A directory a user would write: a Dockerfile on chaoskit's base image serving one page; return its marker."""
    marker = f"own image {uuid.uuid4().hex}"
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text(APP_DOCKERFILE)
    (directory / "index.html").write_text(marker + "\n")
    return marker


def chaoskit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args], capture_output=True, text=True, timeout=900, check=False
    )


def host(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=True).stdout


def node_names(cluster: Cluster) -> list[str]:
    label = f"label=io.x-k8s.kind.cluster={cluster.name}"
    return host("docker", "ps", "-a", "--filter", label, "--format", "{{.Names}}").split()


def images_on(node: str) -> set[str]:
    return set(host("docker", "exec", node, "ctr", "-n", "k8s.io", "images", "ls", "-q").split())


def ref(image: str) -> str:
    """containerd's name for a Docker Hub style name: ``a:1`` is ``docker.io/library/a:1``."""
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


@pytest.fixture
def remove_afterwards(cluster: Cluster) -> Iterator[list[str]]:
    """Images a test made: removed from every node (by name, digest and ID refs) and from Docker at the end."""
    made: list[str] = []
    yield made
    for image in made:
        inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", image]
        image_id = subprocess.run(inspect, capture_output=True, text=True, timeout=60).stdout.strip()
        for node in node_names(cluster):
            listing = subprocess.run(
                ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "ls"],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.splitlines()
            digests = {row.split()[2] for row in listing[1:] if row.split() and row.split()[0] == ref(image)}
            refs = [row.split()[0] for row in listing[1:] if len(row.split()) > 2 and row.split()[2] in digests]
            refs += [image_id] if image_id else []
            rm = ["docker", "exec", node, "ctr", "-n", "k8s.io", "images", "rm", *refs]
            subprocess.run(rm, capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=60)


def test_image_build_and_load_as_a_user_types_them(
    cluster: Cluster, tmp_path: Path, remove_afterwards: list[str]
) -> None:
    write_app(tmp_path / "ck-own-app")
    nodes = node_names(cluster)
    assert len(nodes) >= 2, nodes

    built = chaoskit("image", "build", str(tmp_path / "ck-own-app"))
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()
    remove_afterwards.append(image)
    assert re.fullmatch(r"chaoskit/ck-own-app:[0-9a-f]{12}", image), built.stdout
    assert f"building image {image}" in built.stderr
    again = chaoskit("image", "build", str(tmp_path / "ck-own-app"))
    assert again.returncode == 0 and again.stdout.strip() == image
    assert f"image {image}: present (built from the same files)" in again.stderr
    assert not any(ref(image) in images_on(node) for node in nodes)

    loaded = chaoskit("image", "load", image, "--name", cluster.name)
    assert loaded.returncode == 0, loaded.stderr
    assert f"image {image}: loaded into {len(nodes)} node(s) of {cluster.name}" in loaded.stderr
    assert loaded.stdout == f"1 image(s) on every node of {cluster.name}: {image}\n"
    for node in nodes:
        assert ref(image) in images_on(node), node

    skipped = chaoskit("image", "load", image, "--name", cluster.name)
    assert skipped.returncode == 0, skipped.stderr
    assert f"image {image}: already on every node of {cluster.name}, skipped" in skipped.stderr

    tag = f"ck-own-image:{uuid.uuid4().hex[:8]}"
    tagged = chaoskit("image", "build", str(tmp_path / "ck-own-app"), "--tag", tag)
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout == f"{tag}\n"
    remove_afterwards.append(tag)
    assert chaoskit("image", "load", tag, "--name", cluster.name).returncode == 0
    for node in nodes:
        assert f"docker.io/library/{tag}" in images_on(node), node


USER_TEST = """
from pathlib import Path

APP = Path(__file__).parent / "app"
MARKER = (APP / "index.html").read_text().strip()


def test_my_image_runs_in_a_pod(cluster_image, kube, namespace):
    image = cluster_image(APP)
    assert cluster_image(APP) == image and cluster_image(image) == image
    print("IMAGE=" + image)
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "Never",
        "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
    }
    kube.apply([pod])

    def running(pods):
        status = pods["app"].status if "app" in pods else None
        statuses = (status.container_statuses or []) if status else []
        return status is not None and status.phase == "Running" and bool(statuses) and all(c.ready for c in statuses)

    kube.wait_for(kube.core.list_namespaced_pod, running, 120, "pod app running and ready", namespace=namespace)
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/').read().decode())"
    code, out = kube.exec(namespace, "app", ["python3", "-c", fetch])
    assert code == 0 and MARKER in out, out
"""


def test_cluster_image_fixture_builds_loads_and_a_pod_runs_the_image(
    pytester: pytest.Pytester, cluster: Cluster, remove_afterwards: list[str]
) -> None:
    write_app(pytester.path / "app")
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", timeout=600)
    match = re.search(r"IMAGE=(\S+)", result.stdout.str())
    if match:
        remove_afterwards.append(match.group(1))
    result.assert_outcomes(passed=1)
    assert match and match.group(1).startswith("chaoskit/app:"), result.stdout.str()
    for node in node_names(cluster):
        assert ref(match.group(1)) in images_on(node), node


USER_EXPERIMENT = """
from pathlib import Path

from chaoskit import Availability, Cluster, Kube, LoadSpec, RecoveryTime, Workload

APP = Path(__file__).parent / "app"


def my_app(namespace, image, node_port):
    labels = {"app": "mine"}
    container = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "mine", "namespace": namespace},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "mine", "namespace": namespace},
            "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": 8000, "nodePort": node_port}]},
        },
    ]


def test_my_service_survives_a_pod_kill(cluster: Cluster, kube: Kube, namespace, cluster_image, experiment, chaos):
    image = cluster_image(APP)
    print("IMAGE=" + image)
    port = cluster.free_node_port(kube)
    kube.apply(my_app(namespace, image, port))
    kube.wait_whole(namespace, "mine", timeout=120)
    load = LoadSpec(host=f"http://127.0.0.1:{port}", run_seconds=30, users=4, rate_per_user=10, warmup_seconds=2)
    slo = [Availability(0.9), RecoveryTime(30)]
    with experiment(load, slo, Workload(namespace, "mine", "mine")) as run:
        with chaos.pod_kill(namespace, "app=mine", grace_seconds=0) as kill:
            print("KILLED=" + ",".join(kill.targets))
    print("VERDICT=" + run.result.outcome + " RECOVERY=" + str(run.result.verdict.recovery_s))
"""


def test_a_users_own_experiment_outside_the_repository_builds_deploys_kills_and_gets_a_verdict(
    pytester: pytest.Pytester, cluster: Cluster, remove_afterwards: list[str]
) -> None:
    write_app(pytester.path / "app")
    pytester.makepyfile(test_mine=USER_EXPERIMENT)
    assert not (pytester.path / "conftest.py").exists()
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:cacheprovider", f"--chaos-report-dir={pytester.path / 'reports'}", timeout=600
    )
    image = re.search(r"IMAGE=(\S+)", result.stdout.str())
    if image:
        remove_afterwards.append(image.group(1))
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    verdict = re.search(r"VERDICT=(\S+) RECOVERY=(\S+)", out)
    assert verdict and verdict.group(1) == "passed", out
    assert 0 < float(verdict.group(2)) < 30, out
    killed = re.search(r"KILLED=(\S+)", out)
    assert killed and killed.group(1).startswith("mine-"), out
    result.stdout.fnmatch_lines(["*PASSED test_my_service_survives_a_pod_kill; availability *; 2/2 objectives met"])
    journal = json.loads((pytester.path / "reports" / "chaoskit-journal.json").read_text())
    (run,) = journal["experiments"]
    assert [f["kind"] for f in run["faults"]] == ["pod-kill"] and run["faults"][0]["targets"] == [killed.group(1)]
    assert run["verdict"]["passed"] is True, run["verdict"]
