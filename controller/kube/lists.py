"""Reading from the API server: paginated lists (whole, or page by page) and single gets.

A list never holds every full object at once: a ``transform`` is applied to each item as
its page arrives (e.g. to keep only the fields a pass reads). When a continue token
expires (410) the list starts over, at most ``LIST_RESTARTS`` times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.gc_pause import paused_gc
from controller.kube.errors import ContinueExpired, KubeApiError
from controller.kube.transport import JSON, Transport
from reconcile.conventions import ARGO_WORKFLOW_LABEL

log = logging.getLogger(__name__)

Transform = Callable[[JSON], JSON]
Fetch = Callable[[str | None], Any]  # one page's request, given the continue token
Pages = Generator[list[JSON], None, str]  # a list's pages; returns its resourceVersion

# What client-go's metadata client asks for: each object's metadata only, or (from a server
# that cannot convert) the whole objects, of which only the metadata is then kept.
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# Of an object's metadata, what deciding whether it changed needs (managedFields alone is KBs).
_KEPT_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations")

ARGO_GROUP = "argoproj.io"
ARGO_VERSION = "v1alpha1"
LIST_RESTARTS = 2  # how often a list whose continue token expired (410) starts over


@dataclass
class RawList:
    """A list's items as plain JSON dicts and its resourceVersion(s).

    ``resource_versions`` maps each listed namespace to its list RV (``None`` for one
    cluster-wide list), ready to resume a watch from.
    """

    items: list[JSON]
    resource_versions: dict[str | None, str] = field(default_factory=dict)


class PodPages:
    """Pods as the list pages arrive; ``resource_versions`` is complete once every page was taken.

    After an expired continue token a list starts over, so pods seen before may come again.
    """

    def __init__(self, pages: Iterator[list[JSON]], resource_versions: dict[str | None, str]) -> None:
        self._pages = pages
        self.resource_versions = resource_versions

    def __iter__(self) -> Iterator[list[JSON]]:
        return self._pages


def metadata_only(obj: JSON) -> JSON:
    """An object (or a PartialObjectMetadata) cut down to ``{"metadata": {...}}``.

    Of the metadata: name, namespace, uid, resourceVersion, labels and annotations.

    Anything not shaped as expected becomes an empty metadata, which matches nothing
    remembered: the object is then read whole, and validated, like any changed one.
    """
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return {"metadata": {}}
    return {"metadata": {k: meta[k] for k in _KEPT_METADATA if k in meta}}


def _drain(pages: Pages, into: list[JSON]) -> str:
    """Every page's items into `into`; returns the list's resourceVersion."""
    while True:
        try:
            into.extend(next(pages))
        except StopIteration as done:
            return done.value


class Lister:
    """Lists and gets of pods, Argo Workflows and WorkflowTaskResults, as raw JSON.

    Args:
        transport: the requests' API objects, retries and timeouts.
        page_size: ``limit`` of each list page.
    """

    def __init__(self, transport: Transport, page_size: int) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.transport = transport
        self.page_size = page_size
        self._missing_crds: set[str] = set()

    # ----------------------------------------------------------------- paging
    def _listing(self, fetch: Fetch, what: str, transform: Transform | None) -> Pages:
        """The pages of one list from its start (ContinueExpired when a next page is refused)."""
        token: str | None = None
        while True:
            try:
                page = self.transport.retried(
                    self.transport.json(lambda token=token: fetch(token)),
                    what if token is None else f"{what} (next page)",
                )
            except KubeApiError as exc:
                if exc.status == 410 and token is not None:
                    raise ContinueExpired(exc.status, exc.reason, exc.message, exc.request) from None
                raise
            found = page.get("items") or []
            if transform is not None:
                with paused_gc():
                    found = list(map(transform, found))
            meta = page.get("metadata") or {}
            del page  # a transformed page's full objects can go now
            yield found
            token = meta.get("continue") or None
            if token is None:
                return str(meta.get("resourceVersion") or "")

    def _pages(
        self,
        fetch: Fetch,
        what: str,
        transform: Transform | None,
        on_restart: Callable[[], Any] | None = None,
    ) -> Pages:
        """All pages of a list; after an expired continue token it starts over (`on_restart` first)."""
        restarts = 0
        while True:
            seen = 0
            listing = self._listing(fetch, what, transform)
            try:
                while True:
                    try:
                        page = next(listing)
                    except StopIteration as done:
                        return done.value
                    seen += len(page)
                    yield page
            except ContinueExpired:
                if restarts >= LIST_RESTARTS:
                    raise
                restarts += 1
                log.info(
                    "%s: continue token expired after %d items; listing again from the start", what, seen
                )
                if on_restart is not None:
                    on_restart()

    def _collected(self, fetch: Fetch, what: str, transform: Transform | None) -> tuple[list[JSON], str]:
        """All items of a list and its resourceVersion."""
        items: list[JSON] = []
        rv = _drain(self._pages(fetch, what, transform, on_restart=items.clear), items)
        return items, rv

    # ----------------------------------------------------------------- pods
    def _pod_lists(
        self, namespaces: Sequence[str] | None, label_selector: str, accept: str | None = None
    ) -> Iterator[tuple[str | None, Fetch, str]]:
        """(namespace, fetch, what) of each list: one cluster-wide (namespace None), or one per namespace.

        ``accept``: an Accept header of its own (e.g. METADATA_LIST_ACCEPT), else the client's.
        """
        headers = {"Accept": accept} if accept else None
        timeout = self.transport.request_timeout
        limit = self.page_size
        core = self.transport.core
        if not namespaces:

            def fetch_all(token: str | None) -> Any:
                return core.list_pod_for_all_namespaces(
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _headers=headers,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            yield None, fetch_all, "list pods in all namespaces"
            return
        for namespace in dict.fromkeys(namespaces):

            def fetch(token: str | None, namespace: str = namespace) -> Any:
                return core.list_namespaced_pod(
                    namespace,
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _headers=headers,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            yield namespace, fetch, f"list pods in {namespace}"

    def list_pods(
        self,
        namespaces: Sequence[str] | None,
        label_selector: str = ARGO_WORKFLOW_LABEL,
        transform: Transform | None = None,
    ) -> RawList:
        """Pods matching ``label_selector`` as raw JSON dicts.

        ``namespaces`` None or empty: one cluster-wide list (RV under key ``None``);
        otherwise one list per namespace (RV per namespace). ``transform`` is applied to
        each pod as its page arrives.
        """
        result = RawList([], {})
        for namespace, fetch, what in self._pod_lists(namespaces, label_selector):
            items, result.resource_versions[namespace] = self._collected(fetch, what, transform)
            result.items.extend(items)
        return result

    def pod_pages(
        self,
        namespaces: Sequence[str] | None,
        label_selector: str = ARGO_WORKFLOW_LABEL,
        transform: Transform | None = None,
    ) -> PodPages:
        """The pods of `list_pods`, a page at a time as each arrives (never all held at once).

        Each page is requested when the one before has been taken.
        """
        resource_versions: dict[str | None, str] = {}

        def pages() -> Iterator[list[JSON]]:
            for namespace, fetch, what in self._pod_lists(namespaces, label_selector):
                resource_versions[namespace] = yield from self._pages(fetch, what, transform)

        return PodPages(pages(), resource_versions)

    def pod_metadata_pages(
        self, namespaces: Sequence[str] | None, label_selector: str = ARGO_WORKFLOW_LABEL
    ) -> PodPages:
        """The pods of `pod_pages` as metadata only (PartialObjectMetadataList), a page at a time.

        Each item is ``{"metadata": {...}}`` (`metadata_only`); the list resourceVersions are
        those of the whole pods' list, ready to resume a watch from.
        """
        resource_versions: dict[str | None, str] = {}

        def pages() -> Iterator[list[JSON]]:
            lists = self._pod_lists(namespaces, label_selector, METADATA_LIST_ACCEPT)
            for namespace, fetch, what in lists:
                rv = yield from self._pages(fetch, f"{what} (metadata)", metadata_only)
                resource_versions[namespace] = rv

        return PodPages(pages(), resource_versions)

    # ----------------------------------------------------------------- Argo resources
    def _list_custom(
        self,
        plural: str,
        namespaces: Sequence[str] | None,
        label_selector: str | None,
        transform: Transform | None = None,
        accept: str | None = None,
    ) -> list[JSON]:
        headers = {"Accept": accept} if accept else None
        timeout = self.transport.request_timeout
        limit = self.page_size
        custom = self.transport.custom
        scopes: list[str | None] = list(dict.fromkeys(namespaces)) if namespaces else [None]
        items: list[JSON] = []
        for namespace in scopes:

            def fetch(token: str | None, namespace: str | None = namespace) -> Any:
                if namespace is None:
                    return custom.list_cluster_custom_object(
                        ARGO_GROUP,
                        ARGO_VERSION,
                        plural,
                        label_selector=label_selector,
                        limit=limit,
                        _continue=token,
                        _headers=headers,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                return custom.list_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    namespace,
                    plural,
                    label_selector=label_selector,
                    limit=limit,
                    _continue=token,
                    _headers=headers,
                    _preload_content=False,
                    _request_timeout=timeout,
                )

            where = "all namespaces" if namespace is None else namespace
            try:
                found, _ = self._collected(fetch, f"list {plural}.{ARGO_GROUP} in {where}", transform)
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
    ) -> list[JSON]:
        """Argo Workflows (raw JSON) in ``namespaces`` (all when None/empty); [] if the CRD is absent.

        ``transform`` is applied to each Workflow as its page arrives.
        """
        return self._list_custom("workflows", namespaces, label_selector, transform)

    def list_taskresults(
        self, namespaces: Sequence[str] | None, label_selector: str | None = None
    ) -> list[JSON]:
        """Argo WorkflowTaskResults (raw JSON); [] when the CRD is absent (Argo < 3.3)."""
        return self._list_custom("workflowtaskresults", namespaces, label_selector)

    def list_workflow_metadata(self, namespaces: Sequence[str] | None) -> list[JSON]:
        """Every Argo Workflow's metadata only (PartialObjectMetadataList); [] if the CRD is absent."""
        return self._list_custom("workflows", namespaces, None, metadata_only, METADATA_LIST_ACCEPT)

    def list_taskresult_metadata(self, namespaces: Sequence[str] | None) -> list[JSON]:
        """Every WorkflowTaskResult's metadata only (PartialObjectMetadataList); [] if the CRD is absent."""
        return self._list_custom("workflowtaskresults", namespaces, None, metadata_only, METADATA_LIST_ACCEPT)

    # ----------------------------------------------------------------- gets
    def namespace_exists(self, name: str) -> bool:
        """Whether a namespace exists (for scoping a manual pass).

        Credentials limited to some namespaces (such as the controller's own
        ServiceAccount) may not read Namespace objects at all; then the name is
        taken on trust and the pass's own lists in it decide.
        """
        timeout = self.transport.request_timeout
        core = self.transport.core
        try:
            self.transport.retried(
                self.transport.json(
                    lambda: core.read_namespace(name, _preload_content=False, _request_timeout=timeout)
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

    def get_workflow(self, namespace: str, name: str) -> JSON | None:
        """One Argo Workflow (raw JSON), or None when it (or its CRD) does not exist."""
        timeout = self.transport.request_timeout
        custom = self.transport.custom
        try:
            return self.transport.retried(
                self.transport.json(
                    lambda: custom.get_namespaced_custom_object(
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
