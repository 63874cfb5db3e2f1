"""A port of a pod or Service in the cluster, on 127.0.0.1 of this machine: what ``kubectl port-forward`` does.

For a cluster whose Services are not published on the host (no NodePort reachable from here: a staging
cluster behind its API server), :func:`port_forward` listens on a free port of 127.0.0.1 and carries each
connection to the pod's port through the API server (the ``pods/portforward`` subresource, one stream per
connection). A Service is resolved, as kubectl does, to one ready pod behind it and the Service port's
target port; if that pod goes away, new connections fail (the forward does not follow the Service).

What it is good for: load at a few hundred requests per second, a Prometheus query, a health probe. Every
byte passes through the API server, so it is no measure of the system's own latency: say so beside any
latency figure taken through it. It needs ``create`` on ``pods/portforward`` in the namespace.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from chaoskit.adapters.kube import Kube
from chaoskit.errors import SpecError

BUFFER = 65536
ACCEPT_WAIT = 0.2
"""How often the listener looks whether it should stop, in seconds."""


def resolve(kube: Kube, namespace: str, target: str, port: int) -> tuple[str, int]:
    """The pod and its port behind ``target``: ``pod/NAME`` (the port as given) or ``service/NAME`` (a ready
    pod of its selector, and the target port of its port ``port``)."""
    kind, _, name = target.partition("/")
    if kind in ("pod", "pods", "po") and name:
        return name, port
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
    target_port = wanted.target_port if isinstance(wanted.target_port, int) else port
    selector = ",".join(f"{k}={v}" for k, v in sorted(spec.selector.items()))
    for pod in kube.pods(namespace, selector):
        conditions = {c.type: c.status for c in (pod.status.conditions or [])}
        if conditions.get("Ready") == "True" and not pod.metadata.deletion_timestamp:
            return pod.metadata.name, target_port
    raise SpecError(f"service {namespace}/{name} has no ready pod to forward to")


@contextmanager
def port_forward(kube: Kube, namespace: str, target: str, port: int) -> Iterator[int]:
    """Forward a free port of 127.0.0.1 to ``target``'s ``port`` while the block runs; yield the local port.
    ``target`` is ``pod/NAME`` or ``service/NAME``. The listener and every connection close with the block."""
    pod, remote = resolve(kube, namespace, target, port)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(ACCEPT_WAIT)
    stop = threading.Event()
    open_streams: list[Any] = []

    def carry(conn: socket.socket) -> None:
        stream = None
        try:
            stream = portforward(kube.core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(remote))
            open_streams.append(stream)
            _pump(conn, stream.socket(remote), stop)
        except Exception:  # a stream that cannot open ends its connection, not the forward
            pass
        finally:
            conn.close()
            if stream is not None:
                stream.close()

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
        for stream in open_streams:
            stream.close()


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
