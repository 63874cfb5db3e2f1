"""The results a ``pytest -n`` worker sends the controller (no cluster): every field comes back as it was."""

import pickle

import pytest
from results import synthetic_result

from chaoskit import parallel
from chaoskit.evidence import ClusterEvent


def test_a_shipped_result_comes_back_whole():
    result = synthetic_result("shipped", recovery=3.5)
    result.runner = "gw1 (pid 42)"
    result.cluster_events = [ClusterEvent(1.0, "Pod", "web-1", "ns", "Killing", "Stopping container web")]
    result.logs = {"ns/web-1": "last line"}
    back = parallel.decode(parallel.encode(result))
    assert back.to_dict() == result.to_dict()
    assert back.headline() == result.headline() and back.outcome == result.outcome


def test_anything_but_a_result_is_refused():
    import base64

    with pytest.raises(TypeError, match="not an ExperimentResult"):
        parallel.decode(base64.b64encode(pickle.dumps({"name": "x"})).decode())


TESTS = """
import pytest


def test_drains(chaos, node):
    with chaos.node_drain(node, timeout=120):
        pass


def test_kills(chaos, ns):
    with chaos.pod_kill(ns, "app=web"):
        pass


@pytest.mark.chaos_node_wide
def test_marked(helper):
    helper()


class TestGroup:
    def test_stress(self, chaos):
        chaos.stress("ns", "app=web", cpu_workers=1)
"""


def test_tests_with_node_wide_faults_are_found_in_their_files(tmp_path):
    (tmp_path / "test_x.py").write_text(TESTS)
    found = {
        name: parallel.node_wide_test(tmp_path, f"test_x.py::{name}")
        for name in ("test_drains", "test_kills", "test_marked", "TestGroup::test_stress", "test_kills[run1of3]")
    }
    assert found == {
        "test_drains": True,
        "test_kills": False,
        "test_marked": True,
        "TestGroup::test_stress": True,
        "test_kills[run1of3]": False,
    }
    assert not parallel.node_wide_test(tmp_path, "missing.py::test_a")


def test_the_node_wide_methods_are_the_node_wide_fault_kinds():
    import inspect as inspect_

    from chaoskit import chaos as chaos_module
    from chaoskit.faults.catalog import CATALOG

    node_wide = {k.fault.__name__ for k in CATALOG if k.fault.node_wide}
    called = set()
    for name in parallel.NODE_WIDE_METHODS:
        source = inspect_.getsource(getattr(chaos_module.Chaos, name))
        called |= {n for n in node_wide if f"{n}(" in source}
    assert called == node_wide
