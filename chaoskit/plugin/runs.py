"""The session's cluster, the test's ``chaos`` under the session's safety rules and hooks, and the check that
a test left no fault behind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest

from chaoskit import parallel
from chaoskit.adapters.kube import Kube
from chaoskit.chaos import Chaos
from chaoskit.cluster import Cluster, ClusterSpec, get_provider
from chaoskit.errors import ChaoskitError, FaultUndoFailed, FaultUnsupported, FaultVetoed, UsageError
from chaoskit.faults.base import Fault, FaultHooks, FaultRecord
from chaoskit.faults.sweeper import undo_entry
from chaoskit.namespaces import (
    POD_SECURITY_LEVELS,
    check_pod_security,
)
from chaoskit.plugin.options import (
    _SAFETY,
    _SESSION,
    _SPEC,
    setting,
)
from chaoskit.session import Session, open_session
from chaoskit.state.ledger import Ledger

REPEAT_ID = re.compile(r"run\d+of\d+")


def repeat_group(name: str) -> str:
    """A test's name without its ``--chaos-repeat`` id: the runs of one experiment share it (and are judged
    together: passed k of n, flaky), while variants of a parametrized test (``[graceful]``, ``[crash]``) stay
    apart."""
    base, bracket, rest = name.partition("[")
    if not bracket:
        return name
    ids = [part for part in rest.removesuffix("]").split("-") if not REPEAT_ID.fullmatch(part)]
    return f"{base}[{'-'.join(ids)}]" if ids else base


def session_of(config: pytest.Config) -> Session:
    """The pytest session's chaoskit session (:func:`chaoskit.session.open_session`), opened on first use: the
    ``cluster`` fixture and the items of ``*.chaos.yaml`` files share it. A cluster it created is deleted when
    the pytest session ends."""
    if _SESSION in config.stash:
        return config.stash[_SESSION]
    spec = config.stash[_SPEC]
    # Progress lines (and how a reused cluster differs from the options) reach the terminal,
    # not the capture of whichever test happens to set the session up.
    capture = config.pluginmanager.getplugin("capturemanager")
    try:
        session = open_session(
            spec,
            injector=setting(config, "injector"),
            agent_image=setting(config, "agent-image"),
            safety=config.stash[_SAFETY],
            loud=capture.global_and_fixture_disabled if capture else nullcontext,
        )
    except FaultUndoFailed as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    except ChaoskitError as exc:
        raise pytest.fail.Exception(f"no cluster: {exc}", pytrace=False) from None  # one line, no chain
    config.stash[_SESSION] = session
    config.add_cleanup(session.close)
    if session.cluster.created and not setting(config, "keep-cluster"):
        if parallel.is_worker(config):
            parallel.created_cluster(config, spec.name)  # the controller deletes it once every worker is done
        else:
            config.add_cleanup(lambda: delete_cluster(spec))
    return session


def session_cluster(config: pytest.Config) -> Cluster:
    """The session's cluster (see :func:`session_of`)."""
    return session_of(config).cluster


def delete_cluster(spec: ClusterSpec) -> None:
    """Delete the cluster this session created, and its ledger: its faults went with it."""
    get_provider(spec.provider, provision=False, recreate=False).down(spec)
    Ledger(spec.name).clear()


def pod_security_of(request: pytest.FixtureRequest) -> str:
    """The Pod Security level a test's namespaces enforce: its ``chaos_pod_security`` marker's (the closest:
    test, class, module), else the session's setting."""
    marker = request.node.get_closest_marker("chaos_pod_security")
    if marker is None:
        return str(setting(request.config, "pod-security"))
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        raise pytest.UsageError(
            f"{request.node.nodeid}: chaos_pod_security takes one level, one of {', '.join(POD_SECURITY_LEVELS)}"
        )
    try:
        return check_pod_security(marker.args[0])
    except UsageError as exc:
        raise pytest.UsageError(f"{request.node.nodeid}: chaos_pod_security: {exc}") from None


class PluginHooks(FaultHooks):
    """Each step of every fault, as the ``pytest_chaoskit_fault_*`` hooks (:mod:`chaoskit.hookspecs`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.hook = config.hook

    def planned(self, record: FaultRecord) -> str | None:
        answers = self.hook.pytest_chaoskit_fault_planned(record=record)
        reasons = [a for a in answers if isinstance(a, str) and a]
        if reasons:
            return "; ".join(reasons)
        if any(a is False for a in answers):
            return "a pytest_chaoskit_fault_planned hook returned False (return a string to say why)"
        return None

    def injected(self, record: FaultRecord) -> None:
        self.hook.pytest_chaoskit_fault_injected(record=record)

    def undone(self, record: FaultRecord) -> None:
        self.hook.pytest_chaoskit_fault_undone(record=record)


def plugin_hooks(config: pytest.Config) -> FaultHooks:
    """The session's fault hooks: the ``pytest_chaoskit_fault_*`` hooks, and Grafana's annotations after them
    when ``--chaos-grafana-url`` is given."""
    from chaoskit.grafana import GrafanaAnnotations

    hooks: FaultHooks = PluginHooks(config)
    url = setting(config, "grafana-url")
    return GrafanaAnnotations(url, then=hooks) if url else hooks


class PytestChaos(Chaos):
    """Chaos for tests: a fault this cluster cannot run, or one a hook vetoed, skips the test with the reason."""

    @contextmanager
    def _active(self, fault: Fault, max_share: float | None = None) -> Iterator[FaultRecord]:
        try:
            with super()._active(fault, max_share) as record:
                yield record
        except (FaultUnsupported, FaultVetoed) as exc:  # raised while planning, before anything is injected
            pytest.skip(str(exc))


def check_faults_undone(cluster: Cluster, kube: Kube, handle: Chaos) -> None:
    """At the end of a test: undo (and prove) its own faults still in the ledger; fail the test for one it
    left injected, or whose undo was not proven."""
    ledger = Ledger(cluster.name)
    mine = [e for e in ledger.unsettled() if e.fault_id in handle.fault_ids]
    unproven = {r.fault_id: r.undo_error for r in handle.records if r.undo_error}
    left: list[str] = []
    still: list[str] = []
    for entry in mine:
        how, text = undo_entry(cluster, kube, ledger, entry)
        if how == "failed":
            still.append(text)
        elif entry.fault_id not in unproven:
            left.append(entry.fault_id)
    if still:
        pytest.fail(
            f"faults of this test are NOT undone: {'; '.join(still)}; run 'chaoskit cleanup --name {cluster.name}' "
            "once the cause is fixed",
            pytrace=False,
        )
    if unproven:
        pytest.fail(
            f"the undo of this test's faults could not be proven when they ended (undone since): "
            f"{'; '.join(str(u) for u in unproven.values())}",
            pytrace=False,
        )
    if left:
        pytest.fail(f"the test left faults injected (now undone): {', '.join(left)}")
