"""Baselines: this run's figures against earlier nights', judged only as far as the data can carry them.

A nightly run that only checks SLOs learns nothing from one night to the next:
a recovery that doubles over a month passes every night until it breaks its
target. With a baseline (``--chaos-baseline PATH``: a journal, a baseline
file, or a directory of them, one per night), each experiment's figures are
compared with the same experiment's figures there (matched by its group: the
test's name, or its ``name=``). A figure worse than the baseline's own noise
allows fails the run as a **regression**, even when the SLO still passes.

What is compared (:func:`chaoskit.results.figures`): ``recovery_s``,
``inject_to_effect_s``, ``lost_writes``, and per window (whole, fault, after)
the availability (as unavailability), ``p95_ms``, ``p99_ms`` and the longest
error burst. A percentile is judged only over enough requests to hold it: 10
beyond it, so a p99 needs 1000 requests in its window and a p95 200. Over fewer
it is the run's few slowest requests, and the log says it was not judged.

**Comparable runs.** Each run records its shape: the ``pytest -n`` workers,
the load (users, rate, seconds) and the cluster's Kubernetes minor version. A
run is compared only with earlier runs of the same shape; with none, the log
says so and nothing is judged. Tail latency on two workers sharing a 2-core
runner is another figure than on one, and a node's failure is noticed 10 s
later on 1.32+ (a 50 s grace period) than on 1.20. Runs recorded before the
version was (older journals and baseline files) compare only with each other:
nights from before an upgrade to this release are not judged against, and the
first night after it is not judged at all.

**The noise model** of a figure is its comparable earlier values: n runs over k
nights, their median, their worst, and a sigma: the largest of 1.4826 x the
median absolute deviation, the standard deviation (a skewed figure, such as
a partition's failed requests, 0 in most runs and a burst in some, has a MAD
that sees none of its bursts) and, for availability, the counting noise of the
worst run's failed requests at tonight's window (sqrt(k) of k failed: a
partition's honest 12 failed of 504, against 18 runs whose worst failed 1.30 %,
passed the runs' spread alone). Every rule also
asks for a minimum effect: 20 % of the baseline's median, and never less than
the figure's resolution: 0.5 s for recovery (half a readiness-probe period),
2 s for error bursts (one failed request is a burst as long as it took to
fail, up to the load's 2 s timeout), 1 s for inject-to-effect (the API server's load moves
a pod kill's between 0.05 and 0.6 s here), 10 ms for latency, for availability
half a point or 3 failed requests of the window, whichever is more (a pod kill
fails a request in flight now and then: 1 of 120 is 0.83 points), one lost
write.

* **noise band** (each run, with at least 5 comparable earlier runs over at
  least 3 nights): the run
  regresses when its value passes ``max(worst, median + 4 sigma)`` by more than
  the minimum effect. Normal noise passes 4 sigma once in about 30 000 runs,
  and the band is never narrower than what the baseline itself has seen. A
  latency's band also reaches 4 sigmas on the logarithms of its values: a busy
  CPU stretches requests by a factor, so a tail latency's noise is a ratio (on
  two pytest -n workers sharing 2 cores, a partition's whole-run p99 was 8-74
  ms over 18 honest runs, median 24 ms, and then an honest 113 ms: past the
  values' 4 sigma, inside the logs' 343 ms). Runs from fewer than 3 nights
  cannot say how far one night differs from the next, whatever their number.
* **few runs** (each run, with fewer comparable earlier runs or nights): too
  few for a noise model, so only a gross change counts: past five times the
  worst plus twice the resolution. (Twice the worst was tried first: on two
  pytest -n workers one honest run's whole-run p99 was 68 ms against 23 ms the
  night before, with three runs to judge by.)
* **night median** (a repeated experiment, ``--chaos-repeat`` of at least 3):
  the night, not the run, is the unit that is independent. Tonight's runs
  share the machine, its load and the other worker; a slowdown in the system
  shows in every one of them, and one run's tail is the night's noise. So each
  run is still judged alone, but a run past its bound is only an **outlier**;
  the median of tonight's runs is judged by the noise band (or the few-runs
  rule) instead, and regresses the experiment. (Two-worker nights on 1.37 had
  one run's partition after-window p95 at 31 ms against a 24 ms band, and 98 ms
  against 49 ms, in runs whose siblings that night were inside it.)
* **rank test** (tonight's runs of a repeated experiment together, at least 3,
  against at least 5 comparable earlier runs): a one-sided Mann-Whitney U test
  says tonight's values are worse at p < 0.01, their median is worse than the
  baseline's by more than the minimum effect, and it passes every earlier
  night's median (nights of at least 3 runs) by the minimum effect. The last
  clause keeps a night that is merely the busiest of the window from counting:
  an honest night is the worst of k + 1 once in k + 1.

Every judgement, regressed or not, is kept on the run
(:attr:`ExperimentResult.judgements`) with the rule and numbers that set its
bound: the log and the report say which figures were judged against what.

``--chaos-baseline-figures NAME,...`` judges only those figures (or every
figure of a window, such as ``whole``, or of a kind, such as ``p99_ms``).
``--chaos-baseline-write PATH`` writes tonight's runs as a baseline file
(``chaoskit-baseline/2``): every run that reached a verdict, with its outcome,
whether it regressed, and its shape. A run that regressed stays in the next
nights' baselines, so a figure's noise widens with what the nights show
instead of ratcheting down to the quiet ones; the report shows each night's
verdict beside its values. Journals and ``chaoskit-baseline/1`` files (figures
of passed runs, no shape) are read too; their runs count as comparable.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaoskit.errors import SpecError
from chaoskit.provision.versions import minor_of
from chaoskit.results import (  # the figures and judgements are the results' own; judged here
    P_VALUE,
    ExperimentResult,
    Judgement,
    Kind,
    figures,
    kind_of,
    show,
)
from chaoskit.results import badness as _badness

SCHEMA = "chaoskit-baseline/2"
OLD_SCHEMA = "chaoskit-baseline/1"
NOISE_MIN_RUNS = 5
"""Comparable earlier runs before the noise band judges one run (fewer: only a gross change counts)."""
NOISE_MIN_NIGHTS = 3
"""Nights those runs must come from: runs of fewer nights cannot say how far one night differs from the next."""
FAILED_REQUESTS = 3
"""Availability's resolution in requests: fewer failed requests than this beyond the baseline never count (a
pod kill fails a request in flight now and then)."""
GROSS = 5.0
"""With fewer runs than that, how many times the worst a run must pass (plus twice the resolution)."""
SIGMAS = 4.0
"""How many sigmas above the baseline's median the noise band reaches."""
MIN_EFFECT = 0.2
"""The smallest change that counts, as a share of the baseline's median (never below the resolution)."""
RANK_MIN_TONIGHT = 3
"""Tonight's runs before the rank test judges them together, and before one run past its bound is only an
outlier, the night judged by its median."""
NIGHT_MIN_RUNS = 3
"""Runs a night needs for its median to count in the rank test's last clause."""


def selected(names: Sequence[str], figure: str) -> bool:
    """Whether ``figure`` is one of ``names`` (none: every figure): by its whole name, its window or its kind."""
    if not names:
        return True
    window, _, kind = figure.rpartition(".")
    return figure in names or bool(window and window in names) or kind in names


COMPARED = ("workers", "load", "kubernetes")
"""What makes two runs comparable: the workers beside a run, its load and the Kubernetes minor version (patch
releases compare). The rest of a run's shape (how many times it was repeated) is recorded, not compared: one
run's figures do not depend on it."""


def shape_of(result: ExperimentResult) -> dict[str, Any]:
    """What makes two runs comparable: the workers beside it, its load and the Kubernetes minor."""
    return compared(result.shape)


def compared(shape: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a shape runs are compared on (:data:`COMPARED`), the Kubernetes version as its minor."""
    found = {key: shape[key] for key in COMPARED if key in shape} if shape else {}
    if found.get("kubernetes"):
        found["kubernetes"] = minor_of(str(found["kubernetes"]))
    return found


def same_shape(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    """Whether two compared shapes match: exactly, a run without a recorded Kubernetes version (recorded
    before versions were) matching only others without one. A shape not recorded at all (an old baseline
    file's bare values) matches any."""
    return not mine or not theirs or dict(mine) == dict(theirs)


def describe_shape(shape: Mapping[str, Any] | None) -> str:
    if not shape:
        return "shape not recorded"
    workers = shape.get("workers", 1)
    parts = [f"{workers} worker{'s' if workers != 1 else ''}"]
    if shape.get("load"):
        parts.append(f"load {shape['load']}")
    if shape.get("kubernetes"):
        parts.append(f"Kubernetes {shape['kubernetes']}")
    return ", ".join(parts)


def load_shape(spec: Mapping[str, Any]) -> str:
    """A load spec in the words that decide its figures: ``10 users x 10/s for 40 s``."""
    users = spec.get("users")
    rate = spec.get("rate_per_user")
    seconds = spec.get("run_seconds")
    paced = f" x {rate:g}/s" if isinstance(rate, int | float) else " unpaced"
    text = f"{users} users{paced} for {seconds:g} s" if isinstance(seconds, int | float) else f"{users} users{paced}"
    workers = spec.get("workers")
    if spec.get("in_cluster"):
        return f"{text} from {workers or 'its'} Locust worker pods in the cluster"
    if isinstance(workers, int):
        return f"{text} on {workers} Locust worker{'s' if workers != 1 else ''}"
    return text


@dataclass(frozen=True)
class PastRun:
    """One earlier run, as a baseline holds it."""

    group: str
    night: str
    """The file it came from (one per night): a baseline file's or a journal's directory name."""
    figures: Mapping[str, float]
    outcome: str = "passed"
    regressed: bool = False
    shape: Mapping[str, Any] | None = None
    """None: not recorded (an older file): comparable with any run."""


@dataclass(frozen=True)
class Noise:
    """A figure's comparable earlier values, summarised for judging."""

    kind: Kind
    values: tuple[float, ...]
    """On the badness scale (higher worse)."""
    nights: dict[str, list[float]]
    resolution: float = 0.0
    """The smallest change that counts: the kind's, or for availability the share FAILED_REQUESTS of the
    window's requests when that is more (one failed request of 120 is 0.83 points)."""
    requests: int = 0
    """Tonight's requests in the figure's window (availability only; 0: unknown), for its counting noise."""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def worst(self) -> float:
        return max(self.values)

    @property
    def sigma(self) -> float:
        """The largest of 1.4826 x the median absolute deviation (a normal's sigma, robust to a few wild
        runs), the standard deviation (which a skewed figure needs: a partition's failed requests are 0 in
        most runs and a burst of 12 in some, and the MAD of mostly-zero values sees none of that) and, for
        availability, :attr:`counting_sigma`."""
        if len(self.values) < 2:
            return 0.0
        mad = statistics.median(abs(v - self.median) for v in self.values)
        return max(1.4826 * mad, statistics.stdev(self.values), self.counting_sigma)

    @property
    def log_reach(self) -> float:
        """For a latency, the noise band's reach on the logarithms: the median's log plus SIGMAS sigmas of the
        logs (the larger of 1.4826 x their MAD and their standard deviation), back on the figure's scale. A
        latency's tail on two workers sharing 2 cores is a ratio apart from run to run (a partition's
        whole-run p99: 8 to 74 ms over 18 runs, then an honest 113 ms), which a sigma on the values misses;
        0 for other figures."""
        if not self.kind.multiplicative or len(self.values) < 2:
            return 0.0
        logs = [math.log(max(v, self.kind.resolution)) for v in self.values]
        middle = statistics.median(logs)
        spread = max(1.4826 * statistics.median(abs(v - middle) for v in logs), statistics.stdev(logs))
        return math.exp(middle + SIGMAS * spread)

    @property
    def counting_sigma(self) -> float:
        """For availability, the counting noise of the worst run's failed requests at tonight's window: k
        failed requests are a count of rare events, which varies by about sqrt(k) from run to run even
        when nothing changed, and more when they fail in bursts (a partition's). Runs' spread alone missed
        it: a partition's honest 12 failed of 504 (2.38 %) against 18 runs whose worst was 1.30 %."""
        if not self.kind.ratio or self.requests <= 0:
            return 0.0
        worst_failed = self.worst * self.requests
        return math.sqrt(worst_failed) / self.requests

    @property
    def min_effect(self) -> float:
        return max(self.resolution, self.kind.resolution, MIN_EFFECT * abs(self.median))

    def night_medians(self) -> dict[str, float]:
        return {night: statistics.median(v) for night, v in self.nights.items() if len(v) >= NIGHT_MIN_RUNS}

    def where(self) -> str:
        runs, nights = len(self.values), len(self.nights)
        return f"{runs} run{'s' if runs != 1 else ''} over {nights} night{'s' if nights != 1 else ''}"


@dataclass
class Baseline:
    """Earlier runs, each with its figures, night, outcome and shape."""

    runs: list[PastRun] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    judged: tuple[str, ...] = ()
    """The figures to judge (see :func:`selected`); none: all of them."""

    @classmethod
    def of_values(cls, values: Mapping[str, Mapping[str, Sequence[float]]], night: str = "earlier") -> Baseline:
        """A baseline of bare values (group -> figure -> values), each run a night of its own (``earlier 1``,
        ``earlier 2``...), as a nightly run that does not repeat its experiments makes them, without a shape;
        the i-th value of each figure belongs to the i-th run."""
        runs = []
        for group, named in values.items():
            for i in range(max((len(v) for v in named.values()), default=0)):
                runs.append(PastRun(group, f"{night} {i + 1}", {f: v[i] for f, v in named.items() if i < len(v)}))
        return cls(runs, sorted({r.night for r in runs}))

    @classmethod
    def load(cls, path: Path, judged: Sequence[str] = ()) -> Baseline:
        """Read a journal, a baseline file, or every ``*.json`` of a directory (each one a journal or a
        baseline file); an unreadable file is a SpecError naming it. Only the ``judged`` figures count."""
        if not path.exists():
            raise SpecError(f"baseline {path} does not exist")
        paths = sorted(path.glob("*.json")) if path.is_dir() else [path]
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
        night = path.parent.name if path.name == "chaoskit-journal.json" else path.stem
        if isinstance(document, dict) and document.get("schema") == SCHEMA:
            night = str(document.get("night") or night)
            self.runs += [_past_run(run, night, bool(run.get("regressed"))) for run in document.get("runs", [])]
        elif isinstance(document, dict) and document.get("schema") == OLD_SCHEMA:
            for group, named in document.get("experiments", {}).items():
                for i in range(max((len(v) for v in named.values()), default=0)):
                    self.runs.append(PastRun(group, night, {f: float(v[i]) for f, v in named.items() if i < len(v)}))
        elif isinstance(document, dict) and isinstance(document.get("experiments"), list):
            self.runs += [
                _past_run(run, night, bool(run.get("regressions")))
                for run in document["experiments"]
                if run.get("figures")  # none: no verdict (an error, a skip, partial data)
            ]
        else:
            raise SpecError(f"baseline {path} is neither a chaoskit journal nor a baseline file ({SCHEMA})")
        self.sources.append(str(path))

    def nights(self) -> list[str]:
        return sorted({r.night for r in self.runs})

    def comparable(self, group: str, shape: Mapping[str, Any] | None) -> list[PastRun]:
        """The group's earlier runs of ``shape`` (runs without a recorded shape count as any; a run without a
        recorded Kubernetes version compares only with others without one)."""
        wanted = compared(shape)
        return [r for r in self.runs if r.group == group and same_shape(wanted, compared(r.shape))]

    def of(self, group: str) -> dict[str, list[float]]:
        """Every earlier value of each of the group's figures, whatever the shape."""
        found: dict[str, list[float]] = {}
        for run in self.runs:
            if run.group == group:
                for figure, value in run.figures.items():
                    found.setdefault(figure, []).append(value)
        return found

    def noise(self, figure: str, runs: Sequence[PastRun], requests: Mapping[str, int] | None = None) -> Noise | None:
        """``figure``'s noise model over ``runs``; ``requests`` (window -> tonight's requests) sets an
        availability's resolution in requests."""
        kind = kind_of(figure)
        nights: dict[str, list[float]] = {}
        for run in runs:
            if figure in run.figures:
                nights.setdefault(run.night, []).append(_badness(run.figures[figure], kind))
        values = tuple(v for night in nights.values() for v in night)
        resolution = kind.resolution
        counted = (requests or {}).get(figure.split(".")[0], 0)
        if kind.ratio and counted > 0:
            resolution = max(resolution, FAILED_REQUESTS / counted)
        return Noise(kind, values, nights, resolution, counted if kind.ratio else 0) if values else None

    def _not_comparable(self, group: str, shape: Mapping[str, Any] | None) -> str:
        others = {describe_shape(r.shape) for r in self.runs if r.group == group}
        if not others:
            return "the baseline has no earlier run of this experiment"
        return f"the baseline has no run of this shape ({describe_shape(shape)}); it holds {'; '.join(sorted(others))}"

    def judge_run(
        self,
        group: str,
        tonight: Mapping[str, float],
        shape: Mapping[str, Any] | None = None,
        requests: Mapping[str, int] | None = None,
        repeated: int = 1,
    ) -> list[Judgement]:
        """One run's figures, each against the noise band (or the few-runs rule) of its comparable runs;
        ``requests`` (window -> the run's requests) sets availability's resolution. A run of an experiment
        repeated ``repeated`` >= RANK_MIN_TONIGHT times that passes its bound is an outlier, not a
        regression: :meth:`judge_night` judges the night."""
        runs = self.comparable(group, shape)
        names = [f for f in sorted(tonight) if selected(self.judged, f)]
        if not runs:
            why = self._not_comparable(group, shape)
            return [Judgement(group, f, (tonight[f],), (), "not judged", rule=why) for f in names]
        found = []
        for figure in names:
            noise = self.noise(figure, runs, requests)
            if noise is None:
                found.append(
                    Judgement(group, figure, (tonight[figure],), (), "not judged", rule="no earlier value of it")
                )
                continue
            judged = one_run(group, figure, tonight[figure], noise)
            if judged.regressed and repeated >= RANK_MIN_TONIGHT:
                judged = replace(
                    judged,
                    regressed=False,
                    outlier=True,
                    rule=f"{judged.rule}; one run of {repeated}: an outlier, the night is judged by its median",
                )
            found.append(judged)
        return found

    def judge_night(
        self,
        group: str,
        runs: Sequence[Mapping[str, float]],
        shape: Mapping[str, Any] | None = None,
        requests: Mapping[str, int] | None = None,
    ) -> list[Judgement]:
        """Tonight's runs of one experiment together, for each figure with at least RANK_MIN_TONIGHT values
        tonight: their median by the noise band (or the few-runs rule), and with NOISE_MIN_RUNS comparable
        earlier runs, the rank test; ``requests`` (window -> the fewest requests of tonight's runs) sets
        availability's resolution."""
        earlier = self.comparable(group, shape)
        found = []
        for figure in sorted({name for run in runs for name in run if selected(self.judged, name)}):
            values = [run[figure] for run in runs if figure in run]
            noise = self.noise(figure, earlier, requests)
            if len(values) < RANK_MIN_TONIGHT or noise is None:
                continue
            found.append(night_median(group, figure, values, noise))
            if len(noise.values) >= NOISE_MIN_RUNS:
                found.append(rank_test(group, figure, values, noise))
        return found

    def check_run(
        self,
        group: str,
        tonight: Mapping[str, float],
        shape: Mapping[str, Any] | None = None,
        requests: Mapping[str, int] | None = None,
        repeated: int = 1,
    ) -> list[Judgement]:
        """The regressions among :meth:`judge_run`'s judgements."""
        return [j for j in self.judge_run(group, tonight, shape, requests, repeated) if j.regressed]

    def check_runs(
        self,
        group: str,
        runs: Sequence[Mapping[str, float]],
        shape: Mapping[str, Any] | None = None,
        requests: Mapping[str, int] | None = None,
    ) -> list[Judgement]:
        """The regressions among :meth:`judge_night`'s judgements."""
        return [j for j in self.judge_night(group, runs, shape, requests) if j.regressed]


def _past_run(run: Mapping[str, Any], night: str, regressed: bool) -> PastRun:
    """A run as a baseline file or a journal holds it."""
    figures = {k: float(v) for k, v in (run.get("figures") or {}).items()}
    return PastRun(run["group"], night, figures, run.get("outcome", "passed"), regressed, run.get("shape") or None)


def one_run(group: str, figure: str, value: float, noise: Noise) -> Judgement:
    """One run's value against the noise band, or the few-runs rule when the baseline is too small."""
    kind = noise.kind
    earlier = tuple(_unbad(v, kind) for v in noise.values)
    if len(noise.values) < NOISE_MIN_RUNS or len(noise.nights) < NOISE_MIN_NIGHTS:
        resolution = max(noise.resolution, kind.resolution)
        allowed = GROSS * noise.worst + 2 * resolution
        rule = (
            f"few runs: {noise.where()} are too few for a noise model ({NOISE_MIN_RUNS} runs over "
            f"{NOISE_MIN_NIGHTS} nights needed), so only past "
            f"{GROSS:g} times their worst {show(_unbad(noise.worst, kind), kind)}, plus twice the resolution "
            f"{_step(resolution, kind)}, is a regression"
        )
        method = "few runs"
    else:
        reach = max(noise.worst, noise.median + SIGMAS * noise.sigma, noise.log_reach)
        allowed = reach + noise.min_effect
        logs = (
            f", {SIGMAS:g} sigmas of the logs reach {show(_unbad(noise.log_reach, kind), kind)}"
            if kind.multiplicative
            else ""
        )
        rule = (
            f"noise band of {noise.where()}: median {show(_unbad(noise.median, kind), kind)}, sigma "
            f"{_step(noise.sigma, kind)}, worst {show(_unbad(noise.worst, kind), kind)}{logs}; bound = max(worst, "
            f"median + {SIGMAS:g} sigma{', that reach' if logs else ''}) + minimum effect "
            f"{_step(noise.min_effect, kind)}"
        )
        method = "noise band"
    regressed = _badness(value, kind) > allowed + 1e-12
    return Judgement(group, figure, (value,), earlier, method, _unbad(allowed, kind), rule, regressed=regressed)


def night_median(group: str, figure: str, tonight: Sequence[float], noise: Noise) -> Judgement:
    """Tonight's runs of a repeated experiment by their median, against the bound one run would have."""
    kind = noise.kind
    middle = _unbad(statistics.median(_badness(v, kind) for v in tonight), kind)
    alone = one_run(group, figure, middle, noise)
    return replace(
        alone,
        tonight=tuple(tonight),
        method="night median",
        rule=f"median {show(middle, kind)} of tonight's {len(tonight)} runs against the {alone.rule}",
    )


def rank_test(group: str, figure: str, tonight: Sequence[float], noise: Noise) -> Judgement:
    """Tonight's runs together against the baseline: rank test, minimum effect, and every earlier night."""
    kind = noise.kind
    now = [_badness(v, kind) for v in tonight]
    earlier = tuple(_unbad(v, kind) for v in noise.values)
    shift = statistics.median(now) - noise.median
    p = mann_whitney_greater(now, list(noise.values))
    nights = noise.night_medians()
    worst_night = max(nights.values()) if len(nights) >= 2 else None
    clauses = [
        f"Mann-Whitney U one-sided p = {p:.4f} (regression below {P_VALUE})",
        f"median {'worse' if shift > 0 else 'better'} by {_step(abs(shift), kind)} than the baseline's "
        f"{show(_unbad(noise.median, kind), kind)} over {noise.where()} (regression beyond the minimum effect "
        f"{_step(noise.min_effect, kind)})",
    ]
    beyond_nights = True
    if worst_night is not None:
        # The night is the unit that is independent (tonight's runs share its machine, its load, its other
        # worker), so tonight must also pass the worst earlier night by the minimum effect, not merely top it:
        # an honest night is the worst of k + 1 once in k + 1.
        beyond_nights = statistics.median(now) > worst_night + noise.min_effect
        clauses.append(
            f"worst earlier night's median {show(_unbad(worst_night, kind), kind)} (regression beyond it by the "
            f"minimum effect)"
        )
    regressed = p < P_VALUE and shift > noise.min_effect and beyond_nights
    bound = _unbad(noise.min_effect + max(noise.median, worst_night if worst_night is not None else -math.inf), kind)
    return Judgement(
        group, figure, tuple(tonight), earlier, "rank test", bound, "rank test: " + "; ".join(clauses), p, regressed
    )


def _unbad(value: float, kind: Kind) -> float:
    """Back from the badness scale to the figure's own."""
    return 1 - value if kind.ratio else value


def _step(value: float, kind: Kind) -> str:
    """A difference in the figure's unit (availability in points)."""
    if kind.ratio:
        return f"{value * 100:.2f} points"
    return show(value, kind)


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


def write_baseline(results: Iterable[ExperimentResult], path: Path, night: str | None = None) -> Path:
    """Write every run that reached a verdict, with its outcome, whether it regressed and its shape, as a
    baseline file for later nights; return its path."""
    runs = [
        {
            "group": result.group,
            "outcome": result.outcome,
            "regressed": bool(result.regressions),
            "shape": shape_of(result),
            "figures": measured,
        }
        for result in results
        if (measured := figures(result))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"schema": SCHEMA, "night": night or path.stem, "runs": runs}
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path
