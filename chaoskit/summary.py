"""A session's experiments in the words a CI log needs at 9 am: one block per experiment.

Each block opens with the experiment's verdict and its runs, then says how it
was run (workers, load), what it was judged against (the comparable earlier
runs and nights), and for each figure tonight's values, the bound and the rule
that set it, and which run regressed; then the figures it could not judge and
why. The first line of the session says how many experiments, and apart from
that how many runs, passed, regressed, were flaky or failed.

Nothing here judges: it renders the judgements :mod:`chaoskit.baseline` made
(:attr:`ExperimentResult.judgements`) and the runs' own verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chaoskit.results import TOGETHER, ExperimentResult, Judgement, kind_of, kubernetes_versions, repeat_stats, show


@dataclass(frozen=True)
class Block:
    """One experiment's lines, and its verdict word (for the colour)."""

    verdict: str
    lines: list[str]


def groups(results: Sequence[ExperimentResult]) -> dict[str, list[ExperimentResult]]:
    found: dict[str, list[ExperimentResult]] = {}
    for r in results:
        found.setdefault(r.group, []).append(r)
    return found


def verdict_of(runs: Sequence[ExperimentResult]) -> str:
    """An experiment's one word over its runs (see :attr:`RepeatStats.verdict`)."""
    if len(runs) == 1:
        return runs[0].verdict_word
    (stats,) = repeat_stats(runs)
    return stats.verdict


def header(results: Sequence[ExperimentResult]) -> str:
    """``2 experiments: 1 passed, 1 regressed; 6 runs: 5 passed, 1 regressed``."""
    by_group = groups(results)
    experiments = _counted([verdict_of(runs) for runs in by_group.values()])
    runs = _counted([r.verdict_word for r in results])
    noun = "experiment" if len(by_group) == 1 else "experiments"
    return f"{len(by_group)} {noun}: {experiments}; {len(results)} run{'s' if len(results) != 1 else ''}: {runs}"


def _counted(words: Sequence[str]) -> str:
    order = ["PASSED", "REGRESSED", "FLAKY", "FAILED", "ERROR", "SKIPPED"]
    return ", ".join(f"{words.count(w)} {w.lower()}" for w in order if words.count(w))


def block(runs: Sequence[ExperimentResult]) -> Block:
    first = runs[0]
    word = verdict_of(runs)
    lines = [repeat_stats(runs)[0].line() if len(runs) > 1 else first.headline()]
    if first.shape:
        workers = first.shape.get("workers", 1)
        how = f"{workers} worker{'s' if workers != 1 else ''}"
        if first.shape.get("load"):
            how += f", load {first.shape['load']}"
        lines.append(f"  ran with {how}")
    versions = kubernetes_versions(runs)
    if versions:
        lines.append(f"  on Kubernetes {', '.join(versions)}")
    if len(runs) > 1:
        lines += [f"  {r.headline()}" for r in runs if r.outcome != "passed"]
    judged = [(i, j) for i, r in enumerate(runs, 1) for j in r.judgements]
    if judged:
        lines += _judged_lines(judged, len(runs))
    return Block(word, lines)


def _judged_lines(judged: Sequence[tuple[int, Judgement]], runs: int) -> list[str]:
    lines: list[str] = []
    single = [(i, j) for i, j in judged if j.method in ("noise band", "few runs")]
    together = [j for _, j in judged if j.method in TOGETHER]
    skipped = {j.figure: j.rule for _, j in judged if j.method == "not judged"}
    if single:
        sample = single[0][1]
        lines.append(f"  judged against {len(sample.baseline)} comparable earlier runs, each run alone:")
    by_figure: dict[str, list[tuple[int, Judgement]]] = {}
    for i, j in single:
        by_figure.setdefault(j.figure, []).append((i, j))
    for figure, seen in by_figure.items():
        kind = kind_of(figure)
        values = ", ".join(show(j.tonight[0], kind) for _, j in seen)
        regressed = [f"run {i}" for i, j in seen if j.regressed]
        outliers = [f"run {i}" for i, j in seen if j.outlier]
        _, last = seen[-1]
        bound = last.limit() or "no bound"
        outcome = f"REGRESSED in {', '.join(regressed)}" if regressed else "ok"
        if outliers:
            outcome += f"; outlier in {', '.join(outliers)} (one run; the night's median is judged below)"
        label = "value" if runs == 1 else "values"
        lines.append(f"    {figure}: {label} {values}; {bound}: {outcome}")
        lines.append(f"      ({last.rule})")
    for j in together:
        bound = f" {j.limit()} by the" if j.method == "night median" and j.bound is not None else ""
        lines.append(f"  {'REGRESSED' if j.regressed else 'ok'} together, {j.figure}:{bound} {j.rule}")
    reasons: dict[str, list[str]] = {}
    for figure, why in sorted(skipped.items()):
        reasons.setdefault(why, []).append(figure)
    for why, named in reasons.items():
        lines.append(f"  not judged: {', '.join(named)}: {why}")
    return lines


def blocks(results: Sequence[ExperimentResult]) -> list[Block]:
    return [block(runs) for runs in groups(results).values()]
