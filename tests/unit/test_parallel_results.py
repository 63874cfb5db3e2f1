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
