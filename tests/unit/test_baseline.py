"""Baselines and flakiness, on synthetic results (the cluster test is tests/cluster/test_baseline.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results import rendered, synthetic_result

from chaoskit.baseline import Baseline, mann_whitney_greater, write_baseline
from chaoskit.errors import SpecError
from chaoskit.report import write_reports
from chaoskit.results import Regressed, figures, repeat_stats
from chaoskit.slo import Availability, RecoveryTime

PASSING = [Availability(0.9), RecoveryTime(10)]


def test_a_runs_figures_are_its_recovery_windows_and_inject_to_effect():
    found = figures(synthetic_result(recovery=4.0))
    assert found["recovery_s"] == 4.0
    assert found["whole.availability"] == pytest.approx(0.9)  # 2 s of errors in 20 s
    assert found["fault.availability"] < 0.6 and found["after.availability"] == 1.0
    assert {"whole.p95_ms", "fault.p99_ms", "whole.longest_error_burst_s"} <= set(found)
    assert found["inject_to_effect_s"] == pytest.approx(0.05)


def test_a_recovery_far_slower_than_the_baseline_is_a_regression_naming_the_figure():
    baseline = Baseline({"exp": {"recovery_s": [0.4, 0.5]}})
    (regression,) = baseline.check_run("exp", {"recovery_s": 4.0, "other": 1.0})
    assert regression.line() == (
        "regression: recovery_s 4.00 s; baseline 0.40 s to 0.50 s over 2 run(s) (range widened by 20 %: at most 1.50 s)"
    )


def test_an_honest_baseline_and_noise_below_the_floor_are_not_regressions():
    baseline = Baseline({"exp": {"recovery_s": [3.8, 4.1], "whole.p95_ms": [4.0], "whole.availability": [1.0]}})
    assert baseline.check_run("exp", {"recovery_s": 4.6, "whole.p95_ms": 8.0, "whole.availability": 0.999}) == []
    assert baseline.check_run("other group", {"recovery_s": 99.0}) == []  # nothing to compare with


def test_availability_regresses_downwards():
    baseline = Baseline({"exp": {"whole.availability": [0.999, 1.0]}})
    (regression,) = baseline.check_run("exp", {"whole.availability": 0.95})
    assert "whole.availability 95.00%; baseline 99.90% to 100.00%" in regression.line()
    assert "(range widened by 20 %: at least 99.70%)" in regression.line()
    assert baseline.check_run("exp", {"whole.availability": 1.0}) == []


def test_repeated_runs_are_judged_by_the_mann_whitney_test():
    earlier = [3.0, 3.1, 2.9, 3.2, 3.0, 3.1]
    baseline = Baseline({"exp": {"recovery_s": earlier}})
    slower = [{"recovery_s": v} for v in (4.0, 4.2, 3.9, 4.1, 4.3)]
    (regression,) = baseline.check_runs("exp", slower)
    assert regression.method == "mann-whitney" and regression.p_value is not None and regression.p_value < 0.01
    assert "Mann-Whitney U, one-sided" in regression.line()
    assert baseline.check_runs("exp", [{"recovery_s": v} for v in (3.0, 3.1, 2.9, 3.2, 3.0)]) == []
    assert baseline.check_runs("exp", slower[:4]) == []  # too few runs for the test: the range judges each
    assert mann_whitney_greater([5, 6, 7, 8, 9], [1, 2, 3, 4, 5]) < 0.01
    assert mann_whitney_greater([1, 2, 3, 4, 5], [5, 6, 7, 8, 9]) > 0.99


def test_a_regression_fails_a_run_whose_slo_passed_and_shows_in_the_journal(tmp_path: Path):
    result = synthetic_result(objectives=PASSING)
    assert result.outcome == "passed"
    result.regressions = Baseline({result.group: {"recovery_s": [0.5]}}).check_run(result.group, figures(result))
    assert result.outcome == "failed" and "REGRESSION: recovery_s 4.00 s" in result.headline()
    with pytest.raises(Regressed, match=r"regression: recovery_s 4\.00 s"):
        result.check()
    journal, _ = write_reports([result], tmp_path)
    document = json.loads(journal.read_text())
    assert document["schema"] == "chaoskit-journal/1"
    assert document["experiments"][0]["regressions"][0]["figure"] == "recovery_s"
    assert result.properties()["chaoskit_regression_recovery_s"].startswith("regression: recovery_s")


def test_a_baseline_reads_journals_baseline_files_and_directories_of_them(tmp_path: Path):
    runs = [synthetic_result(recovery=r, objectives=PASSING) for r in (3.0, 4.0)]
    failed = synthetic_result(recovery=30.0)  # a run that failed: not part of any baseline
    write_reports([*runs, failed], tmp_path / "night1")
    write_baseline([synthetic_result(recovery=5.0, objectives=PASSING), failed], tmp_path / "night1" / "baseline.json")
    from_journal = Baseline.load(tmp_path / "night1" / "chaoskit-journal.json")
    assert from_journal.of(runs[0].group)["recovery_s"] == [3.0, 4.0]
    both = Baseline.load(tmp_path / "night1")
    assert sorted(both.of(runs[0].group)["recovery_s"]) == [3.0, 4.0, 5.0] and len(both.sources) == 2
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SpecError, match="cannot be read as JSON"):
        Baseline.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"what": 1}')
    with pytest.raises(SpecError, match="neither a chaoskit journal nor a baseline file"):
        Baseline.load(tmp_path / "other.json")
    with pytest.raises(SpecError, match="does not exist"):
        Baseline.load(tmp_path / "missing")


def test_a_repeated_experiment_that_passed_some_runs_is_flaky_with_k_of_n():
    runs = [synthetic_result(recovery=3.0, objectives=PASSING), synthetic_result(recovery=12.0, objectives=PASSING)]
    runs.append(synthetic_result(recovery=3.5, objectives=PASSING))
    for run in runs:
        run.group = "exp"
    (stats,) = repeat_stats(runs)
    assert stats.flaky and (stats.passed, stats.runs) == (2, 3)
    assert stats.line().startswith("FLAKY exp: passed 2 of 3 runs")
    assert stats.failures == ["run 2: recovery time (fault) 12.00 s, target <= 10 s"], stats.failures


def test_only_the_judged_figures_count():
    baseline = Baseline({"exp": {"recovery_s": [0.5], "whole.p99_ms": [1.0]}}, judged=("whole",))
    tonight = {"recovery_s": 9.0, "whole.p99_ms": 90.0}
    assert [r.figure for r in baseline.check_run("exp", tonight)] == ["whole.p99_ms"]
    baseline.judged = ("recovery_s", "p95_ms")
    assert [r.figure for r in baseline.check_run("exp", tonight)] == ["recovery_s"]


def test_the_report_plots_each_figure_over_the_earlier_nights_and_marks_a_regression(tmp_path: Path):
    history = Baseline({"exp": {"recovery_s": [1.0, 1.2, 1.1], "whole.availability": [0.9, 0.91]}}, ["a", "b"])
    result = synthetic_result(recovery=4.0, objectives=PASSING)
    result.group = "exp"
    result.regressions = history.check_run("exp", figures(result))
    assert [r.figure for r in result.regressions] == ["recovery_s"]
    _, report = write_reports([result], tmp_path, history=history)
    dom = rendered(report)
    assert "Figures over the earlier nights (2 file(s))" in dom
    assert dom.count('<svg class="trend"') == 2  # the figures with earlier values only
    assert "recovery_s: 4 REGRESSION" in dom and "whole.availability: 0.9</figcaption>" in dom
    _, plain = write_reports([result], tmp_path / "plain")
    assert "earlier nights" not in plain.read_text()
