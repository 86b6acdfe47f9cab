"""Desired steps from the Workflow alone equal those computed from the steps' pods."""

from __future__ import annotations

import base64
import copy
import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from reconcile.argo import PodView, workflow_nodes
from reconcile.classify import classify
from reconcile.desired import desired_step
from reconcile.errors import PodError, Reason
from reconcile.from_workflow import desired_steps_from_workflow, substitute
from reconcile.options import ReconcileOptions
from reconcile.plan import plan_workflows
from reconcile.records import DesiredStep, ExecutionState
from reconcile.uris import ArtifactRepository
from sandbox import pipelines
from sandbox.objectstore import ObjectStore
from sandbox.simulator import Simulator, simulate
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import snapshot

PROFILES = ("3.1", "3.3", "3.5", "3.6")
OPTIONS = ReconcileOptions()


def node_steps(workflow: dict[str, Any], **kwargs: Any) -> dict[str, DesiredStep]:
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS, **kwargs)
    assert errors == []
    by_node = {s.ref.node_id: s for s in steps}
    assert len(by_node) == len(steps)
    return by_node


def differences(want: DesiredStep, got: DesiredStep | None) -> list[str]:
    if got is None:
        return ["no step from the Workflow"]
    return [
        f"{f.name}: pod {getattr(want, f.name)!r} != node {getattr(got, f.name)!r}"
        for f in dataclasses.fields(DesiredStep)
        if getattr(want, f.name) != getattr(got, f.name)
    ]


def compare_run(pods: list[dict[str, Any]], workflow: dict[str, Any], where: str) -> tuple[int, list[str]]:
    """Pod path vs node path for every pod of a finished run; returns (compared, problems)."""
    nodes = workflow_nodes(workflow)
    by_node = node_steps(workflow)
    problems: list[str] = []
    compared = 0
    seen = set()
    for raw in pods:
        pod = PodView.from_json(raw)
        node_id = pod.node_id()
        seen.add(node_id)
        disposition = classify(pod, OPTIONS)
        if disposition.skipped:
            if node_id in by_node:
                problems.append(f"{where} {node_id}: pod skipped ({disposition}) but the node gives a step")
            continue
        try:
            want = desired_step(pod, disposition, OPTIONS, node=nodes[node_id])
        except PodError as exc:
            # Only an offloaded ARGO_TEMPLATE (>= 3.6) is unreadable from a pod yet fine from the node.
            if exc.reason is not Reason.TEMPLATE_OFFLOADED:
                problems.append(f"{where} {node_id}: pod path failed: {exc}")
            continue
        compared += 1
        problems += [f"{where} {node_id}: {d}" for d in differences(want, by_node.get(node_id))]
    extra = set(by_node) - seen
    if extra:
        problems.append(f"{where}: steps for nodes that had no pod: {sorted(extra)}")
    return compared, problems


# --- the same records from a pod and from its node -----------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["nodes", "compressedNodes"])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_pipeline_gives_the_same_steps_from_pods_and_from_nodes(profile: str, compress: bool) -> None:
    total = recordable = 0
    problems: list[str] = []
    for name in pipelines.names():
        run = simulate(pipelines.load(name), profile, seed=7, compress_nodes=compress)
        assert ("compressedNodes" in run.workflow["status"]) is compress
        assert all(p["status"]["phase"] in ("Succeeded", "Failed") for p in run.pods)
        compared, found = compare_run(run.pods, run.workflow, f"{name}@{profile}")
        total += compared
        recordable += sum(not classify(PodView.from_json(p), OPTIONS).skipped for p in run.pods)
        problems += found
    assert problems == []
    assert total == recordable > 100  # every step that is ours was compared


def test_retried_steps_and_failed_attempts_agree() -> None:
    workflow = pipelines.load("two_step")
    for template in workflow["spec"]["templates"]:
        if template["name"] == "prepare-data":
            template["retryStrategy"] = {"limit": "3"}
    for profile in PROFILES:
        run = simulate(workflow, profile, seed=2, fail={"prepare-data": 2})
        compared, problems = compare_run(run.pods, run.workflow, profile)
        assert problems == [] and compared == 4
        states = sorted(s.execution.state for s in node_steps(run.workflow).values())
        assert states == [ExecutionState.COMPLETE] * 2 + [ExecutionState.FAILED] * 2


def test_the_same_steps_while_the_run_is_under_way() -> None:
    """Snapshots mid-run: a node gives a step only once its pod ran; when both are done they agree."""
    workflow = pipelines.load("fan_out_fan_in")
    for profile in ("3.3", "3.5"):
        run = simulate(workflow, profile, seed=1, snapshots=True)
        assert len(run.snapshots) > 5
        for snap in run.snapshots:
            nodes = workflow_nodes(snap.workflow)
            by_node = node_steps(snap.workflow)
            for node_id, step in by_node.items():
                assert nodes[node_id]["phase"] != "Pending"
                assert step.ref.pod_name in {p["metadata"]["name"] for p in snap.pods}
            for raw in snap.pods:
                pod = PodView.from_json(raw)
                node = nodes[pod.node_id()]
                if not pod.finished or node["phase"] not in ("Succeeded", "Failed"):
                    continue  # the node's phase lags its pod's until the controller assesses it
                want = desired_step(pod, classify(pod, OPTIONS), OPTIONS, node=node)
                assert differences(want, by_node.get(pod.node_id())) == []


def test_excluded_nodes_give_no_steps() -> None:
    run = simulate(pipelines.load("chain10"), "3.5", seed=1)
    everything = node_steps(run.workflow)
    assert len(everything) == 10
    kept = sorted(everything)[::2]
    rest = node_steps(run.workflow, exclude_node_ids=set(kept))
    assert set(rest) == set(everything) - set(kept)
    assert all(rest[k] == everything[k] for k in rest)
    assert node_steps(run.workflow, exclude_node_ids=frozenset(everything)) == {}


# --- nodes that never had a pod, and cache hits --------------------------------------


def test_nodes_without_a_pod_give_no_step() -> None:
    run = simulate(pipelines.load("conditions"), "3.5", seed=1)
    nodes = workflow_nodes(run.workflow)
    assert any(n["type"] == "Skipped" for n in nodes.values())
    assert set(node_steps(run.workflow)) == {PodView.from_json(p).node_id() for p in run.pods}

    workflow = copy.deepcopy(run.workflow)
    nodes = workflow["status"]["nodes"]
    pod_nodes = [n for n in nodes.values() if n["type"] == "Pod"]
    # Pending: Argo made the node, the pod may not exist (yet, or ever).
    pending = pod_nodes[0]
    pending.update(phase="Pending")
    for key in ("outputs", "hostNodeName", "resourcesDuration", "finishedAt"):
        pending.pop(key, None)
    # Failed before any pod ran (e.g. an input that was not supplied).
    never = pod_nodes[1]
    never.update(phase="Error", message="inputs.parameters.x was not supplied")
    for key in ("outputs", "hostNodeName", "resourcesDuration"):
        never.pop(key, None)
    # The pod was deleted while running: it ran, so it is recorded, as FAILED.
    deleted = pod_nodes[2]
    deleted.update(phase="Error", message="pod deleted")
    for key in ("outputs", "hostNodeName", "resourcesDuration"):
        deleted.pop(key, None)
    steps = node_steps(workflow)
    assert pending["id"] not in steps and never["id"] not in steps
    assert steps[deleted["id"]].execution.state is ExecutionState.FAILED
    assert steps[deleted["id"]].outputs == ()


def test_a_template_the_controller_could_not_find_never_ran() -> None:
    workflow = pipelines.load("two_step")
    dag = next(t for t in workflow["spec"]["templates"] if "dag" in t)
    dag["dag"]["tasks"][0]["template"] = "no-such-template"
    run = simulate(workflow, "3.5", seed=1)
    [node] = [n for n in workflow_nodes(run.workflow).values() if n.get("templateName") == "no-such-template"]
    assert node["phase"] == "Error" and run.pods == []
    assert node_steps(run.workflow) == {}


@pytest.mark.parametrize("profile", PROFILES)
def test_kfp_cache_hits_are_not_recorded_from_the_workflow(profile: str) -> None:
    workflow = pipelines.load("two_step")
    cluster = ObjectStore()
    sim = Simulator(cluster, profile, seed=1, cache=True)
    names = []
    for _ in range(2):
        names.append(sim.submit(workflow, "kubeflow"))
        sim.run_until_complete()
    hits = 0
    for name in names:
        wf = cluster.get("workflows", "kubeflow", name)
        pods = cluster.list("pods", "kubeflow", f"workflows.argoproj.io/workflow={name}")
        recorded = {
            PodView.from_json(p).node_id()
            for p in pods
            if not classify(PodView.from_json(p), OPTIONS).skipped
        }
        hits += len(pods) - len(recorded)
        assert set(node_steps(wf)) == recorded
        compared, problems = compare_run(pods, wf, name)
        assert problems == [] and compared == len(recorded)
    # The webhook finds no template on Argo >= 3.6 (containers[0] has none): no hits there.
    assert (hits > 0) is (profile != "3.6")


# --- pods garbage-collected: a node-only pass converges like a pod pass ---------------


def node_only_pass(store: Any, workflow: dict[str, Any]) -> tuple[int, int]:
    """One pass over the Workflow's steps with the store functions; returns (writing plans, pending)."""
    steps = list(node_steps(workflow).values())
    metadata = MetadataStore.over(store)
    plans, refused = plan_workflows(steps, metadata.read_actual(steps))
    assert refused == []
    result = metadata.apply(plans)
    assert result.failed == {}
    step_plans = [p for plan in plans for p in plan.steps]
    pending = sum(len(p.pending_inputs) + (p.step.outputs is None) for p in step_plans)
    return sum(p.writes_mlmd for p in step_plans), pending


@pytest.mark.parametrize("profile", PROFILES)
def test_pod_gc_node_only_pass_records_what_the_pods_would(
    tmp_path: Path, profile: str
) -> None:
    for pipeline in ("chain10", "exit_handler", "odd_names"):
        run = simulate(pipelines.load(pipeline), profile, seed=4, pod_gc="OnPodCompletion", snapshots=True)
        assert run.pods == []  # every pod is gone
        last_seen = [versions[-1] for versions in run.pod_versions().values()]
        assert last_seen and all(p["status"]["phase"] in ("Succeeded", "Failed") for p in last_seen)

        from_nodes = open_store(f"sqlite:///{tmp_path}/{profile}-{pipeline}-nodes.sqlite")
        writes, pending = node_only_pass(from_nodes, run.workflow)
        assert writes == len(last_seen) and pending == 0
        assert node_only_pass(from_nodes, run.workflow) == (0, 0)  # converged: nothing to write

        from_pods = open_store(f"sqlite:///{tmp_path}/{profile}-{pipeline}-pods.sqlite")
        nodes = {(run.namespace, k): v for k, v in run.nodes.items()}
        report = run_pass([Chunk(last_seen, nodes=nodes)], MetadataStore.over(from_pods), OPTIONS)
        assert report.errors == [] and report.pending_inputs == 0 and report.pending_outputs == 0

        assert snapshot(from_nodes) == snapshot(from_pods)
        # ... and the node-only pass over the pod pass's store has nothing left to do.
        assert node_only_pass(from_pods, run.workflow) == (0, 0)


# --- what is read from the Workflow and not from a pod -------------------------------


def test_archive_location_of_the_template_then_the_workflow_then_the_setting() -> None:
    run = simulate(pipelines.load("two_step"), "3.5", seed=1)
    consumer = next(s for s in node_steps(run.workflow).values() if s.inputs)
    assert consumer.inputs[0].uri.startswith("minio://mlpipeline/artifacts/")

    workflow = copy.deepcopy(run.workflow)
    repository = workflow["status"]["artifactRepositoryRef"]["artifactRepository"]
    repository["s3"].update(bucket="from-status", endpoint="s3.amazonaws.com")
    step = node_steps(workflow)[consumer.ref.node_id]
    assert step.inputs[0].uri.startswith("s3://from-status/artifacts/")
    assert {a.uri.split("/")[2] for a in step.outputs or ()} == {"from-status"}

    name = workflow_nodes(workflow)[consumer.ref.node_id]["templateName"]
    template = next(t for t in workflow["spec"]["templates"] if t["name"] == name)
    template["archiveLocation"] = {"s3": {"bucket": "own-{{workflow.namespace}}", "endpoint": "minio:9000"}}
    step = node_steps(workflow)[consumer.ref.node_id]
    assert step.inputs[0].uri.startswith("minio://own-kubeflow/artifacts/")

    del template["archiveLocation"]
    del workflow["status"]["artifactRepositoryRef"]
    options = ReconcileOptions(
        repository=ArtifactRepository(s3_endpoint="minio:9000", s3_bucket="configured")
    )
    steps, errors = desired_steps_from_workflow(workflow, options)
    assert errors == []
    step = next(s for s in steps if s.ref.node_id == consumer.ref.node_id)
    assert step.inputs[0].uri.startswith("minio://configured/artifacts/")


def test_pod_name_scheme_follows_the_workflow_annotation() -> None:
    run = simulate(pipelines.load("two_step"), "3.5", seed=1)
    v2 = node_steps(run.workflow)
    assert all(s.ref.pod_name != s.ref.node_id for s in v2.values())
    workflow = copy.deepcopy(run.workflow)
    del workflow["metadata"]["annotations"]["workflows.argoproj.io/pod-name-format"]
    v1 = node_steps(workflow)
    assert all(s.ref.pod_name == s.ref.node_id for s in v1.values())
    assert all(s.execution.custom_properties["kfp_pod_name"] == s.ref.node_id for s in v1.values())


def test_placeholders_are_substituted_as_argo_does() -> None:
    env = {"pod.name": "p-1", "inputs.parameters.x": '{"a": 1}'}
    assert substitute("{{pod.name}}/{{ pod.name }}", env) == "p-1/p-1"
    assert substitute('{"x": "{{inputs.parameters.x}}"}', env) == '{"x": "{"a": 1}"}'  # verbatim
    assert substitute("{{kfp-default-bucket}} {{=sprig.trim(x)}} {{pod.name", env) == (
        "{{kfp-default-bucket}} {{=sprig.trim(x)}} {{pod.name"
    )
    assert substitute('{"a": {"b": {}}}', env) == '{"a": {"b": {}}}'


# --- malformed Workflows are reported, never raised ----------------------------------


@pytest.fixture(scope="module")
def finished() -> dict[str, Any]:
    return simulate(pipelines.load("two_step"), "3.5", seed=1).workflow


def pod_node_ids(workflow: dict[str, Any]) -> list[str]:
    return sorted(k for k, n in workflow_nodes(workflow).items() if n["type"] == "Pod")


def test_bad_compressed_nodes_is_one_error(finished: dict[str, Any]) -> None:
    workflow = copy.deepcopy(finished)
    del workflow["status"]["nodes"]
    workflow["status"]["compressedNodes"] = "not base64 gzip!"
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS)
    assert steps == []
    [(where, error)] = errors
    assert where == workflow["metadata"]["name"] and error.reason is Reason.MALFORMED_POD
    assert "compressedNodes" in error.message

    nodes = json.dumps(finished["status"]["nodes"]).encode()
    workflow["status"]["compressedNodes"] = base64.b64encode(gzip.compress(nodes)).decode()
    assert node_steps(workflow) == node_steps(finished)


@pytest.mark.parametrize(
    ("mutate", "reason", "fragment"),
    [
        (lambda w, n: n.pop("templateName"), Reason.MALFORMED_POD, "neither templateName"),
        (lambda w, n: n.update(templateName="no-such"), Reason.TEMPLATE_MISSING, "'no-such'"),
        (
            lambda w, n: n.update(templateRef={"name": "lib", "template": "t"}),
            Reason.TEMPLATE_MISSING,
            "namespaced/lib/t",
        ),
        (lambda w, n: n.pop("type"), Reason.MALFORMED_POD, "has no type"),
        (lambda w, n: n.pop("phase"), Reason.MALFORMED_POD, "has no phase"),
        (lambda w, n: n.pop("name"), Reason.MALFORMED_POD, "has no name"),
        (lambda w, n: n.update(inputs=[1]), Reason.MALFORMED_POD, "inputs"),
        (
            lambda w, n: n["outputs"]["artifacts"].append({"name": "x", "s4": {"key": "k"}}),
            Reason.UNKNOWN_ARTIFACT_KIND,
            "s4",
        ),
        (
            lambda w, n: n["outputs"].update(artifacts={"a": 1}),
            Reason.MALFORMED_ANNOTATION,
            "artifacts must be named objects",
        ),
        (
            lambda w, n: next(t for t in w["spec"]["templates"] if t["name"] == n["templateName"])[
                "metadata"
            ]["annotations"].update({"pipelines.kubeflow.org/component_spec": 3}),
            Reason.MALFORMED_TEMPLATE,
            "metadata.annotations",
        ),
        (
            lambda w, n: next(t for t in w["spec"]["templates"] if t["name"] == n["templateName"])[
                "metadata"
            ]["annotations"].update({"pipelines.kubeflow.org/component_spec": "[1"}),
            Reason.MALFORMED_ANNOTATION,
            "component_spec is not valid JSON",
        ),
    ],
)
def test_a_malformed_node_is_one_error_and_the_others_still_give_steps(
    finished: dict[str, Any], mutate: Any, reason: Reason, fragment: str
) -> None:
    workflow = copy.deepcopy(finished)
    broken, fine = pod_node_ids(workflow)
    mutate(workflow, workflow["status"]["nodes"][broken])
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS)
    assert [s.ref.node_id for s in steps] == [fine]
    [(where, error)] = errors
    assert where == broken and error.reason is reason
    assert fragment in error.message and "\n" not in error.message


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w["metadata"].pop("uid"),
        lambda w: w["metadata"].pop("name"),
        lambda w: w.update(metadata="x"),
        lambda w: w["spec"].update(templates={"a": 1}),
        lambda w: w["status"].update(artifactRepositoryRef=[]),
        lambda w: w["spec"].update(arguments={"parameters": 5}),
    ],
)
def test_a_malformed_workflow_is_one_error(finished: dict[str, Any], mutate: Any) -> None:
    workflow = copy.deepcopy(finished)
    mutate(workflow)
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS)
    assert steps == [] and len(errors) == 1
    assert isinstance(errors[0][1], PodError) and errors[0][1].reason is Reason.MALFORMED_POD


def test_garbage_is_an_error_not_an_exception() -> None:
    for garbage in (None, [], "wf", {"status": {"nodes": {"a": 1}}}):
        steps, errors = desired_steps_from_workflow(garbage, OPTIONS)  # type: ignore[arg-type]
        assert steps == [] and len(errors) == 1
    workflow = {"metadata": {"name": "w", "uid": "u"}, "status": {"nodes": {"w-1": 5}}}
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS)
    assert steps == [] and [e[0] for e in errors] == ["w-1"]
