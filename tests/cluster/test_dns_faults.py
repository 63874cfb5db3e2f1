"""DNS faults on the real cluster: the chosen pods' resolver gets the fault's answer, everyone else the truth."""

from __future__ import annotations

import pytest
from residue import scan
from workloads import Web, probe_eventually

from chaoskit.chaos import Chaos
from chaoskit.errors import SpecError

pytestmark = pytest.mark.shared_web  # each test injects a fault and undoes it

RESOLVE = (
    "import socket, sys\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        print(name, socket.gethostbyname(name))\n"
    "    except OSError as exc:\n"
    "        print(name, 'error', exc)\n"
)


def resolve(kube, namespace: str, pod: str, *names: str) -> dict[str, str]:
    """What the pod's own resolver (its libc, its resolv.conf) gives for each name."""
    code, output = kube.exec(namespace, pod, ["python3", "-c", RESOLVE, *names], timeout=60)
    assert code == 0, output
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in output.splitlines() if " " in line}


def test_nxdomain_for_a_service_name_in_one_pod_only_and_heals(cluster, chaos: Chaos, kube, web: Web, client) -> None:
    names = ("web", "kubernetes.default")
    before = resolve(kube, web.namespace, client, *names)
    assert not before["web"].startswith("error"), before
    with chaos.dns(web.namespace, "role=client", "web", answer="nxdomain", max_share=1.0) as record:
        assert "NXDOMAIN" in record.effect and "still resolves" in record.effect, record.effect
        during = resolve(kube, web.namespace, client, *names)
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert len(held.of(record.fault_id)) == 2 and len(held.helpers_of(record.fault_id)) == 1, held
        # The web pods themselves were not chosen: they still resolve their own Service.
        web_pod = next(p.metadata.name for p in kube.pods(web.namespace, "app=web"))
        beside = resolve(kube, web.namespace, web_pod, "web")
    after = resolve(kube, web.namespace, client, *names)
    assert during["web"].startswith("error") and "Name or service not known" in during["web"], during
    assert during["kubernetes.default"] == before["kubernetes.default"], during
    assert beside["web"] == before["web"], beside
    assert after == before, after
    gone = scan(cluster.name, str(cluster.kubeconfig))
    assert gone.of(record.fault_id) == [] and gone.helpers_of(record.fault_id) == [], gone
    assert record.reverted and "no DNS responders left" in (record.undo_proof or ""), record.undo_proof
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)
    print(f"dns nxdomain: {record.effect}; effect after {record.inject_to_effect:.3f} s; undo: {record.undo_proof}")


@pytest.mark.parametrize(
    ("answer", "options", "expect"),
    [("address", {"address": "10.1.2.3"}, "10.1.2.3"), ("servfail", {}, "error"), ("delay", {"delay_ms": 300}, "")],
)
def test_other_answers_reach_the_pods_resolver(chaos: Chaos, kube, web: Web, client, answer, options, expect) -> None:
    before = resolve(kube, web.namespace, client, "web")["web"]
    with chaos.dns(web.namespace, "role=client", ["web"], answer=answer, max_share=1.0, **options) as record:
        during = resolve(kube, web.namespace, client, "web")["web"]
    if answer == "delay":
        assert during == before and "in 3" in record.effect, (during, record.effect)  # true answer, 300+ ms late
    else:
        assert during.startswith(expect), during
    print(f"dns {answer}: {record.effect}; effect after {record.inject_to_effect:.3f} s")


def test_bad_dns_specs_are_refused_before_anything_is_injected(chaos: Chaos, web: Web, client) -> None:
    for options, message in (
        ({"names": []}, "at least one DNS name"),
        ({"names": ["bad name"]}, "not DNS names"),
        ({"names": ["web"], "answer": "address"}, "needs address="),
        ({"names": ["web"], "answer": "delay", "delay_ms": 0}, "needs delay_ms="),
        ({"names": ["web"], "answer": "refuse"}, "answer must be one of"),
        ({"names": ["kubernetes"]}, "the control name"),
    ):
        with pytest.raises(SpecError, match=message):
            with chaos.dns(web.namespace, "role=client", max_share=1.0, **options):
                pass
    assert chaos.records == []
