"""Your own images: their names, the build on chaoskit's base image, loading by image ID, the cluster_image fixture.

Docker and kind are faked at the adapters (``chaoskit.adapters.kind``,
``chaoskit.adapters.docker``, and the shell runner the builder calls); the
cluster is called ``ck-unit`` so nothing here could touch a real one.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from chaoskit import images
from chaoskit.adapters import docker, kind
from chaoskit.cluster.base import Cluster
from chaoskit.errors import ClusterError, ProvisionError, UsageError
from chaoskit.provision import userimages as builder

pytest_plugins = ["pytester"]

NODES = ("ck-unit-control-plane", "ck-unit-worker")


def app(directory: Path, text: str = "hello") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY index.html /srv/\n")
    (directory / "index.html").write_text(text)
    return directory


# --- names ------------------------------------------------------------------------------


def test_the_default_tag_is_a_digest_of_the_directorys_files(tmp_path):
    first = builder.image_tag(app(tmp_path / "shop"))
    assert re.fullmatch(r"chaoskit/shop:[0-9a-f]{12}", first)
    assert builder.image_tag(tmp_path / "shop") == first
    (tmp_path / "shop" / "__pycache__").mkdir()
    (tmp_path / "shop" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert builder.image_tag(tmp_path / "shop") == first  # byte code is not what the image is built from
    (tmp_path / "shop" / "index.html").write_text("changed")
    assert builder.image_tag(tmp_path / "shop") != first
    assert builder.image_tag(app(tmp_path / "My Shop_")).startswith("chaoskit/my-shop:")


def test_the_fixtures_keep_their_tags():
    # The rule the fixtures' tags were made by before the builder became public, so nothing built
    # or loaded already goes stale: each file's relative path and bytes, in order, into one sha256.
    web = Path(__file__).resolve().parents[2] / "fixtures" / "web"
    digest = hashlib.sha256()
    for path in sorted(p for p in web.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(web)).encode() + b"\0" + path.read_bytes() + b"\0")
    assert builder.image_tag(web) == f"chaoskit/web:{digest.hexdigest()[:12]}"
    assert builder.build_fixture_image.__doc__


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("myapp", "myapp:latest"),
        ("myapp:1", "myapp:1"),
        ("chaoskit/web:55eb0aa6c9cc", "chaoskit/web:55eb0aa6c9cc"),
        ("localhost:5000/team/app", "localhost:5000/team/app:latest"),
        ("k8s.gcr.io/pause:3.2", "k8s.gcr.io/pause:3.2"),
    ],
)
def test_image_names_get_the_tag_docker_reads_into_them(text, name):
    assert images.image_name(text) == name


@pytest.mark.parametrize("text", ["MyApp", "my app", "app:", ":1", "app:-x", "/app"])
def test_what_docker_would_refuse_as_a_name_is_a_usage_error(text):
    with pytest.raises(UsageError, match="is not an image name"):
        images.image_name(text)


@pytest.mark.parametrize(
    ("image", "ref"),
    [
        ("web:1", "docker.io/library/web:1"),
        ("chaoskit/web:1", "docker.io/chaoskit/web:1"),
        ("k8s.gcr.io/pause:3.2", "k8s.gcr.io/pause:3.2"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("localhost/app:1", "localhost/app:1"),
    ],
)
def test_containerd_names_images_with_their_registry(image, ref):
    assert kind.containerd_ref(image) == ref


def test_what_cluster_image_takes_for_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app(tmp_path / "app")
    assert images.is_directory_source(Path("anything"))
    assert images.is_directory_source("app")  # a directory here
    assert images.is_directory_source("./missing") and images.is_directory_source("/srv/missing")
    assert not images.is_directory_source("chaoskit/web:1")
    assert not images.is_directory_source("redis")


# --- the build --------------------------------------------------------------------------


@pytest.fixture
def docker_builds(monkeypatch, tmp_path):
    """The docker builds the builder starts; present images are those in the returned list's ``present``."""
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path / "cache"))
    builds: list[list[str]] = []
    present: set[str] = set()
    monkeypatch.setattr(docker, "require_daemon", lambda: None)
    monkeypatch.setattr(builder, "image_exists", lambda name: name in present)
    monkeypatch.setattr(builder, "build_base_image", lambda: None)

    def run_logged(args, log, **options):
        builds.append(list(args))
        present.add(args[args.index("-t") + 1])

    monkeypatch.setattr(builder, "run_logged", run_logged)
    return builds, present


def test_an_unchanged_directory_is_built_once_and_a_tag_builds_every_time(tmp_path, docker_builds, capsys):
    builds, _ = docker_builds
    directory = app(tmp_path / "app")
    name = images.build(directory)
    assert images.build(directory) == name
    assert images.build(directory, "app:dev") == "app:dev"
    assert images.build(directory, "app:dev") == "app:dev"
    assert [b[b.index("-t") + 1] for b in builds] == [name, "app:dev", "app:dev"]
    assert builds[0][:5] == ["docker", "build", "--force-rm", "--build-arg", f"BASE={builder.BASE_IMAGE}"]
    assert builds[0][-1] == str(directory)
    assert f"[chaoskit] image {name}: present (built from the same files)" in capsys.readouterr().err


def test_a_dockerfile_from_an_image_of_its_own_builds_no_base_first(tmp_path, docker_builds, monkeypatch):
    builds, _ = docker_builds
    bases: list[str] = []
    monkeypatch.setattr(builder, "build_base_image", lambda: bases.append("built"))
    images.build(app(tmp_path / "app"))
    assert bases == ["built"]  # FROM $BASE: chaoskit's base image first
    builds.clear()
    directory = tmp_path / "py"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY . /app\n")
    name = images.build(directory)
    assert builds == [["docker", "build", "--force-rm", "-t", name, str(directory)]]  # no BASE argument
    assert bases == ["built"]  # and no base built for it


def test_a_failed_build_is_one_line_with_the_logs_tail_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(docker, "require_daemon", lambda: None)
    monkeypatch.setattr(builder, "image_exists", lambda name: False)
    monkeypatch.setattr(builder, "build_base_image", lambda: None)
    logs: list[Path] = []

    def failing(args, log, **options):
        logs.append(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("Step 1/3 : FROM debian:bookworm\n\nGet https://registry-1.docker.io/v2/: no such host\n")
        raise ProvisionError(f"building failed (exit 1); last lines of {log}:\n...")

    monkeypatch.setattr(builder, "run_logged", failing)
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM debian:bookworm\n")
    with pytest.raises(ProvisionError) as raised:
        images.build(directory)
    message = str(raised.value)
    assert "\n" not in message
    assert message == (
        f"docker build of {directory} failed: Step 1/3 : FROM debian:bookworm | "
        f"Get https://registry-1.docker.io/v2/: no such host; full log: {logs[0]} "
        "(where no registry can be reached, start the Dockerfile with 'ARG BASE' and 'FROM $BASE', "
        "chaoskit's base image)"
    )
    (directory / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nRUN false\n")
    with pytest.raises(ProvisionError) as raised:
        images.build(directory)
    assert "where no registry" not in str(raised.value)  # it is on the base image: the hint would mislead


# --- loading ------------------------------------------------------------------------------


class FakeNodes:
    """Local images by ID, each node's images by ID, and the loads made."""

    def __init__(self, monkeypatch):
        self.local: dict[str, str] = {}
        self.on_node: dict[str, dict[str, str]] = {node: {} for node in NODES}
        self.loads: list[tuple[str, tuple[str, ...]]] = []
        monkeypatch.setattr(docker, "require_daemon", lambda: None)
        monkeypatch.setattr(kind, "nodes", self.nodes)
        monkeypatch.setattr(kind, "local_image_id", self.local.get)
        monkeypatch.setattr(kind, "node_image_id", lambda node, image: self.on_node[node].get(image))
        monkeypatch.setattr(kind, "load_image", self.load)

    def nodes(self, name):
        assert name == "ck-unit"
        return [docker.Container(n, "chaoskit/node:unit", "running", {}, (), (), 1000.0) for n in NODES]

    def load(self, name, image, log, nodes=()):
        self.loads.append((image, tuple(nodes)))
        for node in nodes:
            self.on_node[node][image] = kind.local_image_id(image)


def kind_cluster() -> Cluster:
    return Cluster(name="ck-unit", provider="kind", kubeconfig=None, context="kind-ck-unit", flavor="airgap")


def test_load_image_copies_an_image_only_where_its_id_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    fake = FakeNodes(monkeypatch)
    fake.local["app:1"] = "sha256:new"
    fake.on_node["ck-unit-worker"]["app:1"] = "sha256:old"  # the same name, an older build
    cluster = kind_cluster()
    assert cluster.load_image("app:1") == NODES
    assert cluster.load_image("app:1") == ()
    assert fake.loads == [("app:1", NODES)]


def test_load_image_of_an_image_docker_lacks(monkeypatch):
    FakeNodes(monkeypatch)
    with pytest.raises(UsageError, match=r"no local image app:1: build it with 'chaoskit image build DIR' or"):
        kind_cluster().load_image("app:1")


def test_load_image_into_an_existing_cluster_says_to_push_it(monkeypatch):
    cluster = Cluster(name="prod", provider="existing", kubeconfig=None, context="prod", flavor="existing")
    with pytest.raises(UsageError, match="push it to a registry the cluster pulls from"):
        cluster.load_image("app:1")


def test_the_image_id_on_a_node_is_its_config_digest(monkeypatch):
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:c0nf1g"}, "layers": []}
    calls = []

    def run_in(node, command, timeout):
        calls.append(command)
        if command[3:5] == ["images", "ls"]:
            return docker.ExecResult(
                0,
                "REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
                "docker.io/chaoskit/app:1 application/vnd.docker.distribution.manifest.v2+json sha256:m4n1f35t "
                "1.0 MiB linux/amd64 io.cri-containerd.image=managed\n",
                "",
            )
        return docker.ExecResult(0, json.dumps(manifest), "")

    monkeypatch.setattr(docker, "run_in", run_in)
    assert kind.node_image_id("ck-unit-worker", "chaoskit/app:1") == "sha256:c0nf1g"
    assert calls == [
        ["ctr", "-n", "k8s.io", "images", "ls", "name==docker.io/chaoskit/app:1"],
        ["ctr", "-n", "k8s.io", "content", "get", "sha256:m4n1f35t"],
    ]
    monkeypatch.setattr(docker, "run_in", lambda node, command, timeout: docker.ExecResult(0, "REF TYPE\n", ""))
    assert kind.node_image_id("ck-unit-worker", "chaoskit/app:1") is None
    monkeypatch.setattr(docker, "run_in", lambda node, command, timeout: docker.ExecResult(1, "", "ctr: boom"))
    with pytest.raises(ClusterError, match="cannot list the images of node ck-unit-worker: ctr: boom"):
        kind.node_image_id("ck-unit-worker", "chaoskit/app:1")


def test_cluster_images_builds_and_loads_each_source_once(monkeypatch, tmp_path, docker_builds):
    builds, present = docker_builds
    fake = FakeNodes(monkeypatch)
    directory = app(tmp_path / "app")
    monkeypatch.setattr(kind, "local_image_id", lambda image: f"sha256:{image}" if image in present else None)
    fake.local = {}
    images_of = images.ClusterImages(kind_cluster())
    name = images_of(directory)
    assert images_of(str(directory)) == name
    assert images_of(name) == name
    assert len(builds) == 1
    assert [image for image, _ in fake.loads] == [name]


def test_cluster_images_refuses_an_existing_cluster_before_building(tmp_path, docker_builds):
    builds, _ = docker_builds
    existing = Cluster(name="prod", provider="existing", kubeconfig=None, context="prod", flavor="existing")
    with pytest.raises(UsageError, match="push it to a registry the cluster pulls from"):
        images.ClusterImages(existing)(app(tmp_path / "app"))
    assert builds == []


# --- the fixture, as a user meets it ------------------------------------------------------


def test_the_cluster_image_fixture_returns_the_loaded_name_and_fails_in_one_line(
    pytester, monkeypatch, tmp_path, docker_builds
):
    builds, present = docker_builds
    fake = FakeNodes(monkeypatch)
    monkeypatch.setattr(kind, "local_image_id", lambda image: f"sha256:{image}" if image in present else None)
    fake.local = {}
    app(pytester.path / "app")
    pytester.makeconftest(
        """
        import pytest
        from chaoskit.cluster.base import Cluster

        @pytest.fixture(scope="session")
        def chaoskit_cluster():
            return Cluster(name="ck-unit", provider="kind", kubeconfig=None, context="kind-ck-unit", flavor="airgap")
        """
    )
    pytester.makepyfile(
        """
        from pathlib import Path

        APP = Path(__file__).parent / "app"

        def test_builds_and_loads(cluster_image):
            image = cluster_image(APP)
            assert image.startswith("chaoskit/app:")
            print("IMAGE=" + image)

        def test_again_in_the_same_session(cluster_image):
            assert cluster_image(APP).startswith("chaoskit/app:")

        def test_a_directory_that_is_not_there(cluster_image):
            cluster_image(APP.parent / "nope")

        def test_an_image_docker_lacks(cluster_image):
            cluster_image("chaoskit/typo:1")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=2, failed=2)
    assert len(builds) == 1 and len(fake.loads) == 1  # once per session
    result.stdout.fnmatch_lines(
        [
            "*cluster_image('*/nope'): there is no directory */nope: give the directory that holds your Dockerfile",
            "*cluster_image('chaoskit/typo:1'): there is no local image chaoskit/typo:1: build it with "
            "'chaoskit image build DIR' or 'docker pull chaoskit/typo:1' first",
        ]
    )
    assert "Traceback" not in result.stdout.str()
