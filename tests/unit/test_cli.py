"""The command line as a user meets it: bad input gives one line and exit 2, no traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaoskit import cli, upkeep
from chaoskit.state.ledger import Ledger, LedgerEntry

REPO = Path(__file__).resolve().parents[2]


def chaoskit(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def one_line_error(result):
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_provider():
    line = one_line_error(chaoskit("cluster", "status", "--provider", "minikube"))
    assert line.startswith("chaoskit: error: argument --provider: invalid choice: 'minikube'"), line


def test_a_context_or_kubeconfig_names_an_existing_cluster_without_provider_existing():
    from chaoskit.cluster import choose_provider

    flags = ("--provider", "--context", "--kubeconfig")
    assert choose_provider(None, None, None, flags) == "kind"
    assert choose_provider(None, "staging", None, flags) == "existing"
    assert choose_provider(None, None, "/tmp/kubeconfig", flags) == "existing"
    assert choose_provider("existing", "staging", None, flags) == "existing"
    line = one_line_error(chaoskit("cluster", "status", "--provider", "kind", "--context", "staging"))
    assert line == (
        "chaoskit: error: --context names an existing cluster, and --provider kind asks for a kind cluster "
        "(chosen by its name): drop --provider kind to use the cluster --context names, or drop --context"
    )


def test_missing_kubeconfig_context(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n"
        "contexts: [{name: real, context: {cluster: c, user: u}}]\ncurrent-context: real\n"
    )
    line = one_line_error(
        chaoskit("cluster", "status", "--provider", "existing", "--kubeconfig", str(kubeconfig), "--context", "nope")
    )
    assert "context 'nope'" in line and "kubectl config get-contexts" in line


def test_docker_daemon_not_running(tmp_path):
    # A socket path where no daemon listens is what a stopped daemon looks like to the client.
    env = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    line = one_line_error(chaoskit("cluster", "status", env=env))
    assert "the Docker daemon is not running" in line and "chaoskit cluster up" in line


def test_bad_node_ports():
    line = one_line_error(chaoskit("cluster", "up", "--node-ports", "lots", "--no-provision"))
    assert "--node-ports 'lots' is not FIRST-LAST" in line


class _DeletedCluster:
    """A provider whose ``down`` deletes nothing real: the ledger is what is under test."""

    def __init__(self):
        self.downed = []

    def down(self, spec):
        self.downed.append(spec.name)


def test_cluster_down_clears_that_clusters_ledger_and_says_what_it_dropped(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    provider = _DeletedCluster()
    monkeypatch.setattr(cli, "get_provider", lambda name, **options: provider)
    ledger, other = Ledger("ck-unit", tmp_path / "ledger"), Ledger("ck-other", tmp_path / "ledger")
    for fault_id in ("f-1", "f-2"):
        ledger.record(LedgerEntry(fault_id, "node-failure", "ck-unit", {"node": "ck-unit-worker"}))
    ledger.settle("f-1")
    other.record(LedgerEntry("f-3", "node-failure", "ck-other", {}))

    assert cli.main(["cluster", "down", "--name", "ck-unit"]) == 0
    assert provider.downed == ["ck-unit"]
    assert not ledger.path.exists()
    assert [e.fault_id for e in other.unsettled()] == ["f-3"]  # another cluster's ledger is left alone
    captured = capsys.readouterr()
    assert captured.out == "cluster ck-unit deleted\n"
    assert captured.err == (
        f"[chaoskit] dropped 1 unsettled fault(s) from the ledger {ledger.path}: they went with the cluster (f-2)\n"
    )


def test_cluster_down_of_a_cluster_with_every_fault_settled_drops_its_ledger_quietly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(cli, "get_provider", lambda name, **options: _DeletedCluster())
    ledger = Ledger("ck-unit", tmp_path / "ledger")
    ledger.record(LedgerEntry("f-1", "pod-kill", "ck-unit", {}))
    ledger.settle("f-1")
    assert cli.main(["cluster", "down", "--name", "ck-unit"]) == 0
    assert not ledger.path.exists()
    assert capsys.readouterr().err == ""


# --- chaoskit image build / load ----------------------------------------------------------


def test_argument_errors_are_one_line_naming_the_help_that_shows_the_usage():
    line = one_line_error(chaoskit("image", "build"))
    assert line == "chaoskit: error: the following arguments are required: DIR (see 'chaoskit image build --help')"
    line = one_line_error(chaoskit("image", "load"))
    assert line == "chaoskit: error: the following arguments are required: IMAGE (see 'chaoskit image load --help')"
    line = one_line_error(chaoskit("image", "push", "x"))
    assert line.startswith("chaoskit: error: argument ACTION: invalid choice: 'push'"), line
    assert line.endswith("(see 'chaoskit image --help')")


def test_image_help_shows_the_base_image_rule_and_examples():
    build = chaoskit("image", "build", "--help")
    assert build.returncode == 0
    assert "    ARG BASE\n    FROM $BASE\n" in build.stdout  # the epilog keeps its layout
    assert "chaoskit image build ./myapp --tag myapp:dev" in build.stdout
    assert "python3" in build.stdout and "bookworm" in build.stdout
    load = chaoskit("image", "load", "--help")
    assert load.returncode == 0
    assert "chaoskit image load myapp:dev redis:7 --name chaoskit" in load.stdout
    assert "imagePullPolicy: IfNotPresent" in load.stdout


def test_image_build_of_a_directory_that_does_not_exist(tmp_path):
    line = one_line_error(chaoskit("image", "build", str(tmp_path / "nope")))
    assert (
        line
        == f"chaoskit: error: there is no directory {tmp_path / 'nope'}: give the directory that holds your Dockerfile"
    )


def test_image_build_of_a_file_or_a_directory_without_a_dockerfile(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    line = one_line_error(chaoskit("image", "build", str(tmp_path / "notes.txt")))
    assert "is not a directory: give the directory that holds your Dockerfile" in line
    line = one_line_error(chaoskit("image", "build", str(tmp_path)))
    assert line == (
        f"chaoskit: error: {tmp_path} has no Dockerfile: write one that starts with 'ARG BASE' and 'FROM $BASE' "
        "(chaoskit's base image, a minimal Debian with python3)"
    )


def test_image_build_with_a_tag_docker_would_refuse(tmp_path):
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM $BASE\n")
    line = one_line_error(chaoskit("image", "build", str(tmp_path), "--tag", "My App"))
    assert "'My App' is not an image name" in line and "myapp:1" in line


def test_image_build_and_load_without_a_docker_daemon(tmp_path):
    (tmp_path / "Dockerfile").write_text("ARG BASE\nFROM $BASE\n")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    for args in (("image", "build", str(tmp_path)), ("image", "load", "myapp:1")):
        line = one_line_error(chaoskit(*args, env=env))
        assert "the Docker daemon is not running" in line, line


def test_image_load_into_an_existing_cluster_says_to_push_it_to_a_registry():
    line = one_line_error(chaoskit("image", "load", "myapp", "--provider", "existing", "--context", "prod"))
    assert line == (
        "chaoskit: error: cannot load myapp:latest into an existing cluster: chaoskit loads images only into kind "
        "clusters; push it to a registry the cluster pulls from and use that name in your manifests"
    )


class FakeKind:
    """The Docker images and kind nodes the image commands see; only the adapters' functions are replaced."""

    NAME = "ck-unit"

    def __init__(self, monkeypatch, tmp_path, nodes=("ck-unit-control-plane", "ck-unit-worker", "ck-unit-worker2")):
        from chaoskit.adapters import docker, kind

        monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path))
        self.local: dict[str, str] = {}
        self.on_node: dict[str, dict[str, str]] = {node: {} for node in nodes}
        self.states = dict.fromkeys(nodes, "running")
        self.clusters = [self.NAME]
        self.loads: list[tuple[str, tuple[str, ...]]] = []
        monkeypatch.setattr(docker, "require_daemon", lambda: None)
        monkeypatch.setattr(docker, "containers", self._containers)
        monkeypatch.setattr(kind, "clusters", lambda: list(self.clusters))
        monkeypatch.setattr(kind, "write_kubeconfig", lambda name, path: path.write_text("unit"))
        monkeypatch.setattr(kind, "local_image_id", self.local.get)
        monkeypatch.setattr(kind, "node_image_id", lambda node, image: self.on_node[node].get(image))
        monkeypatch.setattr(kind, "load_image", self._load)

    def _containers(self, label, timeout=30):
        from chaoskit.adapters import docker

        role = {True: "control-plane", False: "worker"}
        return [
            docker.Container(
                name=node,
                image="chaoskit/node:unit",
                state=self.states[node],
                labels={docker.KIND_CLUSTER_LABEL: self.NAME, docker.KIND_ROLE_LABEL: role[node.endswith("plane")]},
                volumes=(),
                networks=(),
                started_at=1000.0,
            )
            for node in self.on_node
        ]

    def _load(self, name, image, log, nodes=()):
        assert name == self.NAME
        self.loads.append((image, tuple(nodes)))
        for node in nodes or self.on_node:
            self.on_node[node][image] = self.local[image]


def test_image_load_copies_each_image_to_the_nodes_that_lack_it_and_skips_the_rest(monkeypatch, tmp_path, capsys):
    world = FakeKind(monkeypatch, tmp_path)
    world.local |= {"chaoskit/app:1": "sha256:a1", "redis:7": "sha256:r7", "myapp:latest": "sha256:m2"}
    for node in world.on_node:
        world.on_node[node]["redis:7"] = "sha256:r7"  # on every node: skipped
        world.on_node[node]["myapp:latest"] = "sha256:m1"  # rebuilt under the same name since: loaded again
    world.on_node["ck-unit-worker"]["chaoskit/app:1"] = "sha256:a1"

    assert cli.main(["image", "load", "chaoskit/app:1", "redis:7", "myapp", "--name", "ck-unit"]) == 0
    assert world.loads == [
        ("chaoskit/app:1", ("ck-unit-control-plane", "ck-unit-worker2")),
        ("myapp:latest", ("ck-unit-control-plane", "ck-unit-worker", "ck-unit-worker2")),
    ]
    captured = capsys.readouterr()
    assert captured.out == "3 image(s) on every node of ck-unit: chaoskit/app:1, redis:7, myapp:latest\n"
    assert captured.err.splitlines() == [
        "[chaoskit] image chaoskit/app:1: loaded into 2 node(s) of ck-unit (ck-unit-control-plane, ck-unit-worker2)",
        "[chaoskit] image redis:7: already on every node of ck-unit, skipped",
        "[chaoskit] image myapp:latest: loaded into 3 node(s) of ck-unit "
        "(ck-unit-control-plane, ck-unit-worker, ck-unit-worker2)",
    ]


def test_image_load_of_an_image_docker_lacks_loads_nothing(monkeypatch, tmp_path, capsys):
    world = FakeKind(monkeypatch, tmp_path)
    world.local["chaoskit/app:1"] = "sha256:a1"
    assert cli.main(["image", "load", "chaoskit/app:1", "chaoskit/typo:1", "--name", "ck-unit"]) == 2
    assert world.loads == []  # not even the image that exists: a typo must not leave half a load
    assert capsys.readouterr().err == (
        "chaoskit: error: there is no local image chaoskit/typo:1: build it with 'chaoskit image build DIR' "
        "or 'docker pull chaoskit/typo:1' first\n"
    )


def test_image_load_into_a_cluster_that_does_not_exist(monkeypatch, tmp_path, capsys):
    world = FakeKind(monkeypatch, tmp_path)
    world.local["chaoskit/app:1"] = "sha256:a1"
    world.clusters = []
    assert cli.main(["image", "load", "chaoskit/app:1", "--name", "ck-unit"]) == 2
    assert capsys.readouterr().err == (
        "chaoskit: error: there is no kind cluster named ck-unit: create it with 'chaoskit cluster up --name ck-unit'\n"
    )
    assert cli.main(["image", "load", "chaoskit/app:1"]) == 2
    assert "create it with 'chaoskit cluster up'\n" in capsys.readouterr().err


def test_image_load_into_a_cluster_with_a_stopped_node(monkeypatch, tmp_path, capsys):
    world = FakeKind(monkeypatch, tmp_path)
    world.local["chaoskit/app:1"] = "sha256:a1"
    world.states["ck-unit-worker2"] = "exited"
    assert cli.main(["image", "load", "chaoskit/app:1", "--name", "ck-unit"]) == 2
    assert world.loads == []
    assert capsys.readouterr().err == (
        "chaoskit: error: cannot load chaoskit/app:1 into cluster ck-unit: node ck-unit-worker2 is exited; "
        "run 'chaoskit cluster up --name ck-unit', which starts it\n"
    )


def test_image_build_prints_the_image_name_alone_on_stdout(monkeypatch, tmp_path, capsys):
    from chaoskit.adapters import docker
    from chaoskit.provision import userimages as images

    built = []
    monkeypatch.setenv("CHAOSKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(docker, "require_daemon", lambda: None)
    monkeypatch.setattr(images, "image_exists", lambda name: False)
    monkeypatch.setattr(images, "build_base_image", lambda: None)
    monkeypatch.setattr(images, "run_logged", lambda args, log, **options: built.append(args))
    app = tmp_path / "My App"
    app.mkdir()
    (app / "Dockerfile").write_text("ARG BASE\nFROM $BASE\n")

    assert cli.main(["image", "build", str(app)]) == 0
    name = capsys.readouterr().out.strip()
    assert name.startswith("chaoskit/my-app:") and len(name.split(":")[1]) == 12
    assert cli.main(["image", "build", str(app), "--tag", "registry.local:5000/team/app"]) == 0
    assert capsys.readouterr().out == "registry.local:5000/team/app:latest\n"
    assert [args[args.index("-t") + 1] for args in built] == [name, "registry.local:5000/team/app:latest"]
    assert all(f"BASE={images.BASE_IMAGE}" in args for args in built)


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    done = chaoskit("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"chaoskit {version('chaoskit')}", done


def test_the_package_says_it_is_typed():
    import tomllib
    from importlib.resources import files
    from pathlib import Path

    assert files("chaoskit").joinpath("py.typed").is_file()
    config = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["chaoskit"]  # shipped in the wheel too


def test_status_says_residue_in_json_and_by_its_exit_status():
    from chaoskit.control import ActiveFault, Status, TestNamespace
    from chaoskit.state.ledger import LedgerEntry

    entry = LedgerEntry(fault_id="partition-1", kind="partition", cluster="c", undo={}, at=100.0, pid=7)
    live = Status("c", [ActiveFault(entry, alive=True)], [TestNamespace("ck-a", "7", True, "Active", 5.0)])
    assert not live.residue and live.as_json(now=110.0)["faults"][0]["ageSeconds"] == 10.0
    dead_fault = Status("c", [ActiveFault(entry, alive=False)], [])
    dead_namespace = Status("c", [], [TestNamespace("ck-b", "9", False, "Active", 5.0)])
    assert dead_fault.residue and dead_namespace.residue
    going = Status("c", [], [TestNamespace("ck-c", "9", False, "Terminating", 5.0)])
    assert not going.residue  # already being deleted: what a run that just ended leaves for a while
    said = json.loads(json.dumps(dead_fault.as_json(now=110.0)))  # plain JSON all through
    assert said["residue"] is True and said["faults"][0]["ownerAlive"] is False
    assert said["faults"][0]["owner"]["pid"] == 7


def test_status_cleanup_abort_and_agent_status_say_the_same_fields_as_json_or_yaml(capsys):
    import yaml

    parser = cli._parser()
    for argv in (["status"], ["cleanup"], ["abort"], ["agent", "status"]):
        for output in ("text", "json", "yaml"):
            assert parser.parse_args([*argv, "-o", output]).output == output
        assert parser.parse_args(argv).output == "text"
    document = {"cluster": "c", "undone": ["partition-1: 2 rule(s) removed"], "failed": []}
    for output, read in (("json", json.loads), ("yaml", yaml.safe_load)):
        upkeep.emit(SimpleNamespace(output=output), document, ["the text"])
        assert read(capsys.readouterr().out) == document
    upkeep.emit(SimpleNamespace(output="text"), document, ["line one", "line two"])
    assert capsys.readouterr().out == "line one\nline two\n"


def test_validate_checks_files_offline_with_no_docker_and_no_cluster(tmp_path):
    """PATH without docker and a Docker socket that does not exist: the files are judged all the same."""
    good = [str(p) for p in sorted((Path(__file__).parents[2] / "experiments").glob("*.chaos.yaml"))]
    bad = tmp_path / "bad.chaos.yaml"
    bad.write_text("namespace: auto\nload:\n  users: two\n")
    env = {**os.environ, "PATH": str(tmp_path), "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "validate", *good], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": valid (") == len(good) >= 2
    refused = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "validate", good[0], str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 1
    assert f"{bad}: NOT valid, " in refused.stdout and f"  {bad}:3: load.users: " in refused.stdout, refused.stdout
    assert "1 of 2 file(s) valid" in refused.stdout


CHAOSKIT = [sys.executable, "-m", "chaoskit.cli"]


def test_the_completion_script_completes_commands_fault_kinds_and_their_options(tmp_path):
    script = tmp_path / "chaoskit.bash"
    done = subprocess.run([*CHAOSKIT, "completion", "bash"], capture_output=True, text=True, check=True)
    script.write_text(done.stdout)

    def complete(*words: str) -> list[str]:
        # bash itself runs the completion function, as it does on <TAB>
        line = " ".join(words)
        program = (
            f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; "
            '_shtab_chaoskit; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True).stdout
        return sorted(set(out.split()))

    assert complete("chaoskit", "inj") == ["inject"]
    assert {"pod-kill", "partition", "node-failure"} <= set(complete("chaoskit", "inject", ""))
    assert complete("chaoskit", "inject", "pod-kill", "--grace") == ["--grace-seconds"]
    assert complete("chaoskit", "status", "-o", "") == ["json", "text", "yaml"]
    zsh = subprocess.run([*CHAOSKIT, "completion", "zsh"], capture_output=True, text=True, check=True).stdout
    assert "#compdef chaoskit" in zsh and "*.chaos.yaml" in zsh


def test_chaoskit_cluster_and_kubernetes_in_the_environment_set_the_defaults_every_front_end_uses(monkeypatch):
    """A test or a script that starts chaoskit in a subprocess reaches the cluster its caller named: options
    win over the environment, the environment over chaoskit's defaults."""
    from chaoskit.cluster import ClusterSpec
    from chaoskit.gameday import command

    monkeypatch.setenv("CHAOSKIT_CLUSTER", "k137")
    monkeypatch.setenv("CHAOSKIT_KUBERNETES", "1.37")
    up = cli._parser().parse_args(["cluster", "up"])
    assert (up.name, up.kubernetes) == ("k137", "1.37")
    assert cli._spec(up).name == "k137" and cli._spec(up).kubernetes == "1.37"
    named = cli._parser().parse_args(["cluster", "up", "--name", "other", "--kubernetes", "1.20"])
    assert (named.name, named.kubernetes) == ("other", "1.20")
    assert cli._parser().parse_args(["status"]).name == "k137"
    assert cli._parser().parse_args(["inject", "pod-kill", "-l", "app=web"]).name == "k137"
    run = cli._parser().parse_args(["run", "x.chaos.yaml"])
    assert command.spec_for(run, SimpleNamespace(cluster=None)).name == "k137"  # type: ignore[arg-type]
    assert ClusterSpec().name == "k137" and ClusterSpec().kubernetes == "1.37"
    monkeypatch.delenv("CHAOSKIT_CLUSTER")
    monkeypatch.delenv("CHAOSKIT_KUBERNETES")
    assert ClusterSpec().name == "chaoskit" and ClusterSpec().kubernetes is None
    assert cli._parser().parse_args(["status"]).name == "chaoskit"


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["-q", "validate"], "WARNING"),
        (["validate", "-q"], "WARNING"),
        (["validate", "--verbose"], "DEBUG"),
        (["validate"], "INFO"),
    ],
)
def test_v_and_q_set_the_progress_lines_level_before_or_after_the_command(argv, level, tmp_path, capsys):
    import logging

    from chaoskit.adapters import shell

    path = REPO / "experiments" / "web-pod-kill.chaos.yaml"
    try:
        assert cli.main([*argv, str(path)]) == 0
        assert logging.getLevelName(shell.LOGGER.level) == level
        shell.say("running: a command", logging.DEBUG)
        shell.say("a progress line")
        shell.warn("a namespace left behind")
        err = capsys.readouterr().err.splitlines()
        lines = ["[chaoskit] running: a command", "[chaoskit] a progress line", "[chaoskit] a namespace left behind"]
        shown = {"DEBUG": 3, "INFO": 2, "WARNING": 1}[level]
        assert err == lines[3 - shown :]
    finally:
        shell.set_level("info")


def test_v_and_q_together_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["-v", "-q", "status"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("chaoskit: error: argument -q/--quiet: not allowed with argument -v")
