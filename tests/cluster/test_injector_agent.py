"""The injector agent: faults undone by the cluster itself when the run and its ledger are gone; owners
judged by Leases, so two machines sharing a cluster never touch each other's namespaces or faults.

Each "machine" is a pytest run in a subprocess with a cache directory of its
own (``CHAOSKIT_CACHE``: its own ledger, no shared pid files). Residue is counted
by :mod:`residue`, which uses none of chaoskit's fault code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from residue import Residue, scan
from workloads import Web, probe_eventually

from chaoskit.adapters.status import lease_renewed
from chaoskit.cluster import injector
from chaoskit.state.leases import LEASE_SECONDS, NAMESPACE

pytestmark = pytest.mark.destructive

HELD = """
import pathlib, time

def test_hold(chaos, kube):
    with {faults}:
        pathlib.Path("{marker}").write_text("held")
        time.sleep(300)
"""

NAMESPACE_HELD = """
import pathlib, time

def test_own_namespace(namespace, chaos):
    with chaos.partition("{web_ns}", "role=client", peer_selector="app=web", max_share=1.0) as record:
        pathlib.Path("{marker}").write_text(namespace + " " + record.fault_id)
        deadline = time.monotonic() + 240
        while not pathlib.Path("{release}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
"""

QUICK = """
def test_quick(namespace):
    assert namespace
"""


@pytest.fixture(scope="module")
def agent(cluster, kube) -> str:
    """The injector, installed (or updated) on every node."""
    return injector.install(cluster, kube)


def machine(tmp_path: Path, name: str, source: str, *options: str) -> tuple[subprocess.Popen[str], Path]:
    """A pytest run of ``source`` standing for another machine: its own directory and cache."""
    home = tmp_path / name
    home.mkdir()
    (home / f"test_{name}.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "CHAOSKIT_CACHE": str(home / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(home), "-p", "no:cacheprovider", "-q", "-s", *options],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, home


def wait_for_file(path: Path, proc: subprocess.Popen[str], within: float = 240) -> str:
    deadline = time.monotonic() + within
    while not path.exists() or not path.read_text():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)
    return path.read_text()


def residue_now(cluster) -> Residue:
    return scan(cluster.name, str(cluster.kubeconfig))


def cleanup_elsewhere(cluster, tmp_path: Path, name: str) -> subprocess.CompletedProcess[str]:
    """``chaoskit cleanup`` from a machine with an empty cache: it knows only what the cluster records."""
    return chaoskit("cleanup", "--name", cluster.name, timeout=400, cache=tmp_path / name)


def chaoskit(*args: str, timeout: float, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The command line as a user types it (with a cache directory of its own, standing for another machine)."""
    env = {**os.environ, "CHAOSKIT_CACHE": str(cache)} if cache else None
    return subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def worker(kube) -> str:
    return sorted(n.metadata.name for n in kube.nodes() if "worker" in n.metadata.name)[0]


def test_a_killed_run_whose_ledger_is_deleted_is_undone_by_the_agent_when_its_lease_expires(
    cluster, kube, agent: str, web: Web, client: str, tmp_path: Path
) -> None:
    node = worker(kube)
    assert residue_now(cluster).empty(), "the cluster had residue before the test"
    marker = tmp_path / "held"
    faults = (
        f'chaos.partition("{web.namespace}", "role=client", peer_selector="app=web", max_share=1.0), '
        f'chaos.node_failure("{node}", mode="kubelet", wait_not_ready=False)'
    )
    proc, home = machine(tmp_path, "runner", HELD.format(faults=faults, marker=marker), "--chaos-injector", "agent")
    wait_for_file(marker, proc)
    held = residue_now(cluster)
    assert held.rules and held.kubelets_down == [f"{node}: inactive"], held
    assert len(held.fault_records) == 2, held

    proc.kill()
    killed = time.monotonic()
    proc.communicate(timeout=60)
    shutil.rmtree(home / "cache" / "ledger")  # nothing on the runner survives

    while True:
        now = residue_now(cluster)
        if not now.rules and not now.kubelets_down:
            undone_after = time.monotonic() - killed
            break
        assert time.monotonic() - killed < LEASE_SECONDS + 30, f"the agent did not undo: {now}"
        time.sleep(0.5)
    print(f"FIGURE agent undo after SIGKILL: {undone_after:.1f} s (lease {LEASE_SECONDS} s)")
    # The lease was last renewed up to 5 s before the kill; the agent acts within 1 s of its expiry.
    assert undone_after <= LEASE_SECONDS + 5, f"undone {undone_after:.1f} s after the kill"

    # The records say who undid what and why; they stay until a cleanup proves and removes them.
    records = kube.custom.list_namespaced_custom_object("chaoskit.io", "v1alpha1", NAMESPACE, "faults")["items"]
    marks = {
        r["metadata"]["name"]: {n: s["undone"] for n, s in r["status"]["nodes"].items() if "undone" in s}
        for r in records
    }
    assert len(marks) == 2 and all(marks.values()), marks
    assert all("not renewed" in m["why"] and "output" not in m for ms in marks.values() for m in ms.values()), marks

    deadline = time.monotonic() + 120
    while not (now := residue_now(cluster)).empty():
        assert time.monotonic() < deadline, f"not whole again: {now}"
        time.sleep(1)
    # systemd says the kubelet is active again; it serves (execs, the pods' probes) once it renews its lease.
    restarted = time.time() - (time.monotonic() - killed) + undone_after - 2
    kube.wait_for(
        kube.coordination.list_namespaced_lease,
        lambda leases: node in leases and lease_renewed(leases[node], restarted),
        60,
        f"the kubelet of {node} to renew its lease after the agent started it",
        namespace="kube-node-lease",
    )
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)

    # Another machine's cleanup finds both from the cluster alone, proves them undone and removes the records,
    # once the owner's lease is expired by its own clock too (which allows for clocks that differ a little).
    deadline = time.monotonic() + 60
    while True:
        result = cleanup_elsewhere(cluster, tmp_path, "elsewhere")
        assert result.returncode == 0, result
        if "left alone" not in result.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "2 fault(s) undone" in result.stdout, result
    assert residue_now(cluster).fault_records == []


def test_two_machines_on_one_cluster_never_delete_each_others_namespaces_or_faults(
    cluster, kube, agent: str, web: Web, client: str, tmp_path: Path
) -> None:
    marker, release = tmp_path / "first-held", tmp_path / "release"
    first, _ = machine(tmp_path, "first", NAMESPACE_HELD.format(web_ns=web.namespace, marker=marker, release=release))
    namespace, fault_id = wait_for_file(marker, first).split()

    # A second machine starts a session (whose start sweeps the cluster) and ends it while the first holds on.
    second, _ = machine(tmp_path, "second", QUICK)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert kube.core.read_namespace(namespace).status.phase == "Active"
    assert residue_now(cluster).of(fault_id), "the second machine undid the first one's fault"

    release.write_text("go")
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output
    assert residue_now(cluster).of(fault_id) == []
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


def test_kubelet_stop_turns_the_node_not_ready_and_the_agent_starts_it_again(
    cluster, kube, agent: str, tmp_path: Path
) -> None:
    """A zone failure in kubelet mode (the zone of one worker): each of its nodes fails as a node failure in
    kubelet mode does, so this covers that too (one 40 s NotReady wait instead of two)."""
    node = worker(kube)
    zone = (kube.core.read_node(node).metadata.labels or {})["topology.kubernetes.io/zone"]
    fault = f'chaos.zone_failure("{zone}", mode="kubelet")'
    proc, _ = machine(
        tmp_path,
        "kubelet",
        f"""
        def test_kubelet(chaos):
            with {fault} as record:
                print("EFFECT", record.effect, round(record.inject_to_effect, 1))
            print("PROOF", record.undo_proof)
        """,
        "--chaos-injector",
        "agent",
    )
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    effect = f"zone {zone} down: kubelet of {node} stopped (systemd: inactive); node NotReady"
    proof = f"zone {zone} back: kubelet of {node} started by the injector; node {node} Ready"
    assert f"EFFECT {effect}" in output and f"PROOF {proof}" in output, output
    after = residue_now(cluster)
    assert after.empty() and after.fault_records == [], after


def test_agent_install_and_status_as_a_user_types_them(cluster, kube, agent: str) -> None:
    installed = chaoskit("agent", "install", "--name", cluster.name, timeout=600)
    assert installed.returncode == 0 and f"injector {agent} runs on every node of {cluster.name}" in installed.stdout
    status = chaoskit("agent", "status", "--name", cluster.name, timeout=120)
    assert status.returncode == 0, status
    nodes = sorted(n.metadata.name for n in kube.nodes())
    listed = sorted(line.split()[1] for line in status.stdout.splitlines() if line.startswith("  chaoskit-injector-"))
    assert listed == nodes, status.stdout  # one injector pod on every node, the control plane's included
    assert f"injector of {cluster.name}: {agent}" in status.stdout


def test_execs_through_the_agent_in_parallel_leave_the_shared_client_working(kube, agent: str) -> None:
    """The official client's exec swaps its API client's transport while it opens a stream; chaoskit gives each
    exec a client of its own, so parallel execs (one per node) and plain requests beside them all work."""
    from concurrent.futures import ThreadPoolExecutor

    from chaoskit.adapters.nodes import AgentShell

    shell = AgentShell(kube)
    names = sorted(n.metadata.name for n in kube.nodes())
    with ThreadPoolExecutor(max_workers=8) as pool:
        execs = [pool.submit(shell.run, names[i % len(names)], ["echo", f"n{i}"], 30) for i in range(12)]
        lists = [pool.submit(lambda: len(kube.nodes())) for _ in range(12)]
        assert [f.result().stdout.strip() for f in execs] == [f"n{i}" for i in range(12)]
        assert {f.result() for f in lists} == {len(names)}
    assert len(kube.pods("chaoskit-system")) >= len(names)  # the shared client still makes plain requests


def test_two_sessions_in_one_process_each_reach_nodes_their_own_way(cluster, agent: str) -> None:
    """The way to the nodes is the session's, not the process's: a session opened with Docker and one opened
    with the agent, side by side, each run their command their own way (a command the agent runs is in a pod's
    cgroup, one Docker runs is not), and each fault handle carries its session's way."""
    from chaoskit.cluster import ClusterSpec
    from chaoskit.session import open_session

    spec = ClusterSpec(provider=cluster.provider, name=cluster.name)
    node = f"{cluster.name}-worker"
    with (
        open_session(spec, bring_up=False, injector="docker", sweep_first=False) as by_docker,
        open_session(spec, bring_up=False, injector="agent", install_agent=False, sweep_first=False) as by_agent,
    ):
        assert (by_docker.shell.name, by_agent.shell.name) == ("docker", "agent")
        cgroups = {
            s.shell.name: s.shell.run(node, ["cat", "/proc/self/cgroup"], 30).stdout for s in (by_docker, by_agent)
        }
        assert "kubepods" in cgroups["agent"] and "kubepods" not in cgroups["docker"], cgroups
        assert by_agent.chaos().cluster.node_shell is by_agent.shell
        assert by_docker.chaos().cluster.node_shell is by_docker.shell
