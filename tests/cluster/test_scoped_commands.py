"""``-n``/``-l`` on ``chaoskit status``, ``cleanup`` and ``abort``: each acts on the faults of the pods it names and
leaves the rest in place, as an independent scan (:mod:`residue`) counts them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from inner import start_inner_run
from residue import scan
from workloads import Web, deploy_web, scratch_namespace

from chaoskit.adapters.nodes import INJECTOR_NAMESPACE, INJECTOR_SELECTOR
from chaoskit.state.ledger import Ledger

pytestmark = pytest.mark.destructive  # it kills runs and sweeps: residue scans cover the whole cluster

TWO_LATENCIES = (
    'chaos.latency("{a}", "app=web", delay_ms=30, max_share=1.0) as first, '
    'chaos.latency("{b}", "app=web", delay_ms=30, max_share=1.0)'
)


def chaoskit(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args, "--name", cluster.name],
        capture_output=True,
        text=True,
        timeout=300,
    )


def ids_by_namespace(cluster) -> dict[str, str]:
    """The unsettled faults of the cluster's ledger, by the namespace of their pods."""
    return {e.pods[0].split("/", 1)[0]: e.fault_id for e in Ledger(cluster.name).unsettled()}


def held(cluster, fault_id: str) -> bool:
    """Whether the scan sees the latency fault ``fault_id`` in place: its rules and its delayer process."""
    found = scan(cluster.name, str(cluster.kubeconfig))
    return bool(found.of(fault_id)) and bool(found.helpers_of(fault_id))


@pytest.fixture
def two_webs(cluster, kube, web: Web, web_image: str) -> Iterator[tuple[str, str]]:
    """The test's web tier and a second one in a namespace of its own; no injector agent on the cluster, which
    would undo a killed run's faults itself once its owner Lease expires (15 s), racing the commands tested."""
    if kube.pods(INJECTOR_NAMESPACE, INJECTOR_SELECTOR):
        assert chaoskit(cluster, "agent", "remove").returncode == 0
        kube.wait_for(
            kube.core.list_namespaced_pod, lambda pods: not pods, 120, "the injector's pods gone",
            namespace=INJECTOR_NAMESPACE, label_selector=INJECTOR_SELECTOR,
        )  # fmt: skip
    name = f"{web.namespace}-b"
    with scratch_namespace(kube, name):
        deploy_web(kube, name, web_image, cluster.free_node_port(kube))
        yield web.namespace, name


def test_status_and_cleanup_within_a_namespace_or_selector_leave_the_other_dead_runs_fault(
    cluster, two_webs: tuple[str, str], tmp_path: Path
) -> None:
    a, b = two_webs
    assert scan(cluster.name, str(cluster.kubeconfig)).empty(), "the cluster had residue before the test"
    proc, _ = start_inner_run(tmp_path, TWO_LATENCIES.format(a=a, b=b))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    ids = ids_by_namespace(cluster)
    assert sorted(ids) == [a, b] and held(cluster, ids[a]) and held(cluster, ids[b])

    status = chaoskit(cluster, "status", "-n", a, "-o", "json")
    assert status.returncode == 1, status  # residue within the scope
    said = json.loads(status.stdout)
    assert [f["faultId"] for f in said["faults"]] == [ids[a]] and said["outsideScope"] == 1, said
    assert said["scope"] == f"namespace {a}"
    nothing = chaoskit(cluster, "status", "-n", b, "-l", "app=none", "-o", "json")
    assert nothing.returncode == 0 and json.loads(nothing.stdout)["faults"] == [], nothing

    first = chaoskit(cluster, "cleanup", "-n", b, "-l", "app=web")
    assert first.returncode == 0, first
    assert f"within namespace {b} and pods matching app=web: 1 fault(s) undone" in first.stdout, first.stdout
    assert "left alone (outside the scope): 1 fault(s) of dead runs" in first.stdout, first.stdout
    assert not held(cluster, ids[b]) and held(cluster, ids[a])  # the scan, not chaoskit's word

    rest = chaoskit(cluster, "cleanup")
    assert rest.returncode == 0 and f"undone: {ids[a]}: " in rest.stdout, rest
    assert scan(cluster.name, str(cluster.kubeconfig)).empty() and Ledger(cluster.name).unsettled() == []


def test_abort_within_a_namespace_undoes_a_live_runs_fault_there_and_leaves_its_other_one(
    cluster, two_webs: tuple[str, str], tmp_path: Path
) -> None:
    a, b = two_webs
    proc, _ = start_inner_run(tmp_path, TWO_LATENCIES.format(a=a, b=b))
    try:
        ids = ids_by_namespace(cluster)
        aborted = chaoskit(cluster, "abort", "-n", a, "-o", "json")
        assert aborted.returncode == 0, aborted
        said = json.loads(aborted.stdout)
        assert [line.split(":")[0] for line in said["undone"]] == [ids[a]] and said["outsideScope"] == 1, said
        assert not held(cluster, ids[a]) and held(cluster, ids[b])
        assert proc.poll() is None  # the run holds its other fault until it is stopped
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    assert scan(cluster.name, str(cluster.kubeconfig)).empty(), output
    assert Ledger(cluster.name).unsettled() == []
