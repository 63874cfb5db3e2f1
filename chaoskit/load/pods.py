"""Load workers as pods: a Deployment of Locust workers in the cluster, each reached through a tunnel.

For an ``in_cluster`` load (:class:`chaoskit.load.LoadSpec`), :class:`WorkerPods`
creates, in ``chaoskit-system``:

* a ConfigMap ``chaoskit-load-ID`` with the worker's configuration (the spec,
  role ``pod``) and the locustfile, if the spec has one;
* a Deployment ``chaoskit-load-ID`` of N pods on chaoskit's load image
  (:func:`chaoskit.provision.images.build_load_image`: the base image with
  Locust), each running ``python3 -m chaoskit.load.worker --config FILE`` as
  user 65534, with no service account token, no capabilities, a read-only root
  filesystem and no privilege escalation.

Both are owned by the run's owner Lease (``ownerReferences``), so when a
killed run's Lease is swept the garbage collector removes them too.

Once every pod is ready, one port-forward per pod (:mod:`chaoskit.adapters.portforward`)
reaches the pod's own 127.0.0.1:5557, and the master carries its Locust
connection through it (:mod:`chaoskit.load.distributed`). Leaving the block
closes the forwards, deletes both objects and waits until the pods are gone.

The image: on kind it is built here and loaded into the nodes; elsewhere,
build it (``chaoskit image load-worker``), push it to a registry the cluster
pulls from and name it in ``CHAOSKIT_LOAD_IMAGE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, Protocol

from chaoskit import targets
from chaoskit.adapters.kube import Kube
from chaoskit.adapters.portforward import port_forward
from chaoskit.adapters.shell import warn
from chaoskit.errors import ClusterError, UsageError
from chaoskit.load.spec import LoadError, LoadSpec
from chaoskit.load.wire import TUNNEL_PORT

NAMESPACE = "chaoskit-system"
CONFIG_DIR = "/etc/chaoskit-load"
LABEL = "chaoskit.io/load"
IMAGE_ENV = "CHAOSKIT_LOAD_IMAGE"
READY_TIMEOUT_S = 180.0
GONE_TIMEOUT_S = 60.0


class LoadCluster(Protocol):
    """What the worker pods need of the cluster: its name, whether it is kind, and image loading."""

    @property
    def name(self) -> str: ...

    @property
    def is_kind(self) -> bool: ...

    def load_image(self, image: str) -> tuple[str, ...]: ...


def worker_image(cluster: LoadCluster) -> str:
    """The image the worker pods run: ``CHAOSKIT_LOAD_IMAGE`` when set, else chaoskit's, built and loaded
    into a kind cluster's nodes."""
    named = os.environ.get(IMAGE_ENV)
    if named:
        return named
    if not cluster.is_kind:
        raise UsageError(
            f"an in_cluster load needs its worker image in a registry cluster {cluster.name!r} pulls from: build "
            f"it with 'chaoskit image load-worker', push it, and name it in {IMAGE_ENV}"
        )
    from chaoskit.provision.images import build_load_image

    image = build_load_image()
    cluster.load_image(image)
    return image


class WorkerPods:
    """Where an ``in_cluster`` load's workers run; see the module docstring."""

    def __init__(self, kube: Kube, cluster: LoadCluster, owner: Any = None) -> None:
        self.kube = kube
        self.cluster = cluster
        self.owner = owner
        """The run's owner Lease as ``(name, uid)``, or None to look it up (:func:`chaoskit.state.leases.owner`)."""

    def _owner_reference(self) -> dict[str, Any]:
        if self.owner is None:
            from chaoskit.state import leases

            name = leases.owner(self.cluster).ensure(self.kube)  # type: ignore[arg-type]
            lease = self.kube.lease(name, NAMESPACE)
            if lease is None:
                raise ClusterError(f"the run's owner Lease {NAMESPACE}/{name} is gone")
            self.owner = (name, lease["metadata"]["uid"])
        name, uid = self.owner
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "name": name, "uid": uid}

    @contextlib.contextmanager
    def workers(self, spec: LoadSpec, count: int) -> Iterator[list[tuple[str, int]]]:
        """``count`` worker pods for the block; yield (pod, local port of its tunnel) for each."""
        image = worker_image(self.cluster)
        name = f"chaoskit-load-{uuid.uuid4().hex[:8]}"
        objects = manifests(name, spec, count, image, self._owner_reference())
        with contextlib.ExitStack() as stack:
            stack.callback(self._remove, name)
            self.kube.apply(objects)
            try:
                self.kube.wait_whole(NAMESPACE, name, "Deployment", timeout=READY_TIMEOUT_S)
            except ClusterError as exc:
                raise LoadError(f"the load's {count} worker pods did not start: {exc}{self._why_not(name)}") from None
            pods = self._ready_pods(name, count)
            tunnels = []
            for pod in pods:
                port = stack.enter_context(port_forward(self.kube, NAMESPACE, f"pod/{pod}", TUNNEL_PORT))
                tunnels.append((pod, port))
            yield tunnels

    def _ready_pods(self, name: str, count: int) -> list[str]:
        pods = [
            p
            for p in self.kube.pods(NAMESPACE, f"{LABEL}={name}")
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        ]
        if len(pods) < count:
            raise LoadError(f"only {len(pods)} of the load's {count} worker pods are ready")
        return sorted(p.metadata.name for p in pods)[:count]

    def _why_not(self, name: str) -> str:
        """What the worker pods' containers said when they ended (their last log lines), or waited on."""
        said = []
        for pod in self.kube.pods(NAMESPACE, f"{LABEL}={name}"):
            for status in pod.status.container_statuses or []:
                ended = status.last_state.terminated if status.last_state else None
                ended = ended or (status.state.terminated if status.state else None)
                waiting = status.state.waiting if status.state else None
                if ended is not None:
                    said.append(f"{pod.metadata.name} exited {ended.exit_code}: {(ended.message or '').strip()[-500:]}")
                elif waiting is not None:
                    said.append(f"{pod.metadata.name} waits: {waiting.reason} {waiting.message or ''}".strip())
        return "; " + "; ".join(said) if said else ""

    def _remove(self, name: str) -> None:
        """Delete the Deployment and the ConfigMap and wait (bounded) for the pods to go. Pods still there
        after :data:`GONE_TIMEOUT_S` (on a node a fault holds) are left to the garbage collector with a
        warning: the load's result must not be lost to them."""
        self.kube.delete("Deployment", name, NAMESPACE, api_version="apps/v1")
        self.kube.delete("ConfigMap", name, NAMESPACE)
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while left := self.kube.pods(NAMESPACE, f"{LABEL}={name}"):
            if time.monotonic() > deadline:
                warn(
                    f"{len(left)} load worker pod(s) ({LABEL}={name}) still there {GONE_TIMEOUT_S:g} s after their "
                    "Deployment was deleted; the cluster removes them once their node answers"
                )
                return
            time.sleep(0.5)


def manifests(name: str, spec: LoadSpec, count: int, image: str, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """The ConfigMap and the Deployment of ``count`` worker pods (plain data, for tests and for review)."""
    fields = asdict(spec)
    # The pod checks its spec again, without this process's session allowances: hand them over.
    fields["allow_targets"] = [*spec.allow_targets, *targets.granted()]
    data: dict[str, str] = {}
    if spec.locustfile is not None:
        with open(spec.locustfile) as file:
            data["locustfile.py"] = file.read()
        fields["locustfile"] = f"{CONFIG_DIR}/locustfile.py"
    data["config.json"] = json.dumps({"role": "pod", "spec": fields, "workers": count}, indent=1)
    labels = {"app.kubernetes.io/name": "chaoskit-load", "app.kubernetes.io/managed-by": "chaoskit", LABEL: name}
    metadata = {"name": name, "namespace": NAMESPACE, "labels": labels, "ownerReferences": [owner]}
    container = {
        "name": "worker",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "args": ["--config", f"{CONFIG_DIR}/config.json"],
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": {
                "replicas": count,
                "selector": {"matchLabels": {LABEL: name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 5,
                        "containers": [container],
                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                    },
                },
            },
        },
    ]
