"""An experiment checks what it can before any load or fault starts."""

from __future__ import annotations

import socket

import pytest

from chaoskit.errors import SpecError
from chaoskit.experiment import Experiment, ExperimentSpec
from chaoskit.load import LoadSpec
from chaoskit.prometheus import PrometheusClient, PrometheusUnreachable
from chaoskit.slo import Availability, PromQL


class NoChaos:
    """Stands in for the chaos handle: an experiment that refuses to start must never touch it."""

    def __init__(self) -> None:
        self.records: list[object] = []

    def recovery_watch(self, *args: object) -> object:
        raise AssertionError("the experiment started a watch before its checks passed")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOAD = LoadSpec(host="http://127.0.0.1:1", run_seconds=5)


def test_an_unreachable_prometheus_fails_before_the_load_starts():
    spec = ExperimentSpec("promql", LOAD, (PromQL("up", at_least=1),))
    with PrometheusClient.on_port(closed_port()) as prometheus:
        run = Experiment(spec, NoChaos(), prometheus=prometheus)  # type: ignore[arg-type]
        with pytest.raises(PrometheusUnreachable, match=r"http://127\.0\.0\.1:\d+"), run:
            pytest.fail("the block must not run")
    assert run.result is None and run.records == []


def test_promql_objectives_need_a_prometheus():
    run = Experiment(ExperimentSpec("promql", LOAD, (PromQL("up", at_least=1),)), NoChaos())  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="has PromQL objectives but no Prometheus to ask"), run:
        pytest.fail("the block must not run")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " "}, "an experiment needs a name"),
        ({"settle_seconds": -1}, "settle_seconds must be 0 or more"),
    ],
)
def test_bad_experiment_specs(kwargs, message):
    with pytest.raises(SpecError, match=message):
        ExperimentSpec(**{"name": "x", "load": LOAD, "objectives": (Availability(0.9),), **kwargs})
