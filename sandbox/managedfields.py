"""``metadata.managedFields``: which manager last set which fields, as the API server records it.

A real API server keeps, in every object's metadata, one entry per writer
(manager, operation, apiVersion, subresource) with the set of fields that
writer owns, encoded as ``fieldsV1``: a tree whose keys are ``f:<field>``,
``k:<list item key as JSON>`` and ``v:<set value as JSON>``, where ``{}`` is
an owned leaf and ``"."`` marks an owned node that also has owned children.
They are part of the metadata, so they are part of every metadata-only answer:
for a KFP step pod they weigh several kilobytes, often more than the labels and
annotations together. The emulator keeps them so that objects, and the bytes
of answers, look like a real cluster's.

Writes here are all ``Update`` operations (there is no server-side apply), with
the rules of structured-merge-diff: the writer gains every field it added or
changed, every other writer loses those, a removed field leaves every set, an
entry left owning nothing disappears, and an entry's ``time`` moves when its
writer gained fields. ``managedFields`` sent with a write replace the stored
ones (``[]`` resets them) except on subresources, as upstream.

The field set of a value needs the type's schema; the emulator knows the
handful of list keys, string maps and atomic types its resources use
(:data:`LIST_KEYS`, :data:`STRING_MAPS`, :data:`ATOMIC_FIELDS`) and treats any
other map as a struct and any other list as atomic. Custom resources (the
``argoproj.io`` kinds) keep ``spec``, ``status`` and their other top-level
fields atomic, as Argo's CRDs (``x-kubernetes-preserve-unknown-fields``) make
them. Where upstream's exact ``"."`` markers depend on Go zero values the
emulator approximates: the sizes, not each marker, are what it keeps true.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["ATOMIC_FIELDS", "LIST_KEYS", "STRING_MAPS", "manager_from_user_agent", "updated_entries"]

FieldSet = dict[str, Any]  # a fieldsV1 tree

# associative lists: field name -> the fields that key an item
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "protocol"),
    "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "podIPs": ("ip",),
    "hostIPs": ("ip",),
    "hostAliases": ("ip",),
    "readinessGates": ("conditionType",),
    "resourceClaims": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
# associative lists whose own node upstream leaves unmarked (no ".")
_LISTS_WITHOUT_SELF = frozenset({"containers", "initContainers", "ephemeralContainers", "conditions"})
SET_LISTS = frozenset({"finalizers"})
# maps from data keys to values (each key a field of its own), not structs
STRING_MAPS = frozenset(
    {"labels", "annotations", "nodeSelector", "data", "binaryData", "limits", "requests", "overhead",
     "matchLabels"}
)
# structs and maps upstream marks atomic: owned as one leaf
ATOMIC_FIELDS = frozenset(
    {"fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "involvedObject", "related",
     "containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}
)
# never owned by anyone (k8s.io/apiserver fieldmanager's stripped fields)
_STRIPPED_TOP = frozenset({"apiVersion", "kind"})
_STRIPPED_META = frozenset(
    {"name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation",
     "managedFields", "resourceVersion"}
)
_FIELD_MANAGER_MAX = 128

_STRUCT, _MAP, _ATOMIC = "struct", "map", "atomic"


def manager_from_user_agent(user_agent: str | None) -> str:
    """The manager a write without ``?fieldManager=`` is recorded under: the User-Agent up to its
    first ``/``, printable characters only, at most 128 bytes (``kubectl``, ``OpenAPI-Generator``)."""
    out: list[str] = []
    size = 0
    for ch in (user_agent or "").split("/")[0]:
        if not ch.isprintable():
            continue
        size += len(ch.encode())
        if size > _FIELD_MANAGER_MAX:
            break
        out.append(ch)
    return "".join(out)


# ------------------------------------------------------------------ field sets
def _node(member: bool, children: FieldSet) -> FieldSet | None:
    """A set node from its own membership and its children (None: nothing owned)."""
    if not children:
        return {} if member else None
    return {".": {}, **children} if member else children


def _split(node: FieldSet) -> tuple[bool, FieldSet]:
    if not node:
        return True, {}
    return "." in node, {k: v for k, v in node.items() if k != "."}


def _union(a: FieldSet, b: FieldSet) -> FieldSet:
    a_member, a_children = _split(a)
    b_member, b_children = _split(b)
    children = dict(a_children)
    added = False
    for key, sub in b_children.items():
        if key in children:
            children[key] = _union(children[key], sub)
        else:
            children[key] = sub
            added = True
    node = _node(a_member or b_member, _sorted(children) if added else children)
    return {} if node is None else node


def _difference(a: FieldSet, b: FieldSet) -> FieldSet | None:
    """``a`` without the members of ``b`` (None when nothing is left; ``a`` itself if nothing goes)."""
    a_member, a_children = _split(a)
    b_member, b_children = _split(b)
    children: FieldSet = {}
    same = not (a_member and b_member)
    for key, sub in a_children.items():
        if key in b_children:
            rest = _difference(sub, b_children[key])
            if rest is not sub:
                same = False
            if rest is not None:
                children[key] = rest
        else:
            children[key] = sub
    if same:
        return a
    return _node(a_member and not b_member, children)


def _root_union(a: FieldSet, b: FieldSet) -> FieldSet:
    out = dict(a)
    for key, sub in b.items():
        out[key] = _union(out[key], sub) if key in out else sub
    return _sorted(out)


def _root_difference(a: FieldSet, b: FieldSet) -> FieldSet:
    """Like :func:`_difference` at the root (never a member; ``{}`` when empty)."""
    rest = _difference(a, b) if a else a
    return {} if rest is None else rest


def _sorted(node: FieldSet) -> FieldSet:
    """One level with "." first and the other keys sorted, as upstream serializes it."""
    if "." in node:
        return {".": {}, **{k: node[k] for k in sorted(node) if k != "."}}
    return {k: node[k] for k in sorted(node)}


# ------------------------------------------------------------------ values -> sets
def _shape_of(name: str, value: Any) -> str:
    if name in ATOMIC_FIELDS:
        return _ATOMIC
    if isinstance(value, dict):
        return _MAP if name in STRING_MAPS else _STRUCT
    return _ATOMIC  # scalars, and lists are handled by name


_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')  # strings JSON writes as they are (no quote, backslash, control)


def _json(value: Any) -> str:
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return '"' + value + '"'  # the common case, without the encoder's overhead
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _item_keys(name: str, items: list[Any]) -> list[str] | None:
    """``k:{...}`` keys of an associative list's items; None if it cannot be keyed (then atomic)."""
    fields = LIST_KEYS.get(name)
    if fields is None or not all(isinstance(i, dict) for i in items):
        return None
    keys = []
    for item in items:
        present = [f'"{f}":{_json(item[f])}' for f in fields if f in item]
        if not present:
            return None
        keys.append("k:{" + ",".join(present) + "}")
    return keys if len(set(keys)) == len(keys) else None


def _struct_fields(value: dict[str, Any]) -> FieldSet:
    return {f"f:{k}": _fields(k, value[k]) for k in sorted(value)}


def _fields(name: str, value: Any) -> FieldSet:
    """The field set of one field's whole value (every path in it owned), keys sorted."""
    if isinstance(value, list):
        return _list_fields(name, value)
    if not value or not isinstance(value, dict) or name in ATOMIC_FIELDS:
        return {}
    children = _struct_fields(value)
    return {".": {}, **children} if name in STRING_MAPS else children


def _item_fields(item: dict[str, Any]) -> FieldSet:
    return {".": {}, **_struct_fields(item)}


def _list_fields(name: str, items: list[Any]) -> FieldSet:
    if not items:
        return {}
    if name in SET_LISTS:
        return {".": {}, **{"v:" + _json(v): {} for v in sorted(items, key=_json)}}
    keys = _item_keys(name, items)
    if keys is None:
        return {}
    children = {key: _item_fields(item) for key, item in sorted(zip(keys, items, strict=True))}
    return children if name in _LISTS_WITHOUT_SELF else {".": {}, **children}


def _compare(name: str, old: Any, new: Any) -> tuple[FieldSet | None, FieldSet | None]:
    """(added or changed, removed) between two values of one field; None where nothing is.

    A map's own node (its ".") is gained or lost only with the whole map.
    """
    if old is new or old == new:
        return None, None
    if isinstance(old, dict) and isinstance(new, dict) and old and new and _shape_of(name, new) != _ATOMIC:
        return _compare_maps(old, new)
    if isinstance(old, list) and isinstance(new, list) and old and new:
        return _compare_lists(name, old, new)
    # a changed leaf, or a value replaced whole: what was under the old one is gone
    gone = _fields(name, old) if isinstance(old, (dict, list)) and old else None
    return _fields(name, new), gone


def _compare_maps(old: dict[str, Any], new: dict[str, Any]) -> tuple[FieldSet | None, FieldSet | None]:
    changed: FieldSet = {}
    removed: FieldSet = {}
    for key, value in new.items():
        if key not in old:
            changed[f"f:{key}"] = _fields(key, value)
            continue
        add, gone = _compare(key, old[key], value)
        if add is not None:
            changed[f"f:{key}"] = add
        if gone is not None:
            removed[f"f:{key}"] = gone
    for key, value in old.items():
        if key not in new:
            removed[f"f:{key}"] = _fields(key, value)
    return (_sorted(changed) if changed else None), (_sorted(removed) if removed else None)


def _compare_lists(name: str, old: list[Any], new: list[Any]) -> tuple[FieldSet | None, FieldSet | None]:
    if name in SET_LISTS:
        def values(items: list[Any]) -> set[str]:
            return {"v:" + _json(v) for v in items}

        added, gone = values(new) - values(old), values(old) - values(new)
        return ({key: {} for key in sorted(added)} or None), ({key: {} for key in sorted(gone)} or None)
    old_keys, new_keys = _item_keys(name, old), _item_keys(name, new)
    if old_keys is None or new_keys is None:
        return {}, None  # atomic: the list is one leaf
    old_items = dict(zip(old_keys, old, strict=True))
    changed: FieldSet = {}
    removed: FieldSet = {}
    for key, item in zip(new_keys, new, strict=True):
        if key not in old_items:
            changed[key] = _item_fields(item)
            continue
        add, gone = _compare_maps(old_items[key], item)
        if add is not None:
            changed[key] = add
        if gone is not None:
            removed[key] = gone
    new_set = set(new_keys)
    for key, item in old_items.items():
        if key not in new_set:
            removed[key] = _item_fields(item)
    return (_sorted(changed) if changed else None), (_sorted(removed) if removed else None)


def _owned_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The parts of an object anyone can own: no type, identity or bookkeeping fields."""
    view = {k: v for k, v in obj.items() if k not in _STRIPPED_TOP}
    meta = view.get("metadata")
    if isinstance(meta, dict):
        view["metadata"] = {k: v for k, v in meta.items() if k not in _STRIPPED_META}
    return view


def _changes(old: dict[str, Any], new: dict[str, Any], custom: bool) -> tuple[FieldSet, FieldSet]:
    """(added or changed, removed) field sets between two whole objects.

    For a custom resource every top-level field but ``metadata`` is one opaque leaf.
    """
    old_view, new_view = _owned_view(old), _owned_view(new)
    changed: FieldSet = {}
    removed: FieldSet = {}
    for key, value in new_view.items():
        opaque = custom and key != "metadata"
        if key not in old_view:
            changed[f"f:{key}"] = {} if opaque else _fields(key, value)
        elif opaque:
            if old_view[key] is not value and old_view[key] != value:
                changed[f"f:{key}"] = {}
        else:
            add, gone = _compare(key, old_view[key], value)
            if add is not None:
                changed[f"f:{key}"] = add
            if gone is not None:
                removed[f"f:{key}"] = gone
    for key, value in old_view.items():
        if key not in new_view:
            removed[f"f:{key}"] = {} if custom and key != "metadata" else _fields(key, value)
    return _sorted(changed), _sorted(removed)


# ------------------------------------------------------------------ entries
def _entry_key(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(entry.get("manager") or ""),
        str(entry.get("operation") or ""),
        str(entry.get("apiVersion") or ""),
        str(entry.get("subresource") or ""),
    )


def _is_tree(node: Any) -> bool:
    return isinstance(node, dict) and all(isinstance(k, str) and _is_tree(v) for k, v in node.items())


def _well_formed(entries: Any) -> bool:
    """Whether sent entries can be read; upstream ignores unreadable ones and keeps the stored."""
    return (
        isinstance(entries, list)
        and bool(entries)
        and all(
            isinstance(e, dict)
            and e.get("operation") in ("Update", "Apply")
            and e.get("fieldsType", "FieldsV1") == "FieldsV1"
            and _is_tree(e.get("fieldsV1", {}))
            and all(isinstance(e.get(k, ""), str) for k in ("manager", "apiVersion", "time", "subresource"))
            for e in entries
        )
    )


def _is_reset(entries: Any) -> bool:
    return entries == [] or entries == [{}]


def _base_entries(
    live: list[dict[str, Any]] | None, sent: Any, subresource: str | None
) -> list[dict[str, Any]]:
    """The entries a write starts from: those sent with it, unless absent, unreadable or sent to a
    subresource (then the stored ones); ``[]`` resets them."""
    if subresource or sent is live or (live and sent == live):
        return list(live or [])  # sent back as read (or not at all): nothing to check
    if _is_reset(sent):
        return []
    if _well_formed(sent):
        return list(sent)
    return list(live or [])


def updated_entries(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    custom: bool,
    subresource: str | None = None,
) -> list[dict[str, Any]]:
    """``new``'s managedFields after ``manager`` wrote it over ``old`` (``{}`` for a create).

    The entries to start from are :func:`_base_entries` of ``old``'s and those in ``new``.
    """
    start = _base_entries(
        (old.get("metadata") or {}).get("managedFields"),
        (new.get("metadata") or {}).get("managedFields"),
        subresource,
    )
    changed, removed = _changes(old, new, custom)
    touched = _root_union(changed, removed)
    mine = (manager, "Update", api_version, subresource or "")
    out: list[dict[str, Any]] = []
    own: dict[str, Any] | None = None
    for entry in start:
        if _entry_key(entry) == mine:
            own = entry
            continue
        fields = entry.get("fieldsV1") or {}
        if touched and fields:
            rest = _root_difference(fields, touched)
            if rest is not fields:  # a difference keeps the stored order: no need to sort again
                entry = {**entry, "fieldsV1": rest}
                fields = rest
        if fields:
            out.append(entry)
    owned = (own or {}).get("fieldsV1") or {}
    if removed:
        owned = _root_difference(owned, removed)
    gained = bool(changed)
    if gained:
        owned = _root_union(owned, changed)
    if owned:
        if own is not None and not gained and owned == own.get("fieldsV1"):
            out.append(own)
        else:
            entry = {"manager": manager, "operation": "Update", "apiVersion": api_version,
                     "time": now if gained or own is None else own.get("time", now),
                     "fieldsType": "FieldsV1", "fieldsV1": owned}
            if not manager:
                del entry["manager"]
            if subresource:
                entry["subresource"] = subresource
            out.append(entry)
    out.sort(key=lambda e: (str(e.get("operation") or ""), str(e.get("time") or ""), *_entry_key(e)))
    return out
