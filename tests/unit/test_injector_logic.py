"""The injector agent's decisions and the node scripts, as pure logic (no cluster)."""

from __future__ import annotations

import os
import subprocess

import pytest

from chaoskit.adapters.kube import Kube
from chaoskit.agent import actions
from chaoskit.agent.actions import Refused
from chaoskit.agent.injector import LeaseClock, Rules, due
from chaoskit.cluster.base import Cluster
from chaoskit.errors import FaultUnsupported
from chaoskit.faults import netns, netrules
from chaoskit.faults.freeze import Freeze
from chaoskit.faults.network import Partition
from chaoskit.faults.node import NodeFailure
from chaoskit.faults.node_partition import NodePartition, NodePartitionSpec, heal_timer_snippet
from chaoskit.faults.shaping import Bandwidth

NODE = "worker-1"


def lease(name: str, renewed: str, duration: int = 15) -> dict:
    return {"metadata": {"name": name}, "spec": {"renewTime": renewed, "leaseDurationSeconds": duration}}


def fault(nodes: dict, owner: str = "owner-a", status: dict | None = None, **spec) -> dict:
    """A Fault record as the API serves it."""
    body = {"faultId": "partition-1", "kind": "partition", "ownerLease": owner, "nodes": nodes, **spec}
    return {"metadata": {"name": "chaoskit-fault-partition-1"}, "spec": body, "status": {"nodes": status or {}}}


UNDO = [{"op": "delete-rules", "pid": 10, "inode": 111, "comment": "chaoskit:partition-1"}]
STOP = [{"op": "stop-kubelet"}]


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
    both = fault({NODE: {"undo": UNDO, "inject": STOP}})
    assert due(both, NODE, live, clock, at=1.0)[:2] == ("inject", "its owner asked")
    assert due(fault({NODE: {"undo": UNDO}}), NODE, live, clock, at=1.0) is None  # owner alive, not asked
    action, why, steps = due(both, NODE, live, clock, at=20.0) or ("", "", [])
    assert action == "undo" and "not renewed" in why  # a fault whose owner is gone is not started
    assert [str(s) for s in steps] == [
        "delete-rules(comment=chaoskit:partition-1, families=('ipv4',), inode=111, pid=10, table=filter)"
    ]
    asked = fault({NODE: {"undo": UNDO}}, undoRequested="now")
    assert due(asked, NODE, live, clock, at=1.0)[:2] == ("undo", "its owner asked at now")
    done = fault({NODE: {"undo": UNDO}}, undoRequested="now", status={NODE: {"undone": {}}})
    assert due(done, NODE, live, clock, at=1.0) is None
    assert due(fault({"other-node": {"undo": UNDO}}), NODE, {}, clock, at=1.0) is None
    failed = fault({NODE: {"undo": UNDO, "inject": STOP}}, status={NODE: {"injectFailed": {}}})
    assert due(failed, NODE, live, clock, at=1.0) is None  # an inject is tried once, never again later


def test_an_inject_needs_a_live_owner_the_agent_has_seen():
    clock = LeaseClock()
    asked = fault({NODE: {"undo": [{"op": "start-kubelet"}], "inject": STOP}}, owner="owner-z")
    assert due(asked, NODE, {}, clock, at=1.0)[:2] == ("undo", "its owner's lease owner-z is gone")
    no_undo = fault({NODE: {"inject": STOP}}, owner="owner-z")
    assert due(no_undo, NODE, {}, clock, at=1.0) is None  # no owner: never started


def test_the_agent_refuses_a_kubelet_stop_on_the_control_plane_unless_the_record_allows_it():
    clock = LeaseClock()
    live = {"owner-a": lease("owner-a", "t1")}
    clock.observe(list(live.values()), at=0.0)
    control_plane = Rules(control_plane=True)
    action, why, _ = due(fault({NODE: {"inject": STOP}}), NODE, live, clock, 1.0, control_plane) or ("", "", [])
    assert action == "refuse" and "control plane" in why
    allowed = fault({NODE: {"inject": STOP}}, allowControlPlane=True)
    assert due(allowed, NODE, live, clock, 1.0, control_plane)[:2] == ("inject", "its owner asked")
    protected = fault({NODE: {"inject": STOP}}, namespaces=["kube-system"])
    assert due(protected, NODE, live, clock, 1.0)[:2] == (
        "refuse",
        "namespace(s) kube-system are protected on this cluster",
    )
    refused = fault({NODE: {"inject": STOP}}, namespaces=["kube-system"], status={NODE: {"refused": {}}})
    assert due(refused, NODE, live, clock, 1.0) is None  # refused once


EVIL = ["$(touch /tmp/pwned)", "`id`", "a;b", "a\nb", "a'b", 'a"b', "../../etc"]


@pytest.mark.parametrize("evil", EVIL)
@pytest.mark.parametrize(
    "make",
    [
        lambda e: {"op": "delete-rules", "pid": 10, "inode": 111, "comment": e},
        lambda e: {"op": "delete-rules", "pid": e, "inode": 111, "comment": "chaoskit:p-1"},
        lambda e: {"op": "delete-rules", "pid": 10, "inode": 111, "comment": "chaoskit:p-1", "table": e},
        lambda e: {"op": "delete-qdisc", "pid": 10, "inode": 111, "handle": e},
        lambda e: {"op": "stop-helpers", "comment": "chaoskit:" + e},
        lambda e: {"op": "remove-fill", "pid": 1, "inode": 2, "uid": e, "path": "/data", "file": ".chaoskit-fill-x"},
        lambda e: {
            "op": "remove-fill",
            "pid": 1,
            "inode": 2,
            "uid": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
            "path": "/data/" + e,
            "file": ".chaoskit-fill-x",
        },
        lambda e: {"op": e},
        lambda e: {"op": "resume", "pidNamespace": 5, e: 1},
    ],
)
def test_a_step_with_shell_text_in_any_field_is_refused(make, evil):
    with pytest.raises(Refused):
        actions.check_step(make(evil), actions.OPS)


def test_a_record_that_does_not_validate_is_refused_with_the_reason_and_runs_nothing():
    clock = LeaseClock()
    planted = fault({NODE: {"undo": [{"op": "delete-qdisc", "pid": 10, "inode": 1, "handle": "1:; touch /x"}]}})
    action, why, steps = due(planted, NODE, {}, clock, at=1.0) or ("", "", [])
    assert action == "refuse" and "handle" in why and steps == []
    scripted = fault(
        {NODE: {"undo": UNDO, "inject": [{"op": "delete-rules", "pid": 1, "inode": 1, "comment": "chaoskit:x"}]}}
    )
    assert due(scripted, NODE, {}, clock, at=1.0)[0] == "refuse"  # an undo op is no inject
    legacy = fault({}, **{"undo.worker-1": "touch /x"})  # the old ConfigMap shape: text, not steps
    assert due(legacy, NODE, {}, clock, at=1.0) is None  # nothing for this node, nothing run
    bad_node = fault({"worker-1;id": {"undo": UNDO}})
    assert due(bad_node, NODE, {}, clock, at=1.0)[0] == "refuse"


def test_every_fault_kind_hands_the_agent_typed_steps_by_node():
    undo = {"comment": "chaoskit:partition-1", "namespaces": [[NODE, 10, 111, "a/p1"], ["worker-2", 20, 222, "a/p2"]]}
    steps = Partition.agent_steps(undo)
    assert set(steps) == {NODE, "worker-2"}
    assert steps[NODE] == [
        {
            "op": "delete-rules",
            "pid": 10,
            "inode": 111,
            "table": "filter",
            "comment": "chaoskit:partition-1",
            "families": ["ipv4"],
        }
    ]
    qdisc = Bandwidth.agent_steps({"handle": "1a2b:", "namespaces": [[NODE, 10, 111, "a/p1"]]})
    assert qdisc == {NODE: [{"op": "delete-qdisc", "pid": 10, "inode": 111, "handle": "1a2b:"}]}
    frozen = {"containers": [{"node": NODE, "pid_ns": "pid:[4026532000]", "target": "a/p1", "ip": "10.0.0.1"}]}
    assert Freeze.agent_steps(frozen) == {NODE: [{"op": "resume", "pidNamespace": 4026532000}]}
    assert NodeFailure.agent_steps({"node": NODE, "mode": "kubelet", "fault_id": "x"}) == {
        NODE: [{"op": "start-kubelet"}]
    }
    assert NodeFailure.agent_steps({"node": NODE, "mode": "stop"}) == {}  # a stopped node has no agent to run it
    from chaoskit.faults.dns import DnsFault
    from chaoskit.faults.http import HttpFault

    for helper_fault in (DnsFault, HttpFault):  # rules in the nat table, and the helpers they send traffic to
        steps = helper_fault.agent_steps(
            {"comment": "chaoskit:dns-1", "table": "nat", "namespaces": [[NODE, 10, 111, "a/p1"]]}
        )
        assert [s["op"] for s in steps[NODE]] == ["delete-rules", "stop-helpers"] and steps[NODE][0]["table"] == "nat"
    with pytest.raises(Refused):  # a bad field is refused before it is written
        Bandwidth.agent_steps({"handle": "1a2b: ; reboot", "namespaces": [[NODE, 10, 111, "a/p1"]]})


def fake_node(tmp_path, monkeypatch, listing: str, stays: bool = False):
    """A node whose /proc holds pid 10 in net:[111], and fake nsenter / iptables tools on PATH."""
    proc = tmp_path / "proc"
    (proc / "10" / "ns").mkdir(parents=True)
    (proc / "10" / "ns" / "net").symlink_to("net:[111]")
    (tmp_path / "rules").write_text(listing + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    save = f"cat {tmp_path}/rules" if stays else f"[ -e {tmp_path}/done ] || cat {tmp_path}/rules"
    fakes = {
        "nsenter": 'echo "$2" >> ' + f"{tmp_path}/entered" + '; shift 3; exec "$@"',
        "iptables-save": save,
        "iptables-restore": f"cat >> {tmp_path}/restored; touch {tmp_path}/done",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return actions.Node(proc=str(proc), tmp=str(tmp_path))


def test_the_agents_rule_undo_runs_argument_vectors_and_never_a_rule_as_shell(tmp_path, monkeypatch):
    mine = '-A INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP'
    evil = '-A INPUT -m comment --comment "chaoskit:partition-1" -m comment --comment "x$(touch {0}/pwned)" -j DROP'
    other = '-A INPUT -s 10.0.0.3/32 -m comment --comment "chaoskit:partition-12" -j DROP'
    node = fake_node(tmp_path, monkeypatch, "\n".join([mine, evil.format(tmp_path), other]))
    step = actions.check_step(UNDO[0])
    assert "deleted 2 ipv4 rule(s)" in actions.run_step(node, step)
    restored = (tmp_path / "restored").read_text()
    assert "-D INPUT -s 10.0.0.2/32" in restored and "chaoskit:partition-12" not in restored
    assert not (tmp_path / "pwned").exists()  # handed to iptables-restore as text, never to a shell
    assert (tmp_path / "entered").read_text().split() == ["10", "10", "10"]


def test_the_agents_rule_undo_fails_naming_a_rule_still_there(tmp_path, monkeypatch):
    rule = '-A INPUT -s 10.0.0.2/32 -m comment --comment "chaoskit:partition-1" -j DROP'
    node = fake_node(tmp_path, monkeypatch, rule, stays=True)
    with pytest.raises(actions.StepFailed, match="still in place"):
        actions.run_step(node, actions.check_step(UNDO[0]))


def test_a_namespace_no_process_is_in_is_gone_and_nothing_runs(tmp_path, monkeypatch):
    node = fake_node(tmp_path, monkeypatch, "")
    gone = actions.check_step({**UNDO[0], "inode": 999})
    assert actions.run_step(node, gone) == "namespace gone"
    assert not (tmp_path / "entered").exists()


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
    script = netrules.delete_rules_snippet("chaoskit:partition-1")
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


def test_the_agents_qdisc_undo_fails_while_the_qdisc_is_still_there(tmp_path, monkeypatch):
    """The typed ``delete-qdisc`` step against a fake ``tc``: deleted and gone is done; still there fails."""
    step = actions.check_step({"op": "delete-qdisc", "pid": 10, "inode": 111, "handle": "1a2b:"})
    for stays in (True, False):
        node = fake_node(tmp_path / str(stays), monkeypatch, "")
        gone = f"{tmp_path}/{stays}/del"
        body = (
            'if [ "$2" = del ]; then touch '
            + gone
            + "; fi; "
            + (
                'echo "qdisc tbf 1a2b: root refcnt 2 rate 1Mbit"'
                if stays
                else f'if [ -e {gone} ]; then echo "qdisc noqueue 0: root"; else echo "qdisc tbf 1a2b: root"; fi'
            )
        )
        tc = tmp_path / str(stays) / "bin" / "tc"
        tc.write_text(f"#!/bin/sh\n{body}\n")
        tc.chmod(0o755)
        if stays:
            with pytest.raises(actions.StepFailed, match="still bears 1a2b:"):
                actions.run_step(node, step)
        else:
            assert actions.run_step(node, step) == "qdisc 1a2b: deleted in net:[111]"


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
    from chaoskit.state import leases

    owner = leases.Owner(Cluster("unit", "kind", None, None, "airgap"))
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

    cluster = Cluster("unit", "existing", None, None, "airgap", shell=AgentShell())  # type: ignore[arg-type]
    fault = NodePartition(cluster, None, NodePartitionSpec("worker-1"))  # type: ignore[arg-type]
    with pytest.raises(FaultUnsupported, match="through Docker on kind only"):
        fault.plan()


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


def test_the_cap_counts_what_other_active_faults_already_hold():
    from chaoskit.errors import SafetyError
    from chaoskit.faults.safety import Safety

    safety = Safety(max_share=0.5)
    safety.check_share(1, 3, "pods matching 'app=web'", {})
    with pytest.raises(SafetyError) as refused:
        safety.check_share(1, 3, "pods matching 'app=web'", {"partition-1": ["shop/web-0"]})
    assert (
        "would touch 2 of 3 pods matching 'app=web' (67%) (1 of them already hit by active fault(s) partition-1"
        in str(refused.value)
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ({}, "held throughout"),
        (
            {"worker-1": {"undone": {"at": "T1", "why": "its owner's lease was not renewed"}}},
            "the agent on worker-1 undid it at T1",
        ),
        (None, "cannot be told"),
    ],
)
def test_a_lapsed_lease_is_judged_by_what_the_record_shows(monkeypatch, capsys, status, outcome):
    from types import SimpleNamespace

    from chaoskit.errors import ClusterError, FaultNotEffective
    from chaoskit.faults import objects

    def read(kube, fault_id):
        if status is None:
            raise ClusterError("the API server does not answer")
        return {"spec": {"nodes": {"worker-1": {}}}, "status": {"nodes": status}}

    monkeypatch.setattr(objects, "read", read)
    fault = Partition.__new__(Partition)
    fault.kube = None
    record = SimpleNamespace(fault_id="partition-1")
    if outcome == "held throughout":
        fault._judge_lapse(record, 20.0)
        assert (
            "its record shows no agent undid it (none of worker-1 marked it undone): it held throughout"
            in capsys.readouterr().err
        )
    else:
        with pytest.raises(FaultNotEffective, match=outcome):
            fault._judge_lapse(record, 20.0)


def test_an_undo_for_an_owner_that_looks_dead_waits_for_a_fresh_read_of_its_lease():
    """A watch cut off from the API server goes silent: its copy of a live owner's Lease looks unrenewed.
    The agent reads the Lease itself before it undoes: unreachable judges nothing; a renewed one is alive."""
    from chaoskit.agent.injector import Injector
    from chaoskit.agent.kubeapi import ApiError

    class Api:
        def __init__(self, answer):
            self.answer, self.patched = answer, []

        def get(self, path):
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

        def patch(self, path, body):
            self.patched.append(body)

    record = fault({NODE: {"undo": [{"op": "stop-helpers", "comment": "chaoskit:partition-1"}]}})
    stale = lease("owner-a", "t1")
    for answer, acts in (
        (OSError("no route to host"), False),
        (lease("owner-a", "t2"), False),  # renewed meanwhile: alive
        (ApiError(404, "gone"), True),
        (stale, True),  # still unrenewed by a fresh read
    ):
        api = Api(answer)
        injector = Injector(api, NODE, Rules(), actions.Node(proc="/nonexistent"))  # type: ignore[arg-type]
        injector.records.items, injector.leases.items = {"r": record}, {"owner-a": stale}
        injector.records.synced.set()
        injector.leases.synced.set()
        injector.clock.observe([stale], at=0.0)
        injector.clock.seen["owner-a"] = ("t1", -100.0)  # unrenewed for 100 s by the watch's copy
        injector.step()
        assert bool(api.patched) == acts, (answer, api.patched)


def test_a_node_crash_is_an_inject_step_and_never_an_undo():
    assert actions.check_step({"op": "crash-node"}, actions.INJECT_OPS).op == "crash-node"
    with pytest.raises(Refused, match="is not one of"):
        actions.check_step({"op": "crash-node"}, actions.UNDO_OPS)
    with pytest.raises(Refused, match="unknown field"):
        actions.check_step({"op": "crash-node", "pid": 1}, actions.INJECT_OPS)


def fake_proc(tmp_path, processes):
    """A /proc with ``pid: (ppid, comm, cmdline words, cgroup text)``."""
    for pid, (ppid, comm, words, cgroup) in processes.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0")
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(b"\0".join(w.encode() for w in words) + b"\0")
        (d / "cgroup").write_text(cgroup)
    return actions.Node(proc=str(tmp_path))


AGENT_UID = "805b5090-5d24-4f0c-8b87-abf769728411"
OTHER_UID = "11111111-2222-3333-4444-555555555555"


def test_the_node_crash_sigkills_the_kubelet_first_then_every_pod_process_and_shim_but_the_agents(
    tmp_path, monkeypatch
):
    me = 4000
    node = fake_proc(
        tmp_path,
        {
            1: (0, "systemd", ["/sbin/init"], "0::/\n"),
            300: (1, "containerd-shim", ["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "a"], "0::/\n"),
            301: (1, "containerd-shim", ["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "b"], "0::/\n"),
            302: (1, "containerd-shim", ["containerd-shim-runc-v2", "-namespace", "moby", "-id", "c"], "0::/\n"),
            me: (300, "python3", ["python3", "-m", "injector"], f"0::/kubelet/kubepods/besteffort/pod{AGENT_UID}/c1\n"),
            500: (301, "pause", ["/pause"], f"0::/kubelet/kubepods/pod{OTHER_UID}/c2\n"),
            501: (301, "web", ["web"], f"0::/kubepods.slice/kubepods-pod{OTHER_UID.replace('-', '_')}.slice/x\n"),
            600: (1, "kubelet", ["kubelet"], "0::/system.slice/kubelet.service\n"),
        },
    )
    assert node.pod_of(501) == OTHER_UID and node.pod_of(me) == AGENT_UID and node.pod_of(600) is None
    assert node.shims() == [300, 301]
    calls: list[list[str]] = []
    killed: list[int] = []

    def run(argv, stdin=None):
        calls.append(argv)
        return (3 if argv[-3:] == ["is-active", "--quiet", "kubelet"] else 0), ""

    def kill(pid, sig):
        assert sig == actions.signal.SIGKILL and calls, "the kubelet goes first"
        killed.append(pid)
        for name in os.listdir(tmp_path / str(pid)):
            os.remove(tmp_path / str(pid) / name)  # dead: /proc/PID empty
        os.rmdir(tmp_path / str(pid))

    monkeypatch.setattr(node, "run", run)
    monkeypatch.setattr(actions.os, "getpid", lambda: me)
    monkeypatch.setattr(actions.os, "kill", kill)
    monkeypatch.setattr(actions.time, "sleep", lambda s: None)
    said = actions.run_step(node, actions.Step("crash-node", {}))
    assert [c[len(actions.HOST) :] for c in calls[:2]] == [
        ["systemctl", "kill", "--signal=SIGKILL", "kubelet"],
        ["systemctl", "stop", "kubelet"],
    ]
    assert sorted(killed) == [301, 500, 501], killed  # never the agent, its shim, init or the other runtime's
    assert "2 process(es) of 1 pod(s) and 1 shim(s) SIGKILLed" in said and AGENT_UID in said, said


def test_a_node_crash_fails_when_the_kubelet_unit_still_runs(tmp_path, monkeypatch):
    node = actions.Node(proc=str(tmp_path))
    monkeypatch.setattr(node, "run", lambda argv, stdin=None: (0, ""))
    with pytest.raises(actions.StepFailed, match="its unit still runs"):
        actions.run_step(node, actions.Step("crash-node", {}))
