"""Actual state on MLMD without external ids (1.0.0, 1.5.0): read run context by run context.

There the keys are in the records' `name` (reconcile/keys.py), and no API finds many records
by name at once -- and 1.0.0 ignores `filter_query`, answering a filtered list with every
record. So a pass reads each of its workflows' run contexts whole: the context by (type,
name), its executions and its artifacts, then the events of all those executions in batches.
That is everything planning needs: our records (by name), the upstream writer's (by pod name
in the run context), and the artifacts a step's inputs may link to (its own upstream step's,
which are attributed to the same run context). Three calls per workflow, never one per pod,
never a list of all records, never a filter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store

from reconcile import conventions as c
from reconcile.keys import KeyPlacement
from reconcile.plan import ActualState
from reconcile.records import DesiredStep, EventKind, StoredArtifact
from store.actual import chunks, lookup, unique
from store.convert import stored_artifact, stored_context, stored_event, stored_execution


def _context_by_name(client: metadata_store.MetadataStore, name: str) -> Any | None:
    try:
        return client.get_context_by_type_and_name(c.RUN_CONTEXT_TYPE, name)
    except errors.NotFoundError:  # no KfpRun type yet
        return None


def read_actual_by_context(client: metadata_store.MetadataStore, steps: Sequence[DesiredStep]) -> ActualState:
    """Everything planning these steps needs, keys read from names, one run context at a time."""
    actual = ActualState(placement=KeyPlacement.NAME)
    for name in unique(s.context.name for s in steps):
        proto = _context_by_name(client, name)
        if proto is not None:
            actual.contexts[name] = stored_context(proto)

    execution_protos: dict[int, list[Any]] = {}
    artifact_protos: list[Any] = []
    for context in sorted(actual.contexts.values(), key=lambda ctx: ctx.id):
        execution_protos[context.id] = list(client.get_executions_by_context(context.id))
        artifact_protos += client.get_artifacts_by_context(context.id)
    execution_types = _type_names(
        client, "execution", [e for group in execution_protos.values() for e in group]
    )
    for context_id, protos in execution_protos.items():
        executions = [stored_execution(p, execution_types) for p in protos]
        actual.context_executions[context_id] = executions
        for execution in executions:
            if execution.name:
                actual.executions.setdefault(execution.name, execution)
    artifact_types = _type_names(client, "artifact", artifact_protos)
    for proto in artifact_protos:
        _add_artifact(actual, stored_artifact(proto, artifact_types))
    attributed = {proto.id for proto in artifact_protos}

    execution_ids = unique(e.id for group in actual.context_executions.values() for e in group)
    for part in chunks(execution_ids):
        for proto in lookup(client.get_events_by_execution_ids, part):
            actual.events.setdefault(proto.execution_id, []).append(stored_event(proto))

    # An output the upstream writer recorded without its attribution (its calls are separate,
    # so a crash can leave one out) is still named by its OUTPUT event.
    unattributed = unique(
        e.artifact_id
        for events in actual.events.values()
        for e in events
        if e.kind == EventKind.OUTPUT and e.artifact_id not in attributed
    )
    found = [proto for part in chunks(unattributed) for proto in lookup(client.get_artifacts_by_id, part)]
    artifact_types.update(_type_names(client, "artifact", found, artifact_types))
    for proto in found:
        _add_artifact(actual, stored_artifact(proto, artifact_types))
    return actual


def _type_names(
    client: metadata_store.MetadataStore,
    kind: str,
    protos: Sequence[Any],
    known: Mapping[int, str] | None = None,
) -> dict[int, str]:
    """Type id -> name for records whose server leaves their `type` empty (before MLMD 1.2)."""
    known = known or {}
    missing = unique(p.type_id for p in protos if not p.type and p.type_id not in known)
    if not missing:
        return dict(known)
    read = getattr(client, f"get_{kind}_types_by_id")
    return {**known, **{t.id: t.name for part in chunks(missing) for t in lookup(read, part)}}


def _add_artifact(actual: ActualState, artifact: StoredArtifact) -> None:
    if artifact.id in actual.artifacts_by_id:
        return
    actual.artifacts_by_id[artifact.id] = artifact
    actual.artifacts_by_uri.setdefault(artifact.uri, []).append(artifact)
    if artifact.name:
        actual.artifacts.setdefault(artifact.name, artifact)
