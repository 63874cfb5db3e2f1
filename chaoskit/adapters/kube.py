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

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from chaoskit.errors import ClusterError, CommandTimedOut, UsageError

Obj = Any
REQUEST_TIMEOUT = 30.0
"""Seconds any API request may take unless its call states otherwise."""
EXEC_CONNECT_TIMEOUT = 30.0
"""Seconds to open an exec stream to a pod (and for any one read from it)."""


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
        self.version = client.VersionApi(self.api_client)

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
        return str(info.git_version)

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

    def apply(self, objects: Iterable[dict[str, Any]]) -> None:
        """Create each object, or replace it when it exists (a small ``kubectl apply``).

        Goes through the dynamic client, so any kind and version the server
        serves works (``policy/v1beta1`` on 1.20, which the typed client lacks).
        """
        dyn = _dynamic(self.api_client)
        for obj in objects:
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                resource.create(body=obj, namespace=obj["metadata"].get("namespace"))
            except Exception as exc:
                # 409: it exists. 422 can mean that too: creating a Service again whose
                # nodePort it already holds fails validation ("port is already allocated").
                if getattr(exc, "status", None) not in (409, 422) or not self._replace(obj):
                    raise ClusterError(f"cannot create {obj['kind']} {obj['metadata']['name']}: {exc}") from None

    def _replace(self, obj: dict[str, Any]) -> bool:
        """Replace the object if it exists; return whether it did."""
        kind = obj["kind"]
        name = obj["metadata"]["name"]
        namespace = obj["metadata"].get("namespace")
        dyn = _dynamic(self.api_client)
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=kind)
        try:
            current = resource.get(name=name, namespace=namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise
        body = dict(obj)
        body["metadata"] = {**obj["metadata"], "resourceVersion": current.metadata.resourceVersion}
        if kind == "Service":
            body["spec"] = {**obj["spec"], "clusterIP": current.spec.clusterIP}
        resource.replace(body=body, namespace=namespace)
        return True

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
        import websocket
        from kubernetes.stream import stream

        # The client opens the exec websocket with no timeout of its own: bound its connect and reads.
        websocket.setdefaulttimeout(EXEC_CONNECT_TIMEOUT)
        resp = stream(
            self.core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=command,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        output: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while resp.is_open():
                if time.monotonic() > deadline:
                    raise ClusterError(f"{' '.join(command)!r} in pod {namespace}/{pod} ran over {timeout:.0f} s")
                resp.update(timeout=1)
                output.append(resp.read_stdout() if resp.peek_stdout() else "")
                output.append(resp.read_stderr() if resp.peek_stderr() else "")
            code = resp.returncode
        finally:
            resp.close()
            # websocket-client's close() does nothing once the server has hung up,
            # leaving the TLS socket open; shutdown() closes it in every case.
            resp.sock.shutdown()
        return (code if code is not None else -1), "".join(output)


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
