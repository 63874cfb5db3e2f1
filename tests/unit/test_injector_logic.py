"""The injector agent's decisions and the node scripts, as pure logic (no cluster)."""

from __future__ import annotations

import subprocess

import pytest

from chaoskit.adapters.kube import Kube
from chaoskit.agent.injector import LeaseClock, due
from chaoskit.faults import netns
from chaoskit.faults.freeze import Freeze
from chaoskit.faults.network import Bandwidth, Partition
from chaoskit.faults.node import KUBELET_START, NodeFailure

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


def test_the_delete_rules_snippet_matches_the_fault_and_not_a_longer_id(tmp_path):
    listing = "\n".join(
        [
            "-A INPUT -s 10.0.0.2/32 -m comment --comment chaoskit:partition-1 -j DROP",
            "-A INPUT -s 10.0.0.3/32 -m comment --comment chaoskit:partition-12 -j DROP",
        ]
    )
    saved = tmp_path / "rules"
    saved.write_text(listing + "\n")
    snippet = netns.delete_rules_snippet("chaoskit:partition-1")
    fake = f'iptables-save() {{ cat {saved}; }}\niptables() {{ echo "iptables $*"; }}\n' + snippet.replace(
        "! iptables-save", "true || ! iptables-save"
    )
    done = subprocess.run(["bash", "-c", fake], capture_output=True, text=True, timeout=10, check=False)
    assert done.stdout.splitlines() == [
        "iptables -w -t filter -D INPUT -s 10.0.0.2/32 -m comment --comment chaoskit:partition-1 -j DROP"
    ], done


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
