"""Apply plans: each workflow's steps in MLMD transactions, producers first.

One `put_lineage_subgraph` call per workflow chunk writes the executions,
their output artifacts, all events, the association with the run context and
the attributions together, so a crash leaves each step either fully written
or not at all. Steps of different workflows never share a call, because MLMD
associates every execution of a call with every context of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.plan import StepPlan, order_for_apply
from reconcile.pod_metadata import AppliedIds
from reconcile.records import EventKind
from store.convert import fill
from store.types import TypeRegistry

CHUNK = 100  # steps per transaction; a workflow larger than this spans several


@dataclass
class ApplyResult:
    """Ids per step (by execution key), the steps whose transaction failed, and the count of calls."""

    applied: dict[str, AppliedIds] = field(default_factory=dict)
    failed: dict[str, Exception] = field(default_factory=dict)
    transactions: int = 0


def _event(kind: EventKind, key: str, execution_id: int | None, artifact_id: int | None) -> pb.Event:
    event = pb.Event(type=int(kind))
    event.path.steps.add().key = key
    if execution_id is not None:
        event.execution_id = execution_id
    if artifact_id is not None:
        event.artifact_id = artifact_id
    return event


class _Subgraph:
    """One transaction's worth of records for steps of a single workflow."""

    def __init__(self, types: TypeRegistry, created_ids: dict[str, int]) -> None:
        self.types = types
        self.created_ids = created_ids  # artifact key -> id written earlier this pass
        self.executions: list[pb.Execution] = []
        self.artifacts: list[pb.Artifact] = []
        self.artifact_index: dict[str, int] = {}
        self.edges: list[tuple[int | None, int | None, pb.Event]] = []
        self.context: pb.Context | None = None
        self.plans: list[tuple[StepPlan, int | None]] = []  # plan, index in executions

    def add(self, plan: StepPlan) -> None:
        step = plan.step
        if self.context is None:
            self.context = pb.Context(
                type_id=self.types.context_type_id(), name=step.context.name, external_id=step.context.key
            )
            if plan.context_id is not None:
                self.context.id = plan.context_id
            fill(self.context.properties, step.context.properties)

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

    def put(self, store: Any) -> tuple[list[int], list[int], list[int]]:
        return store.put_lineage_subgraph(
            self.executions,
            self.artifacts,
            [self.context] if self.context is not None else [],
            self.edges,
            reuse_context_if_already_exist=True,
            reuse_artifact_if_already_exist_by_external_id=True,
        )


def apply_plans(
    store: Any, types: TypeRegistry, plans: Sequence[StepPlan], created_ids: dict[str, int] | None = None
) -> ApplyResult:
    """Write every plan; a failed transaction fails only its own steps.

    `created_ids` (artifact key -> id) carries the outputs written by earlier
    calls of the same pass, so their consumers can link to them.
    """
    result = ApplyResult()
    created_ids = {} if created_ids is None else created_ids
    by_workflow: dict[str, list[StepPlan]] = defaultdict(list)
    for plan in plans:
        if plan.writes_mlmd:
            by_workflow[plan.step.context.name].append(plan)
        else:
            result.applied[plan.step.execution.key] = AppliedIds(plan.context_id, plan.execution_id, {})

    for group in by_workflow.values():
        ordered = order_for_apply(group)
        for start in range(0, len(ordered), CHUNK):
            subgraph = _Subgraph(types, created_ids)
            try:
                for plan in ordered[start : start + CHUNK]:
                    subgraph.add(plan)
                execution_ids, artifact_ids, context_ids = subgraph.put(store)
            except Exception as exc:
                # Reported per step by the caller, which re-reads and retries them.
                for plan in ordered[start : start + CHUNK]:
                    result.failed[plan.step.execution.key] = exc
                continue
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
    return result
