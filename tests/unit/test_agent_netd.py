"""The pod-network agent's decisions, from Node objects (no cluster needed)."""

from chaoskit.agent.netd import cni_config, desired_routes, own_cidr, parse_routes


def node(name, cidr=None, ip=None):
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr} if cidr else {},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}]
            + ([{"type": "InternalIP", "address": ip}] if ip else [])
        },
    }


NODES = [
    node("cp", "10.244.0.0/24", "172.18.0.2"),
    node("w1", "10.244.1.0/24", "172.18.0.3"),
    node("w2", "10.244.2.0/24", "172.18.0.4"),
]


def test_routes_go_to_every_other_node_via_its_internal_ip():
    assert desired_routes(NODES, "w1") == {"10.244.0.0/24": "172.18.0.2", "10.244.2.0/24": "172.18.0.4"}


def test_nodes_without_cidr_or_address_get_no_route_yet():
    nodes = [*NODES, node("w3", None, "172.18.0.5"), node("w4", "10.244.4.0/24", None)]
    assert set(desired_routes(nodes, "cp")) == {"10.244.1.0/24", "10.244.2.0/24"}


def test_own_cidr():
    assert own_cidr(NODES, "w2") == "10.244.2.0/24"
    assert own_cidr([node("w9")], "w9") is None
    assert own_cidr(NODES, "absent") is None


def test_cni_config_is_a_bridge_on_the_node_cidr_without_masquerade():
    config = cni_config("10.244.1.0/24")
    bridge, portmap = config["plugins"]
    assert bridge["type"] == "bridge" and bridge["isGateway"] and not bridge["ipMasq"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}


def test_parse_routes_reads_ip_route_output():
    output = "10.244.0.0/24 via 172.18.0.2 dev eth0 proto 201 \n10.244.2.0/24 via 172.18.0.4 dev eth0 proto 201 \n"
    assert parse_routes(output) == {"10.244.0.0/24": "172.18.0.2", "10.244.2.0/24": "172.18.0.4"}
    assert parse_routes("") == {}
