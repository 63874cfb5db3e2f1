"""A port of a pod or Service in the cluster, on 127.0.0.1 of this machine: what ``kubectl port-forward`` does.

For a cluster whose Services are not published on the host (no NodePort reachable from here: a staging
cluster behind its API server), :func:`port_forward` listens on a free port of 127.0.0.1 and carries each
connection to the pod's port through the API server (the ``pods/portforward`` subresource, one stream per
connection). A Service is followed, unlike ``kubectl port-forward`` (which picks one pod for good): each new
connection goes to the next ready pod of its selector, in turn, read again from the API at most once a
second, to the target port of the Service port asked for (a named target port looked up in that pod). A pod
that dies takes its open connections with it, as behind the Service itself; new connections go to the pods
still ready, and one made while none is ready is closed at once (a client sees it reset).

What it does not model: kube-proxy. There are no Service IPs, no session affinity and no traffic policies;
the spread is by connection, so a client that keeps one connection alive stays on one pod until it closes.

What it is good for: light load, a Prometheus query, a health probe. Each connection is a stream the API
server opens, so a server that closes every connection pays that on every request: 4 users asking 40
requests/s of the web tier (HTTP/1.0, a connection per request) got 317-365 requests in a 15 s run here (about
21-24/s), every one a record (tests/cluster/test_port_forward.py, 5 runs on 2 cores). Heavier load wants a
NodePort or an ingress. Every byte passes through the API server, so it is no measure of the system's own
latency: say so beside any latency figure taken through it. It needs ``create`` on ``pods/portforward`` in the
namespace.
"""

from __future__ import annotations

import math
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from chaoskit.adapters.kube import Kube
from chaoskit.errors import SpecError

BUFFER = 65536
ACCEPT_WAIT = 0.2
"""How often the listener looks whether it should stop, in seconds."""


REFRESH_S = 1.0
"""How old the list of a Service's ready pods may be when a new connection picks one, in seconds."""


def _ready(pod: Any) -> bool:
    conditions = {c.type: c.status for c in (pod.status.conditions or [])}
    return conditions.get("Ready") == "True" and not pod.metadata.deletion_timestamp


def _container_port(pod: Any, name: str) -> int | None:
    for container in pod.spec.containers or []:
        for declared in container.ports or []:
            if declared.name == name:
                return int(declared.container_port)
    return None


class Backends:
    """Where a forward carries its next connection: one pod (``pod/NAME``), or the ready pods of a Service's
    selector in turn (``service/NAME``). Made from the API once; a bad target is a :class:`SpecError` then."""

    def __init__(self, kube: Kube, namespace: str, target: str, port: int, clock: Any = time.monotonic) -> None:
        self.kube, self.namespace, self.clock = kube, namespace, clock
        self.selector: str | None = None
        self.target_port: int | str = port
        self.pods: list[Any] = []
        self.read_at = -math.inf
        self.turn = 0
        self.lock = threading.Lock()
        kind, _, name = target.partition("/")
        if kind in ("pod", "pods", "po") and name:
            self.pod = name
            return
        if kind not in ("service", "services", "svc") or not name:
            raise SpecError(f"port-forward target {target!r}: write pod/NAME or service/NAME")
        try:
            spec = kube.core.read_namespaced_service(name, namespace).spec
        except ApiException as exc:
            if exc.status == 404:
                raise SpecError(f"port-forward target service {namespace}/{name} does not exist") from None
            raise
        if spec is None or not spec.selector:
            raise SpecError(f"service {namespace}/{name} selects no pods (no selector): forward to a pod/NAME")
        wanted = next((p for p in spec.ports or [] if p.port == port), None)
        if wanted is None:
            ports = ", ".join(str(p.port) for p in spec.ports or [])
            raise SpecError(f"service {namespace}/{name} has no port {port} (it has {ports})")
        self.target_port = wanted.target_port if wanted.target_port is not None else port
        self.selector = ",".join(f"{k}={v}" for k, v in sorted(spec.selector.items()))
        with self.lock:
            self._read()
        if not self.pods:
            raise SpecError(f"service {namespace}/{name} has no ready pod to forward to")

    def _read(self) -> None:
        """The Service's ready pods now, by name (the caller holds the lock)."""
        assert self.selector is not None
        pods = (p for p in self.kube.pods(self.namespace, self.selector) if _ready(p))
        self.pods = sorted(pods, key=lambda p: p.metadata.name)
        self.read_at = self.clock()

    def next(self) -> tuple[str, int] | None:
        """The pod and port for a new connection; None while the Service has no ready pod."""
        if self.selector is None:
            return self.pod, int(self.target_port)
        with self.lock:
            if self.clock() - self.read_at >= REFRESH_S:
                self._read()
            for _ in range(len(self.pods)):
                pod = self.pods[self.turn % len(self.pods)]
                self.turn += 1
                port = self.target_port
                if isinstance(port, str) and not port.isdigit():
                    named = _container_port(pod, port)
                    if named is None:
                        continue  # this pod does not name the port: the Service sends it nothing either
                    port = named
                return pod.metadata.name, int(port)
            return None


PROXY_DONE_WAIT = 2.0
"""How long a closed stream's proxy thread gets to let go of its sockets and websocket."""


@contextmanager
def port_forward(kube: Kube, namespace: str, target: str, port: int) -> Iterator[int]:
    """Forward a free port of 127.0.0.1 to ``target``'s ``port`` while the block runs; yield the local port.
    ``target`` is ``pod/NAME`` or ``service/NAME`` (followed: each connection to a ready pod in turn). The
    listener and every connection close with the block."""
    backends = Backends(kube, namespace, target, port)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(ACCEPT_WAIT)
    stop = threading.Event()
    open_streams: set[Any] = set()
    # The client's portforward() swaps its API client's call_api for a websocket one while it opens a stream:
    # any other request on that client meanwhile (the run's own, another connection's) would go out as a
    # port-forward and fail. So each connection opens its stream on a client of its own.
    configuration = kube.api_client.configuration

    def carry(conn: socket.socket) -> None:
        stream = None
        proxy: threading.Thread | None = None
        private = client.ApiClient(configuration)
        try:
            chosen = backends.next()
            if chosen is None:
                return  # no ready pod now: the connection closes, as one to a Service without endpoints
            pod, remote = chosen
            connect = client.CoreV1Api(private).connect_get_namespaced_pod_portforward
            stream = portforward(connect, pod, namespace, ports=str(remote))
            proxy = _proxy_thread(stream)
            open_streams.add(stream)
            _pump(conn, stream.socket(remote), stop)
        except Exception:  # a stream that cannot open ends its connection, not the forward
            pass
        finally:
            conn.close()
            if stream is not None:
                open_streams.discard(stream)
                stream.close()
                _close_websocket(stream, proxy)
            private.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=carry, args=(conn,), name="chaoskit-port-forward", daemon=True).start()

    acceptor = threading.Thread(target=accept, name="chaoskit-port-forward-listener", daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(timeout=2 * ACCEPT_WAIT + 1)
        listener.close()
        for stream in list(open_streams):
            stream.close()


def _proxy_thread(stream: Any) -> threading.Thread | None:
    """The client's proxy thread of one stream (its target is the stream's own ``_proxy``); None when it has
    ended already (a thread lets go of its target when it ends; the stream starts it before it is returned)."""
    for thread in threading.enumerate():
        if getattr(getattr(thread, "_target", None), "__self__", None) is stream:
            return thread
    return None


def _close_websocket(stream: Any, proxy: threading.Thread | None) -> None:
    """Close a stream's websocket once its proxy thread has ended.

    The client's proxy thread closes the websocket itself when this side closes, but not when the server
    ended the stream first (a pod's port that nothing listens on, a pod deleted): it then returns with the
    TLS socket still open, to be closed by the garbage collector with a ResourceWarning. Closing it while
    the thread still runs would free its descriptor under the thread, and a new connection given the same
    number would get the old stream's bytes: so only once the thread has ended, and never otherwise.
    """
    websocket = getattr(stream, "websocket", None)
    if websocket is None:
        return
    if proxy is not None:
        proxy.join(PROXY_DONE_WAIT)
    if proxy is None or not proxy.is_alive():
        websocket.shutdown()


def _pump(local: socket.socket, remote: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes or the forward stops."""
    remote.setblocking(True)
    while not stop.is_set():
        readable, _, _ = select.select([local, remote], [], [], ACCEPT_WAIT)
        for side in readable:
            data = side.recv(BUFFER)
            if not data:
                return
            (remote if side is local else local).sendall(data)
