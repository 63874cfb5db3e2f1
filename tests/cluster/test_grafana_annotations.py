"""A fault held on the real cluster is annotated in Grafana from its injection to its proven undo: a pytest
session of a user's (pytester) with ``--chaos-grafana-url`` pointing at a recording HTTP server on 127.0.0.1
that stands in for Grafana's annotations API (no Grafana runs here)."""

from __future__ import annotations

import re

import pytest
from grafana_recorder import recording_grafana
from workloads import Web

pytest_plugins = ["pytester"]

INNER = """
def test_partition_annotated(chaos):
    with chaos.partition("{ns}", "app=web", count=1) as cut:
        print("FAULT=" + cut.fault_id)
"""


def test_a_partition_is_a_grafana_region_from_its_injection_to_its_proven_undo(
    pytester: pytest.Pytester, web: Web
) -> None:
    pytester.makepyfile(INNER.format(ns=web.namespace))
    with recording_grafana() as grafana:
        result = pytester.runpytest_subprocess("-s", "-p", "no:cacheprovider", f"--chaos-grafana-url={grafana.url}")
        result.assert_outcomes(passed=1)
        requests = list(grafana.requests)
    said = re.search(r"FAULT=(\S+)", result.stdout.str())
    assert said, result.stdout.str()
    fault_id = said.group(1)
    (post, patch) = requests
    assert post[:2] == ("POST", "/api/annotations") and f"fault:{fault_id}" in post[2]["tags"]
    assert post[2]["text"].startswith(f"chaoskit partition {fault_id} on web-"), post
    assert patch[:2] == ("PATCH", "/api/annotations/7")
    assert patch[2]["timeEnd"] >= patch[2]["time"] == post[2]["time"]
    assert patch[2]["text"].endswith("; undone, proven"), patch
    print(f"annotated: {post[2]['text']}; {(patch[2]['timeEnd'] - patch[2]['time']) / 1000:.1f} s long")
