"""The plugin's fixtures as a user meets them: a pytest run in a subprocess, on the real cluster."""

from __future__ import annotations

import json
import re

import pytest
from kubernetes.client.exceptions import ApiException
from workloads import Web, probe_eventually

from chaoskit.adapters.kube import Kube
from chaoskit.faults.netns import locate
from chaoskit.faults.netrules import rules_in
from chaoskit.state.ledger import Ledger

pytest_plugins = ["pytester"]


def test_namespace_fixture_gives_a_labelled_namespace_and_deletes_it(pytester: pytest.Pytester, kube: Kube) -> None:
    pytester.makepyfile(
        """
        def test_inner(cluster, kube, namespace):
            ns = kube.core.read_namespace(namespace)
            assert ns.metadata.labels["chaoskit.io/test-namespace"] == "true"
            assert ns.status.phase == "Active"
            print("NAMESPACE=" + namespace + " CREATED=" + str(cluster.created))
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    match = re.search(r"NAMESPACE=(\S+) CREATED=(\S+)", result.stdout.str())
    assert match, result.stdout.str()
    name, created = match.groups()
    assert created == "False", "a running cluster must be reused, not created"
    try:
        phase = kube.core.read_namespace(name).status.phase
    except ApiException as exc:
        assert exc.status == 404
    else:
        assert phase == "Terminating"


def test_a_test_that_leaves_a_fault_injected_fails_and_the_fault_is_undone(
    pytester: pytest.Pytester, cluster, kube: Kube, web: Web, client: str
) -> None:
    pytester.makepyfile(
        f"""
        HELD = []  # keeps the fault's context manager alive, so nothing but the guard can undo it

        def test_leaves_a_partition(chaos):
            fault = chaos.partition("{web.namespace}", "role=client", max_share=1)  # the one client pod
            HELD.append(fault)
            record = fault.__enter__()
            print("FAULT=" + record.fault_id)
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    match = re.search(r"FAULT=(\S+)", result.stdout.str())
    assert match, result.stdout.str()
    fault_id = match.group(1)
    result.stdout.fnmatch_lines([f"*the test left faults injected (now undone): {fault_id}*"])
    process = locate(cluster.node_shell, kube.core.read_namespaced_pod(client, web.namespace))
    assert rules_in(cluster.node_shell, [process.netns], f"chaoskit:{fault_id}") == {process.netns: []}
    assert [e.fault_id for e in Ledger(cluster.name).unsettled()] == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


def test_a_hook_vetoes_a_fault_before_it_acts_and_the_report_says_why(
    pytester: pytest.Pytester, kube: Kube, web: Web
) -> None:
    before = {p.metadata.name: p.metadata.uid for p in kube.pods(web.namespace, "app=web")}
    calls = pytester.path / "calls.txt"
    pytester.makeconftest(
        f"""
        CALLS = {str(calls)!r}

        def note(line):
            with open(CALLS, "a") as out:
                out.write(line + "\\n")

        def pytest_chaoskit_fault_planned(record):
            note("planned " + record.kind + " " + ",".join(record.targets))
            if record.spec.get("names"):
                return "change freeze: no pod kills by name until Friday"
            return None

        def pytest_chaoskit_fault_injected(record):
            note("injected " + record.fault_id)

        def pytest_chaoskit_fault_undone(record):
            note("undone " + record.fault_id + " reverted=" + str(record.reverted))

        def pytest_chaoskit_experiment_result(result):
            note("result " + result.outcome + " faults=" + str(len(result.faults)))
        """
    )
    victim = sorted(before)[0]
    pytester.makepyfile(
        f"""
        import time
        from chaoskit import Availability, LoadSpec

        LOAD = LoadSpec(
            host="http://127.0.0.1:{web.node_port}", run_seconds=20, warmup_seconds=1, users=2, rate_per_user=20
        )

        def test_vetoed(experiment, chaos):
            with experiment(LOAD, [Availability(0.5)]):
                with chaos.pod_kill("{web.namespace}", "app=web", names=["{victim}"]):
                    raise AssertionError("a vetoed fault's block must not run")

        def test_allowed(chaos):
            with chaos.partition("{web.namespace}", "app=web", count=1) as cut:
                print("CUT=" + cut.fault_id)
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", "-rs", f"--chaos-report-dir={pytester.path}")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*pod-kill of * vetoed before it acted: change freeze: no pod kills*"])
    cut = re.search(r"CUT=(\S+)", result.stdout.str())
    assert cut, result.stdout.str()
    lines = calls.read_text().splitlines()
    assert lines[0] == f"planned pod-kill {victim}", lines
    assert lines[1] == "result skipped faults=1", lines  # the vetoed fault is in the result, nothing else ran
    assert lines[2].startswith("planned partition ") and lines[3:] == [
        f"injected {cut.group(1)}",
        f"undone {cut.group(1)} reverted=True",
    ], lines
    # Nothing was killed: the same pods, by UID, read from the cluster.
    after = {p.metadata.name: p.metadata.uid for p in kube.pods(web.namespace, "app=web")}
    assert after == before
    journal = json.loads((pytester.path / "chaoskit-journal.json").read_text())
    (experiment,) = journal["experiments"]
    assert experiment["skipped"].startswith("pod-kill of") and "change freeze" in experiment["skipped"]
    (fault,) = experiment["faults"]
    assert fault["vetoed"] == "change freeze: no pod kills by name until Friday" and fault["injected_at"] is None
    html = (pytester.path / "chaoskit-report.html").read_text()
    assert "VETOED before it acted: change freeze" in html


def test_a_neighbour_with_its_own_kubeconfig_option_and_cluster_fixture_runs_a_fault(
    pytester: pytest.Pytester, kube: Kube, web: Web
) -> None:
    """A conftest that owns --kubeconfig and fixtures named cluster and namespace, meaning something else: the
    session starts, and chaoskit's chaos still reaches the kind cluster (its fixtures depend only on their
    prefixed names), kills a pod and proves it."""
    pytester.makeconftest(
        """
        import pytest

        def pytest_addoption(parser):
            parser.addoption("--kubeconfig", default="not-a-file.yaml", help="the user's own")

        @pytest.fixture(scope="session")
        def cluster():
            return "the user's staging cluster"

        @pytest.fixture
        def namespace():
            return "the-user-s-namespace"
        """
    )
    pytester.makepyfile(
        f"""
        def test_kill(chaos, cluster, namespace, chaoskit_cluster, pytestconfig):
            assert cluster == "the user's staging cluster" and namespace == "the-user-s-namespace"
            assert pytestconfig.getoption("--kubeconfig") == "not-a-file.yaml"
            with chaos.pod_kill("{web.namespace}", "app=web", count=1) as record:
                pass
            assert chaos.cluster.name == chaoskit_cluster.name
            print("KILLED=" + ",".join(record.targets))
        """
    )
    result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    match = re.search(r"KILLED=(\S+)", result.stdout.str())
    assert match, result.stdout.str()
    left = {p.metadata.name for p in kube.pods(web.namespace, "app=web")}
    assert not set(match.group(1).split(",")) & left  # the killed pod is gone, seen by this session's own client
