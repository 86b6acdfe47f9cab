"""A comparable picture of an MLMD store: records by key and fields, ids and timestamps left out."""

from __future__ import annotations

from collections import Counter
from typing import Any

from store.convert import from_value


def _props(m: Any) -> dict[str, Any]:
    return {k: from_value(v) for k, v in m.items()}


def snapshot(store: Any) -> dict[str, Any]:
    """Contexts, executions, artifacts, events, associations and attributions, id-free."""
    contexts = {c.id: c for c in store.get_contexts()}
    executions = {e.id: e for e in store.get_executions()}
    artifacts = {a.id: a for a in store.get_artifacts()}
    ex_name = {
        i: e.external_id or f"pod:{e.custom_properties['kfp_pod_name'].string_value}"
        for i, e in executions.items()
    }
    art_name = {i: a.external_id or f"uri:{a.uri}" for i, a in artifacts.items()}
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
            (c.type, c.name, c.external_id, sorted(_props(c.properties).items())) for c in contexts.values()
        ),
        "executions": sorted(
            (
                e.type,
                e.external_id,
                sorted(_props(e.properties).items()),
                sorted(_props(e.custom_properties).items()),
                e.last_known_state,
            )
            for e in executions.values()
        ),
        "artifacts": sorted(
            (a.type, a.external_id, a.uri, sorted(_props(a.custom_properties).items()))
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
