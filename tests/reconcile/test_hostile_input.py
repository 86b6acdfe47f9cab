"""Any input, however hostile, gives either a step MLMD can hold or one PodError: never anything else."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from reconcile.argo import PodView
from reconcile.classify import classify
from reconcile.desired import desired_step
from reconcile.errors import PodError, Reason
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep
from reconcile.values import INT_MAX, INT_MIN, check_step, double_is_exact, text_problem
from sandbox.simulator import simulate
from sandbox.simulator.runner import chain_workflow
from tests.fuzz.mutations import Mutation, json_values, mutations
from tests.podfactory import Step, pod

OPTS = ReconcileOptions()
PRODUCER = Step("wf-h", "produce", parameters={"n": "1"})
CONSUMER = Step("wf-h", "consume", inputs={"data": "produce:out"}, parameters={"n": "2"})
BY_TEMPLATE = {"produce": PRODUCER, "consume": CONSUMER}
RELAXED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def step_or_error(raw: Any) -> DesiredStep | PodError | None:
    """The pass's pure path for one pod; None when the pod is not ours to record."""
    try:
        view = PodView.from_json(raw)
        disposition = classify(view, OPTS)
        if disposition.skipped:
            return None
        return desired_step(view, disposition, OPTS)
    except PodError as exc:
        return exc


def assert_storable(step: DesiredStep) -> None:
    """Everything in `step` passes the gate again, and every number is one MLMD stores exactly."""
    assert check_step(step) is step
    values = [
        *step.execution.custom_properties.values(),
        *step.execution.properties.values(),
        *(v for out in step.outputs or () for v in out.custom_properties.values()),
    ]
    for value in values:
        assert value is not None
        if isinstance(value, int):
            assert INT_MIN <= value <= INT_MAX
        elif isinstance(value, float):
            assert math.isfinite(value) and double_is_exact(value)
        else:
            assert text_problem(value) is None


@RELAXED
@given(json_values)
def test_any_json_value_as_a_pod_is_a_pod_error_or_a_view(raw: Any) -> None:
    try:
        PodView.from_json(raw)
    except PodError as exc:
        assert "\n" not in exc.message
        assert text_problem(exc.message) is None


@RELAXED
@given(mutations(), st.sampled_from(["3.1", "3.3", "3.5"]), st.booleans())
def test_a_mutated_pod_gives_a_storable_step_or_one_pod_error(
    mutation: Mutation, profile: str, consumer: bool
) -> None:
    base = pod(CONSUMER if consumer else PRODUCER, BY_TEMPLATE, profile=profile, outputs_annotation=True)
    result = step_or_error(mutation.applied_to(base))
    event(f"{mutation.where}: {type(result).__name__}")
    if isinstance(result, PodError):
        assert isinstance(result.reason, Reason)
        assert "\n" not in result.message and text_problem(result.message) is None
    elif result is not None:
        assert_storable(result)


@pytest.fixture(scope="module")
def finished_workflow() -> dict[str, Any]:
    return simulate(chain_workflow(3, name="hostile"), "3.5").workflow


def _mutate_workflow(workflow: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    mutated = json.loads(json.dumps(workflow))
    target: Any = mutated
    for part in path[:-1]:
        if isinstance(target, dict):
            target = target.setdefault(part, {})
        elif isinstance(target, list) and target:
            target = target[part % len(target)] if isinstance(part, int) else target[0]
        else:
            return mutated
    if isinstance(target, dict):
        target[path[-1]] = value
    return mutated


WORKFLOW_PATHS = st.sampled_from(
    [
        ["metadata", "name"],
        ["metadata", "namespace"],
        ["metadata", "uid"],
        ["metadata", "annotations"],
        ["metadata", "labels"],
        ["spec"],
        ["spec", "templates"],
        ["spec", "templates", 1, "name"],
        ["spec", "templates", 1, "metadata"],
        ["spec", "templates", 1, "metadata", "annotations", "pipelines.kubeflow.org/component_spec"],
        ["spec", "templates", 1, "metadata", "annotations", "pipelines.kubeflow.org/arguments.parameters"],
        ["spec", "templates", 1, "archiveLocation"],
        ["spec", "arguments", "parameters"],
        ["spec", "podMetadata"],
        ["status"],
        ["status", "nodes"],
        ["status", "compressedNodes"],
        ["status", "artifactRepositoryRef"],
    ]
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(WORKFLOW_PATHS, json_values)
def test_a_mutated_workflow_gives_storable_steps_and_errors_never_an_exception(
    finished_workflow: dict[str, Any], path: list[Any], value: Any
) -> None:
    steps, errors = desired_steps_from_workflow(_mutate_workflow(finished_workflow, path, value), OPTS)
    for step in steps:
        assert_storable(step)
    for _, error in errors:
        assert isinstance(error, PodError) and "\n" not in error.message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["name", "id", "phase", "outputs", "inputs", "templateName", "type"]), json_values)
def test_a_mutated_node_fails_only_that_node(finished_workflow: dict[str, Any], key: str, value: Any) -> None:
    clean, _ = desired_steps_from_workflow(finished_workflow, OPTS)
    assert len(clean) == 3
    mutated = json.loads(json.dumps(finished_workflow))
    victim = clean[-1].ref.node_id
    mutated["status"]["nodes"][victim][key] = value
    steps, errors = desired_steps_from_workflow(mutated, OPTS)
    # The other two steps are untouched; the victim gives a step, nothing, or an error for itself.
    assert {s.ref.node_id for s in steps} - {victim} == {s.ref.node_id for s in clean[:-1]}
    assert {node for node, _ in errors} <= {victim}
    for step in steps:
        assert_storable(step)
