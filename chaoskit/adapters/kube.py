"""The Kubernetes API, through the official client: the only module that imports it.

Waiting for cluster state uses the watch API: a list gives the current state
and a resource version, then a watch from that version delivers every change,
so a condition is seen the moment it becomes true, with no polling interval.

Every request is bounded. The official client waits forever unless a call
passes ``_request_timeout``, and one forgotten argument is enough to hang a
fault's undo on a dead API server; so :class:`Kube` gives every request that
states none :data:`REQUEST_TIMEOUT` seconds (calls that know better, such as
watches, state their own). A request that runs out is a
:class:`~chaoskit.errors.ClusterError` at the caller's level, naming the call.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaoskit.errors import ClusterError, CommandTimedOut, SpecError, UsageError

ApiError = ApiException
"""The API server's answer when it is not 2xx (``.status``, ``.body``), as the calls through :class:`Kube`'s
clients raise it: named here so that only adapters/ imports the kubernetes client."""


def current_context(kubeconfig: Path | None) -> str:
    """The kubeconfig's current context (the default kubeconfig when None)."""
    _, active = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
    return str(active["name"])


Obj = Any
REQUEST_TIMEOUT = 30.0
"""Seconds any API request may take unless its call states otherwise."""
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
"""A control-plane node's role labels: ``control-plane`` since 1.20, ``master`` up to 1.23."""


def _reason(exc: Exception) -> str:
    """An API error in the server's own words (its Status ``message``), not the client's dump of headers; a
    Pod Security refusal also names the fix."""
    body = getattr(exc, "body", None)
    try:
        message = str(json.loads(body)["message"]) if body else str(exc)
    except (ValueError, TypeError, KeyError):
        message = str(exc)
    status = getattr(exc, "status", None)
    if "violates PodSecurity" in message:
        message += f"; the namespace's Pod Security level ({POD_SECURITY_ENFORCE}) refuses it: {POD_SECURITY_FIX}"
    return f"{message} (HTTP {status})" if status else message


def is_control_plane(node: Any) -> bool:
    """Whether a Node object carries a control-plane role label (either name: 1.37 has only ``control-plane``)."""
    return any(label in (node.metadata.labels or {}) for label in CONTROL_PLANE_LABELS)


POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
"""The namespace label Pod Security admission (1.23+, GA in 1.25) enforces: ``privileged``, ``baseline`` or
``restricted``; 1.20 has no Pod Security admission and ignores it."""
REFUSAL_CHECK_S = 2.0
"""How often a wait for a workload looks for pods refused by admission."""
REFUSAL_FRESH_S = 120.0
"""A refusal event counts while repeated within this long (a controller retries a refused pod every few
seconds to a few minutes, backing off)."""
POD_SECURITY_FIX = (
    "make the pods meet that level, or run them in a namespace whose level allows them (in pytest, a test "
    "namespace's level is --chaos-pod-security, or a test's @pytest.mark.chaos_pod_security)"
)
ZONE_LABEL = "topology.kubernetes.io/zone"
"""The well-known label of a node's zone (zone failures take every node that carries a value down)."""
EXEC_CONNECT_TIMEOUT = 30.0
"""Seconds to open an exec stream to a pod (and for any one read from it)."""


FIELD_MANAGER = "chaoskit"
"""The field manager of everything chaoskit applies (``metadata.managedFields``; ``kubectl apply --server-side
--field-manager chaoskit`` updates the same fields)."""


class Kube:
    """API clients bound to one kubeconfig context."""

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        try:
            self.api_client = config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
        except ConfigException as exc:
            where = kubeconfig or "the default kubeconfig"
            raise UsageError(
                f"cannot use context {context!r} of {where}: {exc}; list contexts with 'kubectl config get-contexts'"
            ) from None
        except FileNotFoundError:
            raise UsageError(f"kubeconfig {kubeconfig} does not exist") from None
        _bound_requests(self.api_client, REQUEST_TIMEOUT)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.coordination = client.CoordinationV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.version = client.VersionApi(self.api_client)
        self._known_version: str | None = None

    def close(self) -> None:
        """Close the connection pool (dropped pools leave sockets open until GC)."""
        self.api_client.rest_client.pool_manager.clear()
        self.api_client.close()

    def __enter__(self) -> Kube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_version(self, timeout: float = 10) -> str:
        """The API server's git version; raises ClusterError when it does not answer."""
        try:
            info = self.version.get_code(_request_timeout=timeout)
        except Exception as exc:
            raise ClusterError(f"the API server of context {self.context!r} does not answer: {exc}") from None
        self._known_version = str(info.git_version)
        return self._known_version

    def kubernetes_version(self) -> str:
        """The API server's version, asked once (``v1.37.2``); empty when it does not answer. For a record of
        which cluster a run ran on, where a failure to ask is no reason to fail the run."""
        if self._known_version is None:
            try:
                self.server_version(timeout=5)
            except ClusterError:
                self._known_version = ""  # asked once: a server down does not cost every run 5 s more
        return self._known_version or ""

    def served_version(self, group: str, versions: Iterable[str]) -> str:
        """The first of ``versions`` of API ``group`` the server serves, as ``group/version`` (for example
        ``served_version("policy", ("v1", "v1beta1"))``: ``policy/v1`` since 1.21, ``policy/v1beta1`` before,
        and gone since 1.25). Raises ClusterError when it serves none of them."""
        wanted = tuple(versions)
        try:
            groups: Any = client.ApisApi(self.api_client).get_api_versions()
        except ApiException as exc:
            raise ClusterError(f"cannot list the API groups the server serves: {exc.reason}") from None
        served = {v.version for g in groups.groups if g.name == group for v in g.versions}
        for version in wanted:
            if version in served:
                return f"{group}/{version}"
        raise ClusterError(
            f"the server serves none of {', '.join(f'{group}/{v}' for v in wanted)} "
            f"(it serves {', '.join(sorted(served)) or 'no version of ' + group})"
        )

    def wait_for_default_service_account(self, namespace: str, timeout: float = 30) -> None:
        """Wait until pods can be created in a new namespace.

        Before Kubernetes 1.24 a pod cannot be admitted until the token
        controller has given the ``default`` service account its token secret.
        """
        minor = int("".join(c for c in self.version.get_code(_request_timeout=10).minor if c.isdigit()) or 0)

        def usable(accounts: dict[str, Any]) -> bool:
            default = accounts.get("default")
            return default is not None and (minor >= 24 or bool(default.secrets))

        self.wait_for(
            self.core.list_namespaced_service_account,
            usable,
            timeout,
            f"the default service account of {namespace}",
            namespace=namespace,
        )

    def nodes(self) -> list[Obj]:
        """Every Node object."""
        items: list[Obj] = self.core.list_node().items
        return items

    def pods(self, namespace: str, selector: str | None = None) -> list[Obj]:
        """The pods of a namespace (matching a label selector, if given)."""
        items: list[Obj] = self.core.list_namespaced_pod(namespace, label_selector=selector or "").items
        return items

    def evict(self, name: str, namespace: str, policy_version: str, grace_seconds: int | None, timeout: float) -> None:
        """Ask the Eviction API to evict a pod (``policy/v1``, or ``policy/v1beta1`` before 1.22); raises
        :data:`ApiError` as the server answers (429 while a PodDisruptionBudget says no)."""
        body = client.V1Eviction(
            api_version=policy_version, kind="Eviction", metadata=client.V1ObjectMeta(name=name, namespace=namespace)
        )
        if grace_seconds is not None:
            body.delete_options = client.V1DeleteOptions(grace_period_seconds=grace_seconds)
        self.core.create_namespaced_pod_eviction(name, namespace, body, _request_timeout=timeout)

    def post_event(
        self,
        kind: Literal["Pod", "Node"],
        name: str,
        namespace: str | None,
        reason: str,
        message: str,
        uid: str | None = None,
    ) -> None:
        """A Kubernetes Event about a pod or a node, where ``kubectl describe`` and ``kubectl get events`` show it
        (a node's go to ``default``), from component ``chaoskit``. The object's ``uid`` lets ``describe`` match
        it; when not given it is read first (none for an object already gone). Raises :data:`ApiError` as the
        server answers (403 where the account may not create events)."""
        if uid is None:
            uid = self._uid_of(kind, name, namespace)
        now = datetime.now(UTC)
        where = namespace or "default"
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.chaoskit-", namespace=where),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind=kind, name=name, namespace=namespace, uid=uid
            ),
            reason=reason,
            message=message[:1024],
            type="Normal",
            source=client.V1EventSource(component="chaoskit"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component="chaoskit",
            reporting_instance=socket.gethostname(),
        )
        self.core.create_namespaced_event(where, body, _request_timeout=10)

    def _uid_of(self, kind: Literal["Pod", "Node"], name: str, namespace: str | None) -> str | None:
        """The pod's or node's UID; None for one that is gone."""
        try:
            found: Any = (
                self.core.read_namespaced_pod(name, namespace or "default")
                if kind == "Pod"
                else self.core.read_node(name)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None
        return found.metadata.uid if found.metadata else None

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        """Server-side apply each object with field manager ``chaoskit`` (``kubectl apply --server-side
        --force-conflicts --field-manager chaoskit``).

        The server merges: the fields an object names become chaoskit's, and every field it does not name
        stays as it is and with whoever owns it (an autoscaler's ``replicas``, a Service's ``clusterIP``,
        another controller's annotations). A field chaoskit names that another manager set is taken over
        (``force``), as a tool applying its own manifest again must. Goes through the dynamic client, so
        any kind and version the server serves works (``policy/v1beta1`` on 1.20, which the typed client
        lacks).
        """
        dyn = _dynamic(self.api_client)
        for obj in objects:
            metadata = obj["metadata"]
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                resource.server_side_apply(
                    # As JSON text (valid YAML): every client version sends a string body as it is.
                    body=json.dumps(obj),
                    name=metadata["name"],
                    namespace=metadata.get("namespace") if resource.namespaced else None,
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    _request_timeout=30,
                )
            except Exception as exc:
                raise ClusterError(f"cannot apply {obj['kind']} {metadata['name']}: {_reason(exc)}") from None

    def get(self, kind: str, name: str, namespace: str | None = None, api_version: str = "v1") -> dict[str, Any] | None:
        """An object as a plain dict (as the API serves it), or None when it does not exist."""
        resource = _dynamic(self.api_client).resources.get(api_version=api_version, kind=kind)
        try:
            found = resource.get(name=name, namespace=namespace)
        except Exception as exc:  # the dynamic client's errors carry the HTTP status
            if getattr(exc, "status", None) == 404:
                return None
            raise
        result: dict[str, Any] = found.to_dict()
        return result

    def wait_whole(self, namespace: str, name: str, kind: str = "Deployment", timeout: float = 120) -> float:
        """Wait until a workload (``Deployment``, ``StatefulSet``, ``DaemonSet`` or ``ReplicaSet``) is whole
        by its kind's own status (:func:`workload_counts`); return the seconds it took.

        For a test's own system after it applied it (``kube.apply(objects)``).
        Raises ClusterError naming the last counts seen when it is not whole
        within ``timeout`` seconds.
        """
        kind = check_workload_kind(kind)
        started = time.monotonic()
        seen = "not found"
        checked = 0.0
        while True:
            obj = self.get(kind, name, namespace, api_version="apps/v1")
            if obj is not None:
                desired, ready, whole = workload_counts(obj, kind)
                if whole:
                    return time.monotonic() - started
                seen = f"{ready}/{desired} ready"
                if time.monotonic() - checked > REFUSAL_CHECK_S:
                    checked = time.monotonic()
                    refused = self.pods_refused(namespace, obj, kind)
                    if refused:
                        raise ClusterError(f"{kind} {namespace}/{name} cannot create its pods ({seen}): {refused}")
            if time.monotonic() - started > timeout:
                raise ClusterError(f"{kind} {namespace}/{name} was not whole within {timeout:g} s ({seen})")
            time.sleep(0.25)

    def pods_refused(self, namespace: str, workload: dict[str, Any], kind: str) -> str | None:
        """Why the workload's controller cannot create its pods, when admission refuses them for good: the
        namespace's Pod Security level (1.23+; the controller's FailedCreate event says which rule), in
        words with the fix; None when nothing was refused lately. Only this object's events count (by UID:
        for a Deployment, its ReplicaSets'), repeated within the last REFUSAL_FRESH_S, so an earlier
        object of the same name, or a refusal since allowed, does not. Other refusals (a quota) may pass, and
        are left to the wait's timeout."""
        uid = workload["metadata"]["uid"]
        try:
            events = self.core.list_namespaced_event(namespace, field_selector="reason=FailedCreate").items
            owners = {uid}
            if kind == "Deployment":  # its pods are its ReplicaSets'
                replica_sets: list[Any] = self.apps.list_namespaced_replica_set(namespace).items
                owners = {
                    rs.metadata.uid
                    for rs in replica_sets
                    if any(ref.uid == uid for ref in rs.metadata.owner_references or [])
                }
        except (ApiException, urllib3.exceptions.HTTPError):  # cannot read them: the wait's timeout says what it saw
            return None
        now = time.time()
        for event in events:
            last = event.last_timestamp or event.event_time or event.first_timestamp
            fresh = last is not None and now - last.timestamp() < REFUSAL_FRESH_S
            message = event.message or ""
            if event.involved_object.uid in owners and fresh and "violates PodSecurity" in message:
                level = (self.namespace_labels(namespace) or {}).get(POD_SECURITY_ENFORCE, "the cluster's default")
                return (
                    f"namespace {namespace} enforces Pod Security {level!r} ({POD_SECURITY_ENFORCE}) and refuses "
                    f"them: {message.split('forbidden: ', 1)[-1]}; {POD_SECURITY_FIX}"
                )
        return None

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """A namespace's labels; None when it does not exist."""
        found = self.get("Namespace", namespace)
        return None if found is None else dict((found.get("metadata") or {}).get("labels") or {})

    def node_ports_in_use(self) -> dict[int, str]:
        """Every NodePort a Service holds, with the Service's ``namespace/name``."""
        used: dict[int, str] = {}
        for service in self.core.list_service_for_all_namespaces().items:
            for port in (service.spec.ports if service.spec else None) or []:
                if port.node_port:
                    meta: Any = service.metadata
                    used[int(port.node_port)] = f"{meta.namespace}/{meta.name}"
        return used

    def delete(self, kind: str, name: str, namespace: str | None = None, api_version: str = "v1") -> bool:
        """Delete an object; return whether it existed."""
        resource = _dynamic(self.api_client).resources.get(api_version=api_version, kind=kind)
        try:
            resource.delete(name=name, namespace=namespace)
        except Exception as exc:  # the dynamic client's errors carry the HTTP status
            if getattr(exc, "status", None) == 404:
                return False
            raise
        return True

    def wait_established(self, crd: str, timeout: float = 30) -> None:
        """Wait until a CustomResourceDefinition is Established (its resource served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.get("CustomResourceDefinition", crd, api_version="apiextensions.k8s.io/v1") or {}
            conditions = (found.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
                return
            time.sleep(0.2)
        raise ClusterError(f"CustomResourceDefinition {crd} was not Established within {timeout:g} s")

    def wait_custom(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        done: Callable[[dict[str, Any] | None], bool],
        timeout: float,
    ) -> bool:
        """Watch one custom object until ``done(obj)`` holds (``obj`` None once it is deleted); return whether
        it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        selector = f"metadata.name={name}"
        while True:
            listing: Any = self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, field_selector=selector, _request_timeout=15
            )
            items = listing.get("items") or []
            current = items[0] if items else None
            if done(current):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    group,
                    version,
                    namespace,
                    plural,
                    field_selector=selector,
                    resource_version=listing["metadata"]["resourceVersion"],
                    timeout_seconds=max(1, int(min(remaining, 60))),
                    _request_timeout=min(remaining, 60) + 5,
                ):
                    if event["type"] not in ("ADDED", "MODIFIED", "DELETED"):
                        break
                    current = None if event["type"] == "DELETED" else event["object"]
                    if done(current):
                        return True
                    if time.monotonic() > deadline:
                        return False
            except ApiException as exc:
                if exc.status != 410:
                    raise
            except Exception:  # the connection dropped: list again (or give up past the deadline)
                if time.monotonic() > deadline:
                    return False
            finally:
                stream.stop()

    def wait_for(
        self,
        list_call: Callable[..., Any],
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str,
        **kwargs: Any,
    ) -> float:
        """Watch a collection until ``done`` holds for its objects; return seconds waited.

        ``done`` gets a mapping of name -> object. Raises ClusterError after ``timeout``.
        """
        started = time.monotonic()
        deadline = started + timeout
        while True:
            listing = list_call(**kwargs)
            objects = {item.metadata.name: item for item in listing.items}
            if done(objects):
                return time.monotonic() - started
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
            stream = watch.Watch()
            events = stream.stream(
                list_call,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=max(1, int(min(remaining, 60))),
                _request_timeout=min(remaining, 60) + 5,
                **kwargs,
            )
            try:
                for event in events:
                    item = event["object"]
                    if event["type"] == "DELETED":
                        objects.pop(item.metadata.name, None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        objects[item.metadata.name] = item
                    else:
                        break
                    if done(objects):
                        return time.monotonic() - started
                    if time.monotonic() > deadline:
                        break
            except ApiException as exc:
                if exc.status != 410:  # 410: resource version too old; list again
                    raise
            except Exception as exc:  # the connection dropped (API server restarting): list again
                if time.monotonic() > deadline:
                    raise ClusterError(f"timed out waiting for {what}: {exc}") from None
            finally:
                stream.stop()
                events.close()  # closes the HTTP response now, not when the generator is collected

    def exec(self, namespace: str, pod: str, command: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run ``command`` in a pod's first container; return (exit status, combined output)."""
        code, out, err = self.exec_streams(namespace, pod, command, timeout)
        return code, out + err

    def exec_streams(
        self, namespace: str, pod: str, command: list[str], timeout: float = 60, container: str | None = None
    ) -> tuple[int, str, str]:
        """Run ``command`` in a pod's container (the first unless named); return (exit status, stdout, stderr).

        Raises ClusterError when the stream cannot be opened or the command runs over ``timeout``.
        """
        import websocket
        from kubernetes.stream import stream

        # The client opens the exec websocket with no timeout of its own: bound its connect and reads.
        websocket.setdefaulttimeout(EXEC_CONNECT_TIMEOUT)
        extra = {"container": container} if container else {}
        # stream() swaps the API client's call_api for a websocket one while it opens the stream, which is
        # not thread-safe: every other request made on that client meanwhile (another thread's exec, a
        # list) would go out as a websocket and fail. So each exec gets a client of its own.
        private = client.ApiClient(self.api_client.configuration)
        try:
            resp = stream(
                client.CoreV1Api(private).connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=command,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                **extra,
            )
        except (ApiException, websocket.WebSocketException, OSError) as exc:
            private.close()
            raise ClusterError(f"cannot exec in pod {namespace}/{pod}: {exc}") from None
        out: list[str] = []
        err: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while resp.is_open():
                if time.monotonic() > deadline:
                    raise ClusterError(f"{' '.join(command)[:80]!r} in pod {namespace}/{pod} ran over {timeout:.0f} s")
                resp.update(timeout=1)
                if resp.peek_stdout():
                    out.append(resp.read_stdout())
                if resp.peek_stderr():
                    err.append(resp.read_stderr())
            try:
                code = resp.returncode
            except (TypeError, KeyError, ValueError, AttributeError):  # an error channel cut short or odd
                raise ClusterError(
                    f"the exec stream of pod {namespace}/{pod} ended without an exit status (its pod replaced, or "
                    "the API server restarting?)"
                ) from None
        except (websocket.WebSocketException, OSError) as exc:
            raise ClusterError(f"the exec stream of pod {namespace}/{pod} broke: {exc}") from None
        finally:
            resp.close()
            # websocket-client's close() does nothing once the server has hung up,
            # leaving the TLS socket open; shutdown() closes it in every case.
            resp.sock.shutdown()
            private.close()
        return (code if code is not None else -1), "".join(out), "".join(err)


def node_ready(node: Obj, since: float | None = None) -> bool:
    """Whether a V1Node reports Ready=True (with a heartbeat after ``since``, a Unix time, if given).

    A node whose kubelet was just restarted still shows the Ready it posted
    before; only a heartbeat newer than the restart proves it is back.
    """
    for condition in node.status.conditions or []:
        if condition.type == "Ready":
            if condition.status != "True":
                return False
            beat = condition.last_heartbeat_time
            return since is None or (beat is not None and beat.timestamp() >= since)
    return False


def lease_renewed(lease: Obj, since: float) -> bool:
    """Whether a V1Lease was renewed at or after ``since`` (a Unix time).

    A node's kubelet renews its Lease in ``kube-node-lease`` every 10 s or so,
    while it posts its Ready condition only when something changed or every few
    minutes: a renewal newer than a restart is the quick proof that the kubelet
    runs again.
    """
    renewed = lease.spec.renew_time if lease.spec else None
    return renewed is not None and renewed.timestamp() >= since


def pod_ready(pod: Obj, since: float | None = None) -> bool:
    """Whether a V1Pod is Ready (and became so after ``since``, a Unix time, if given)."""
    if pod.metadata.deletion_timestamp is not None:
        return False
    for condition in pod.status.conditions or []:
        if condition.type == "Ready" and condition.status == "True":
            moved = condition.last_transition_time
            return since is None or (moved is not None and moved.timestamp() >= since)
    return False


def deployment_available(dep: Obj) -> bool:
    """Whether every desired replica of a V1Deployment is updated and ready."""
    want = dep.spec.replicas if dep.spec.replicas is not None else 1
    status = dep.status
    return bool(
        (status.observed_generation or 0) >= (dep.metadata.generation or 0)
        and (status.ready_replicas or 0) == want
        and (status.updated_replicas or 0) == want
        and (status.replicas or 0) == want
    )


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"]
"""The kinds of workload whose recovery can be watched."""
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = get_args(WorkloadKind)


def check_workload_kind(kind: str) -> WorkloadKind:
    """``kind`` itself if it is a kind of workload the recovery watch follows; else a SpecError naming them."""
    if kind not in WORKLOAD_KINDS:
        raise SpecError(f"cannot watch a workload of kind {kind!r}: give kind= one of {', '.join(WORKLOAD_KINDS)}")
    return kind


def workload_counts(obj: dict[str, Any], kind: str) -> tuple[int, int, bool]:
    """(desired, ready, whole) of a workload, from its JSON as the API serves it (camelCase, as a watch sends it).

    Desired is ``spec.replicas`` (1 when unset, the API's default), or for a
    DaemonSet ``status.desiredNumberScheduled``. Whole means every desired
    replica ready and nothing left to roll out, by the kind's own status:

    * Deployment: ``readyReplicas`` and ``updatedReplicas`` both equal desired.
    * StatefulSet: ``readyReplicas`` equals desired; and, where the status
      carries them, ``currentRevision`` equals ``updateRevision`` and
      ``currentReplicas`` and ``updatedReplicas`` equal desired. Their absence
      proves nothing: some servers leave ``updatedReplicas`` out of a settled
      StatefulSet's status (kubernetes#76748).
    * DaemonSet: ``numberReady`` and ``updatedNumberScheduled`` both equal
      ``desiredNumberScheduled``.
    * ReplicaSet: ``readyReplicas`` equals desired.

    For every kind the status must have observed the object's current
    generation: counts written before a change of its spec do not describe it.
    A count the status leaves out is 0 (the API omits zero counts), except
    where said above.
    """
    kind = check_workload_kind(kind)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    current = generation is None or (observed is not None and observed >= generation)
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        whole = ready == desired and int(status.get("updatedNumberScheduled") or 0) == desired
        return desired, ready, current and whole
    replicas = spec.get("replicas")
    desired = 1 if replicas is None else int(replicas)
    ready = int(status.get("readyReplicas") or 0)
    whole = ready == desired
    if kind == "Deployment":
        whole = whole and int(status.get("updatedReplicas") or 0) == desired
    elif kind == "StatefulSet":
        revisions = status.get("currentRevision"), status.get("updateRevision")
        if None not in revisions:
            whole = whole and revisions[0] == revisions[1]
        whole = whole and all(int(status[k]) == desired for k in ("currentReplicas", "updatedReplicas") if k in status)
    return desired, ready, current and whole


def workload_whole(obj: dict[str, Any], kind: str) -> bool:
    """Whether a workload (its JSON as the API serves it) is whole: see :func:`workload_counts`."""
    return workload_counts(obj, kind)[2]


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
"""The label that ties an EndpointSlice to its Service."""


def ready_endpoints(slices: Iterable[dict[str, Any]]) -> int:
    """How many distinct endpoints are ready over a Service's EndpointSlices (their JSON, v1 or v1beta1).

    An endpoint counts unless ``conditions.ready`` is false: the API says a
    missing ready condition is to be read as ready. The same endpoint may show
    in two slices for a moment while the controller moves it (the API allows
    it), and once per address family in a dual-stack Service; it counts once,
    known by the object it targets, or by its addresses when it targets none.
    """
    ready: set[tuple[str, ...]] = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            target = endpoint.get("targetRef") or {}
            if target.get("name"):
                ready.add(("ref", str(target.get("kind")), str(target.get("namespace")), str(target["name"])))
            else:
                family = str(endpoint_slice.get("addressType"))
                ready.add(("addresses", family, *sorted(str(a) for a in endpoint.get("addresses") or [])))
    return len(ready)


def ready_addresses(endpoints: dict[str, Any]) -> int:
    """The ready addresses of a core v1 Endpoints object (its JSON)."""
    return sum(len(subset.get("addresses") or []) for subset in endpoints.get("subsets") or [])


def endpoint_slice_list_calls(api_client: Any) -> list[tuple[str, Callable[..., Any]]]:
    """The list (and watch) calls of EndpointSlices, newest version first: ``discovery.k8s.io/v1``, then ``v1beta1``.

    Servers before 1.21 serve only ``v1beta1``, which the installed typed
    client no longer has: that one is a plain GET (see :func:`raw_list_call`).
    """
    return [
        ("discovery.k8s.io/v1", client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice),
        ("discovery.k8s.io/v1beta1", raw_list_call(api_client, "discovery.k8s.io/v1beta1", "endpointslices")),
    ]


def raw_list_call(api_client: Any, group_version: str, plural: str) -> Callable[..., Any]:
    """A namespaced list (or watch) of a resource the typed client lacks, called like the typed ones.

    It takes their keywords (``label_selector``, ``field_selector``,
    ``resource_version``, ``watch``, ``timeout_seconds``, ``_request_timeout``)
    and returns the HTTP response unread, as they do with
    ``_preload_content=False`` (the only way it is called); a status outside
    2xx raises ``ApiException``, as theirs does. Requests are bounded like
    every other of ``api_client``. Works with the client's modern generator
    (37 on: ``param_serialize``, then ``call_api``) and with the python-legacy
    one before it (``call_api`` alone).
    """
    path = f"/apis/{group_version}/namespaces/{{namespace}}/{plural}"

    def list_call(
        namespace: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        watch: bool | None = None,
        timeout_seconds: int | None = None,
        _request_timeout: float | tuple[float, float] | None = None,
        _preload_content: bool = False,
    ) -> Any:
        named = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "resourceVersion": resource_version,
            "watch": watch,
            "timeoutSeconds": timeout_seconds,
        }
        query = [(key, value) for key, value in named.items() if value is not None]
        headers = {"Accept": "application/json"}
        if not hasattr(api_client, "param_serialize"):
            # Clients before 37 (the python-legacy generator): one call, which raises on a status outside 2xx.
            return api_client.call_api(
                path,
                "GET",
                {"namespace": namespace},
                query,
                headers,
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=_request_timeout,
            )
        request = api_client.param_serialize(
            "GET",
            path,
            path_params={"namespace": namespace},
            query_params=query,
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        response = api_client.call_api(*request, _request_timeout=_request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    return list_call


def _bound_requests(api_client: Any, timeout: float) -> None:
    """Give every request of ``api_client`` that states no ``_request_timeout`` this one."""
    rest = api_client.rest_client
    unbounded = rest.request

    def request(*args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("_request_timeout"):
            kwargs["_request_timeout"] = timeout
        try:
            return unbounded(*args, **kwargs)
        except (urllib3.exceptions.MaxRetryError, urllib3.exceptions.TimeoutError) as exc:
            cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
            if not isinstance(cause, urllib3.exceptions.TimeoutError):
                raise
            what = f"{args[0]} {args[1]}" if len(args) >= 2 else "an API request"
            limit = kwargs["_request_timeout"]
            raise CommandTimedOut(f"the API server did not answer {what} within {limit} s") from None

    rest.request = request


def _dynamic(api_client: Any) -> Any:
    from kubernetes import dynamic

    return dynamic.DynamicClient(api_client)
