"""What an experiment leaves behind: a JSON journal and an HTML report with a timeline plot.

The journal holds everything the verdict rests on (faults with timestamps and
their proof, the recovery timeline, the load as a per-second series, every SLO
measurement), so a verdict can be checked later without rerunning anything.

The HTML report is one self-contained file, from the Jinja2 template
``templates/report.html.j2`` with autoescape: the plot is inline SVG drawn
here, with no script or stylesheet fetched from anywhere (the machines that
run chaoskit are often air-gapped). Each experiment gets four panels on one
time axis: requests per second, errors per second, p95 latency and ready
replicas, with the fault windows shaded and the events marked.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from chaoskit import summary
from chaoskit.baseline import Baseline, shape_of
from chaoskit.faults.base import FaultRecord
from chaoskit.results import (
    TOGETHER,
    ExperimentResult,
    Judgement,
    Series,
    figures,
    kind_of,
    kubernetes_versions,
    repeat_stats,
    show,
)
from chaoskit.trends import trend_svg

JOURNAL_SCHEMA = "chaoskit-journal/1"
"""The journal's ``schema``: its keys are documented in docs/your-system.md ("What you get back"); a change
that breaks a reader of them gets a new number."""


def write_reports(
    results: Sequence[ExperimentResult], directory: Path, stem: str = "chaoskit", history: Baseline | None = None
) -> tuple[Path, Path]:
    """Write ``<stem>-journal.json`` and ``<stem>-report.html`` (with each figure's trend over ``history``, the
    earlier nights' figures, when given); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    journal = directory / f"{stem}-journal.json"
    report = directory / f"{stem}-report.html"
    repeats = [
        {
            **asdict(r),
            "flaky": r.flaky,
            "recovery_min": r.recovery_min,
            "recovery_median": r.recovery_median,
            "recovery_max": r.recovery_max,
        }
        for r in repeat_stats(results)
    ]
    document = {
        "schema": JOURNAL_SCHEMA,
        "kubernetes": kubernetes_versions(results),
        "experiments": [r.to_dict() for r in results],
        "repeats": repeats,
    }
    _replace(journal, json.dumps(document, indent=1, default=str) + "\n")
    _replace(report, render_html(results, history))
    return journal, report


def write_junit(results: Sequence[ExperimentResult], path: Path, suite: str = "chaoskit") -> Path:
    """A JUnit XML file of the results (for CI that reads JUnit), one test case each: the headline as the
    failure message, the verdict's lines as its text, the headline numbers as properties."""
    from xml.etree import ElementTree as ET

    failures = sum(1 for r in results if r.outcome == "failed")
    errors = sum(1 for r in results if r.outcome == "error")
    skipped = sum(1 for r in results if r.outcome == "skipped")
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{sum(r.ended - r.started for r in results):.3f}",
    )
    for r in results:
        case = ET.SubElement(root, "testcase", classname=suite, name=r.name, time=f"{r.ended - r.started:.3f}")
        properties = ET.SubElement(case, "properties")
        for key, value in {"chaoskit_outcome": r.outcome, **r.properties()}.items():
            ET.SubElement(properties, "property", name=key, value=value)
        if r.outcome in ("failed", "error"):
            element = ET.SubElement(case, "failure" if r.outcome == "failed" else "error", message=r.headline())
            element.text = r.verdict.explain() + (f"\n{r.error}" if r.error else "")
        elif r.outcome == "skipped":
            ET.SubElement(case, "skipped", message=r.skipped or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, ET.tostring(root, encoding="unicode") + "\n")
    return path


def _replace(path: Path, text: str) -> None:
    # Written whole, then renamed: a reader (or a killed run) never sees half a report.
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_text(text)
    partial.replace(path)


# --- HTML ------------------------------------------------------------------------

WIDTH, PANEL, GAP, LEFT, RIGHT = 900, 110, 26, 70, 20
COLOURS = {"requests": "#2b6cb0", "errors": "#c53030", "p95": "#805ad5", "ready": "#2f855a"}

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1a202c; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.passed { color: #2f855a; } .failed, .error { color: #c53030; } .flaky { color: #b7791f; }
.trends { display: flex; flex-wrap: wrap; gap: 8px; } .trend figcaption { font-size: 11px; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #cbd5e0; padding: 3px 8px; }
th { background: #edf2f7; text-align: left; } svg text { font: 11px sans-serif; fill: #4a5568; }
"""

# Proof that a browser laid the plot out: the report states the width of every
# plot as rendered, on the body, for the headless-browser check.
LAYOUT_PROBE = """
<script>
window.addEventListener("load", function () {
  var plots = document.querySelectorAll("svg.timeline");
  var widths = [];
  plots.forEach(function (svg) { widths.push(Math.round(svg.getBBox().width)); });
  document.body.setAttribute("data-rendered-plots", widths.join(","));
});
</script>
"""


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("chaoskit", "templates"),
    autoescape=True,  # every value from a result (names, messages, pod logs) is text, never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(results: Sequence[ExperimentResult], history: Baseline | None = None) -> str:
    """The HTML report of ``results`` (``templates/report.html.j2``), with each figure's trend over
    ``history`` when given."""
    tonight: dict[str, dict[str, list[float]]] = {}
    judged: dict[str, list[Judgement]] = {}
    for result in results:  # each figure of every run of the experiment, and their judgements, for its plots
        for figure, value in figures(result).items():
            tonight.setdefault(result.group, {}).setdefault(figure, []).append(value)
        judged.setdefault(result.group, []).extend(result.judgements)
    return _TEMPLATES.get_template("report.html.j2").render(
        style=Markup(STYLE),
        layout_probe=Markup(LAYOUT_PROBE),
        header=summary.header(results),
        versions=", ".join(kubernetes_versions(results)) or "version not recorded",
        repeats=[
            {
                "css": "flaky" if r.flaky else ("passed" if r.passed == r.runs else "failed"),
                "group": r.group,
                "verdict": r.verdict,
                "runs": r.runs,
                "passed": r.passed,
                "recovery_min": _seconds(r.recovery_min),
                "recovery_median": _seconds(r.recovery_median),
                "recovery_max": _seconds(r.recovery_max),
                "failures": "; ".join(r.failures),
            }
            for r in repeat_stats(results)
        ],
        experiments=[_experiment(r, history, tonight.get(r.group, {}), judged.get(r.group, [])) for r in results],
    )


def _experiment(
    result: ExperimentResult,
    history: Baseline | None,
    tonight: dict[str, list[float]],
    group_judgements: Sequence[Judgement],
) -> dict[str, Any]:
    """One experiment's part of the report's context: its values as the page shows them."""
    trends, trend_runs = _trends(result, history, tonight, group_judgements)
    stream = result.load.get("stream")
    return {
        "outcome": result.outcome,
        "verdict_word": result.verdict_word,
        "name": result.name,
        "headline": result.headline(),
        "error": result.error,
        "expected_failure": result.expected_failure,
        "regressions": [r.line() for r in result.regressions],
        "partial_data": result.verdict.partial_data,
        "plot": Markup(_plot(result)),
        "measurements": result.verdict.measurements,
        "stats": [
            {
                "window": s.window,
                "requests": s.requests,
                "errors": s.errors,
                "availability": _ratio(s.availability),
                "p50": _ms(s.p50_ms),
                "p95": _ms(s.p95_ms),
                "p99": _ms(s.p99_ms),
                "burst": f"{s.longest_error_burst_s:.2f} s",
            }
            for s in result.verdict.stats
        ],
        "faults": [
            {
                "kind": f.kind,
                "where": _where(f),
                "effect": _effect(f),
                "deaths": [f"{target}: {how}" for target, how in sorted(f.deaths.items())],
                "inject_to_effect": _seconds(f.inject_to_effect),
                "cap": _cap(f),
                "undone": _undone(f),
            }
            for f in result.faults
        ],
        "stream": _stream(stream) if stream else None,
        "judgements": [_judgement(j) for j in result.judgements],
        "trends": trends,
        "trend_nights": len(history.nights()) if history is not None else 0,
        "trend_runs": trend_runs,
        "cluster_events": [
            {
                "at": f"{ce.at - result.started:+.1f} s",
                "type": ce.type,
                "reason": ce.reason,
                "object": f"{ce.kind}/{ce.name}",
                "message": ce.message,
                "count": ce.count,
            }
            for ce in result.cluster_events
        ],
        "evidence_note": result.evidence_note,
        "logs": list(result.logs.items()),
    }


def _judgement(j: Judgement) -> dict[str, Any]:
    """A figure judged against the baseline: tonight's value, the bound, the rule that set it, the verdict."""
    kind = kind_of(j.figure)
    verdict = "REGRESSED" if j.regressed else ("not judged" if j.method == "not judged" else "ok")
    if j.outlier:
        verdict = "outlier (the night's median judges)"
    return {
        "regressed": j.regressed,
        "figure": j.figure,
        "tonight": ", ".join(show(v, kind) for v in j.tonight),
        "bound": "" if j.bound is None else show(j.bound, kind),
        "method": j.method,
        "verdict": verdict,
        "rule": j.rule,
    }


def _trends(
    result: ExperimentResult,
    history: Baseline | None,
    tonight: dict[str, list[float]],
    group_judgements: Sequence[Judgement] = (),
) -> tuple[list[Markup], int]:
    """A plot per judged figure: the comparable earlier nights' runs, the band they span, the bound the
    judgement set, and tonight's runs of the experiment (red when the figure regressed); and how many
    comparable earlier runs they show."""
    if history is None:
        return [], 0
    runs = history.comparable(result.group, shape_of(result))
    # Tonight's runs of the experiment: a figure that regressed in any of them, alone or together (the rank
    # test judges on the last run), is red in every run's plot, with the bound that judged it.
    judged = group_judgements or result.judgements
    regressed = {j.figure for j in judged if j.regressed}
    bounds = {j.figure: j.bound for j in judged if j.method in ("noise band", "few runs")}
    by_median = {j.figure: j.bound for j in judged if j.method in TOGETHER and j.regressed}
    bounds |= by_median
    plots = []
    for figure in sorted(figures(result)):
        nights: dict[str, list[float]] = {}
        for run in runs:
            if figure in run.figures:
                nights.setdefault(run.night, []).append(run.figures[figure])
        if not nights:
            continue
        kind = kind_of(figure)
        earlier = [v for values in nights.values() for v in values]
        unit = "%" if kind.ratio else kind.unit.strip()
        svg = trend_svg(
            figure,
            unit,
            sorted(nights.items()),
            tonight.get(figure) or [figures(result)[figure]],
            (min(earlier), max(earlier)),
            bounds.get(figure),
            figure in regressed,
            higher_is_worse=not kind.ratio,
            of_median=figure in by_median,
        )
        plots.append(Markup(svg))  # drawn by chaoskit.trends, which escapes its text
    return plots, len(runs)


def _stream(stream: dict[str, Any]) -> dict[str, Any]:
    """The load's record stream: what arrived against what Locust counted."""
    counted = stream.get("locust_requests")
    return {
        "complete": bool(stream.get("complete")),
        "received": stream.get("received", 0),
        "counted": "" if counted is None else counted,
        "bad_lines": stream.get("bad_lines", 0),
        "max_lag": _ms(stream.get("max_lag_ms")),
    }


def _plot(result: ExperimentResult) -> str:
    series = result.series
    if series is None or not series.requests:
        return "<p>No load was recorded.</p>"
    span = max(series.step * len(series.requests), 1e-9)
    ready_steps = [(ev.at, ev.ready) for ev in result.events if ev.kind == "ready" and ev.ready is not None]
    panels: list[tuple[str, str, list[float | None]]] = [
        ("requests", "requests/s", list(series.per_second(series.requests))),
        ("errors", "errors/s", list(series.per_second(series.errors))),
        ("p95", "p95 latency (ms)", list(series.p95_ms)),
    ]
    height = (PANEL + GAP) * (len(panels) + 1) + 20

    def x(t: float) -> float:
        return LEFT + (t - series.start) / span * (WIDTH - LEFT - RIGHT)

    parts = [f"<svg class='timeline' xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}'>"]
    recovered = sorted(ev.at for ev in result.events if ev.kind == "recovered")
    for fault in result.faults:
        if fault.injected_at is None:
            continue
        # Its band ends at the recovery from it (each fault has its own; see chaoskit.experiment).
        end = next((at for at in recovered if at >= fault.injected_at), fault.injected_at)
        end = max(end, fault.reverted_at or fault.injected_at)
        left, right = x(fault.injected_at), x(min(end, series.start + span))
        parts.append(
            f"<rect class='fault-window' x='{left:.1f}' y='0' width='{max(right - left, 1.5):.1f}' "
            f"height='{height - 20}' fill='#fed7d7' opacity='0.6'><title>{html.escape(fault.kind)}</title></rect>"
        )
    for i, (key, title, values) in enumerate(panels):
        parts.append(_panel(i, key, title, values, series, x))
    parts.append(_ready_panel(len(panels), ready_steps, series, span, x))
    for ev in result.events:
        if ev.kind in ("fault", "recovered", "mark", "undo") and series.start <= ev.at <= series.start + span:
            parts.append(
                f"<line class='event' x1='{x(ev.at):.1f}' x2='{x(ev.at):.1f}' y1='0' y2='{height - 20}' "
                f"stroke='#4a5568' stroke-dasharray='3,3'><title>{html.escape(ev.label)}</title></line>"
            )
    for ce in result.cluster_events:
        if series.start <= ce.at <= series.start + span:
            colour = "#c05621" if ce.type == "Warning" else "#718096"
            parts.append(
                f"<line class='cluster-event' x1='{x(ce.at):.1f}' x2='{x(ce.at):.1f}' y1='{height - 26}' "
                f"y2='{height - 18}' stroke='{colour}' stroke-width='2'><title>{html.escape(ce.label())}</title></line>"
            )
    axis_y = height - 8
    for tick in range(0, int(span) + 1, max(1, int(span) // 10 or 1)):
        parts.append(f"<text x='{x(series.start + tick):.1f}' y='{axis_y}' text-anchor='middle'>{tick}s</text>")
    parts.append("</svg>")
    return "".join(parts)


def _panel(index: int, key: str, title: str, values: list[float | None], series: Series, x: Any) -> str:
    top = index * (PANEL + GAP) + GAP
    peak = max((v for v in values if v is not None), default=0.0) or 1.0
    points = []
    for i, v in enumerate(values):
        if v is None:
            continue
        t = series.start + (i + 0.5) * series.step
        points.append(f"{x(t):.1f},{top + PANEL - v / peak * PANEL:.1f}")
    path = f"<polyline class='series {key}' fill='none' stroke='{COLOURS[key]}' stroke-width='1.5' " + (
        f"points='{' '.join(points)}'/>" if points else "points=''/>"
    )
    return (
        f"<text x='{LEFT}' y='{top - 6}'>{html.escape(title)} (max {peak:.0f})</text>"
        f"<rect x='{LEFT}' y='{top}' width='{WIDTH - LEFT - RIGHT}' height='{PANEL}' fill='none' stroke='#e2e8f0'/>"
        + path
    )


def _ready_panel(index: int, steps: list[tuple[float, int]], series: Series, span: float, x: Any) -> str:
    top = index * (PANEL + GAP) + GAP
    peak = max((r for _, r in steps), default=1) or 1
    points = []
    last: int | None = None
    for at, ready in steps:
        at = min(max(at, series.start), series.start + span)
        if last is not None:
            points.append(f"{x(at):.1f},{top + PANEL - last / peak * PANEL:.1f}")
        points.append(f"{x(at):.1f},{top + PANEL - ready / peak * PANEL:.1f}")
        last = ready
    if last is not None:
        points.append(f"{x(series.start + span):.1f},{top + PANEL - last / peak * PANEL:.1f}")
    return (
        f"<text x='{LEFT}' y='{top - 6}'>ready replicas (max {peak})</text>"
        f"<rect x='{LEFT}' y='{top}' width='{WIDTH - LEFT - RIGHT}' height='{PANEL}' fill='none' stroke='#e2e8f0'/>"
        f"<polyline class='series ready' fill='none' stroke='{COLOURS['ready']}' stroke-width='1.5' "
        f"points='{' '.join(points)}'/>"
    )


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} s"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def _effect(fault: FaultRecord) -> str:
    if fault.vetoed:
        return f"VETOED before it acted: {fault.vetoed}"
    return fault.effect or fault.error or ""


def _undone(fault: FaultRecord) -> str:
    if fault.vetoed:
        return "nothing injected"
    if not fault.undoable:
        return "nothing to undo"
    if fault.undo_error:
        return f"NO: {fault.undo_error}"
    if fault.reverted:
        return f"yes: {fault.undo_proof}" if fault.undo_proof else "yes"
    return "NO"


def _where(fault: FaultRecord) -> str:
    """The targets, the nodes the fault held and how long it waited for them."""
    text = ", ".join(fault.targets)
    if fault.nodes:
        text += f" (on {', '.join(fault.nodes)}"
        if (fault.lock_wait_s or 0.0) >= 0.5:
            text += f"; waited {fault.lock_wait_s:.1f} s for another run's faults to leave them"
        text += ")"
    return text


def _cap(fault: FaultRecord) -> str:
    """The blast-radius cap the fault was checked against, and whether it set its own."""
    return f"{fault.max_share:.0%}" + (" (raised for this fault)" if fault.max_share_raised else "")
