"""Pod Security levels of test namespaces and the refusals' wording: the logic, without a cluster."""

from __future__ import annotations

import json

import pytest

from chaoskit.adapters.kube import POD_SECURITY_ENFORCE, _reason
from chaoskit.errors import UsageError
from chaoskit.namespaces import owned_namespace

pytest_plugins = ["pytester"]


def test_a_namespace_enforces_the_level_asked_for_and_none_leaves_it_to_the_cluster():
    assert POD_SECURITY_ENFORCE not in owned_namespace("ck-a")["metadata"]["labels"]  # outside pytest: untouched
    assert owned_namespace("ck-a", pod_security="baseline")["metadata"]["labels"][POD_SECURITY_ENFORCE] == "baseline"
    assert (
        owned_namespace("ck-a", pod_security="restricted")["metadata"]["labels"][POD_SECURITY_ENFORCE] == "restricted"
    )
    assert POD_SECURITY_ENFORCE not in owned_namespace("ck-a", pod_security="none")["metadata"]["labels"]
    with pytest.raises(UsageError, match="'strict' is not one of privileged, baseline, restricted, none"):
        owned_namespace("ck-a", pod_security="strict")


class Refused(Exception):
    status = 403
    body = json.dumps(
        {
            "kind": "Status",
            "message": 'pods "x" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true)',
        }
    )


def test_an_api_refusal_is_the_servers_message_and_a_pod_security_one_names_the_fix():
    said = _reason(Refused("(403)\nReason: Forbidden\nHTTP response headers: HTTPHeaderDict({...})"))
    assert said.startswith('pods "x" is forbidden: violates PodSecurity "baseline:latest"')
    assert "HTTP response headers" not in said and "--chaos-pod-security" in said
    assert _reason(ValueError("plain")) == "plain"


def test_a_bad_level_is_a_usage_error_on_the_command_line_and_in_a_marker(pytester):
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--chaos-pod-security=strict")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--chaos-pod-security: Pod Security level 'strict' is not one of*"])
    pytester.makepyfile(
        """
        import pytest
        from chaoskit.plugin import pod_security_of

        @pytest.mark.chaos_pod_security("restricted")
        def test_marked(request):
            assert pod_security_of(request) == "restricted"

        def test_default(request):
            assert pod_security_of(request) == "privileged"  # the ini's

        @pytest.mark.chaos_pod_security("lax")
        def test_bad(request):
            pod_security_of(request)
        """
    )
    pytester.makeini("[pytest]\nchaos_pod_security = privileged\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*chaos_pod_security: Pod Security level 'lax' is not one of*"])
