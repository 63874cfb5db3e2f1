"""For every unit test: turns between runs (:mod:`chaoskit.state.turns`) are taken on an in-memory Lease API
(:class:`FakeLeases`) instead of a cluster's, so faults and experiments run against fakes take real turns
without an API server. test_turns.py tests the turns themselves on it."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chaoskit.adapters.kube import NamespaceMissing
from chaoskit.state import leases, turns
from chaoskit.state.turns import HOLDERS, Turns


class FakeLeases:
    """The Lease calls of :class:`~chaoskit.adapters.kube.Kube`, in memory, with optimistic concurrency."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.guard = threading.Lock()
        self.live: set[str] = set()
        self.writes = 0
        self.conflicts = 0
        self.namespace = True
        """Whether ``chaoskit-system`` exists: creating a Lease in it fails as the API server's 404 does."""

    def lease(self, name: str, namespace: str) -> dict[str, Any] | None:
        time.sleep(0.001)  # a round trip: runs that read at once then write at once, as over the network
        with self.guard:
            found = self.store.get(f"{namespace}/{name}")
            return copy.deepcopy(found)

    def put_lease(self, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        time.sleep(0.001)
        if not self.namespace and not meta.get("resourceVersion"):
            raise NamespaceMissing(f"namespace {meta['namespace']} does not exist")
        with self.guard:
            current = self.store.get(key)
            asked = meta.get("resourceVersion")
            if (current is None) != (asked is None) or (
                current is not None and current["metadata"]["resourceVersion"] != asked
            ):
                self.conflicts += 1
                return False
            self.version += 1
            stored = copy.deepcopy(body)
            stored["metadata"]["resourceVersion"] = str(self.version)
            self.store[key] = stored
            self.writes += 1
            return True

    def holders(self, name: str) -> dict[str, Any]:
        found = self.store.get(f"{turns.NAMESPACE}/{name}")
        return json.loads(found["metadata"]["annotations"][HOLDERS]) if found else {}


class _OnFake:
    """A run's :class:`Turns` that takes them on ``api`` whatever client the code under test passes."""

    def __init__(self, turns: Turns, api: FakeLeases) -> None:
        self.turns, self.api = turns, api

    def holding(self, kube: object, *args: Any, **kwargs: Any) -> Any:
        return self.turns.holding(self.api, *args, **kwargs)  # type: ignore[arg-type]

    def experiment_running(self, kube: object, *args: Any, **kwargs: Any) -> Any:
        return self.turns.experiment_running(self.api, *args, **kwargs)  # type: ignore[arg-type]

    def cluster_alone(self, kube: object, *args: Any, **kwargs: Any) -> Any:
        return self.turns.cluster_alone(self.api, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def chaoskit_turns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLeases]:
    api = FakeLeases()
    monkeypatch.setattr(turns, "POLL_SECONDS", 0.02)
    mine: dict[str, _OnFake] = {}

    def this_process(cluster: Any, kube: object) -> _OnFake:
        if cluster.name not in mine:
            owner = f"owner-this-{cluster.name}"
            api.live.add(owner)
            mine[cluster.name] = _OnFake(Turns(owner, "this/1", "pytest", lambda kube: set(api.live)), api)
        return mine[cluster.name]

    monkeypatch.setattr(leases, "turns", this_process)
    monkeypatch.setattr(
        leases, "experiment_turn", lambda cluster, what: this_process(cluster, None).experiment_running(None, what=what)
    )
    yield api
