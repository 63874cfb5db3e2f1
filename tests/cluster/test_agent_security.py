"""The injector agent as a security review tries it: as its own service account, with planted records, and
with its pods replaced under a held fault.

Requests "as the agent" carry a token of the agent's own service account (the TokenRequest API), so the
API server judges them exactly as it judges the agent. Whether anything ran on a node is read by
``docker exec`` into every node (a marker file any planted command would write), and residue by
:mod:`residue`; neither uses chaoskit's code.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from residue import scan
from test_injector_agent import chaoskit, cleanup_elsewhere, machine, wait_for_file
from workloads import Web, probe_eventually

from chaoskit.adapters.nodes import INJECTOR_NAME, INJECTOR_NAMESPACE, INJECTOR_SELECTOR
from chaoskit.cluster import injector

pytestmark = pytest.mark.destructive

GROUP, VERSION, PLURAL = "chaoskit.io", "v1alpha1", "faults"
AGENT = f"system:serviceaccount:{INJECTOR_NAMESPACE}:{INJECTOR_NAME}"
MARKER = "/tmp/chaoskit-pwned"


@pytest.fixture(scope="module")
def agent(cluster, kube) -> str:
    return injector.install(cluster, kube)


@pytest.fixture
def as_agent(kube, agent: str) -> Any:
    """An API client that authenticates with a token of the agent's own service account."""
    request = {"spec": {"audiences": [], "expirationSeconds": 600}}
    token = kube.core.create_namespaced_service_account_token(INJECTOR_NAME, INJECTOR_NAMESPACE, request).status.token
    source = kube.api_client.configuration
    conf = client.Configuration()
    conf.host, conf.ssl_ca_cert, conf.verify_ssl = source.host, source.ssl_ca_cert, source.verify_ssl
    conf.api_key = {"authorization": f"Bearer {token}"}
    api = client.ApiClient(conf)
    yield api
    api.close()


def status_of(call) -> int:
    """The HTTP status a request gets (200 when it succeeds)."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def record(fault_id: str, nodes: dict[str, Any], owner: str = "chaoskit-owner-gone", **spec: Any) -> dict[str, Any]:
    body = {"faultId": fault_id, "kind": "stress", "ownerLease": owner, "nodes": nodes, "undo": "{}", **spec}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Fault",
        "metadata": {"name": f"chaoskit-fault-{fault_id}", "labels": {"chaoskit.io/fault": fault_id}},
        "spec": body,
    }


def markers(cluster) -> list[str]:
    """Marker files on any node, in the node's own /tmp or any container's (every process root)."""
    found = []
    for node in node_containers(cluster):
        listing = subprocess.run(
            ["docker", "exec", node, "sh", "-c", f"ls -d {MARKER}* /proc/[0-9]*/root{MARKER}* 2>/dev/null; true"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        found += [f"{node}: {line}" for line in listing.stdout.split()]
    return found


def node_containers(cluster) -> list[str]:
    names = subprocess.run(
        ["docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={cluster.name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert names, "no node container found"
    return names


def await_marks(kube, name: str, key: str, count: int, within: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        obj = kube.custom.get_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name)
        nodes = (obj.get("status") or {}).get("nodes") or {}
        marked = {n: s[key] for n, s in nodes.items() if key in s}
        if len(marked) >= count:
            return marked
        assert time.monotonic() < deadline, f"{name}: {len(marked)} of {count} agents marked {key}: {nodes}"
        time.sleep(0.3)


def test_the_agents_account_may_read_records_and_write_their_status_and_nothing_else(
    cluster, kube, as_agent, agent: str
) -> None:
    """The ``kubectl auth can-i`` matrix (as SubjectAccessReviews, what can-i sends), then real requests."""
    auth = client.AuthorizationV1Api(kube.api_client)

    def can(verb: str, resource: str, namespace: str = INJECTOR_NAMESPACE, group: str = "", sub: str = "") -> bool:
        attrs = {"verb": verb, "resource": resource, "group": group, "namespace": namespace, "subresource": sub}
        body = {"spec": {"user": AGENT, "groups": ["system:serviceaccounts"], "resourceAttributes": attrs}}
        return bool(auth.create_subject_access_review(body).status.allowed)

    allowed = [
        ("get", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("list", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("watch", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("patch", PLURAL, INJECTOR_NAMESPACE, GROUP, "status"),
        ("list", "leases", INJECTOR_NAMESPACE, "coordination.k8s.io", ""),
        ("watch", "leases", INJECTOR_NAMESPACE, "coordination.k8s.io", ""),
    ]
    denied = [
        ("create", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("patch", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("update", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("delete", PLURAL, INJECTOR_NAMESPACE, GROUP, ""),
        ("update", PLURAL, INJECTOR_NAMESPACE, GROUP, "status"),
        ("list", PLURAL, "default", GROUP, ""),
        ("patch", "leases", INJECTOR_NAMESPACE, "coordination.k8s.io", ""),
        ("delete", "leases", INJECTOR_NAMESPACE, "coordination.k8s.io", ""),
        *[
            (verb, "configmaps", ns, "", "")
            for verb in ("get", "create", "patch", "delete")
            for ns in (INJECTOR_NAMESPACE, "default", "kube-system")
        ],
        *[
            (verb, "secrets", ns, "", "")
            for verb in ("get", "list", "create")
            for ns in (INJECTOR_NAMESPACE, "kube-system")
        ],
        ("create", "pods", INJECTOR_NAMESPACE, "", ""),
        ("create", "pods", INJECTOR_NAMESPACE, "", "exec"),
        ("list", "pods", "kube-system", "", ""),
        ("patch", "daemonsets", INJECTOR_NAMESPACE, "apps", ""),
        ("get", "nodes", "", "", ""),
        ("create", "clusterrolebindings", "", "rbac.authorization.k8s.io", ""),
        ("escalate", "roles", INJECTOR_NAMESPACE, "rbac.authorization.k8s.io", ""),
    ]
    matrix = {row: can(row[0], row[1], row[2], row[3], row[4]) for row in allowed + denied}
    for row, verdict in matrix.items():
        print(f"can-i {row[0]} {row[1]}{'/' + row[4] if row[4] else ''} -n {row[2] or '(cluster)'}: {verdict}")
    assert [row for row in allowed if not matrix[row]] == []
    assert [row for row in denied if matrix[row]] == []

    # Real requests with the agent's own token: the API server refuses every write but the status.
    fault_id = f"sec-{uuid.uuid4().hex[:8]}"
    name = f"chaoskit-fault-{fault_id}"
    body = record(fault_id, {}, owner="chaoskit-owner-alive")
    mine = client.CustomObjectsApi(as_agent)
    core = client.CoreV1Api(as_agent)
    assert (
        status_of(lambda: mine.create_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, body)) == 403
    )
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, body)
    try:
        attack = {"spec": {"nodes": {f"{cluster.name}-worker": {"inject": [{"op": "stop-kubelet"}]}}}}
        assert (
            status_of(
                lambda: mine.patch_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name, attack)
            )
            == 403
        )
        assert (
            status_of(lambda: mine.delete_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name))
            == 403
        )
        mark = {"status": {"nodes": {"unit": {"note": "the agent's own word"}}}}
        assert (
            status_of(
                lambda: mine.patch_namespaced_custom_object_status(
                    GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name, mark
                )
            )
            == 200
        )
        # A status write carries nothing into the spec: the attack's inject is dropped by the API server.
        sneaky = {"spec": attack["spec"], "status": {"nodes": {"unit": {"note": "again"}}}}
        mine.patch_namespaced_custom_object_status(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name, sneaky)
        after = kube.custom.get_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name)
        assert after["spec"]["nodes"] == {}, after["spec"]
        config_map = {"metadata": {"name": f"sec-{fault_id}"}, "data": {"inject.chaoskit-worker": f"touch {MARKER}"}}
        for ns in (INJECTOR_NAMESPACE, "default"):
            assert status_of(lambda ns=ns: core.create_namespaced_config_map(ns, config_map)) == 403
        assert status_of(lambda: core.list_namespaced_secret(INJECTOR_NAMESPACE)) == 403
        assert markers(cluster) == [], "an agent ran something"
    finally:
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name)


EVIL_TEXT = [f"$(touch {MARKER}-1)", f"`touch {MARKER}-2`", f"x; touch {MARKER}-3", f"x\ntouch {MARKER}-4", "x'\"y"]


def planted(kube, worker: str) -> list[str]:
    """Records an admin could write (the schema lets them through) whose fields carry shell text; their names."""
    names = []
    for i, text in enumerate(EVIL_TEXT):
        fault_id = f"evil{i}-{uuid.uuid4().hex[:6]}"
        fill = {
            "op": "remove-fill",
            "pid": 1,
            "inode": 1,
            "uid": "00000000-0000-0000-0000-000000000000",
            "path": f"/data/{text}",
            "file": ".chaoskit-fill-x",
        }
        variants = [
            record(fault_id, {worker: {"undo": [fill]}}),  # the path
            record(fault_id, {worker: {"undo": [{"op": "stop-helpers", "comment": "chaoskit:x"}]}}, owner=text[:60]),
            record(fault_id, {worker: {"undo": [{"op": "start-kubelet"}]}}, namespaces=[text]),
        ]
        body = variants[i % len(variants)]
        body["spec"]["undo"] = json.dumps({"node": text, "comment": "chaoskit:x"})
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, body)
        names.append(body["metadata"]["name"])
    return names


@pytest.fixture
def evil(kube, agent: str) -> Any:
    """Plants the records (see :func:`planted`) on demand, and removes them after the test."""
    names: list[str] = []

    def plant(worker: str) -> list[str]:
        names.extend(planted(kube, worker))
        return names

    yield plant
    for name in names:
        try:
            kube.custom.delete_namespaced_custom_object(GROUP, VERSION, INJECTOR_NAMESPACE, PLURAL, name)
        except ApiException:
            pass


def test_planted_records_with_shell_text_are_refused_by_agents_and_sweeps_and_valid_ones_beside_them_are_undone(
    cluster, kube, agent: str, web: Web, client: str, tmp_path: Path, evil: Any
) -> None:
    worker = sorted(n.metadata.name for n in kube.nodes() if "worker" in n.metadata.name)[0]
    assert markers(cluster) == []
    # A valid fault, held by a run through the agent, beside which the records are planted.
    marker = tmp_path / "held"
    fault = f'chaos.partition("{web.namespace}", "role=client", peer_selector="app=web", max_share=1.0)'
    proc, _ = machine(
        tmp_path,
        "runner",
        f"""
        import pathlib, time

        def test_hold(chaos):
            with {fault}:
                pathlib.Path("{marker}").write_text("held")
                time.sleep(300)
        """,
        "--chaos-injector",
        "agent",
    )
    wait_for_file(marker, proc)
    assert scan(cluster.name, str(cluster.kubeconfig)).rules
    names = evil(worker)
    nodes = len(node_containers(cluster))
    for name in names:  # every agent reads each record and refuses it, the reason in its status
        refused = await_marks(kube, name, "refused", nodes)
        assert all(r["reason"] for r in refused.values()), refused
        print(name, "refused:", next(iter(refused.values()))["reason"])

    proc.kill()  # the valid fault's owner dies: the agents undo it beside the planted records
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while scan(cluster.name, str(cluster.kubeconfig)).rules:
        assert time.monotonic() < deadline, "the agents did not undo the valid fault"
        time.sleep(1)

    # The sweeps refuse the planted records, naming each, and run nothing; the valid one is proven and removed.
    deadline = time.monotonic() + 60
    while True:  # once the owner's lease is expired by the runner's clock too (it allows for clock skew)
        cleaned = cleanup_elsewhere(cluster, tmp_path, f"elsewhere-{time.monotonic():.0f}")
        said = cleaned.stdout + cleaned.stderr
        if "left alone" not in said or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert cleaned.returncode == 1 and "1 fault(s) undone" in said, said
    assert all(name in said for name in names) and said.count("refused, nothing of it run") == len(names), said
    aborted = chaoskit("abort", "--name", cluster.name, timeout=300, cache=tmp_path / "abort")
    assert (aborted.stdout + aborted.stderr).count("refused, nothing of it run") == len(names), aborted
    session, _ = machine(tmp_path, "session", "def test_nothing(cluster):\n    pass\n")
    started, _ = session.communicate(timeout=300)
    # pytest prints a setup error in its ERRORS section and again in the short summary (width permitting):
    # count the records named as refused in the first, the session's own failure text.
    failure = started.split("short test summary info")[0]
    refused_named = [
        n for n in names if f"{n.removeprefix('chaoskit-fault-')}: its record in the cluster is refused" in failure
    ]
    assert session.returncode != 0 and refused_named == names, started
    assert failure.count("refused, nothing of it run") == len(names), started
    assert markers(cluster) == []
    left = scan(cluster.name, str(cluster.kubeconfig))
    assert left.empty() and sorted(left.fault_records) == sorted(names), left
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)


def restart_count(kube, pod: str) -> int:
    statuses = kube.core.read_namespaced_pod(pod, INJECTOR_NAMESPACE).status.container_statuses or []
    return sum(s.restart_count for s in statuses if s.ready)


def agent_pod(kube, node: str) -> str:
    pods = [p for p in kube.pods(INJECTOR_NAMESPACE, INJECTOR_SELECTOR) if p.spec.node_name == node]
    running = [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return running[0] if running else ""


def test_a_partition_held_through_the_agent_survives_its_agent_pod_deleted_restarted_and_rolled_to_a_new_image(
    cluster, kube, agent: str, web: Web, client: str, tmp_path: Path
) -> None:
    marker, release = tmp_path / "held", tmp_path / "release"
    fault = f'chaos.partition("{web.namespace}", "app=web", count=1, max_share=1.0)'
    proc, _ = machine(
        tmp_path,
        "runner",
        f"""
        import pathlib, time

        def test_hold(chaos):
            with {fault} as record:
                pathlib.Path("{marker}").write_text(record.targets[0])
                deadline = time.monotonic() + 240
                while not pathlib.Path("{release}").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
            print("PROOF", record.undo_proof)
        """,
        "--chaos-injector",
        "agent",
    )
    target = wait_for_file(marker, proc).split("/")[-1]
    node = kube.core.read_namespaced_pod(target, web.namespace).spec.node_name
    before = agent_pod(kube, node)
    assert before and scan(cluster.name, str(cluster.kubeconfig)).rules

    kube.core.delete_namespaced_pod(before, INJECTOR_NAMESPACE)  # the agent pod on the target's node
    deadline = time.monotonic() + 90
    while agent_pod(kube, node) in ("", before):
        assert time.monotonic() < deadline, "no replacement agent pod"
        time.sleep(0.5)
    replaced = agent_pod(kube, node)
    kube.wait_whole(INJECTOR_NAMESPACE, INJECTOR_NAME, "DaemonSet", timeout=120)
    # The agent restarted in place: its process killed on the node, the kubelet starts its container again.
    restarts = restart_count(kube, replaced)
    subprocess.run(["docker", "exec", node, "pkill", "-KILL", "-f", "chaoskit.agent.injector"], check=True, timeout=30)
    deadline = time.monotonic() + 90
    while restart_count(kube, replaced) == restarts or agent_pod(kube, node) != replaced:
        assert time.monotonic() < deadline, "the agent's container was not restarted"
        time.sleep(0.5)
    # The DaemonSet rolled to a new image: the same bits under a new tag, tagged in each node's containerd.
    rolled = f"{agent}-rolled{uuid.uuid4().hex[:4]}"
    for name in node_containers(cluster):
        tag = ["ctr", "-n", "k8s.io", "images", "tag", f"docker.io/{agent}", f"docker.io/{rolled}"]
        subprocess.run(["docker", "exec", name, *tag], check=True, capture_output=True, timeout=60)
    image = {"spec": {"template": {"spec": {"containers": [{"name": "injector", "image": rolled}]}}}}
    kube.apps.patch_namespaced_daemon_set(INJECTOR_NAME, INJECTOR_NAMESPACE, image)
    deadline = time.monotonic() + 120
    while agent_pod(kube, node) in ("", replaced):
        assert time.monotonic() < deadline, "the DaemonSet did not roll"
        time.sleep(0.5)
    kube.wait_whole(INJECTOR_NAMESPACE, INJECTOR_NAME, "DaemonSet", timeout=120)
    assert scan(cluster.name, str(cluster.kubeconfig)).rules, "the rollout alone undid the fault"
    running = kube.core.read_namespaced_pod(agent_pod(kube, node), INJECTOR_NAMESPACE).spec.containers[0].image
    assert running == rolled, running

    release.write_text("go")
    output, _ = proc.communicate(timeout=300)
    injector.install(cluster, kube)  # back to the image every other test uses
    for name in node_containers(cluster):
        untag = ["ctr", "-n", "k8s.io", "images", "rm", f"docker.io/{rolled}"]
        subprocess.run(["docker", "exec", name, *untag], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, output
    assert "PROOF no rule with comment" in output, output
    after = scan(cluster.name, str(cluster.kubeconfig))
    assert after.empty() and after.fault_records == [], after
    probe_eventually(kube, web.namespace, client, f"http://web.{web.namespace}/", within=30)
