"""Experiments as ``*.chaos.yaml`` files: a good file becomes its objects; a bad one is refused before anything
runs, each problem as ``file:line: field: problem; fix``; the published JSON Schema is valid, accepts the
examples and agrees with the code it describes."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from jsonschema import Draft202012Validator

from chaoskit.chaos import Chaos
from chaoskit.errors import SpecError
from chaoskit.experiment import Workload
from chaoskit.gameday.spec import (
    FAULT_KINDS,
    SCHEMA_FILE,
    ClusterChoice,
    ExperimentFile,
    ExperimentFileError,
    Problem,
    SteadyState,
    fault_options,
    fill_placeholders,
    load_experiment,
    parse_duration,
    parse_experiment,
    placeholders,
    schema,
)
from chaoskit.load import LoadSpec
from chaoskit.slo import AlertFires, AlertResolves, Availability, ErrorBurst, LatencyPercentile, PromQL, RecoveryTime
from chaoskit.stops import AvailabilityBelow, ErrorBurstOver, LatencyAbove, PromQLAbove

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parents[2]
PUBLISHED = REPO / "schema" / SCHEMA_FILE
PACKAGED = REPO / "chaoskit" / "gameday" / SCHEMA_FILE
EXAMPLES = sorted(DATA.glob("*.chaos.yaml"))

# A small good file for the bad cases to spoil one line at a time.
BASE = """\
namespace: shop
workloads:
  - {name: web, service: web}
load:
  host: http://127.0.0.1:30080
  run_seconds: 60
faults:
  - kind: pod-kill
    at: 5s
    duration: 10s
    selector: app=web
stop_conditions:
  - availability_below: 0.8
    over_seconds: 10
objectives:
  - availability: 0.99
  - recovery: {within_seconds: 30}
"""
SOURCE = "web.chaos.yaml"


def refusal(text: str, source: str = SOURCE) -> list[str]:
    """The lines of the error ``text`` is refused with."""
    with pytest.raises(ExperimentFileError) as caught:
        parse_experiment(text, source)
    lines = str(caught.value).splitlines()
    assert lines == [str(p) for p in caught.value.problems]
    return lines


def line(text: str, needle: str) -> int:
    """The line (from 1) of the first line of ``text`` that holds ``needle``."""
    return next(n for n, content in enumerate(text.splitlines(), 1) if needle in content)


def spoil(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


# ---- good files ---------------------------------------------------------------------------------------


def test_the_pod_kill_example_becomes_its_objects():
    path = DATA / "web-pod-kill.chaos.yaml"
    text = path.read_text()
    experiment = load_experiment(path)

    assert experiment.path == path
    assert experiment.name == "web pod kill under load"
    assert experiment.description.startswith("The stateless web tier")
    assert experiment.namespace == "auto"
    assert experiment.cluster == ClusterChoice("kind", "chaoskit", None)
    assert experiment.deploy is not None
    assert experiment.deploy.images == {"web": (REPO / "fixtures" / "web").resolve()}
    assert experiment.deploy.manifests == ((DATA / "web-tier.yaml").resolve(),)
    assert experiment.deploy.wait == (("Deployment", "web"),)
    assert experiment.workloads == (Workload("${namespace}", "web", "web", "Deployment"),)
    assert experiment.load == {
        "host": "http://127.0.0.1:${node_port}",
        "paths": ("/",),
        "users": 10,
        "rate_per_user": 10,
        "run_seconds": 60,
        "warmup_seconds": 3,
        "timeout_seconds": 1,
    }
    assert experiment.steady_state == SteadyState(10.0, (Availability(0.99),))

    first, second = experiment.faults
    assert (first.kind, first.method, first.at, first.duration, first.until_recovered) == (
        "pod-kill",
        "pod_kill",
        5.0,
        None,
        False,
    )
    assert first.options == {"namespace": "${namespace}", "selector": "app=web", "count": 1, "grace_seconds": 0}
    assert first.line == line(text, "- kind: pod-kill")
    assert (second.at, second.options["pick"]) == (30.0, "oldest")

    assert experiment.stop_conditions == (
        AvailabilityBelow(0.8, over_seconds=10),
        ErrorBurstOver(5),
        LatencyAbove(2000, percentile=95, over_seconds=10),
    )
    assert experiment.objectives == (
        Availability(0.99),
        Availability(0.95, window="fault"),
        LatencyPercentile(95, 250),
        ErrorBurst(2),
        RecoveryTime(30),
        PromQL('sum(rate(web_requests_total{namespace="${namespace}"}[5s]))', at_least=50, window="fault"),
    )
    assert experiment.settle_seconds == 5.0
    assert experiment.line_of("objectives[2].latency.at_most_ms") == line(text, "at_most_ms: 250")
    assert experiment.line_of("faults[1].no_such_key") == second.line  # the nearest enclosing field's


def test_the_node_failure_example_holds_a_fault_until_recovered_and_defaults_the_rest():
    experiment = load_experiment(DATA / "web-node-failure.chaos.yaml")

    assert experiment.name == "web-node-failure"  # the file name, without .chaos.yaml
    assert experiment.cluster is None and experiment.steady_state is None
    assert experiment.workloads == (Workload("${namespace}", "web", "web", "Deployment"),)
    assert experiment.deploy is not None and experiment.deploy.wait == (("Deployment", "web"),)  # the workloads
    node, partition = experiment.faults
    assert (node.method, node.at, node.duration, node.until_recovered) == ("node_failure", 3.0, None, True)
    assert node.options == {"node": "chaoskit-worker", "mode": "stop"}  # a node fault takes no namespace
    assert (partition.at, partition.duration) == (120.0, 10.0)
    assert partition.options == {"namespace": "${namespace}", "selector": "app=web", "count": 1, "max_share": 0.34}
    assert experiment.settle_seconds == 10.0


def test_a_fresh_namespace_and_the_node_port_are_filled_in_for_the_run():
    experiment = load_experiment(DATA / "web-pod-kill.chaos.yaml")
    assert experiment.needs_node_port

    run = experiment.with_namespace("gameday-1a2b")
    assert run.namespace == "gameday-1a2b"
    assert run.workloads[0].namespace == "gameday-1a2b"
    assert {f.options["namespace"] for f in run.faults} == {"gameday-1a2b"}
    assert run.objectives[-1] == PromQL(
        'sum(rate(web_requests_total{namespace="gameday-1a2b"}[5s]))', at_least=50, window="fault"
    )
    assert run.load_spec(30083) == LoadSpec(
        host="http://127.0.0.1:30083",
        run_seconds=60,
        paths=("/",),
        users=10,
        rate_per_user=10,
        warmup_seconds=3,
        timeout_seconds=1,
    )
    assert run.load_spec(30083, run_seconds=10).run_seconds == 10  # the steady state's short load
    with pytest.raises(ExperimentFileError, match=r"web-pod-kill\.chaos\.yaml:\d+: load\.host: .* NodePort"):
        run.load_spec()
    with pytest.raises(SpecError, match="not a fresh one"):
        run.with_namespace("other")


def test_workers_in_the_cluster_send_to_a_service_of_the_runs_namespace():
    text = (DATA / "web-pod-kill.chaos.yaml").read_text()
    assert "load:\n" in text
    pods = text.replace(
        "load:\n", "load:\n  in_cluster: true\n  workers: 2\n  host: http://web.${namespace}.svc:80\n", 1
    )
    experiment = parse_experiment(pods, str(DATA / "web-pod-kill.chaos.yaml"))
    spec = experiment.with_namespace("gameday-1a2b").load_spec()
    assert spec.host == "http://web.gameday-1a2b.svc:80" and spec.in_cluster and spec.workers == 2
    with pytest.raises(ExperimentFileError, match="waits for the run's namespace"):
        experiment.load_spec()
    local = pods.replace("  in_cluster: true\n", "", 1)
    (problem,) = refusal(local, str(DATA / "web-pod-kill.chaos.yaml"))
    assert "${namespace} is not a placeholder of the host" in problem and "in_cluster: true" in problem


def test_a_named_namespace_is_every_defaults_and_a_runtime_error_is_located_like_the_loaders():
    experiment = parse_experiment(BASE, SOURCE)
    assert experiment.name == "web"
    assert experiment.workloads == (Workload("shop", "web", "web"),)
    assert experiment.faults[0].options == {"namespace": "shop", "selector": "app=web"}
    assert (experiment.faults[0].at, experiment.faults[0].duration) == (5.0, 10.0)
    assert experiment.deploy is None and not experiment.needs_node_port
    assert experiment.settle_seconds == 5.0

    error = experiment.error("faults[0].selector", "matches no pod", "check the labels with kubectl get pods")
    assert str(error) == (
        f"{SOURCE}:{line(BASE, 'selector: app=web')}: faults[0].selector: matches no pod; "
        "check the labels with kubectl get pods"
    )


def test_anchors_live_under_x_keys_and_merge_keys_override_without_counting_as_duplicates():
    text = spoil("load:\n  host", "x-load: &load {users: 3, run_seconds: 30}\nload:\n  <<: *load\n  users: 4\n  host")
    assert dict(parse_experiment(text, SOURCE).load) == {
        "users": 4,
        "run_seconds": 60,
        "host": "http://127.0.0.1:30080",
    }


# ---- bad files: each refused with file:line, the field and the fix -----------------------------------------


def test_a_missing_section_is_named_with_an_example_to_add():
    text = spoil("load:\n  host: http://127.0.0.1:30080\n  run_seconds: 60\n", "")
    assert refusal(text) == [
        f"{SOURCE}:1: load: is missing; add load: "
        "{host: http://127.0.0.1:30080, users: 10, rate_per_user: 10, run_seconds: 60}"
    ]


def test_a_misspelt_top_level_key_is_refused_with_the_nearest_known_one():
    text = spoil("objectives:", "objetives:")
    [problem] = refusal(text)  # not also "objectives: is missing": the suggestion says it
    assert problem.startswith(
        f"{SOURCE}:{line(text, 'objetives')}: objetives: is not a key of the file; did you mean objectives? "
        "the file's keys are $schema, apiVersion, kind, name, description, namespace,"
    )


def test_an_unknown_fault_kind_lists_the_known_ones():
    text = spoil("kind: pod-kill", "kind: pod-kil")
    assert refusal(text) == [
        f'{SOURCE}:{line(text, "pod-kil")}: faults[0].kind: unknown fault kind "pod-kil"; did you mean pod-kill? '
        "the known kinds are pod-kill, container-kill, node-failure, node-drain, node-partition, partition, "
        "packet-loss, bandwidth, latency, process-freeze, dns, http, stress, zone-failure, disk-fill"
    ]


def test_a_fault_option_the_fault_does_not_take_is_refused_with_the_options_it_does():
    text = spoil("    selector: app=web\n", "    selector: app=web\n    delay_ms: 100\n")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'delay_ms')}: faults[0].delay_ms: pod-kill takes no option delay_ms "
        "(Chaos.pod_kill has no such argument); pod-kill takes namespace, selector, count, percent, grace_seconds, "
        "crash, pick, seed, names, rounds, interval_seconds, max_share (besides kind, at and duration)"
    ]
    misspelt = spoil("selector: app=web", "selecter: app=web")
    assert refusal(misspelt)[0].startswith(
        f"{SOURCE}:{line(misspelt, 'selecter')}: faults[0].selecter: pod-kill takes no option selecter "
        "(Chaos.pod_kill has no such argument); did you mean selector?"
    )


def test_a_fault_without_an_argument_its_method_needs_is_refused():
    text = spoil("    selector: app=web\n", "")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, '- kind: pod-kill')}: faults[0].selector: is missing: a pod-kill fault needs it; "
        "add selector: app=web"
    ]


def test_a_negative_duration_is_refused_with_what_to_write():
    text = spoil("duration: 10s", "duration: -5s")
    assert refusal(text) == [
        f'{SOURCE}:{line(text, "-5s")}: faults[0].duration: "-5s" is not a duration; '
        "write a positive duration such as 30s, 1m30s or 500ms"
    ]


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("0s", '"0s" is not a positive duration'),
        ("0", "0 is not a positive duration"),
        ("soon", '"soon" is not a duration'),
        ("5 s", '"5 s" is not a duration'),
    ],
)
def test_zero_and_garbage_durations_are_refused(written, problem):
    text = spoil("duration: 10s", f"duration: {written}")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'duration:')}: faults[0].duration: {problem}; "
        "write a positive duration such as 30s, 1m30s or 500ms"
    ]


def test_until_recovered_needs_a_workload_to_watch():
    text = spoil("workloads:\n  - {name: web, service: web}\n", "").replace(
        "duration: 10s", "duration: until_recovered"
    )
    text = text.replace("  - recovery: {within_seconds: 30}\n", "")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'until_recovered')}: faults[0].duration: until_recovered needs workloads to watch, "
        "and the file names none; add workloads: [{kind: Deployment, name: web}], or give a duration such as 30s"
    ]


def test_a_stop_condition_threshold_above_one_is_refused():
    text = spoil("availability_below: 0.8", "availability_below: 1.5")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, '1.5')}: stop_conditions[0].availability_below: 1.5 is more than 1; "
        "write a number in (0, 1] such as 0.8"
    ]


def test_a_fault_past_the_end_of_the_load_or_held_past_it_is_refused():
    text = spoil("at: 5s", "at: 1m")
    assert refusal(text) == [
        f'{SOURCE}:{line(text, "at: 1m")}: faults[0].at: "1m" is not before the end of the load '
        "(load.run_seconds: 60); inject it earlier, or make load.run_seconds more than 60"
    ]
    held = spoil("at: 5s", "at: 55s")
    assert refusal(held) == [
        f"{SOURCE}:{line(held, 'duration: 10s')}: faults[0].duration: the fault would still be held when the load "
        "ends (55 s + 10 s > load.run_seconds: 60); hold it at most 5s, or make load.run_seconds at least 65"
    ]


def test_a_fault_spec_refusal_is_located_at_the_option_it_names():
    text = spoil("    selector: app=web\n", "    selector: app=web\n    count: 1\n    percent: 50\n")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'count: 1')}: faults[0].count: refused by chaoskit.PodKillSpec; "
        "give either count or percent, not both"
    ]


def test_load_spec_refusals_are_located():
    text = spoil("  run_seconds: 60\n", "  run_seconds: 60\n  rate_per_user: 5\n  wait_seconds: 1\n")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'wait_seconds')}: load.wait_seconds: refused by chaoskit.load.LoadSpec; "
        "give wait_seconds or rate_per_user, not both: each sets the pace between requests"
    ]
    remote = spoil("http://127.0.0.1:30080", "http://example.com:80")
    assert refusal(remote) == [
        f"{SOURCE}:{line(remote, 'example.com')}: load.host: refusing to send load to 'http://example.com:80': "
        "example.com:80 is not allowed; give http://127.0.0.1:PORT or http://localhost:PORT, or allow the host on "
        "purpose (allow_targets HOST:PORT in the load spec, or --chaos-allow-target HOST:PORT)"
    ]


def test_the_node_port_placeholder_needs_a_deployed_system():
    text = spoil("  host: http://127.0.0.1:30080\n", "")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'load:')}: load: gives no host, and the default http://127.0.0.1:${{node_port}} "
        "needs the NodePort of a deployed system; give host: http://127.0.0.1:PORT with the NodePort your "
        "Service publishes, or port_forward:"
    ]


def test_a_port_forward_loads_the_forwards_local_port_and_a_file_writes_it_instead_of_the_host():
    text = spoil("  host: http://127.0.0.1:30080\n", "  port_forward: {service: web, port: 80}\n")
    experiment = parse_experiment(text, SOURCE)
    assert experiment.port_forward == ("web", 80)
    spec = experiment.load_spec(forward_port=41234)
    assert spec.host == "http://127.0.0.1:41234" and spec.run_seconds == 60
    assert parse_experiment(BASE, SOURCE).port_forward is None
    with pytest.raises(ExperimentFileError, match=r"load.port_forward: the load waits for the run's port-forward"):
        experiment.load_spec()

    both = spoil(
        "  host: http://127.0.0.1:30080\n", "  host: http://127.0.0.1:30080\n  port_forward: {service: web, port: 80}\n"
    )
    assert refusal(both) == [
        f"{SOURCE}:{line(both, 'port_forward')}: load.port_forward: gives both host and port_forward: the load "
        "goes to one of them; drop host to load through the port-forward, or port_forward to load the host"
    ]
    for written, problem in [
        ("{service: Web, port: 80}", 'load.port_forward.service: "Web" is not a Kubernetes name; write lower'),
        ("{service: web, port: 0}", "load.port_forward.port: 0 is less than 1; write a whole number in [1, 65535]"),
        ("{service: web}", "load.port_forward.port: is missing: load.port_forward needs it; add port:"),
        ("{service: web, port: 80, namespace: other}", "load.port_forward.namespace: is not a key of "),
    ]:
        bad = spoil("  host: http://127.0.0.1:30080\n", f"  port_forward: {written}\n")
        (said,) = refusal(bad)
        assert said.startswith(f"{SOURCE}:{line(bad, 'port_forward')}: {problem}"), said


def test_namespace_auto_needs_deploy():
    text = spoil("namespace: shop", "namespace: auto")
    assert refusal(text)[0] == (
        f"{SOURCE}:1: namespace: auto needs deploy: a fresh namespace holds nothing until the run deploys the "
        "system into it; add a deploy: section, or name the namespace the system runs in"
    )


def test_deploy_files_must_exist_and_manifest_placeholders_must_be_known(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("ARG BASE\nFROM $BASE\n")
    (tmp_path / "good.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ${namespace}}\n"
    )
    (tmp_path / "typo.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${image.ap}\n")
    deploy = "deploy:\n  images: {app: ./app, cache: redis:7}\n  manifests: [good.yaml, gone.yaml, typo.yaml]\n"
    text = spoil("namespace: shop\n", "namespace: auto\n" + deploy)
    source = str(tmp_path / "app.chaos.yaml")
    manifests = line(text, "manifests:")
    assert refusal(text, source) == [
        f"{source}:{manifests}: deploy.manifests[1]: there is no file {tmp_path}/gone.yaml; "
        f"give the manifest's path relative to {tmp_path}/",
        f"{source}:{manifests}: deploy.manifests[2]: typo.yaml:4 uses ${{image.ap}}, which is not a placeholder "
        "here; add ap: to deploy.images, or use one of ${image.app}, ${image.cache}, ${namespace}, ${node_port}",
    ]
    fixed = text.replace(", gone.yaml, typo.yaml", "")
    experiment = parse_experiment(fixed, source)
    assert experiment.deploy is not None
    assert experiment.deploy.images == {"app": (tmp_path / "app").resolve(), "cache": "redis:7"}
    assert experiment.deploy.manifests == ((tmp_path / "good.yaml").resolve(),)


def test_objective_and_stop_condition_shapes_are_refused_with_the_fix():
    two = spoil("  - availability: 0.99\n", "  - availability: 0.99\n    error_burst: {at_most_seconds: 2}\n")
    assert refusal(two) == [
        f"{SOURCE}:{line(two, 'availability: 0.99')}: objectives[0]: names availability and error_burst at once; "
        "write each as an objective of its own (one per list item)"
    ]
    windowed = spoil("{within_seconds: 30}\n", "{within_seconds: 30}\n    window: fault\n")
    assert refusal(windowed) == [
        f"{SOURCE}:{line(windowed, 'window: fault')}: objectives[1].window: does not apply to a recovery objective; "
        "drop it: recovery is timed per fault (from each fault's injection until whole again)"
    ]
    unbounded = spoil("  - availability_below: 0.8\n    over_seconds: 10\n", "  - promql: sum(up)\n")
    assert refusal(unbounded) == [
        f"{SOURCE}:{line(unbounded, 'promql')}: stop_conditions[0]: needs above or below; add above: 5 or below: 1"
    ]


def test_the_steady_state_takes_no_recovery_and_no_fault_window():
    steady = "steady_state:\n  seconds: 10\n  objectives:\n    - recovery: {within_seconds: 5}\n"
    text = BASE + steady
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'within_seconds: 5')}: steady_state.objectives[0].recovery: the steady state holds "
        "no fault, so there is no recovery to time; move it to objectives:"
    ]


def test_every_problem_is_reported_one_per_line_in_file_order():
    text = spoil("run_seconds: 60", "run_seconds: 0").replace("at: 5s", "at: soon").replace("0.99", "99")
    assert refusal(text) == [
        f"{SOURCE}:{line(text, 'run_seconds')}: load.run_seconds: 0 is not positive; "
        "write a number in (0, 3600] such as 60",
        f'{SOURCE}:{line(text, "soon")}: faults[0].at: "soon" is not a duration; '
        "write 0 or a duration such as 5s, 1m or 1m30s",
        f"{SOURCE}:{line(text, '99')}: objectives[0].availability: 99 is more than 1; "
        "write a number in (0, 1] such as 0.99",
    ]


def test_yaml_that_pyyaml_would_let_pass_is_refused():
    twice = spoil("  run_seconds: 60\n", "  run_seconds: 60\n  run_seconds: 90\n")
    assert refusal(twice) == [
        f"{SOURCE}:{line(twice, 'run_seconds: 90')}: load.run_seconds: is written twice "
        f"(first on line {line(twice, 'run_seconds: 60')}); keep one"
    ]
    broken = spoil("  run_seconds: 60\n", "  run_seconds: [60\n")
    assert refusal(broken)[0].startswith(f"{SOURCE}:{line(broken, 'faults:')}: (YAML): ")
    assert refusal("", SOURCE) == [
        f"{SOURCE}:1: (top level): the file is empty; write at least namespace:, load:, faults: and objectives:"
    ]


def test_an_unreadable_file_is_named():
    with pytest.raises(ExperimentFileError) as caught:
        load_experiment(DATA / "no-such.chaos.yaml")
    [problem] = caught.value.problems
    assert problem == Problem(
        str(DATA / "no-such.chaos.yaml"),
        0,
        "(file)",
        "cannot be read (No such file or directory)",
        "give the path of a readable UTF-8 experiment file, such as experiments/web.chaos.yaml",
    )
    assert str(problem).startswith(f"{DATA / 'no-such.chaos.yaml'}: (file): cannot be read")


# ---- durations and placeholders --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "seconds"), [(30, 30.0), (0.5, 0.5), ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("2m", 120.0)]
)
def test_durations(written, seconds):
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", [0, -5, "0s", "-5s", "soon", "1x", "", True, "30"])
def test_bad_durations(written):
    with pytest.raises(SpecError, match="write a positive duration such as 30s, 1m30s or 500ms"):
        parse_duration(written)


def test_placeholders_and_their_escape():
    text = "a: ${namespace}\nb: $${literal}\nc: ${image.web}:${node_port}\n"
    assert list(placeholders(text)) == [("namespace", 1), ("image.web", 3), ("node_port", 3)]
    values = {"namespace": "ns", "image.web": "chaoskit/web:1", "node_port": "30080"}
    assert fill_placeholders(text, values) == "a: ns\nb: ${literal}\nc: chaoskit/web:1:30080\n"
    with pytest.raises(SpecError, match=r"\$\{namespace\} is not a placeholder here"):
        fill_placeholders(text, {})


# ---- the published schema --------------------------------------------------------------------------------


def test_the_published_schema_is_the_packaged_one():
    assert PUBLISHED.read_bytes() == PACKAGED.read_bytes(), f"run: cp {PACKAGED} {PUBLISHED}"
    assert json.loads(PUBLISHED.read_text()) == schema()


def test_the_schema_is_valid_json_schema_and_accepts_the_examples():
    Draft202012Validator.check_schema(schema())
    validator = Draft202012Validator(schema())
    assert EXAMPLES, "tests/unit/data holds the example experiment files"
    for path in EXAMPLES:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path
    assert not list(validator.iter_errors(yaml.safe_load(BASE)))
    for example in schema()["examples"]:
        assert isinstance(parse_experiment(yaml.safe_dump(example), SOURCE), ExperimentFile)


def test_every_property_has_a_title_and_a_description():
    documented: set[str] = set()
    undocumented: list[str] = []
    bare: set[str] = set()

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.get("properties", {}).items():
                if value is True:
                    bare.add(key)  # an if/then part that only allows it: documented where it is offered
                elif not (value.get("title") and value.get("description")):
                    undocumented.append(f"{where}.{key}")
                else:
                    documented.add(key)
            for key, value in node.items():
                if key not in ("if", "examples"):  # conditions and sample data, not fields to document
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(schema(), "")
    assert undocumented == []
    assert bare <= documented


def _json_types(hint: object) -> set[str]:
    """The JSON types a file may write for an argument of this type (None: leave the key out)."""
    if typing.get_origin(hint) is Sequence:
        return {"array"}
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    found: set[str] = set()
    for a in typing.get_args(hint) or (hint,):
        if typing.get_origin(a) is Sequence:
            found.add("array")
        elif a is not type(None):
            found.add(names[cast(type, a)])
    return found


def _schema_types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    if "$ref" in prop:
        prop = {**defs[prop["$ref"].removeprefix("#/$defs/")], **prop}
    if "enum" in prop:
        return {"string"} if all(isinstance(v, str) for v in prop["enum"]) else {"mixed"}
    if "oneOf" in prop:
        return {t for part in prop["oneOf"] for t in _schema_types(part, defs)}
    return {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])


@pytest.mark.parametrize("kind", list(FAULT_KINDS))
def test_each_fault_kind_in_the_schema_takes_exactly_its_chaos_methods_arguments(kind):
    defs = schema()["$defs"]
    fault = defs[f"fault-{kind}"]
    options = fault_options(kind)
    assert list(fault["properties"]) == ["kind", "at", "duration", *options.parameters]
    assert fault["required"] == list(options.required)
    assert fault["additionalProperties"] is False
    for name in options.parameters:
        wanted = _json_types(options.hints[name])
        # an int argument is written as a whole number; a float one may be either
        assert _schema_types(fault["properties"][name], defs) <= wanted | ({"integer"} if "number" in wanted else set())


def test_the_schema_knows_every_fault_kind_and_every_load_field():
    properties = schema()["properties"]
    defs = schema()["$defs"]
    assert defs["fault"]["properties"]["kind"]["enum"] == list(FAULT_KINDS)
    assert {f"fault-{k}" for k in FAULT_KINDS} <= set(defs)
    for kind, method in FAULT_KINDS.items():
        assert inspect.isfunction(getattr(Chaos, method)), kind
    file_only = {"port_forward"}  # the run opens it and gives LoadSpec its host
    assert set(properties["load"]["properties"]) == {f.name for f in dataclasses.fields(LoadSpec)} | file_only
    assert properties["load"]["required"] == ["run_seconds"]  # host has the file's own default


def _keys(schema: dict[str, Any], key: str) -> int:
    """How many values one objective or stop condition of the schema writes (nested mappings' keys counted)."""
    then = next(part["then"] for part in schema["allOf"] if part["if"] == {"required": [key]})
    nested = schema["properties"][key].get("properties")
    return len(then["properties"]) - 1 + (len(nested) if nested else 1)


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("availability", Availability),
        ("latency", LatencyPercentile),
        ("error_burst", ErrorBurst),
        ("recovery", RecoveryTime),
        ("promql", PromQL),
    ],
)
def test_each_objective_of_the_schema_sets_every_field_of_its_class(key, cls):
    objective = schema()["$defs"]["objective"]
    assert [b["required"][0] for b in objective["oneOf"]] == [
        "availability",
        "latency",
        "error_burst",
        "recovery",
        "promql",
        "alert",
    ]
    assert _keys(objective, key) == len(dataclasses.fields(cls))


@pytest.mark.parametrize(
    ("key", "cls"),
    [
        ("availability_below", AvailabilityBelow),
        ("latency_above_ms", LatencyAbove),
        ("error_burst_over_seconds", ErrorBurstOver),
        ("promql", PromQLAbove),
    ],
)
def test_each_stop_condition_of_the_schema_sets_every_field_of_its_class(key, cls):
    stop = schema()["$defs"]["stop_condition"]
    assert [b["required"][0] for b in stop["oneOf"]] == [
        "availability_below",
        "latency_above_ms",
        "error_burst_over_seconds",
        "promql",
    ]
    assert _keys(stop, key) == len(dataclasses.fields(cls))


def test_an_existing_cluster_is_chosen_by_its_context_and_the_schema_key_is_ignored():
    text = (
        "$schema: ../schema/chaoskit-experiment.schema.json\ncluster: {provider: existing, context: staging}\n" + BASE
    )
    assert parse_experiment(text, SOURCE).cluster == ClusterChoice("existing", None, "staging")
    named = text.replace("context: staging", "name: staging")
    assert refusal(named) == [
        f"{SOURCE}:2: cluster.name: is not for an existing cluster; "
        "an existing cluster is named by its context: drop name, or write context:"
    ]


def test_a_prometheus_already_running_is_named_by_its_url():
    assert parse_experiment(BASE, SOURCE).prometheus_url is None
    text = "prometheus: {url: 'http://127.0.0.1:9090'}\n" + BASE
    assert parse_experiment(text, SOURCE).prometheus_url == "http://127.0.0.1:9090"
    (scheme,) = refusal("prometheus: {url: 'ftp://x'}\n" + BASE)
    assert scheme.startswith(f"{SOURCE}:1: prometheus.url: "), scheme
    assert refusal("prometheus: {address: 'http://x'}\n" + BASE) == [
        f"{SOURCE}:1: prometheus.address: is not a key of prometheus; prometheus's keys are url, service, namespace, "
        "port, rules",
    ]


def test_the_clusters_own_prometheus_is_named_by_its_service_and_never_beside_a_url():
    text = "prometheus: {service: prometheus-k8s, namespace: monitoring, port: 9090}\n" + BASE
    file = parse_experiment(text, SOURCE)
    assert str(file.prometheus_service) == "monitoring/prometheus-k8s:9090" and file.prometheus_url is None
    assert parse_experiment(BASE, SOURCE).prometheus_service is None
    assert refusal("prometheus: {url: 'http://127.0.0.1:9090', service: p, namespace: m, port: 9090}\n" + BASE) == [
        f"{SOURCE}:1: prometheus: gives url and service, namespace, port: the run asks one Prometheus; keep url for a "
        "Prometheus the host reaches, or service, namespace and port for the cluster's own through a port-forward"
    ]
    assert refusal("prometheus: {service: p, namespace: m}\n" + BASE) == [
        f"{SOURCE}:1: prometheus.port: is missing: prometheus needs url, or service with namespace and port; add url: "
        "http://127.0.0.1:9090, or service: prometheus-k8s, namespace: monitoring, port: 9090"
    ]
    (bad,) = refusal("prometheus: {service: P_x, namespace: m, port: 9090}\n" + BASE)
    assert bad.startswith(f"{SOURCE}:1: prometheus.service: "), bad


def test_a_fault_refused_by_its_spec_still_has_its_times_checked():
    text = spoil("    selector: app=web\n", "    selector: app=web\n    count: 1\n    percent: 50\n")
    text = text.replace("duration: 10s", "duration: 0s")
    assert [p.split(": ", 2)[1] for p in refusal(text)] == ["faults[0].duration", "faults[0].count"]


def test_api_version_and_kind_are_optional_and_when_given_must_say_a_chaoskit_experiment(tmp_path: Path):
    ok = tmp_path / "ok.chaos.yaml"
    ok.write_text("apiVersion: chaoskit.dev/v1alpha1\nkind: Experiment\n" + BASE)
    assert load_experiment(ok).name == "ok"
    for head, problem in (
        ("apiVersion: chaoskit.dev/v2\n", 'apiVersion: "chaoskit.dev/v2" is not chaoskit.dev/v1alpha1'),
        ("kind: Deployment\n", 'kind: "Deployment" is not Experiment'),
    ):
        bad = tmp_path / "bad.chaos.yaml"
        bad.write_text(head + BASE)
        with pytest.raises(SpecError, match=re.escape(f"bad.chaos.yaml:1: {problem}")):
            load_experiment(bad)


RULES = """\
groups:
  - name: web
    rules:
      - alert: WebReplicaDown
        expr: kube_deployment_status_replicas_unavailable > 0
        for: 2s
"""


def test_an_alert_objective_gives_one_objective_for_each_bound_and_the_rules_go_to_the_runs_prometheus(tmp_path):
    (tmp_path / "web.rules.yaml").write_text(RULES)
    text = (
        "prometheus: {rules: web.rules.yaml}\n"
        + BASE
        + "  - alert: {name: WebReplicaDown, fires_within: 30, resolves_within: 60}\n"
        + "  - alert: {name: Other, fires_within: 5}\n"
    )
    path = tmp_path / "web.chaos.yaml"
    path.write_text(text)
    file = load_experiment(path)
    assert file.prometheus_rules == RULES and file.prometheus_url is None and file.prometheus_service is None
    alerts = [o for o in file.objectives if isinstance(o, AlertFires | AlertResolves)]
    assert alerts == [AlertFires("WebReplicaDown", 30), AlertResolves("WebReplicaDown", 60), AlertFires("Other", 5)]


def test_alert_objectives_and_rules_are_refused_where_they_cannot_be_judged(tmp_path):
    (tmp_path / "bad.rules.yaml").write_text("groups:\n  - name: web\n    rules:\n      - alert: X\n")
    for extra, problem in (
        ("prometheus: {rules: bad.rules.yaml}\n", "prometheus.rules: the rules in "),
        ("prometheus: {rules: missing.yaml}\n", "prometheus.rules: "),
        ("prometheus: {rules: bad.rules.yaml, url: 'http://127.0.0.1:9090'}\n", "prometheus.rules: rules go to"),
    ):
        path = tmp_path / "web.chaos.yaml"
        path.write_text(extra + BASE)
        with pytest.raises(ExperimentFileError) as refused:
            load_experiment(path)
        assert any(problem in str(line) for line in refused.value.problems), refused.value.problems
    (name,) = refusal(BASE + "  - alert: {name: 'web-down', fires_within: 30}\n")
    assert ": alert.name: " in name or "objectives[" in name, name
    (neither,) = refusal(BASE + "  - alert: {name: WebDown}\n")
    assert "alert" in neither, neither
