"""``pytest -n N`` (pytest-xdist): the workers run the experiments, the controller reports them all.

Each worker sends every experiment result with its test's teardown report; the controller keeps them, judges
a repeated experiment's runs together once the last one is in (they may have run on different workers), and
writes the one journal, HTML report, terminal summary and baseline file of the session. Without ``-n`` the
one process does both.

What the workers share is kept apart elsewhere: each test has its own namespace (the ``namespace`` fixture),
its own Prometheus namespace per worker, its own NodePort (:func:`chaoskit.state.locks.reserve_port`), and no two
workers' faults act on the same node at once (:mod:`chaoskit.state.locks`). A cluster a worker brought up is
deleted by the controller once every worker is done.
"""

from __future__ import annotations

import ast
import base64
import functools
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from chaoskit.faults.catalog import CATALOG
from chaoskit.results import ExperimentResult

_PENDING = pytest.StashKey[list[ExperimentResult]]()
CREATED = "chaoskit_created_cluster"
"""The key of a worker's output naming the cluster it brought up."""


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str | None:
    """``gw0``, ``gw1``... in a worker; None in the controller or without xdist."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return None if workerinput is None else str(workerinput.get("workerid", "gw"))


def workers(config: pytest.Config) -> int:
    """How many experiments run at once: the ``pytest -n`` workers (in a worker, their count; 1 without)."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        return int(workerinput.get("workercount", 1))
    try:
        count = config.getoption("numprocesses")
    except ValueError:  # no pytest-xdist
        return 1
    return int(count) if isinstance(count, int) and count > 0 else 1


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


def created_cluster(config: pytest.Config, name: str) -> None:
    """In a worker: say that it brought cluster ``name`` up, for the controller to delete at the end (each worker
    may have its own: see tests/cluster/conftest.py)."""
    config.workeroutput[CREATED] = name  # type: ignore[attr-defined]


NODE_WIDE_GROUP = "chaoskit-node-wide"
"""The xdist group of the tests that hold node-wide faults: they run one after another on one worker."""
NODE_WIDE_METHODS = tuple(kind.method for kind in CATALOG if kind.fault.node_wide)
"""The :class:`~chaoskit.chaos.Chaos` methods of the node-wide faults (``Fault.node_wide``)."""
_CALLS = re.compile(r"\.(?:" + "|".join(NODE_WIDE_METHODS) + r")\(")


def scheduler(config: pytest.Config, log: Any) -> Any:
    """The controller's scheduler for ``pytest -n`` (``--dist load``, the default): xdist's load scheduling
    with every test that holds node-wide faults in one scope, which one worker runs in turn.

    The controller collects no tests, so it reads them from their files (:func:`node_wide_test`): xdist's
    own ``xdist_group`` marks do not reach the controller under pytest 9."""
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    root = Path(str(config.rootpath))

    class NodeWideScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return NODE_WIDE_GROUP if node_wide_test(root, nodeid) else nodeid

    return NodeWideScheduling(config, log)


@functools.cache
def _functions(path: Path) -> dict[str, str]:
    """Each test function of a Python file (``name`` and ``Class::name``) -> its source, decorators included."""
    try:
        text = path.read_text()
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError):
        return {}
    found: dict[str, str] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}::")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = text.splitlines()[first - 1 : node.end_lineno]
                found[prefix + node.name] = "\n".join(lines)

    visit(tree.body, "")
    return found


@functools.cache
def _file_holds_node_wide(path: Path) -> bool:
    from chaoskit.errors import ChaoskitError
    from chaoskit.gameday.spec import load_experiment

    try:
        return any(f.method in NODE_WIDE_METHODS for f in load_experiment(path).faults)
    except (ChaoskitError, OSError):
        return False


def node_wide_test(root: Path, nodeid: str) -> bool:
    """Whether the test ``nodeid`` (under ``root``) injects a node-wide fault: an experiment file with one,
    or a test function marked ``chaos_node_wide`` or whose code calls one of :data:`NODE_WIDE_METHODS`."""
    file, _, rest = nodeid.partition("::")
    path = root / file
    if path.name.endswith(".chaos.yaml"):
        return _file_holds_node_wide(path)
    source = _functions(path).get(rest.split("[", 1)[0])
    return source is not None and ("chaos_node_wide" in source or bool(_CALLS.search(source)))
