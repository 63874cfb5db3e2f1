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
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaoskit.adapters.apiclient import bound_requests, dynamic_client
from chaoskit.adapters.rate import DEFAULT_RATE, ApiRate, limit_requests
from chaoskit.adapters.status import check_workload_kind, workload_counts
from chaoskit.errors import ClusterError, UsageError

ApiError = ApiException
"""The API server's answer when it is not 2xx (``.status``, ``.body``), as the calls through :class:`Kube`'s
clients raise it: named here so that only adapters/ imports the kubernetes client."""


def current_context(kubeconfig: Path | None) -> str:
    """The kubeconfig's current context (the default kubeconfig when None)."""
    _, active = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
    return str(active["name"])


Obj = Any
REQUEST_TIMEOUT = 30.0
PARALLEL_CALLS = 8
"""API calls one fault makes at once (pod deletes): under the client's connection pool (10 on two cores)."""
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


class NamespaceMissing(ClusterError):
    """An object could not be created: its namespace does not exist (deleted meanwhile, say)."""


class Kube:
    """API clients bound to one kubeconfig context."""

    def __init__(self, kubeconfig: Path | None, context: str | None, rate: ApiRate | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.rate = rate or DEFAULT_RATE
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
        bound_requests(self.api_client, REQUEST_TIMEOUT)
        self.bucket = limit_requests(self.api_client, self.rate.qps, self.rate.burst)
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

    def select_pods(self, namespace: str | None, selector: str) -> list[Obj]:
        """The pods matching a label selector a user typed, in ``namespace`` or (None) in every namespace; a
        selector the API server cannot parse is a :class:`UsageError` quoting its reason."""
        try:
            if namespace is None:
                found: list[Obj] = self.core.list_pod_for_all_namespaces(label_selector=selector).items
            else:
                found = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        except ApiException as exc:
            if exc.status == 400:
                raise UsageError(f"label selector {selector!r}: {_reason(exc)}") from None
            raise
        return found

    def delete_pods(self, namespace: str, names: Sequence[str], grace_seconds: int | None) -> None:
        """Delete pods ``names`` of ``namespace`` with ``grace_seconds`` (None: each pod's own), up to
        :data:`PARALLEL_CALLS` at once (within the client's :class:`ApiRate`); the first failure is raised
        once every call has ended."""

        def delete(name: str) -> None:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)

        if len(names) <= 1:
            for name in names:
                delete(name)
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_CALLS, len(names)), thread_name_prefix="chaoskit-api") as pool:
            for future in [pool.submit(delete, name) for name in names]:
                future.result()

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
        dyn = dynamic_client(self.api_client)
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
        resource = dynamic_client(self.api_client).resources.get(api_version=api_version, kind=kind)
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

    def lease(self, name: str, namespace: str) -> Obj | None:
        """Lease ``namespace/name`` as the API serves it (camelCase keys), or None when there is none."""
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace, _request_timeout=10)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise ClusterError(f"cannot read lease {namespace}/{name}: {_reason(exc)}") from None
        found: Obj = self.api_client.sanitize_for_serialization(lease)
        return found

    def put_lease(self, body: Obj) -> bool:
        """Create ``body`` (no ``resourceVersion``) or replace it at the ``resourceVersion`` it names; False when
        another writer came first (it exists, or changed since that version), so the caller reads it again."""
        meta = body["metadata"]
        try:
            if meta.get("resourceVersion"):
                self.coordination.replace_namespaced_lease(meta["name"], meta["namespace"], body, _request_timeout=10)
            else:
                self.coordination.create_namespaced_lease(meta["namespace"], body, _request_timeout=10)
        except ApiError as exc:
            if exc.status == 404 and not meta.get("resourceVersion"):
                raise NamespaceMissing(f"namespace {meta['namespace']} does not exist") from None
            if exc.status in (404, 409):  # 404: deleted since it was read (read it again)
                return False
            raise ClusterError(f"cannot write lease {meta['namespace']}/{meta['name']}: {_reason(exc)}") from None
        return True

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
        resource = dynamic_client(self.api_client).resources.get(api_version=api_version, kind=kind)
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
