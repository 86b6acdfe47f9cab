"""Apply workflow plans: workflows' steps in MLMD transactions, producers first.

One workflow alone (`batch_workflows` 1, or a workflow of more than CHUNK steps): one
`put_lineage_subgraph` call per workflow chunk writes the executions, their output
artifacts, all events, the association with the run context and the attributions
together, so a crash leaves each step either fully written or not at all.

Many workflows at once (the default, `write_batch_workflows` of them): MLMD associates
every execution of a `put_lineage_subgraph` call with every context of it, so several
workflows cannot share one call with their contexts. A batch is instead at most three
transactions, whatever the number of workflows in it:

1. the run contexts to create or update (`put_lineage_subgraph` with contexts only);
2. every execution, output artifact and event of the batch (`put_lineage_subgraph`
   without contexts);
3. every association and attribution, each with its own workflow's context
   (`put_attributions_and_associations`, which skips a pair already stored).

A crash after 1 leaves empty run contexts, which the next pass finds and uses. A crash
between 2 and 3 leaves records no run context holds: the next pass reads which of the
executions it found by key are in no run context (store/actual.py), plans them again
with their outputs, and that write links them (reconcile/plan.py, "association"). A
failure of any of the three fails every step of the batch; the pass then reads them
again and writes workflow by workflow, then step by step (controller/reconcile_pass.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
BATCH_STEPS = 500  # steps per batch of workflows: bounds the size of one transaction


@dataclass
class ApplyResult:
    """Ids per step (by execution key), the steps whose transaction failed, and the count of calls."""

    applied: dict[str, AppliedIds] = field(default_factory=dict)
    failed: dict[str, StoreError] = field(default_factory=dict)
    transactions: int = 0
    # Run contexts (by name) a batch wrote before the rest of it failed: written all the same.
    contexts_of_failed: list[str] = field(default_factory=list)

    def merge(self, other: ApplyResult) -> None:
        """Add the result of another call of the same pass."""
        self.applied.update(other.applied)
        self.failed.update(other.failed)
        self.transactions += other.transactions
        self.contexts_of_failed += other.contexts_of_failed


def _event(kind: EventKind, key: str, execution_id: int | None, artifact_id: int | None) -> pb.Event:
    event = pb.Event(type=int(kind))
    event.path.steps.add().key = key
    if execution_id is not None:
        event.execution_id = execution_id
    if artifact_id is not None:
        event.artifact_id = artifact_id
    return event


def _context_proto(types: TypeRegistry, workflow: WorkflowPlan) -> pb.Context:
    """The workflow's run context as it is to be stored (with its id when it is)."""
    desired = workflow.context
    context = pb.Context(type_id=types.context_type_id(), name=desired.name, external_id=desired.key)
    if workflow.context_id is not None:
        context.id = workflow.context_id
    fill(context.properties, desired.properties)
    return context


class _Subgraph:
    """One transaction's worth of records: steps of one workflow, or of a batch of them.

    `execution_owner` and `artifact_owner` hold, per execution and per artifact, the index
    of its workflow's context in `contexts`: a batch links each record to its own context
    (put_lineage_subgraph alone would link each to all of them).
    """

    def __init__(self, types: TypeRegistry, created_ids: dict[str, int]) -> None:
        self.types = types
        self.created_ids = created_ids  # artifact key -> id written earlier this pass
        self.executions: list[pb.Execution] = []
        self.artifacts: list[pb.Artifact] = []
        self.artifact_index: dict[str, int] = {}
        self.edges: list[tuple[int | None, int | None, pb.Event]] = []
        self.plans: list[tuple[StepPlan, int | None, int]] = []  # plan, index in executions, context
        self.contexts: list[pb.Context] = []
        self.contexts_written: list[str] = []  # names, once a batch's first transaction committed
        self.execution_owner: list[int] = []
        self.artifact_owner: list[int] = []

    def start(self, workflow: WorkflowPlan) -> None:
        """The steps added next are `workflow`'s."""
        self.contexts.append(_context_proto(self.types, workflow))

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
            self.execution_owner.append(len(self.contexts) - 1)
        self.plans.append((plan, index, len(self.contexts) - 1))
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
                self.artifact_owner.append(len(self.contexts) - 1)
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
        """One workflow's records with its context: one transaction."""
        assert len(self.contexts) == 1  # put_lineage_subgraph links every record to every context
        return client.put_lineage_subgraph(
            self.executions,
            self.artifacts,
            self.contexts,
            self.edges,
            reuse_context_if_already_exist=True,
            reuse_artifact_if_already_exist_by_external_id=True,
        )

    def put_batch(
        self, client: metadata_store.MetadataStore, write_contexts: Sequence[bool], result: ApplyResult
    ) -> tuple[list[int], list[int], list[int]]:
        """Several workflows' records: contexts, then records, then links (the module's 1-3)."""
        context_ids = [ctx.id if ctx.HasField("id") else None for ctx in self.contexts]
        to_write = [i for i, write in enumerate(write_contexts) if write or context_ids[i] is None]
        # Each call is counted when made, committed or not (as `_put` counts its one call).
        if to_write:
            result.transactions += 1
            _, _, written = client.put_lineage_subgraph(
                [], [], [self.contexts[i] for i in to_write], [], reuse_context_if_already_exist=True
            )
            for i, context_id in zip(to_write, written, strict=True):
                context_ids[i] = context_id
                self.contexts_written.append(self.contexts[i].name)
        result.transactions += 1
        execution_ids, artifact_ids, _ = client.put_lineage_subgraph(
            self.executions,
            self.artifacts,
            [],
            self.edges,
            reuse_artifact_if_already_exist_by_external_id=True,
        )
        attributions = [
            pb.Attribution(artifact_id=a, context_id=context_ids[o])
            for a, o in zip(artifact_ids, self.artifact_owner, strict=True)
        ]
        associations = [
            pb.Association(execution_id=e, context_id=context_ids[o])
            for e, o in zip(execution_ids, self.execution_owner, strict=True)
        ]
        if attributions or associations:
            result.transactions += 1
            client.put_attributions_and_associations(attributions, associations)
        return execution_ids, artifact_ids, [i for i in context_ids if i is not None]  # none is None now


WorkflowSteps = tuple[WorkflowPlan, tuple[StepPlan, ...]]  # a workflow and the steps it writes


def write_groups(plans: Sequence[WorkflowPlan], batch_workflows: int = 1) -> Iterator[list[WorkflowSteps]]:
    """The writes of `plans`, in apply order: each group is written together.

    A group of one workflow is one transaction (at most CHUNK of its steps: a larger
    workflow gives several groups); a group of several is a batch (the module's
    docstring) of up to `batch_workflows` consecutive workflows and BATCH_STEPS steps.
    Workflows with nothing to write give none.
    """
    batch: list[WorkflowSteps] = []
    for workflow in plans:
        writing = workflow.steps_to_write()
        if not writing:
            continue
        if batch_workflows > 1 and len(writing) <= CHUNK:
            if batch and sum(len(w) for _, w in batch) + len(writing) > BATCH_STEPS:
                yield batch
                batch = []
            batch.append((workflow, writing))
            if len(batch) >= batch_workflows:
                yield batch
                batch = []
            continue
        if batch:  # written first: it may hold producers of this workflow's inputs
            yield batch
            batch = []
        for start in range(0, len(writing), CHUNK):
            yield [(workflow, writing[start : start + CHUNK])]
    if batch:
        yield batch


def apply_workflow_plans(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    plans: Sequence[WorkflowPlan],
    created_ids: dict[str, int] | None = None,
    batch_workflows: int = 1,
) -> ApplyResult:
    """Write every workflow plan; a failed transaction fails only its own steps.

    With `batch_workflows` 1, a workflow's steps go in transactions of at most CHUNK steps,
    in apply order. Above 1, up to that many consecutive workflows (and BATCH_STEPS steps)
    are written together in at most three transactions (the module's docstring); a workflow
    of more than CHUNK steps to write still goes alone (`write_groups`). `created_ids`
    (artifact key -> id) carries the outputs written by earlier calls of the same pass, so
    their consumers can link to them; this call adds to it.
    """
    result = ApplyResult()
    created_ids = {} if created_ids is None else created_ids
    for workflow in plans:
        carried = {id(plan) for plan in workflow.steps_to_write()}
        for plan in workflow.steps:
            if id(plan) not in carried:
                ids = AppliedIds(workflow.context_id, plan.execution_id, {})
                result.applied[plan.step.execution.key] = ids
    for group in write_groups(plans, batch_workflows):
        if len(group) == 1:
            workflow, steps = group[0]
            _put(client, types, workflow, steps, created_ids, result)
        else:
            _put_batch(client, types, group, created_ids, result)
    return result


class PreparedWrite:
    """One group of `write_groups` turned into protos, to be committed later (bench/: the bound)."""

    def __init__(self, types: TypeRegistry, group: Sequence[WorkflowSteps]) -> None:
        self._subgraph = _Subgraph(types, {})
        for workflow, steps in group:
            self._subgraph.start(workflow)
            for plan in steps:
                self._subgraph.add(plan)
        self._written = [workflow.context_write is not None for workflow, _ in group]

    def commit(self, client: metadata_store.MetadataStore) -> int:
        """Write it as the pass would; returns the transactions made."""
        if len(self._written) == 1:
            self._subgraph.put(client)
            return 1
        counted = ApplyResult()
        self._subgraph.put_batch(client, self._written, counted)
        return counted.transactions


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
        subgraph = _Subgraph(types, created_ids)
        subgraph.start(workflow)
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
    _record_ids(subgraph, execution_ids, artifact_ids, context_ids, created_ids, result)


def _put_batch(
    client: metadata_store.MetadataStore,
    types: TypeRegistry,
    batch: Sequence[tuple[WorkflowPlan, Sequence[StepPlan]]],
    created_ids: dict[str, int],
    result: ApplyResult,
) -> None:
    """Several whole workflows in at most three transactions; any failure fails every step of them."""
    subgraph = _Subgraph(types, created_ids)
    try:
        for workflow, writing in batch:
            subgraph.start(workflow)
            for plan in writing:
                subgraph.add(plan)
        written = [workflow.context_write is not None for workflow, _ in batch]
        execution_ids, artifact_ids, context_ids = subgraph.put_batch(client, written, result)
    except Exception as exc:
        # Reported per step by the caller, which re-reads and retries them.
        error = write_failure(exc)
        for _, writing in batch:
            for plan in writing:
                result.failed[plan.step.execution.key] = error
        result.contexts_of_failed += subgraph.contexts_written
        return
    _record_ids(subgraph, execution_ids, artifact_ids, context_ids, created_ids, result)


def _record_ids(
    subgraph: _Subgraph,
    execution_ids: Sequence[int],
    artifact_ids: Sequence[int],
    context_ids: Sequence[int],
    created_ids: dict[str, int],
    result: ApplyResult,
) -> None:
    """The ids a committed subgraph got: new outputs into `created_ids`, each step's into `result`."""
    for key, index in subgraph.artifact_index.items():
        created_ids[key] = artifact_ids[index]
    for plan, index, owner in subgraph.plans:
        context_id = context_ids[owner] if owner < len(context_ids) else None
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
