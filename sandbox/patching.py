"""Patch algorithms: JSON merge patch, strategic merge patch, JSON patch.

All functions return a new document and never mutate their inputs (the
caller passes a private copy anyway, but the functions stay pure).
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.cluster import ClusterError

# Lists that strategic merge patch merges by a key instead of replacing
# (the subset of Kubernetes' patchMergeKey tags that matter for pods).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ownerReferences": "uid",
}


def _invalid(message: str) -> ClusterError:
    return ClusterError(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch.

    Maps merge recursively (``null`` deletes a key, ``$patch: replace`` /
    ``$patch: delete`` directives honoured); lists named in
    :data:`MERGE_KEYS` merge element-wise by their key, other lists are
    replaced. ``$retainKeys``/``$setElementOrder`` directives are ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {
        k: v
        for k, v in patch.items()
        if not k.startswith("$") and not k.startswith("$setElementOrder/")
    }
    if directive == "replace":
        return copy.deepcopy(body)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in body.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif (
            isinstance(value, list)
            and key in MERGE_KEYS
            and isinstance(result.get(key), list)
            and all(isinstance(v, dict) for v in value)
        ):
            result[key] = _merge_list(result[key], value, MERGE_KEYS[key])
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current: list[Any], patch: list[dict[str, Any]], key: str) -> list[Any]:
    out = list(current)
    for item in patch:
        if key not in item:
            raise _invalid(f"map in list is missing the merge key {key!r}")
        idx = next(
            (i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item))
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _invalid(f"invalid JSON pointer {pointer!r}")
    return [_unescape(t) for t in pointer[1:].split("/")]


def _resolve_parent(doc: Any, tokens: list[str], pointer: str) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise _invalid(f"jsonpatch: path {pointer!r} not found")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, pointer, allow_end=False)]
        else:
            raise _invalid(f"jsonpatch: path {pointer!r} not found")
    return cur


def _index(lst: list[Any], tok: str, pointer: str, allow_end: bool) -> int:
    if tok == "-" and allow_end:
        return len(lst)
    if not tok.isdigit() or (len(tok) > 1 and tok.startswith("0")):
        raise _invalid(f"jsonpatch: invalid array index in {pointer!r}")
    i = int(tok)
    limit = len(lst) if allow_end else len(lst) - 1
    if i > limit:
        raise _invalid(f"jsonpatch: array index out of range in {pointer!r}")
    return i


def _get(doc: Any, pointer: str) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return doc
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"jsonpatch: path {pointer!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, pointer, allow_end=False)]
    raise _invalid(f"jsonpatch: path {pointer!r} not found")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, pointer, allow_end=True), value)
    else:
        raise _invalid(f"jsonpatch: cannot add at {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _split_pointer(pointer)
    if not tokens:
        raise _invalid("jsonpatch: cannot remove the whole document")
    parent = _resolve_parent(doc, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"jsonpatch: path {pointer!r} not found")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, pointer, allow_end=False))
    raise _invalid(f"jsonpatch: path {pointer!r} not found")


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add/remove/replace/test/move/copy)."""
    if not isinstance(operations, list):
        raise ClusterError(400, "BadRequest", "json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _invalid(f"jsonpatch: malformed operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _split_pointer(path):
                doc, _ = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _invalid(f"jsonpatch: test operation failed at {path!r}")
        elif kind == "move":
            src = op.get("from", "")
            if path.startswith(src + "/"):
                raise _invalid("jsonpatch: cannot move a value into its own child")
            doc, value = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        else:
            raise _invalid(f"jsonpatch: unknown operation {kind!r}")
    return doc


def apply_patch(doc: dict[str, Any], patch: Any, patch_type: str) -> Any:
    """Dispatch on ``merge`` / ``strategic`` / ``json``."""
    if patch_type == "merge":
        return merge_patch(doc, patch)
    if patch_type == "strategic":
        return strategic_merge_patch(doc, patch)
    if patch_type == "json":
        return json_patch(doc, patch)
    raise ClusterError(415, "UnsupportedMediaType", f"unknown patch type {patch_type!r}")
