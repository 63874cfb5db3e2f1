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


def test_a_node_image_of_kubernetes_1_37_lets_kubelet_run_on_a_cgroup_v1_host() -> None:
    from chaoskit.cluster.kind import image_line
    from chaoskit.provision import images, versions

    line = versions.line("1.37")
    image = images.node_image(line)
    old = images.node_image(versions.LINES["1.20"])
    assert image_line(image) == line and image_line(old) == versions.LINES["1.20"]
    assert images.node_image() == image  # 1.37 is the default line
    assert image_line("kindest/node:v1.37.0") is None
    from chaoskit.cluster.kind import image_minor

    assert image_minor(image) == 37 == image_minor("kindest/node:v1.37.0") and image_minor(old) == 20
    assert image_minor("kindest/node:v1.29.2@sha256:abc") == 29 and image_minor("example.com/node:latest") is None
    config = kind_config(ClusterSpec(workers=1), airgap=True, minor=37)
    (patch,) = config["kubeadmConfigPatches"]
    assert "kind: KubeletConfiguration" in patch and "failCgroupV1: false" in patch
    assert "kubeadmConfigPatches" in kind_config(ClusterSpec(workers=1), airgap=False, minor=37)  # kind's stock 1.37
    assert "kubeadmConfigPatches" not in kind_config(ClusterSpec(workers=1), airgap=True, minor=20)
    assert "kubeadmConfigPatches" not in kind_config(ClusterSpec(workers=1), airgap=False, minor=29)  # no such field


def test_kubernetes_lines_are_named_by_minor_or_exact_version_and_others_refused() -> None:
    from chaoskit.errors import UsageError
    from chaoskit.provision import versions

    assert versions.line(None) is versions.line("1.37") is versions.line("v1.37.2")  # the default
    assert versions.line("1.20") is versions.line("v1.20.2")
    assert versions.line("1.37").version == "v1.37.2" == versions.line("v1.37.2").version
    with pytest.raises(UsageError, match=r"builds no Kubernetes 1\.37\.1: it builds 1\.20 \(v1\.20\.2\), 1\.37"):
        versions.line("1.37.1")
    with pytest.raises(UsageError, match=r"builds no Kubernetes 1\.31"):
        versions.line("1.31")


def test_a_1_37_node_leaves_out_debians_runtime_and_keeps_the_1_20_image_name() -> None:
    from chaoskit.provision import images, versions

    line, old = versions.line("1.37"), versions.line("1.20")
    assert not {"containerd", "runc", "containernetworking-plugins"} & set(images.node_packages(line))
    assert {"containerd", "runc"} <= set(images.node_packages(old))
    assert images.node_rootfs(old) != images.node_rootfs(line)
    preloaded = images.preload_images(line)
    assert "registry.k8s.io/kube-apiserver:v1.37.2" in preloaded and line.coredns_image in preloaded
    assert not [name for name in images.preload_images(old) if "registry.k8s.io" in name or "coredns" in name]
