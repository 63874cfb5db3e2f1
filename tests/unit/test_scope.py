"""-n/--namespace and -l/--selector of chaoskit status, cleanup and abort: which faults and namespaces they cover."""

from __future__ import annotations

import pytest

from chaoskit.errors import UsageError
from chaoskit.faults.scope import Resolved, Scope


def test_the_whole_cluster_covers_every_fault_and_namespace():
    whole = Resolved(Scope(), None)
    assert whole.covers(["shop/web-1"]) and whole.covers([]) and whole.covers_namespace("chaoskit-test-1")
    assert Scope().whole and Scope().describe() == ""


def test_a_namespace_covers_faults_with_a_pod_in_it_and_that_test_namespace():
    shop = Resolved(Scope("shop"), None)
    assert shop.covers(["other/db-0", "shop/web-1"])
    assert not shop.covers(["other/web-1"])
    assert not shop.covers([])  # a node-wide fault is in no namespace
    assert shop.covers([], namespaces=["shop"])  # an entry written before pods were recorded
    assert shop.covers_namespace("shop") and not shop.covers_namespace("shopping")
    assert Scope("shop").describe() == "namespace shop"


def test_a_selector_covers_faults_on_the_pods_it_selects_and_no_test_namespace():
    web = Resolved(Scope("shop", "app=web"), frozenset({"shop/web-1", "shop/web-2"}))
    assert web.covers(["shop/web-2"]) and not web.covers(["shop/db-0"])
    assert not web.covers([], namespaces=["shop"])  # no pods recorded: labels cannot be matched
    assert not web.covers_namespace("shop")  # -l narrows to pods: their namespace is not deleted
    assert Scope("shop", "app=web").describe() == "namespace shop and pods matching app=web"


@pytest.mark.parametrize("name", ["Shop", "shop_1", "-shop", "", "x" * 64])
def test_a_namespace_that_cannot_be_one_is_a_usage_error(name):
    with pytest.raises(UsageError, match="-n/--namespace"):
        Scope(name)


def test_an_empty_selector_is_a_usage_error():
    with pytest.raises(UsageError, match="-l/--selector is empty"):
        Scope(None, " ")


def test_a_scoped_abort_stops_only_the_runs_with_a_fault_in_its_scope_and_a_whole_one_stops_every_run(tmp_path):
    from chaoskit.state.ledger import Ledger

    ledger = Ledger("unit", directory=tmp_path)
    scoped_at = ledger.abort(["latency-in-shop"], "chaoskit abort -n shop", scoped=True)
    assert [a["by"] for a in ledger.aborts(scoped_at, ["latency-in-shop", "dns-elsewhere"])] == [
        "chaoskit abort -n shop"
    ]
    assert ledger.aborts(scoped_at, ["dns-elsewhere"]) == []
    assert ledger.aborts(scoped_at) == []  # a run that holds no fault yet is not in any scope
    whole_at = ledger.abort([], "chaoskit abort")
    assert [a["by"] for a in ledger.aborts(whole_at)] == ["chaoskit abort"]  # the big red button stops every run
    assert [a["by"] for a in ledger.aborts(scoped_at, ["dns-elsewhere"])] == ["chaoskit abort"]
