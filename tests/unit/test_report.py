"""The journal and the HTML report, rendered by a real headless browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from results import T0, rendered, synthetic_result

from chaoskit.faults.base import FaultRecord
from chaoskit.report import write_reports
from chaoskit.results import repeat_stats


def test_series_buckets_requests_errors_and_p95_per_second():
    series = synthetic_result().series
    assert series is not None
    assert series.requests == [50] * 20
    assert series.errors[7:11] == [0, 50, 50, 0]
    assert series.p95_ms[8] is None and series.p95_ms[0] == 11


def test_the_journal_holds_the_verdict_and_the_evidence(tmp_path: Path):
    journal, _ = write_reports([synthetic_result()], tmp_path)
    (experiment,) = json.loads(journal.read_text())["experiments"]
    assert experiment["outcome"] == "failed"  # 80 % available during the fault, against 99 %
    measured = {(m["objective"], m["window"]): m for m in experiment["verdict"]["measurements"]}
    assert measured[("availability", "whole")]["value"] == pytest.approx(0.9)
    assert measured[("availability", "fault")]["value"] == pytest.approx(100 / 200)
    assert measured[("recovery time", "fault")]["value"] == 4.0
    assert experiment["faults"][0]["inject_to_effect"] == pytest.approx(0.05)
    assert len(experiment["series"]["requests"]) == 20
    assert [e["kind"] for e in experiment["events"]][:2] == ["ready", "fault"]


def test_headline_says_verdict_and_numbers():
    headline = synthetic_result().headline()
    # Why it failed comes first: the failed objectives, with their targets and what was measured.
    parts = headline.split("; ")
    assert parts[0] == "FAILED pod kill under load"
    assert len([p for p in parts if p.startswith("MISSED ")]) == 2
    assert parts[1].startswith("MISSED ") and parts[2].startswith("MISSED ") and ": target " in parts[1]
    assert parts[3:5] == ["availability 90.00% of 1000 requests", "p95 11 ms"]
    assert "recovered in 4.0 s" in headline and parts[-1] == "2/4 objectives met"


def test_the_html_report_renders_its_plot_in_headless_chromium(tmp_path: Path):
    _, report = write_reports([synthetic_result(), synthetic_result("second", recovery=2.0)], tmp_path)
    dom = rendered(report)
    # The page's own script measured both plots as the browser laid them out.
    match = re.search(r'data-rendered-plots="([\d,]+)"', dom)
    assert match, dom[:2000]
    widths = [int(w) for w in match.group(1).split(",")]
    assert len(widths) == 2 and all(w > 500 for w in widths)
    for key in ("requests", "errors", "p95", "ready"):
        assert re.search(rf"class=\"series {key}\"[^>]*points=\"[\d.]+,", dom), key
    assert dom.count('class="fault-window"') == 2
    assert "chaoskit: 2 experiments: 2 failed; 2 runs: 2 failed" in dom


def test_repeated_experiments_report_the_spread_of_recovery(tmp_path: Path):
    runs = [synthetic_result(f"exp[run{i}of3]", recovery=r) for i, r in enumerate([3.0, 1.0, 2.0], start=1)]
    for run in runs:
        run.group = "exp"
    once = synthetic_result("other")
    (stats,) = repeat_stats([*runs, once])
    assert (stats.runs, stats.recovery_min, stats.recovery_median, stats.recovery_max) == (3, 1.0, 2.0, 3.0)
    assert stats.line().startswith(
        "FAILED exp: passed 0 of 3 runs; recovery min 1.00 s, median 2.00 s, max 3.00 s over 3 runs; run 1: "
    ), stats.line()
    assert not stats.flaky and len(stats.failures) == 3
    journal, report = write_reports([*runs, once], tmp_path)
    assert json.loads(journal.read_text())["repeats"][0]["recovery_median"] == 2.0
    assert "Repeated experiments" in report.read_text()


def test_an_unproven_undo_and_a_raised_cap_show_in_the_headline_journal_and_html(tmp_path):
    result = synthetic_result()
    fault = FaultRecord("network-partition-1a2b", "partition", "chaoskit", {}, targets=["shop-0"])
    fault.injected_at, fault.max_share, fault.max_share_raised = T0 + 8, 1.0, True
    fault.undo_error = "undo of network-partition-1a2b not proven: 'iptables-save -t filter' failed in shop/shop-0"
    result.faults.append(fault)
    assert "UNDO NOT PROVEN: undo of network-partition-1a2b not proven" in result.headline()
    journal, html = write_reports([result], tmp_path)
    (recorded,) = [f for f in json.loads(journal.read_text())["experiments"][0]["faults"] if f["undo_error"]]
    assert recorded["max_share"] == 1.0 and recorded["max_share_raised"] is True
    page = html.read_text()
    assert "NO: undo of network-partition-1a2b not proven" in page
    assert "100% (raised for this fault)" in page


def test_how_each_target_died_is_in_the_journal_and_the_html(tmp_path):
    result = synthetic_result()
    fault = FaultRecord("pod-kill-1a2b", "pod-kill", "chaoskit", {"crash": True}, targets=["shop-0", "shop-1"])
    fault.injected_at = T0 + 8
    fault.deaths = {
        "shop-0": "SIGKILL from its node, no SIGTERM first (redis: 1 process(es)), none left",
        "shop-1": "API delete, grace 2 s (SIGTERM first); redis: exit 137, Error (killed by SIGKILL) <b>",
    }
    result.faults.append(fault)
    journal, html = write_reports([result], tmp_path)
    (recorded,) = [f for f in json.loads(journal.read_text())["experiments"][0]["faults"] if f["deaths"]]
    assert recorded["deaths"] == fault.deaths
    page = html.read_text()
    assert "<th>how its targets died</th>" in page
    assert "shop-0: SIGKILL from its node, no SIGTERM first (redis: 1 process(es)), none left<br>" in page
    assert "(killed by SIGKILL) &lt;b&gt;" in page  # escaped


def test_an_exit_code_says_which_signal_ended_the_container():
    from types import SimpleNamespace as NS

    from chaoskit.faults.base import how_it_ended

    assert how_it_ended("a", NS(exit_code=137, reason="Error")) == "a: exit 137, Error (killed by SIGKILL)"
    assert how_it_ended("a", NS(exit_code=143, reason=None)) == "a: exit 143 (ended by SIGTERM (no handler))"
    assert (
        how_it_ended("a", NS(exit_code=0, reason="Completed")) == "a: exit 0, Completed (exited 0 (a clean shutdown))"
    )
    assert how_it_ended("a", NS(exit_code=134, reason="Error")) == "a: exit 134, Error (ended by signal 6)"
    assert how_it_ended("a", NS(exit_code=2, reason="Error")) == "a: exit 2, Error (exited by its own hand)"
    assert how_it_ended("a", None) == "a: no end posted"


def test_an_expected_failure_says_so_in_the_headline_and_the_html(tmp_path):
    result = synthetic_result()
    result.expected_failure = "the losing configuration, kept on purpose"
    assert "EXPECTED TO FAIL: the losing configuration, kept on purpose" in result.headline()
    _, html = write_reports([result], tmp_path)
    assert (
        "<p class='expected-failure'>Expected to fail: the losing configuration, kept on purpose</p>"
        in html.read_text()
    )


def test_text_from_the_cluster_and_the_user_is_escaped_everywhere_in_the_page(tmp_path):
    """The page is a Jinja2 template with autoescape: a name, an error, a pod's log and an event's message
    that hold markup show as text, and no element or script of theirs reaches the browser."""
    result = synthetic_result()
    result.name = "kill <script>alert(1)</script>"
    result.error = "error <img src=x onerror=alert(2)>"
    result.logs = {"shop/shop-0": "<b>bold</b> & done"}
    _, html = write_reports([result], tmp_path)
    page = html.read_text()
    assert "<script>alert(1)</script>" not in page and "kill &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "error &lt;img src=x onerror=alert(2)&gt;" in page
    assert "<pre class='pod-log'>&lt;b&gt;bold&lt;/b&gt; &amp; done</pre>" in page
    dom = rendered(html)
    assert "<img" not in dom and dom.count("<script>") == 1  # the page's own layout probe alone
