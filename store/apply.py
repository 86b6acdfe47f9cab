"""Apply workflow plans: each workflow's steps in MLMD transactions, producers first.

One `put_lineage_subgraph` call per workflow chunk writes the executions,
their output artifacts, all events, the association with the run context and
the attributions together, so a crash leaves each step either fully written
or not at all. Steps of different workflows never share a call, because MLMD
associates every execution of a call with every context of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.plan import StepPlan, WorkflowPlan
from reconcile.pod_metadata import AppliedIds
from reconcile.records import EventKind
from store.convert import fill
from store.errors import StoreError, write_failure
from store.types import TypeRegistry

CHUNK = 100  # steps per transaction; a workflow larger than this spans several


@dataclass
class ApplyResult:
    """Ids per step (by execution key), the steps whose transaction failed, and the count of calls."""

    applied: dict[str, AppliedIds] = field(default_factory=dict)
    failed: dict[str, StoreError] = field(default_factory=dict)
    transactions: int = 0

    def merge(self, other: ApplyResult) -> None:
        """Add the result of another call of the same pass."""
        self.applied.update(other.applied)
        self.failed.update(other.failed)
        self.transactions += other.transactions


def _event(kind: EventKind, key: str, execution_id: int | None, artifact_id: int | None) -> pb.Event:
    event = pb.Event(type=int(kind))
    event.path.steps.add().key = key
    if execution_id is not None:
        event.execution_id = execution_id
    if artifact_id is not None:
        event.artifact_id = artifact_id
    return event


class _Subgraph:
    """One transaction's worth of records: steps of a single workflow, with its run context."""

    def __init__(self, types: TypeRegistry, created_ids: dict[str, int], workflow: WorkflowPlan) -> None:
        self.types = types
        self.created_ids = created_ids  # artifact key -> id written earlier this pass
        self.executions: list[pb.Execution] = []
        self.artifacts: list[pb.Artifact] = []
        self.artifact_index: dict[str, int] = {}
        self.edges: list[tuple[int | None, int | None, pb.Event]] = []
        self.plans: list[tuple[StepPlan, int | None]] = []  # plan, index in executions
        # Every transaction carries the context, to associate and attribute its records.
        desired = workflow.context
        self.context = pb.Context(type_id=types.context_type_id(), name=desired.name, external_id=desired.key)
        if workflow.context_id is not None:
            self.context.id = workflow.context_id
        fill(self.context.properties, desired.properties)

    def add(self, plan: StepPlan) -> None:
        step = plan.step
        index = None
        if plan.execution is not None:
            write = plan.execution
            props, custom, state = write.merged_properties()
            proto = pb.Execution(
                type_id=self.types.execution_type_id(step.execution.type_name),
                external_id=step.execution.key,
                last_known_state=int(state),
            )
            if write.stored is not None:
                proto.id = write.stored.id
                proto.type_id = self.types.execution_type_id(write.stored.type_name)
                if write.stored.name:  # keyed by name before an upgrade: MLMD keeps names anyway
                    proto.name = write.stored.name
            fill(proto.properties, props)
            fill(proto.custom_properties, custom)
            index = len(self.executions)
            self.executions.append(proto)
        self.plans.append((plan, index))
        execution_id = None if index is not None else plan.execution_id

        for out in plan.outputs:
            if out.op is not None:
                artifact = pb.Artifact(
                    type_id=self.types.artifact_type_id(out.desired.type_name),
                    uri=out.desired.uri,
                    external_id=out.desired.key,
                )
                if out.stored is not None:
                    artifact.id = out.stored.id
                    artifact.type_id = self.types.artifact_type_id(out.stored.type_name)
                    if out.stored.name:
                        artifact.name = out.stored.name
                    # An update replaces the declared properties too (old types declare some).
                    fill(artifact.properties, out.stored.properties)
                fill(artifact.custom_properties, out.merged_custom_properties())
                self.artifact_index[out.desired.key] = len(self.artifacts)
                self.artifacts.append(artifact)
            if out.add_event:
                art_index = self.artifact_index.get(out.desired.key)
                art_id = out.stored.id if art_index is None and out.stored is not None else None
                self.edges.append(
                    (index, art_index, _event(EventKind.OUTPUT, out.desired.name, execution_id, art_id))
                )

        for link in plan.inputs:
            art_index = self.artifact_index.get(link.artifact_key) if link.artifact_key else None
            art_id = link.artifact_id
            if art_id is None and art_index is None:
                art_id = self.created_ids.get(link.artifact_key or "")
                if art_id is None:
                    continue  # its producer failed: the link waits for a later pass
            self.edges.append((index, art_index, _event(EventKind.INPUT, link.name, execution_id, art_id)))

    def put(self, client: metadata_store.MetadataStore) -> tuple[list[int], list[int], list[int]]:
        return client.put_lineage_subgraph(
            self.executions,
            self.artifacts,
            [self.context],
            self.edges,
            reuse_context_if_already_exist=True,
            reuse_artifact_if_already_exist_by_external_id=True,
        )


def apply_workflow_plans(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    plans: Sequence[WorkflowPlan],
    created_ids: dict[str, int] | None = None,
) -> ApplyResult:
    """Write every workflow plan; a failed transaction fails only its own steps.

    A workflow's steps go in transactions of at most CHUNK steps, in apply order.
    `created_ids` (artifact key -> id) carries the outputs written by earlier calls
    of the same pass, so their consumers can link to them; this call adds to it.
    """
    result = ApplyResult()
    created_ids = {} if created_ids is None else created_ids
    for workflow in plans:
        writing = workflow.steps_to_write()
        carried = {id(plan) for plan in writing}
        for plan in workflow.steps:
            if id(plan) not in carried:
                ids = AppliedIds(workflow.context_id, plan.execution_id, {})
                result.applied[plan.step.execution.key] = ids
        for start in range(0, len(writing), CHUNK):
            batch = writing[start : start + CHUNK]
            _put(client, types, workflow, batch, created_ids, result)
    return result


def _put(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    workflow: WorkflowPlan,
    batch: Sequence[StepPlan],
    created_ids: dict[str, int],
    result: ApplyResult,
) -> None:
    """One transaction: `batch` with its workflow's context; the ids it got go into `result`."""
    try:
        subgraph = _Subgraph(types, created_ids, workflow)
        for plan in batch:
            subgraph.add(plan)
        execution_ids, artifact_ids, context_ids = subgraph.put(client)
    except Exception as exc:
        # Reported per step by the caller, which re-reads and retries them.
        error = write_failure(exc)
        for plan in batch:
            result.failed[plan.step.execution.key] = error
        return
    finally:
        result.transactions += 1
    for key, index in subgraph.artifact_index.items():
        created_ids[key] = artifact_ids[index]
    context_id = context_ids[0] if context_ids else None
    for plan, index in subgraph.plans:
        execution_id = execution_ids[index] if index is not None else plan.execution_id
        artifacts = {
            out.desired.key: created_ids[out.desired.key]
            for out in plan.outputs
            if out.desired.key in created_ids
        }
        for link in plan.inputs:
            if link.artifact_key in created_ids:
                artifacts[link.artifact_key] = created_ids[link.artifact_key]
        result.applied[plan.step.execution.key] = AppliedIds(context_id, execution_id, artifacts)
