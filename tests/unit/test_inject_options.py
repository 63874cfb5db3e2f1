"""``chaoskit inject KIND --option value``: the fault's own options, typed from its chaos method's signature."""

from __future__ import annotations

import pytest

from chaoskit.errors import UsageError
from chaoskit.gameday.inject import fault_arguments


def test_options_take_the_types_of_the_method():
    args = fault_arguments(
        "pod-kill",
        ["--namespace", "shop", "--selector=app=web", "--count", "2", "--grace-seconds", "0", "--names", "a,b"],
    )
    assert args == {"namespace": "shop", "selector": "app=web", "count": 2, "grace_seconds": 0, "names": ("a", "b")}
    loss = fault_arguments("packet-loss", ["--namespace", "s", "--selector", "app=web", "--percent", "12.5"])
    assert loss["percent"] == 12.5
    words = ["--node", "chaoskit-worker", "--mode", "pause", "--wait-not-ready", "false"]
    node = fault_arguments("node-failure", words)
    assert node == {"node": "chaoskit-worker", "mode": "pause", "wait_not_ready": False}
    # kubectl's short options for the namespace and the selector
    assert fault_arguments("pod-kill", ["-n", "shop", "-l", "app=web"]) == {"namespace": "shop", "selector": "app=web"}


@pytest.mark.parametrize(
    ("kind", "words", "message"),
    [
        ("pod-kil", [], "unknown fault kind 'pod-kil': choose one of pod-kill, "),
        (
            "pod-kill",
            ["--namespace", "s", "--selector", "a=b", "--bogus", "1"],
            r"pod-kill takes no option --bogus 1 \(see 'chaoskit inject pod-kill --help'\)",
        ),
        ("pod-kill", ["--selector", "a=b"], r"pod-kill needs --namespace \(see 'chaoskit inject pod-kill --help'\)"),
        ("bandwidth", ["--namespace", "s", "--selector", "a=b"], "bandwidth needs --rate-kbit"),
        ("pod-kill", ["--namespace", "s", "--selector", "a=b", "--count", "two"], "--count takes int, not 'two'"),
        ("pod-kill", ["--namespace", "s", "--selector"], "argument -l/--selector: expected one argument"),
    ],
)
def test_bad_options_are_one_line_with_the_fix(kind, words, message):
    with pytest.raises(UsageError, match=message):
        fault_arguments(kind, words)


def test_pod_kill_crash_is_a_flag_and_refuses_a_grace_period():
    from chaoskit.errors import SpecError
    from chaoskit.faults.pod import PodKillSpec
    from chaoskit.gameday.inject import fault_arguments

    arguments = fault_arguments("pod-kill", ["--namespace", "shop", "--selector", "app=web", "--crash"])
    assert arguments == {"namespace": "shop", "selector": "app=web", "crash": True}
    assert PodKillSpec("shop", "app=web", crash=True).crash
    with pytest.raises(SpecError, match="a crash gives no grace period"):
        PodKillSpec("shop", "app=web", crash=True, grace_seconds=5)


def test_each_kind_has_its_own_help_listing_its_options_with_types_and_defaults(capsys):
    from chaoskit import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["inject", "partition", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: chaoskit inject partition ")
    assert "partition options:" in text and "--peer-selector STR" in text and "--port INT" in text
    assert "-n STR, --namespace STR" in text and "str; required" in text
    assert "--grace-seconds" not in text  # pod-kill's, not partition's


def test_an_option_of_another_kind_is_refused_naming_the_kinds_help(capsys):
    from chaoskit import cli

    code = cli.main(["inject", "partition", "--namespace", "s", "--selector", "a=b", "--grace-seconds", "0"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "chaoskit: error: partition takes no option --grace-seconds 0 (see 'chaoskit inject partition --help')"
    )
