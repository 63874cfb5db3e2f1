"""Experiment files (``*.chaos.yaml``) as test items: the same runner as ``chaoskit run``, in the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoskit.errors import ChaoskitError
from chaoskit.plugin.options import _SAFETY, prometheus_service, setting
from chaoskit.plugin.results import reporter
from chaoskit.plugin.runs import PytestChaos, check_faults_undone, plugin_hooks, session_cluster
from chaoskit.prometheus.service import reach_prometheus

# --- experiment files (*.chaos.yaml) as test items ------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(".chaos.yaml"):
        return ChaosFile.from_parent(parent, path=file_path)
    return None


class ChaosFile(pytest.File):
    """An experiment file: one test item, or one per run under ``--chaos-repeat N`` (``name[run2of3]``, the
    ids a Python experiment gets), checked when collected (a bad file is a collection error)."""

    def collect(self) -> Iterator[pytest.Item]:
        from chaoskit.gameday.spec import load_experiment

        try:
            experiment = load_experiment(self.path)
            experiment.check_safety(self.config.stash[_SAFETY])  # refused at collection, before any deploy
        except ChaoskitError as exc:
            raise self.CollectError(str(exc)) from None
        repeat: int = setting(self.config, "repeat")
        if repeat == 1:
            yield ChaosItem.from_parent(self, name=experiment.name, experiment=experiment)
            return
        for i in range(repeat):  # the runs share the experiment's name, so its results group as one
            yield ChaosItem.from_parent(self, name=f"{experiment.name}[run{i + 1}of{repeat}]", experiment=experiment)


class ExperimentFailed(AssertionError):
    """An experiment file's run did not pass: the verdict says why."""


class ChaosItem(pytest.Item):
    """One experiment file run as a test: the same runner as ``chaoskit run``, the session's cluster,
    safety rules, hooks and reports."""

    def __init__(self, *, experiment: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experiment = experiment
        self.add_marker(pytest.mark.cluster)

    def runtest(self) -> None:
        from chaoskit.gameday.runner import GameDay
        from chaoskit.gameday.view import LineView

        config = self.config
        cluster = session_cluster(config)
        url, service = setting(config, "prometheus-url"), prometheus_service(config)
        if not (url or service):  # the session's wins over the file's
            url, service = self.experiment.prometheus_url, self.experiment.prometheus_service
        with cluster.kube() as kube, reach_prometheus(kube, url, service) as prometheus:  # None: the run deploys one
            chaos = PytestChaos(cluster, kube, config.stash[_SAFETY], plugin_hooks(config))
            game = GameDay(
                self.experiment, cluster, kube, chaos, prometheus=prometheus, on_result=[reporter(config, self, kube)]
            )
            try:
                result = game.run(LineView())
            finally:
                check_faults_undone(cluster, kube, chaos)
        if result.outcome == "skipped":
            pytest.skip(result.skipped or "skipped")
        if result.outcome != "passed":
            raise ExperimentFailed(
                f"{result.headline()}\n{result.verdict.explain()}" + (f"\n{result.error}" if result.error else "")
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ExperimentFailed | ChaoskitError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"experiment file {self.path.name}: {self.name}"
