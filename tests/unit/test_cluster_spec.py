"""Cluster specs, kind configs and provider choice: the logic, without Docker."""

import pytest

from chaoskit.cluster import ClusterSpec, get_provider
from chaoskit.cluster.kind import is_airgap_image, kind_config
from chaoskit.errors import UsageError


def test_kind_config_airgap_has_no_default_cni_and_publishes_node_ports_on_loopback():
    config = kind_config(ClusterSpec(workers=2, node_ports=(30080, 30081)), airgap=True)
    assert config["networking"] == {"disableDefaultCNI": True}
    roles = [n["role"] for n in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    mappings = config["nodes"][0]["extraPortMappings"]
    assert [(m["hostPort"], m["listenAddress"]) for m in mappings] == [(30080, "127.0.0.1"), (30081, "127.0.0.1")]


def test_kind_config_stock_keeps_kinds_network():
    assert "networking" not in kind_config(ClusterSpec(workers=0), airgap=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": -1}, "workers must be 0 or more"),
        ({"name": "Bad_Name"}, "lower-case letters"),
        ({"node_ports": (8080,)}, "outside the NodePort range"),
    ],
)
def test_bad_specs_are_refused_with_the_fix(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ClusterSpec(**kwargs)


def test_unknown_provider_names_the_choices():
    with pytest.raises(UsageError, match="unknown cluster provider 'minikube': choose one of kind, existing"):
        get_provider("minikube")


def test_airgap_images_are_recognised():
    assert is_airgap_image("chaoskit/node:v1.20.2-r3-abc")
    assert not is_airgap_image("kindest/node:v1.37.0")
