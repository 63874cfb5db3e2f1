"""Your own image into the cluster, as a user gets it there.

``chaoskit image build`` and ``chaoskit image load`` run as commands, and the
``chaoskit_cluster_image`` fixture in a user's own repository (the wheel in a fresh
virtualenv, no conftest of ours). What each node holds is read independently of chaoskit, with
``docker exec NODE ctr -n k8s.io images ls -q``. Every image here is new (its
directory holds a marker of the test run), so it is really loaded, and it is
removed from the nodes and from Docker afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoskit.cluster import Cluster

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


USER_CONFTEST = """
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kubeconfig", default="theirs.yaml", help="their own option, not chaoskit's")


@pytest.fixture
def cluster() -> str:
    return "their own cluster fixture, meaning something else"
"""

USER_EXPERIMENT = """
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import chaoskit
from chaoskit import Availability, Chaos, Cluster, Experiment, Kube, LoadSpec, RecoveryTime, Workload

APP = Path(__file__).parent / "app"


def my_app(namespace: str, image: str, node_port: int) -> list[dict[str, object]]:
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


def test_my_service_survives_a_pod_kill(
    cluster: str,
    chaoskit_cluster: Cluster,
    chaoskit_kube: Kube,
    chaoskit_namespace: str,
    chaoskit_cluster_image: Callable[[str | Path], str],
    experiment: Callable[..., Experiment],
    chaos: Chaos,
) -> None:
    print("CHAOSKIT_FROM=" + str(Path(chaoskit.__file__).parent))
    assert cluster == "their own cluster fixture, meaning something else"
    image = chaoskit_cluster_image(APP)
    print("IMAGE=" + image)
    assert chaoskit_cluster_image(APP) == image and chaoskit_cluster_image(image) == image  # built and loaded once
    port = chaoskit_cluster.free_node_port(chaoskit_kube)
    chaoskit_kube.apply(my_app(chaoskit_namespace, image, port))
    chaoskit_kube.wait_whole(chaoskit_namespace, "mine", timeout=120)
    deadline = time.monotonic() + 30  # a new Service's NodePort takes a moment to be routed
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                served = page.read().decode()
            break
        except OSError:
            assert time.monotonic() < deadline, "the NodePort never served"
            time.sleep(0.5)
    assert served.strip() == (APP / "index.html").read_text().strip()  # the pods serve this build
    load = LoadSpec(host=f"http://127.0.0.1:{port}", run_seconds=15, users=4, rate_per_user=10, warmup_seconds=2)
    slo = [Availability(0.9), RecoveryTime(30)]
    with experiment(load, slo, Workload(chaoskit_namespace, "mine", "mine")) as run:
        with chaos.pod_kill(chaoskit_namespace, "app=mine", grace_seconds=0) as kill:
            print("KILLED=" + ",".join(kill.targets))
    assert run.result is not None
    print("VERDICT=" + run.result.outcome + " RECOVERY=" + str(run.result.verdict.recovery_s))
"""


def test_a_users_own_repository_installs_the_wheel_and_runs_an_experiment_beside_its_own_kubeconfig_option(
    tmp_path: Path, cluster: Cluster, remove_afterwards: list[str]
) -> None:
    """What ``pip install chaoskit`` gives a team's own repository: the wheel built from this checkout,
    installed with its dependencies into a fresh virtualenv outside the repository, and a project whose
    conftest adds ``--kubeconfig`` and a fixture named ``cluster`` of its own. Its typed test passes
    ``mypy --strict`` against the installed package, then builds its image with ``chaoskit_cluster_image``
    (once, whatever it is asked again), deploys it, reads the page only this build serves, kills a pod under
    load and gets a passing verdict, with chaoskit imported from the virtualenv, not from this checkout; every
    node holds the image (containerd's own CLI)."""
    repo = Path(__file__).resolve().parents[2]
    dist, venv, project = tmp_path / "dist", tmp_path / "venv", tmp_path / "their-service"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "-q", "-w", str(dist)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("chaoskit-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    write_app(project / "app")  # its page holds a new marker: served only by this build
    (project / "conftest.py").write_text(USER_CONFTEST)
    (project / "test_mine.py").write_text(USER_EXPERIMENT)
    # Nothing of this checkout on the path: the project sees only what the wheel installed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"

    mypy = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--python-executable",
        str(venv / "bin" / "python"),
    ]
    typed = subprocess.run(
        [*mypy, "test_mine.py", "conftest.py"], capture_output=True, text=True, timeout=300, cwd=project, env=env
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr

    run = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-s", "-p", "no:cacheprovider", "--kubeconfig", "theirs.yaml",
         f"--chaos-report-dir={project / 'reports'}"],
        capture_output=True, text=True, timeout=600, cwd=project, env=env,
    )  # fmt: skip
    out = run.stdout + run.stderr
    image = re.search(r"IMAGE=(\S+)", out)
    if image:
        remove_afterwards.append(image.group(1))
    assert run.returncode == 0, out
    assert f"CHAOSKIT_FROM={venv}/lib/" in out, out
    assert image and image.group(1).startswith("chaoskit/app:"), out
    for node in node_names(cluster):  # what each node holds, read by containerd's own CLI
        assert ref(image.group(1)) in images_on(node), node
    verdict = re.search(r"VERDICT=(\S+) RECOVERY=(\S+)", out)
    assert verdict and verdict.group(1) == "passed", out
    assert 0 < float(verdict.group(2)) < 30, out
    killed = re.search(r"KILLED=(\S+)", out)
    assert killed and killed.group(1).startswith("mine-"), out
    assert re.search(r"PASSED test_my_service_survives_a_pod_kill; availability .*; 2/2 objectives met", out), out
    journal = json.loads((project / "reports" / "chaoskit-journal.json").read_text())
    (experiment,) = journal["experiments"]
    assert [f["kind"] for f in experiment["faults"]] == ["pod-kill"]
    assert experiment["faults"][0]["targets"] == [killed.group(1)]
    assert experiment["verdict"]["passed"] is True, experiment["verdict"]
