"""The fault methods a user calls have real, typed signatures that agree with the specs behind them."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from chaoskit import (
    BandwidthSpec,
    Chaos,
    ContainerKillSpec,
    LatencySpec,
    NodeDrainSpec,
    NodeFailureSpec,
    PacketLossSpec,
    PartitionSpec,
    PodKillSpec,
)

ROOT = Path(__file__).resolve().parents[2]

METHODS = {
    "pod_kill": PodKillSpec,
    "node_failure": NodeFailureSpec,
    "node_drain": NodeDrainSpec,
    "container_kill": ContainerKillSpec,
    "partition": PartitionSpec,
    "packet_loss": PacketLossSpec,
    "bandwidth": BandwidthSpec,
    "latency": LatencySpec,
}


@pytest.mark.parametrize(("method", "spec"), METHODS.items())
def test_each_fault_method_takes_exactly_its_specs_fields_with_the_same_defaults(method, spec):
    parameters = dict(inspect.signature(getattr(Chaos, method)).parameters)
    parameters.pop("self")
    assert parameters.pop("max_share").kind is inspect.Parameter.KEYWORD_ONLY
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()), "no **options"
    fields = {f.name: f for f in dataclasses.fields(spec)}
    assert list(parameters) == list(fields)
    for name, parameter in parameters.items():
        field = fields[name]
        if field.default is dataclasses.MISSING:
            assert parameter.default is inspect.Parameter.empty, name
        else:
            assert parameter.default == field.default, name
    assert "AbstractContextManager[FaultRecord]" in str(inspect.signature(getattr(Chaos, method)).return_annotation)


def test_a_users_test_file_passes_mypy_strict():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            str(ROOT / "tests" / "typing" / "user_experiments.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
