"""``pytest -n N`` (pytest-xdist): the workers run the experiments, the controller reports them all.

Each worker sends every experiment result with its test's teardown report; the controller keeps them, judges
a repeated experiment's runs together once the last one is in (they may have run on different workers), and
writes the one journal, HTML report, terminal summary and baseline file of the session. Without ``-n`` the
one process does both.

What the workers share is kept apart elsewhere: each test has its own namespace (the ``namespace`` fixture),
its own Prometheus namespace per worker, its own NodePort (:func:`chaoskit.locks.reserve_port`), and no two
workers' faults act on the same node at once (:mod:`chaoskit.locks`). A cluster a worker brought up is
deleted by the controller once every worker is done.
"""

from __future__ import annotations

import base64
import pickle
from typing import Any

import pytest

from chaoskit.report import ExperimentResult

_PENDING = pytest.StashKey[list[ExperimentResult]]()
CREATED = "chaoskit_created_cluster"
"""The key of a worker's output saying it brought the session's cluster up."""


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str | None:
    """``gw0``, ``gw1``... in a worker; None in the controller or without xdist."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return None if workerinput is None else str(workerinput.get("workerid", "gw"))


def ship(item: pytest.Item, result: ExperimentResult) -> None:
    """In a worker: send ``result`` to the controller with ``item``'s teardown report."""
    item.stash.setdefault(_PENDING, []).append(result)


def attach(item: pytest.Item, report: pytest.TestReport) -> None:
    """Put the results shipped during ``item`` on its report, which xdist carries to the controller."""
    pending = item.stash.get(_PENDING, [])
    if pending:
        report.chaoskit_results = [encode(r) for r in pending]  # type: ignore[attr-defined]
        pending.clear()


def received(report: pytest.TestReport) -> list[ExperimentResult]:
    """In the controller: the results a worker's report carries (none for most reports)."""
    return [decode(text) for text in getattr(report, "chaoskit_results", None) or ()]


def encode(result: ExperimentResult) -> str:
    """A result as text that survives xdist's report serialisation. Pickle, because the worker is this
    session's own child running the same chaoskit: the controller gets every field back as it was."""
    return base64.b64encode(pickle.dumps(result)).decode("ascii")


def decode(text: str) -> ExperimentResult:
    result = pickle.loads(base64.b64decode(text))
    if not isinstance(result, ExperimentResult):
        raise TypeError(f"a worker sent {type(result).__name__}, not an ExperimentResult")
    return result


def created_cluster(config: pytest.Config) -> None:
    """In a worker: say that it brought the cluster up, for the controller to delete at the end."""
    config.workeroutput[CREATED] = True  # type: ignore[attr-defined]
