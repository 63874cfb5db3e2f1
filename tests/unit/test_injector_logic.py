"""The injector agent's decisions and the node scripts, as pure logic (no cluster)."""

from __future__ import annotations

import subprocess

import pytest

from chaoskit.adapters import nodes
from chaoskit.adapters.kube import Kube
from chaoskit.agent.injector import LeaseClock, due
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultUnsupported
from chaoskit.faults import netns
from chaoskit.faults.freeze import Freeze
from chaoskit.faults.network import Bandwidth, Partition
from chaoskit.faults.node import KUBELET_START, NodeFailure
from chaoskit.faults.node_partition import NodePartition, NodePartitionSpec, heal_timer_snippet

NODE = "worker-1"


def lease(name: str, renewed: str, duration: int = 15) -> dict:
    return {"metadata": {"name": name}, "spec": {"renewTime": renewed, "leaseDurationSeconds": duration}}


def fault(data: dict, owner: str = "owner-a") -> dict:
    return {"metadata": {"name": "chaoskit-fault-x", "labels": {"chaoskit.io/owner": owner}}, "data": data}


def test_a_lease_expires_by_the_agents_clock_when_its_renew_time_stops_changing():
    clock = LeaseClock()
    leases = {"owner-a": lease("owner-a", "t1")}
    clock.observe(list(leases.values()), at=100.0)
    assert clock.expired("owner-a", leases, at=114.0) is None
    leases = {"owner-a": lease("owner-a", "t2")}  # renewed: the clock starts again
    clock.observe(list(leases.values()), at=114.5)
    assert clock.expired("owner-a", leases, at=129.0) is None
    assert "not renewed for 16 s" in (clock.expired("owner-a", leases, at=130.6) or "")
    assert "is gone" in (clock.expired("owner-b", leases, at=130.6) or "")


def test_due_undo_beats_inject_and_only_for_this_node_once():
    clock = LeaseClock()
    live = {"owner-a": lease("owner-a", "t1")}
    clock.observe(list(live.values()), at=0.0)
    both = fault({f"undo.{NODE}": "u", f"inject.{NODE}": "i"})
    assert due(both, NODE, live, clock, at=1.0) == ("inject", "its owner asked")
    assert due(fault({f"undo.{NODE}": "u"}), NODE, live, clock, at=1.0) is None  # owner alive, not asked
    action, why = due(both, NODE, live, clock, at=20.0) or ("", "")
    assert action == "undo" and "not renewed" in why  # a fault whose owner is gone is not started
    asked = fault({f"undo.{NODE}": "u", "undo-requested": "now"})
    assert due(asked, NODE, live, clock, at=1.0) == ("undo", "its owner asked at now")
    done = fault({f"undo.{NODE}": "u", "undo-requested": "now", f"undone.{NODE}": "{}"})
    assert due(done, NODE, live, clock, at=1.0) is None
    assert due(fault({"undo.other-node": "u"}), NODE, {}, clock, at=1.0) is None
    failed = fault({f"undo.{NODE}": "u", f"inject.{NODE}": "i", f"inject-failed.{NODE}": "{}"})
    assert due(failed, NODE, live, clock, at=1.0) is None  # an inject is tried once, never again later


def test_every_agent_undo_is_grouped_by_node():
    undo = {"comment": "chaoskit:partition-1", "namespaces": [[NODE, 10, 111, "a/p1"], ["worker-2", 20, 222, "a/p2"]]}
    scripts = Partition.agent_undo(undo)
    assert set(scripts) == {NODE, "worker-2"}
    assert "ck_pid 10 111" in scripts[NODE] and "ck_pid 20 222" not in scripts[NODE]
    assert "exit $ck_status" in scripts[NODE]
    assert "tc qdisc del" in Bandwidth.agent_undo({"handle": "1a2b:", "namespaces": [[NODE, 10, 111, "a/p1"]]})[NODE]
    frozen = {"containers": [{"node": NODE, "pid_ns": "pid:[4026532000]", "target": "a/p1", "ip": "10.0.0.1"}]}
    assert "kill -CONT" in Freeze.agent_undo(frozen)[NODE]
    assert NodeFailure.agent_undo({"node": NODE, "mode": "kubelet", "fault_id": "x"}) == {NODE: KUBELET_START}
    assert NodeFailure.agent_undo({"node": NODE, "mode": "stop"}) == {}  # a stopped node has no agent to run it


def run_undo(
    tmp_path, listing: str, save_fails: bool = False, restore_fails: bool = False, stays: bool = False
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The rule undo (under sh, as the agent and the fault run it) against a fake ``iptables-save`` printing
    ``listing`` (nothing once a restore ran, unless the rules ``stays``) and an ``iptables-restore`` that logs
    what it was given (and fails, with ``restore_fails``)."""
    saved, restored, bin_dir = tmp_path / "rules", tmp_path / "restored", tmp_path / "bin"
    saved.write_text(listing + "\n")
    bin_dir.mkdir()
    save = "exit 1" if save_fails else f"[ -e {tmp_path}/done ] || cat {saved}"
    if stays:
        save = f"cat {saved}"
    restore = f"cat >> {restored}; touch {tmp_path}/done" + ("; exit 1" if restore_fails else "")
    for name, body in (("iptables-save", save), ("iptables-restore", restore)):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    script = netns.delete_rules_snippet("chaoskit:partition-1")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10, check=False, env=env)
    return done, restored.read_text() if restored.exists() else ""


def test_the_agents_rule_undo_deletes_the_faults_rules_only_and_checks_they_are_gone(tmp_path):
    listing = "\n".join(
        [
            '-A INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP',
            '-A INPUT -s 10.0.0.3/32 -m comment --comment "chaoskit:partition-12" -j DROP',
        ]
    )
    done, restored = run_undo(tmp_path, listing)
    assert done.returncode == 0 and done.stderr == "", done
    assert restored == '*filter\n-D INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP\nCOMMIT\n'


def test_the_agents_rule_undo_never_runs_what_a_rule_says(tmp_path):
    # A pod with NET_ADMIN can write its own rules; one carrying our comment and a command must stay text.
    evil = '-A INPUT -m comment --comment "chaoskit:partition-1" -m comment --comment "x$(touch {0}/pwned)" -j DROP'
    done, restored = run_undo(tmp_path, evil.format(tmp_path))
    assert not (tmp_path / "pwned").exists()
    assert f"$(touch {tmp_path}/pwned)" in restored  # handed to iptables-restore as it was, never to a shell
    assert done.returncode == 0, done


def test_a_delete_that_fails_because_another_undo_got_there_first_is_done(tmp_path):
    rule = '-A INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP'
    done, restored = run_undo(tmp_path, f"{rule}\n{rule.replace('10.0.0.2', '10.0.0.3')}", restore_fails=True)
    assert done.returncode == 0, done
    assert "chaoskit-matched 2" in done.stdout
    assert restored.count("COMMIT") == 3  # the transaction, then each rule by itself


def test_the_rule_undo_fails_naming_a_rule_still_there_after_the_delete(tmp_path):
    rule = '-A INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP'
    done, _ = run_undo(tmp_path, rule, stays=True)
    assert done.returncode == 1
    assert rule in done.stdout and "still in place after the delete" in done.stdout


def test_the_agents_rule_undo_fails_when_it_cannot_read_the_rules(tmp_path):
    done, restored = run_undo(tmp_path, "", save_fails=True)
    assert done.returncode == 1 and restored == ""


def test_the_agents_qdisc_undo_fails_while_the_qdisc_is_still_there(tmp_path):
    script = netns.delete_qdisc_checked_snippet("1a2b:")
    stuck = 'tc() { echo "qdisc tbf 1a2b: root refcnt 2 rate 1Mbit"; }\n' + script
    gone = (
        'tc() { if [ "$2" = del ]; then touch '
        + f"{tmp_path}/del"
        + "; fi; if [ -e "
        + f"{tmp_path}/del"
        + ' ]; then echo "qdisc noqueue 0: root"; else echo "qdisc tbf 1a2b: root"; fi; }\n'
        + script
    )
    assert subprocess.run(["sh", "-c", stuck], capture_output=True, timeout=10, check=False).returncode == 1
    assert subprocess.run(["sh", "-c", gone], capture_output=True, timeout=10, check=False).returncode == 0


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        ("abc 40 1 4026532001\nabc 41 7 4026532001\n", {"abc": (40, 4026532001)}),  # pid 1 of its namespace
        ("abc 52 3 4026532001\nabc 50 2 4026532001\n", {"abc": (50, 4026532001)}),  # shared: the oldest
        ("noise\nabc x 1 2\n", {}),
    ],
)
def test_a_containers_main_process_is_pid_1_of_its_namespace(listing, expected):
    assert netns.main_processes(listing) == expected


def test_served_version_picks_the_first_the_server_has():
    class Group:
        def __init__(self, name, versions):
            self.name = name
            self.versions = [type("V", (), {"version": v})() for v in versions]

    class Apis:
        def get_api_versions(self):
            return type("G", (), {"groups": [Group("policy", ["v1beta1"])]})()

    kube = Kube.__new__(Kube)
    import chaoskit.adapters.kube as module

    original = module.client.ApisApi
    module.client.ApisApi = lambda api_client: Apis()  # type: ignore[assignment]
    kube.api_client = None
    try:
        assert kube.served_version("policy", ("v1", "v1beta1")) == "policy/v1beta1"
        with pytest.raises(Exception, match=r"serves none of policy/v2"):
            kube.served_version("policy", ("v2",))
    finally:
        module.client.ApisApi = original


def test_an_owner_knows_when_its_lease_lapsed_while_a_fault_was_held(monkeypatch):
    import threading
    import time as clock

    from chaoskit.cluster.base import Cluster
    from chaoskit.faults import objects

    owner = objects.Owner(Cluster("unit", "kind", None, None, "airgap"))
    assert owner.lapsed_since(0.0) is None  # no Lease yet: nothing the agents could act on
    owner._thread = threading.current_thread()  # as if renewing
    now = clock.monotonic()
    owner.renewed_mono = now - 3
    assert owner.lapsed_since(now - 60) is None
    owner.gaps = [(now - 50, now - 30)]  # 20 s unrenewed, over the 15 s a Lease lasts
    assert owner.lapsed_since(now - 60) == pytest.approx(20)
    assert owner.lapsed_since(now - 10) is None  # that gap ended before this fault was injected
    owner.renewed_mono = now - 16  # going on now
    assert owner.lapsed_since(now - 10) == pytest.approx(16, abs=1)


def test_a_freeze_of_pods_in_the_nodes_pid_namespace_is_refused_before_anything_is_read():
    from types import SimpleNamespace

    from chaoskit.cluster.base import Cluster
    from chaoskit.errors import SpecError
    from chaoskit.faults.freeze import FreezeSpec

    pod = SimpleNamespace(
        metadata=SimpleNamespace(name="node-exporter-1", namespace="monitoring", deletion_timestamp=None),
        spec=SimpleNamespace(host_pid=True),
    )
    kube = SimpleNamespace(pods=lambda namespace, selector: [pod])
    fault = Freeze(Cluster("unit", "kind", None, None, "airgap"), kube, FreezeSpec("monitoring", "app=exporter"))  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="share the node's PID namespace"):
        fault.plan()


def test_a_node_partition_is_refused_through_the_injector_agent():
    """The cut would sever the agent's own link to the API server, through which it is asked to undo."""

    class AgentShell:
        name = "agent"

    before = nodes.use(AgentShell())  # type: ignore[arg-type]
    try:
        cluster = Cluster("unit", "existing", None, None, "airgap")
        fault = NodePartition(cluster, None, NodePartitionSpec("worker-1"))  # type: ignore[arg-type]
        with pytest.raises(FaultUnsupported, match="through Docker on kind only"):
            fault.plan()
    finally:
        nodes.use(before)


def test_the_dead_man_timer_deletes_the_rules_after_its_seconds(tmp_path):
    """The timer's own script (under bash, against fake iptables) waits, then deletes the fault's rules."""
    rule = '-A OUTPUT -d 172.18.0.2/32 -m comment --comment "chaoskit:node-partition-1" -j DROP'
    (tmp_path / "rules").write_text(rule + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "iptables-save": f"[ -e {tmp_path}/done ] || cat {tmp_path}/rules",
        "iptables-restore": f"cat >> {tmp_path}/restored; touch {tmp_path}/done",
        "setsid": 'exec "$@"',
        "ip6tables-save": "true",  # no IPv6 rule: the IPv6 half finds nothing to delete
        "ip6tables-restore": f"touch {tmp_path}/restored6",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    snippet = heal_timer_snippet(0.2, "chaoskit:node-partition-1") + " wait"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, timeout=10, check=False, env=env)
    assert done.returncode == 0, done
    assert "-D OUTPUT -d 172.18.0.2/32" in (tmp_path / "restored").read_text()
    assert not (tmp_path / "restored6").exists()
