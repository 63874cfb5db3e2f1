"""The pytest plugin as a user meets it, through pytester."""

import os
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from chaoskit.namespaces import NAMESPACE_LABEL, OWNER_BOOT, OWNER_PID, OWNER_STARTED, sweep_namespaces
from chaoskit.state.owners import current_boot_id

pytest_plugins = ["pytester"]


def test_unknown_provider_is_a_usage_error_with_the_fix(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--chaos-provider=minikube")
    result.stderr.fnmatch_lines(["*--chaos-provider 'minikube' is unknown: choose one of kind, existing*"])
    assert result.ret == 4
    kind_with_context = pytester.runpytest("--chaos-provider=kind", "--chaos-kube-context=staging")
    kind_with_context.stderr.fnmatch_lines(
        ["*--chaos-kube-context names an existing cluster, and --chaos-provider kind asks for a kind cluster*"]
    )


def test_existing_provider_needs_a_context(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--chaos-provider=existing")
    result.stderr.fnmatch_lines(["*an existing cluster needs --chaos-kube-context=NAME*"])


def test_cluster_tests_are_marked_and_can_be_deselected(pytester):
    pytester.makepyfile(
        """
        def test_needs_cluster(cluster):
            pass

        def test_pure():
            pass
        """
    )
    result = pytester.runpytest("-m", "not cluster")
    result.assert_outcomes(passed=1, deselected=1)


def test_options_are_registered(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*chaos and resilience testing*", "*--chaos-provider*", "*--chaos-keep-cluster*"])


def test_chaos_repeat_runs_each_experiment_n_times(pytester):
    pytester.makepyfile(
        """
        def test_experiment_like(chaos_repeat_index):
            print("RUN", chaos_repeat_index)

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("--chaos-repeat=3", "-v", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_experiment_like[[]run1of3[]]*", "*test_experiment_like[[]run3of3[]]*"])
    assert pytester.runpytest("--chaos-repeat=0").ret == 4


def test_chaos_repeat_collects_an_experiment_file_once_per_run(pytester):
    source = Path(__file__).parents[2] / "experiments" / "web-pod-kill.chaos.yaml"
    (pytester.path / "systems").mkdir()
    (pytester.path / "systems" / "web-tier.yaml").write_text((source.parent / "systems" / "web-tier.yaml").read_text())
    (pytester.path / "web.chaos.yaml").write_text(source.read_text().replace("../fixtures/web", "web"))
    (pytester.path / "web").mkdir()
    (pytester.path / "web" / "Dockerfile").write_text("ARG BASE\nFROM $BASE\n")
    once = pytester.runpytest("--collect-only", "-q")
    once.stdout.fnmatch_lines(["web.chaos.yaml::web pod kill under load (file)", "1 test collected*"])
    result = pytester.runpytest("--chaos-repeat=3", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "web.chaos.yaml::web pod kill under load (file)[[]run1of3[]]",
            "web.chaos.yaml::web pod kill under load (file)[[]run2of3[]]",
            "web.chaos.yaml::web pod kill under load (file)[[]run3of3[]]",
            "3 tests collected*",
        ]
    )


def test_the_namespace_fixture_marks_its_owner_by_lease_pid_boot_and_start_time(pytester):
    # chaoskit's kube fixture is replaced by one that records what the namespace fixture creates.
    pytester.makepyfile(
        """
        import os
        from types import SimpleNamespace

        import psutil
        import pytest

        from chaoskit.state.owners import current_boot_id


        class Core:
            def __init__(self):
                self.created = []

            def create_namespace(self, body):
                self.created.append(body)

            def delete_namespace(self, name, **options):
                pass


        class Coordination:
            def __init__(self):
                self.leases = []

            def create_namespaced_lease(self, namespace, body):
                self.leases.append((namespace, body))


        @pytest.fixture
        def chaoskit_kube(monkeypatch):
            from chaoskit.state import leases

            monkeypatch.setattr(leases, "_owners", {})  # an owner of an earlier in-process run is not this one's
            return SimpleNamespace(
                core=Core(), coordination=Coordination(), wait_for_default_service_account=lambda name: None
            )


        def test_marks(chaoskit_kube, namespace):
            kube = chaoskit_kube
            system, body = kube.core.created  # chaoskit-system (for the owner lease), then the test's own
            assert system["metadata"]["name"] == "chaoskit-system"
            ((lease_namespace, lease),) = kube.coordination.leases
            assert lease_namespace == "chaoskit-system"
            assert lease["spec"]["leaseDurationSeconds"] == 15
            meta = body["metadata"]
            assert meta["name"] == namespace
            assert meta["labels"]["chaoskit.io/owner"] == lease["metadata"]["name"]
            assert meta["labels"]["chaoskit.io/owner-pid"] == str(os.getpid())
            assert meta["annotations"]["chaoskit.io/owner-boot-id"] == current_boot_id()
            started = float(meta["annotations"]["chaoskit.io/owner-started-at"])
            assert started == psutil.Process(os.getpid()).create_time()
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def _namespace(name, pid, boot, started=None, phase="Active"):
    annotations = {OWNER_BOOT: boot} | ({OWNER_STARTED: started} if started is not None else {})
    metadata = SimpleNamespace(
        name=name, labels={NAMESPACE_LABEL: "true", OWNER_PID: str(pid)}, annotations=annotations
    )
    return SimpleNamespace(metadata=metadata, status=SimpleNamespace(phase=phase))


class _Core:
    def __init__(self, namespaces):
        self.namespaces = namespaces
        self.deleted = []

    def list_namespace(self, label_selector):
        assert label_selector == NAMESPACE_LABEL
        return SimpleNamespace(items=self.namespaces)

    def delete_namespace(self, name, **options):
        self.deleted.append(name)


def test_sweep_namespaces_judges_owners_by_start_time_too():
    pid, boot, started = os.getpid(), current_boot_id(), psutil.Process(os.getpid()).create_time()
    core = _Core(
        [
            _namespace("ck-mine", pid, boot, repr(started)),
            _namespace("ck-pid-reused", pid, boot, repr(started - 3600)),  # same pid and boot, another process
            _namespace("ck-older-session", pid, boot),  # marked before start times were: pid and boot decide
            _namespace("ck-other-boot", pid, "another-boot", repr(started)),
            _namespace("ck-going", pid, boot, repr(started - 3600), phase="Terminating"),
        ]
    )
    assert sweep_namespaces(SimpleNamespace(core=core)) == ["ck-pid-reused", "ck-other-boot"]
    assert core.deleted == ["ck-pid-reused", "ck-other-boot"]


def test_the_options_the_safety_messages_name_exist_and_lift_exactly_those_rules(pytester):
    pytester.makepyfile(
        """
        import pytest
        from types import SimpleNamespace
        from chaoskit.cluster.base import Cluster
        from chaoskit.errors import SafetyError
        from chaoskit.faults import NodeDrain, NodeDrainSpec
        from chaoskit.faults.safety import Safety

        def control_plane_kube():
            node = SimpleNamespace(
                metadata=SimpleNamespace(name="cp", labels={"node-role.kubernetes.io/control-plane": ""}),
                spec=SimpleNamespace(unschedulable=False),
            )
            return SimpleNamespace(nodes=lambda: [node])

        def test_rules(pytestconfig):
            from chaoskit.plugin import _SAFETY
            safety = pytestconfig.stash[_SAFETY]
            safety.check_namespace("kube-system")
            with pytest.raises(SafetyError, match="--chaos-allow-namespace=kube-public"):
                safety.check_namespace("kube-public")
            cluster = Cluster("unit", "kind", None, None, "airgap")
            allowed = safety.with_max_share(1.0)
            assert NodeDrain(cluster, control_plane_kube(), NodeDrainSpec("cp"), allowed).plan() == ["cp"]
            with pytest.raises(SafetyError, match="--chaos-allow-control-plane"):
                NodeDrain(cluster, control_plane_kube(), NodeDrainSpec("cp"), Safety(front_end="pytest")).plan()
        """
    )
    result = pytester.runpytest("--chaos-allow-namespace=kube-system", "--chaos-allow-control-plane")
    result.assert_outcomes(passed=1)


def test_every_option_has_an_ini_twin_and_the_command_line_wins(pytester):
    pytester.makeini(
        """
        [pytest]
        chaos_workers = 4
        chaos_report_dir = from-ini
        chaos_allow_namespace =
            kube-system
            kube-public
        chaos_dry_run = true
        chaos_max_share = 0.25
        """
    )
    pytester.makepyfile(
        """
        from chaoskit.plugin import setting

        def test_settings(pytestconfig):
            assert setting(pytestconfig, "workers") == 4
            assert setting(pytestconfig, "allow-namespace") == ("kube-system", "kube-public")
            assert setting(pytestconfig, "dry-run") is True
            assert setting(pytestconfig, "max-share") == 0.25
            assert setting(pytestconfig, "report-dir") == "from-cli"
            assert setting(pytestconfig, "cluster-name") == "chaoskit"
        """
    )
    pytester.runpytest("--chaos-report-dir=from-cli").assert_outcomes(passed=1)


def test_a_neighbour_that_adds_kubeconfig_workers_and_a_cluster_fixture_lives_beside_the_plugin(pytester):
    """chaoskit's options are all prefixed, so another plugin or a conftest may own --kubeconfig and --workers;
    a user's own ``cluster`` fixture is theirs, and chaoskit's stays reachable by its prefixed name."""
    pytester.makeconftest(
        """
        import pytest

        def pytest_addoption(parser):
            parser.addoption("--kubeconfig", default="theirs.yaml")
            parser.addoption("--workers", type=int, default=1)

        @pytest.fixture
        def cluster():
            return "the user's own cluster"
        """
    )
    pytester.makepyfile(
        """
        from chaoskit.plugin import setting

        def test_both(pytestconfig, cluster):
            assert pytestconfig.getoption("--kubeconfig") == "mine.yaml"
            assert pytestconfig.getoption("--workers") == 4
            assert setting(pytestconfig, "kubeconfig") is None and setting(pytestconfig, "workers") == 2
            assert cluster == "the user's own cluster"
        """
    )
    result = pytester.runpytest("--kubeconfig", "mine.yaml", "--workers=4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    listed = pytester.runpytest("--fixtures", "-p", "no:cacheprovider").stdout.str()
    assert "chaoskit_cluster [session scope]" in listed and "chaoskit_namespace" in listed


def test_a_pytest_session_that_holds_no_fault_keeps_sigterm_as_it_was(pytester):
    pytester.makepyfile(
        """
        import signal

        def test_sigterm_is_untouched():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_an_experiment_file_is_collected_as_an_item_and_a_bad_one_is_a_collection_error(pytester):
    good = (Path(__file__).parent / "data" / "web-pod-kill.chaos.yaml").read_text()
    data = Path(__file__).parent / "data"
    fixture = str(data.parents[2] / "fixtures" / "web")
    pytester.makefile(".chaos.yaml", good=good.replace("../../../fixtures/web", fixture))
    (pytester.path / "web-tier.yaml").write_text((data / "web-tier.yaml").read_text())
    pytester.makefile(".chaos.yaml", bad=good.replace("kind: pod-kill", "kind: pod-kil", 1))
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["good.chaos.yaml::web pod kill under load"])
    result.stdout.fnmatch_lines(['*bad.chaos.yaml:*: faults[[]0[]].kind: unknown fault kind "pod-kil"; did you mean*'])
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error stops the run before anything starts


def test_repeated_runs_share_a_group_and_parametrized_variants_do_not():
    from chaoskit.plugin import repeat_group

    assert repeat_group("test_kill") == "test_kill"
    assert repeat_group("test_kill[run2of3]") == "test_kill"
    assert repeat_group("test_kill[crash]") == "test_kill[crash]"
    assert repeat_group("test_kill[crash-run1of5]") == repeat_group("test_kill[crash-run5of5]") == "test_kill[crash]"
    assert repeat_group("test_kill[run1of2-wait-for-it]") == "test_kill[wait-for-it]"
    assert repeat_group("test_kill[async]") != repeat_group("test_kill[wait]")


def test_the_cluster_name_and_line_come_from_the_environment_unless_the_ini_or_the_command_line_says(
    pytester, monkeypatch
):
    """pytester's subprocesses drop PYTEST_ADDOPTS; an environment variable reaches every pytest and CLI run."""
    pytester.makepyfile(
        """
        from chaoskit.plugin import _spec

        def test_spec(pytestconfig):
            spec = _spec(pytestconfig, "kind")
            print(f"SPEC name={spec.name} kubernetes={spec.kubernetes}")
        """
    )
    monkeypatch.setenv("CHAOSKIT_CLUSTER", "k137")
    monkeypatch.setenv("CHAOSKIT_KUBERNETES", "1.37")
    pytester.runpytest("-s").stdout.fnmatch_lines(["*SPEC name=k137 kubernetes=1.37*"])
    given = pytester.runpytest("-s", "--chaos-cluster-name", "flag", "--chaos-kubernetes", "1.20")
    given.stdout.fnmatch_lines(["*SPEC name=flag kubernetes=1.20*"])
    pytester.makeini("[pytest]\nchaos_cluster_name = ini\n")
    pytester.runpytest("-s").stdout.fnmatch_lines(["*SPEC name=ini kubernetes=1.37*"])
    monkeypatch.delenv("CHAOSKIT_CLUSTER")
    monkeypatch.delenv("CHAOSKIT_KUBERNETES")
    pytester.makeini("[pytest]\n")
    pytester.runpytest("-s").stdout.fnmatch_lines(["*SPEC name=chaoskit kubernetes=None*"])


def test_the_log_level_option_sets_chaoskits_lines_and_a_bad_level_is_a_usage_error(pytester):
    pytester.makepyfile(
        """
        import logging
        from chaoskit.adapters.shell import LOGGER, say

        def test_quiet(capsys):
            assert LOGGER.level == logging.WARNING
            say("progress nobody asked for")
            say("a namespace was left behind", logging.WARNING)
            assert capsys.readouterr().err == "[chaoskit] a namespace was left behind\\n"
        """
    )
    result = pytester.runpytest_subprocess("--chaos-log-level=warning", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    bad = pytester.runpytest_subprocess("--chaos-log-level=loud", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--chaos-log-level: log level must be one of debug, info, warning, error, not 'loud'*"])


def test_node_ports_are_what_a_kind_cluster_publishes_and_what_an_existing_one_reaches(pytester):
    pytester.makepyfile(
        """
        from chaoskit.plugin import _spec

        def test_spec(pytestconfig):
            kind, existing = _spec(pytestconfig, "kind"), _spec(pytestconfig, "existing")
            print(f"KIND {kind.node_ports[0]}-{kind.node_ports[-1]} {kind.reachable_node_ports}")
            print(f"EXISTING {existing.node_ports[0]}-{existing.node_ports[-1]} {existing.reachable_node_ports}")
        """
    )
    given = pytester.runpytest("-s", "--chaos-node-ports", "30090-30091")
    given.stdout.fnmatch_lines(["*KIND 30090-30091 ()*", "*EXISTING 30080-30089 (30090, 30091)*"])
    pytester.runpytest("-s").stdout.fnmatch_lines(["*KIND 30080-30089 ()*", "*EXISTING 30080-30089 ()*"])


def test_the_controller_deletes_every_cluster_its_workers_brought_up_by_name(pytester, monkeypatch):
    """Under ``pytest -n`` each worker may bring up a cluster of its own (tests/cluster/conftest.py)."""
    from types import SimpleNamespace

    from chaoskit.cluster import ClusterSpec
    from chaoskit.plugin import _SPEC, results

    deleted: list[str] = []
    monkeypatch.setattr(results, "delete_cluster", lambda spec: deleted.append(spec.name))
    config = pytester.parseconfig()
    config.stash[_SPEC] = ClusterSpec(name="chaoskit")
    controller = results._Controller(config)
    for output in ({"chaoskit_created_cluster": "chaoskit"}, {}, {"chaoskit_created_cluster": "chaoskit-gw1"}):
        controller.pytest_testnodedown(SimpleNamespace(workeroutput=output), None)
    controller.pytest_sessionfinish()
    assert deleted == ["chaoskit", "chaoskit-gw1"]
    kept = pytester.parseconfig("--chaos-keep-cluster")
    kept.stash[_SPEC] = ClusterSpec(name="chaoskit")
    keeper = results._Controller(kept)
    keeper.pytest_testnodedown(SimpleNamespace(workeroutput={"chaoskit_created_cluster": "chaoskit-gw1"}), None)
    keeper.pytest_sessionfinish()
    assert deleted == ["chaoskit", "chaoskit-gw1"]
