"""Alert objectives judged from Prometheus's own alert state, and the rules chaoskit's Prometheus evaluates."""

from __future__ import annotations

import re

import pytest
import yaml

from chaoskit.errors import SpecError, UsageError
from chaoskit.prometheus import PrometheusClient, TimeSeries, prometheus_config, prometheus_objects
from chaoskit.prometheus.client import Sample
from chaoskit.prometheus.deploy import NO_RULES, RULES_FILE, check_rules
from chaoskit.slo import AlertFires, AlertResolves, Windows, alert_story, evaluate

# The run: measured from t=100 to t=160; the fault injected at 110, the system whole again at 125.
WINDOWS = Windows(100.0, 160.0, 110.0, 125.0)


def states(pending: range, firing: range) -> list[tuple[float, str]]:
    return sorted([(float(t), "pending") for t in pending] + [(float(t), "firing") for t in firing])


def judge(objective, alert_states):
    verdict = evaluate([objective], [], WINDOWS, alerts=lambda name, start, end: alert_states)
    (measurement,) = verdict.measurements
    return measurement


def test_an_alert_that_fires_in_time_and_resolves_after_the_recovery_passes_both():
    seen = states(range(112, 117), range(117, 130))  # pending 112-116, firing 117-129, inactive from 130
    fires = judge(AlertFires("WebReplicaDown", 30), seen)
    assert fires.passed and fires.value == pytest.approx(7.0)
    assert fires.measured == "7.0 s: pending at +2.0 s, firing at +7.0 s, inactive from +20.0 s"
    resolves = judge(AlertResolves("WebReplicaDown", 10), seen)
    assert resolves.passed and resolves.value == pytest.approx(5.0)  # inactive at 130, whole again at 125


def test_an_alert_that_never_fires_fails_with_its_state_over_time():
    fires = judge(AlertFires("NeverFires", 30), [])
    assert not fires.passed
    assert fires.measured == "never fired: inactive throughout (no pending or firing sample up to +50.0 s)"
    pending_only = judge(AlertFires("TooSlow", 30), states(range(112, 160), range(0)))
    assert not pending_only.passed and pending_only.measured.startswith("never fired: pending at +2.0 s")
    late = judge(AlertFires("Late", 5), states(range(112, 120), range(120, 140)))
    assert not late.passed and late.value == pytest.approx(10.0)


def test_an_alert_firing_before_the_fault_proves_nothing_and_one_still_firing_has_not_resolved():
    before = judge(AlertFires("AlwaysOn", 30), states(range(0), range(100, 161)))
    assert not before.passed and before.measured.startswith("already firing before the fault: firing at -10.0 s")
    still = judge(AlertResolves("Stuck", 30), states(range(0), range(115, 161)))
    assert not still.passed and still.measured.startswith("still firing at the run's end: firing at +5.0 s")
    never = judge(AlertResolves("Quiet", 30), [])
    assert not never.passed and never.measured.startswith("never fired, so never resolved")


def test_without_a_fault_or_an_alert_reader_there_is_no_verdict():
    no_fault = evaluate([AlertFires("X", 30)], [], Windows(100.0, 160.0), alerts=lambda *a: [])
    assert no_fault.measurements[0].measured == "none: the run had no fault"
    no_reader = evaluate([AlertFires("X", 30)], [], WINDOWS)
    assert no_reader.measurements[0].measured == "none: no Prometheus that reads alert states was given"


def test_the_story_marks_each_gap_as_inactive():
    seen = states(range(0), [*range(112, 115), *range(120, 123)])
    assert alert_story(seen, 110.0, 160.0) == (
        "firing at +2.0 s, inactive from +5.0 s, firing at +10.0 s, inactive from +13.0 s"
    )


@pytest.mark.parametrize("name", ["web-down", "", "1abc"])
def test_an_alert_name_prometheus_cannot_have_is_refused(name):
    with pytest.raises(SpecError, match="is not a Prometheus alert name"):
        AlertFires(name, 30)
    with pytest.raises(SpecError, match="resolves_within must be positive"):
        AlertResolves("Fine", 0)


def test_alert_states_merge_pending_and_firing_series_with_firing_winning(monkeypatch):
    client = PrometheusClient("http://127.0.0.1:9090")
    asked = []

    def query_range(promql, start, end, step=None):
        asked.append(promql)
        return [
            TimeSeries({"alertname": "X", "alertstate": "pending"}, (Sample(1.0, 1), Sample(2.0, 1))),
            TimeSeries({"alertname": "X", "alertstate": "firing"}, (Sample(2.0, 1), Sample(3.0, 1))),
        ]

    monkeypatch.setattr(client, "query_range", query_range)
    assert client.alert_states("X", 0.0, 10.0) == [(1.0, "pending"), (2.0, "firing"), (3.0, "firing")]
    assert asked == ['ALERTS{alertname="X"}']
    client.close()


RULES = "groups:\n  - name: web\n    rules:\n      - alert: WebReplicaDown\n        expr: up == 0\n        for: 2s\n"


def test_rules_are_checked_for_their_shape_before_prometheus_gets_them():
    assert check_rules(RULES) == RULES and check_rules(NO_RULES) == NO_RULES
    for bad, said in (
        ("groups: {}", "need groups: a list"),
        ("groups:\n  - rules: []\n", "groups[0] needs a name"),
        (
            "groups:\n  - name: web\n    rules:\n      - alert: X\n",
            "groups[0].rules[0] needs alert (or record) and expr",
        ),
        ("groups: [", "are not YAML"),
    ):
        with pytest.raises(UsageError, match=re.escape(said)):
            check_rules(bad)


def test_the_deployed_prometheus_evaluates_its_rules_file_every_scrape_interval():
    config = prometheus_config(scrape_interval=1.0)
    assert config["global"]["evaluation_interval"] == "1000ms"
    assert config["rule_files"] == [f"/etc/prometheus/{RULES_FILE}"]
    objects = prometheus_objects("ns", "img", 30089, rules=RULES)
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert yaml.safe_load(config_map["data"][RULES_FILE])["groups"][0]["rules"][0]["alert"] == "WebReplicaDown"
    digest = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["annotations"]
    other = next(o for o in prometheus_objects("ns", "img", 30089) if o["kind"] == "Deployment")
    assert digest != other["spec"]["template"]["metadata"]["annotations"]  # new rules roll Prometheus
