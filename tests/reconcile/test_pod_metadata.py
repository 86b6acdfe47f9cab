"""The pod-metadata rules, table-driven: a plan and the ids its records have in, labels out.

Labels are outputs computed from the records found or written by key (docs/identity-keys.md):
these tests build the plan by hand (no MLMD, no pod) and check what our labels and
annotations should say, and which patch brings a pod there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from reconcile import conventions as c
from reconcile.argo import PodView
from reconcile.plan import plan_workflow, plan_workflows
from reconcile.pod_metadata import AppliedIds, current_pod_metadata, desired_pod_metadata, pod_patch
from reconcile.records import ExecutionState, PodMetadata
from tests.reconcile.test_plan import (
    CONSUMER,
    DONE_CTX,
    DONE_EXEC,
    DONE_OUT,
    PRODUCER,
    input_event,
    out_key,
    output_event,
    state,
    step,
    stored_artifact,
    stored_execution,
)

EXEC = c.EXECUTION_ID_LABEL
CTX = c.CONTEXT_ID_LABEL
WRITTEN = c.METADATA_WRITTEN_LABEL
INPUTS = c.INPUT_ARTIFACT_IDS_ANNOTATION
OUTPUTS = c.OUTPUT_ARTIFACT_IDS_ANNOTATION


@dataclass(frozen=True)
class Case:
    name: str
    plan_index: int  # which step of the workflow plan (producers first)
    applied: AppliedIds
    labels: dict[str, str]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]] | None  # None: no output annotation


NEW = plan_workflows([PRODUCER, CONSUMER], state())[0][0]  # the consumer links to the new output
CONVERGED = plan_workflow(
    [PRODUCER, CONSUMER],
    state(
        (DONE_CTX,),
        (DONE_EXEC, consumer := stored_execution(11, CONSUMER)),
        (DONE_OUT,),
        (output_event(DONE_EXEC, DONE_OUT, "out"), input_event(consumer, DONE_OUT, "in")),
    ),
)
RUNNING = plan_workflow([step("r", outputs=None, state=ExecutionState.RUNNING)], state((DONE_CTX,)))
OUT = {"name": "out", "uri": "s3://b/a/out", "type": "Artifact"}
IN = {"name": "in", "uri": "s3://b/a/out"}

CASES = [
    (
        NEW,
        Case(
            "written this pass: the ids MLMD gave the new records",
            0,
            AppliedIds(1, 10, {out_key("a", "out"): 20}),
            {EXEC: "10", CTX: "1", WRITTEN: "true"},
            [],
            [{"id": 20, **OUT}],
        ),
    ),
    (
        NEW,
        Case(
            "an input linked to an output written in the same pass names its new id",
            1,
            AppliedIds(1, 11, {out_key("a", "out"): 20}),
            {EXEC: "11", CTX: "1", WRITTEN: "true"},
            [{"id": 20, **IN}],
            [],
        ),
    ),
    (
        NEW,
        Case(
            "a dry run names records not yet written <new>",
            1,
            AppliedIds(None, None, {}),
            {EXEC: "<new>", CTX: "<new>", WRITTEN: "true"},
            [{"id": "<new>", **IN}],
            [],
        ),
    ),
    (
        CONVERGED,
        Case(
            "converged: the stored ids, inputs already linked",
            1,
            AppliedIds(1, 11, {}),
            {EXEC: "11", CTX: "1", WRITTEN: "true"},
            [{"id": 20, **IN}],
            [],
        ),
    ),
    (
        CONVERGED,
        Case(
            "converged: stored outputs named by their ids",
            0,
            AppliedIds(1, 10, {}),
            {EXEC: "10", CTX: "1", WRITTEN: "true"},
            [],
            [{"id": 20, **OUT}],
        ),
    ),
    (
        RUNNING,
        Case(
            "outputs not known yet: not marked written, no output annotation",
            0,
            AppliedIds(1, 12, {}),
            {EXEC: "12", CTX: "1"},
            [],
            None,
        ),
    ),
]


@pytest.mark.parametrize(("plan", "case"), CASES, ids=[c.name for _, c in CASES])
def test_desired_pod_metadata(plan: Any, case: Case) -> None:
    wanted = desired_pod_metadata(plan.steps[case.plan_index], case.applied)
    assert wanted.labels == case.labels
    assert json.loads(wanted.annotations[INPUTS]) == case.inputs
    if case.outputs is None:
        assert OUTPUTS not in wanted.annotations
    else:
        assert json.loads(wanted.annotations[OUTPUTS]) == case.outputs


def test_an_input_waiting_for_its_artifact_is_not_listed() -> None:
    plan = plan_workflow([CONSUMER], state((DONE_CTX,)))
    assert plan.steps[0].pending_inputs
    wanted = desired_pod_metadata(plan.steps[0], AppliedIds(1, 11, {}))
    assert json.loads(wanted.annotations[INPUTS]) == []


def test_an_output_updated_in_place_keeps_its_stored_id_in_a_dry_run() -> None:
    moved = stored_artifact(20, "s3://old", out_key("a", "out"))
    plan = plan_workflow(
        [PRODUCER], state((DONE_CTX,), (DONE_EXEC,), (moved,), (output_event(DONE_EXEC, moved, "out"),))
    )
    wanted = desired_pod_metadata(plan.steps[0], AppliedIds(1, 10, {}))
    assert json.loads(wanted.annotations[OUTPUTS]) == [{"id": 20, **OUT}]


# --- the patch that brings a pod there ---------------------------------------------------------

WANT = PodMetadata(labels={EXEC: "10", CTX: "1", WRITTEN: "true"}, annotations={INPUTS: "[]", OUTPUTS: "[]"})


@pytest.mark.parametrize(
    ("name", "labels", "annotations", "patch"),
    [
        (
            "a pod without our labels gets them all",
            {},
            {},
            {"labels": WANT.labels, "annotations": WANT.annotations},
        ),
        ("a pod that carries them gets no patch", WANT.labels, WANT.annotations, None),
        (
            "a stale id is replaced, nothing else",
            {**WANT.labels, EXEC: "7"},
            WANT.annotations,
            {"labels": {EXEC: "10"}},
        ),
        ("annotations alone", WANT.labels, {INPUTS: "[]"}, {"annotations": {OUTPUTS: "[]"}}),
        ("labels that are not ours are left alone", {**WANT.labels, "team": "x"}, WANT.annotations, None),
    ],
)
def test_pod_patch(
    name: str, labels: dict[str, str], annotations: dict[str, str], patch: dict[str, Any] | None
) -> None:
    pod = PodView.from_json(_pod(labels, annotations))
    assert pod_patch(current_pod_metadata(pod), WANT) == (None if patch is None else {"metadata": patch})


def test_current_pod_metadata_reads_only_our_keys() -> None:
    pod = PodView.from_json(_pod({EXEC: "3", "team": "x"}, {INPUTS: "[]", "note": "y"}))
    assert current_pod_metadata(pod) == PodMetadata(labels={EXEC: "3"}, annotations={INPUTS: "[]"})


def _pod(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-a",
            "namespace": "kubeflow",
            "labels": {c.ARGO_WORKFLOW_LABEL: "wf", **labels},
            "annotations": annotations,
        },
        "spec": {"containers": [{"name": "main"}]},
        "status": {"phase": "Succeeded"},
    }
