"""Pods cut down as list pages arrive (controller.slimming) reconcile exactly like whole pods."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from controller.reconcile_pass import desired_steps
from controller.report import PassReport
from controller.slimming import slim_pod
from reconcile import conventions as c
from reconcile.argo import workflow_nodes
from reconcile.options import ReconcileOptions
from sandbox import pipelines
from sandbox.simulator import simulate

OPTS = ReconcileOptions()
PIPELINES = [
    "raw_container_ops",
    "fan_out_fan_in",
    "data_passing",
    "output_directory",
    "raw_artifact_values",
    "pod_settings",
    "tfx_and_v2_steps",
]


def _run(pipeline: str, profile: str) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
    run = simulate(pipelines.load(pipeline), profile, seed=5)
    nodes = {(run.namespace, k): v for k, v in workflow_nodes(run.workflow).items()}
    return run.pods, nodes


def _outcome(pods: list[dict[str, Any]], nodes: dict[Any, Any]) -> tuple[Any, ...]:
    report = PassReport()
    steps = desired_steps(pods, OPTS, report, nodes=nodes)
    return (
        [s.desired for s in steps],
        [s.disposition for s in steps],
        report.errors,
        report.warnings,
        dict(report.pods_skipped),
    )


def _template_envs(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [
        var
        for ct in spec.get("initContainers", []) + spec.get("containers", [])
        for var in ct.get("env", [])
        if var.get("name") == c.ARGO_TEMPLATE_ENV
    ]


@pytest.mark.parametrize("profile", ["3.1", "3.3", "3.5", "3.6"])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_slimmed_pods_give_the_same_steps(pipeline: str, profile: str) -> None:
    pods, nodes = _run(pipeline, profile)
    slimmed = [slim_pod(copy.deepcopy(p)) for p in pods]
    assert _outcome(slimmed, nodes) == _outcome(pods, nodes)
    assert len(json.dumps(slimmed)) < len(json.dumps(pods))


def test_slimming_drops_what_the_pass_never_reads() -> None:
    pods, _ = _run("raw_container_ops", "3.5")
    slimmed = [slim_pod(p) for p in pods]
    for pod in slimmed:
        assert set(pod["metadata"]) <= {
            "name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences"
        }
        assert pod["status"].keys() <= {"phase"}
        # Argo 3.5 repeats the template on every container: one string is kept.
        assert len({id(v["value"]) for v in _template_envs(pod)}) == 1


def _set_template(pod: dict[str, Any], template: dict[str, Any]) -> None:
    for var in _template_envs(pod):
        var["value"] = json.dumps(template)


def _corrupt(pods: list[dict[str, Any]], change: Any) -> list[dict[str, Any]]:
    pods = copy.deepcopy(pods)
    for pod in pods:
        if pod["status"]["phase"] == "Succeeded":
            change(pod)
            return pods
    raise AssertionError("no finished pod")


@pytest.mark.parametrize(
    "change",
    [
        lambda p: [v.update(value="{") for v in _template_envs(p)],
        lambda p: [v.update(value="[1, 2]") for v in _template_envs(p)],
        lambda p: [v.update(value="offloaded") for v in _template_envs(p)],
        lambda p: _set_template(p, {"name": 5}),
        lambda p: _set_template(p, {"name": "t", "inputs": [1]}),
        lambda p: _set_template(p, {"name": "t", "inputs": {"artifacts": "no"}}),
        lambda p: _set_template(p, {"name": "t", "pad": "x" * 300_000}),
        lambda p: p["spec"].update(containers="not a list"),
        lambda p: p["metadata"].update(annotations={"a": 1}),
        lambda p: p.update(status="Running"),
    ],
    ids=[
        "template-not-json",
        "template-not-object",
        "template-offloaded",
        "template-name-not-string",
        "inputs-not-object",
        "input-artifacts-not-list",
        "template-too-large",
        "containers-not-list",
        "annotations-not-strings",
        "status-not-object",
    ],
)
def test_bad_pods_are_reported_the_same_after_slimming(change: Any) -> None:
    pods, nodes = _run("raw_container_ops", "3.5")
    bad = _corrupt(pods, change)
    whole, slimmed = _outcome(bad, nodes), _outcome([slim_pod(copy.deepcopy(p)) for p in bad], nodes)
    assert slimmed == whole
    assert whole != _outcome(pods, nodes)  # the change mattered


def _pod(namespace: str, workflow: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "labels": {c.ARGO_WORKFLOW_LABEL: workflow}}}


def test_chunks_hold_whole_workflows() -> None:
    from controller.sources import WorkflowChunker

    chunks: list[list[str]] = []
    chunker = WorkflowChunker(3)
    pages = [
        [_pod("a", "w1", "w1-1"), _pod("a", "w1", "w1-2")],
        [_pod("a", "w2", "w2-1"), _pod("a", "w2", "w2-2")],  # w2 may go on: held back
        [_pod("a", "w2", "w2-3"), _pod("a", "w3", "w3-1")],
        [_pod("a", "w3", "w3-2"), _pod("a", "w3", "w3-3"), _pod("a", "w3", "w3-4")],  # bigger than a chunk
        [_pod("a", "w3", "w3-5"), _pod("b", "w3", "w3-1")],  # same name, other namespace: another workflow
    ]
    for page in pages:
        chunks += [[p["metadata"]["name"] for p in pods] for pods in chunker.add(page)]
    chunks += [[p["metadata"]["name"] for p in pods] for pods in chunker.flush()]
    assert chunks == [
        ["w1-1", "w1-2"],
        ["w2-1", "w2-2", "w2-3"],
        ["w3-1", "w3-2", "w3-3", "w3-4", "w3-5"],
        ["w3-1"],
    ]
