"""Baselines: this run's figures against earlier nights', so a resilience that slowly gets worse fails.

A nightly run that only checks SLOs learns nothing from one night to the next:
a recovery that doubles over a month passes every night until it breaks its
target. With a baseline (``--chaos-baseline PATH``: a journal, a baseline
file, or a directory of them), each experiment's figures are compared with
the same experiment's figures there (matched by its group: the test's name,
or its ``name=``), and a figure that got worse beyond the tolerance fails the
experiment as a **regression**, naming the figure, the baseline and tonight's
value, even when the SLO itself still passes.

The figures (:func:`figures`), each with the direction that is worse and a
noise floor below which no change counts:

* ``recovery_s``: the recovery time (s), floor 1 s (readiness probes, which
  say when a pod is back, run every second or more: a smaller change is
  within their step);
* ``<window>.availability`` for the windows whole, fault, after: compared as
  unavailability (1 - availability), floor 0.2 points;
* ``<window>.p95_ms`` and ``<window>.p99_ms``: floor 25 ms (tail latency on a
  shared CI machine moves by tens of milliseconds from run to run);
* ``<window>.longest_error_burst_s``: floor 1 s, for the same reason;
* ``lost_writes``: acknowledged writes lost (from a LostWrites objective), floor 0;
* ``inject_to_effect_s``: the slowest fault's inject-to-effect, floor 1 s (a
  pod kill's moves between 0.05 and 0.6 s here with the API server's load).

Two tolerances, and the report says which one judged:

* **range** (one run against any baseline): worse than the baseline's worst
  value by more than 20 % (of that value, or of the baseline's spread,
  whichever is larger) and by more than the floor;
* **Mann-Whitney** (tonight's repeated runs, ``--chaos-repeat N`` with N >= 5,
  against at least 5 baseline values): a one-sided Mann-Whitney U test says
  tonight's values are worse at p < 0.01, and their median is worse by more
  than the floor. Judged when the group's last run ends, on that run.

``--chaos-baseline-figures NAME,...`` judges only those figures (or every
figure of a window, such as ``whole``, or of a kind, such as ``p99_ms``).
``--chaos-baseline-write PATH`` writes tonight's figures as a baseline file
(``chaoskit-baseline/1``) for later runs; the journal itself serves as one too.
Either way only the runs that passed count: a bad night does not widen the
range that judges the next.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoskit.errors import SpecError
from chaoskit.results import (  # the figures and regressions are the results' own; judged here
    P_VALUE,
    WIDEN,
    ExperimentResult,
    Regression,
    figures,
    kind_of,
)
from chaoskit.results import badness as _badness

SCHEMA = "chaoskit-baseline/1"
MIN_RUNS_FOR_TEST = 5
"""Runs needed on both sides before the statistical test judges instead of the range."""


def selected(names: Sequence[str], figure: str) -> bool:
    """Whether ``figure`` is one of ``names`` (none: every figure): by its whole name, its window or its kind."""
    if not names:
        return True
    window, _, kind = figure.rpartition(".")
    return figure in names or bool(window and window in names) or kind in names


@dataclass
class Baseline:
    """Earlier runs' figures, by experiment group and figure."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    judged: tuple[str, ...] = ()
    """The figures to judge (see :func:`selected`); none: all of them."""

    @classmethod
    def load(cls, path: Path, judged: Sequence[str] = ()) -> Baseline:
        """Read a journal, a baseline file, or every ``*.json`` of a directory (each one a journal or a
        baseline file); an unreadable file is a SpecError naming it. Only the ``judged`` figures count."""
        paths = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not path.exists():
            raise SpecError(f"baseline {path} does not exist")
        if not paths:
            raise SpecError(f"baseline directory {path} holds no .json file (journals or baseline files)")
        baseline = cls(judged=tuple(judged))
        for p in paths:
            try:
                document = json.loads(p.read_text())
            except (OSError, ValueError) as exc:
                raise SpecError(f"baseline {p} cannot be read as JSON: {exc}") from None
            baseline.add(p, document)
        return baseline

    def add(self, path: Path, document: Any) -> None:
        if isinstance(document, dict) and document.get("schema") == SCHEMA:
            for group, named in document.get("experiments", {}).items():
                for figure, values in named.items():
                    self.values.setdefault(group, {}).setdefault(figure, []).extend(float(v) for v in values)
        elif isinstance(document, dict) and isinstance(document.get("experiments"), list):
            for run in document["experiments"]:
                if run.get("outcome") != "passed":  # a bad night must not widen the range that judges the next
                    continue
                for figure, value in (run.get("figures") or {}).items():
                    self.values.setdefault(run["group"], {}).setdefault(figure, []).append(float(value))
        else:
            raise SpecError(f"baseline {path} is neither a chaoskit journal nor a baseline file ({SCHEMA})")
        self.sources.append(str(path))

    def of(self, group: str) -> dict[str, list[float]]:
        return self.values.get(group, {})

    def check_run(self, group: str, tonight: dict[str, float]) -> list[Regression]:
        """One run's figures against the range of the group's baseline."""
        found = []
        for figure, value in sorted(tonight.items()):
            earlier = self.of(group).get(figure)
            if not earlier or not selected(self.judged, figure):
                continue
            regression = range_regression(group, figure, value, earlier)
            if regression is not None:
                found.append(regression)
        return found

    def check_runs(self, group: str, runs: Sequence[dict[str, float]]) -> list[Regression]:
        """Every run of a repeated group against its baseline by the statistical test, for each figure with at
        least MIN_RUNS_FOR_TEST values on both sides."""
        found = []
        names = sorted({name for run in runs for name in run if selected(self.judged, name)})
        for figure in names:
            tonight = [run[figure] for run in runs if figure in run]
            earlier = self.of(group).get(figure, [])
            if len(tonight) < MIN_RUNS_FOR_TEST or len(earlier) < MIN_RUNS_FOR_TEST:
                continue
            regression = tested_regression(group, figure, tonight, earlier)
            if regression is not None:
                found.append(regression)
        return found


def range_regression(group: str, figure: str, value: float, earlier: Sequence[float]) -> Regression | None:
    kind = kind_of(figure)
    bad = [_badness(v, kind) for v in earlier]
    worst, best = max(bad), min(bad)
    allowed = worst + max(WIDEN * abs(worst), WIDEN * (worst - best), kind.floor)
    if _badness(value, kind) <= allowed:
        return None
    bound = 1 - allowed if kind.ratio else allowed
    return Regression(group, figure, (value,), tuple(earlier), "range", bound=bound)


def tested_regression(group: str, figure: str, tonight: Sequence[float], earlier: Sequence[float]) -> Regression | None:
    kind = kind_of(figure)
    now = [_badness(v, kind) for v in tonight]
    then = [_badness(v, kind) for v in earlier]
    if statistics.median(now) - statistics.median(then) <= kind.floor:
        return None
    p = mann_whitney_greater(now, then)
    if p >= P_VALUE:
        return None
    return Regression(group, figure, tuple(tonight), tuple(earlier), "mann-whitney", p_value=p)


def mann_whitney_greater(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The one-sided p-value that ``xs`` tend to be greater than ``ys`` (Mann-Whitney U, normal approximation
    with the tie correction and a continuity correction)."""
    n1, n2 = len(xs), len(ys)
    ranked = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    ranks = [0.0] * len(ranked)
    ties = 0.0
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, side) in zip(ranks, ranked, strict=True) if side == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return 1.0
    z = (u1 - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def write_baseline(results: Iterable[ExperimentResult], path: Path) -> Path:
    """Write the figures of every run that passed, by group, as a baseline file for later runs; return its path."""
    groups: dict[str, dict[str, list[float]]] = {}
    for result in results:
        if result.outcome != "passed":
            continue
        for figure, value in figures(result).items():
            groups.setdefault(result.group, {}).setdefault(figure, []).append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "experiments": groups}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path
