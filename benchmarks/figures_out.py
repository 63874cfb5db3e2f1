"""What a benchmark hands ``make bench``: its figures, each with every run's value and the machine's load.

    out = Figures("python benchmarks/distributed_bench.py --rounds 3")
    out.add("chaoskit, 2 workers", "requests/s", [5119.0, 5245.0, 6144.0])
    out.write(path)           # JSON, read by benchmarks/bench.py

Every figure keeps all its values, so the table can say min, median and max; the load average is read as
each value is added, so it says how busy the machine was while the figure was taken.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Figure:
    name: str
    unit: str
    values: list[float]
    load: list[float]
    """The 1-minute load average as each value was taken (or when the figure was added)."""

    def row(self, command: str) -> str:
        v = sorted(self.values)
        unit = f" {self.unit}" if self.unit else ""
        low, mid, high = (_number(x) for x in (v[0], statistics.median(v), v[-1]))
        runs = f"{len(v)} run{'s' if len(v) != 1 else ''}"
        return (
            f"| {self.name} | {low} / {mid} / {high}{unit} ({runs}) | "
            f"{min(self.load):.1f}-{max(self.load):.1f} | `{command}` |"
        )


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


@dataclass
class Figures:
    command: str
    figures: list[Figure] = field(default_factory=list)

    def add(self, name: str, unit: str, values: list[float], load: list[float] | None = None) -> None:
        self.figures.append(Figure(name, unit, list(values), list(load or [os.getloadavg()[0]])))

    def write(self, path: Path | None) -> None:
        if path is not None:
            path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> Figures:
        data = json.loads(path.read_text())
        return cls(data["command"], [Figure(**f) for f in data["figures"]])
