"""Kubernetes access for the controller: list, watch, patch and events, with our own retries.

Everything here reads the API server's answers as raw JSON (``_preload_content=False`` and
``json.loads``): the ``kubernetes`` client's model deserialisation costs ~16x per pod and
would decide the cost of a no-op resync (docs/design.md, "One reconcile pass").

Retries are ours, and only ours: :class:`KubeClient` switches off urllib3's built-in
retries on the :class:`~kubernetes.client.ApiClient` it is given, then every request goes
through :meth:`KubeClient.with_retries` (429 honouring ``Retry-After``, 500/502/503/504
and connection errors, exponential backoff with full jitter). Every request carries a
(connect, read) timeout (a watch's read timeout is its own length plus a margin), so a hung
API server cannot block a pass.

Typical use::

    kube = KubeClient(api_client_from(settings.kubeconfig))
    listed = kube.list_pods(["kubeflow"])
    for event in kube.watch_pods("kubeflow", listed.resource_versions["kubeflow"],
                                 timeout_s=300, stop=stopping):
        ...
"""

from __future__ import annotations

import collections
import contextlib
import gc
import http.client
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException

__all__ = [
    "COMPONENT",
    "WORKFLOW_LABEL",
    "KubeApiError",
    "KubeClient",
    "KubeConfigError",
    "KubeUnavailableError",
    "RawList",
    "RetryPolicy",
    "WatchEvent",
    "WatchExpired",
    "api_client_from",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
Transform = Callable[[dict[str, Any]], dict[str, Any]]
PageSink = Callable[[list[dict[str, Any]]], None]

WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
COMPONENT = "kfp-metadata-reconciler"
ARGO_GROUP = "argoproj.io"
ARGO_VERSION = "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"
EVENT_MESSAGE_MAX_BYTES = 1024
EVENT_CACHE_SIZE = 4096  # (pod uid, reason) pairs remembered for rate limiting, LRU
LIST_RESTARTS = 2  # how often a list whose continue token expired (410) starts over
RETRY_AFTER_MAX_S = 60.0  # a Retry-After longer than this is capped
STOP_POLL_S = 0.05  # how often a watch's closer thread looks at ``stop``

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- errors
def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class KubeConfigError(Exception):
    """No usable Kubernetes configuration (kubeconfig or in-cluster)."""


class KubeApiError(Exception):
    """The API server refused a request with an error that retrying will not fix (4xx).

    Attributes:
        status: the HTTP status (0 when no HTTP answer was involved).
        reason: the Status reason, e.g. ``NotFound``, ``Forbidden``, ``Expired``.
        message: the server's message.
        request: which request failed, e.g. ``list pods in kubeflow``.
    """

    def __init__(self, status: int, reason: str, message: str, request: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = _one_line(message)
        self.request = request
        where = f"{request}: " if request else ""
        super().__init__(f"{where}HTTP {status} {reason}: {self.message}")


class WatchExpired(KubeApiError):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch from the new RV."""


class _BadResponse(Exception):
    """A 2xx answer whose body is not the JSON document expected (e.g. a proxy's page)."""


# Transport failures worth another attempt: refused/reset connections, timeouts, a body
# cut short. urllib3 wraps most of them (NewConnectionError, ReadTimeoutError,
# ProtocolError, MaxRetryError if someone re-enables its retries); the rest are OSError.
_TRANSIENT = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, _BadResponse)


class KubeUnavailableError(Exception):
    """The API server could not be reached, or kept failing, after every retry."""

    def __init__(self, request: str, problem: str, attempts: int) -> None:
        self.request = request
        self.problem = _one_line(problem)
        self.attempts = attempts
        tries = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"Kubernetes API unavailable: {request} failed after {attempts} {tries}: {self.problem}"
        )


def _status_of(exc: ApiException) -> tuple[int, str, str]:
    """(status, reason, message) of an ApiException, preferring the Status body's fields."""
    status = int(exc.status or 0)
    reason = str(exc.reason or "")
    message = ""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            message = body
        else:
            if isinstance(doc, dict):
                reason = str(doc.get("reason") or reason)
                message = str(doc.get("message") or "")
    return status, reason, message or reason or "no message"


def _retry_after(exc: ApiException) -> float | None:
    """Seconds from a ``Retry-After`` header (or the Status' retryAfterSeconds), if any."""
    value = None
    if exc.headers is not None:
        with contextlib.suppress(Exception):
            value = exc.headers.get("Retry-After")
    if value is None and exc.body:
        with contextlib.suppress(Exception):
            value = (json.loads(exc.body).get("details") or {}).get("retryAfterSeconds")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # an HTTP-date: fall back to our own backoff
    return max(0.0, seconds)


def _describe(exc: BaseException) -> str:
    """A short, one-line description of a transport failure."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        cause = str(exc).split("Failed to establish a new connection:", 1)[-1].strip()
        return f"cannot connect ({cause})"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return f"timed out ({str(exc).split(': ', 1)[-1]})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Hold the cyclic garbage collector while decoding a large JSON document.

    A list page is ~8 MB of JSON and hundreds of thousands of new containers: each
    allocation burst triggers collections that walk every live object, which about
    doubles the decode time of a 10,000-pod list. Decoded JSON holds no reference
    cycles, so nothing is left for the collector to find. Re-enabled only if it was on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- config
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
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        detail = _one_line(str(exc) or repr(exc))
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


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed request.

    Delays grow as ``base_s * 2**attempt`` capped at ``max_s``, with full jitter (a uniform
    draw between 0 and that). A ``Retry-After`` from the server replaces the drawn delay.
    """

    attempts: int = 6
    base_s: float = 0.2
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        return random.uniform(0.0, min(self.max_s, self.base_s * (2 ** min(attempt, 30))))


@dataclass
class RawList:
    """A list's items as plain JSON dicts and its resourceVersion(s).

    ``resource_versions`` maps each listed namespace to its list RV (``None`` for one
    cluster-wide list), ready to resume a watch from.
    """

    items: list[dict[str, Any]]
    resource_versions: dict[str | None, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One pod watch event, cut down to what a trigger needs.

    ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK (a BOOKMARK has no namespace, name
    or labels; only its ``resource_version`` matters).
    """

    type: str
    namespace: str | None
    name: str | None
    labels: dict[str, str]
    resource_version: str


@dataclass(slots=True)
class _EventRecord:
    namespace: str
    name: str | None  # None: never written (the create failed)
    count: int
    sent_at: float  # time.monotonic() of the last attempt


# --------------------------------------------------------------------------- client
class KubeClient:
    """The controller's Kubernetes access layer over one ``kubernetes`` ApiClient.

    Args:
        api_client: the ApiClient to use. Its urllib3 retries are switched off (its REST
            transport is rebuilt if needed) so that :meth:`with_retries` alone decides.
        retry: retry policy for every request.
        page_size: ``limit`` of each list page.
        event_interval_s: at most one Event write per (pod uid, reason) per interval.
        request_timeout: (connect, read) seconds for every request but watches.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so safely shared
        page_size: int = 500,
        event_interval_s: float = 600.0,
        request_timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.api_client = api_client
        if _own_retries(api_client.configuration):
            old = api_client.rest_client
            api_client.rest_client = rest.RESTClientObject(api_client.configuration)
            old.close()
        self.retry = retry
        self.page_size = page_size
        self.event_interval_s = event_interval_s
        self.request_timeout = request_timeout
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        # events are best effort: never let them hold a pass up for a full retry budget
        self._event_retry = RetryPolicy(min(2, retry.attempts), retry.base_s, retry.max_s)
        self._events: collections.OrderedDict[tuple[str, str], _EventRecord] = collections.OrderedDict()
        self._events_lock = threading.Lock()
        self._missing_crds: set[str] = set()
        self._instance = socket.gethostname()

    def close(self) -> None:
        """Close the underlying ApiClient's connections."""
        self.api_client.close()

    # ----------------------------------------------------------------- retries
    def with_retries(
        self,
        call: Callable[[], T],
        what: str = "Kubernetes request",
        *,
        policy: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Run ``call`` (one request, including reading its body), retrying transient failures.

        Retried: 429 (waiting ``Retry-After`` when given), 500/502/503/504, and connection
        failures (refused, reset, timed out, cut short). Waits use exponential backoff with
        full jitter; ``stop``, when set, ends the waiting early.

        Raises:
            KubeApiError: any other HTTP error, at once.
            KubeUnavailableError: still failing after the last attempt (or ``stop`` set).
        """
        policy = policy or self.retry
        problem = ""
        for attempt in range(policy.attempts):
            wait: float | None = None
            try:
                return call()
            except ApiException as exc:
                status, reason, message = _status_of(exc)
                if status not in _RETRY_STATUSES and status != 0:
                    raise KubeApiError(status, reason, message, what) from None
                problem = f"HTTP {status} {reason}: {message}" if status else message
                if status in (429, 503):
                    wait = _retry_after(exc)
            except _TRANSIENT as exc:
                problem = _describe(exc)
            if attempt + 1 >= policy.attempts:
                break
            delay = min(wait, RETRY_AFTER_MAX_S) if wait is not None else policy.delay(attempt)
            log.debug(
                "retrying %s in %.2fs (attempt %d/%d): %s", what, delay, attempt + 1, policy.attempts, problem
            )
            if stop is not None:
                if stop.wait(delay):
                    raise KubeUnavailableError(what, f"stopped while retrying; last: {problem}", attempt + 1)
            elif delay > 0:
                time.sleep(delay)
        raise KubeUnavailableError(what, problem, policy.attempts)

    def _timeout(self) -> tuple[float, float]:
        return self.request_timeout

    @staticmethod
    def _body(resp: Any) -> bytes:
        """The whole body of a ``_preload_content=False`` response; its connection is released."""
        try:
            return resp.data
        except BaseException:
            resp.close()  # half-read: the connection cannot be reused
            raise
        finally:
            resp.release_conn()

    def _json(self, request: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap a ``_preload_content=False`` request: read its whole body and parse it."""

        def call() -> Any:
            data = self._body(request())
            try:
                with paused_gc():
                    return json.loads(data)
            except ValueError as exc:
                raise _BadResponse(f"response is not JSON ({exc})") from None

        return call

    def _drained(self, request: Callable[[], Any]) -> Callable[[], None]:
        """Wrap a ``_preload_content=False`` request whose answer is not used: read, not parse.

        A pod patch answers with the whole pod (~15 KB for an Argo 3.5 step); parsing
        10,000 of them in a backfill would only cost CPU.
        """

        def call() -> None:
            self._body(request())

        return call

    # ----------------------------------------------------------------- lists
    def _paged(
        self,
        fetch: Callable[[str | None], Any],
        what: str,
        transform: Transform | None = None,
        sink: PageSink | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """All items of a paginated list and its RV; restarts when a continue token expires.

        ``transform``, when given, is applied to each item as its page arrives (e.g. to keep
        only the fields a pass reads), so a list never holds every full object at once.
        ``sink``, when given, is handed each (transformed) page instead, and no items are
        returned; after an expired continue token it sees the objects of the restarted
        list again.
        """
        for restart in range(LIST_RESTARTS + 1):
            items: list[dict[str, Any]] = []
            token: str | None = None
            try:
                while True:
                    page = self.with_retries(
                        self._json(lambda token=token: fetch(token)),
                        what if token is None else f"{what} (next page)",
                    )
                    found = page.get("items") or []
                    if transform is not None:
                        with paused_gc():
                            found = list(map(transform, found))
                    if sink is not None:
                        sink(found)
                    else:
                        items.extend(found)
                    meta = page.get("metadata") or {}
                    del page, found  # a transformed page's full objects can go now
                    token = meta.get("continue") or None
                    if token is None:
                        return items, str(meta.get("resourceVersion") or "")
            except KubeApiError as exc:
                if exc.status != 410 or token is None or restart >= LIST_RESTARTS:
                    raise
                log.info(
                    "%s: continue token expired after %d items; listing again from the start",
                    what,
                    len(items),
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def list_pods(
        self,
        namespaces: Sequence[str] | None,
        label_selector: str = WORKFLOW_LABEL,
        transform: Transform | None = None,
        sink: PageSink | None = None,
    ) -> RawList:
        """Pods matching ``label_selector`` as raw JSON dicts.

        ``namespaces`` None or empty: one cluster-wide list (RV under key ``None``);
        otherwise one list per namespace (RV per namespace). ``transform`` is applied to
        each pod as its page arrives; with ``sink``, each page goes to it and the
        returned list holds no items (only the resourceVersions).
        """
        timeout = self._timeout()
        limit = self.page_size
        result = RawList([], {})
        if not namespaces:

            def fetch_all(token: str | None) -> Any:
                return self.core.list_pod_for_all_namespaces(
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            items, rv = self._paged(fetch_all, "list pods in all namespaces", transform, sink)
            result.items, result.resource_versions[None] = items, rv
            return result
        for namespace in dict.fromkeys(namespaces):

            def fetch(token: str | None, namespace: str = namespace) -> Any:
                return self.core.list_namespaced_pod(
                    namespace,
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            items, rv = self._paged(fetch, f"list pods in {namespace}", transform, sink)
            result.items.extend(items)
            result.resource_versions[namespace] = rv
        return result

    def _list_custom(
        self,
        plural: str,
        namespaces: Sequence[str] | None,
        label_selector: str | None,
        transform: Transform | None = None,
    ) -> list[dict[str, Any]]:
        timeout = self._timeout()
        limit = self.page_size
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) if namespaces else [None]
        items: list[dict[str, Any]] = []
        for namespace in scopes:

            def fetch(token: str | None, namespace: str | None = namespace) -> Any:
                if namespace is None:
                    return self.custom.list_cluster_custom_object(
                        ARGO_GROUP,
                        ARGO_VERSION,
                        plural,
                        label_selector=label_selector,
                        limit=limit,
                        _continue=token,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                return self.custom.list_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    namespace,
                    plural,
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            where = "all namespaces" if namespace is None else namespace
            try:
                found, _ = self._paged(fetch, f"list {plural}.{ARGO_GROUP} in {where}", transform)
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                if plural not in self._missing_crds:
                    self._missing_crds.add(plural)
                    log.warning(
                        "%s.%s is not served by this cluster (CRD not installed?); treating it as empty",
                        plural,
                        ARGO_GROUP,
                    )
                return []
            items.extend(found)
        return items

    def list_workflows(
        self,
        namespaces: Sequence[str] | None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> list[dict[str, Any]]:
        """Argo Workflows (raw JSON) in ``namespaces`` (all when None/empty); [] if the CRD is absent.

        ``transform`` is applied to each Workflow as its page arrives.
        """
        return self._list_custom("workflows", namespaces, label_selector, transform)

    def list_taskresults(
        self, namespaces: Sequence[str] | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Argo WorkflowTaskResults (raw JSON); [] when the CRD is absent (Argo < 3.3)."""
        return self._list_custom("workflowtaskresults", namespaces, label_selector)

    def namespace_exists(self, name: str) -> bool:
        """Whether a namespace exists (for scoping a manual pass).

        Credentials limited to some namespaces (such as the controller's own
        ServiceAccount) may not read Namespace objects at all; then the name is
        taken on trust and the pass's own lists in it decide.
        """
        timeout = self._timeout()
        try:
            self.with_retries(
                self._json(
                    lambda: self.core.read_namespace(name, _preload_content=False, _request_timeout=timeout)
                ),
                f"get namespace {name}",
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return True
            raise
        return True

    def get_workflow(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One Argo Workflow (raw JSON), or None when it (or its CRD) does not exist."""
        timeout = self._timeout()
        try:
            return self.with_retries(
                self._json(
                    lambda: self.custom.get_namespaced_custom_object(
                        ARGO_GROUP,
                        ARGO_VERSION,
                        namespace,
                        "workflows",
                        name,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                ),
                f"get workflow {namespace}/{name}",
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    # ----------------------------------------------------------------- writes
    def patch_pod_metadata(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """JSON-merge-patch a pod's labels/annotations; False when the pod is gone (404).

        ``patch`` is ``{"metadata": {"labels": {...}, "annotations": {...}}}``; a ``None``
        value removes that key. Only those keys change.
        """
        metadata = patch.get("metadata")
        if (
            set(patch) != {"metadata"}
            or not isinstance(metadata, dict)
            or not set(metadata) <= {"labels", "annotations"}
        ):
            raise ValueError("a pod metadata patch may only hold metadata.labels and metadata.annotations")
        timeout = self._timeout()
        try:
            self.with_retries(
                self._drained(
                    lambda: self.core.patch_namespaced_pod(
                        name,
                        namespace,
                        patch,
                        _content_type=MERGE_PATCH,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                ),
                f"patch pod {namespace}/{name}",
            )
        except KubeApiError as exc:
            if exc.status == 404:
                log.info("pod %s/%s is gone; patch skipped", namespace, name)
                return False
            raise
        return True

    def emit_pod_event(self, pod: dict[str, Any], reason: str, message: str, type: str = "Warning") -> bool:
        """Record a core/v1 Event on ``pod``, at most once per (pod uid, reason) per interval.

        The first time: create an Event. When the same pod and reason come back after
        ``event_interval_s``: patch that Event's count, lastTimestamp and message (as
        event recorders do), or create a new one if it has expired meanwhile.

        Returns:
            True when an Event was written; False when rate-limited or when the write
            failed (failures are logged, never raised).
        """
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        pod_name = str(meta.get("name") or "")
        uid = str(meta.get("uid") or f"{namespace}/{pod_name}")
        key = (uid, reason)
        now = time.monotonic()
        with self._events_lock:
            record = self._events.get(key)
            if record is not None and now - record.sent_at < self.event_interval_s:
                return False
            if record is None:
                record = _EventRecord(namespace, None, 0, now)
                self._events[key] = record
                while len(self._events) > EVENT_CACHE_SIZE:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            record.sent_at = now  # claim the slot before writing: one writer per interval
            previous_name, previous_count = record.name, record.count
        text = _truncate(message, EVENT_MESSAGE_MAX_BYTES)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        timeout = self._timeout()
        what = f"event {reason} on pod {namespace}/{pod_name}"
        try:
            if previous_name is not None:
                body = {"count": previous_count + 1, "lastTimestamp": stamp, "message": text}
                try:
                    self.with_retries(
                        self._json(
                            lambda: self.core.patch_namespaced_event(
                                previous_name,
                                namespace,
                                body,
                                _content_type=MERGE_PATCH,
                                _preload_content=False,
                                _request_timeout=timeout,
                            )
                        ),
                        f"patch {what}",
                        policy=self._event_retry,
                    )
                except KubeApiError as exc:
                    if exc.status != 404:
                        raise
                else:
                    with self._events_lock:
                        record.count = previous_count + 1
                    return True
            name = f"{pod_name}.{time.time_ns():x}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": str(pod.get("apiVersion") or "v1"),
                    "kind": str(pod.get("kind") or "Pod"),
                    "namespace": namespace,
                    "name": pod_name,
                    "uid": str(meta.get("uid") or ""),
                },
                "reason": reason,
                "message": text,
                "type": type,
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "reportingInstance": self._instance,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            self.with_retries(
                self._json(
                    lambda: self.core.create_namespaced_event(
                        namespace,
                        event,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                ),
                f"create {what}",
                policy=self._event_retry,
            )
        except (KubeApiError, KubeUnavailableError) as exc:
            log.warning("could not record %s: %s", what, exc)
            return False
        with self._events_lock:
            record.name, record.count = name, 1
        return True

    # ----------------------------------------------------------------- watch
    def watch_pods(
        self,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_s: int,
        stop: threading.Event,
        label_selector: str = WORKFLOW_LABEL,
    ) -> Iterator[WatchEvent]:
        """Watch pods (one namespace, or all when None) from ``resource_version``, with bookmarks.

        Yields ADDED/MODIFIED/DELETED/BOOKMARK events as :class:`WatchEvent`. Ends cleanly
        when the server ends the stream (its ``timeoutSeconds`` = ``timeout_s``, or a cut
        connection) or within ~50 ms of ``stop`` being set: a closer thread shuts the
        stream's socket down, which unblocks the read at once.

        Raises:
            WatchExpired: the RV is too old (410, as an ERROR event or an HTTP error).
            KubeApiError: any other error answer or ERROR event.
            KubeUnavailableError: the watch could not be opened after every retry.
        """
        if timeout_s < 1:
            raise ValueError("timeout_s must be at least 1 second")
        if stop.is_set():
            return
        where = namespace or "all namespaces"
        what = f"watch pods in {where}"
        connect = self.request_timeout[0]
        # the server ends the stream after timeout_s; the read timeout only catches a dead server
        read = timeout_s + max(self.request_timeout[1], 30.0)
        kwargs: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "resource_version": resource_version,
            "timeout_seconds": int(timeout_s),
            "label_selector": label_selector,
            "_preload_content": False,
            "_request_timeout": (connect, read),
        }

        def open_stream() -> Any:
            if namespace is None:
                return self.core.list_pod_for_all_namespaces(**kwargs)
            return self.core.list_namespaced_pod(namespace, **kwargs)

        try:
            resp = self.with_retries(open_stream, what, stop=stop)
        except KubeApiError as exc:
            if exc.status == 410:
                raise WatchExpired(exc.status, exc.reason, exc.message, what) from None
            raise
        except KubeUnavailableError:
            if stop.is_set():
                return
            raise
        closer = _StreamCloser(resp, stop, name=f"kube-watch-stop-{where}")
        try:
            for line in _lines(resp):
                event = _watch_event(line, what)
                if event is not None:
                    yield event
                if stop.is_set():
                    return
        except _TRANSIENT as exc:
            if not stop.is_set():
                log.info("%s ended early: %s", what, _describe(exc))
        finally:
            closer.finish()


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (marked with ``...`` when cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


class _StreamCloser:
    """Shuts a streaming response's socket down as soon as ``stop`` is set.

    A blocked ``recv`` on that socket then returns at once. ``finish`` (called when the
    stream ends) retires the closer under the same lock, so it can never touch the
    connection after it has gone back to the pool.
    """

    def __init__(self, resp: Any, stop: threading.Event, name: str) -> None:
        self._resp = resp
        self._stop = stop
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopped = self._stop.wait(STOP_POLL_S)
            with self._lock:
                if self._done:
                    return
                if stopped:
                    self._shutdown()
                    return

    def _shutdown(self) -> None:
        conn = getattr(self._resp, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """End the closer and release the response (dropping its connection)."""
        with self._lock:
            self._done = True
        with contextlib.suppress(Exception):
            self._resp.close()
        with contextlib.suppress(Exception):
            self._resp.release_conn()


def _lines(resp: Any) -> Iterator[bytes]:
    """Non-empty lines of a streaming response, as they arrive."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end > start:
                yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
    if buffer.strip():
        yield bytes(buffer)


def _watch_event(line: bytes, what: str) -> WatchEvent | None:
    """Parse one watch line; raise on ERROR events; None for lines that are not events."""
    try:
        doc = json.loads(line)
    except ValueError:
        text = _one_line(line.decode("utf-8", "replace"), 120)
        log.warning("%s: ignoring a line that is not JSON: %s", what, text)
        return None
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("type") or "")
    obj = doc.get("object") if isinstance(doc.get("object"), dict) else {}
    if kind == "ERROR":
        status = int(obj.get("code") or 0)
        reason = str(obj.get("reason") or "Error")
        message = str(obj.get("message") or "")
        if status == 410:
            raise WatchExpired(status, reason, message, what)
        raise KubeApiError(status, reason, message, what)
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return WatchEvent(
        type=kind,
        namespace=meta.get("namespace"),
        name=meta.get("name"),
        labels=dict(labels) if isinstance(labels, dict) else {},
        resource_version=str(meta.get("resourceVersion") or ""),
    )
