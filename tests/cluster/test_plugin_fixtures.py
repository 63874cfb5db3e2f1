"""The plugin's fixtures as a user meets them: a pytest run in a subprocess, on the real cluster."""

from __future__ import annotations

import re

import pytest
from kubernetes.client.exceptions import ApiException
from workloads import Web, probe_eventually

from chaoskit.adapters.kube import Kube
from chaoskit.faults.ledger import Ledger
from chaoskit.faults.netns import locate, rules_in

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
    process = locate(kube.core.read_namespaced_pod(client, web.namespace))
    assert rules_in([process.netns], f"chaoskit:{fault_id}") == {process.netns: []}
    assert [e.fault_id for e in Ledger(cluster.name).unsettled()] == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)
