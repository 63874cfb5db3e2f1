"""The pod-namespace helpers' pure parts: the latency delayer's netlink messages and schedule, the DNS
responder's answers, and their faults' specs.

What they do to real packets is proven on the cluster (tests/cluster/test_pod_faults.py) and measured by
benchmarks/latency_bench.py (and tests/cluster/test_dns_faults.py).
"""

from __future__ import annotations

import random
import re
import shlex
import struct

import pytest

from chaoskit.agent import nfqdelay
from chaoskit.errors import ClusterError, SpecError
from chaoskit.faults.netrules import helper_path, helper_source, helpers_snippet
from chaoskit.faults.shaping import DELAYER, LatencySpec, queue_number, start_delayer_snippet


def packet_message(packet_id: int) -> bytes:
    header = nfqdelay.attribute(nfqdelay.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 3))
    mark = nfqdelay.attribute(3, struct.pack("!I", 7))
    return nfqdelay.message(nfqdelay.NFQNL_MSG_PACKET, 5, mark + header, 0, flags=0)


def error_message(code: int) -> bytes:
    return struct.pack("=IHHII", 36, nfqdelay.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -code) + b"\0" * 16


def test_packet_ids_and_errors_are_read_from_a_buffer_of_several_messages():
    data = packet_message(41) + error_message(0) + packet_message(42) + error_message(16)
    assert nfqdelay.parse(data) == ([41, 42], [16])


def test_a_truncated_message_ends_the_parse_without_inventing_ids():
    data = packet_message(1) + packet_message(2)[:-6]
    assert nfqdelay.parse(data) == ([1], [])


def test_messages_carry_the_queue_subsystem_type_and_the_queue_number_big_endian():
    verdict = nfqdelay.verdict_message(300, 77)
    length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", verdict)
    assert length == len(verdict) and kind == (3 << 8) | nfqdelay.NFQNL_MSG_VERDICT_BATCH
    assert flags == nfqdelay.NLM_F_REQUEST
    assert struct.unpack_from("!BBH", verdict, 16) == (0, 0, 300)
    # The verdict header attribute: accept, up to packet 77.
    assert struct.unpack_from("=HH", verdict, 20) == (12, nfqdelay.NFQA_VERDICT_HDR)
    assert struct.unpack_from("!II", verdict, 24) == (nfqdelay.NF_ACCEPT, 77)
    config = nfqdelay.config_messages(300)
    assert len(config) == 4 and all(struct.unpack_from("=IHHII", m)[2] & nfqdelay.NLM_F_ACK for m in config)
    assert all(len(m) % 4 == 0 for m in [*config, verdict, nfqdelay.unbind_message(300)])


def test_the_schedule_delays_each_packet_and_releases_in_order():
    schedule = nfqdelay.Schedule(delay=0.1, jitter=0.0)
    schedule.add(1, now=10.0)
    schedule.add(2, now=10.05)
    assert schedule.due(10.09) is None
    assert schedule.wait(10.09, idle=1.0) == pytest.approx(0.01)
    assert schedule.due(10.1) == 1
    assert schedule.due(10.2) == 2 and schedule.wait(10.2, idle=1.0) == 1.0


def test_jitter_varies_the_delay_within_its_bounds_but_never_reorders():
    schedule = nfqdelay.Schedule(delay=0.05, jitter=0.04, rng=random.Random(1))
    for i in range(200):
        schedule.add(i, now=i * 0.001)
    dues = [due for due, _ in schedule.pending]
    assert dues == sorted(dues)
    waits = [due - i * 0.001 for i, (due, _) in enumerate(schedule.pending)]
    assert min(waits) >= 0.01 - 1e-9 and max(waits) <= 0.09 + 0.2
    assert max(waits) - min(waits) > 0.03  # it does vary
    assert schedule.last() == 199 and schedule.due(10.0) == 199


def test_an_unknown_engine_is_refused_naming_the_choices():
    with pytest.raises(SpecError, match="engine must be one of auto, netem, nfqueue, not 'tc'"):
        LatencySpec("ns", "app=web", delay_ms=10, engine="tc")


def test_the_delayer_is_started_before_its_rule_and_found_again_by_one_argv_word():
    snippet = start_delayer_snippet("abc123", "chaoskit:abc123", 80, 10)
    assert snippet.index("setsid python3") < snippet.index("iptables-restore")
    assert f"--queue={queue_number('abc123')}" in snippet and "--queue-bypass" in snippet
    assert "*mangle" in snippet and shlex.quote("--tag=chaoskit:abc123") in snippet
    assert helper_path(DELAYER).startswith("/tmp/chaoskit-nfqdelay-") and helper_path(DELAYER) in snippet
    assert "grep -lzxE -- '--tag=(chaoskit:abc123)' /proc/" in helpers_snippet("chaoskit:abc123")
    assert "kill -TERM" in helpers_snippet("chaoskit:abc123", stop=True)
    assert 1 <= queue_number("x") <= 65000 and queue_number("x") != queue_number("y")


# ---- the DNS responder and its spec (chaoskit/agent/dnsfault.py, chaoskit/faults/dns.py) ----------------


def dns_query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_the_responder_reads_the_question_and_matches_search_path_expansions():
    from chaoskit.agent import dnsfault

    asked = dnsfault.question(dns_query("Web.Shop.svc.cluster.local"))
    assert asked is not None and asked[:2] == ("web.shop.svc.cluster.local", 1)
    assert dnsfault.matches("web.shop.svc.cluster.local", ["web"])
    assert not dnsfault.matches("webshop.svc.cluster.local", ["web"])
    assert dnsfault.question(b"\0" * 5) is None


def test_the_responder_answers_nxdomain_servfail_and_a_wrong_address_without_forwarding():
    from chaoskit.agent import dnsfault

    forwarded = []
    query = dns_query("web.shop.svc.cluster.local")
    for answer, rcode, count in (("nxdomain", 3, 0), ("servfail", 2, 0), ("address", 0, 1)):
        responder = dnsfault.Responder(["web"], answer, "10.1.2.3", 0.0, "10.96.0.10", 0x10001)
        responder._forward_udp = lambda q: forwarded.append(q)  # type: ignore[method-assign]
        response = responder.answer_for(query)
        assert response is not None and response[:2] == query[:2]  # the query's id
        assert response[3] & 15 == rcode and struct.unpack_from("!H", response, 6)[0] == count
        if count:
            assert response.endswith(bytes([10, 1, 2, 3]))
    other = dnsfault.Responder(["web"], "nxdomain", None, 0.0, "10.96.0.10", 1)
    other._forward_udp = lambda q: forwarded.append(q) or b"real"  # type: ignore[method-assign]
    assert other.answer_for(dns_query("kubernetes.default.svc.cluster.local")) == b"real" and len(forwarded) == 1


def test_the_cfs_throttling_counters_are_read_from_cpu_stat_on_v1_and_v2(tmp_path, monkeypatch):
    from chaoskit.agent import stress

    monkeypatch.setattr(stress, "CGROUP_ROOT", str(tmp_path))
    v1 = tmp_path / "cpu,cpuacct" / "k" / "p"
    v1.mkdir(parents=True)
    (v1 / "cpu.stat").write_text("nr_periods 50\nnr_throttled 40\nthrottled_time 2500000000\n")
    (v1 / "cpu.cfs_quota_us").write_text("20000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpuacct.usage").write_text("3000000000\n")
    monkeypatch.setattr(stress, "cgroups_of", lambda pid: [("cpu,cpuacct", "/k/p")])
    found = stress.stats("1")
    assert (found["cpu_periods"], found["cpu_throttled_periods"], found["cpu_throttled_seconds"]) == (50, 40, 2.5)
    assert found["cpu_quota"] == 0.2 and found["cpu_seconds"] == 3.0
    hybrid = tmp_path / "unified" / "k" / "p"  # a hybrid node: the unified tree, listed after, has no counters
    hybrid.mkdir(parents=True)
    (hybrid / "cpu.stat").write_text("usage_usec 5\n")
    monkeypatch.setattr(stress, "cgroups_of", lambda pid: [("cpu,cpuacct", "/k/p"), ("", "/k/p")])
    assert stress.stats("1")["cpu_throttled_periods"] == 40
    v2 = tmp_path / "k2"
    v2.mkdir()
    (v2 / "cpu.stat").write_text("usage_usec 1000000\nnr_periods 10\nnr_throttled 9\nthrottled_usec 410000\n")
    (v2 / "cpu.max").write_text("20000 100000\n")
    monkeypatch.setattr(stress, "cgroups_of", lambda pid: [("", "/k2")])
    found = stress.stats("1")
    assert (found["cpu_periods"], found["cpu_throttled_periods"], found["cpu_throttled_seconds"]) == (10, 9, 0.41)


def test_throttling_is_told_between_two_readings_only_under_a_cpu_limit():
    from chaoskit.faults.stress import throttling

    before = {"cpu_periods": 100, "cpu_throttled_periods": 10, "cpu_throttled_seconds": 0.5, "cpu_quota": 0.2}
    after = {"cpu_periods": 130, "cpu_throttled_periods": 37, "cpu_throttled_seconds": 2.25, "cpu_quota": 0.2}
    assert throttling(before, after) == "; throttled in 27 of 30 periods, 1.75 s waited (CPU limit 0.2)"
    assert throttling(before, {**after, "cpu_quota": None}) == ""  # no limit: nothing throttles
    assert throttling({"cpu_quota": 0.2}, after) == ""  # a counter missing: nothing said


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"names": ()}, "at least one DNS name"),
        ({"names": ("a b",)}, "not DNS names"),
        ({"answer": "address"}, "needs address= an IPv4 address"),
        ({"answer": "address", "address": "::1"}, "needs address= an IPv4 address"),
        ({"answer": "delay"}, "needs delay_ms= in 1-30000"),
        ({"answer": "nxdomain", "delay_ms": 5}, "delay_ms= goes with answer 'delay'"),
        ({"answer": "nope"}, "answer must be one of nxdomain, servfail, address, delay"),
    ],
)
def test_bad_dns_specs(options, message):
    from chaoskit.faults.dns import DnsSpec

    with pytest.raises(SpecError, match=message):
        DnsSpec(**{"namespace": "shop", "selector": "app=web", "names": ("web",), **options})


def test_a_pods_resolv_conf_gives_its_nameserver_its_first_expansion_and_its_domain():
    from chaoskit.faults.dns import parse_resolv_conf

    resolver = parse_resolv_conf(
        "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    )
    assert resolver.nameserver == "10.96.0.10" and resolver.domain == "cluster.local"
    assert resolver.expand("web") == "web.shop.svc.cluster.local"
    with pytest.raises(SpecError, match="no IPv4 nameserver"):
        parse_resolv_conf("nameserver fd00::10\n")


# ---- the stressor and its spec (chaoskit/agent/stress.py, chaoskit/faults/stress.py) ------------------------


def test_a_hierarchy_is_looked_for_where_v1_v2_and_hybrid_nodes_mount_it():
    from chaoskit.agent import stress

    root = stress.CGROUP_ROOT
    assert stress.directories("", "/kubepods/pod1/abc") == [
        f"{root}/kubepods/pod1/abc",
        f"{root}/unified/kubepods/pod1/abc",
    ]
    assert stress.directories("cpu,cpuacct", "/k/p") == [
        f"{root}/cpu,cpuacct/k/p",
        f"{root}/cpu/k/p",
        f"{root}/cpuacct/k/p",
    ]
    assert stress.directories("name=systemd", "/k")[0] == f"{root}/systemd/k"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "nothing to stress"),
        ({"cpu_workers": 65}, "cpu_workers must be in 0-64"),
        ({"cpu_workers": 1, "cpu_percent": 101}, "cpu_percent must be in 1-100"),
        ({"memory_bytes": 4096}, "memory_bytes must be 0 or in 1 MiB-64 GiB"),
        ({"cpu_workers": 1, "count": 0}, "count must be at least 1"),
    ],
)
def test_bad_stress_specs(options, message):
    from chaoskit.faults.stress import StressSpec

    with pytest.raises(SpecError, match=message):
        StressSpec("shop", "app=web", **options)


# ---- disk fill (chaoskit/faults/disk.py) ---------------------------------------------------------------------


def test_the_fill_is_what_brings_dfs_use_to_the_percentage():
    from chaoskit.faults.disk import Usage, fill_bytes, parse_df, parse_statfs

    usage = parse_df("Filesystem 1-blocks Used Available Capacity Mounted on\ntmpfs 67108864 0 67108864 0% /my data\n")
    assert usage == Usage(67108864, 0, 67108864) and fill_bytes(usage, 80) == 53687091
    assert parse_statfs("statfs 4096 16384 16384 16384") == usage
    assert fill_bytes(Usage(100, 90, 10), 50) == 0  # already past it: nothing to write (the plan refuses)
    with pytest.raises(ClusterError):
        parse_df("df: no file systems processed")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"percent": 100}, "percent must be in 1-99"),
        ({"percent": 50, "path": "relative"}, "path must be an absolute directory"),
        ({"percent": 50, "max_bytes": 10}, "max_bytes must be at least 1 MiB"),
    ],
)
def test_bad_disk_fill_specs(options, message):
    from chaoskit.faults.disk import DiskFillSpec

    with pytest.raises(SpecError, match=message):
        DiskFillSpec("shop", "app=web", **options)


@pytest.mark.parametrize("module", ["nfqdelay.py", "dnsfault.py", "stress.py"])
def test_each_helper_is_one_file_that_runs_without_chaoskit(module, tmp_path):
    """What is written on a node: the helper with the shared watch bundled in, runnable by a bare python3."""
    import subprocess
    import sys

    source = helper_source(module)
    assert not re.search(r"^\s*(from|import) chaoskit", source, re.MULTILINE)
    script = tmp_path / module
    script.write_text(source)
    ran = subprocess.run([sys.executable, "-I", str(script), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert ran.returncode == 0 and "usage:" in ran.stdout, ran.stderr
