"""Each fault as a Grafana annotation: what chaoskit sends, against a real HTTP server on 127.0.0.1 standing in
for Grafana's annotations API (it records each request and answers as Grafana does), and that Grafana's
trouble never stops a fault."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from grafana_recorder import Recorder, recording_grafana

from chaoskit import cli
from chaoskit.errors import SpecError
from chaoskit.faults.base import FaultHooks, FaultRecord
from chaoskit.grafana import GrafanaAnnotations, check_url

pytest_plugins = ["pytester"]


@pytest.fixture
def grafana() -> Iterator[Recorder]:
    with recording_grafana() as server:
        yield server


def record(**changes: Any) -> FaultRecord:
    base = FaultRecord(
        fault_id="partition-1a2b3c4d",
        kind="partition",
        cluster="chaoskit",
        spec={},
        targets=["web-1", "web-2"],
        injected_at=1_765_000_000.25,
        effect="rules present in 2 pod(s); probe blocked",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


class Steps(FaultHooks):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def injected(self, record: FaultRecord) -> None:
        self.seen.append("injected")

    def undone(self, record: FaultRecord) -> None:
        self.seen.append("undone")


def test_a_fault_is_a_region_from_its_injection_to_its_undo_with_the_token(grafana: Recorder) -> None:
    steps = Steps()
    hooks = GrafanaAnnotations(grafana.url + "/", then=steps, token="glsa_secret")
    fault = record()
    hooks.injected(fault)
    fault.reverted, fault.reverted_at = True, 1_765_000_012.5
    hooks.undone(fault)
    assert steps.seen == ["injected", "undone"]  # the session's own hooks still run, first
    (post, patch) = grafana.requests
    tags = ["chaoskit", "partition", "fault:partition-1a2b3c4d"]
    assert post[:2] == ("POST", "/api/annotations") and post[3] == "Bearer glsa_secret"
    assert post[2] == {
        "time": 1_765_000_000_250,
        "tags": tags,
        "text": "chaoskit partition partition-1a2b3c4d on web-1, web-2: rules present in 2 pod(s); probe blocked",
    }
    assert patch[:2] == ("PATCH", "/api/annotations/7")
    assert patch[2]["time"] == 1_765_000_000_250 and patch[2]["timeEnd"] == 1_765_000_012_500
    assert patch[2]["tags"] == tags and patch[2]["text"].endswith("; undone, proven")


def test_an_undo_not_proven_says_so_and_a_dry_run_sends_nothing(grafana: Recorder) -> None:
    hooks = GrafanaAnnotations(grafana.url, token="")
    fault = record()
    hooks.injected(fault)
    fault.undo_error, fault.reverted_at = "iptables-save failed on chaoskit-worker", 1_765_000_005.0
    hooks.undone(fault)
    assert grafana.requests[1][2]["text"].endswith("; NOT undone: iptables-save failed on chaoskit-worker")
    assert grafana.requests[0][3] is None  # no token, no Authorization header
    hooks.injected(record(fault_id="partition-dry", dry_run=True))
    hooks.undone(record(fault_id="partition-dry", dry_run=True))
    assert len(grafana.requests) == 2


def test_grafana_refusing_or_gone_is_one_warning_and_the_fault_goes_on(grafana: Recorder, capsys) -> None:
    grafana.status = 401
    hooks = GrafanaAnnotations(grafana.url, token="wrong")
    fault = record()
    hooks.injected(fault)  # no exception: the annotation is for people, not a step of the fault
    hooks.undone(fault)  # nothing to patch: no id came back
    assert [r[0] for r in grafana.requests] == ["POST"]
    assert "Grafana refused the annotation (POST /api/annotations: HTTP 401 Unauthorized); the fault goes on" in (
        capsys.readouterr().err
    )
    port = grafana.server_address[1]
    grafana.shutdown()
    grafana.server_close()
    GrafanaAnnotations(f"http://127.0.0.1:{port}").injected(record())
    assert f"no annotation in Grafana at http://127.0.0.1:{port} (POST /api/annotations: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://grafana.example:3000", "grafana.example:3000 is not allowed; port-forward Grafana to 127.0.0.1"),
        ("ftp://127.0.0.1:3000", "is not http(s)://HOST[:PORT]"),
        ("127.0.0.1:3000", "is not http(s)://HOST[:PORT]"),
    ],
)
def test_a_grafana_beyond_this_machine_or_not_http_is_refused(url: str, problem: str) -> None:
    with pytest.raises(SpecError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_url(url)


def test_both_front_ends_refuse_a_bad_grafana_url_before_touching_a_cluster(pytester, capsys) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("--chaos-grafana-url=http://grafana.example:3000", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*refusing to send annotations to 'http://grafana.example:3000'*"])
    path = pytester.path / "web.chaos.yaml"
    path.write_text(
        "namespace: shop\nload: {host: 'http://127.0.0.1:30080', run_seconds: 10}\n"
        "faults: [{kind: pod-kill, at: 1s, selector: app=web}]\nobjectives: [{availability: 0.9}]\n"
    )
    capsys.readouterr()  # what the pytest run printed
    assert cli.main(["run", str(path), "--grafana-url", "http://grafana.example:3000"]) == 2
    assert capsys.readouterr().err.startswith("chaoskit: error: refusing to send annotations to")


def test_the_plugin_adds_grafanas_annotations_after_its_own_hooks_when_asked(pytester, grafana: Recorder) -> None:
    pytester.makepyfile(
        """
        from chaoskit.grafana import GrafanaAnnotations
        from chaoskit.plugin.runs import PluginHooks, plugin_hooks

        def test_hooks(pytestconfig):
            hooks = plugin_hooks(pytestconfig)
            assert isinstance(hooks, GrafanaAnnotations) and isinstance(hooks.then, PluginHooks)
            assert hooks.url.startswith("http://127.0.0.1:")
        """
    )
    result = pytester.runpytest_subprocess(f"--chaos-grafana-url={grafana.url}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
