"""Planning, table-driven: hand-built stored state in, the writes that converge it out.

No MLMD, no pods: each case builds the desired steps and the ActualState a read would
have given, plans them, and compares the plan's actions (what `reconcile --dry-run`
prints) with the expected ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconcile import keys
from reconcile.errors import Reason
from reconcile.keys import KeyPlacement
from reconcile.plan import ActualState, WorkflowPlan, plan_step, plan_workflow, plan_workflows
from reconcile.records import (
    DesiredArtifact,
    DesiredContext,
    DesiredExecution,
    DesiredInput,
    DesiredStep,
    EventKind,
    ExecutionState,
    StepRef,
    StoredArtifact,
    StoredContext,
    StoredEvent,
    StoredExecution,
)

NS = "kubeflow"
UID = "uid-1"
COMPLETE = ExecutionState.COMPLETE


# --- desired records ------------------------------------------------------------------


def context(workflow: str) -> DesiredContext:
    return DesiredContext(
        keys.context_key(workflow), workflow, {"pipeline_name": workflow, "run_id": workflow}
    )


def step(
    node: str,
    *,
    workflow: str = "wf",
    inputs: tuple[tuple[str, str], ...] = (),
    outputs: tuple[tuple[str, str], ...] | None = (),
    state: ExecutionState = COMPLETE,
    component: str = "op",
    namespace: str = NS,
    uid: str = UID,
) -> DesiredStep:
    """Step `node` of `workflow`; its pod is `<workflow>-<node>`; outputs are (name, uri)."""
    pod = f"{workflow}-{node}"
    execution = DesiredExecution(
        key=keys.execution_key(namespace, uid, node),
        type_name="components.op",
        properties={"pipeline_name": workflow, "run_id": workflow, "component_id": component},
        custom_properties={"kfp_pod_name": pod},
        state=state,
    )
    outs = None
    if outputs is not None:
        outs = tuple(
            DesiredArtifact(keys.output_artifact_key(namespace, uid, node, name), name, "Artifact", uri, {})
            for name, uri in outputs
        )
    return DesiredStep(
        ref=StepRef(namespace, workflow, uid, node, pod),
        context=context(workflow),
        execution=execution,
        inputs=tuple(DesiredInput(name, uri) for name, uri in inputs),
        outputs=outs,
    )


def out_key(node: str, name: str, namespace: str = NS, uid: str = UID) -> str:
    return keys.output_artifact_key(namespace, uid, node, name)


def exec_key(node: str, namespace: str = NS, uid: str = UID) -> str:
    return keys.execution_key(namespace, uid, node)


# --- stored records ---------------------------------------------------------------------


def stored_context(id: int, workflow: str = "wf", *, external_id: str | None = "ours") -> StoredContext:
    key = keys.context_key(workflow) if external_id == "ours" else external_id
    return StoredContext(id, key, workflow, "KfpRun", {"pipeline_name": workflow, "run_id": workflow})


def stored_execution(
    id: int,
    desired: DesiredStep,
    *,
    keyed: bool = True,
    named: bool = False,
    state: ExecutionState | None = None,
    **props: str,
) -> StoredExecution:
    """The execution as we would have written it (key in external_id, or in name), `props` changed."""
    execution = desired.execution
    return StoredExecution(
        id=id,
        external_id=execution.key if keyed and not named else None,
        type_name=execution.type_name,
        properties={**execution.properties, **props},
        custom_properties=dict(execution.custom_properties),
        state=execution.state if state is None else state,
        name=execution.key if named else None,
    )


def stored_artifact(id: int, uri: str, key: str | None = None, *, named: bool = False) -> StoredArtifact:
    return StoredArtifact(id, None if named else key, "Artifact", uri, {}, name=key if named else None)


def output_event(execution: StoredExecution, artifact: StoredArtifact, name: str) -> StoredEvent:
    return StoredEvent(execution.id, artifact.id, EventKind.OUTPUT, name)


def input_event(execution: StoredExecution, artifact: StoredArtifact, name: str) -> StoredEvent:
    return StoredEvent(execution.id, artifact.id, EventKind.INPUT, name)


def state(
    contexts: tuple[StoredContext, ...] = (),
    executions: tuple[StoredExecution, ...] = (),
    artifacts: tuple[StoredArtifact, ...] = (),
    events: tuple[StoredEvent, ...] = (),
    scanned: dict[int, list[StoredExecution]] | None = None,
    placement: KeyPlacement = KeyPlacement.EXTERNAL_ID,
) -> ActualState:
    """The ActualState a complete read of these records gives (`scanned`: contexts' executions).

    Records are found by key where `placement` keeps keys, as store/ reads them.
    """
    actual = ActualState(placement=placement)
    by_key = (lambda r: r.external_id) if placement is KeyPlacement.EXTERNAL_ID else (lambda r: r.name)
    actual.contexts = {c.name: c for c in contexts}
    actual.executions = {by_key(e): e for e in executions if by_key(e)}
    actual.context_executions = scanned or {}
    actual.artifacts = {by_key(a): a for a in artifacts if by_key(a)}
    actual.artifacts_by_id = {a.id: a for a in artifacts}
    for artifact in artifacts:
        actual.artifacts_by_uri.setdefault(artifact.uri, []).append(artifact)
    for event in events:
        actual.events.setdefault(event.execution_id, []).append(event)
    return actual


# --- the table -----------------------------------------------------------------------------

PRODUCER = step("a", outputs=(("out", "s3://b/a/out"),))
CONSUMER = step("b", inputs=(("in", "s3://b/a/out"),), outputs=())
DONE_CTX = stored_context(1)
DONE_EXEC = stored_execution(10, PRODUCER)
DONE_OUT = stored_artifact(20, "s3://b/a/out", out_key("a", "out"))
UPSTREAM_CTX = stored_context(1, external_id=None)
UPSTREAM_EXEC = stored_execution(10, PRODUCER, keyed=False)
UPSTREAM_OUT = stored_artifact(20, "s3://b/a/out")


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[DesiredStep, ...]
    actual: ActualState
    actions: list[tuple[str, str]]
    pending_inputs: int = 0
    refused: dict[str, Reason] = field(default_factory=dict)  # execution key -> reason


CASES = [
    Case(
        "a new step in an empty MLMD: context, execution, output and its event",
        (PRODUCER,),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
        ],
    ),
    Case(
        "a converged step writes nothing",
        (PRODUCER,),
        state((DONE_CTX,), (DONE_EXEC,), (DONE_OUT,), (output_event(DONE_EXEC, DONE_OUT, "out"),)),
        [],
    ),
    Case(
        "records the upstream writer left without keys are adopted, not copied",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            (UPSTREAM_EXEC,),
            (UPSTREAM_OUT,),
            (output_event(UPSTREAM_EXEC, UPSTREAM_OUT, "out"),),
            scanned={1: [UPSTREAM_EXEC]},
        ),
        [
            ("context.adopt", "wf"),
            ("execution.adopt", f"{exec_key('a')} (external_id)"),
            ("artifact.adopt", f"{out_key('a', 'out')} (external_id)"),
        ],
    ),
    Case(
        "an upstream execution of another pod is not adopted",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            scanned={1: [stored_execution(10, step("a", workflow="wf"), keyed=False, run_id="another-run")]},
        ),
        [
            ("context.adopt", "wf"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
        ],
    ),
    Case(
        "a recorded end state is never moved back by a stale observation",
        (step("a", outputs=(), state=ExecutionState.RUNNING),),
        state((DONE_CTX,), (stored_execution(10, step("a", outputs=())),)),
        [],
    ),
    Case(
        "an unknown state keeps the stored one",
        (step("a", outputs=(), state=ExecutionState.UNKNOWN),),
        state((DONE_CTX,), (stored_execution(10, step("a", outputs=()), state=ExecutionState.RUNNING),)),
        [],
    ),
    Case(
        "a running step that finished is updated",
        (step("a", outputs=()),),
        state((DONE_CTX,), (stored_execution(10, step("a", outputs=()), state=ExecutionState.RUNNING),)),
        [("execution.update", f"{exec_key('a')} (state)")],
    ),
    Case(
        "a property that differs is updated, and named",
        (step("a", outputs=()),),
        state((DONE_CTX,), (stored_execution(10, step("a", outputs=()), component_id="old"),)),
        [("execution.update", f"{exec_key('a')} (property:component_id)")],
    ),
    Case(
        "a new run context re-puts an existing execution to associate it",
        (step("a", outputs=()),),
        state((), (stored_execution(10, step("a", outputs=())),)),
        [("context.create", "wf"), ("execution.update", f"{exec_key('a')} (association)")],
    ),
    Case(
        "an input links to its own upstream step's stored output",
        (CONSUMER,),
        state((DONE_CTX,), (stored_execution(11, CONSUMER),), (DONE_OUT,)),
        [("event.input", f"{exec_key('b')} <- in (s3://b/a/out)")],
    ),
    Case(
        "two inputs of one artifact link once (one event per execution, artifact and type)",
        (step("b", inputs=(("in", "s3://x"), ("again", "s3://x")), outputs=()),),
        state((DONE_CTX,), (), (stored_artifact(5, "s3://x", out_key("a", "x")),)),
        [("execution.create", exec_key("b")), ("event.input", f"{exec_key('b')} <- in (s3://x)")],
    ),
    Case(
        "tenant-safe: another namespace's artifact at the same URI is never an input",
        (CONSUMER,),
        state(
            (DONE_CTX,), (), (stored_artifact(20, "s3://b/a/out", out_key("a", "out", namespace="team-b")),)
        ),
        [("execution.create", exec_key("b"))],
        pending_inputs=1,
    ),
    Case(
        "tenant-safe: a re-created workflow of the same name does not link to the old one's output",
        (CONSUMER,),
        state((DONE_CTX,), (), (stored_artifact(20, "s3://b/a/out", out_key("a", "out", uid="uid-0")),)),
        [("execution.create", exec_key("b"))],
        pending_inputs=1,
    ),
    Case(
        "tenant-safe: an upstream writer's artifact whose producer is not in the pass is not an input",
        (CONSUMER,),
        state((DONE_CTX,), (), (UPSTREAM_OUT,)),
        [("execution.create", exec_key("b"))],
        pending_inputs=1,
    ),
    Case(
        "an upstream writer's output its producer's step adopts in the same pass is the input",
        (PRODUCER, CONSUMER),
        state(
            (UPSTREAM_CTX,),
            (UPSTREAM_EXEC,),
            (UPSTREAM_OUT,),
            (output_event(UPSTREAM_EXEC, UPSTREAM_OUT, "out"),),
            scanned={1: [UPSTREAM_EXEC]},
        ),
        [
            ("context.adopt", "wf"),
            ("execution.adopt", f"{exec_key('a')} (external_id)"),
            ("artifact.adopt", f"{out_key('a', 'out')} (external_id)"),
            ("execution.create", exec_key("b")),
            ("event.input", f"{exec_key('b')} <- in (s3://b/a/out)"),
        ],
    ),
    Case(
        "same-named workflows of two namespaces in one pass: each input links to its own producer",
        (
            step("a", outputs=(("out", "s3://b/a/out"),), namespace="team-b"),
            step("b", inputs=(("in", "s3://b/a/out"),), outputs=(), namespace="team-b"),
            PRODUCER,
            CONSUMER,
        ),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a", namespace="team-b")),
            ("artifact.create", out_key("a", "out", namespace="team-b")),
            ("event.output", f"{exec_key('a', namespace='team-b')} -> out"),
            ("execution.create", exec_key("b", namespace="team-b")),
            ("event.input", f"{exec_key('b', namespace='team-b')} <- in (s3://b/a/out)"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
            ("execution.create", exec_key("b")),
            ("event.input", f"{exec_key('b')} <- in (s3://b/a/out)"),
        ],
    ),
    Case(
        "a pod whose workflow label disagrees with its owner Workflow still links in the same pass",
        (PRODUCER, step("b", workflow="mislabelled", inputs=(("in", "s3://b/a/out"),), outputs=())),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
            ("context.create", "mislabelled"),
            ("execution.create", exec_key("b")),
            ("event.input", f"{exec_key('b')} <- in (s3://b/a/out)"),
        ],
    ),
    Case(
        "a mislabelled consumer seen before its producer's workflow is planned after it",
        (step("b", workflow="mislabelled", inputs=(("in", "s3://b/a/out"),), outputs=()), PRODUCER),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
            ("context.create", "mislabelled"),
            ("execution.create", exec_key("b")),
            ("event.input", f"{exec_key('b')} <- in (s3://b/a/out)"),
        ],
    ),
    Case(
        "keys in names (MLMD < 1.11): a converged step writes nothing, its context needs no key",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            (named := stored_execution(10, PRODUCER, named=True),),
            (named_out := stored_artifact(20, "s3://b/a/out", out_key("a", "out"), named=True),),
            (output_event(named, named_out, "out"),),
            scanned={1: [named]},
            placement=KeyPlacement.NAME,
        ),
        [],
    ),
    Case(
        "keys in names: the upstream writer's records are adopted without a key, and found again",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            (),
            (UPSTREAM_OUT,),
            (output_event(UPSTREAM_EXEC, UPSTREAM_OUT, "out"),),
            scanned={1: [stored_execution(10, PRODUCER, keyed=False, state=ExecutionState.UNKNOWN)]},
            placement=KeyPlacement.NAME,
        ),
        [("execution.adopt", f"{exec_key('a')} (state)")],
    ),
    Case(
        "keys in names: an adopted upstream record with nothing left to fill in is converged",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            (),
            (UPSTREAM_OUT,),
            (output_event(UPSTREAM_EXEC, UPSTREAM_OUT, "out"),),
            scanned={1: [UPSTREAM_EXEC]},
            placement=KeyPlacement.NAME,
        ),
        [],
    ),
    Case(
        "keys in names: a re-created workflow of the same name gets executions of its own",
        (PRODUCER,),
        state(
            (UPSTREAM_CTX,),
            (),
            scanned={1: [stored_execution(10, step("a", uid="uid-0"), named=True)]},
            placement=KeyPlacement.NAME,
        ),
        [
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
        ],
    ),
    Case(
        "after an upgrade to external ids, records keyed by name get their external_id",
        (PRODUCER, CONSUMER),
        state(
            (UPSTREAM_CTX,),
            (),
            (named_out,),
            (
                output_event(named, named_out, "out"),
                input_event(named_b := stored_execution(11, CONSUMER, named=True), named_out, "in"),
            ),
            scanned={1: [named, named_b]},
        ),
        [
            ("context.adopt", "wf"),
            ("execution.adopt", f"{exec_key('a')} (external_id)"),
            ("artifact.adopt", f"{out_key('a', 'out')} (external_id)"),
            ("execution.adopt", f"{exec_key('b')} (external_id)"),
        ],
    ),
    Case(
        "an input already linked needs nothing",
        (CONSUMER,),
        state(
            (DONE_CTX,),
            (consumer := stored_execution(11, CONSUMER),),
            (UPSTREAM_OUT,),
            (input_event(consumer, UPSTREAM_OUT, "in"),),
        ),
        [],
    ),
    Case(
        "an input links to an output created in the same pass, producer written first",
        (CONSUMER, PRODUCER),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a")),
            ("artifact.create", out_key("a", "out")),
            ("event.output", f"{exec_key('a')} -> out"),
            ("execution.create", exec_key("b")),
            ("event.input", f"{exec_key('b')} <- in (s3://b/a/out)"),
        ],
    ),
    Case(
        "an input whose artifact exists nowhere waits",
        (CONSUMER,),
        state((DONE_CTX,)),
        [("execution.create", exec_key("b"))],
        pending_inputs=1,
    ),
    Case(
        "a step whose outputs are not reported yet writes none",
        (step("a", outputs=None, state=ExecutionState.RUNNING),),
        state((DONE_CTX,)),
        [("execution.create", exec_key("a"))],
    ),
    Case(
        "a stored output with its OUTPUT event missing gets only the event",
        (PRODUCER,),
        state((DONE_CTX,), (DONE_EXEC,), (DONE_OUT,)),
        [("event.output", f"{exec_key('a')} -> out")],
    ),
    Case(
        "a stored output at another URI is updated",
        (PRODUCER,),
        state(
            (DONE_CTX,),
            (DONE_EXEC,),
            (moved := stored_artifact(20, "s3://old", out_key("a", "out")),),
            (output_event(DONE_EXEC, moved, "out"),),
        ),
        [("artifact.update", f"{out_key('a', 'out')} (uri)")],
    ),
    Case(
        "the run context is created once per workflow, whatever its number of steps",
        (step("a", outputs=()), step("b", outputs=()), step("c", workflow="other", outputs=())),
        state(),
        [
            ("context.create", "wf"),
            ("execution.create", exec_key("a")),
            ("execution.create", exec_key("b")),
            ("context.create", "other"),
            ("execution.create", exec_key("c")),
        ],
    ),
    Case(
        "a run context keyed by someone else refuses every step of its workflow",
        (step("a", outputs=()), step("b", outputs=()), step("c", workflow="other", outputs=())),
        state((stored_context(1, external_id="kfp-v2/someone-else"),)),
        [("context.create", "other"), ("execution.create", exec_key("c"))],
        refused={exec_key("a"): Reason.MLMD_CONFLICT, exec_key("b"): Reason.MLMD_CONFLICT},
    ),
]


def _actions(plans: list[WorkflowPlan]) -> list[tuple[str, str]]:
    return [action for plan in plans for action in plan.actions()]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan(case: Case) -> None:
    plans, refused = plan_workflows(case.steps, case.actual)
    assert _actions(plans) == case.actions
    assert {s.execution.key: e.reason for s, e in refused} == case.refused
    assert sum(len(p.pending_inputs) for plan in plans for p in plan.steps) == case.pending_inputs
    # Every step is planned or refused, exactly once.
    planned = [p.step.execution.key for plan in plans for p in plan.steps]
    assert sorted(planned + list(case.refused)) == sorted(s.execution.key for s in case.steps)


# --- what a plan says beyond its actions -----------------------------------------------------


def test_an_input_made_in_the_same_pass_names_its_artifact_by_key() -> None:
    plan = plan_workflow([CONSUMER, PRODUCER], state())
    assert [p.step for p in plan.steps] == [PRODUCER, CONSUMER]
    (link,) = plan.steps[1].inputs
    assert (link.artifact_id, link.artifact_key) == (None, out_key("a", "out"))


def test_a_converged_step_names_the_ids_its_pod_is_labelled_with() -> None:
    actual = state(
        (DONE_CTX,),
        (DONE_EXEC, consumer := stored_execution(11, CONSUMER)),
        (DONE_OUT,),
        (output_event(DONE_EXEC, DONE_OUT, "out"), input_event(consumer, DONE_OUT, "in")),
    )
    plan = plan_workflow([PRODUCER, CONSUMER], actual)
    assert plan.context_id == 1 and plan.context_write is None and not plan.writes_mlmd
    producer, consumer_plan = plan.steps
    assert producer.execution_id == 10 and producer.stored_outputs == ((PRODUCER.outputs[0], 20),)
    assert [(i.name, i.artifact_id) for i in consumer_plan.linked_inputs] == [("in", 20)]


def test_an_input_links_to_the_newest_of_its_own_workflows_artifacts_of_its_uri() -> None:
    consumer = step("b", inputs=(("in", "s3://x"),), outputs=())
    stored = (
        stored_artifact(12, "s3://x", out_key("z", "x", namespace="team-b")),
        stored_artifact(9, "s3://x", out_key("a", "x")),
        stored_artifact(5, "s3://x", out_key("a", "x", uid="uid-0")),
        stored_artifact(4, "s3://x"),
    )
    plan = plan_step(consumer, state((DONE_CTX,), (), stored))
    assert [(link.name, link.artifact_id) for link in plan.inputs] == [("in", 9)]
    named = plan_step(
        consumer,
        state(
            (DONE_CTX,),
            (),
            (stored_artifact(9, "s3://x", out_key("a", "x"), named=True),),
            placement=KeyPlacement.NAME,
        ),
    )
    assert [(link.name, link.artifact_id) for link in named.inputs] == [("in", 9)]


def test_steps_to_write_are_all_steps_while_the_context_needs_a_write() -> None:
    steps = [step("a", outputs=()), step("b", outputs=())]
    a_done = stored_execution(10, steps[0])
    adopting = plan_workflow(steps, state((UPSTREAM_CTX,), (a_done,)))
    assert adopting.context_write is not None
    assert [p.step.ref.node_id for p in adopting.steps_to_write()] == ["a", "b"]
    keyed = plan_workflow(steps, state((DONE_CTX,), (a_done,)))
    assert keyed.context_write is None
    assert [p.step.ref.node_id for p in keyed.steps_to_write()] == ["b"]


def test_only_keeps_the_named_steps_in_order_and_the_context_once() -> None:
    plan = plan_workflow([PRODUCER, CONSUMER, step("c", outputs=())], state())
    cut = plan.only({exec_key("c"), exec_key("a")})
    assert [p.step.ref.node_id for p in cut.steps] == ["a", "c"]
    assert [kind for kind, _ in cut.actions()].count("context.create") == 1
    assert plan.only(set()).steps == ()


def test_plan_step_leaves_the_context_to_its_workflow() -> None:
    plan = plan_step(PRODUCER, state())
    assert [kind for kind, _ in plan.actions()] == ["execution.create", "artifact.create", "event.output"]


def test_applying_a_plan_and_planning_again_gives_an_empty_plan() -> None:
    # The state the first plan's writes leave, read back: nothing is left to write.
    first, _ = plan_workflows([PRODUCER, CONSUMER], state())
    assert _actions(first)
    written = state(
        (DONE_CTX,),
        (DONE_EXEC, consumer := stored_execution(11, CONSUMER)),
        (DONE_OUT,),
        (output_event(DONE_EXEC, DONE_OUT, "out"), input_event(consumer, DONE_OUT, "in")),
    )
    again, refused = plan_workflows([PRODUCER, CONSUMER], written)
    assert _actions(again) == [] and refused == []


def test_an_execution_no_run_context_holds_is_put_again_with_its_outputs() -> None:
    """A batch stopped between its records and their links (store/apply.py): the unlinked
    execution and its stored output are written again (their links), its linked neighbour not."""
    consumer = stored_execution(11, CONSUMER)
    actual = state(
        (DONE_CTX,),
        (DONE_EXEC, consumer),
        (DONE_OUT,),
        (output_event(DONE_EXEC, DONE_OUT, "out"), input_event(consumer, DONE_OUT, "in")),
    )
    actual.unlinked_executions = {10}
    plan = plan_workflow([PRODUCER, CONSUMER], actual)
    assert list(plan.actions()) == [
        ("execution.update", f"{exec_key('a')} (association)"),
        ("artifact.update", f"{out_key('a', 'out')} (attribution)"),
    ]
    assert [p.step for p in plan.steps_to_write()] == [PRODUCER]
