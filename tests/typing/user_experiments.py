"""A user's own test file, written against the public API only; ``mypy --strict`` must pass on it.

Not collected by pytest (its name does not start with ``test_``): tests/unit/test_typed_api.py type-checks it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chaoskit import (
    AckedWriter,
    Availability,
    Chaos,
    Cluster,
    Experiment,
    ExperimentResult,
    FaultRecord,
    LatencyPercentile,
    LoadSpec,
    LostWrites,
    ReadBack,
    Recovery,
    RecoveryTime,
    Workload,
    read_back,
)


def test_pod_kill_under_load(experiment: Callable[..., Experiment], chaos: Chaos, cluster: Cluster) -> None:
    load = LoadSpec(host=f"http://127.0.0.1:{cluster.node_ports[0]}", run_seconds=30, users=10)
    with experiment(load, [Availability(0.99), LatencyPercentile(95, 250), RecoveryTime(30)], Workload("shop", "web")):
        time.sleep(5)
        with chaos.pod_kill("shop", "app=web", count=1, grace_seconds=0) as fault:
            record: FaultRecord = fault
            assert record.verified


def test_a_partition_of_the_whole_tier(chaos: Chaos) -> None:
    with chaos.partition("shop", "app=shop", peer_selector="app=redis", port=6379, max_share=1.0) as cut:
        effect: str | None = cut.effect
        assert effect
    undone: bool = cut.reverted
    assert undone and cut.undo_proof


def test_recovery_from_a_watch(chaos: Chaos) -> None:
    with chaos.recovery_watch("shop", "web", service="web") as watch:
        with chaos.packet_loss("shop", "app=web", 20.0, count=1, seed=7) as loss:
            pass
    recovery: Recovery = watch.recovery(loss.injected_mono or 0.0)
    seconds: float | None = recovery.seconds
    assert seconds is None or seconds >= 0


def test_a_stated_recovery_and_lost_writes(experiment: Callable[..., Experiment], chaos: Chaos) -> None:
    store: dict[str, str] = {}

    def write(key: str, value: str) -> None:
        store[key] = value

    def read(key: str) -> str | None:
        return store.get(key)

    load = LoadSpec(host="http://127.0.0.1:30081", run_seconds=30, method="POST", body='{"n": {seq}}')
    with experiment(load, [RecoveryTime(15), LostWrites(0)], Workload("db", "etcd", "etcd", kind="StatefulSet")) as run:
        with AckedWriter(write, max_writes=100, max_seconds=10) as writer:
            with chaos.pod_kill("db", "app=etcd", grace_seconds=0):
                pass
            run.record(recovery_seconds=run.seconds_since_first_fault())
        checked: ReadBack = read_back(read, writer.log.acknowledged)
        run.record(lost_writes=len(checked.lost))


def summarise(result: ExperimentResult) -> str:
    return result.headline()
