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
  exist here, is removed.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "kube-system"
AGENT_ACCOUNT = "chaoskit-agent"
NETD = "chaoskit-netd"
DNS = "chaoskit-dns"
MANAGED_BY = {"app.kubernetes.io/managed-by": "chaoskit"}


def manifests(agent_image: str) -> list[dict[str, Any]]:
    """Every object of the add-ons, for :meth:`Kube.apply`."""
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
        _dns(agent_image),
    ]


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
                    "nodeSelector": {"node-role.kubernetes.io/master": ""},
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
