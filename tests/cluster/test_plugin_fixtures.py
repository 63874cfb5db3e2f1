"""The plugin's cluster fixtures as a user meets them: a pytest run in a subprocess, on the real cluster."""

from __future__ import annotations

import re

import pytest
from kubernetes.client.exceptions import ApiException

from chaoskit.adapters.kube import Kube

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
