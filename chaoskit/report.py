"""What an experiment leaves behind: a JSON journal and an HTML report with a timeline plot.

The journal holds everything the verdict rests on (faults with timestamps and
their proof, the recovery timeline, the load as a per-second series, every SLO
measurement), so a verdict can be checked later without rerunning anything.

The HTML report is one self-contained file: the plot is inline SVG drawn
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


def render_html(results: Sequence[ExperimentResult], history: Baseline | None = None) -> str:
    body = [
        "<!doctype html><html><head><meta charset='utf-8'><title>chaoskit report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>chaoskit: {html.escape(summary.header(results))}</h1>",
    ]
    versions = ", ".join(kubernetes_versions(results)) or "version not recorded"
    body.append(f"<p class='cluster'>Kubernetes {html.escape(versions)}</p>")
    repeats = repeat_stats(results)
    if repeats:
        rows = "".join(
            f"<tr class='{'flaky' if r.flaky else ('passed' if r.passed == r.runs else 'failed')}'>"
            f"<td>{html.escape(r.group)}</td><td>{r.verdict}</td><td>{r.runs}</td><td>{r.passed}</td>"
            f"<td>{_seconds(r.recovery_min)}</td><td>{_seconds(r.recovery_median)}</td>"
            f"<td>{_seconds(r.recovery_max)}</td><td>{html.escape('; '.join(r.failures))}</td></tr>"
            for r in repeats
        )
        body.append(
            "<h2>Repeated experiments</h2><table><tr><th>experiment</th><th></th><th>runs</th><th>passed</th>"
            f"<th>recovery min</th><th>median</th><th>max</th><th>runs that failed</th></tr>{rows}</table>"
        )
    tonight: dict[str, dict[str, list[float]]] = {}
    judged: dict[str, list[Judgement]] = {}
    for result in results:  # each figure of every run of the experiment, and their judgements, for its plots
        for figure, value in figures(result).items():
            tonight.setdefault(result.group, {}).setdefault(figure, []).append(value)
        judged.setdefault(result.group, []).extend(result.judgements)
    for result in results:
        body.append(_experiment_html(result, history, tonight.get(result.group), judged.get(result.group, [])))
    body.append(LAYOUT_PROBE)
    body.append("</body></html>")
    return "\n".join(body)


def _experiment_html(
    result: ExperimentResult,
    history: Baseline | None = None,
    tonight: dict[str, list[float]] | None = None,
    group_judgements: Sequence[Judgement] = (),
) -> str:
    e = html.escape
    rows = "".join(
        f"<tr class='{'passed' if m.passed else 'failed'}'><td>{'met' if m.passed else 'FAILED'}</td>"
        f"<td>{e(m.objective)}</td><td>{e(m.window)}</td><td>{e(m.target)}</td><td>{e(m.measured)}</td></tr>"
        for m in result.verdict.measurements
    )
    faults = "".join(
        f"<tr><td>{e(f.kind)}</td><td>{e(_where(f))}</td><td>{e(_effect(f))}</td><td class='deaths'>{_deaths(f)}</td>"
        f"<td>{_seconds(f.inject_to_effect)}</td><td>{_cap(f)}</td><td class='undo'>{e(_undone(f))}</td></tr>"
        for f in result.faults
    )
    stats = "".join(
        f"<tr><td>{e(s.window)}</td><td>{s.requests}</td><td>{s.errors}</td>"
        f"<td>{_ratio(s.availability)}</td><td>{_ms(s.p50_ms)}</td><td>{_ms(s.p95_ms)}</td><td>{_ms(s.p99_ms)}</td>"
        f"<td>{s.longest_error_burst_s:.2f} s</td></tr>"
        for s in result.verdict.stats
    )
    error = f"<p class='error'>{e(result.error)}</p>" if result.error else ""
    if result.expected_failure:
        error += f"<p class='expected-failure'>Expected to fail: {e(result.expected_failure)}</p>"
    if result.regressions:
        error += "".join(f"<p class='failed regression'>{e(r.line())}</p>" for r in result.regressions)
    if result.verdict.partial_data:
        error += (
            f"<p class='failed partial-data'>No verdict: {e(result.verdict.partial_data)}; "
            "a verdict over partial data is not a verdict, so every objective failed.</p>"
        )
    return f"""
<section class='experiment'>
<h2 class='{result.outcome}'>{e(result.verdict_word)}: {e(result.name)}</h2>
<p>{e(result.headline())}</p>{error}
{_plot(result)}
<table><tr><th>verdict</th><th>objective</th><th>window</th><th>target</th><th>measured</th></tr>{rows}</table>
<table><tr><th>window</th><th>requests</th><th>errors</th><th>availability</th><th>p50</th><th>p95</th><th>p99</th>
<th>longest error burst</th></tr>{stats}</table>
<table><tr><th>fault</th><th>targets</th><th>effect</th><th>how its targets died</th><th>inject to effect</th>
<th>blast-radius cap</th><th>undone (proof)</th></tr>{faults}</table>
{_stream_html(result.load.get("stream"))}
{_judgements_html(result)}
{_trends_html(result, history, tonight or {}, group_judgements)}
{_events_html(result)}
{_logs_html(result)}
</section>"""


def _judgements_html(result: ExperimentResult) -> str:
    """Each figure judged against the baseline: tonight's value, the bound, the rule that set it, the verdict;
    then the figures not judged, and why."""
    if not result.judgements:
        return ""
    e = html.escape
    rows = []
    for j in result.judgements:
        kind = kind_of(j.figure)
        seen = ", ".join(show(v, kind) for v in j.tonight)
        bound = "" if j.bound is None else show(j.bound, kind)
        verdict = "REGRESSED" if j.regressed else ("not judged" if j.method == "not judged" else "ok")
        if j.outlier:
            verdict = "outlier (the night's median judges)"
        rows.append(
            f"<tr class='{'failed' if j.regressed else ''}'><td>{e(j.figure)}</td><td>{e(seen)}</td>"
            f"<td>{e(bound)}</td><td>{e(j.method)}</td><td>{verdict}</td><td class='rule'>{e(j.rule)}</td></tr>"
        )
    return (
        "<h3>Judged against the baseline</h3><table class='judgements'><tr><th>figure</th><th>tonight</th>"
        f"<th>bound</th><th>rule</th><th>verdict</th><th>how the bound was set</th></tr>{''.join(rows)}</table>"
    )


def _trends_html(
    result: ExperimentResult,
    history: Baseline | None,
    tonight: dict[str, list[float]],
    group_judgements: Sequence[Judgement] = (),
) -> str:
    """A plot per judged figure: the comparable earlier nights' runs, the band they span, the bound the
    judgement set, and tonight's runs of the experiment (red when the figure regressed)."""
    if history is None:
        return ""
    runs = history.comparable(result.group, shape_of(result))
    # Tonight's runs of the experiment: a figure that regressed in any of them, alone or together (the rank
    # test judges on the last run), is red in every run's plot, with the bound that judged it.
    judged = group_judgements or result.judgements
    regressed = {j.figure for j in judged if j.regressed}
    bounds = {j.figure: j.bound for j in judged if j.method in ("noise band", "few runs")}
    by_median = {j.figure: j.bound for j in judged if j.method in TOGETHER and j.regressed}
    bounds |= by_median
    cells = []
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
        cells.append(
            "<figure class='trend'>"
            + trend_svg(
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
            + "</figure>"
        )
    if not cells:
        return ""
    head = (
        f"<h3>Figures over the earlier nights ({len(history.nights())} night(s), {len(runs)} comparable runs; "
        "the band is the range they spanned, the dashed line the bound tonight was judged by)</h3>"
    )
    return f"{head}<div class='trends'>{''.join(cells)}</div>"


def _events_html(result: ExperimentResult) -> str:
    if not result.cluster_events and not result.evidence_note:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr class='{'failed' if ce.type == 'Warning' else ''}'><td>{ce.at - result.started:+.1f} s</td>"
        f"<td>{e(ce.type)}</td><td>{e(ce.reason)}</td><td>{e(ce.kind)}/{e(ce.name)}</td><td>{e(ce.message)}</td>"
        f"<td>{ce.count}</td></tr>"
        for ce in result.cluster_events
    )
    note = f"<p class='note'>{e(result.evidence_note)}</p>" if result.evidence_note else ""
    return (
        f"<h3>Cluster events ({len(result.cluster_events)})</h3>{note}<table class='cluster-events'><tr><th>at</th>"
        f"<th>type</th><th>reason</th><th>object</th><th>message</th><th>count</th></tr>{rows}</table>"
    )


def _logs_html(result: ExperimentResult) -> str:
    if not result.logs:
        return ""
    e = html.escape
    parts = "".join(
        f"<h4>{e(pod)}</h4><pre class='pod-log'>{e(text) or '(empty)'}</pre>" for pod, text in result.logs.items()
    )
    return f"<h3>Pod logs (the last lines)</h3>{parts}"


def _stream_html(stream: dict[str, Any] | None) -> str:
    """The load's record stream: what arrived against what Locust counted."""
    if not stream:
        return ""
    counted = stream.get("locust_requests")
    state = "complete" if stream.get("complete") else "INCOMPLETE"
    return (
        "<table class='stream'><tr><th>load stream</th><th>records received</th><th>Locust counted</th>"
        f"<th>unreadable lines</th><th>max lag</th></tr><tr class='{'passed' if stream.get('complete') else 'failed'}'>"
        f"<td>{state}</td><td>{stream.get('received', 0)}</td><td>{'' if counted is None else counted}</td>"
        f"<td>{stream.get('bad_lines', 0)}</td><td>{_ms(stream.get('max_lag_ms'))}</td></tr></table>"
    )


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


def _deaths(fault: FaultRecord) -> str:
    """Each target's death as read from outside, a line each (escaped); empty for faults that kill nothing."""
    return "<br>".join(html.escape(f"{target}: {how}") for target, how in sorted(fault.deaths.items()))


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
