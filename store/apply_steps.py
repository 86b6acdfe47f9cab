"""Apply workflow plans on MLMD without put_lineage_subgraph (1.0.0, 1.5.0): one put_execution per step.

Each step is one transaction: its execution (created with its key as `name`, or updated),
its output artifacts (created with their keys as names, or updated) with their OUTPUT
events, its INPUT events, the association with the run context and the attributions. That
is `put_execution(..., reuse_context_if_already_exist=True)`, which also creates the run
context with the workflow's first step. Steps go producers first, so a consumer's INPUT
event names an output an earlier transaction of the pass created (`created_ids`). A crash
leaves each step fully written or not at all.

An update sends the whole record as stored with the plan's changes: MLMD replaces a
record's properties with those it is sent, and never changes a name once set. An event is
added to a stored artifact without sending the artifact.

Concurrent writers: a second creation of a step's execution or output fails on MLMD's
unique (type, name), and the whole transaction with it (StoreConflict: the pass reads
again). An event added to an execution that already exists has no such guard on these
schemas (6 and 7 have no unique key on events; 10 does). So such adds are kept rare and
checked: a consumer whose upstream output lost such a race in the same call is not written
without its INPUT event but fails with the conflict too (the pass reads both again and
writes the consumer with its link in one transaction); and right before a write that adds
events to a stored execution its events are read again, and one already there is not sent
again. What is left is the moment between that read and the write (docs/identity-keys.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.plan import Op, StepPlan, WorkflowPlan
from reconcile.pod_metadata import AppliedIds
from reconcile.records import DesiredArtifact, EventKind, Properties, StoredArtifact, StoredExecution
from store.actual import chunks, lookup
from store.apply import ApplyResult
from store.convert import fill
from store.errors import StoreConflict, StoreError, write_failure
from store.types import TypeRegistry

EventSeen = tuple[int, int, str | None]  # (artifact id, event type, path key)
ArtifactAndEvent = tuple[pb.Artifact | None, pb.Event | None]


def apply_step_plans(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    plans: Sequence[WorkflowPlan],
    created_ids: dict[str, int] | None = None,
) -> ApplyResult:
    """Write every workflow plan, one transaction per step; a failed transaction fails its step only.

    `created_ids` (artifact key -> id) carries the outputs written by earlier calls of the
    same pass, so their consumers can link to them; this call adds to it.
    """
    result = ApplyResult()
    created_ids = {} if created_ids is None else created_ids
    try:
        present = events_now(client, [p.execution_id for w in plans for p in w.steps if _adds_events(p)])
    except Exception as exc:
        error = write_failure(exc)
        result.failed.update({p.step.execution.key: error for w in plans for p in w.steps_to_write()})
        return result
    raced: dict[str, StoreError] = {}  # output key -> the conflict its step's write met
    for workflow in plans:
        _apply_workflow(client, types, workflow, created_ids, present, raced, result)
    return result


def _adds_events(plan: StepPlan) -> bool:
    """Whether the step adds an event to an execution that is already stored."""
    return plan.execution_id is not None and (bool(plan.inputs) or any(out.add_event for out in plan.outputs))


def events_now(
    client: metadata_store.MetadataStore, execution_ids: Collection[int | None]
) -> dict[int, set[EventSeen]]:
    """The events these executions have right now (one batched read)."""
    ids = sorted({i for i in execution_ids if i is not None})
    found: dict[int, set[EventSeen]] = {i: set() for i in ids}
    for part in chunks(ids):
        for event in lookup(client.get_events_by_execution_ids, part):
            steps = event.path.steps
            key = steps[0].key if steps and steps[0].HasField("key") else None
            found[event.execution_id].add((event.artifact_id, event.type, key))
    return found


def _apply_workflow(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    workflow: WorkflowPlan,
    created_ids: dict[str, int],
    present: dict[int, set[EventSeen]],
    raced: dict[str, StoreError],
    result: ApplyResult,
) -> None:
    writing = {id(plan) for plan in workflow.steps_to_write()}
    context_id = workflow.context_id
    context_written = workflow.context_write is None
    for plan in workflow.steps:
        key = plan.step.execution.key
        if id(plan) not in writing or (context_written and not plan.writes_mlmd):
            result.applied[key] = AppliedIds(context_id, plan.execution_id, {})
            continue
        lost = next((raced[link.artifact_key] for link in plan.inputs if link.artifact_key in raced), None)
        if lost is not None:
            result.failed[key] = _upstream_raced(lost)
            raced.update({out.desired.key: lost for out in plan.outputs if out.op is Op.CREATE})
            continue
        try:
            execution = _execution(types, plan)
            pairs, outputs = _artifacts_and_events(
                types, plan, created_ids, present.get(plan.execution_id or -1)
            )
            context = _context(types, workflow, with_write=not context_written)
        except Exception as exc:  # a value MLMD cannot hold: this step fails, nothing was sent
            result.failed[key] = write_failure(exc)
            continue
        if plan.execution is None and not pairs and context_written:
            result.applied[key] = AppliedIds(context_id, plan.execution_id, _ids(plan, created_ids))
            continue  # its events are there already: another writer added them
        try:
            execution_id, artifact_ids, context_ids = client.put_execution(
                execution, pairs, [context], reuse_context_if_already_exist=True
            )
        except Exception as exc:
            # Reported per step by the caller, which re-reads and retries it.
            result.failed[key] = error = write_failure(exc)
            if isinstance(error, StoreConflict):
                raced.update({out.desired.key: error for out in plan.outputs if out.op is Op.CREATE})
            continue
        finally:
            result.transactions += 1
        context_id, context_written = context_ids[0], True
        for artifact_key, index in outputs.items():
            created_ids[artifact_key] = artifact_ids[index]
        result.applied[key] = AppliedIds(context_id, execution_id, _ids(plan, created_ids))


def _upstream_raced(error: StoreError) -> StoreConflict:
    """The conflict of a step whose upstream output another writer was writing at the same time.

    Written without its INPUT event, the step would need the event added later, which two
    writers could both do on MLMD without unique events; failed, it is read and written again.
    """
    first_line = (str(error).splitlines() or [""])[0]
    conflict = StoreConflict(f"its upstream step met another writer: {first_line}")
    conflict.__cause__ = error
    return conflict


def _ids(plan: StepPlan, created_ids: dict[str, int]) -> dict[str, int]:
    """Artifact key -> id of the step's outputs and input links written in this pass."""
    wanted = [out.desired.key for out in plan.outputs] + [link.artifact_key for link in plan.inputs]
    return {key: created_ids[key] for key in wanted if key is not None and key in created_ids}


def _context(types: TypeRegistry, workflow: WorkflowPlan, *, with_write: bool) -> pb.Context:
    """The run context as the transaction names it: by name alone, reused as it is stored,
    unless its planned write is still to be made."""
    desired = workflow.context
    context = pb.Context(type_id=types.context_type_id(), name=desired.name)
    write = workflow.context_write
    if not with_write or write is None:
        return context
    if write.stored is not None:
        context.id = write.stored.id
        fill(context.properties, {**write.stored.properties, **desired.properties})
    else:
        fill(context.properties, desired.properties)
    return context


def _execution(types: TypeRegistry, plan: StepPlan) -> pb.Execution:
    """The execution to put: created with its key as name, else as stored with the plan's changes."""
    write = plan.execution
    if write is None:
        stored = plan.stored_execution
        assert stored is not None  # a step with an id and no write has its stored execution
        return _as_stored(types, stored)
    props, custom, state = write.merged_properties()
    if write.stored is None:
        execution = pb.Execution(
            type_id=types.execution_type_id(write.desired.type_name),
            name=write.desired.key,
            last_known_state=int(state),
        )
    else:
        execution = pb.Execution(
            id=write.stored.id,
            type_id=types.execution_type_id(write.stored.type_name),
            last_known_state=int(state),
        )
        if write.stored.name:
            execution.name = write.stored.name
    fill(execution.properties, props)
    fill(execution.custom_properties, custom)
    return execution


def _as_stored(types: TypeRegistry, stored: StoredExecution) -> pb.Execution:
    """An execution exactly as stored: put again, it changes nothing (MLMD sees no difference)."""
    execution = pb.Execution(
        id=stored.id,
        type_id=types.execution_type_id(stored.type_name),
        last_known_state=int(stored.state),
    )
    if stored.name:
        execution.name = stored.name
    fill(execution.properties, stored.properties)
    fill(execution.custom_properties, stored.custom_properties)
    return execution


def _event(kind: EventKind, key: str, artifact_id: int | None = None) -> pb.Event:
    event = pb.Event(type=int(kind))
    event.path.steps.add().key = key
    if artifact_id is not None:
        event.artifact_id = artifact_id
    return event


def _artifacts_and_events(
    types: TypeRegistry,
    plan: StepPlan,
    created_ids: dict[str, int],
    present: set[EventSeen] | None,
) -> tuple[list[ArtifactAndEvent], dict[str, int]]:
    """The step's (artifact, event) pairs, and artifact key -> index for the artifacts it puts.

    `present` are the events its execution has now: none of them is sent again.
    """
    present = present or set()
    seen_artifacts = {(artifact_id, kind) for artifact_id, kind, _ in present}
    seen_inputs = {key for _, kind, key in present if kind == EventKind.INPUT}
    pairs: list[ArtifactAndEvent] = []
    outputs: dict[str, int] = {}
    for out in plan.outputs:
        stored_id = out.stored.id if out.stored is not None else None
        event = _event(EventKind.OUTPUT, out.desired.name) if out.add_event else None
        if event is not None and stored_id is not None and (stored_id, EventKind.OUTPUT) in seen_artifacts:
            event = None
        if out.op is None:
            if event is not None and stored_id is not None:  # only its event is missing
                event.artifact_id = stored_id
                pairs.append((None, event))
            continue
        outputs[out.desired.key] = len(pairs)
        pairs.append(
            (_artifact(types, out.op, out.desired, out.stored, out.merged_custom_properties()), event)
        )
    for link in plan.inputs:
        artifact_id = link.artifact_id
        if artifact_id is None:
            artifact_id = created_ids.get(link.artifact_key or "")
            if artifact_id is None:
                continue  # its producer failed: the link waits for a later pass
        if link.name in seen_inputs or (artifact_id, EventKind.INPUT) in seen_artifacts:
            continue
        pairs.append((None, _event(EventKind.INPUT, link.name, artifact_id)))
    return pairs, outputs


def _artifact(
    types: TypeRegistry, op: Op, desired: DesiredArtifact, stored: StoredArtifact | None, custom: Properties
) -> pb.Artifact:
    """An output artifact: created with its key as name, else as stored with the plan's changes."""
    if stored is None or op is Op.CREATE:
        artifact = pb.Artifact(
            type_id=types.artifact_type_id(desired.type_name), uri=desired.uri, name=desired.key
        )
    else:
        artifact = pb.Artifact(
            id=stored.id, type_id=types.artifact_type_id(stored.type_name), uri=desired.uri
        )
        if stored.name:
            artifact.name = stored.name
        fill(artifact.properties, stored.properties)
    fill(artifact.custom_properties, custom)
    return artifact
