"""Opening a session, step by step, against a fake provider and API: which steps run, in which order, and
what a failure leaves open. That the steps work on a real cluster is tests/cluster's (every cluster test opens
its cluster through a session; test_injector_agent.py holds two sessions side by side)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

import chaoskit.cluster.injector
import chaoskit.session
from chaoskit.cluster.base import Cluster, ClusterSpec
from chaoskit.errors import FaultUndoFailed
from chaoskit.faults.sweeper import SweepResult
from chaoskit.session import open_session


class FakeKube:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class FakeCluster(Cluster):
    kubes: list[FakeKube] = field(default_factory=list, compare=False)

    def kube(self) -> Any:
        made = FakeKube()
        self.kubes.append(made)
        return made


class FakeShell:
    name = "agent"


CLUSTER = FakeCluster("unit", "existing", None, None, "existing")


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    cluster = CLUSTER
    cluster.kubes.clear()

    class Provider:
        def up(self, spec: ClusterSpec) -> Cluster:
            calls.append(("up", spec.name))
            return cluster

        def attach(self, spec: ClusterSpec) -> Cluster:
            calls.append(("attach", spec.name))
            return cluster

    def select(
        cluster: Cluster, kube: Any, injector: Any, image: Any, *, install_agent: bool, agent_option: str
    ) -> FakeShell:
        calls.append(("select", injector, image, install_agent))
        return FakeShell()

    monkeypatch.setattr(chaoskit.session, "get_provider", lambda *a, **k: Provider())
    monkeypatch.setattr(chaoskit.cluster.injector, "select", select)
    monkeypatch.setattr(
        chaoskit.session, "sweep_namespaces", lambda kube, only=None: calls.append(("namespaces",)) or ["ns-1"]
    )
    monkeypatch.setattr(
        chaoskit.session,
        "sweep",
        lambda cluster, kube, scope=None: calls.append(("faults",)) or SweepResult(("f-1: ok",), (), ()),
    )
    monkeypatch.setattr(chaoskit.session.locks, "machine_lock", lambda *a: _Null())
    return calls


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_run_brings_up_chooses_the_node_shell_then_sweeps(steps: list[tuple[Any, ...]]) -> None:
    session = open_session(ClusterSpec(provider="existing", name="unit"), injector="agent", agent_image="img:1")
    assert steps == [("up", "unit"), ("select", "agent", "img:1", True), ("faults",), ("namespaces",)]
    assert session.shell.name == "agent" and session.cluster.node_shell is session.shell
    assert session.swept is not None and session.swept.namespaces == ["ns-1"]
    assert session.swept.faults.undone == ("f-1: ok",)


def test_status_attaches_and_touches_no_node_and_no_leftover(steps: list[tuple[Any, ...]]) -> None:
    with open_session(ClusterSpec(name="unit"), bring_up=False, reach_nodes=False, sweep_first=False) as session:
        assert steps == [("attach", "unit")]
        assert session.cluster.shell is None and session.swept is None
    assert isinstance(session.kube, FakeKube) and session.kube.closed


def test_cleanup_never_installs_the_agent(steps: list[tuple[Any, ...]]) -> None:
    open_session(ClusterSpec(name="unit"), bring_up=False, install_agent=False, sweep_first=False).close()
    assert steps == [("attach", "unit"), ("select", None, None, False)]


def test_what_a_sweep_could_not_undo_refuses_the_session_and_closes_its_client(
    steps: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        chaoskit.session,
        "sweep",
        lambda cluster, kube, scope=None: SweepResult((), ("partition-1: rules left on w1",), ()),
    )
    with pytest.raises(FaultUndoFailed, match="could not be undone: partition-1: rules left on w1"):
        open_session(ClusterSpec(name="unit"))
    assert [k.closed for k in CLUSTER.kubes] == [True]
