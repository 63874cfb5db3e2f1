"""The DNS agent's records, from Service and Endpoints objects (no cluster needed)."""

from pathlib import Path

from chaoskit.agent.dns import dnsmasq_command, hosts_file, records


def service(name, ns, cluster_ip, kind="ClusterIP"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": cluster_ip, "type": kind}}


def endpoints(name, ns, *addresses):
    return {"metadata": {"name": name, "namespace": ns}, "subsets": [{"addresses": list(addresses)}]}


def test_cluster_ip_service_resolves_to_its_cluster_ip_only():
    got = records([service("web", "shop", "10.96.5.5")], [endpoints("web", "shop", {"ip": "10.244.1.7"})])
    assert got == [("10.96.5.5", "web.shop.svc.cluster.local")]


def test_headless_service_resolves_to_ready_endpoints_and_hostnames():
    got = records(
        [service("redis", "db", "None")],
        [
            endpoints(
                "redis", "db", {"ip": "10.244.1.9", "hostname": "redis-0"}, {"ip": "10.244.2.3", "hostname": "redis-1"}
            )
        ],
    )
    assert got == [
        ("10.244.1.9", "redis-0.redis.db.svc.cluster.local"),
        ("10.244.1.9", "redis.db.svc.cluster.local"),
        ("10.244.2.3", "redis-1.redis.db.svc.cluster.local"),
        ("10.244.2.3", "redis.db.svc.cluster.local"),
    ]


def test_headless_service_without_endpoints_has_no_record_and_external_names_are_skipped():
    got = records([service("empty", "a", "None"), service("ext", "a", None, "ExternalName")], [])
    assert got == []


def test_same_name_in_two_namespaces_stays_apart():
    got = records([service("web", "a", "10.96.0.20"), service("web", "b", "10.96.0.21")], [])
    assert got == [("10.96.0.20", "web.a.svc.cluster.local"), ("10.96.0.21", "web.b.svc.cluster.local")]


def test_hosts_file_and_command():
    assert hosts_file([("10.0.0.1", "a.b.svc.cluster.local")]) == "10.0.0.1 a.b.svc.cluster.local\n"
    command = dnsmasq_command(Path("/run/x"))
    assert "--hostsdir=/run/x" in command and "--local=/cluster.local/" in command and "--no-resolv" in command
