"""The faults of an experiment file, played on a clock that a pause stops.

Each fault starts at its ``at`` offset (seconds of *timeline* time from the end
of the load's warm-up) and is held for its ``duration``, or until the watched
workload is whole again (``until_recovered``); without either, it is undone as
soon as it is proven (a pod kill: the controller does the rest). Faults may overlap; each is its
own ``chaos.*`` context manager, entered and left from the thread that plays
the timeline (the main thread, so signals wait for an undo under way).

A pause undoes every fault in place at once and stops the clock; a resume
injects them again, each held for what was left of its duration, and starts
the clock again. Leaving (:meth:`Timeline.undo_all`) undoes whatever is in
place; a fault that fails to inject ends the timeline with its error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from chaoskit.faults.base import FaultRecord

STATES = ("planned", "injecting", "injected", "undoing", "paused", "undone", "failed", "skipped")


@dataclass
class PlayedFault:
    """One fault of the timeline and where it stands."""

    index: int
    kind: str
    at: float
    duration: float | None
    until_recovered: bool
    start: Callable[[], AbstractContextManager[FaultRecord]]
    """Makes the fault's context manager (``chaos.pod_kill(...)`` with the file's options)."""
    state: str = "planned"
    record: FaultRecord | None = None
    """The record of its latest injection."""
    injections: int = 0
    error: str | None = None
    held_for: float = 0.0
    """Timeline seconds it has been held so far (over every injection)."""
    _manager: AbstractContextManager[FaultRecord] | None = field(default=None, repr=False)
    _since: float | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        targets = ", ".join(self.record.targets) if self.record else ""
        return f"{self.kind}" + (f" {targets}" if targets else "")

    def left(self, clock: float) -> float | None:
        """Timeline seconds it has still to be held (None: until recovered, or not timed)."""
        if self.duration is None:
            return None
        held = self.held_for + (clock - self._since if self._since is not None else 0.0)
        return max(0.0, self.duration - held)


class Timeline:
    """Plays faults on a pausable clock; :meth:`tick` from one thread, often (every 0.1 s)."""

    def __init__(self, faults: list[PlayedFault], recovered: Callable[[], bool]) -> None:
        self.faults = sorted(faults, key=lambda f: (f.at, f.index))
        self.recovered = recovered
        self._started: float | None = None
        self._paused_at: float | None = None
        self._paused_total = 0.0

    # --- the clock -------------------------------------------------------------------------------

    def start(self, now: float | None = None) -> None:
        self._started = time.monotonic() if now is None else now

    def clock(self, now: float | None = None) -> float:
        """Timeline seconds since start, pauses excluded."""
        if self._started is None:
            return 0.0
        now = time.monotonic() if now is None else now
        paused = self._paused_total + (now - self._paused_at if self._paused_at is not None else 0.0)
        return now - self._started - paused

    def left(self, clock: float | None = None) -> float:
        """Timeline seconds until its last fault is planned to end: a planned one's start plus its duration,
        an injected one's time left (a fault held until recovered, or undone once proven, counts none)."""
        clock = self.clock() if clock is None else clock
        ends = [0.0]
        for f in self.faults:
            if f.state == "planned":
                ends.append(f.at - clock + (f.duration or 0.0))
            elif f.state in ("injecting", "injected", "paused"):
                ends.append(f.left(clock) or 0.0)
        return max(0.0, *ends)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def done(self) -> bool:
        return all(f.state in ("undone", "failed", "skipped") for f in self.faults)

    def active(self) -> list[PlayedFault]:
        return [f for f in self.faults if f.state in ("injecting", "injected")]

    # --- playing ---------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Start what is due and end what has been held long enough; raises what a fault raised."""
        if self.paused or self._started is None:
            return
        clock = self.clock(now)
        for fault in self.faults:
            if fault.state == "injected" and self._over(fault, clock):
                self._end(fault, clock, "undone")
        for fault in self.faults:
            if fault.state == "planned" and clock >= fault.at:
                self._begin(fault, clock)

    def _over(self, fault: PlayedFault, clock: float) -> bool:
        if fault.until_recovered:
            return self.recovered()
        left = fault.left(clock)
        return left is None or left <= 0  # no duration: undone as soon as it is proven

    def _begin(self, fault: PlayedFault, clock: float) -> None:
        fault.state = "injecting"
        manager = fault.start()
        try:
            fault.record = manager.__enter__()
        except BaseException as exc:
            fault.state = "failed"
            fault.error = f"{type(exc).__name__}: {exc}"
            raise
        fault._manager = manager
        fault._since = clock
        fault.injections += 1
        fault.state = "injected"

    def _end(self, fault: PlayedFault, clock: float, state: str) -> None:
        manager, fault._manager = fault._manager, None
        if fault._since is not None:
            fault.held_for += clock - fault._since
            fault._since = None
        # "undone" or "paused" only once the undo is proven: the live view, drawn from another thread,
        # shows "undoing" meanwhile.
        fault.state = "undoing"
        if manager is not None:
            try:
                manager.__exit__(None, None, None)
            except BaseException as exc:
                fault.state = "failed"
                fault.error = f"{type(exc).__name__}: {exc}"
                raise
        fault.state = state

    def pause(self, now: float | None = None) -> list[PlayedFault]:
        """Undo every fault in place and stop the clock; return the faults undone."""
        if self.paused or self._started is None:
            return []
        clock = self.clock(now)
        undone = []
        for fault in self.active():
            self._end(fault, clock, "paused")
            undone.append(fault)
        self._paused_at = time.monotonic() if now is None else now
        return undone

    def resume(self, now: float | None = None) -> list[PlayedFault]:
        """Start the clock again and inject the paused faults again; return them."""
        if not self.paused:
            return []
        now = time.monotonic() if now is None else now
        assert self._paused_at is not None
        self._paused_total += now - self._paused_at
        self._paused_at = None
        clock = self.clock(now)
        again = [f for f in self.faults if f.state == "paused"]
        for fault in again:
            self._begin(fault, clock)
        return again

    def undo_all(self, state: str = "undone") -> None:
        """Undo whatever is in place (every undo is tried; the first failure is raised after)."""
        clock = self.clock()
        failure: BaseException | None = None
        for fault in self.faults:
            if fault.state in ("injected", "injecting"):
                try:
                    self._end(fault, clock, state)
                except BaseException as exc:
                    failure = failure or exc
            elif fault.state in ("planned", "paused"):
                fault.state = "skipped"
        if failure is not None:
            raise failure

    def describe(self, clock: float) -> list[dict[str, Any]]:
        """Each fault's state in words, for the live view."""
        out = []
        for f in self.faults:
            detail = ""
            if f.state == "planned":
                detail = f"at {f.at:g} s (in {max(0.0, f.at - clock):.0f} s)"
            elif f.state == "injected":
                left = f.left(clock)
                proven = "proven" if f.record is not None and f.record.verified else "not proven"
                hold = "until recovered" if f.until_recovered else f"{left:.0f} s left" if left is not None else ""
                detail = f"injected, {proven}: {f.record.effect if f.record else ''}; {hold}"
            elif f.state == "undone" and f.record is not None:
                detail = f"undone: {f.record.undo_proof or 'nothing to undo'}"
            elif f.state == "failed":
                detail = f.error or ""
            elif f.state == "undoing":
                detail = "undoing, then proving the undo"
            elif f.state == "paused":
                detail = "undone for the pause; injected again on resume"
            out.append({"kind": f.kind, "label": f.label, "state": f.state, "detail": detail})
        return out
