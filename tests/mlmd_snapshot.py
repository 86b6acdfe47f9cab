"""A comparable picture of an MLMD store: records by key and fields, ids and timestamps left out.

A record's key is its external_id, or its name where the server has no external ids
(MLMD 1.0.0, 1.5.0: reconcile/keys.py); `ui_view` keeps only what KFP's UI reads.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from store.convert import from_value


def _props(m: Any) -> dict[str, Any]:
    return {k: from_value(v) for k, v in m.items()}


def record_key(record: Any) -> str:
    """Where the reconciler keeps a record's key: external_id, else name ("" for neither)."""
    return record.external_id or record.name


def snapshot(store: Any) -> dict[str, Any]:
    """Contexts, executions, artifacts, events, associations and attributions, id-free."""
    contexts = {c.id: c for c in store.get_contexts()}
    types: dict[tuple[str, int], str] = {}
    executions = {e.id: e for e in store.get_executions()}
    artifacts = {a.id: a for a in store.get_artifacts()}
    ex_name = {
        i: record_key(e) or f"pod:{e.custom_properties['kfp_pod_name'].string_value}"
        for i, e in executions.items()
    }
    art_name = {i: record_key(a) or f"uri:{a.uri}" for i, a in artifacts.items()}
    events = Counter()
    for e in store.get_events_by_execution_ids(list(executions)):
        key = e.path.steps[0].key if e.path.steps else None
        events[(ex_name[e.execution_id], art_name[e.artifact_id], e.type, key)] += 1
    associations, attributions = Counter(), Counter()
    for c in contexts.values():
        for e in store.get_executions_by_context(c.id):
            associations[(c.name, ex_name[e.id])] += 1
        for a in store.get_artifacts_by_context(c.id):
            attributions[(c.name, art_name[a.id])] += 1
    return {
        "contexts": sorted(
            (
                type_name(store, c, "context", types),
                c.name,
                c.external_id,
                sorted(_props(c.properties).items()),
            )
            for c in contexts.values()
        ),
        "executions": sorted(
            (
                type_name(store, e, "execution", types),
                record_key(e),
                sorted(_props(e.properties).items()),
                sorted(_props(e.custom_properties).items()),
                e.last_known_state,
            )
            for e in executions.values()
        ),
        "artifacts": sorted(
            (
                type_name(store, a, "artifact", types),
                record_key(a),
                a.uri,
                sorted(_props(a.custom_properties).items()),
            )
            for a in artifacts.values()
        ),
        "events": sorted(events.items()),
        "associations": sorted(associations.items()),
        "attributions": sorted(attributions.items()),
    }


def counts(store: Any) -> dict[str, int]:
    return {
        "contexts": len(store.get_contexts()),
        "executions": len(store.get_executions()),
        "artifacts": len(store.get_artifacts()),
    }


def type_name(store: Any, record: Any, kind: str, cache: dict[tuple[str, int], str] | None = None) -> str:
    """The record's type name (servers before MLMD 1.2 leave `type` empty: read it by id)."""
    if record.type:
        return str(record.type)
    cache = {} if cache is None else cache
    if (kind, record.type_id) not in cache:
        [found] = getattr(store, f"get_{kind}_types_by_id")([record.type_id])
        cache[(kind, record.type_id)] = str(found.name)
    return cache[(kind, record.type_id)]


def ui_view(store: Any) -> dict[str, Any]:
    """What KFP's UI reads of a store (docs/kfp-contract.md §2): the snapshot without keys.

    Records are named by what the UI shows (pod name, URI), so a store written with keys in
    external_id and one with keys in names must give the same view.
    """
    view = snapshot(store)
    view["contexts"] = [(t, name, props) for t, name, _, props in view["contexts"]]
    view["executions"] = sorted(
        (t, props, custom, state) for t, _, props, custom, state in view["executions"]
    )
    view["artifacts"] = sorted((t, uri, custom) for t, _, uri, custom in view["artifacts"])
    pods = {
        record_key(e): f"pod:{e.custom_properties['kfp_pod_name'].string_value}"
        for e in store.get_executions()
    }
    uris = {record_key(a): f"uri:{a.uri}" for a in store.get_artifacts()}
    names = {**pods, **uris}
    view["events"] = sorted(
        ((names.get(x, x), names.get(y, y), t, k), n) for (x, y, t, k), n in view["events"]
    )
    view["associations"] = sorted(((c, names.get(e, e)), n) for (c, e), n in view["associations"])
    view["attributions"] = sorted(((c, names.get(a, a)), n) for (c, a), n in view["attributions"])
    return view
