"""The in-cluster add-ons of an air-gapped cluster: pod networking and DNS.

Stock kind ships kindnetd and CoreDNS as images; neither can be had here. Both
are replaced by :mod:`chaoskit.agent`, running from the agent image that is
preloaded into every node:

* ``chaoskit-netd``, a host-network DaemonSet on every node (it tolerates every
  taint, since nodes are NotReady until it has written their CNI config);
* ``chaoskit-dns``, dnsmasq fed from the API, behind kubeadm's own
  ``kube-dns`` Service (10.96.0.10, the address every kubelet hands its pods).
  It runs on the control-plane node, which no chaoskit fault stops, so DNS
  survives worker failures. kubeadm's CoreDNS Deployment, whose image does not
  exist here, is removed;
* ``chaoskit-volumes``, a DaemonSet on every node that provisions node-pinned
  local volumes (:mod:`chaoskit.agent.volumes`) for the default StorageClass
  ``standard``. kind made ``standard`` at cluster creation with its fallback
  provisioner ``kubernetes.io/host-path``, whose volumes follow the pod to any
  node empty; a StorageClass's provisioner cannot be changed, so
  :func:`install_storage_class` deletes that class and creates ours. Claims
  bound before keep their volumes; only new claims get local ones. The agent
  runs under an account of its own, as it alone may create and delete
  PersistentVolumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chaoskit.adapters.kube import CONTROL_PLANE_LABELS
from chaoskit.adapters.shell import say
from chaoskit.agent.volumes import BASE_DIR as VOLUMES_DIR
from chaoskit.agent.volumes import PROVISIONER as VOLUME_PROVISIONER
from chaoskit.agent.volumes import READY_FILE as VOLUMES_READY_FILE

if TYPE_CHECKING:
    from chaoskit.adapters.kube import Kube

NAMESPACE = "kube-system"
AGENT_ACCOUNT = "chaoskit-agent"
NETD = "chaoskit-netd"
DNS = "chaoskit-dns"
VOLUMES = "chaoskit-volumes"
STORAGE_CLASS = "standard"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
MANAGED_BY = {"app.kubernetes.io/managed-by": "chaoskit"}


def manifests(agent_image: str, dns: bool = True) -> list[dict[str, Any]]:
    """Every object of the add-ons, for :meth:`Kube.apply` (``dns``: with chaoskit-dns, for a node image
    without CoreDNS)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": AGENT_ACCOUNT, "namespace": NAMESPACE, "labels": MANAGED_BY},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": AGENT_ACCOUNT, "labels": MANAGED_BY},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes", "services", "endpoints"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": AGENT_ACCOUNT, "labels": MANAGED_BY},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_ACCOUNT},
            "subjects": [{"kind": "ServiceAccount", "name": AGENT_ACCOUNT, "namespace": NAMESPACE}],
        },
        _netd(agent_image),
        *([_dns(agent_image)] if dns else []),
        *_volumes_rbac(),
        _volumes(agent_image),
    ]


def storage_class() -> dict[str, Any]:
    """The default StorageClass: node-pinned local volumes, bound once the pod's node is chosen."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": MANAGED_BY, "annotations": {DEFAULT_CLASS: "true"}},
        "provisioner": VOLUME_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


IMMUTABLE_CLASS_FIELDS = ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode")


def class_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether ``current`` differs from ``wanted`` in a field the API will not change (so it must be recreated)."""
    return any(current.get(key) != wanted.get(key) for key in IMMUTABLE_CLASS_FIELDS)


def install_storage_class(kube: Kube) -> None:
    """Make ``standard`` the local-volume class: create it, or replace kind's host-path one."""
    wanted = storage_class()
    current = kube.get("StorageClass", STORAGE_CLASS, api_version="storage.k8s.io/v1")
    if current is not None and class_differs(current, wanted):
        say(
            f"replacing StorageClass {STORAGE_CLASS} (provisioner {current.get('provisioner')}) with "
            f"node-pinned local volumes ({VOLUME_PROVISIONER}); volumes bound before keep theirs"
        )
        kube.delete("StorageClass", STORAGE_CLASS, api_version="storage.k8s.io/v1")
    kube.apply([wanted])


def _netd(image: str) -> dict[str, Any]:
    labels = {"app": NETD, **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NETD, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": NETD}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "serviceAccountName": AGENT_ACCOUNT,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "netd",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "chaoskit.agent.netd"],
                            "env": [
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "CNI_DIR", "value": "/host/etc/cni/net.d"},
                            ],
                            "securityContext": {"privileged": True},
                            "volumeMounts": [{"name": "cni", "mountPath": "/host/etc/cni/net.d"}],
                            "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}},
                        }
                    ],
                    "volumes": [{"name": "cni", "hostPath": {"path": "/etc/cni/net.d", "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }


def _dns(image: str) -> dict[str, Any]:
    labels = {"app": DNS, "k8s-app": "kube-dns", **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DNS, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": DNS}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": AGENT_ACCOUNT,
                    "priorityClassName": "system-cluster-critical",
                    # The control plane by either role label.
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {"matchExpressions": [{"key": label, "operator": "Exists"}]}
                                    for label in CONTROL_PLANE_LABELS
                                ]
                            }
                        }
                    },
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "dns",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "chaoskit.agent.dns"],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "exec": {"command": ["test", "-s", "/run/chaoskit-dns/cluster"]},
                                "periodSeconds": 2,
                            },
                            "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
                            "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}},
                        }
                    ],
                },
            },
        },
    }


def _volumes_rbac() -> list[dict[str, Any]]:
    read = ["get", "list", "watch"]
    rules = [
        {"apiGroups": [""], "resources": ["persistentvolumeclaims", "nodes"], "verbs": read},
        {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": [*read, "create", "delete"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": read},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": VOLUMES, "namespace": NAMESPACE, "labels": MANAGED_BY},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": VOLUMES, "labels": MANAGED_BY},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": VOLUMES, "labels": MANAGED_BY},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VOLUMES},
            "subjects": [{"kind": "ServiceAccount", "name": VOLUMES, "namespace": NAMESPACE}],
        },
    ]


def _volumes(image: str) -> dict[str, Any]:
    labels = {"app": VOLUMES, **MANAGED_BY}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": VOLUMES, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": VOLUMES}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 3}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # Host network: it needs only the API server, not pod networking that may not be up yet.
                    "hostNetwork": True,
                    "serviceAccountName": VOLUMES,
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "volumes",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-m", "chaoskit.agent.volumes"],
                            "env": [
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "VOLUMES_DIR", "value": VOLUMES_DIR},
                            ],
                            "readinessProbe": {
                                "exec": {"command": ["test", "-e", VOLUMES_READY_FILE]},
                                "periodSeconds": 2,
                            },
                            # Mounted at the node's own path, so a volume's path means the same in here.
                            "volumeMounts": [{"name": "volumes", "mountPath": VOLUMES_DIR}],
                            "resources": {"requests": {"cpu": "10m", "memory": "20Mi"}},
                        }
                    ],
                    "volumes": [{"name": "volumes", "hostPath": {"path": VOLUMES_DIR, "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }
