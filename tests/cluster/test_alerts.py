"""Alerts verified: an experiment file's ``alert:`` objectives judged from the alert state of the Prometheus the run
deploys with the file's rules (``prometheus: {rules: FILE}``), on the real cluster.

A pod kill of the web tier makes ``WebReplicaDown`` fire (fewer than 3 of its pods scraped up) and resolve once
the replacement is scraped; a rule that cannot fire fails its objective, with the alert's state over time in the
verdict. Both in one run: the run fails on the second alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from workloads import Web

RULES = """\
groups:
  - name: web
    rules:
      - alert: WebReplicaDown
        expr: count(up{{job="pods", namespace="{namespace}", app="web"}} == 1) < 3
        for: 1s
      - alert: WebNeverDown
        expr: count(up{{job="pods", namespace="{namespace}", app="web"}} == 1) > 100
"""

FILE = """\
name: web pod kill alerts
namespace: {namespace}
prometheus: {{rules: web.rules.yaml}}
load: {{host: 'http://127.0.0.1:{port}', paths: [/], users: 2, rate_per_user: 5, run_seconds: 45, warmup_seconds: 1}}
faults:
  - {{kind: pod-kill, at: 3s, selector: app=web, count: 1}}
objectives:
  - alert: {{name: WebReplicaDown, fires_within: 30, resolves_within: 30}}
  - alert: {{name: WebNeverDown, fires_within: 30}}
"""


def test_a_pod_kill_fires_its_alert_and_it_resolves_and_a_rule_that_cannot_fire_fails_with_its_story(
    web: Web, tmp_path: Path
) -> None:
    (tmp_path / "web.rules.yaml").write_text(RULES.format(namespace=web.namespace))
    path = tmp_path / "alerts.chaos.yaml"
    path.write_text(FILE.format(namespace=web.namespace, port=web.node_port))
    result = subprocess.run(
        [sys.executable, "-m", "chaoskit.cli", "run", str(path), "--no-live", "--report-dir", str(tmp_path),
         "--allow-namespace", web.namespace],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out  # failed: the rule that cannot fire
    journal = json.loads((tmp_path / "chaoskit-journal.json").read_text())
    (experiment,) = journal["experiments"]
    measured = {m["objective"]: m for m in experiment["verdict"]["measurements"]}
    fired = measured["alert WebReplicaDown fires"]
    resolved = measured["alert WebReplicaDown resolves"]
    never = measured["alert WebNeverDown fires"]
    assert fired["passed"] and fired["value"] <= 30, fired
    assert "firing at +" in fired["measured"] and "inactive from +" in fired["measured"], fired
    assert resolved["passed"] and resolved["value"] <= 30, resolved
    assert not never["passed"], never
    assert never["measured"].startswith("never fired: inactive throughout"), never
    assert "alert WebNeverDown fires" in out and "never fired" in out, out
