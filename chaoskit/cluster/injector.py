"""The injector agent's objects in a cluster: install, check and remove them.

``chaoskit-injector`` is a DaemonSet in ``chaoskit-system``: one privileged
pod per node, in the host's PID and network namespaces, tolerating every taint
(a NotReady or cordoned node is exactly where a fault's undo must still run).
See :mod:`chaoskit.agent.injector` for what it does.

Privileges, each the least that works, enforced by the API server:

* **The agent's service account** (a Role in ``chaoskit-system``, nothing
  cluster-wide): read the ``faults.chaoskit.io`` records and the owner Leases,
  and patch the records' ``status`` subresource. It cannot create, delete or
  change what a record asks (its spec), nor write any ConfigMap, Secret or
  other object anywhere; acting on its node needs no API right at all.
* **The runner** (``chaoskit-runner``, a ClusterRole installed here for the
  cluster admin to bind to the accounts that run experiments; chaoskit binds
  nothing itself): the workloads, namespaces and Services of the systems under
  test, pod deletes and evictions, node cordons, the records' spec (never
  their status), the owner Leases, ``pods/exec``, and ``pods/portforward``
  (load through a port-forward). Exec into a
  ``chaoskit-injector`` pod is root on that node: bind the role as such.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chaoskit.adapters.kube import POD_SECURITY_ENFORCE
from chaoskit.adapters.nodes import (
    INJECTOR_NAME,
    INJECTOR_NAMESPACE,
    INJECTORS,
    AgentShell,
    DockerShell,
    NodeShell,
)
from chaoskit.adapters.shell import say
from chaoskit.agent.injector import GROUP, PLURAL
from chaoskit.agent.records import crd
from chaoskit.errors import ClusterError, UsageError

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube
    from chaoskit.cluster.base import Cluster

MANAGED_BY = {"app.kubernetes.io/managed-by": "chaoskit"}
PRIVILEGED = {f"pod-security.kubernetes.io/{mode}": "privileged" for mode in ("enforce", "audit", "warn")}
ROLLOUT_TIMEOUT = 180.0


AGENT_RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch"]},
]
"""Everything the agent's service account may do, all of it in ``chaoskit-system``."""
RUNNER_ROLE = "chaoskit-runner"
_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
RUNNER_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["namespaces", "services", "configmaps", "persistentvolumeclaims"], "verbs": _ALL},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["endpoints", "events", "serviceaccounts"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "verbs": _ALL},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _ALL},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": _ALL},
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": _ALL},
]
"""What a runner needs (``chaoskit-runner``); never the records' status, which is the agents' word."""


def runner_role() -> dict[str, Any]:
    """The ``chaoskit-runner`` ClusterRole, for the cluster admin to bind."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": RUNNER_ROLE, "labels": dict(MANAGED_BY)},
        "rules": RUNNER_RULES,
    }


def manifests(image: str) -> list[dict[str, Any]]:
    """Every object of the injector, for :meth:`Kube.apply`: the Fault CRD, the runner's ClusterRole, the
    agent's namespace, account, Role and DaemonSet."""
    labels = {"app": INJECTOR_NAME, **MANAGED_BY}
    meta = {"name": INJECTOR_NAME, "namespace": INJECTOR_NAMESPACE, "labels": labels}
    return [
        crd(),
        runner_role(),
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # Pod Security admission (1.23+) would refuse privileged pods in a namespace labelled otherwise.
            "metadata": {"name": INJECTOR_NAMESPACE, "labels": {**MANAGED_BY, **PRIVILEGED}},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": AGENT_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": INJECTOR_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": INJECTOR_NAME, "namespace": INJECTOR_NAMESPACE}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": INJECTOR_NAME}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": INJECTOR_NAME,
                        # A full node must still run the agent that undoes faults there.
                        "priorityClassName": "system-node-critical",
                        "hostPID": True,
                        "hostNetwork": True,
                        "dnsPolicy": "ClusterFirstWithHostNet",
                        "tolerations": [{"operator": "Exists"}],
                        "terminationGracePeriodSeconds": 2,
                        "containers": [
                            {
                                "name": "injector",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python3", "-m", "chaoskit.agent.injector"],
                                "env": [
                                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
                                ],
                                "securityContext": {"privileged": True},
                                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                            }
                        ],
                    },
                },
            },
        },
    ]


def manifests_yaml(image: str) -> str:
    """:func:`manifests` as one YAML stream, for a cluster admin to review and apply (``chaoskit agent
    manifests``; ``deploy/agent/`` holds it as a kustomize base)."""
    import yaml

    head = (
        "# The chaoskit injector agent: what 'chaoskit agent install' applies. Generated by 'chaoskit agent "
        "manifests';\n# edit the image (or let a kustomization's images: do it), not the objects.\n"
    )
    return head + yaml.safe_dump_all(manifests(image), sort_keys=False, explicit_start=True)


def installed_image(kube: Kube) -> str | None:
    """The image of the installed injector DaemonSet, or None when there is none."""
    current = kube.get("DaemonSet", INJECTOR_NAME, INJECTOR_NAMESPACE, api_version="apps/v1")
    if current is None:
        return None
    return str(current["spec"]["template"]["spec"]["containers"][0]["image"])


def install(cluster: Cluster, kube: Kube, image: str | None = None) -> str:
    """Install (or update) the injector and wait until it runs on every node; return its image.

    On kind the image is built here and loaded into the nodes; any other cluster
    pulls ``image``, which must be given (built by ``chaoskit agent image`` and
    pushed to a registry the cluster pulls from).
    """
    if image is None:
        if not cluster.is_kind:
            raise UsageError(
                f"the {cluster.provider} cluster {cluster.name} cannot be loaded with a local image: build the "
                "injector with 'chaoskit agent image', push it to a registry the cluster pulls from and pass "
                "--image REGISTRY/NAME:TAG"
            )
        from chaoskit.provision import images

        image = images.build_injector_image()
        loaded = cluster.load_image(image)
        if loaded:
            say(f"injector image {image} loaded into {', '.join(loaded)}")
    refuse_a_stricter_namespace(kube)
    before = installed_image(kube)
    kube.apply(manifests(image))
    kube.wait_established(crd()["metadata"]["name"])
    if before != image:
        say(f"injector {image} {'installed' if before is None else 'updated'}; waiting for it on every node")
    try:
        took = kube.wait_whole(INJECTOR_NAMESPACE, INJECTOR_NAME, "DaemonSet", timeout=ROLLOUT_TIMEOUT)
    except ClusterError as exc:
        raise ClusterError(
            f"the injector did not come up on every node: {exc}; see "
            f"'kubectl -n {INJECTOR_NAMESPACE} describe daemonset {INJECTOR_NAME}'"
        ) from None
    if before != image:
        say(f"injector running on every node ({took:.1f} s)")
    return image


def refuse_a_stricter_namespace(kube: Kube) -> None:
    """Refuse to install into an agent namespace that someone made enforce a Pod Security level stricter
    than ``privileged``: applying chaoskit's namespace would relabel it, overriding their policy."""
    labels = kube.namespace_labels(INJECTOR_NAMESPACE)
    level = (labels or {}).get(POD_SECURITY_ENFORCE)
    if level is not None and level != "privileged":
        raise UsageError(
            f"namespace {INJECTOR_NAMESPACE} enforces Pod Security {level!r}, and the injector agent is a "
            "privileged DaemonSet (a privileged container with the node's PID and network namespaces), which that "
            "level refuses; chaoskit does not relabel a namespace against its owner's policy. If the agent may "
            f"run there: kubectl label namespace {INJECTOR_NAMESPACE} {POD_SECURITY_ENFORCE}=privileged "
            "--overwrite, then install again"
        )


def remove(kube: Kube) -> bool:
    """Delete the injector's DaemonSet, Role and account (the namespace and its records stay); whether it was there."""
    found = kube.delete("DaemonSet", INJECTOR_NAME, INJECTOR_NAMESPACE, api_version="apps/v1")
    kube.delete("RoleBinding", INJECTOR_NAME, INJECTOR_NAMESPACE, api_version="rbac.authorization.k8s.io/v1")
    kube.delete("Role", INJECTOR_NAME, INJECTOR_NAMESPACE, api_version="rbac.authorization.k8s.io/v1")
    kube.delete("ServiceAccount", INJECTOR_NAME, INJECTOR_NAMESPACE)
    return found


def default_injector(cluster: Cluster) -> str:
    """``docker`` on kind, ``agent`` anywhere else."""
    return "docker" if cluster.is_kind else "agent"


def select(
    cluster: Cluster,
    kube: Kube,
    injector: str | None = None,
    image: str | None = None,
    *,
    install_agent: bool = True,
    agent_option: str = "--chaos-injector agent",
) -> NodeShell:
    """The way to reach ``cluster``'s nodes by ``injector`` (default: :func:`default_injector`).

    ``agent`` installs (or updates) the injector first: on kind from a local
    build, elsewhere from ``image``, or uses the one installed when no image is
    given. With ``install_agent=False`` (``cleanup`` and ``abort``, which must
    undo at once and never restart the agents under live runs) it only uses an
    installed one: on kind without one, Docker; elsewhere the node-level undos
    then fail one by one, naming the missing agent. ``docker`` is refused on a
    cluster that is not kind.
    """
    chosen = injector or default_injector(cluster)
    if chosen not in INJECTORS:
        raise UsageError(f"injector must be one of {', '.join(INJECTORS)}, not {chosen!r}")
    if chosen == "docker" and not cluster.is_kind:
        raise UsageError(
            f"injector docker reaches the nodes of kind clusters only, and {cluster.name} is a {cluster.provider} "
            f"cluster: use {agent_option} (the default there)"
        )
    shell: NodeShell
    if chosen == "docker":
        shell = DockerShell()
    elif not install_agent:
        if installed_image(kube) is None and cluster.is_kind:
            say(f"no injector agent in {cluster.name}: reaching its nodes through Docker")
            shell = DockerShell()
        else:
            shell = AgentShell(kube)
    else:
        if cluster.is_kind or image is not None or installed_image(kube) is None:
            install(cluster, kube, image)
        shell = AgentShell(kube)
    return shell
