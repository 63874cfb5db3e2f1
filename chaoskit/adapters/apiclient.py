"""The official client's plumbing under :class:`~chaoskit.adapters.kube.Kube`: every request bounded in time,
list calls of resources the typed client lacks, and the dynamic client. Only adapters/ imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from chaoskit.errors import CommandTimedOut


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


def bound_requests(api_client: Any, timeout: float) -> None:
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


def dynamic_client(api_client: Any) -> Any:
    from kubernetes import dynamic

    return dynamic.DynamicClient(api_client)
