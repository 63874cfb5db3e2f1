"""Faults injected into the real cluster, their effect seen from outside, and undone."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed
from workloads import Web, get_from_host_eventually, wait_web

from chaoskit.adapters import docker
from chaoskit.adapters.kube import is_control_plane
from chaoskit.adapters.status import node_ready
from chaoskit.chaos import Chaos
from chaoskit.errors import SafetyError, SpecError
from chaoskit.state.ledger import Ledger

pytestmark = pytest.mark.shared_web  # each test injects a fault and undoes it


def pod_uids(kube, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.uid for p in kube.pods(namespace, "app=web")}


def eventually(check, within: float = 60):
    for attempt in Retrying(
        stop=stop_after_delay(within), wait=wait_fixed(0.5), retry=retry_if_exception_type(AssertionError), reraise=True
    ):
        with attempt:
            return check()
    raise AssertionError("unreachable")


@pytest.mark.api_only
def test_pod_kill_is_proven_and_recovery_is_measured_after_the_loss_is_seen(chaos: Chaos, kube, web: Web) -> None:
    before = pod_uids(kube, web.namespace)
    with chaos.recovery_watch(web.namespace, "web", service="web") as watch:
        with chaos.pod_kill(web.namespace, "app=web", grace_seconds=0) as record:
            assert record.verified and record.effect and "UIDs are gone" in record.effect
            (victim,) = record.targets
            assert before[victim] not in pod_uids(kube, web.namespace).values()

        def recovered():
            recovery = watch.recovery(record.injected_mono)
            assert recovery.recovered, (recovery, watch.events)
            return recovery

        recovery = eventually(recovered)
    assert recovery.loss_seen is not None and recovery.whole is not None
    assert 0 <= recovery.loss_seen < recovery.whole < 60
    assert recovery.endpoints_loss_seen is not None and recovery.endpoints_whole is not None
    assert record.inject_to_effect is not None and record.inject_to_effect < 10
    print(
        f"pod kill: effect after {record.inject_to_effect:.3f} s, loss seen after {recovery.loss_seen:.3f} s, "
        f"whole after {recovery.whole:.2f} s, endpoints whole after {recovery.endpoints_whole:.2f} s"
    )
    get_from_host_eventually(web.node_port)
    assert len(pod_uids(kube, web.namespace)) == 3


@pytest.mark.api_only
def test_repeated_pod_kill_kills_each_round_and_stops_with_the_block(chaos: Chaos, kube, web: Web) -> None:
    with chaos.pod_kill(web.namespace, "app=web", rounds=3, interval_seconds=2) as record:
        eventually(lambda: assert_rounds(record, 3), within=30)
    killed = [target for r in record.rounds for target in r.targets]
    # Three different pods: each round chose among the live pods, and the first victims were gone.
    assert len(set(killed)) == 3 and all(r.inject_to_effect is not None for r in record.rounds)
    gaps = [b.injected_at - a.injected_at for a, b in zip(record.rounds, record.rounds[1:], strict=False)]
    assert all(gap >= 2 for gap in gaps), gaps

    # Stopped early: a ten-round kill left after its second round kills no more.
    with chaos.pod_kill(web.namespace, "app=web", rounds=10, interval_seconds=1) as early:
        eventually(lambda: assert_rounds(early, 2), within=30)
    done = len(early.rounds)
    wait_web(kube, web.namespace)
    settled = pod_uids(kube, web.namespace)
    time.sleep(2.5)
    assert len(early.rounds) == done <= 3
    assert pod_uids(kube, web.namespace) == settled
    effects = [round(r.inject_to_effect or 0, 3) for r in record.rounds]
    print(f"repeated pod kill: rounds {gaps} s apart, effects after {effects} s")


def assert_rounds(record, count: int) -> None:
    assert len(record.rounds) >= count, record.rounds


@pytest.mark.api_only
@pytest.mark.parametrize(
    ("target_namespace", "selector", "options", "error", "message"),
    [
        (None, "app=nothing", {}, SpecError, "matches no pod"),
        (None, "app=web", {"count": 3}, SafetyError, "over the blast-radius cap"),
        ("kube-system", "app=chaoskit-dns", {}, SafetyError, "'kube-system' is protected"),
    ],
)
def test_bad_pod_kills_are_refused_before_anything_is_deleted(
    chaos: Chaos, kube, web: Web, target_namespace, selector, options, error, message
) -> None:
    before = pod_uids(kube, web.namespace)
    with pytest.raises(error, match=message), chaos.pod_kill(target_namespace or web.namespace, selector, **options):
        pytest.fail("the fault must not start")
    assert pod_uids(kube, web.namespace) == before


@pytest.mark.api_only
def test_dry_run_reports_the_targets_and_changes_nothing(cluster, chaos: Chaos, kube, web: Web) -> None:
    before = pod_uids(kube, web.namespace)
    dry = Chaos(cluster, kube, replace(chaos.safety, dry_run=True))  # the session's rules, dry
    with dry.pod_kill(web.namespace, "app=web", pick="oldest") as record:
        assert record.dry_run and len(record.targets) == 1 and record.targets[0] in before
        assert not record.verified and record.injected_at is None
    assert pod_uids(kube, web.namespace) == before


def workers(kube) -> list[str]:
    return sorted(n.metadata.name for n in kube.nodes() if not is_control_plane(n))


@pytest.mark.destructive
def test_node_pause_turns_the_node_not_ready_and_undo_brings_it_back(cluster, chaos: Chaos, kube) -> None:
    if not cluster.is_kind:
        pytest.skip("node failure needs a kind cluster")
    node = workers(kube)[-1]
    started = time.monotonic()
    with chaos.node_failure(node, mode="pause") as record:
        not_ready_after = time.monotonic() - started  # the block starts once the API says NotReady
        assert docker.inspect(node).state == "paused"
        assert not node_ready({n.metadata.name: n for n in kube.nodes()}[node])
        assert record.effect == f"node container {node} paused; node NotReady"
    assert docker.inspect(node).state == "running"
    assert node_ready({n.metadata.name: n for n in kube.nodes()}[node])
    assert record.reverted and not Ledger(cluster.name).unsettled()
    paused = record.inject_to_effect or 0.0
    print(f"node pause: paused {paused:.2f} s into the injection, NotReady after {not_ready_after:.1f} s")
    # The node lifecycle controller's default grace period: 40 s up to 1.31, 50 s since 1.32. The last lease
    # renewal came up to 10 s before the pause, and the controller looks every 5 s.
    version = kube.server_version()
    grace = 50 if int(version.removeprefix("v").split(".")[1]) >= 32 else 40
    assert grace - 10 <= not_ready_after <= grace + 15, (version, not_ready_after)


def zones(kube) -> dict[str, list[str]]:
    """Each zone's nodes, read from their labels."""
    found: dict[str, list[str]] = {}
    for node in kube.nodes():
        zone = (node.metadata.labels or {}).get("topology.kubernetes.io/zone")
        if zone:
            found.setdefault(zone, []).append(node.metadata.name)
    return found


@pytest.mark.destructive
def test_zone_failure_pauses_every_node_of_the_zone_and_brings_them_back(cluster, chaos: Chaos, kube) -> None:
    if not cluster.is_kind:
        pytest.skip("modes stop and pause need a kind cluster")
    zone, members = next((z, n) for z, n in sorted(zones(kube).items()) if set(n) <= set(workers(kube)))
    with chaos.zone_failure(zone, mode="pause", wait_not_ready=False) as record:
        assert [docker.inspect(n).state for n in members] == ["paused"] * len(members)
        assert record.targets == sorted(members) and f"zone {zone} down" in record.effect, record.effect
    assert [docker.inspect(n).state for n in members] == ["running"] * len(members)
    ready = {n.metadata.name: node_ready(n) for n in kube.nodes()}
    assert all(ready[n] for n in members), ready
    assert record.reverted and f"zone {zone} back" in (record.undo_proof or ""), record.undo_proof
    print(f"zone failure (pause): {record.effect}; effect after {record.inject_to_effect:.2f} s")


def test_zone_failure_refuses_an_unknown_zone_and_one_holding_the_control_plane(cluster, chaos: Chaos, kube) -> None:
    with pytest.raises(SpecError, match=r"no node is in zone 'nowhere'.*zones here: "), chaos.zone_failure("nowhere"):
        pytest.fail("the fault must not start")
    control = [z for z, members in zones(kube).items() if not set(members) <= set(workers(kube))]
    for zone in control:
        with pytest.raises(SafetyError, match="control-plane node"), chaos.zone_failure(zone):
            pytest.fail("the fault must not start")
    assert all(node_ready(n) for n in kube.nodes())


def test_node_failure_refuses_the_control_plane(cluster, chaos: Chaos, kube) -> None:
    if not cluster.is_kind:
        pytest.skip("node failure needs a kind cluster")
    (control_plane,) = [n.metadata.name for n in kube.nodes() if n.metadata.name not in workers(kube)]
    with pytest.raises(SafetyError, match="control-plane node"), chaos.node_failure(control_plane):
        pytest.fail("the fault must not start")
    assert docker.inspect(control_plane).state == "running"
