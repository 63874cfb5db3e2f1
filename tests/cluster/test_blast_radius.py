"""The blast-radius cap counts what other active faults already hold, not only what the new fault chooses.

Residue is counted by :mod:`residue` (Docker and iptables, none of chaoskit's fault code).
"""

from __future__ import annotations

import pytest
from residue import scan
from workloads import Web

from chaoskit.chaos import Chaos
from chaoskit.errors import SafetyError

pytestmark = pytest.mark.shared_web


@pytest.mark.cluster_alone  # its scan of the whole cluster must see no other test's fault
def test_a_nested_partition_is_refused_naming_the_fault_that_already_cuts_a_pod(
    cluster, chaos: Chaos, web: Web, client: str
) -> None:
    """Three nested count=1 partitions of a 3-pod tier under a cap of 0.5: the second would make 2 of 3."""
    with chaos.partition(web.namespace, "app=web", peer_selector="role=client", count=1, max_share=0.5) as first:
        held = scan(cluster.name, str(cluster.kubeconfig))
        assert held.rules and len(held.fault_records) == 1, held
        with pytest.raises(SafetyError) as refused:
            with chaos.partition(web.namespace, "app=web", peer_selector="role=client", count=1, max_share=0.5):
                pytest.fail("the second partition was injected")
        message = str(refused.value)
        print(message)
        assert f"already hit by active fault(s) {first.fault_id}" in message, message
        assert "would touch 2 of 3 pods matching 'app=web'" in message, message
        # Nothing of the refused one was written or injected: the first's rules and record alone.
        now = scan(cluster.name, str(cluster.kubeconfig))
        assert sorted(now.rules) == sorted(held.rules) and now.fault_records == held.fault_records, now
        with chaos.partition(
            web.namespace, "app=web", peer_selector="role=client", count=1, max_share=0.67
        ) as second:  # raised on purpose
            assert any(second.fault_id in r for r in scan(cluster.name, str(cluster.kubeconfig)).fault_records)
            with pytest.raises(SafetyError, match="would touch 3 of 3 pods"):
                with chaos.partition(web.namespace, "app=web", peer_selector="role=client", count=1, max_share=0.67):
                    pytest.fail("the third partition was injected")
    after = scan(cluster.name, str(cluster.kubeconfig))
    assert after.empty() and after.fault_records == [], after
