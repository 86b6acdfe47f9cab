"""Plan: desired records vs what MLMD holds -> the writes that converge them.

The unit is the workflow: `plan_workflow` gives one `WorkflowPlan` per workflow -- its run
context's write (at most one) and a `StepPlan` per step, producers before consumers, the
order `store/` writes them in. `plan_step` says, for one step, what to create, adopt
(records the upstream writer left without a key) or update, and which inputs must
wait for their upstream artifact. `plan_workflows` plans the steps of one pass. Applying a
plan and planning again gives an empty plan.

Where a stored record keeps its key depends on the MLMD server (`ActualState.placement`,
reconcile/keys.py): `external_id` from MLMD 1.11 on, where adopting a record means setting
it; `name` before, set once when MLMD creates the record, so a record the upstream writer
made is adopted without a key and found again the way that writer finds it. A step's input
links only to what its own upstream step produced (`own_upstream`, docs/identity-keys.md).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from reconcile import keys
from reconcile.errors import PodError, Reason
from reconcile.keys import KeyPlacement
from reconcile.records import (
    DesiredArtifact,
    DesiredContext,
    DesiredExecution,
    DesiredInput,
    DesiredStep,
    EventKind,
    ExecutionState,
    Properties,
    StoredArtifact,
    StoredContext,
    StoredEvent,
    StoredExecution,
)

TERMINAL_STATES = frozenset(
    {ExecutionState.COMPLETE, ExecutionState.FAILED, ExecutionState.CACHED, ExecutionState.CANCELED}
)


@dataclass
class ActualState:
    """What MLMD holds for the steps of one pass, read in batches by `store/`.

    `executions` and `artifacts` are by key, read from the field `placement` names.
    """

    contexts: dict[str, StoredContext] = field(default_factory=dict)  # KfpRun, by name
    executions: dict[str, StoredExecution] = field(default_factory=dict)  # by key
    # Executions of run contexts read whole: where a step's key was missing (to adopt),
    # or every context of the pass where keys are in names.
    context_executions: dict[int, list[StoredExecution]] = field(default_factory=dict)
    artifacts: dict[str, StoredArtifact] = field(default_factory=dict)  # by key
    artifacts_by_id: dict[int, StoredArtifact] = field(default_factory=dict)
    artifacts_by_uri: dict[str, list[StoredArtifact]] = field(default_factory=dict)
    events: dict[int, list[StoredEvent]] = field(default_factory=dict)  # by execution id
    placement: KeyPlacement = KeyPlacement.EXTERNAL_ID
    # Ids of executions found by key that no run context holds: a batched write
    # (store/apply.py) stopped between its records and their links. They are put again
    # with their outputs, which links them.
    unlinked_executions: set[int] = field(default_factory=set)


class Op(StrEnum):
    """How a record is brought in line."""

    CREATE = "create"
    ADOPT = "adopt"  # written by the upstream writer: set our external_id
    UPDATE = "update"


@dataclass(frozen=True)
class ContextWrite:
    op: Op
    desired: DesiredContext
    stored: StoredContext | None


@dataclass(frozen=True)
class ExecutionWrite:
    op: Op
    desired: DesiredExecution
    stored: StoredExecution | None
    changes: tuple[str, ...]

    def merged_properties(self) -> tuple[Properties, Properties, ExecutionState]:
        """The values to write: stored ones we do not own are kept."""
        base = self.stored
        props = {**(base.properties if base else {}), **self.desired.properties}
        custom = {**(base.custom_properties if base else {}), **self.desired.custom_properties}
        return props, custom, effective_state(self.desired.state, base)


@dataclass(frozen=True)
class InputLink:
    """An INPUT event to add: to a stored artifact, or to one this pass creates."""

    name: str
    uri: str
    artifact_id: int | None
    artifact_key: str | None


@dataclass(frozen=True)
class OutputWrite:
    """An output artifact to create/adopt/update (op None: only its OUTPUT event is missing)."""

    op: Op | None
    desired: DesiredArtifact
    stored: StoredArtifact | None
    add_event: bool
    changes: tuple[str, ...] = ()

    def merged_custom_properties(self) -> Properties:
        base = self.stored.custom_properties if self.stored else {}
        return {**base, **self.desired.custom_properties}


@dataclass(frozen=True)
class LinkedInput:
    """An input already linked in MLMD (or linked by this plan once applied)."""

    name: str
    uri: str
    artifact_id: int | None
    artifact_key: str | None = None


@dataclass(frozen=True)
class StepPlan:
    """The writes one step needs, and what it already has (its run context is its workflow's)."""

    step: DesiredStep
    execution_id: int | None
    execution: ExecutionWrite | None
    inputs: tuple[InputLink, ...]
    outputs: tuple[OutputWrite, ...]
    # Inputs already linked, for the pod's input-ids annotation.
    linked_inputs: tuple[LinkedInput, ...]
    # Output artifacts already stored and complete: (desired, stored id).
    stored_outputs: tuple[tuple[DesiredArtifact, int], ...]
    pending_inputs: tuple[DesiredInput, ...]
    # The step's execution as stored (None: it is created). A write path that must send
    # the whole execution to add an event to it (put_execution) sends this.
    stored_execution: StoredExecution | None = None

    @property
    def writes_mlmd(self) -> bool:
        """Whether the step's own records need a write (its context aside)."""
        return bool(self.execution or self.inputs or self.outputs)

    def actions(self) -> Iterator[tuple[str, str]]:
        """(kind, detail) for every write of the step's own records, e.g. ("execution.create", key)."""
        if self.execution:
            detail = self.execution.desired.key
            if self.execution.changes and self.execution.op is not Op.CREATE:
                detail += f" ({', '.join(self.execution.changes)})"
            yield f"execution.{self.execution.op}", detail
        for link in self.inputs:
            yield "event.input", f"{self.step.execution.key} <- {link.name} ({link.uri})"
        for out in self.outputs:
            if out.op is not None:
                detail = out.desired.key
                if out.changes and out.op is not Op.CREATE:
                    detail += f" ({', '.join(out.changes)})"
                yield f"artifact.{out.op}", detail
            if out.add_event:
                yield "event.output", f"{self.step.execution.key} -> {out.desired.name}"


@dataclass(frozen=True)
class WorkflowPlan:
    """The writes one workflow needs: its run context's (at most one) and its steps', in apply order.

    `steps` come producers first, so an input links to an output created in the same
    transaction. `context_id` is the stored run context's id (None until it is created).
    """

    context: DesiredContext
    context_id: int | None
    context_write: ContextWrite | None
    steps: tuple[StepPlan, ...]

    @property
    def writes_mlmd(self) -> bool:
        return self.context_write is not None or any(p.writes_mlmd for p in self.steps)

    def steps_to_write(self) -> tuple[StepPlan, ...]:
        """The steps the workflow's transactions carry, in apply order.

        Those with writes of their own; all of them while the run context needs a write
        (every transaction carries the context), so that no step counts as done before
        its context is stored as planned.
        """
        if self.context_write is not None:
            return self.steps
        return tuple(p for p in self.steps if p.writes_mlmd)

    def actions(self) -> Iterator[tuple[str, str]]:
        """(kind, detail) for every MLMD write: the run context once, then each step's."""
        if self.context_write is not None:
            yield f"context.{self.context_write.op}", self.context.name
        for plan in self.steps:
            yield from plan.actions()

    def only(self, execution_keys: Collection[str]) -> WorkflowPlan:
        """This plan cut down to the steps with these execution keys (order and context kept)."""
        return replace(self, steps=tuple(p for p in self.steps if p.step.execution.key in execution_keys))


def effective_state(desired: ExecutionState, stored: StoredExecution | None) -> ExecutionState:
    """A recorded end state is never moved back by a stale or unknown observation."""
    if stored is not None and stored.state in TERMINAL_STATES and desired not in TERMINAL_STATES:
        return stored.state
    if desired is ExecutionState.UNKNOWN and stored is not None:
        return stored.state
    return desired


def _changed(desired: Properties, stored: Properties, prefix: str) -> list[str]:
    return [
        f"{prefix}{k}"
        for k, v in desired.items()
        if k not in stored or stored[k] != v or type(stored[k]) is not type(v)
    ]


def stored_key(record: StoredExecution | StoredArtifact, placement: KeyPlacement) -> str | None:
    """The key a stored execution or artifact carries where `placement` keeps keys (None: none)."""
    return record.external_id if placement is KeyPlacement.EXTERNAL_ID else record.name


def unclaimed(record: StoredExecution | StoredArtifact) -> bool:
    """No key in either field: a record the upstream writer made."""
    return record.external_id is None and not record.name


def _key_changes(key: str, stored: StoredExecution | StoredArtifact, placement: KeyPlacement) -> list[str]:
    # A name is set once, when MLMD creates the record: an adopted record keeps none.
    if placement is KeyPlacement.EXTERNAL_ID and stored.external_id != key:
        return ["external_id"]
    return []


def _op(stored: StoredExecution | StoredArtifact, placement: KeyPlacement) -> Op:
    return Op.ADOPT if stored_key(stored, placement) is None else Op.UPDATE


def execution_changes(
    desired: DesiredExecution, stored: StoredExecution, placement: KeyPlacement = KeyPlacement.EXTERNAL_ID
) -> tuple[str, ...]:
    """The fields of a stored execution that differ from the desired one (type excluded)."""
    changes = _key_changes(desired.key, stored, placement)
    changes += _changed(desired.properties, stored.properties, "property:")
    changes += _changed(desired.custom_properties, stored.custom_properties, "custom:")
    if effective_state(desired.state, stored) != stored.state:
        changes.append("state")
    return tuple(changes)


def artifact_changes(
    desired: DesiredArtifact, stored: StoredArtifact, placement: KeyPlacement = KeyPlacement.EXTERNAL_ID
) -> tuple[str, ...]:
    """The fields of a stored artifact that differ from the desired one (type excluded)."""
    changes = _key_changes(desired.key, stored, placement)
    if stored.uri != desired.uri:
        changes.append("uri")
    changes += _changed(desired.custom_properties, stored.custom_properties, "custom:")
    return tuple(changes)


def find_context(context: DesiredContext, actual: ActualState) -> StoredContext | None:
    """The run context by name; one with a foreign external_id is a conflict."""
    stored = actual.contexts.get(context.name)
    if stored is not None and stored.external_id not in (None, context.key):
        raise PodError(
            Reason.MLMD_CONFLICT,
            f"context {stored.name!r} (id {stored.id}) has external_id {stored.external_id!r}, "
            f"not {context.key!r}",
        )
    return stored


def plan_context(context: DesiredContext, actual: ActualState) -> ContextWrite | None:
    """The write a workflow's run context needs, if any (PodError: it belongs to someone else).

    Without external ids a run context is identified by its name alone, as KFP's UI finds it.
    """
    stored = find_context(context, actual)
    if stored is None:
        return ContextWrite(Op.CREATE, context, None)
    if actual.placement is KeyPlacement.EXTERNAL_ID and stored.external_id is None:
        return ContextWrite(Op.ADOPT, context, stored)
    if any(stored.properties.get(k) != v for k, v in context.properties.items()):
        return ContextWrite(Op.UPDATE, context, stored)
    return None


def find_execution(
    step: DesiredStep, actual: ActualState, context: StoredContext | None
) -> StoredExecution | None:
    """Ours by key; else, in the run context, ours keyed by name (written before MLMD had
    external ids) or the one the upstream writer left for this pod."""
    stored = actual.executions.get(step.execution.key)
    if stored is not None or context is None:
        return stored
    scanned = actual.context_executions.get(context.id, ())
    for execution in scanned:
        if execution.name == step.execution.key and execution.external_id is None:
            return execution
    if step.ref.pod_name is None:
        return None
    candidates = [
        e
        for e in scanned
        if unclaimed(e)
        and e.custom_properties.get("kfp_pod_name") == step.ref.pod_name
        and e.properties.get("run_id", e.custom_properties.get("run_id")) == step.ref.workflow_name
    ]
    return min(candidates, key=lambda e: e.id) if candidates else None


def _events(actual: ActualState, execution: StoredExecution | None, kind: EventKind) -> list[StoredEvent]:
    if execution is None:
        return []
    return [e for e in actual.events.get(execution.id, ()) if e.kind == kind]


def find_output(
    desired: DesiredArtifact, actual: ActualState, output_events: list[StoredEvent]
) -> StoredArtifact | None:
    """Ours by key; else the artifact an OUTPUT event of this execution names (the upstream
    writer's, or ours keyed by name before MLMD had external ids)."""
    stored = actual.artifacts.get(desired.key)
    if stored is not None:
        return stored
    for event in output_events:
        if event.path_key == desired.name:
            candidate = actual.artifacts_by_id.get(event.artifact_id)
            if (
                candidate is not None
                and candidate.external_id is None
                and candidate.name in (None, desired.key)
            ):
                return candidate
    return None


def pick_upstream(artifacts: Iterable[StoredArtifact]) -> StoredArtifact | None:
    """Of several artifacts with one URI, the newest."""
    return max(artifacts, key=lambda a: a.id, default=None)


OutputWhere = tuple[str, str, str]  # (namespace, Workflow uid, URI)


@dataclass(frozen=True)
class WorkflowOutput:
    """An output of a step of the pass: its key, and its id once stored (None: to be created)."""

    key: str
    stored_id: int | None


def workflow_outputs(steps: Iterable[DesiredStep], actual: ActualState) -> dict[OutputWhere, WorkflowOutput]:
    """The outputs of these steps, where their consumers look for them (`own_upstream`)."""
    found: dict[OutputWhere, WorkflowOutput] = {}
    for step in steps:
        if not step.outputs:
            continue
        execution = find_execution(step, actual, actual.contexts.get(step.context.name))
        output_events = _events(actual, execution, EventKind.OUTPUT)
        for out in step.outputs:
            stored = find_output(out, actual, output_events)
            where = (step.ref.namespace, step.ref.workflow_uid, out.uri)
            found.setdefault(where, WorkflowOutput(out.key, stored.id if stored else None))
    return found


def own_upstream(
    want: DesiredInput,
    step: DesiredStep,
    actual: ActualState,
    producers: Mapping[OutputWhere, WorkflowOutput],
) -> WorkflowOutput | None:
    """The artifact an input links to: one its own upstream step produced (None: it waits).

    Its own upstream step is a step of the same Workflow object (namespace and uid): one in
    this pass (`producers`), whose output is stored or about to be created; else a stored
    artifact with this URI whose key (in external_id, or in name) is that Workflow's. A
    record the upstream writer made counts once its producer's step has adopted it, in the
    pass that producer is in. Another namespace's or another workflow's artifact at the
    same URI never counts.
    """
    own = producers.get((step.ref.namespace, step.ref.workflow_uid, want.uri))
    if own is not None:
        return own
    prefix = keys.workflow_key_prefix(step.ref.namespace, step.ref.workflow_uid)
    newest = pick_upstream(
        a
        for a in actual.artifacts_by_uri.get(want.uri, ())
        if (a.external_id or a.name or "").startswith(prefix)
    )
    return WorkflowOutput(newest.external_id or newest.name or "", newest.id) if newest else None


def plan_step(
    step: DesiredStep,
    actual: ActualState,
    producers: Mapping[OutputWhere, WorkflowOutput] | None = None,
) -> StepPlan:
    """The writes that make MLMD hold `step`'s own records (its run context: `plan_context`).

    `producers` are the outputs of the steps of its workflow in this pass (`workflow_outputs`),
    so a downstream step links to an output created in the same pass. Raises PodError when
    the run context belongs to someone else.
    """
    producers = producers or {}
    placement = actual.placement
    context = find_context(step.context, actual)
    execution = find_execution(step, actual, context)
    execution_write = None
    relink = False
    if execution is None:
        execution_write = ExecutionWrite(Op.CREATE, step.execution, None, ())
    else:
        changes = execution_changes(step.execution, execution, placement)
        relink = execution.id in actual.unlinked_executions
        if context is None or relink:
            # The context is new but the execution is not, or a batched write stopped before
            # linking it: re-put it so the transaction associates it with the context.
            changes += ("association",)
        if changes:
            execution_write = ExecutionWrite(_op(execution, placement), step.execution, execution, changes)

    # Inputs: an INPUT event with the same key, or to the same artifact
    # (MLMD allows one event per execution, artifact and type), satisfies one.
    input_events = _events(actual, execution, EventKind.INPUT)
    linked_keys = {e.path_key for e in input_events}
    linked_artifacts = {e.artifact_id for e in input_events}
    links: list[InputLink] = []
    linked: list[LinkedInput] = []
    pending: list[DesiredInput] = []
    for want in step.inputs:
        if want.name in linked_keys:
            event = next(e for e in input_events if e.path_key == want.name)
            linked.append(LinkedInput(want.name, want.uri, event.artifact_id))
            continue
        upstream = own_upstream(want, step, actual, producers)
        if upstream is None:
            pending.append(want)
        elif upstream.stored_id is not None:
            if upstream.stored_id in linked_artifacts:
                linked.append(LinkedInput(want.name, want.uri, upstream.stored_id))
                continue
            linked_artifacts.add(upstream.stored_id)
            links.append(InputLink(want.name, want.uri, upstream.stored_id, None))
        elif upstream.key not in {link.artifact_key for link in links}:
            links.append(InputLink(want.name, want.uri, None, upstream.key))
        else:
            pending.append(want)

    outputs: list[OutputWrite] = []
    stored_outputs: list[tuple[DesiredArtifact, int]] = []
    output_events = _events(actual, execution, EventKind.OUTPUT)
    evented = {e.artifact_id for e in output_events}
    for want in step.outputs or ():
        stored = find_output(want, actual, output_events)
        if stored is None:
            outputs.append(OutputWrite(Op.CREATE, want, None, add_event=True))
            continue
        changes = artifact_changes(want, stored, placement)
        if relink and not changes:
            changes = ("attribution",)  # its step's execution is unlinked: so is its output
        op = _op(stored, placement) if changes else None
        add_event = stored.id not in evented
        if op is None and not add_event:
            stored_outputs.append((want, stored.id))
        else:
            outputs.append(OutputWrite(op, want, stored, add_event, changes))

    return StepPlan(
        step=step,
        execution_id=execution.id if execution else None,
        execution=execution_write,
        inputs=tuple(links),
        outputs=tuple(outputs),
        linked_inputs=tuple(linked),
        stored_outputs=tuple(stored_outputs),
        pending_inputs=tuple(pending),
        stored_execution=execution,
    )


def order_for_apply(plans: Sequence[StepPlan]) -> list[StepPlan]:
    """Producers before consumers, so inputs link to outputs created in the same pass.

    A depth-first walk up the inputs with an explicit stack: a recursive closure would be a
    reference cycle (function -> cell -> function) holding every plan of the workflow, and
    passes hold the cyclic collector (controller/gc_pause.py), so nothing would free them
    until the pass ends.
    """
    producer = {out.desired.key: i for i, p in enumerate(plans) for out in p.outputs if out.op is Op.CREATE}

    def upstream(i: int) -> Iterator[int]:
        for link in plans[i].inputs:
            if link.artifact_key is not None and link.artifact_key in producer:
                yield producer[link.artifact_key]

    return [plans[i] for i in dependency_order(len(plans), upstream)]


def dependency_order(count: int, needs: Callable[[int], Iterable[int]]) -> list[int]:
    """0..count-1 with each index after the indices it `needs`; otherwise in index order.

    A depth-first walk with an explicit stack (no recursion: chains may be long, and a
    recursive closure would be a reference cycle). A cycle is broken where it is found.
    """
    done: set[int] = set()
    ordered: list[int] = []
    for start in range(count):
        if start in done:
            continue
        # (index, the indices on the path to it, its needs not walked yet)
        path: list[tuple[int, frozenset[int], Iterator[int]]] = [(start, frozenset(), iter(needs(start)))]
        while path:
            i, trail, left = path[-1]
            nxt = next(left, None)
            if nxt is not None:
                if nxt not in done and nxt not in trail and nxt != i:
                    path.append((nxt, trail | {i}, iter(needs(nxt))))
                continue
            path.pop()
            if i not in done:
                done.add(i)
                ordered.append(i)
    return ordered


def plan_workflow(
    steps: Sequence[DesiredStep],
    actual: ActualState,
    producers: Mapping[OutputWhere, WorkflowOutput] | None = None,
) -> WorkflowPlan:
    """The plan for the steps of one workflow (all with the same run context), producers first.

    `producers` is as for `plan_step` (by default the outputs of `steps`). Raises PodError
    when the run context belongs to someone else: then no step of the workflow can be written.
    """
    context = steps[0].context
    context_write = plan_context(context, actual)
    stored = actual.contexts.get(context.name)
    producers = workflow_outputs(steps, actual) if producers is None else producers
    plans = [plan_step(step, actual, producers) for step in steps]
    return WorkflowPlan(context, stored.id if stored else None, context_write, tuple(order_for_apply(plans)))


def plan_workflows(
    steps: Sequence[DesiredStep], actual: ActualState
) -> tuple[list[WorkflowPlan], list[tuple[DesiredStep, PodError]]]:
    """Plans for the steps of one pass: one per workflow, in the order the workflows first appear.

    An input may link to an output another step of its Workflow creates in this pass. That
    step is looked for in the whole pass, not only under the same run context: a pod whose
    workflow label disagrees with its owner Workflow plans under another context name, and
    its link must still be made in this pass. Returns the plans and the steps that cannot be
    planned, each with its error (every step of a workflow whose run context belongs to
    someone else).
    """
    producers = workflow_outputs(steps, actual)
    by_workflow: dict[str, list[DesiredStep]] = {}
    for step in steps:
        by_workflow.setdefault(step.context.name, []).append(step)
    plans: list[WorkflowPlan] = []
    refused: list[tuple[DesiredStep, PodError]] = []
    for group in by_workflow.values():
        try:
            plans.append(plan_workflow(group, actual, producers))
        except PodError as exc:
            refused += [(step, exc) for step in group]
    return order_workflows(plans), refused


def order_workflows(plans: Sequence[WorkflowPlan]) -> list[WorkflowPlan]:
    """Workflow plans with each one after the plans that create artifacts its inputs link to.

    Plans are applied in this order, and an input can only link to an artifact written
    before it; a workflow whose pods carry another context name than their producers'
    (a mislabelled pod) would otherwise have its input wait for the next pass. Otherwise the
    order the workflows first appeared in; a cycle keeps that order.
    """
    creator = {
        out.desired.key: i
        for i, plan in enumerate(plans)
        for step in plan.steps
        for out in step.outputs
        if out.op is Op.CREATE
    }
    needs = [
        sorted(
            {
                creator[link.artifact_key]
                for step in plan.steps
                for link in step.inputs
                if link.artifact_key is not None and creator.get(link.artifact_key, i) != i
            }
        )
        for i, plan in enumerate(plans)
    ]
    if not any(needs):
        return list(plans)
    return [plans[i] for i in dependency_order(len(plans), needs.__getitem__)]
