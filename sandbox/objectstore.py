"""An in-memory, thread-safe Kubernetes object store (etcd + watch cache).

:class:`ObjectStore` implements :class:`sandbox.cluster.Cluster` and adds what
the HTTP emulator needs: a single global resourceVersion counter, bounded
per-resource event history, paginated lists with continue tokens, watches,
and cached serialized JSON for every object so list pages are built by
joining bytes.

Stored objects are never mutated in place: every write stores a fresh dict
and its serialization, so readers holding an entry (history, watchers, list
pages) always see a consistent snapshot.
"""

from __future__ import annotations

import base64
import bisect
import json
import queue
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.cluster import RESOURCES, ClusterError
from sandbox.managedfields import updated_entries
from sandbox.patching import apply_patch, merge_patch
from sandbox.selectors import Matcher, combine, parse_field_selector, parse_label_selector

__all__ = ["CUSTOM_GROUPS", "ListPage", "ObjectStore", "WatchEvent", "Watcher", "dumps", "partial_object"]

Key = tuple[str, str]  # (namespace or "", name)

# resources whose metadata.generation is tracked (custom resources, as in k8s)
_GENERATION_RESOURCES = frozenset({"workflows", "workflowtaskresults"})
# API groups served as custom resources (CRDs): no strategic merge, opaque top-level fields
CUSTOM_GROUPS = frozenset({"argoproj.io"})


def dumps(obj: Any) -> bytes:
    """Compact JSON serialization used for every cached object."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def partial_object(metadata_raw: bytes, api_version: str = "meta.k8s.io/v1") -> bytes:
    """A serialized ``PartialObjectMetadata`` carrying one object's serialized ``metadata``."""
    return (
        b'{"kind":"PartialObjectMetadata","apiVersion":"'
        + api_version.encode()
        + b'","metadata":'
        + metadata_raw
        + b"}"
    )


def _clone(obj: Any) -> Any:
    """A deep copy of a JSON-shaped value (faster than copy.deepcopy)."""
    return json.loads(json.dumps(obj))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_version(resource: str) -> str:
    group, version, _, _ = RESOURCES[resource]
    return f"{group}/{version}" if group else version


def _with_type(obj: dict[str, Any], resource: str) -> dict[str, Any]:
    """``obj`` with apiVersion and kind set and placed first (as the server writes them)."""
    out: dict[str, Any] = {"apiVersion": _api_version(resource), "kind": RESOURCES[resource][2]}
    out.update((k, v) for k, v in obj.items() if k not in ("apiVersion", "kind"))
    return out


@dataclass(slots=True)
class _Entry:
    obj: dict[str, Any]
    raw: bytes
    rv: int
    meta_raw: bytes | None = None  # serialized obj["metadata"], made on first use

    def metadata_raw(self) -> bytes:
        """The serialized ``metadata`` (kept: entries are never changed once stored)."""
        meta = self.meta_raw
        if meta is None:
            # Two threads may both build it: same bytes, and the assignment is atomic.
            meta = self.meta_raw = dumps(self.obj["metadata"])
        return meta


@dataclass(slots=True)
class _HistoryEvent:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    key: Key
    entry: _Entry
    old: dict[str, Any] | None  # previous state for MODIFIED (selector transitions)


@dataclass(slots=True)
class WatchEvent:
    """One event delivered to a :class:`Watcher`.

    ``type`` is ADDED, MODIFIED, DELETED, BOOKMARK, ERROR or CLOSED (the
    watch was cut; no more events follow). ``raw`` is the serialized object
    (for BOOKMARK: a minimal object carrying only the resourceVersion; for
    ERROR: a Status).
    """

    type: str
    raw: bytes
    rv: int
    source: _Entry | None = field(default=None, repr=False, compare=False)  # the stored state

    def object(self) -> dict[str, Any]:
        """The event's object decoded from JSON."""
        return json.loads(self.raw)

    def metadata_raw(self) -> bytes:
        """The serialized ``metadata`` of the event's object (BOOKMARK: just its resourceVersion)."""
        if self.source is not None:
            return self.source.metadata_raw()
        return dumps((self.object() or {}).get("metadata") or {})

    def line(self) -> bytes:
        """The event as one line of a Kubernetes watch stream."""
        return b'{"type":"' + self.type.encode() + b'","object":' + self.raw + b"}\n"


@dataclass
class ListPage:
    """One page of a list: serialized items plus list metadata.

    With ``metadata_only`` the items are the objects' serialized ``metadata``
    maps, and :meth:`body` is a ``PartialObjectMetadataList``.
    """

    resource: str
    items: list[bytes]
    resource_version: str
    continue_token: str | None = None
    remaining: int | None = None
    metadata_only: bool = False

    def list_meta(self) -> dict[str, Any]:
        """The list's ``metadata``: resourceVersion, and continue/remainingItemCount if any."""
        meta: dict[str, Any] = {"resourceVersion": self.resource_version}
        if self.continue_token:
            meta["continue"] = self.continue_token
        if self.remaining is not None:
            meta["remainingItemCount"] = self.remaining
        return meta

    def body(self, partial_api_version: str = "meta.k8s.io/v1") -> bytes:
        """The complete ``<Kind>List`` JSON document (or ``PartialObjectMetadataList``).

        ``partial_api_version`` is the ``meta.k8s.io`` version of a metadata-only page.
        """
        if self.metadata_only:
            kind, api_version = b"PartialObjectMetadataList", partial_api_version.encode()
        else:
            kind = RESOURCES[self.resource][2].encode() + b"List"
            api_version = _api_version(self.resource).encode()
        head = (
            b'{"kind":"'
            + kind
            + b'","apiVersion":"'
            + api_version
            + b'","metadata":'
            + dumps(self.list_meta())
            + b',"items":'
        )
        if not self.metadata_only:
            return head + b"[" + b",".join(self.items) + b"]}"
        if not self.items:
            # The real server converts into a Go slice left nil when nothing matched.
            return head + b"null}"
        item_head = b'{"kind":"PartialObjectMetadata","apiVersion":"' + api_version + b'","metadata":'
        return head + b"[" + item_head + (b"}," + item_head).join(self.items) + b"}]}"

    def objects(self) -> list[dict[str, Any]]:
        """The items decoded from JSON (``metadata`` maps for a metadata-only page)."""
        return [json.loads(b) for b in self.items]


@dataclass(eq=False)
class Watcher:
    """A subscription to one resource's events; read with :meth:`get`."""

    store: ObjectStore
    resource: str
    namespace: str | None
    matcher: Matcher | None
    queue: queue.SimpleQueue[WatchEvent] = field(default_factory=queue.SimpleQueue)
    closed: bool = False
    last_rv: int = 0

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """Next event, or None when ``timeout`` passes with nothing to deliver."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def request_bookmark(self) -> None:
        """Queue a BOOKMARK at the current resourceVersion (ordered after queued events)."""
        self.store._bookmark(self)

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        self.store._unsubscribe(self)

    def __iter__(self) -> Iterable[WatchEvent]:
        while True:
            ev = self.get()
            if ev is None or ev.type == "CLOSED":
                return
            yield ev


def status_body(
    code: int,
    reason: str,
    message: str,
    name: str | None = None,
    kind: str | None = None,
    group: str | None = None,
    retry_after: int | None = None,
) -> bytes:
    """A failure `Status` object as the Kubernetes API server sends it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if retry_after is not None:
        details["retryAfterSeconds"] = retry_after
    if details:
        body["details"] = details
    return dumps(body)


class ObjectStore:
    """Thread-safe in-memory object store implementing the ``Cluster`` protocol.

    Args:
        history_size: events retained per resource for watch resumption;
            older ones are dropped (a watch from before them gets 410).
        auto_namespaces: create a Namespace object the first time an object
            is stored in an unknown namespace (instead of rejecting it).
        managed_fields: keep ``metadata.managedFields`` on every write, as a
            real API server does (:mod:`sandbox.managedfields`).
        default_manager: the manager that writes made in process (the
            simulator's, a test's) are recorded under when they name none.
    """

    def __init__(
        self,
        history_size: int = 100_000,
        auto_namespaces: bool = True,
        managed_fields: bool = True,
        default_manager: str = "sandbox",
    ) -> None:
        self._lock = threading.RLock()
        self.managed_fields = managed_fields
        self.default_manager = default_manager
        self._rv = 0
        self._history_size = history_size
        self._auto_namespaces = auto_namespaces
        self._objects: dict[str, dict[Key, _Entry]] = {r: {} for r in RESOURCES}
        self._sorted: dict[str, list[Key] | None] = {r: None for r in RESOURCES}
        self._history: dict[str, deque[_HistoryEvent]] = {r: deque() for r in RESOURCES}
        # every event with rv > floor is still in history
        self._history_floor: dict[str, int] = dict.fromkeys(RESOURCES, 0)
        self._compacted_rv = 0  # continue tokens older than this are Expired
        self._watchers: dict[str, set[Watcher]] = {r: set() for r in RESOURCES}

    # ------------------------------------------------------------------ helpers
    @property
    def resource_version(self) -> int:
        """The current global resourceVersion."""
        return self._rv

    def _check_resource(self, resource: str) -> None:
        if resource not in RESOURCES:
            raise ClusterError(
                404, "NotFound", f"the server could not find the requested resource ({resource})"
            )

    def _key(self, resource: str, namespace: str | None, name: str) -> Key:
        namespaced = RESOURCES[resource][3]
        return ((namespace or "default") if namespaced else "", name)

    def _not_found(self, resource: str, name: str) -> ClusterError:
        group = RESOURCES[resource][0]
        qual = f"{resource}.{group}" if group else resource
        return ClusterError(404, "NotFound", f'{qual} "{name}" not found')

    def _conflict(self, resource: str, name: str) -> ClusterError:
        group = RESOURCES[resource][0]
        qual = f"{resource}.{group}" if group else resource
        return ClusterError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qual} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
        )

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(
        self,
        resource: str,
        etype: str,
        key: Key,
        entry: _Entry,
        old: dict[str, Any] | None,
    ) -> None:
        ev = _HistoryEvent(entry.rv, etype, key, entry, old)
        hist = self._history[resource]
        hist.append(ev)
        while len(hist) > self._history_size:
            dropped = hist.popleft()
            self._history_floor[resource] = dropped.rv
        for w in list(self._watchers[resource]):
            self._deliver(w, ev)

    def _deliver(self, w: Watcher, ev: _HistoryEvent) -> None:
        if w.namespace is not None and ev.key[0] != w.namespace:
            return
        etype = ev.type
        if w.matcher is not None:
            now = w.matcher(ev.entry.obj)
            if etype == "MODIFIED":
                was = ev.old is not None and w.matcher(ev.old)
                if was and not now:
                    etype = "DELETED"
                elif now and not was:
                    etype = "ADDED"
                elif not now:
                    return
            elif not now:
                return
        w.last_rv = ev.rv
        w.queue.put(WatchEvent(etype, ev.entry.raw, ev.rv, ev.entry))

    def _ensure_namespace(self, namespace: str) -> None:
        if not namespace:
            return
        nss = self._objects["namespaces"]
        if ("", namespace) in nss:
            return
        if not self._auto_namespaces:
            raise ClusterError(404, "NotFound", f'namespaces "{namespace}" not found')
        self._insert(
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )

    def _insert(self, resource: str, obj: dict[str, Any], manager: str | None = None) -> _Entry:
        group, version, kind, namespaced = RESOURCES[resource]
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ClusterError(422, "Invalid", "metadata must be an object")
        name = meta.get("name")
        if not name:
            gen = meta.get("generateName")
            if not gen:
                raise ClusterError(
                    422,
                    "Invalid",
                    f"{kind}.{version} is invalid: metadata.name: Required value: "
                    "name or generateName is required",
                )
            name = gen + uuid.uuid4().hex[:5]
            meta["name"] = name
        ns = ""
        if namespaced:
            ns = meta.get("namespace") or "default"
            meta["namespace"] = ns
            self._ensure_namespace(ns)
        else:
            meta.pop("namespace", None)
        key = (ns, name)
        objs = self._objects[resource]
        if key in objs:
            qual = f"{resource}.{group}" if group else resource
            raise ClusterError(409, "AlreadyExists", f'{qual} "{name}" already exists')
        obj = _with_type(obj, resource)
        meta = obj["metadata"]
        if resource == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj.setdefault("status", {"phase": "Active"})
        elif resource == "pods":
            obj.setdefault("status", {"phase": "Pending"})
        rv = self._next_rv()
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(rv)
        meta["creationTimestamp"] = _now()
        if resource in _GENERATION_RESOURCES:
            meta.setdefault("generation", 1)
        meta.pop("deletionTimestamp", None)
        self._set_managed_fields(resource, {}, obj, manager, None)
        entry = _Entry(obj, dumps(obj), rv)
        objs[key] = entry
        keys = self._sorted[resource]
        if keys is not None:
            bisect.insort(keys, key)
        self._record(resource, "ADDED", key, entry, None)
        return entry

    def _set_managed_fields(
        self,
        resource: str,
        old: dict[str, Any],
        new: dict[str, Any],
        manager: str | None,
        subresource: str | None,
    ) -> None:
        """Record ``manager``'s write of ``new`` over ``old`` in ``new``'s metadata (kept last)."""
        meta = new["metadata"]
        if not self.managed_fields:
            meta.pop("managedFields", None)
            return
        group = RESOURCES[resource][0]
        entries = updated_entries(
            old,
            new,
            manager=self.default_manager if manager is None else manager,
            api_version=_api_version(resource),
            now=_now(),
            custom=group in CUSTOM_GROUPS,
            subresource=subresource,
        )
        meta.pop("managedFields", None)
        if entries:
            meta["managedFields"] = entries

    def _store_update(
        self,
        resource: str,
        key: Key,
        old: _Entry,
        new_obj: dict[str, Any],
        subresource: str | None = None,
        manager: str | None = None,
    ) -> _Entry:
        """Validate and commit ``new_obj`` as the next state of ``key``."""
        old_meta = old.obj["metadata"]
        if subresource == "status":
            merged = json.loads(old.raw)
            if "status" in new_obj:
                merged["status"] = new_obj["status"]
            else:
                merged.pop("status", None)
            new_obj = merged
        elif not isinstance(new_obj, dict) or not isinstance(new_obj.get("metadata"), dict):
            raise ClusterError(422, "Invalid", "object must have a metadata map")
        meta = new_obj["metadata"]
        for fixed in ("name", "uid", "creationTimestamp"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
        if key[0]:
            meta["namespace"] = key[0]
        new_obj = _with_type(new_obj, resource)
        meta = new_obj["metadata"]
        if "generation" in old_meta:

            def spec_part(o: dict[str, Any]) -> dict[str, Any]:
                return {k: v for k, v in o.items() if k not in ("metadata", "status")}

            gen = old_meta["generation"]
            if subresource is None and spec_part(new_obj) != spec_part(old.obj):
                gen += 1
            meta["generation"] = gen
        self._set_managed_fields(resource, old.obj, new_obj, manager, subresource)
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        raw = dumps(new_obj)
        entry = _Entry(new_obj, raw, rv)
        self._objects[resource][key] = entry
        self._record(resource, "MODIFIED", key, entry, old.obj)
        return entry

    # --------------------------------------------------------- Cluster protocol
    def create(self, resource: str, obj: dict[str, Any], manager: str | None = None) -> dict[str, Any]:
        """Store a new object; assigns uid/resourceVersion/creationTimestamp.

        ``manager`` is who the write is recorded under in ``managedFields``
        (the store's ``default_manager`` if None); the same holds for every write.
        """
        return json.loads(self.create_raw(resource, obj, manager=manager))

    def create_raw(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        manager: str | None = None,
    ) -> bytes:
        """Like :meth:`create` but returns the serialized object.

        ``namespace`` (the URL's namespace) overrides/fills ``metadata.namespace``.
        """
        self._check_resource(resource)
        obj = _clone(obj)
        if namespace is not None and RESOURCES[resource][3]:
            meta = obj.setdefault("metadata", {})
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise ClusterError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        if isinstance(obj.get("metadata"), dict):
            obj["metadata"].pop("resourceVersion", None)
        with self._lock:
            return self._insert(resource, obj, manager).raw

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Return a copy of one object; 404 if absent."""
        return json.loads(self.get_raw(resource, namespace, name))

    def get_raw(self, resource: str, namespace: str | None, name: str) -> bytes:
        """The serialized object; 404 if absent."""
        self._check_resource(resource)
        with self._lock:
            entry = self._objects[resource].get(self._key(resource, namespace, name))
        if entry is None:
            raise self._not_found(resource, name)
        return entry.raw

    def get_metadata_raw(self, resource: str, namespace: str | None, name: str) -> bytes:
        """The object's serialized ``metadata`` only; 404 if absent."""
        self._check_resource(resource)
        with self._lock:
            entry = self._objects[resource].get(self._key(resource, namespace, name))
        if entry is None:
            raise self._not_found(resource, name)
        return entry.metadata_raw()

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of the matching objects, sorted by namespace then name."""
        page = self.list_page(resource, namespace, label_selector, field_selector)
        return page.objects()

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: str = "merge",
        subresource: str | None = None,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Apply a ``merge``/``strategic``/``json`` patch; 409 on a stale resourceVersion."""
        return json.loads(self.patch_raw(resource, namespace, name, patch, patch_type, subresource, manager))

    def patch_raw(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: str = "merge",
        subresource: str | None = None,
        manager: str | None = None,
    ) -> bytes:
        """Like :meth:`patch` but returns the serialized object."""
        self._check_resource(resource)
        key = self._key(resource, namespace, name)
        with self._lock:
            old = self._objects[resource].get(key)
            if old is None:
                raise self._not_found(resource, name)
            if patch_type != "json" and not isinstance(patch, dict):
                raise ClusterError(400, "BadRequest", "patch body must be a JSON object")
            if patch_type == "merge":
                # A merge patch copies only the maps it changes and shares the rest with the
                # stored object, which nothing mutates: no need to decode a copy of all of it.
                new = merge_patch(old.obj, patch)
                if isinstance(new, dict) and isinstance(new.get("metadata"), dict):
                    new["metadata"] = dict(new["metadata"])  # its resourceVersion is set below
            else:
                new = apply_patch(json.loads(old.raw), patch, patch_type)
            if not isinstance(new, dict):
                raise ClusterError(422, "Invalid", "patched document is not an object")
            meta = new.get("metadata")
            if not isinstance(meta, dict):
                raise ClusterError(422, "Invalid", "patched object has no metadata")
            rv = meta.get("resourceVersion")
            if rv not in (None, "") and str(rv) != str(old.rv):
                raise self._conflict(resource, name)
            if meta.get("uid") not in (None, old.obj["metadata"].get("uid")):
                raise self._conflict(resource, name)
            return self._store_update(resource, key, old, new, subresource, manager).raw

    def replace(
        self,
        resource: str,
        obj: dict[str, Any],
        subresource: str | None = None,
        manager: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object; 409 Conflict if ``metadata.resourceVersion`` is stale."""
        return json.loads(self.replace_raw(resource, obj, subresource=subresource, manager=manager))

    def replace_raw(
        self,
        resource: str,
        obj: dict[str, Any],
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
        manager: str | None = None,
    ) -> bytes:
        """Like :meth:`replace`; ``namespace``/``name`` are the URL's (checked against the body)."""
        self._check_resource(resource)
        obj = _clone(obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise ClusterError(422, "Invalid", "metadata is required")
        if name is not None and meta.get("name") not in (None, name):
            raise ClusterError(400, "BadRequest", "the name of the object does not match the name on the URL")
        name = name or meta.get("name")
        if not name:
            raise ClusterError(422, "Invalid", "metadata.name: Required value")
        meta["name"] = name
        ns = namespace if namespace is not None else meta.get("namespace")
        key = self._key(resource, ns, name)
        with self._lock:
            old = self._objects[resource].get(key)
            if old is None:
                raise self._not_found(resource, name)
            rv = meta.get("resourceVersion")
            if rv not in (None, "") and str(rv) != str(old.rv):
                raise self._conflict(resource, name)
            return self._store_update(resource, key, old, obj, subresource, manager).raw

    def delete(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete an object (no cascading) and return its last state; 404 if absent."""
        return json.loads(self.delete_raw(resource, namespace, name))

    def delete_raw(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
    ) -> bytes:
        """Like :meth:`delete` but returns the serialized final state."""
        self._check_resource(resource)
        key = self._key(resource, namespace, name)
        with self._lock:
            old = self._objects[resource].get(key)
            if old is None:
                raise self._not_found(resource, name)
            if precondition_rv and precondition_rv != str(old.rv):
                raise self._conflict(resource, name)
            if precondition_uid and precondition_uid != old.obj["metadata"].get("uid"):
                raise self._conflict(resource, name)
            del self._objects[resource][key]
            keys = self._sorted[resource]
            if keys is not None:
                i = bisect.bisect_left(keys, key)
                if i < len(keys) and keys[i] == key:
                    keys.pop(i)
            rv = self._next_rv()
            final = json.loads(old.raw)
            final["metadata"]["resourceVersion"] = str(rv)
            entry = _Entry(final, dumps(final), rv)
            self._record(resource, "DELETED", key, entry, None)
            return entry.raw

    # ------------------------------------------------------------------ listing
    def _sorted_keys(self, resource: str) -> list[Key]:
        keys = self._sorted[resource]
        if keys is None:
            keys = sorted(self._objects[resource])
            self._sorted[resource] = keys
        return keys

    @staticmethod
    def encode_continue(rv: int, start: Key) -> str:
        """Opaque continue token: the list's snapshot RV and the last key returned."""
        data = {"v": "meta.k8s.io/v1", "rv": rv, "start": f"{start[0]}/{start[1]}"}
        return base64.urlsafe_b64encode(dumps(data)).decode().rstrip("=")

    @staticmethod
    def decode_continue(token: str) -> tuple[int, Key]:
        """Inverse of :meth:`encode_continue`; 400 BadRequest on garbage."""
        try:
            pad = "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(token + pad))
            ns, _, name = data["start"].partition("/")
            return int(data["rv"]), (ns, name)
        except Exception as exc:
            raise ClusterError(400, "BadRequest", f"continue key is not valid: {exc}") from None

    def list_page(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        metadata_only: bool = False,
    ) -> ListPage:
        """One page of a list, in (namespace, name) order.

        ``continue_token`` resumes after the last key of the previous page; the
        page reports the token's resourceVersion. A token older than the last
        :meth:`compact` raises ``ClusterError(410, Expired)``. The page carries
        ``remaining`` (remainingItemCount) only when no selector is given, as
        the real server does. With ``metadata_only`` the page holds each
        object's ``metadata`` (same items, order, tokens and counts).
        """
        self._check_resource(resource)
        matcher = combine(parse_label_selector(label_selector), parse_field_selector(field_selector))
        namespaced = RESOURCES[resource][3]
        with self._lock:
            snapshot = self._rv
            start: Key | None = None
            if continue_token:
                snapshot, start = self.decode_continue(continue_token)
                if snapshot < self._compacted_rv:
                    raise ClusterError(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter, "
                        "or use the continue token in this response to retrieve the remainder "
                        "of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted "
                        "between the time the first chunk was returned and now may show up "
                        "in the list.",
                    )
            keys = self._sorted_keys(resource)
            objs = self._objects[resource]
            if namespaced and namespace is not None:
                lo = bisect.bisect_left(keys, (namespace, ""))
                hi = bisect.bisect_left(keys, (namespace + "\x00", ""))
            else:
                lo, hi = 0, len(keys)
            if start is not None:
                lo = max(lo, bisect.bisect_right(keys, start))
            items: list[bytes] = []
            last: Key | None = None
            i = lo
            more = False
            if matcher is None:
                end = hi if not limit else min(hi, lo + limit)
                if metadata_only:
                    items = [objs[k].metadata_raw() for k in keys[lo:end]]
                else:
                    items = [objs[k].raw for k in keys[lo:end]]
                last = keys[end - 1] if end > lo else None
                more = end < hi
                remaining: int | None = hi - end if more else None
            else:
                remaining = None
                while i < hi:
                    e = objs[keys[i]]
                    if matcher(e.obj):
                        if limit and len(items) >= limit:
                            more = True
                            break
                        items.append(e.metadata_raw() if metadata_only else e.raw)
                        last = keys[i]
                    i += 1
            token = self.encode_continue(snapshot, last) if more and last is not None else None
            return ListPage(resource, items, str(snapshot), token, remaining, metadata_only)

    def list_bytes(self, resource: str, namespace: str | None = None, **kwargs: Any) -> bytes:
        """Shortcut: ``list_page(...).body()``."""
        return self.list_page(resource, namespace, **kwargs).body()

    def count(self, resource: str) -> int:
        """Number of stored objects of one resource."""
        with self._lock:
            return len(self._objects[resource])

    # ----------------------------------------------------------------- watching
    def watch(
        self,
        resource: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        send_initial: bool | None = None,
    ) -> Watcher:
        """Subscribe to events of one resource.

        With ``resource_version`` unset or ``"0"``, synthetic ADDED events for
        the current matching objects come first, then live events. Otherwise
        the history after that RV is replayed, then live events follow; an RV
        older than retained history raises ``ClusterError(410, Expired)``.
        """
        self._check_resource(resource)
        matcher = combine(parse_label_selector(label_selector), parse_field_selector(field_selector))
        if send_initial is None:
            send_initial = resource_version in (None, "", "0")
        with self._lock:
            w = Watcher(self, resource, namespace if RESOURCES[resource][3] else None, matcher)
            if send_initial:
                for k in self._sorted_keys(resource):
                    if w.namespace is not None and k[0] != w.namespace:
                        continue
                    e = self._objects[resource][k]
                    if matcher is None or matcher(e.obj):
                        w.queue.put(WatchEvent("ADDED", e.raw, e.rv, e))
                w.last_rv = self._rv
            else:
                try:
                    since = int(resource_version or 0)
                except ValueError:
                    raise ClusterError(
                        400, "BadRequest", f"invalid resource version: {resource_version!r}"
                    ) from None
                floor = self._history_floor[resource]
                if since < floor:
                    raise ClusterError(410, "Expired", f"too old resource version: {since} ({floor + 1})")
                w.last_rv = since
                hist = self._history[resource]
                # binary search over the deque's RVs is overkill; scan from the end
                replay = []
                for ev in reversed(hist):
                    if ev.rv <= since:
                        break
                    replay.append(ev)
                for ev in reversed(replay):
                    self._deliver(w, ev)
            self._watchers[resource].add(w)
            return w

    def _bookmark(self, w: Watcher) -> None:
        _, _, kind, _ = RESOURCES[w.resource]
        with self._lock:
            if w.closed:
                return
            rv = self._rv
            raw = dumps(
                {
                    "kind": kind,
                    "apiVersion": _api_version(w.resource),
                    "metadata": {"resourceVersion": str(rv)},
                }
            )
            w.queue.put(WatchEvent("BOOKMARK", raw, rv))

    def _unsubscribe(self, w: Watcher) -> None:
        with self._lock:
            self._watchers[w.resource].discard(w)
            if not w.closed:
                w.closed = True
                w.queue.put(WatchEvent("CLOSED", b"null", self._rv))

    def close_watchers(self, resource: str | None = None) -> int:
        """Cut every open watch (or those of one resource); returns how many."""
        with self._lock:
            targets = [w for r, ws in self._watchers.items() if resource in (None, r) for w in ws]
        for w in targets:
            w.close()
        return len(targets)

    def watcher_count(self) -> int:
        """Number of open watches."""
        with self._lock:
            return sum(len(ws) for ws in self._watchers.values())

    def compact(self) -> int:
        """Drop all event history (like an etcd compaction at the current RV).

        The global resourceVersion advances by one, so every RV handed out
        before (list RVs, event RVs, continue tokens) is now too old: a watch
        from it, or the continue token, gets 410 Expired. A fresh list returns
        a usable RV. Returns the compaction RV.
        """
        with self._lock:
            self._next_rv()
            for r in RESOURCES:
                self._history[r].clear()
                self._history_floor[r] = self._rv
            self._compacted_rv = self._rv
            return self._rv

    def expired_status(self, message: str) -> bytes:
        """A serialized 410 Expired Status (as sent in a watch ERROR event)."""
        return status_body(410, "Expired", message)
