"""What a game day shows while it runs: a live view on a terminal, a progress line a second without one.

Both render a :class:`Snapshot`, taken by the runner: the phase, each fault's
state, the load of the last 5 s (requests per second, error rate, p95), ready
replicas per workload, each stop condition's current value against its
threshold, and the time elapsed and left. The live view (rich) also lists the
keys: ``p`` pause, ``r`` resume, ``a`` abort.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

WINDOW_SECONDS = 5.0


@dataclass(frozen=True)
class Snapshot:
    name: str
    phase: str
    """``warm-up``, ``running``, ``paused``, ``recovering``, ``aborting``, ``done``."""
    elapsed: float
    remaining: float
    faults: list[dict[str, Any]] = field(default_factory=list)
    """Each fault: ``kind``, ``label``, ``state``, ``detail`` (see :meth:`Timeline.describe`)."""
    rps: float | None = 0.0
    """Requests per second over the last 5 s; None before the measured run starts (the warm-up)."""
    error_rate: float | None = None
    p95_ms: float | None = None
    workloads: list[str] = field(default_factory=list)
    """``web 2/3 ready`` per watched workload."""
    stops: list[tuple[str, bool]] = field(default_factory=list)
    """Each stop condition's reading in words, and whether it tripped."""
    aborted: str | None = None
    message: str = ""

    def line(self) -> str:
        """One progress line (no terminal)."""
        faults = "; ".join(f"{f['label']} {f['state']}" for f in self.faults) or "none"
        err = "-" if self.error_rate is None else f"{self.error_rate:.1%}"
        p95 = "-" if self.p95_ms is None else f"{self.p95_ms:.0f} ms"
        parts = [
            f"[chaoskit] {self.name}: {self.phase} t={self.elapsed:.0f}s ({self.remaining:.0f}s left)",
            f"faults: {faults}",
            f"{'-' if self.rps is None else f'{self.rps:.1f}'} req/s, errors {err}, p95 {p95}",
        ]
        if self.workloads:
            parts.append(", ".join(self.workloads))
        if self.stops:
            parts.append("; ".join(text + (" TRIPPED" if tripped else "") for text, tripped in self.stops))
        if self.aborted:
            parts.append(self.aborted)
        return " | ".join(parts)


class LineView:
    """One progress line per stage, for CI and pipes: a stage ends when the phase, a fault's state, a tripped
    stop condition or an abort changes, and its line is the stage's last snapshot (its numbers over the
    last 5 s), so a 40 s run is a handful of lines and not one a second."""

    interval = 1.0

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.last: Snapshot | None = None

    def __enter__(self) -> LineView:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.last is not None:
            print(self.last.line(), file=self.out, flush=True)
            self.last = None

    def show(self, snapshot: Snapshot) -> None:
        if self.last is not None and stage(self.last) != stage(snapshot):
            print(self.last.line(), file=self.out, flush=True)
        self.last = snapshot


def stage(snapshot: Snapshot) -> tuple[object, ...]:
    """What makes a new stage of a run: its phase, each fault's state, the tripped stops, an abort."""
    return (
        snapshot.phase,
        tuple(f.get("state") for f in snapshot.faults),
        tuple(text for text, tripped in snapshot.stops if tripped),  # a stop's reading appearing is no stage
        snapshot.aborted,
    )


class LiveView:
    """A live view on the terminal, redrawn four times a second (rich)."""

    interval = 0.25

    def __init__(self, out: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out or sys.stdout)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False, auto_refresh=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def show(self, snapshot: Snapshot) -> None:
        self.live.update(render(snapshot), refresh=True)


STATE_STYLE = {
    "planned": "dim",
    "injecting": "yellow",
    "injected": "bold red",
    "undoing": "yellow",
    "paused": "yellow",
    "undone": "green",
    "failed": "bold white on red",
    "skipped": "dim",
}


def render(snapshot: Snapshot) -> Any:
    """The live view of one snapshot, as a rich renderable."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    head = Text()
    head.append(f"{snapshot.name}  ", style="bold")
    head.append(snapshot.phase.upper(), style="bold red" if snapshot.phase in ("aborting", "paused") else "bold")
    head.append(f"   elapsed {snapshot.elapsed:.0f} s   remaining {snapshot.remaining:.0f} s")
    faults = Table("fault", "state", "detail", expand=True, show_edge=False)
    for f in snapshot.faults:
        faults.add_row(f["label"], Text(f["state"], style=STATE_STYLE.get(f["state"], "")), f["detail"])
    err = "-" if snapshot.error_rate is None else f"{snapshot.error_rate:.1%}"
    p95 = "-" if snapshot.p95_ms is None else f"{snapshot.p95_ms:.0f} ms"
    rps = "-" if snapshot.rps is None else f"{snapshot.rps:.1f}"
    load = Text(f"load (last {WINDOW_SECONDS:g} s): {rps} req/s   errors {err}   p95 {p95}")
    parts: list[Any] = [head, faults, load]
    if snapshot.workloads:
        parts.append(Text("workloads: " + "   ".join(snapshot.workloads)))
    for text, tripped in snapshot.stops:
        parts.append(Text(("TRIPPED " if tripped else "stop condition: ") + text, style="bold red" if tripped else ""))
    if snapshot.aborted:
        parts.append(Text(snapshot.aborted, style="bold red"))
    if snapshot.message:
        parts.append(Text(snapshot.message, style="italic"))
    parts.append(Text("keys: p pause (undo the faults, keep the load)   r resume   a abort", style="dim"))
    return Panel(Group(*parts), title="chaoskit run", border_style="red" if snapshot.aborted else "blue")


class Keys(threading.Thread):
    """Reads single key presses from a terminal (cbreak mode, restored on stop) and hands them on."""

    def __init__(self, on_key: Callable[[str], None], stream: TextIO | None = None) -> None:
        super().__init__(name="chaoskit-keys", daemon=True)
        self.stream = stream or sys.stdin
        self.on_key = on_key
        self.stopping = threading.Event()
        self._saved: list[Any] | None = None

    @staticmethod
    def available(stream: TextIO | None = None) -> bool:
        stream = stream or sys.stdin
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> Keys:
        fd = self.stream.fileno()
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(1)
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)

    def run(self) -> None:
        fd = self.stream.fileno()
        while not self.stopping.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                data = os.read(fd, 16).decode(errors="replace")
                for key in data:
                    self.on_key(key)
