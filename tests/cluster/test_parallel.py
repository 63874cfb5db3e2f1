"""``pytest -n 2`` over four experiments on the real cluster, as a user's own session: one journal, one HTML
report and one terminal summary from the controller; each experiment in its own namespace, its faults on its
own pods only; no two workers' faults on the same node at once."""

from __future__ import annotations

import json
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from results import rendered

from chaoskit.adapters.kube import Kube

pytest_plugins = ["pytester"]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

EXPERIMENTS = """
import time
from chaoskit import Availability, LoadSpec, RecoveryTime, Workload
from workloads import deploy_web

IMAGE = "{image}"


def web(cluster, kube, namespace):
    return deploy_web(kube, namespace, IMAGE, cluster.free_node_port(kube))


def load(port):
    return LoadSpec(host=f"http://127.0.0.1:{{port}}", users=2, rate_per_user=20, run_seconds=15, warmup_seconds=2)


def test_pod_kill(cluster, kube, namespace, experiment, chaos):
    w = web(cluster, kube, namespace)
    with experiment(load(w.node_port), [Availability(0.5), RecoveryTime(60)], Workload(namespace, "web", "web")):
        time.sleep(2)
        with chaos.pod_kill(namespace, "app=web", grace_seconds=0):
            pass


def test_container_kill(cluster, kube, namespace, experiment, chaos):
    w = web(cluster, kube, namespace)
    with experiment(load(w.node_port), [Availability(0.5)], Workload(namespace, "web", "web")):
        time.sleep(2)
        with chaos.container_kill(namespace, "app=web"):
            time.sleep(2)


def test_partition(cluster, kube, namespace, experiment, chaos):
    w = web(cluster, kube, namespace)
    with experiment(load(w.node_port), [Availability(0.5)]):
        time.sleep(2)
        with chaos.partition(namespace, "app=web", count=1):
            time.sleep(4)


def test_packet_loss(cluster, kube, namespace, experiment, chaos):
    w = web(cluster, kube, namespace)
    with experiment(load(w.node_port), [Availability(0.5)]):
        time.sleep(2)
        with chaos.packet_loss(namespace, "app=web", 30, count=1):
            time.sleep(4)
"""


class PodWatch(threading.Thread):
    """Which namespace each web pod lives in, read from the API twice a second while the session runs
    (at most 15 minutes): the independent record of whose pods the faults hit."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(daemon=True)
        self.kube = kube
        self.namespace_of: dict[str, str] = {}
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 900
        while not self.done.is_set() and time.monotonic() < deadline:
            for pod in self.kube.core.list_pod_for_all_namespaces(label_selector="app=web").items:
                self.namespace_of[pod.metadata.name] = pod.metadata.namespace
            self.done.wait(0.5)


def test_two_workers_run_four_experiments_into_one_journal_and_report_without_touching_each_other(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kube: Kube, web_image: str
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    pytester.makepyfile(test_four=EXPERIMENTS.format(image=web_image))
    watch = PodWatch(kube)
    watch.start()
    began = time.monotonic()
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-n", "2", "--chaos-report-dir=out", "--junitxml=out/junit.xml", timeout=900
        )
    finally:
        watch.done.set()
        watch.join(timeout=10)
    wall = time.monotonic() - began
    assert result.parseoutcomes().get("passed") == 4, result.stdout.str()[-20000:]
    out = pytester.path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["chaoskit-journal.json", "chaoskit-report.html", "junit.xml"]

    # One journal holding all four, from the controller; both workers ran some.
    runs = json.loads((out / "chaoskit-journal.json").read_text())["experiments"]
    assert sorted(r["name"] for r in runs) == [
        "test_container_kill",
        "test_packet_loss",
        "test_partition",
        "test_pod_kill",
    ]
    workers = {r["name"]: r["runner"].split()[0] for r in runs}
    assert set(workers.values()) == {"gw0", "gw1"}, workers
    summary = result.stdout.str().split("chaoskit experiments", 1)[1]
    assert all(f"PASSED {name}" in summary for name in workers), summary

    # Each experiment in its own namespace (the namespace fixture names it after the test), and its fault
    # on pods of that namespace only, by the API's record of where each pod lived.
    for run in runs:
        own = f"ck-{run['name'].replace('_', '-')}-"
        (fault,) = run["faults"]
        hit = [t.split("/")[0].split(":")[0].split("@")[0] for t in fault["targets"]]
        assert hit and all(watch.namespace_of.get(pod, "unseen").startswith(own) for pod in hit), (
            run["name"],
            {pod: watch.namespace_of.get(pod, "unseen") for pod in hit},
        )
        assert fault["nodes"], fault

    # No two workers' faults on one node at once: each fault's hold, from injection to its undo (or its
    # effect, for a kill), is apart from every other worker's fault on a shared node.
    holds = []
    for run in runs:
        (fault,) = run["faults"]
        end = fault["reverted_at"] or fault["injected_at"] + (fault["inject_to_effect"] or 0)
        holds.append((workers[run["name"]], set(fault["nodes"]), fault["injected_at"], end, run["name"]))
    for a in holds:
        for b in holds:
            if a[0] < b[0] and a[1] & b[1]:
                assert a[3] <= b[2] or b[3] <= a[2], f"{a[4]} and {b[4]} overlapped on {a[1] & b[1]}"
    waited = {r["name"]: round(r["faults"][0]["lock_wait_s"] or 0, 1) for r in runs}

    # One report, the four in it; JUnit from the controller with every experiment's properties.
    dom = rendered(out / "chaoskit-report.html")
    assert all(name in dom for name in workers)
    cases = list(ET.parse(out / "junit.xml").iter("testcase"))
    assert len(cases) == 4
    assert all(
        {p.get("name"): p.get("value") for p in c.iter("property")}.get("chaoskit_outcome") == "passed" for c in cases
    )
    serial = sum(r["ended"] - r["started"] for r in runs)
    print(
        f"4 experiments on 2 workers in {wall:.0f} s (their own durations add up to {serial:.0f} s); {workers}; "
        f"waited for nodes: {waited}"
    )
