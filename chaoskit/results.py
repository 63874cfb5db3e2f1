"""What an experiment measured and concluded: the result model, apart from how it is rendered.

:class:`ExperimentResult` is one experiment's outcome and the evidence for it:
the verdict, the faults with their proofs, the load as a series, the timeline
and the regressions against a baseline. The renderers read it (the JSON journal,
JUnit and HTML in :mod:`chaoskit.report`), :mod:`chaoskit.baseline` judges its
:func:`figures` against earlier runs', and the runners (an experiment in a test,
a game day) produce it. Nothing here talks to a cluster or writes a file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from chaoskit.evidence import ClusterEvent
from chaoskit.faults.base import FaultRecord
from chaoskit.slo import WINDOW_NAMES, Request, SloVerdict, percentile

P_VALUE = 0.01
"""The rank test's threshold: tonight's runs are worse at p below it."""
WINDOWS = ("whole", "fault", "after")
"""The windows whose figures a baseline compares."""
TAIL_SAMPLES = 10
"""Requests a percentile needs beyond it to be judged: a p99 needs 1000 in its window, a p95 200."""


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened during the run, in Unix time."""

    at: float
    kind: str
    """``fault``, ``effect``, ``undo``, ``ready`` (a ready-count change), ``mark`` or ``recovered``."""
    label: str
    ready: int | None = None
    """For ``ready`` events: the ready count after the change."""


@dataclass(frozen=True)
class Series:
    """The load, second by second from the run's start."""

    start: float
    end: float
    step: float
    requests: list[int]
    errors: list[int]
    p95_ms: list[float | None]

    @classmethod
    def from_records(cls, records: Sequence[Request], start: float, end: float, step: float = 1.0) -> Series:
        buckets = max(1, math.ceil((end - start) / step))
        requests = [0] * buckets
        errors = [0] * buckets
        latencies: list[list[float]] = [[] for _ in range(buckets)]
        for r in records:
            i = int((r.started - start) // step)
            if 0 <= i < buckets:
                requests[i] += 1
                if r.ok:
                    latencies[i].append(r.latency_ms)
                else:
                    errors[i] += 1
        return cls(start, end, step, requests, errors, [percentile(sorted(v), 95) for v in latencies])

    def per_second(self, counts: list[int]) -> list[float]:
        """Counts as rates; the last bucket may be shorter than a step."""
        widths = [min(self.step, self.end - (self.start + i * self.step)) for i in range(len(counts))]
        return [n / w if w > 0 else 0.0 for n, w in zip(counts, widths, strict=True)]


@dataclass
class Timings:
    """Where an experiment's wall time went, in seconds."""

    setup: float = 0.0
    """Starting the watch and the load, warm-up excluded."""
    warmup: float = 0.0
    block: float = 0.0
    """The experiment's own block: the faults."""
    recovery_wait: float = 0.0
    settle: float = 0.0
    teardown: float = 0.0
    """Stopping the load and the watch, and judging (the reports are written after)."""

    @property
    def overhead(self) -> float:
        """What the harness itself costs beyond warm-up, faults, recovery and settling."""
        return self.setup + self.teardown


@dataclass
class ExperimentResult:
    """One experiment's outcome and the evidence for it."""

    name: str
    started: float
    ended: float
    verdict: SloVerdict
    group: str = ""
    """Shared by the repeated runs of one experiment (``--chaos-repeat``); its name when not given."""
    faults: list[FaultRecord] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    series: Series | None = None
    load: dict[str, Any] = field(default_factory=dict)
    """The load's spec and totals; under ``stream``, how its record stream did (records received, Locust's
    own count, unreadable lines, ``complete``, and the ``shortfall`` in words when it is not)."""
    error: str | None = None
    """Why the experiment could not reach a verdict, if it could not."""
    timings: Timings = field(default_factory=Timings)
    skipped: str | None = None
    """Why the experiment was skipped (a fault this cluster cannot run), if it was."""
    regressions: list[Judgement] = field(default_factory=list)
    """Figures worse than the baseline allows (``--chaos-baseline``): each one fails the run."""
    judgements: list[Judgement] = field(default_factory=list)
    """Every figure judged against the baseline (or left unjudged, and why), regressed or not: the log's and
    the report's account of what was compared with what."""
    shape: dict[str, Any] = field(default_factory=dict)
    """How it was run: ``workers`` (``pytest -n``), ``repeat`` and ``load`` (users, rate, seconds). A baseline
    compares a run only with earlier runs of the same workers and load."""
    cluster_events: list[ClusterEvent] = field(default_factory=list)
    """The Kubernetes Events of the run's namespaces and of the nodes while it ran (:mod:`chaoskit.evidence`)."""
    evidence_note: str | None = None
    """What of the Events could not be read or was left out."""
    involved_pods: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, pod) of the pods involved: the workload's now and the faults' targets."""
    logs: dict[str, str] = field(default_factory=dict)
    """The last log lines of the involved pods, for a run that did not pass (``namespace/pod`` -> text)."""
    runner: str = ""
    """The process that ran it: ``pid 1234``, or ``gw0 (pid 1234)`` in a ``pytest -n`` worker."""
    kubernetes: str = ""
    """The version of the API server it ran against (``v1.37.2``); empty if it did not answer."""
    expected_failure: str | None = None
    """Why its test expects it to fail (a ``pytest.mark.xfail`` reason): a losing configuration kept on purpose."""

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    @property
    def outcome(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        return "passed" if self.verdict.passed and not self.regressions else "failed"

    @property
    def verdict_word(self) -> str:
        """PASSED, FAILED (an objective missed, no verdict, or an undo not proven), REGRESSED (every objective
        met, a figure worse than the baseline allows), ERROR or SKIPPED."""
        if self.outcome == "failed" and self.verdict.passed:
            return "REGRESSED"
        return self.outcome.upper()

    def check(self) -> None:
        """Raise SloViolation when the SLO is violated, else Regressed when a figure regressed."""
        self.verdict.check()
        if self.regressions:
            raise Regressed(self.regressions)

    def headline(self) -> str:
        """One line: the verdict and the numbers a reader looks for first."""
        parts = [f"{self.verdict_word} {self.name}"]
        if self.skipped:
            return f"{parts[0]}: {self.skipped}"
        if self.error:
            parts.append(f"ERROR: {self.error.splitlines()[0][:200]}")
        missed = [
            f"MISSED {m.objective} ({WINDOW_NAMES.get(m.window, m.window)}): target {m.target}, measured {m.measured}"
            for m in self.verdict.measurements
            if not m.passed
        ]
        if not self.verdict.partial_data and not self.verdict.aborted:  # why it failed, first
            parts += missed
        if self.expected_failure:
            parts.append(f"EXPECTED TO FAIL: {self.expected_failure}")
        if self.verdict.aborted:
            parts.append(f"ABORTED: {self.verdict.aborted}")
        if self.verdict.partial_data:
            parts.append(f"NO VERDICT: {self.verdict.partial_data}")
        parts += [f"UNDO NOT PROVEN: {f.undo_error}" for f in self.faults if f.undo_error]
        parts += [
            f"{f.kind} waited {f.lock_wait_s:.1f} s for nodes another run's faults held"
            for f in self.faults
            if (f.lock_wait_s or 0.0) >= 1.0
        ]
        parts += [f"REGRESSION: {r.short()}" for r in self.regressions]
        whole = next((s for s in self.verdict.stats if s.window == "whole"), None)
        if whole is not None and whole.availability is not None:
            parts.append(f"availability {whole.availability:.2%} of {whole.requests} requests")
        if whole is not None and whole.p95_ms is not None:
            parts.append(f"p95 {whole.p95_ms:.0f} ms")
        if self.verdict.recovery_s is not None:
            parts.append(f"recovered in {self.verdict.recovery_s:.1f} s")
        if whole is not None and whole.longest_error_burst_s:
            parts.append(f"longest error burst {whole.longest_error_burst_s:.2f} s")
        parts.append(f"{self.verdict.met}/{len(self.verdict.measurements)} objectives met")
        if self.verdict.aborted and not self.verdict.partial_data:  # after the abort that explains them
            parts += missed
        return "; ".join(parts)

    def properties(self) -> dict[str, str]:
        """Headline numbers as flat strings, for JUnit XML properties."""
        props = {"chaoskit_objectives_met": str(self.verdict.met)}
        props["chaoskit_objectives"] = str(len(self.verdict.measurements))
        if self.verdict.partial_data:
            props["chaoskit_partial_data"] = self.verdict.partial_data
        if self.verdict.recovery_s is not None:
            props["chaoskit_recovery_s"] = f"{self.verdict.recovery_s:.3f}"
        for s in self.verdict.stats:
            props[f"chaoskit_{s.window}_requests"] = str(s.requests)
            if s.availability is not None:
                props[f"chaoskit_{s.window}_availability"] = f"{s.availability:.5f}"
            if s.p95_ms is not None:
                props[f"chaoskit_{s.window}_p95_ms"] = f"{s.p95_ms:.1f}"
        for m in self.verdict.failures:
            props[f"chaoskit_failed_{m.objective}_{m.window}".replace(" ", "_")] = (
                f"target {m.target}, measured {m.measured}"
            )
        for r in self.regressions:
            props[f"chaoskit_regression_{r.figure}"] = r.line()
        return props

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "outcome": self.outcome,
            "started": self.started,
            "ended": self.ended,
            "error": self.error,
            "skipped": self.skipped,
            "verdict": {"passed": self.verdict.passed, **asdict(self.verdict)},
            "faults": [f.to_dict() for f in self.faults],
            "events": [asdict(e) for e in self.events],
            "series": asdict(self.series) if self.series else None,
            "load": self.load,
            "timings": {**asdict(self.timings), "overhead": self.timings.overhead},
            "figures": figures(self),
            "regressions": [{**asdict(r), "line": r.line()} for r in self.regressions],
            "judgements": [{**asdict(j), "line": j.line()} for j in self.judgements],
            "shape": self.shape,
            "verdict_word": self.verdict_word,
            "cluster_events": [asdict(e) for e in self.cluster_events],
            "evidence_note": self.evidence_note,
            "logs": self.logs,
            "runner": self.runner,
            "kubernetes": self.kubernetes,
        }


def kubernetes_versions(results: Sequence[ExperimentResult]) -> list[str]:
    """The API server versions the runs ran against, sorted, each once (runs that recorded none left out)."""
    return sorted({r.kubernetes for r in results if r.kubernetes})


@dataclass(frozen=True)
class RepeatStats:
    """One experiment run several times (``--chaos-repeat``): its pass count, which runs failed and why, and
    the spread of recovery."""

    group: str
    runs: int
    passed: int
    recovery_s: list[float]
    """Recovery time of each run that saw one, ascending."""
    failures: list[str] = field(default_factory=list)
    """``run K: <what failed>`` for each run that did not pass (K from 1)."""
    regressed: int = 0
    """Runs that met every objective and regressed against the baseline (judged alone or all together)."""

    @property
    def failed(self) -> int:
        """Runs that missed an objective, had no verdict or an error: not passed, and not merely regressed."""
        return self.runs - self.passed - self.regressed

    @property
    def flaky(self) -> bool:
        """Some runs passed and some missed an objective, none regressed: a result that depends on the run.
        A group with a regressed run is REGRESSED, not flaky: a regression is judged against the baseline's
        noise already."""
        return self.regressed == 0 and 0 < self.passed < self.runs

    @property
    def verdict(self) -> str:
        """PASSED (every run), FAILED (every run missed an objective), REGRESSED (a run or the runs together
        worse than the baseline allows), FLAKY (some runs passed, some missed an objective)."""
        if self.passed == self.runs:
            return "PASSED"
        if self.failed == self.runs:
            return "FAILED"
        if self.regressed:
            return "REGRESSED"
        return "FLAKY"

    @property
    def recovery_min(self) -> float | None:
        return self.recovery_s[0] if self.recovery_s else None

    @property
    def recovery_median(self) -> float | None:
        return statistics.median(self.recovery_s) if self.recovery_s else None

    @property
    def recovery_max(self) -> float | None:
        return self.recovery_s[-1] if self.recovery_s else None

    def line(self) -> str:
        text = f"{self.verdict} {self.group}: passed {self.passed} of {self.runs} runs"
        if self.regressed:
            text += f", {self.regressed} regressed"
        if self.failed and self.failed < self.runs:
            text += f", {self.failed} missed an objective"
        if self.recovery_s:
            text += (
                f"; recovery min {self.recovery_min:.2f} s, median {self.recovery_median:.2f} s, "
                f"max {self.recovery_max:.2f} s over {len(self.recovery_s)} runs"
            )
        if self.recovery_s and len(self.recovery_s) < self.runs:  # (none at all: an experiment without a fault)
            text += f"; {self.runs - len(self.recovery_s)} runs without a recovery seen"
        if self.failures:
            text += "; " + "; ".join(self.failures)
        return text


def _what_failed(result: ExperimentResult) -> str:
    """Why one run did not pass, briefly: its failed objectives, its abort, error or regressions."""
    if result.error:
        return f"error: {result.error.splitlines()[0][:200]}"
    if result.skipped:
        return f"skipped: {result.skipped}"
    parts = [f"{m.objective} ({m.window}) {m.measured}, target {m.target}" for m in result.verdict.failures]
    if result.verdict.aborted:
        parts.insert(0, result.verdict.aborted)
    parts += [f"regressed {r.figure}" for r in result.regressions]
    return ", ".join(parts) or "failed"


def repeat_stats(results: Sequence[ExperimentResult]) -> list[RepeatStats]:
    """The experiments that ran more than once, in the order they first ran."""
    groups: dict[str, list[ExperimentResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    return [
        RepeatStats(
            group,
            len(runs),
            sum(1 for r in runs if r.outcome == "passed"),
            sorted(r.verdict.recovery_s for r in runs if r.verdict.recovery_s is not None),
            [f"run {i}: {_what_failed(r)}" for i, r in enumerate(runs, 1) if r.outcome != "passed"],
            sum(1 for r in runs if r.verdict_word == "REGRESSED"),
        )
        for group, runs in groups.items()
        if len(runs) > 1
    ]


@dataclass(frozen=True)
class Kind:
    """How one kind of figure is judged."""

    unit: str
    resolution: float
    """The smallest change the measurement can tell apart (its step): a smaller change never counts."""
    ratio: bool = False
    """A ratio where higher is better (availability): compared as its complement, where higher is worse."""
    multiplicative: bool = False
    """Its noise scales with its size (a latency: a busy CPU stretches every request by a factor), so its
    noise band is also taken on the logarithms of its values."""


def kind_of(figure: str) -> Kind:
    name = figure.rsplit(".", 1)[-1]
    if name == "availability":
        return Kind("", 0.005, ratio=True)
    if name.endswith("_ms"):
        return Kind(" ms", 10.0, multiplicative=True)
    if name == "lost_writes":
        return Kind("", 0.5)
    if name == "inject_to_effect_s":
        return Kind(" s", 1.0)
    if name == "longest_error_burst_s":
        return Kind(" s", BURST_RESOLUTION)
    return Kind(" s", 0.5)


BURST_RESOLUTION = 2.0
"""An error burst's resolution: one failed request is a burst as long as it took to fail, up to the load's
timeout (2 s by default), so a burst that short is a single failure, not a longer outage."""


def percentile_needs(figure: str) -> int | None:
    """Requests a percentile figure's window needs before it is judged (TAIL_SAMPLES beyond the percentile):
    1000 for ``p99_ms``, 200 for ``p95_ms``; None for a figure that is not a percentile."""
    name = figure.rsplit(".", 1)[-1]
    if name.startswith("p") and name.endswith("_ms") and name[1:-3].isdigit():
        return math.ceil(TAIL_SAMPLES / (1 - int(name[1:-3]) / 100) - 1e-9)
    return None


def unsupported(result: ExperimentResult) -> dict[str, str]:
    """The percentile figures a run measured over too few requests to judge, each with why."""
    left: dict[str, str] = {}
    for stats in result.verdict.stats:
        if stats.window not in WINDOWS or not stats.requests:
            continue
        for name, value in (("p95_ms", stats.p95_ms), ("p99_ms", stats.p99_ms)):
            needs = percentile_needs(name)
            if value is not None and needs is not None and stats.requests < needs:
                left[f"{stats.window}.{name}"] = (
                    f"{stats.requests} requests in the {stats.window} window; a {name[:-3]} needs {needs} "
                    f"({TAIL_SAMPLES} beyond it)"
                )
    return left


def figures(result: ExperimentResult) -> dict[str, float]:
    """The figures of one run that a baseline compares (see the module's text); none from a run without a
    verdict (an error, a skip, or partial data)."""
    verdict = result.verdict
    if result.outcome in ("error", "skipped") or verdict.partial_data:
        return {}
    found: dict[str, float] = {}
    if verdict.recovery_s is not None:
        found["recovery_s"] = verdict.recovery_s
    for stats in verdict.stats:
        if stats.window not in WINDOWS or not stats.requests:
            continue
        values = {
            "availability": stats.availability,
            "p95_ms": stats.p95_ms,
            "p99_ms": stats.p99_ms,
            "longest_error_burst_s": stats.longest_error_burst_s,
        }
        found |= {f"{stats.window}.{k}": float(v) for k, v in values.items() if v is not None}
    for figure in unsupported(result):  # a percentile over too few requests is its few slowest requests
        found.pop(figure, None)
    for m in verdict.measurements:
        if m.objective == "acknowledged writes lost" and m.value is not None:
            found["lost_writes"] = float(m.value)
    effects = [f.inject_to_effect for f in result.faults if f.inject_to_effect is not None]
    if effects:
        found["inject_to_effect_s"] = max(effects)
    return found


@dataclass(frozen=True)
class Judgement:
    """One figure of a run, or of tonight's runs of an experiment together, against the baseline."""

    group: str
    figure: str
    tonight: tuple[float, ...]
    """Tonight's value (one run), or every run's (the rank test)."""
    baseline: tuple[float, ...]
    """The comparable earlier values it was judged against."""
    method: str
    """``noise band`` (one run), ``few runs`` (one run, too few earlier runs for a noise model: only a gross
    change counts), ``night median`` (the median of tonight's runs of a repeated experiment, by the noise band
    or the few-runs rule), ``rank test`` (tonight's runs together) or ``not judged``."""
    bound: float | None = None
    """The worst value allowed (one run, or tonight's median by the night median), or the median tonight's
    runs had to pass (rank test)."""
    rule: str = ""
    """How the bound was set, in words: the rule and its numbers."""
    p_value: float | None = None
    regressed: bool = False
    outlier: bool = False
    """One run of a repeated experiment past its bound: not a regression by itself, since the night and not
    the run is what is independent; the night's median and the rank test judge the night."""

    def limit(self) -> str:
        """The bound in words, ``at most 4.25 s`` (``at least 98.81%`` for availability); empty without one."""
        if self.bound is None:
            return ""
        kind = kind_of(self.figure)
        return f"{'at least' if kind.ratio else 'at most'} {show(self.bound, kind)}"

    def short(self) -> str:
        """The figure, tonight's value(s), the bound and the rule's name: ``recovery_s 9.00 s, at most 4.25 s
        by the noise band``."""
        kind = kind_of(self.figure)
        seen = ", ".join(show(v, kind) for v in self.tonight)
        rule = {"few runs": "the few-runs rule"}.get(self.method, f"the {self.method}")
        if self.bound is None:
            return f"{self.figure} {seen} by {rule}"
        middle = " median" if self.method in TOGETHER else ""
        return f"{self.figure} {seen},{middle} {self.limit()} by {rule}"

    def line(self) -> str:
        kind = kind_of(self.figure)
        seen = ", ".join(show(v, kind) for v in self.tonight)
        if self.method == "not judged":
            return f"not judged: {self.figure} {seen}: {self.rule}"
        word = "regression" if self.regressed else ("outlier" if self.outlier else "ok")
        if self.method in TOGETHER:
            middle = show(statistics.median(self.tonight), kind)
            return f"{word}: {self.figure} {seen} (median {middle}) over {len(self.tonight)} runs; {self.rule}"
        bound = "" if self.bound is None else f"{self.limit()} "
        return f"{word}: {self.figure} {seen}; {bound}({self.rule})"


TOGETHER = ("night median", "rank test")
"""The methods that judge tonight's runs of an experiment together."""

Regression = Judgement
"""A :class:`Judgement` that regressed (the name the results have always used)."""


class Regressed(AssertionError):
    """A run whose SLO held but whose figures got worse than the baseline allows."""

    def __init__(self, regressions: Sequence[Judgement]) -> None:
        names = ", ".join(r.figure for r in regressions)
        super().__init__(f"regressed: {names}\n" + "\n".join(r.line() for r in regressions))
        self.regressions = list(regressions)


def show(value: float, kind: Kind) -> str:
    if kind.ratio:
        return f"{value:.2%}"
    if kind.unit == " ms":
        return f"{value:.0f} ms"
    if kind.unit == " s":
        return f"{value:.2f} s"
    return f"{value:g}"


def badness(value: float, kind: Kind) -> float:
    """The figure with higher always worse."""
    return 1 - value if kind.ratio else value
