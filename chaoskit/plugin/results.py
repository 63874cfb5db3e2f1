"""What becomes of an experiment's result in a session: the baseline's judgement, the reports, the JUnit
properties, the terminal summary, and under ``pytest -n`` the controller that reports every worker's
results."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoskit import parallel, summary
from chaoskit.adapters.kube import Kube
from chaoskit.baseline import Baseline, load_shape, selected, shape_of, write_baseline
from chaoskit.evidence import pod_logs
from chaoskit.plugin.options import _BASELINE, _RESULTS, _SPEC, _STARTED, setting
from chaoskit.plugin.runs import delete_cluster
from chaoskit.report import write_reports
from chaoskit.results import ExperimentResult, Judgement, Regressed, figures, repeat_stats, unsupported
from chaoskit.slo import SloViolation


def reporter(config: pytest.Config, item: pytest.Item, kube: Kube | None = None) -> Callable[[ExperimentResult], None]:
    """What happens to an experiment's result in a session: the baseline's judgement, the hook, the session's
    reports (the controller's, under ``pytest -n``), and the headline numbers as the test's JUnit properties."""
    directory = Path(setting(config, "report-dir"))
    baseline = config.stash.get(_BASELINE, None)

    def report(result: ExperimentResult) -> None:
        worker = parallel.worker_id(config)
        result.runner = f"{worker} (pid {os.getpid()})" if worker else f"pid {os.getpid()}"
        xfail = item.get_closest_marker("xfail")
        if xfail is not None:
            result.expected_failure = str(xfail.kwargs.get("reason") or "marked xfail")
        result.shape = run_shape(config, result)
        if baseline is not None:
            result.judgements = judge(baseline, result, setting(config, "repeat"))
            result.regressions = [j for j in result.judgements if j.regressed]
            if result.regressions and not result.logs and kube is not None:
                result.logs = pod_logs(kube, result.involved_pods)  # a regressed run explains itself too
        group = {} if parallel.is_worker(config) else keep(config, result)
        config.hook.pytest_chaoskit_experiment_result(result=result)
        # What record_property does, without its warning under junit_family xunit2: the XML writer
        # puts a test's user_properties into its <properties> whatever the family.
        properties = {"chaoskit_outcome": result.outcome, **result.properties(), **group}
        properties |= {
            "chaoskit_journal": str(directory / "chaoskit-journal.json"),
            "chaoskit_report": str(directory / "chaoskit-report.html"),
        }
        item.user_properties.extend(properties.items())
        if parallel.is_worker(config):
            parallel.ship(item, result)  # the controller keeps it with the other workers' and writes the reports

    return report


def run_shape(config: pytest.Config, result: ExperimentResult) -> dict[str, Any]:
    """How the run was run: the experiments beside it (``pytest -n``), the repeat, its load and the cluster's
    Kubernetes version."""
    shape: dict[str, Any] = {"workers": parallel.workers(config), "repeat": setting(config, "repeat")}
    if isinstance(result.load.get("spec"), dict):
        shape["load"] = load_shape(result.load["spec"])
    if result.kubernetes:
        shape["kubernetes"] = result.kubernetes
    return shape


def judge(baseline: Baseline, result: ExperimentResult, repeat: int = 1) -> list[Judgement]:
    """One run of an experiment run ``repeat`` times against the baseline: each figure it measured, and the
    percentiles it measured over too few requests, said as not judged."""
    requests = {s.window: s.requests for s in result.verdict.stats}
    judged = baseline.judge_run(result.group, figures(result), shape_of(result), requests, repeated=repeat)
    left = [
        Judgement(result.group, figure, (), (), "not judged", rule=why)
        for figure, why in unsupported(result).items()
        if selected(baseline.judged, figure)
    ]
    return judged + left


def keep(config: pytest.Config, result: ExperimentResult) -> dict[str, str]:
    """Add ``result`` to the session's results and write the reports again. The last run of a repeated
    experiment judges the group against the baseline; returns the group's JUnit properties then."""
    results = config.stash[_RESULTS]
    baseline = config.stash.get(_BASELINE, None)
    repeat = setting(config, "repeat")
    group = [r for r in results if r.group == result.group] + [result]
    properties: dict[str, str] = {}
    if len(group) == repeat > 1:
        if baseline is not None:  # all of them against the baseline, if enough
            fewest: dict[str, int] = {}
            for run in group:  # availability's resolution in requests: the fewest any run had
                for window in run.verdict.stats:
                    fewest[window.window] = min(fewest.get(window.window, window.requests), window.requests)
            together = baseline.judge_night(result.group, [figures(r) for r in group], shape_of(result), fewest)
            result.judgements += together
            result.regressions += [j for j in together if j.regressed]
        (stats,) = repeat_stats(group)
        properties = {"chaoskit_runs_passed": f"{stats.passed}/{stats.runs}", "chaoskit_flaky": str(stats.flaky)}
    results.append(result)
    write_reports(results, Path(setting(config, "report-dir")), history=baseline)
    return properties


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if call.excinfo is not None and isinstance(call.excinfo.value, Regressed | SloViolation):
        # The verdict says what failed and by how much: no test source, traceback or result repr around it.
        report.longrepr = str(call.excinfo.value)
    if call.when == "teardown" and parallel.is_worker(item.config):
        parallel.attach(item, report)


class _Controller:
    """Under ``pytest -n``, in the controller: keeps the results the workers send and reports them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.created_by_workers: list[str] = []
        """The clusters workers brought up (one, or one per worker), for the controller to delete at the end."""

    @pytest.hookimpl(tryfirst=True)  # before the JUnit writer reads the report's properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for result in parallel.received(report):
            passed_before = result.outcome == "passed"
            group = keep(self.config, result)
            report.user_properties.extend(group.items())
            if passed_before and result.regressions and report.passed:  # its group regressed, judged here
                report.outcome = "failed"
                report.longrepr = "\n".join(r.line() for r in result.regressions)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return parallel.scheduler(config, log) if config.getvalue("dist") == "load" else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        name = getattr(node, "workeroutput", {}).get(parallel.CREATED)
        if name and name not in self.created_by_workers:
            self.created_by_workers.append(name)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        if setting(self.config, "keep-cluster"):
            return
        for name in self.created_by_workers:
            delete_cluster(dataclasses.replace(self.config.stash[_SPEC], name=name))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, [])
    if not results or parallel.is_worker(config):
        return
    terminalreporter.section("chaoskit experiments")
    terminalreporter.line(summary.header(results))
    for block in summary.blocks(results):
        colour = {"PASSED": "green", "FLAKY": "yellow", "SKIPPED": "yellow"}.get(block.verdict, "red")
        for i, text in enumerate(block.lines):
            terminalreporter.line(text, **({colour: True} if i == 0 else {}))
    baseline = config.stash.get(_BASELINE, None)
    if baseline is not None:
        regressed = sum(1 for r in results if r.regressions)
        terminalreporter.line(
            f"baseline: {len(baseline.sources)} file(s) from {setting(config, 'baseline')} "
            f"({len(baseline.runs)} runs over {len(baseline.nights())} nights); "
            f"{regressed} of {len(results)} run(s) regressed"
        )
    written = setting(config, "baseline-write")
    if written:
        night = config.stash[_STARTED]
        terminalreporter.line(f"baseline written: {write_baseline(results, Path(written), night)}")
    directory = Path(setting(config, "report-dir"))
    terminalreporter.line(f"reports: {directory / 'chaoskit-report.html'}, {directory / 'chaoskit-journal.json'}")
