"""Baselines and flakiness, on synthetic results (the cluster test is tests/cluster/test_baseline.py)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from results import rendered, synthetic_result

from chaoskit import summary
from chaoskit.baseline import Baseline, PastRun, mann_whitney_greater, write_baseline
from chaoskit.errors import SpecError
from chaoskit.report import write_reports
from chaoskit.results import Judgement, Regressed, figures, percentile_needs, repeat_stats, unsupported
from chaoskit.slo import Availability, RecoveryTime

PASSING = [Availability(0.9), RecoveryTime(10)]


def by(method: str, judgements: list) -> Judgement:
    """The one judgement of ``method`` among a night's (the night median's and the rank test's)."""
    (found,) = [j for j in judgements if j.method == method]
    return found


def test_a_runs_figures_are_its_recovery_windows_and_inject_to_effect():
    found = figures(synthetic_result(recovery=4.0))
    assert found["recovery_s"] == 4.0
    assert found["whole.availability"] == pytest.approx(0.9)  # 2 s of errors in 20 s
    assert found["fault.availability"] < 0.6 and found["after.availability"] == 1.0
    assert {"whole.p95_ms", "fault.p95_ms", "whole.p99_ms", "whole.longest_error_burst_s"} <= set(found)
    assert "fault.p99_ms" not in found  # 200 requests in the fault window: too few for a p99
    assert found["inject_to_effect_s"] == pytest.approx(0.05)


def test_with_few_earlier_runs_only_a_gross_change_counts():
    baseline = Baseline.of_values({"exp": {"recovery_s": [0.4, 0.5]}})
    (regression,) = baseline.check_run("exp", {"recovery_s": 4.0, "other": 1.0})
    assert regression.method == "few runs" and regression.bound == pytest.approx(3.5)
    assert regression.line().startswith("regression: recovery_s 4.00 s; at most 3.50 s (few runs: 2 runs over 2 nights")
    assert baseline.check_run("exp", {"recovery_s": 3.4}) == []  # within five times the worst, plus twice 0.5 s
    assert baseline.check_run("other group", {"recovery_s": 99.0}) == []  # nothing to compare with
    (unjudged,) = baseline.judge_run("other group", {"recovery_s": 99.0})
    assert unjudged.method == "not judged" and "no earlier run of this experiment" in unjudged.line()


def test_the_noise_band_comes_from_the_baselines_own_spread():
    quiet = [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]
    noisy = [1.0, 2.5, 0.6, 1.8, 3.1, 1.2]
    assert Baseline.of_values({"exp": {"recovery_s": quiet}}).check_run("exp", {"recovery_s": 2.5})
    # The same value is within the band of a figure that moves this much from run to run.
    assert Baseline.of_values({"exp": {"recovery_s": noisy}}).check_run("exp", {"recovery_s": 2.5}) == []
    (judged,) = Baseline.of_values({"exp": {"recovery_s": quiet}}).judge_run("exp", {"recovery_s": 1.2})
    assert judged.method == "noise band" and not judged.regressed
    assert "noise band of 6 runs over 6 nights: median 1.00 s" in judged.rule
    assert "bound = max(worst, median + 4 sigma) + minimum effect 0.50 s" in judged.rule
    # Tail latency: 20 % of the median is the minimum effect once it exceeds the 5 ms resolution.
    latency = Baseline.of_values({"exp": {"whole.p95_ms": [100.0, 104.0, 98.0, 101.0, 99.0]}})
    (ok,) = latency.judge_run("exp", {"whole.p95_ms": 120.0})
    sigma = max(1.4826 * 1.0, statistics.stdev([100.0, 104.0, 98.0, 101.0, 99.0]))  # MAD 1 ms; SD 2.3 ms
    logs = [math.log(v) for v in (100.0, 104.0, 98.0, 101.0, 99.0)]
    log_sigma = max(1.4826 * statistics.median(abs(v - math.log(100.0)) for v in logs), statistics.stdev(logs))
    log_reach = 100.0 * math.exp(4 * log_sigma)
    assert not ok.regressed and ok.bound == pytest.approx(max(104.0, 100.0 + 4 * sigma, log_reach) + 20.0)
    assert latency.check_run("exp", {"whole.p95_ms": 140.0})


def test_a_latencys_band_is_also_taken_on_its_logarithms():
    """Tail latency on two workers sharing 2 cores moves by ratios from run to run. These are 18 honest runs
    of a partition's whole-run p99, measured on Kubernetes 1.37.2 (/tmp/nights/k137p, 2026-12-07): 8 to
    74 ms, median 24 ms; the next honest run's 113 ms passed the band of the values (sigma 16 ms: 98 ms).
    Four sigmas of the logs reach 343 ms; a run past that still is a regression, and a shift of every run
    is the rank test's."""
    values = [7.9, 8.8, 9.6, 11.4, 12.5, 12.6, 13.7, 21.6, 22.7, 25.4, 26.1, 29.4, 32.5, 32.6, 33.0, 33.9, 41.7, 73.9]
    baseline = Baseline.of_values({"exp": {"whole.p99_ms": values}})
    (honest,) = baseline.judge_run("exp", {"whole.p99_ms": 113.0})
    assert not honest.regressed and honest.bound == pytest.approx(353.0, abs=0.1)
    assert "4 sigmas of the logs reach 343 ms; bound = max(worst, median + 4 sigma, that reach)" in honest.rule
    assert baseline.check_run("exp", {"whole.p99_ms": 400.0})
    # Recovery is not a latency: its band stays on the values.
    (recovery,) = Baseline.of_values({"exp": {"recovery_s": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95]}}).judge_run(
        "exp", {"recovery_s": 1.2}
    )
    assert "logs" not in recovery.rule


def test_availability_regresses_downwards():
    baseline = Baseline.of_values({"exp": {"whole.availability": [0.999, 1.0, 0.998, 1.0, 0.999]}})
    (regression,) = baseline.check_run("exp", {"whole.availability": 0.95})
    assert regression.line().startswith("regression: whole.availability 95.00%; at least 98.81%")
    assert "minimum effect 0.50 points" in regression.line()
    assert baseline.check_run("exp", {"whole.availability": 1.0}) == []
    assert baseline.check_run("exp", {"whole.availability": 0.99}) == []  # within the band and half a point


def test_tonights_runs_together_are_judged_by_the_rank_test_and_every_earlier_night():
    nights = [[1.8, 2.1, 1.6], [2.0, 1.7, 2.4], [1.5, 1.9, 2.2]]
    baseline = Baseline(
        [PastRun("exp", f"n{i}", {"recovery_s": v}) for i, night in enumerate(nights) for v in night], ["n0", "n1"]
    )
    doubled = [{"recovery_s": v} for v in (3.8, 4.1, 3.6)]
    regressions = baseline.check_runs("exp", doubled)
    assert {r.method for r in regressions} == {"rank test", "night median"}  # the median 3.80 s is past 2.90 s
    regression = by("rank test", regressions)
    assert regression.method == "rank test" and regression.p_value is not None and regression.p_value < 0.01
    assert (
        "Mann-Whitney U one-sided p = " in regression.line()
        and "worst earlier night's median 2.00 s (regression beyond it by the minimum effect)" in regression.line()
    )
    assert baseline.check_runs("exp", [{"recovery_s": v} for v in (1.9, 2.3, 2.0)]) == []
    assert baseline.check_runs("exp", doubled[:2]) == []  # too few runs tonight for the test
    # Worse than the baseline at p < 0.01 but not beyond the minimum effect (20 % of 100 ms): no regression.
    latency = [[100.0, 102.0, 98.0], [101.0, 99.0, 103.0], [97.0, 100.0, 104.0]]
    quiet = Baseline([PastRun("exp", f"n{i}", {"whole.p95_ms": v}) for i, night in enumerate(latency) for v in night])
    small = by("rank test", quiet.judge_night("exp", [{"whole.p95_ms": v} for v in (110.0, 111.0, 112.0)]))
    assert not small.regressed and small.p_value is not None and small.p_value < 0.01
    assert mann_whitney_greater([5, 6, 7, 8, 9], [1, 2, 3, 4, 5]) < 0.01
    assert mann_whitney_greater([1, 2, 3, 4, 5], [5, 6, 7, 8, 9]) > 0.99


def test_a_night_worse_than_the_pool_but_like_an_earlier_night_is_not_a_regression():
    # One earlier night was as slow as tonight: the machine has such nights, and tonight is one.
    nights = [[1.0, 1.1, 0.9, 1.0]] * 9 + [[2.0, 2.2, 1.9, 2.1]]
    baseline = Baseline([PastRun("exp", f"n{i}", {"recovery_s": v}) for i, night in enumerate(nights) for v in night])
    judged = by("rank test", baseline.judge_night("exp", [{"recovery_s": v} for v in (1.9, 2.0, 2.05)]))
    assert judged.p_value is not None and judged.p_value < 0.01 and not judged.regressed
    assert "worst earlier night's median 2.05 s" in judged.rule


def test_tonight_must_pass_the_worst_earlier_night_by_the_minimum_effect():
    """Eight honest nights of a partition's whole-run p95 on two workers (/tmp/nights/k137p2, 2026-12-07),
    then an honest ninth with 18, 12 and 19 ms: worse than the 24 runs at p = 0.009 and 10 ms over their
    median, and past the worst earlier night's median (12.3 ms), but by less than the minimum effect (10 ms):
    a night is the worst of nine once in nine, so topping the worst alone is no regression."""
    nights = [
        [13.6, 7.3, 10.3], [12.3, 17.1, 5.8], [10.1, 16.1, 10.3], [11.7, 7.1, 6.3],
        [4.5, 5.7, 6.1], [4.7, 6.4, 10.1], [4.6, 7.3, 4.5], [6.2, 14.2, 7.4],
    ]  # fmt: skip
    baseline = Baseline([PastRun("exp", f"n{i}", {"whole.p95_ms": v}) for i, night in enumerate(nights) for v in night])
    judged = by("rank test", baseline.judge_night("exp", [{"whole.p95_ms": v} for v in (18.0, 12.0, 19.0)]))
    assert judged.p_value is not None and judged.p_value < 0.01 and not judged.regressed
    assert judged.bound == pytest.approx(12.3 + 10.0)
    slower = by("rank test", baseline.judge_night("exp", [{"whole.p95_ms": v} for v in (30.0, 24.0, 26.0)]))
    assert slower.regressed


def test_only_runs_of_the_same_shape_are_compared():
    serial = {"workers": 1, "load": "10 users x 10/s for 40 s"}
    values = (15.0, 18.0, 20.0, 16.0, 17.0)
    runs = [PastRun("exp", f"n{i}", {"whole.p99_ms": v}, shape=serial) for i, v in enumerate(values)]
    baseline = Baseline(runs, [r.night for r in runs])
    parallel = {"workers": 2, "load": "10 users x 10/s for 40 s"}
    (judged,) = baseline.judge_run("exp", {"whole.p99_ms": 80.0}, parallel)
    assert judged.method == "not judged" and not judged.regressed
    assert "no run of this shape (2 workers, load 10 users x 10/s for 40 s)" in judged.rule
    assert "it holds 1 worker, load 10 users x 10/s for 40 s" in judged.rule
    assert baseline.check_run("exp", {"whole.p99_ms": 80.0}, serial)  # against its own shape: a regression


def test_a_percentile_over_too_few_requests_is_not_a_figure():
    result = synthetic_result(recovery=4.0)
    found = figures(result)
    few = unsupported(result)
    for window in ("whole", "fault", "after"):
        stats = next(s for s in result.verdict.stats if s.window == window)
        assert (f"{window}.p99_ms" in found) == (stats.requests >= 1000)
        assert (f"{window}.p95_ms" in found) == (stats.requests >= 200)
        if stats.requests < 1000:
            assert few[f"{window}.p99_ms"] == (
                f"{stats.requests} requests in the {window} window; a p99 needs 1000 (10 beyond it)"
            )
    assert percentile_needs("fault.p99_ms") == 1000 and percentile_needs("whole.p95_ms") == 200
    assert percentile_needs("recovery_s") is None


def test_a_regression_fails_a_run_whose_slo_passed_and_shows_in_the_journal(tmp_path: Path):
    result = synthetic_result(objectives=PASSING)
    assert result.outcome == "passed"
    result.regressions = Baseline.of_values({result.group: {"recovery_s": [0.5]}}).check_run(
        result.group, figures(result)
    )
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
    failed = synthetic_result(recovery=30.0)  # a run that failed an objective: kept, with its outcome
    write_reports([*runs, failed], tmp_path / "night1")
    write_baseline([synthetic_result(recovery=5.0, objectives=PASSING), failed], tmp_path / "night1" / "baseline.json")
    from_journal = Baseline.load(tmp_path / "night1" / "chaoskit-journal.json")
    assert from_journal.of(runs[0].group)["recovery_s"] == [3.0, 4.0, 30.0]
    assert [r.outcome for r in from_journal.runs] == ["passed", "passed", "failed"]
    assert {r.night for r in from_journal.runs} == {"night1"}  # a journal's night is its directory
    both = Baseline.load(tmp_path / "night1")
    assert sorted(both.of(runs[0].group)["recovery_s"]) == [3.0, 4.0, 5.0, 30.0, 30.0] and len(both.sources) == 2
    document = json.loads((tmp_path / "night1" / "baseline.json").read_text())
    assert document["schema"] == "chaoskit-baseline/2" and document["night"] == "baseline"
    assert [(r["outcome"], r["regressed"]) for r in document["runs"]] == [("passed", False), ("failed", False)]
    old = {"schema": "chaoskit-baseline/1", "experiments": {"exp": {"recovery_s": [1.0, 2.0]}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Baseline.load(tmp_path / "old.json").of("exp") == {"recovery_s": [1.0, 2.0]}
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
    baseline = Baseline.of_values({"exp": {"recovery_s": [0.5], "whole.p99_ms": [1.0]}})
    baseline.judged = ("whole",)
    tonight = {"recovery_s": 9.0, "whole.p99_ms": 90.0}
    assert [r.figure for r in baseline.check_run("exp", tonight)] == ["whole.p99_ms"]
    baseline.judged = ("recovery_s", "p95_ms")
    assert [r.figure for r in baseline.check_run("exp", tonight)] == ["recovery_s"]


def test_the_report_plots_each_figure_over_the_earlier_nights_and_marks_a_regression(tmp_path: Path):
    nights = {"20261201T0300Z": [1.0, 1.2, 1.1], "20261202T0300Z": [1.1, 0.9, 1.0], "20261203T0300Z": [1.0]}
    history = Baseline(
        [
            PastRun("exp", night, {"recovery_s": v, "whole.availability": 0.9})
            for night, values in nights.items()
            for v in values
        ],
        ["a", "b"],
    )
    result = synthetic_result(recovery=4.0, objectives=PASSING)
    result.group = "exp"
    result.judgements = history.judge_run("exp", figures(result))
    result.regressions = [j for j in result.judgements if j.regressed]
    assert [r.figure for r in result.regressions] == ["recovery_s"]
    _, report = write_reports([result], tmp_path, history=history)
    dom = rendered(report)
    assert "Figures over the earlier nights (3 night(s), 7 comparable runs;" in dom
    assert dom.count('<figure class="trend">') == 2  # the figures with earlier values only
    recovery = dom[dom.index("recovery_s") :]
    assert "12-01" in recovery and "12-02" in recovery and "tonight" in recovery
    assert "4.00 s &gt; bound" in dom  # tonight's value written against the bound it passed
    assert "baseline band 0.90 s to 1.20 s" in dom
    assert "Judged against the baseline" in dom and "<td>recovery_s</td><td>4.00 s</td>" in dom
    assert "not judged" in dom and "a p99 needs 1000" not in dom  # (unsupported ones come from the plugin)
    _, plain = write_reports([result], tmp_path / "plain")
    assert "earlier nights" not in plain.read_text()


def test_regressed_flaky_and_failed_are_distinct_and_the_log_says_what_was_judged():
    history = Baseline.of_values({"exp": {"recovery_s": [3.0, 3.2, 2.9, 3.1, 3.0, 3.3]}})
    runs = [synthetic_result(recovery=r, objectives=PASSING) for r in (3.1, 9.0, 3.2)]
    for run in runs:
        run.group = "exp"
        run.shape = {"workers": 1, "repeat": 3, "load": "5 users x 10/s for 20 s"}
        run.judgements = history.judge_run("exp", figures(run))
        run.regressions = [j for j in run.judgements if j.regressed]
    assert [r.verdict_word for r in runs] == ["PASSED", "REGRESSED", "PASSED"]
    (stats,) = repeat_stats(runs)
    assert not stats.flaky and stats.verdict == "REGRESSED" and stats.regressed == 1
    assert stats.line().startswith("REGRESSED exp: passed 2 of 3 runs, 1 regressed")
    failing = [synthetic_result(recovery=4.0) for _ in range(2)]  # the default objectives fail
    for run in failing:
        run.group = "other"
    assert repeat_stats(failing)[0].verdict == "FAILED"

    assert summary.header([*runs, *failing]) == (
        "2 experiments: 1 regressed, 1 failed; 5 runs: 2 passed, 1 regressed, 2 failed"
    )
    block = summary.block(runs)
    text = "\n".join(block.lines)
    assert block.verdict == "REGRESSED" and block.lines[0].startswith("REGRESSED exp: passed 2 of 3 runs")
    assert "  ran with 1 worker, load 5 users x 10/s for 20 s" in block.lines
    assert "    recovery_s: values 3.10 s, 9.00 s, 3.20 s; at most " in text
    assert ": REGRESSED in run 2" in text and "(noise band of 6 runs over 6 nights: median 3.05 s" in text
    assert "ExperimentResult(" not in text


def test_a_skewed_figure_gets_the_spread_its_bursts_show():
    # A partition's fault window: no failed request in most runs, a burst in some. The MAD of these runs is
    # 0.24 points; their standard deviation, which the bursts set, is what the band uses.
    honest = [1.0, 1.0, 0.9951, 0.987, 1.0, 0.9932, 1.0, 0.9951, 1.0, 0.9903, 1.0, 0.9951]
    baseline = Baseline.of_values({"partition": {"fault.availability": honest}})
    (judged,) = baseline.judge_run("partition", {"fault.availability": 0.9762})  # 12 of 504 failed
    assert not judged.regressed, judged.line()
    assert baseline.check_run("partition", {"fault.availability": 0.95})  # 25 of 504: beyond any burst seen


def test_a_night_regressed_by_the_rank_test_is_red_in_every_runs_plot_with_its_median_against_the_bound(
    tmp_path: Path,
):
    # Five nights as noisy as the pod kill's here (1.1 to 4.1 s): no run alone is beyond the band, the three
    # together are (the doctored night of benchmarks/nightly_bench.py, its recoveries).
    spread = [[1.2, 1.8, 2.6], [1.5, 1.9, 4.1], [1.1, 1.7, 2.3], [1.4, 2.0, 2.5], [1.6, 1.8, 3.2]]
    nights = {f"2026120{i}T0300Z": values for i, values in enumerate(spread, 1)}
    history = Baseline([PastRun("exp", n, {"recovery_s": v}) for n, values in nights.items() for v in values])
    runs = [synthetic_result(recovery=r, objectives=PASSING) for r in (4.08, 3.71, 4.24)]
    for run in runs:
        run.group = "exp"
        run.judgements = history.judge_run("exp", figures(run))
    runs[-1].judgements += history.judge_night("exp", [figures(r) for r in runs])
    for run in runs:
        run.regressions = [j for j in run.judgements if j.regressed]
    assert [j.method for j in runs[-1].regressions] == ["rank test"]
    _, report = write_reports(runs, tmp_path, history=history)
    dom = rendered(report)
    assert dom.count("median 4.08 s &gt; bound") == 3  # every run's plot of the regressed night


def test_availability_needs_three_failed_requests_of_its_window_beyond_the_baseline():
    clean = Baseline.of_values({"kill": {"fault.availability": [1.0] * 15}})
    # A pod kill fails a request in flight now and then: 1 of 120 is 0.83 points, within 3 requests of 120.
    (one,) = clean.judge_run("kill", {"fault.availability": 119 / 120}, requests={"fault": 120})
    assert not one.regressed and "minimum effect 2.50 points" in one.rule
    assert clean.check_run("kill", {"fault.availability": 116 / 120}, requests={"fault": 120})  # 4 of 120
    # Without the window's count, half a point: the figure alone cannot say how many requests it is.
    assert clean.check_run("kill", {"fault.availability": 119 / 120})


def test_a_journal_read_as_a_baseline_is_compared_on_workers_and_load_not_on_its_repeat_count():
    """A journal's runs record their repeat count beside workers and load; judging against one compared the
    whole shape, so every per-run judgement was 'no run of this shape' (found replaying nightly journals)."""
    from chaoskit.baseline import PastRun

    baseline = Baseline()
    shape = {"workers": 1, "repeat": 3, "load": "10 users x 10/s for 40 s"}
    for night, value in enumerate((1.8, 1.9, 2.0, 1.7, 1.85, 1.95)):
        baseline.runs.append(PastRun("exp", f"n{night}", {"recovery_s": value}, "passed", False, shape))
    judged = baseline.judge_run("exp", {"recovery_s": 9.0}, {"workers": 1, "load": "10 users x 10/s for 40 s"})
    (recovery,) = judged
    assert recovery.method == "noise band" and recovery.regressed, recovery
    other = baseline.judge_run("exp", {"recovery_s": 9.0}, {"workers": 2, "load": "10 users x 10/s for 40 s"})
    assert [j.method for j in other] == ["not judged"]


def test_runs_are_compared_within_one_kubernetes_minor_and_an_older_run_only_with_its_like():
    """1.32 lengthened the node-monitor grace period from 40 s to 50 s: a node failure's recovery on 1.37 is
    another figure than on 1.20, so a cluster upgrade starts a new baseline instead of failing a night."""
    load = "10 users x 10/s for 40 s"
    baseline = Baseline()
    for night, value in enumerate((41.0, 42.0, 40.5, 41.5, 42.5)):
        shape = {"workers": 1, "load": load, "kubernetes": "v1.20.2"}
        baseline.runs.append(PastRun("exp", f"n{night}", {"recovery_s": value}, "passed", False, shape))
    on_137 = {"workers": 1, "load": load, "kubernetes": "v1.37.2"}
    (judged,) = baseline.judge_run("exp", {"recovery_s": 52.0}, on_137)
    assert judged.method == "not judged" and not judged.regressed
    assert "(1 worker, load 10 users x 10/s for 40 s, Kubernetes v1.37.2)" in judged.rule
    assert "Kubernetes v1.20.2" in judged.rule
    # a patch release compares; a run recorded before versions were (no key) compares only with its like:
    # nights of an unknown version are not the baseline of a 1.37 run
    (patch,) = baseline.judge_run("exp", {"recovery_s": 60.0}, {**on_137, "kubernetes": "v1.20.9"})
    assert patch.method != "not judged" and patch.regressed
    unversioned = {"workers": 1, "load": load}
    old = Baseline([PastRun("exp", "n0", {"recovery_s": v}, shape=unversioned) for v in (41, 42, 43)])
    (against_old,) = old.judge_run("exp", {"recovery_s": 41.5}, on_137)
    assert against_old.method == "not judged" and "no run of this shape" in against_old.rule
    (like,) = old.judge_run("exp", {"recovery_s": 41.5}, unversioned)
    assert like.method != "not judged"
    # and a run without a load compares only with runs without one, as before versions were recorded
    (no_load,) = old.judge_run("exp", {"recovery_s": 41.5}, {"workers": 1})
    assert no_load.method == "not judged"


def test_the_journal_and_report_name_the_kubernetes_version_and_the_log_block_too(tmp_path: Path):
    result = synthetic_result("exp")
    result.kubernetes = "v1.37.2"
    journal, report = write_reports([result], tmp_path)
    document = json.loads(journal.read_text())
    assert document["kubernetes"] == ["v1.37.2"]
    assert document["experiments"][0]["kubernetes"] == "v1.37.2"
    assert "<p class='cluster'>Kubernetes v1.37.2</p>" in report.read_text()
    assert "  on Kubernetes v1.37.2" in summary.block([result]).lines


def test_availability_allows_the_counting_noise_of_the_worst_runs_failed_requests():
    """The one false regression of ten honest serial nights, replayed: a partition's fault window failed 12 of
    504 requests (97.62 %) against 18 runs whose worst failed 1.30 %; the runs' spread alone set the bound at
    97.71 %. Their worst run's failed requests at 504 are a count of about 6.6, whose own noise is sqrt(6.6)."""
    honest = [0.9951] * 10 + [1.0] * 4 + [0.9932] * 2 + [0.9903, 0.987]  # median 99.51 %, worst 98.70 %
    baseline = Baseline.of_values({"partition": {"fault.availability": honest}})
    (judged,) = baseline.judge_run("partition", {"fault.availability": 492 / 504}, requests={"fault": 504})
    assert not judged.regressed and "sigma 0.51 points" in judged.rule, judged.line()
    # Without the window's count there is no counting noise: the runs' spread (0.34 points) alone cries wolf.
    (blind,) = baseline.judge_run("partition", {"fault.availability": 492 / 504})
    assert blind.regressed and "sigma 0.34 points" in blind.rule, blind.line()
    noise = baseline.noise("fault.availability", baseline.comparable("partition", None), {"fault": 504})
    assert noise is not None and noise.counting_sigma == pytest.approx((0.013 * 504) ** 0.5 / 504)
    # A change beyond bursts: 25 of 504, twice the honest burst, still regresses, and so does a collapse.
    assert baseline.check_run("partition", {"fault.availability": 479 / 504}, requests={"fault": 504})
    assert baseline.check_run("partition", {"fault.availability": 0.8}, requests={"fault": 504})
    # A clean baseline has no counting noise: its resolution (3 requests) decides alone.
    clean = Baseline.of_values({"kill": {"fault.availability": [1.0] * 15}})
    assert clean.noise("fault.availability", clean.comparable("kill", None), {"fault": 120}).counting_sigma == 0


def test_the_noise_band_needs_runs_from_three_nights():
    """Six runs of two nights say how a night's runs spread, not how far one night is from the next."""
    two_nights = [PastRun("exp", f"n{i // 3}", {"after.p95_ms": v}) for i, v in enumerate((9, 11, 10, 12, 10, 11))]
    (judged,) = Baseline(two_nights).judge_run("exp", {"after.p95_ms": 31.0})
    assert judged.method == "few runs" and not judged.regressed
    assert "6 runs over 2 nights are too few for a noise model (5 runs over 3 nights needed)" in judged.rule
    three = [*two_nights, PastRun("exp", "n2", {"after.p95_ms": 10.0})]
    assert Baseline(three).judge_run("exp", {"after.p95_ms": 31.0})[0].method == "noise band"


def test_one_run_of_a_repeated_experiment_past_its_bound_is_an_outlier_and_the_nights_median_is_judged():
    nights = [[10.0, 12.0, 11.0], [9.0, 13.0, 10.0], [11.0, 10.0, 12.0], [10.0, 11.0, 9.0]]
    baseline = Baseline([PastRun("exp", f"n{i}", {"after.p95_ms": v}) for i, night in enumerate(nights) for v in night])
    alone = baseline.judge_run("exp", {"after.p95_ms": 60.0})
    assert alone[0].regressed  # an experiment run once a night: the run is the night
    (outlier,) = baseline.judge_run("exp", {"after.p95_ms": 60.0}, repeated=3)
    assert outlier.outlier and not outlier.regressed and outlier.method == "noise band"
    assert outlier.line().startswith("outlier: after.p95_ms 60 ms; at most 25 ms")
    assert "one run of 3: an outlier, the night is judged by its median" in outlier.line()
    # Tonight's other runs were like every earlier night's: the night did not regress.
    honest = baseline.judge_night("exp", [{"after.p95_ms": v} for v in (11.0, 60.0, 10.0)])
    assert not any(j.regressed for j in honest)
    median = by("night median", honest)
    assert median.tonight == (11.0, 60.0, 10.0) and median.bound == pytest.approx(outlier.bound)
    assert median.line().startswith(
        "ok: after.p95_ms 11 ms, 60 ms, 10 ms (median 11 ms) over 3 runs; median 11 ms of tonight's 3 runs against"
    )
    # Every run slower: the median passes the band, and the experiment regresses.
    slower = baseline.check_runs("exp", [{"after.p95_ms": v} for v in (40.0, 60.0, 45.0)])
    assert {j.method for j in slower} == {"night median", "rank test"}
    # With fewer than five earlier runs, the median is held to the few-runs rule alone.
    (few,) = Baseline([PastRun("exp", "n0", {"recovery_s": 2.0})]).judge_night(
        "exp", [{"recovery_s": v} for v in (2.1, 40.0, 2.2)]
    )
    assert few.method == "night median" and not few.regressed and "few runs" in few.rule


def test_the_log_names_an_outlier_run_and_the_nights_median():
    baseline = Baseline.of_values({"exp": {"recovery_s": [3.0, 3.2, 2.9, 3.1, 3.0, 3.3]}})
    runs = [synthetic_result(recovery=r, objectives=PASSING) for r in (3.1, 9.0, 3.2)]
    for run in runs:
        run.group = "exp"
        run.judgements = [j for j in baseline.judge_run("exp", figures(run), repeated=3) if j.figure == "recovery_s"]
    runs[-1].judgements += [
        j for j in baseline.judge_night("exp", [figures(r) for r in runs]) if j.figure == "recovery_s"
    ]
    assert not any(j.regressed for run in runs for j in run.judgements)
    text = "\n".join(summary.block(runs).lines)
    assert "recovery_s: values 3.10 s, 9.00 s, 3.20 s; at most 4.25 s: ok; outlier in run 2" in text
    assert (
        "ok together, recovery_s: at most 4.25 s by the median 3.20 s of tonight's 3 runs against the noise band"
        in text
    )
