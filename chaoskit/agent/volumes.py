"""Node-pinned local persistent volumes, provisioned by an agent on every node.

kind's fallback StorageClass (``kubernetes.io/host-path``) gives a claim a
directory on whichever node its pod happens to start, with no node affinity:
a StatefulSet pod that moves to another node silently starts on an empty
volume. This agent is the air-gapped cluster's provisioner instead, in the
manner of kind's local-path-provisioner, whose image cannot be had here.

One instance runs on every node (a DaemonSet), with the node's volume
directory (:data:`BASE_DIR`) mounted at the same path. It serves the
StorageClasses whose provisioner is :data:`PROVISIONER`; they bind
``WaitForFirstConsumer``, so the scheduler first picks a node for the pod and
writes it into the claim's ``volume.kubernetes.io/selected-node`` annotation.
The agent of that node, and only that one, then:

* makes ``BASE_DIR/pvc-<claim uid>`` (mode 0777, so pods that do not run as
  root can write) and creates a PersistentVolume for it: a ``local`` volume
  with a required node affinity on this node's ``kubernetes.io/hostname``, the
  claim's capacity and access modes, pre-bound to the claim by ``claimRef``
  (namespace, name and uid) so the PV controller binds exactly that claim;
* for such a volume that is ``Released`` under reclaim policy ``Delete``,
  removes the directory, then deletes the PersistentVolume (in that order, so a
  directory that cannot be removed leaves its volume behind as the record, and
  the next pass tries again).

A ``local`` volume rather than ``hostPath``: the kubelet refuses to start a
pod whose local directory is missing, where a hostPath volume would quietly
create an empty one. Capacity is recorded, not enforced (a directory has no
quota).

The decisions are pure functions of the claims, volumes and classes
(:func:`plan`). The agent keeps a cache of each collection from a list and a
watch (one thread each, relisting every :data:`RESYNC_SECONDS`), and
reconciles whenever one changes and at every resync. Every action is
idempotent: a volume's name is derived from its claim's uid, so a second
create is a 409 and is ignored; a delete re-reads the volume first and is
conditional on its uid.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaoskit.agent.kubeapi import ApiError, KubeApi, Obj

PROVISIONER = "chaoskit.io/local-volume"
"""The provisioner name of the StorageClasses this agent serves."""
BASE_DIR = "/var/lib/chaoskit/volumes"
"""The node directory that holds every volume, one subdirectory each (kind gives each node's /var a Docker
volume of its own, so volumes outlive a restart of the node container)."""
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
HOSTNAME_LABEL = "kubernetes.io/hostname"
NODE_LABEL = "chaoskit.io/volume-node"
"""A label on each volume naming its node, for people (``kubectl get pv -l``); the node affinity decides."""
RESYNC_SECONDS = 30
READY_FILE = "/tmp/chaoskit-volumes-ready"
"""Written once every cache has been listed; the pod's readiness probe tests it."""


# --- decisions (pure) -------------------------------------------------------------


def volume_name(claim: Obj) -> str:
    """The name of the volume provisioned for ``claim``: ``pvc-<its uid>``."""
    return f"pvc-{claim['metadata']['uid']}"


def served_classes(classes: list[Obj]) -> dict[str, Obj]:
    """The StorageClasses of :data:`PROVISIONER`, by name."""
    return {c["metadata"]["name"]: c for c in classes if c.get("provisioner") == PROVISIONER}


def unsupported(claim: Obj) -> str | None:
    """Why a claim of a served class cannot be provisioned (None: it can)."""
    spec = claim.get("spec") or {}
    if spec.get("volumeMode") == "Block":
        return "volumeMode Block is not supported: a local directory is a filesystem volume"
    if spec.get("selector"):
        return "a claim with a selector cannot be dynamically provisioned"
    if spec.get("dataSource"):
        return "a claim with a dataSource (clone or snapshot) cannot be provisioned as an empty directory"
    return None


def wants_volume(claim: Obj, classes: dict[str, Obj], node: str) -> bool:
    """Whether ``claim`` awaits a volume from this node's agent.

    It must name a served class, be unbound (no ``spec.volumeName``), not be
    going away, and carry the scheduler's choice of this node.
    """
    meta = claim.get("metadata") or {}
    spec = claim.get("spec") or {}
    return (
        spec.get("storageClassName") in classes
        and not spec.get("volumeName")
        and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
        and not meta.get("deletionTimestamp")
        and (meta.get("annotations") or {}).get(SELECTED_NODE) == node
    )


def volume_for(claim: Obj, storage_class: Obj, node: str, hostname: str, base_dir: str = BASE_DIR) -> Obj:
    """The PersistentVolume for ``claim`` on this node, pre-bound to it."""
    meta = claim["metadata"]
    spec = claim.get("spec") or {}
    name = volume_name(claim)
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    term = {"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": [hostname]}]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "labels": {NODE_LABEL: node, "app.kubernetes.io/managed-by": "chaoskit"},
            "annotations": {PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": storage_class["metadata"]["name"],
            "volumeMode": "Filesystem",
            "local": {"path": f"{base_dir}/{name}"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [term]}},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def pinned_hostnames(volume: Obj) -> set[str]:
    """The hostnames a volume's required node affinity allows (empty: none is stated)."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {}
    names: set[str] = set()
    for term in required.get("nodeSelectorTerms") or []:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == HOSTNAME_LABEL and expression.get("operator") == "In":
                names.update(expression.get("values") or [])
    return names


def is_ours_here(volume: Obj, hostname: str) -> bool:
    """Whether ``volume`` was provisioned by this agent's kind and is pinned to this node alone."""
    annotations = (volume.get("metadata") or {}).get("annotations") or {}
    return annotations.get(PROVISIONED_BY) == PROVISIONER and pinned_hostnames(volume) == {hostname}


def volume_path(volume: Obj, base_dir: str = BASE_DIR) -> str | None:
    """The volume's directory, if it is the one this agent makes for it (``base_dir/<name>``); else None."""
    path = ((volume.get("spec") or {}).get("local") or {}).get("path")
    expected = f"{base_dir}/{volume['metadata']['name']}"
    return expected if path == expected else None


def should_delete(volume: Obj, hostname: str, base_dir: str = BASE_DIR) -> bool:
    """Whether ``volume`` is one of this node's, Released, to be deleted with its directory."""
    spec = volume.get("spec") or {}
    return (
        is_ours_here(volume, hostname)
        and (volume.get("status") or {}).get("phase") == "Released"
        and spec.get("persistentVolumeReclaimPolicy") == "Delete"
        and volume_path(volume, base_dir) is not None
    )


@dataclass
class Plan:
    """What one reconcile pass does."""

    create: list[tuple[Obj, Obj]] = field(default_factory=list)
    """(claim, the volume to create for it)."""
    refuse: list[tuple[Obj, str]] = field(default_factory=list)
    """(claim, why it cannot be provisioned)."""
    delete: list[Obj] = field(default_factory=list)
    """Released volumes to delete, directory first."""


def plan(
    claims: list[Obj], volumes: list[Obj], classes: list[Obj], node: str, hostname: str, base_dir: str = BASE_DIR
) -> Plan:
    """Everything this node's agent should do, given the cluster's claims, volumes and classes."""
    served = served_classes(classes)
    existing = {v["metadata"]["name"] for v in volumes}
    claimed = {((v.get("spec") or {}).get("claimRef") or {}).get("uid") for v in volumes}
    result = Plan()
    for claim in claims:
        if not wants_volume(claim, served, node):
            continue
        if volume_name(claim) in existing or claim["metadata"]["uid"] in claimed:
            continue  # made already; the PV controller has yet to bind it
        reason = unsupported(claim)
        if reason:
            result.refuse.append((claim, reason))
            continue
        storage_class = served[claim["spec"]["storageClassName"]]
        result.create.append((claim, volume_for(claim, storage_class, node, hostname, base_dir)))
    result.delete = [v for v in volumes if should_delete(v, hostname, base_dir)]
    return result


# --- the agent --------------------------------------------------------------------


class Cache:
    """One collection, kept from a list and a watch by a thread of its own."""

    def __init__(self, api: KubeApi, path: str, changed: threading.Event) -> None:
        self.api = api
        self.path = path
        self.changed = changed
        self.lock = threading.Lock()
        self.items: dict[tuple[str, str], Obj] = {}
        self.synced = threading.Event()

    def snapshot(self) -> list[Obj]:
        with self.lock:
            return list(self.items.values())

    def follow(self) -> None:
        while True:
            try:
                listing = self.api.list(self.path)
                with self.lock:
                    self.items = {_key(o): o for o in listing["items"]}
                self.synced.set()
                self.changed.set()
                for event in self.api.watch(self.path, listing["metadata"]["resourceVersion"], RESYNC_SECONDS):
                    obj = event.get("object") or {}
                    if event.get("type") not in ("ADDED", "MODIFIED", "DELETED") or "name" not in obj.get(
                        "metadata", {}
                    ):
                        break  # an ERROR (410: the version is too old): list again
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.items.pop(_key(obj), None)
                        else:
                            self.items[_key(obj)] = obj
                    self.changed.set()
            except Exception as exc:  # the API server restarts; keep what we have and list again
                log(f"{self.path}: error {exc!r}; retrying in 2 s")
                time.sleep(2)


class VolumeAgent:
    """Provisions and deletes this node's local volumes."""

    def __init__(self, api: KubeApi, node: str, hostname: str, base_dir: str = BASE_DIR) -> None:
        self.api = api
        self.node = node
        self.hostname = hostname
        self.base_dir = base_dir
        self.changed = threading.Event()
        self.claims = Cache(api, "/api/v1/persistentvolumeclaims", self.changed)
        self.volumes = Cache(api, "/api/v1/persistentvolumes", self.changed)
        self.classes = Cache(api, "/apis/storage.k8s.io/v1/storageclasses", self.changed)
        self.failures: dict[str, str] = {}
        """The last failure told of each claim (by uid), so one is logged and recorded once, not every pass."""

    def reconcile(self) -> None:
        todo = plan(
            self.claims.snapshot(),
            self.volumes.snapshot(),
            self.classes.snapshot(),
            self.node,
            self.hostname,
            self.base_dir,
        )
        for claim, volume in todo.create:
            self._create(claim, volume)
        for claim, reason in todo.refuse:
            self._failed(claim, reason)
        for volume in todo.delete:
            self._delete(volume)

    def _create(self, claim: Obj, volume: Obj) -> None:
        name = volume["metadata"]["name"]
        directory = Path(volume["spec"]["local"]["path"])
        started = time.monotonic()
        try:
            directory.mkdir(mode=0o777, exist_ok=True)
            directory.chmod(0o777)  # mkdir's mode is cut by the umask
        except OSError as exc:
            self._failed(claim, f"cannot make {directory} on node {self.node}: {exc}")
            return
        try:
            self.api.create("/api/v1/persistentvolumes", volume)
        except ApiError as exc:
            if exc.status != 409:  # 409: made by an earlier pass
                self._failed(claim, f"cannot create volume {name}: {exc}")
            return
        except OSError as exc:  # no answer (URLError, timeout): the next pass tries again
            log(f"cannot create volume {name} for {_claim_name(claim)}: {exc!r}")
            return
        took = time.monotonic() - started
        self.failures.pop(claim["metadata"]["uid"], None)
        log(f"provisioned {name} ({directory}) for {_claim_name(claim)} in {took * 1000:.0f} ms")
        self._event(claim, "Normal", "ProvisioningSucceeded", f"volume {name} at {directory} on node {self.node}")

    def _failed(self, claim: Obj, reason: str) -> None:
        uid = claim["metadata"]["uid"]
        if self.failures.get(uid) != reason:
            self.failures[uid] = reason
            log(f"cannot provision {_claim_name(claim)}: {reason}")
            self._event(claim, "Warning", "ProvisioningFailed", reason)

    def _delete(self, volume: Obj) -> None:
        name = volume["metadata"]["name"]
        try:
            current = self.api.get(f"/api/v1/persistentvolumes/{name}")
        except ApiError as exc:
            if exc.status != 404:
                log(f"cannot read volume {name}: {exc}")
            return
        if not should_delete(current, self.hostname, self.base_dir):
            return  # the cache was behind: it changed meanwhile
        directory = volume_path(current, self.base_dir)
        assert directory is not None  # should_delete checked it
        if current["metadata"].get("deletionTimestamp") and not os.path.lexists(directory):
            return  # deleted by an earlier pass; its finalizer is yet to go
        try:
            shutil.rmtree(directory)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log(f"cannot remove {directory} of volume {name}: {exc}; keeping the volume and trying again")
            return
        try:
            self.api.delete(f"/api/v1/persistentvolumes/{name}", uid=current["metadata"]["uid"])
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone already, or another object by now
                log(f"cannot delete volume {name}: {exc}")
                return
        log(f"deleted volume {name} and {directory}")

    def _event(self, claim: Obj, kind: str, reason: str, message: str) -> None:
        meta = claim["metadata"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": "chaoskit-volumes", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.create(f"/api/v1/namespaces/{meta['namespace']}/events", event)
        except Exception as exc:  # an event is a courtesy; provisioning does not hang on it
            log(f"cannot record event {reason} on {_claim_name(claim)}: {exc!r}")

    def run(self) -> None:
        for cache in (self.claims, self.volumes, self.classes):
            threading.Thread(target=cache.follow, name=cache.path, daemon=True).start()
        for cache in (self.claims, self.volumes, self.classes):
            cache.synced.wait()
        Path(READY_FILE).touch()
        log(f"serving {PROVISIONER} on node {self.node} (hostname {self.hostname}) from {self.base_dir}")
        while True:
            self.changed.wait(RESYNC_SECONDS)
            self.changed.clear()
            try:
                self.reconcile()
            except Exception as exc:  # one bad pass must not stop the agent: the next retries
                log(f"reconcile failed: {exc!r}")
                time.sleep(1)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _claim_name(claim: Obj) -> str:
    return f"claim {claim['metadata']['namespace']}/{claim['metadata']['name']}"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} volumes: {message}", flush=True)


def node_hostname(api: KubeApi, node: str) -> str:
    """This node's ``kubernetes.io/hostname`` label (what the volumes' node affinity names)."""
    while True:
        try:
            labels = api.get(f"/api/v1/nodes/{node}")["metadata"].get("labels") or {}
            return str(labels.get(HOSTNAME_LABEL) or node)
        except Exception as exc:
            log(f"cannot read node {node}: {exc!r}; retrying in 2 s")
            time.sleep(2)


def main() -> int:
    api = KubeApi()
    node = os.environ["NODE_NAME"]
    base_dir = os.environ.get("VOLUMES_DIR", BASE_DIR)
    Path(base_dir).mkdir(parents=True, exist_ok=True)
    VolumeAgent(api, node, node_hostname(api, node), base_dir).run()
    return 1


if __name__ == "__main__":
    sys.exit(main())
