"""Recovery measured from the watch API, with client-side monotonic timestamps.

A :class:`RecoveryWatch` follows one Deployment's ready count, and the ready
addresses of its Service, in a background thread, from the moment it starts.
Every change becomes a timeline event stamped with ``time.monotonic()`` when
it arrived, so it lines up with fault records and load samples.

Recovery is only measured after the loss was *seen*: the ready count below
the desired count after the fault, then whole again. A check that reads the
status right after a kill, before the controller noticed, would report a
system that never broke (a peer tool does exactly that); here a loss that
never shows is reported as such, not as an instant recovery.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch

from chaoskit.adapters.kube import Kube


@dataclass(frozen=True)
class Event:
    """One observed change."""

    at: float
    """``time.monotonic()`` when the watch delivered it."""
    source: str
    """``deployment`` or ``endpoints``."""
    ready: int
    """Ready replicas (deployment) or ready addresses (endpoints)."""
    desired: int
    """Desired replicas."""


@dataclass(frozen=True)
class Recovery:
    """The recovery from one fault, in seconds after the fault's start."""

    loss_seen: float | None
    """When the ready count was first seen below desired (None: never)."""
    whole: float | None
    """When the ready count was whole again after that loss (None: not yet)."""
    endpoints_loss_seen: float | None
    endpoints_whole: float | None

    @property
    def recovered(self) -> bool:
        return self.whole is not None and (self.endpoints_whole is not None or self.endpoints_loss_seen is None)

    @property
    def seconds(self) -> float | None:
        """Fault start to everything whole again (ready count and endpoints)."""
        if self.whole is None:
            return None
        return max(self.whole, self.endpoints_whole or 0.0)


@dataclass
class RecoveryWatch:
    """Watches a Deployment (and optionally its Service's endpoints) in the background."""

    kube: Kube
    namespace: str
    deployment: str
    service: str | None = None
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._desired = 0
        self._lock = threading.Lock()
        self._primed = threading.Barrier(3 if self.service else 2)

    def __enter__(self) -> RecoveryWatch:
        self._threads.append(threading.Thread(target=self._follow_deployment, daemon=True))
        if self.service:
            self._threads.append(threading.Thread(target=self._follow_endpoints, daemon=True))
        for thread in self._threads:
            thread.start()
        self._primed.wait(timeout=30)  # both watches have their first listing
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _add(self, source: str, ready: int) -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), source, ready, self._desired))

    def _follow_deployment(self) -> None:
        self._follow(
            self.kube.apps.list_namespaced_deployment,
            "deployment",
            lambda dep: (dep.spec.replicas or 0, dep.status.ready_replicas or 0),
        )

    def _follow_endpoints(self) -> None:
        def count(ep: Any) -> tuple[None, int]:
            return None, sum(len(s.addresses or []) for s in ep.subsets or [])

        self._follow(self.kube.core.list_namespaced_endpoints, "endpoints", count)

    def _follow(self, list_call: Any, source: str, read: Any) -> None:
        name = self.service if source == "endpoints" else self.deployment
        selector = f"metadata.name={name}"
        primed = False
        while not self._stop.is_set():
            listing = list_call(self.namespace, field_selector=selector)
            for item in listing.items:
                self._observe(source, read(item))
            if not primed:
                primed = True
                self._primed.wait(timeout=30)
            stream = watch.Watch()
            events = stream.stream(
                list_call,
                self.namespace,
                field_selector=selector,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=5,
            )
            try:
                for event in events:
                    if self._stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(source, read(event["object"]))
            except Exception:  # 410 Gone or a dropped connection: list again
                pass
            finally:
                stream.stop()
                events.close()

    def _observe(self, source: str, values: tuple[int | None, int]) -> None:
        desired, ready = values
        if desired is not None:
            self._desired = desired
        with self._lock:
            last = next((e for e in reversed(self.events) if e.source == source), None)
        if last is None or last.ready != ready or (desired is not None and last.desired != desired):
            self._add(source, ready)

    def recovery(self, since: float) -> Recovery:
        """Recovery after a fault that started at ``since`` (``time.monotonic()``)."""
        with self._lock:
            events = list(self.events)
        dep_loss, dep_whole = _loss_and_whole([e for e in events if e.source == "deployment"], since)
        ep_loss, ep_whole = _loss_and_whole([e for e in events if e.source == "endpoints"], since)
        return Recovery(dep_loss, dep_whole, ep_loss, ep_whole)


def _loss_and_whole(events: list[Event], since: float) -> tuple[float | None, float | None]:
    loss = whole = None
    for event in events:
        if event.at < since:
            continue
        if loss is None and event.ready < event.desired:
            loss = event.at - since
        elif loss is not None and event.ready >= event.desired:
            whole = event.at - since
            break
    return loss, whole
