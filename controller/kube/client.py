"""The controller's Kubernetes client: one ApiClient, and the lists, watch, patches and events over it.

Retries are ours, and only ours: :class:`KubeClient` switches off urllib3's built-in
retries on the :class:`~kubernetes.client.ApiClient` it is given, then every request is
retried as its :class:`~controller.backoff.RetryPolicy` says (429 honouring
``Retry-After``, 500/502/503/504 and connection errors). Every request carries a
(connect, read) timeout (a watch's read timeout is its own length plus a margin), so a
hung API server cannot block a pass.

Typical use::

    kube = KubeClient(api_client_from(settings.kubeconfig))
    listed = kube.list_pods(["kubeflow"])
    for event in kube.watch_pods("kubeflow", listed.resource_versions["kubeflow"],
                                 timeout_s=300, stop=stopping):
        ...
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config
from kubernetes.client import rest

from controller.backoff import RetryPolicy
from controller.kube.errors import KubeConfigError, one_line
from controller.kube.events import COMPONENT, EventRecorder
from controller.kube.lists import Lister
from controller.kube.patches import patch_pod_metadata
from controller.kube.transport import JSON, Transport
from controller.kube.watch import WatchEvent, watch_pods
from reconcile.conventions import ARGO_WORKFLOW_LABEL

REQUEST_RETRY = RetryPolicy()  # every request's, unless a client is given another


def api_client_from(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient for the cluster: an explicit kubeconfig, else in-cluster, else the default.

    Args:
        kubeconfig: path of a kubeconfig file; when None, the in-cluster service account
            is used if ``KUBERNETES_SERVICE_HOST`` is set, else ``$KUBECONFIG`` or
            ``~/.kube/config``.
        context: kubeconfig context to use (default: the file's current context).

    Raises:
        KubeConfigError: no usable configuration (one line saying what was tried).
    """
    cfg = client.Configuration()
    if kubeconfig:
        source = f"kubeconfig {kubeconfig}"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        source = "in-cluster service account"
    else:
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        source = f"default kubeconfig {kubeconfig}"
    try:
        if kubeconfig:
            config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=cfg, persist_config=False
            )
        else:
            config.load_incluster_config(client_configuration=cfg)
    except Exception as exc:  # the loader lets YAML, type and key errors of a bad file through as they are
        detail = one_line(str(exc) or repr(exc))
        raise KubeConfigError(f"no Kubernetes configuration: {source}: {detail}") from None
    _own_retries(cfg)
    _freeze_proxy(cfg)
    api_client = client.ApiClient(cfg)
    api_client.user_agent = f"{COMPONENT}/python"
    return api_client


def _freeze_proxy(cfg: client.Configuration) -> None:
    """Keep the proxy resolved at load time instead of re-reading the environment per request.

    With token auth the kubeconfig loader re-assigns ``host`` before every request, and
    the client then scans the whole environment for proxy variables again (~0.2 ms a
    request, a fifth of a pod patch). The host never changes, so neither does the answer:
    assigning the resolved proxy explicitly stops the re-scan and keeps its value.
    """
    if isinstance(getattr(type(cfg), "proxy", None), property):
        with contextlib.suppress(Exception):
            cfg.proxy = cfg.proxy


def _own_retries(cfg: client.Configuration) -> bool:
    """Switch off urllib3's and the client's own retries; True if anything changed."""
    changed = cfg.retries is not False or bool(getattr(cfg, "client_go_retries", False))
    cfg.retries = False
    if hasattr(cfg, "client_go_retries"):
        cfg.client_go_retries = False
    return changed


class KubeClient(Lister):
    """The controller's Kubernetes access (`KubeAccess`) over one ApiClient.

    Lister's lists and gets, plus pod patches, Events and the pod watch.

    Args:
        api_client: the ApiClient to use. Its urllib3 retries are switched off (its REST
            transport is rebuilt if needed) so that ``retry`` alone decides.
        retry: retry policy for every request.
        page_size: ``limit`` of each list page.
        event_interval_s: at most one Event write per (pod uid, reason) per interval.
        request_timeout: (connect, read) seconds for every request but watches.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        retry: RetryPolicy = REQUEST_RETRY,
        page_size: int = 500,
        event_interval_s: float = 600.0,
        request_timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        self.api_client = api_client
        if _own_retries(api_client.configuration):
            old = api_client.rest_client
            api_client.rest_client = rest.RESTClientObject(api_client.configuration)
            old.close()
        super().__init__(Transport(api_client, retry, request_timeout), page_size)
        self._events = EventRecorder(self.transport, event_interval_s)

    def close(self) -> None:
        """Close the underlying ApiClient's connections."""
        self.api_client.close()

    def patch_pod_metadata(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """JSON-merge-patch a pod's labels/annotations; False when the pod is gone (404)."""
        return patch_pod_metadata(self.transport, namespace, name, patch)

    def emit_pod_event(self, pod: JSON, reason: str, message: str, type: str = "Warning") -> bool:
        """Record a rate-limited core/v1 Event on ``pod``; False when skipped or failed (logged)."""
        return self._events.emit_pod_event(pod, reason, message, type)

    def watch_pods(
        self,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_s: int,
        stop: threading.Event,
        label_selector: str = ARGO_WORKFLOW_LABEL,
    ) -> Iterator[WatchEvent]:
        """Pod changes from ``resource_version`` on, with bookmarks (controller/kube/watch.py)."""
        return watch_pods(
            self.transport,
            namespace,
            resource_version,
            timeout_s=timeout_s,
            stop=stop,
            label_selector=label_selector,
        )
