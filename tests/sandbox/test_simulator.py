"""Tests for the Argo/KFP v1 run simulator (``sandbox.simulator``).

Every check is taken from ``docs/argo-anatomy.md``; section numbers in comments
refer to that file. The workflows are the project's own compiled pipelines
(``sandbox.pipelines``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from sandbox import pipelines
from sandbox.objectstore import ObjectStore
from sandbox.simulator import (
    ArgoProfile,
    KfpCacheWebhook,
    SimClock,
    SimulationResult,
    Simulator,
    evaluate_when,
    fnv32a,
    generate_load,
    node_id,
    pod_name,
    simulate,
    workflow_nodes,
)

PROFILES = ("3.1", "3.3", "3.5", "3.6")
FULFILLED = {"Succeeded", "Failed", "Error", "Skipped", "Omitted"}

WF = "workflows.argoproj.io/"
KFP = "pipelines.kubeflow.org/"


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def pod_template(pod: dict[str, Any], profile: ArgoProfile) -> dict[str, Any]:
    """The Argo template of a pod, from wherever the profile puts it (§4)."""
    if profile.template_annotation:
        return json.loads(pod["metadata"]["annotations"][WF + "template"])
    source = pod["spec"]["initContainers"][0] if profile.template_env == "init" else \
        pod["spec"]["containers"][0]
    return json.loads(env_of(source)["ARGO_TEMPLATE"])


def check_pod(pod: dict[str, Any], result: SimulationResult, *, completed: bool = True) -> None:
    """Assert the anatomy facts for one simulated pod."""
    prof = result.profile
    wf = result.workflow
    wf_name = wf["metadata"]["name"]
    meta = pod["metadata"]
    labels, ann = meta["labels"], meta["annotations"]
    # §2 labels
    assert labels[WF + "workflow"] == wf_name
    assert labels[WF + "completed"] == ("true" if completed else "false")
    # §3 annotations
    node_name = ann[WF + "node-name"]
    nid = node_id(wf_name, node_name)
    if prof.version == "3.1":
        assert WF + "node-id" not in ann
        assert WF + "template" in ann
        assert "kubectl.kubernetes.io/default-container" not in ann
    else:
        assert ann[WF + "node-id"] == nid
        assert WF + "template" not in ann
        assert ann["kubectl.kubernetes.io/default-container"] == "main"
    # ownerReferences to the Workflow
    assert meta["ownerReferences"] == [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": wf_name,
        "uid": wf["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    # §1 naming
    node = result.nodes[nid]
    if prof.pod_name_format == "v1":
        assert meta["name"] == nid
    else:
        assert meta["name"] == f"{wf_name}-{node['templateName']}-{fnv32a(node_name)}"
        assert meta["name"].rsplit("-", 1)[1] == nid.rsplit("-", 1)[1]
    # §4 where ARGO_TEMPLATE lives
    init = pod["spec"].get("initContainers") or []
    containers = pod["spec"]["containers"]
    cache_hit = labels.get(KFP + "reused_from_cache") == "true"
    if not cache_hit:
        for c in init:
            assert ("ARGO_TEMPLATE" in env_of(c)) == (prof.template_env in ("all", "init"))
        for c in containers:
            assert ("ARGO_TEMPLATE" in env_of(c)) == (prof.template_env == "all"), c["name"]
        names = [c["name"] for c in containers]
        is_resource = node["templateName"] in _resource_templates(wf)
        sidecars = [c["name"] for c in _template(wf, node["templateName"]).get("sidecars") or []]
        assert names == (["main"] if is_resource else ["wait", "main", *sidecars])
        if prof.executor == "emissary":
            assert [c["name"] for c in init] == ["init"]
        t = pod_template(pod, prof)
        check_template(t, pod, node, result)
    # §3/§5 outputs channel
    if prof.outputs == "annotation" and node["phase"] == "Succeeded" and not cache_hit:
        outputs = json.loads(ann[WF + "outputs"])
        for a in outputs.get("artifacts", []):
            assert set(a["s3"]) == {"key"}
        assert outputs == {k: v for k, v in node["outputs"].items() if k != "exitCode"}
    elif not cache_hit:
        assert WF + "outputs" not in ann
    # template metadata copied, parameters substituted (§2)
    args = ann.get(KFP + "arguments.parameters", "")
    for prefix in ("{{inputs.", "{{workflow.", "{{pod.", "{{tasks.", "{{item"):
        assert prefix not in args  # unknown literal tags ({{kfp-project-id}}) may stay
    assert pod["status"]["phase"] in ("Succeeded", "Failed")


def _resource_templates(wf: dict[str, Any]) -> frozenset[str]:
    return frozenset(t["name"] for t in wf["spec"]["templates"] if "resource" in t)


def _template(wf: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in wf["spec"]["templates"] if t["name"] == name)


def check_template(t: dict[str, Any], pod: dict[str, Any], node: dict[str, Any],
                   result: SimulationResult) -> None:
    """ARGO_TEMPLATE content (§4)."""
    prof = result.profile
    assert t["name"] == node["templateName"]
    if "container" in t:
        assert t["container"]["name"] == ""
    loc = t["archiveLocation"]
    assert loc["archiveLogs"] is True
    s3 = loc["s3"]
    assert s3["endpoint"] == "minio-service.kubeflow:9000"
    assert s3["bucket"] == "mlpipeline"
    assert s3["accessKeySecret"] == {"name": "mlpipeline-minio-artifact", "key": "accesskey"}
    wf_name = result.workflow["metadata"]["name"]
    assert s3["key"].startswith(f"artifacts/{wf_name}/")
    assert s3["key"].endswith("/" + pod["metadata"]["name"])
    if prof.template_inputs_artifacts_only:
        assert set(t["inputs"]) <= {"artifacts"}
    else:
        assert t["inputs"].get("parameters", []) == node.get("inputs", {}).get("parameters", [])
    for a in t["inputs"].get("artifacts", []):
        assert ("s3" in a and set(a["s3"]) == {"key"}) or "raw" in a, a
    # outputs: declarations only
    for a in t["outputs"].get("artifacts", []):
        assert "s3" not in a
    assert "{{inputs." not in json.dumps(t.get("container", {}))
    assert "{{pod.name}}" not in json.dumps(t)


# ----------------------------------------------------------------------------- naming
def test_fnv32a_node_id_and_pod_name_match_the_anatomy_example() -> None:
    assert fnv32a("demo-x7k2p.consume") == 3498877707
    assert node_id("demo-x7k2p", "demo-x7k2p.consume") == "demo-x7k2p-3498877707"
    assert node_id("demo-x7k2p", "demo-x7k2p") == "demo-x7k2p"
    assert pod_name("demo-x7k2p", "demo-x7k2p.consume", "consume", "v2") == \
        "demo-x7k2p-consume-3498877707"
    assert pod_name("demo-x7k2p", "demo-x7k2p.consume", "consume", "v1") == \
        "demo-x7k2p-3498877707"
    # the producer key in the §4 example
    assert pod_name("demo-x7k2p", "demo-x7k2p.produce", "produce") == \
        "demo-x7k2p-produce-534046229"


def test_v2_pod_name_prefix_is_truncated_to_242() -> None:
    wf = "w" * 200
    name = pod_name(wf, f"{wf}.t", "t" * 100, "v2")
    prefix, digits = name.rsplit("-", 1)
    assert len(prefix) == 242
    assert int(digits) == fnv32a(f"{wf}.t")
    assert pod_name("wf", "wf.x", "", "v2", empty_template_gives_wf=True) == \
        f"wf-{fnv32a('wf.x')}"


def test_profiles_and_overrides() -> None:
    p35 = ArgoProfile.get("3.5")
    assert p35.pod_name_format == "v2" and p35.outputs == "taskresult"
    fallback = ArgoProfile.get("3.5", outputs="annotation")
    assert fallback.outputs == "annotation" and fallback.pod_name_format == "v2"
    assert ArgoProfile.get("3.6").template_env == "init"
    assert ArgoProfile.get("3.1").executor == "docker"
    with pytest.raises(ValueError):
        ArgoProfile.get("2.9")
    with pytest.raises(ValueError):
        ArgoProfile.get("3.5", nonsense=True)


def test_when_expressions() -> None:
    assert evaluate_when('"heads" == "heads"')
    assert not evaluate_when('"heads" != "heads"')
    assert evaluate_when("0.05 > 0.01")
    assert not evaluate_when("0.005 > 0.01")
    assert evaluate_when('"" == ""')
    assert evaluate_when("(1 < 2) && !(3 < 2)")


# ----------------------------------------------------------------------------- all pipelines
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", pipelines.names())
def test_every_pipeline_runs_to_completion(name: str, profile: str) -> None:
    result = simulate(pipelines.load(name), profile, seed=7)
    assert result.phase == "Succeeded", [
        (n["name"], n.get("message")) for n in result.nodes.values() if n["phase"] != "Succeeded"]
    wf = result.workflow
    assert wf["metadata"]["labels"][WF + "completed"] == "true"
    assert wf["metadata"]["labels"][WF + "phase"] == "Succeeded"
    assert (wf["metadata"].get("annotations", {}).get(WF + "pod-name-format")
            == ("v2" if profile in ("3.5", "3.6") else None))
    status = wf["status"]
    assert status["artifactRepositoryRef"]["artifactRepository"]["s3"]["bucket"] == "mlpipeline"
    assert status["artifactRepositoryRef"]["default"] is True
    nodes = result.nodes
    assert all(n["phase"] in FULFILLED for n in nodes.values())
    pod_nodes = [n for n in nodes.values() if n["type"] == "Pod"]
    assert len(result.pods) == len(pod_nodes)
    assert result.taskresults == []  # deleted when the workflow completes (§6)
    for node in pod_nodes:
        assert node["outputs"]["exitCode"] == "0"
        assert node["templateScope"] == f"local/{wf['metadata']['name']}"
        for a in node["outputs"].get("artifacts", []):
            assert set(a["s3"]) == {"key"}
        if "resource" not in json.dumps(
                [t for t in wf["spec"]["templates"] if t["name"] == node["templateName"]]):
            assert node["outputs"]["artifacts"][-1]["name"] == "main-logs"
    for pod in result.pods:
        check_pod(pod, result)


# ----------------------------------------------------------------------------- artifacts
@pytest.mark.parametrize("profile", PROFILES)
def test_input_artifact_is_the_producers_output_with_consumer_name_and_path(profile: str) -> None:
    result = simulate(pipelines.load("two_step"), profile)
    wf_name = result.name
    nodes = {n["displayName"]: n for n in result.nodes.values()}
    produced = {a["name"]: a for a in nodes["prepare-data"]["outputs"]["artifacts"]}
    out = produced["prepare-data-table"]
    pre_pod = next(p for p in result.pods if p["metadata"]["annotations"][WF + "node-name"]
                   == f"{wf_name}.prepare-data")
    assert out["s3"]["key"].endswith(f"/{pre_pod['metadata']['name']}/prepare-data-table.tgz")
    assert out["path"] == "/tmp/outputs/table/data"
    # value output also reported as a parameter, read from the same file (§5)
    params = nodes["prepare-data"]["outputs"]["parameters"]
    assert params[0]["valueFrom"] == {"path": "/tmp/outputs/row_count/data"}
    train_pod = next(p for p in result.pods if p["metadata"]["annotations"][WF + "node-name"]
                     == f"{wf_name}.train")
    t = pod_template(train_pod, result.profile)
    assert t["inputs"]["artifacts"] == [{
        "name": "prepare-data-table", "path": "/tmp/inputs/dataset/data",
        "s3": {"key": out["s3"]["key"]}}]
    assert nodes["train"]["inputs"]["artifacts"] == t["inputs"]["artifacts"]
    arg_params = json.loads(train_pod["metadata"]["annotations"][KFP + "arguments.parameters"])
    assert arg_params == {"epochs": params[0]["value"]}
    assert "--epochs" in train_pod["spec"]["containers"][-1]["args"]


def test_raw_input_artifacts_arrive_as_raw_data() -> None:
    result = simulate(pipelines.load("raw_artifact_values"), "3.5")
    poem = result.workflow["spec"]["arguments"]["parameters"][0]["value"]
    data = []
    for pod in result.pods:
        t = pod_template(pod, result.profile)
        (art,) = t["inputs"]["artifacts"]
        assert set(art) == {"name", "path", "raw"}
        data.append(art["raw"]["data"])
    # constants as they were compiled; the pipeline parameter substituted (§4)
    assert sorted(data) == sorted(["a constant, as a file", "one two three four", poem, poem])


def test_3_6_template_only_on_init_and_inputs_cut_down() -> None:
    result = simulate(pipelines.load("two_step"), "3.6")
    pod = next(p for p in result.pods if "-train-" in p["metadata"]["name"])
    assert "ARGO_TEMPLATE" not in env_of(pod["spec"]["containers"][0])  # wait
    assert "ARGO_TEMPLATE" not in env_of(pod["spec"]["containers"][1])  # main
    t = json.loads(env_of(pod["spec"]["initContainers"][0])["ARGO_TEMPLATE"])
    assert list(t["inputs"]) == ["artifacts"]
    node = result.nodes[pod["metadata"]["annotations"][WF + "node-id"]]
    assert node["inputs"]["parameters"]  # status.nodes keep them


def test_3_6_large_template_is_offloaded_to_a_configmap() -> None:
    wf = pipelines.load("hello_world")
    for t in wf["spec"]["templates"]:
        if "container" in t:
            t["metadata"]["annotations"]["big"] = "x" * 140_000
    result = simulate(wf, "3.6")
    (pod,) = result.pods
    assert env_of(pod["spec"]["initContainers"][0])["ARGO_TEMPLATE"] == "offloaded"
    (cm,) = result.configmaps
    assert cm["metadata"]["name"] == pod["metadata"]["name"]
    assert json.loads(cm["data"]["template"])["name"]


def test_3_1_docker_executor_shape() -> None:
    result = simulate(pipelines.load("two_step"), "3.1")
    for pod in result.pods:
        names = [c["name"] for c in pod["spec"]["containers"]]
        assert names == ["wait", "main"]
        has_inputs = bool(pod_template(pod, result.profile)["inputs"].get("artifacts"))
        assert bool(pod["spec"].get("initContainers")) == has_inputs
        main = pod["spec"]["containers"][1]
        assert main["command"][0] == "sh"  # no emissary wrapper
        assert env_of(pod["spec"]["containers"][0])["ARGO_CONTAINER_RUNTIME_EXECUTOR"] == "docker"


def test_emissary_main_command_and_env() -> None:
    result = simulate(pipelines.load("hello_world"), "3.5")
    (pod,) = result.pods
    wait, main = pod["spec"]["containers"]
    assert main["command"][:7] == ["/var/run/argo/argoexec", "emissary", "--loglevel", "info",
                                   "--log-format", "text", "--"]
    wenv, menv = env_of(wait), env_of(main)
    assert wenv["ARGO_WORKFLOW_UID"] == result.workflow["metadata"]["uid"]
    assert "ARGO_POD_NAME" in wenv and "ARGO_POD_NAME" not in menv
    assert menv["ARGO_CONTAINER_NAME"] == "main"
    assert menv["ARGO_DEADLINE"] == "0001-01-01T00:00:00Z"


# ----------------------------------------------------------------------------- outputs channels
def _tr_versions(result: SimulationResult) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for snap in result.snapshots:
        for tr in snap.taskresults:
            if tr not in seen:
                seen.append(tr)
    return seen


def test_3_5_taskresult_lifecycle() -> None:
    result = simulate(pipelines.load("hello_world"), "3.5", snapshots=True)
    versions = _tr_versions(result)
    assert len(versions) == 2
    early, final = versions
    nid = result.pods[0]["metadata"]["annotations"][WF + "node-id"]
    assert early["metadata"]["name"] == final["metadata"]["name"] == nid
    assert early["metadata"]["labels"] == {WF + "workflow": result.name,
                                           WF + "report-outputs-completed": "false"}
    assert "outputs" not in early
    assert final["metadata"]["labels"][WF + "report-outputs-completed"] == "true"
    assert final["metadata"]["ownerReferences"] == [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": result.name,
        "uid": result.workflow["metadata"]["uid"]}]
    assert final["outputs"]["artifacts"][-1]["name"] == "main-logs"
    assert result.taskresults == []
    # the outputs are visible while the pod still runs
    (ev,) = result.outputs_log
    assert ev.channel == "taskresult" and ev.node_id == nid
    running_with_results = [
        s for s in result.snapshots
        if s.taskresults and "outputs" in s.taskresults[0]
        and s.pods[0]["status"]["phase"] == "Running"]
    assert running_with_results
    for snap in result.snapshots:
        for pod in snap.pods:
            assert WF + "outputs" not in pod["metadata"]["annotations"]


def test_3_3_with_taskresults_allowed_owns_results_by_pod() -> None:
    prof = ArgoProfile.get("3.3", outputs="taskresult")
    result = simulate(pipelines.load("hello_world"), prof, snapshots=True)
    (tr,) = _tr_versions(result)
    (ref,) = tr["metadata"]["ownerReferences"]
    assert ref["kind"] == "pods" and ref["apiVersion"] == "v1"
    assert ref["uid"] == result.pods[0]["metadata"]["uid"]
    assert tr["metadata"]["labels"] == {WF + "workflow": result.name}
    assert result.taskresults == []


@pytest.mark.parametrize("profile", [ArgoProfile.get("3.5", outputs="annotation"), "3.3", "3.1"])
def test_outputs_annotation_profiles_never_write_taskresults(profile: Any) -> None:
    result = simulate(pipelines.load("two_step"), profile, snapshots=True)
    assert _tr_versions(result) == []
    for pod in result.pods:
        ann = pod["metadata"]["annotations"]
        assert json.loads(ann[WF + "outputs"])["artifacts"]
        if result.profile.report_outputs_completed:
            assert ann[WF + "report-outputs-completed"] == "true"
        else:
            assert WF + "report-outputs-completed" not in ann


def test_snapshots_show_each_intermediate_pod_state() -> None:
    result = simulate(pipelines.load("hello_world"), "3.3", snapshots=True)
    (versions,) = result.pod_versions().values()
    states = [(v["status"]["phase"], WF + "outputs" in v["metadata"]["annotations"],
               v["metadata"]["labels"][WF + "completed"]) for v in versions]
    assert states == [("Pending", False, "false"), ("Running", False, "false"),
                      ("Running", True, "false"), ("Succeeded", True, "false"),
                      ("Succeeded", True, "true")]


def test_completed_label_only_after_the_node_is_persisted_fulfilled() -> None:
    result = simulate(pipelines.load("chain10"), "3.5", snapshots=True)
    for snap in result.snapshots:
        nodes = workflow_nodes(snap.workflow)
        for pod in snap.pods:
            nid = pod["metadata"]["annotations"][WF + "node-id"]
            if pod["metadata"]["labels"][WF + "completed"] == "true":
                assert nodes[nid]["phase"] in FULFILLED
                assert nodes[nid]["outputs"]


# ----------------------------------------------------------------------------- podGC
def _ever_labelled(result: SimulationResult) -> set[str]:
    return {p["metadata"]["name"] for s in result.snapshots for p in s.pods
            if p["metadata"]["labels"][WF + "completed"] == "true"}


def test_pod_gc_unset_labels_every_pod() -> None:
    result = simulate(pipelines.load("two_step"), "3.5")
    assert len(result.pods) == 2
    assert all(p["metadata"]["labels"][WF + "completed"] == "true" for p in result.pods)


def test_pod_gc_on_pod_completion_deletes_without_labelling() -> None:
    result = simulate(pipelines.load("two_step"), "3.5", pod_gc="OnPodCompletion",
                      snapshots=True)
    assert result.pods == []
    assert _ever_labelled(result) == set()
    assert len(result.pod_versions()) == 2


def test_pod_gc_on_pod_success_keeps_failed_pods_labelled() -> None:
    result = simulate(pipelines.load("retries_and_timeouts"), "3.5", pod_gc="OnPodSuccess",
                      fail={"slow-step": 1})
    assert result.phase == "Failed"
    (pod,) = result.pods  # the flaky step succeeded (first time) and its pod was deleted
    assert pod["status"]["phase"] == "Failed"
    assert pod["metadata"]["labels"][WF + "completed"] == "true"
    node = result.nodes[pod["metadata"]["annotations"][WF + "node-id"]]
    assert node["phase"] == "Failed" and node["outputs"]["exitCode"] == "1"


def test_pod_gc_on_workflow_completion_never_labels() -> None:
    result = simulate(pipelines.load("two_step"), "3.5", pod_gc="OnWorkflowCompletion",
                      snapshots=True)
    assert result.pods == []
    assert _ever_labelled(result) == set()
    # pods lived until the workflow completed
    assert any(len(s.pods) == 2 for s in result.snapshots)


def test_pod_gc_on_workflow_success_labels_when_the_workflow_failed() -> None:
    result = simulate(pipelines.load("retries_and_timeouts"), "3.5", pod_gc="OnWorkflowSuccess",
                      fail={"slow-step": 1}, snapshots=True)
    assert result.phase == "Failed"
    assert len(result.pods) == 2
    assert all(p["metadata"]["labels"][WF + "completed"] == "true" for p in result.pods)


def test_workflow_pod_gc_spec_wins() -> None:
    wf = pipelines.load("hello_world")
    wf["spec"]["podGC"] = {"strategy": "OnPodSuccess"}
    assert simulate(wf, "3.5").pods == []


# ----------------------------------------------------------------------------- retries
@pytest.mark.parametrize("profile", ["3.3", "3.6"])
def test_retry_creates_attempt_nodes_and_pods(profile: str) -> None:
    # flaky-step was compiled with set_retry(3): a retryStrategy on its template.
    result = simulate(pipelines.load("retries_and_timeouts"), profile, fail={"flaky-step": 1})
    assert result.phase == "Succeeded"
    retry = next(n for n in result.nodes.values() if n["type"] == "Retry")
    assert retry["name"] == f"{result.name}.flaky-step"
    assert retry["phase"] == "Succeeded"
    a0, a1 = (result.nodes[c] for c in retry["children"])
    assert (a0["name"], a0["phase"]) == (f"{retry['name']}(0)", "Failed")
    assert (a1["name"], a1["phase"]) == (f"{retry['name']}(1)", "Succeeded")
    assert retry["outputs"] == a1["outputs"]
    if profile == "3.6":
        assert a0["nodeFlag"] == {"retried": True}
    pods = {p["metadata"]["annotations"][WF + "node-name"]: p for p in result.pods}
    assert pods[a0["name"]]["status"]["phase"] == "Failed"
    main = next(c for c in pods[a0["name"]]["status"]["containerStatuses"] if c["name"] == "main")
    assert main["state"]["terminated"]["exitCode"] == 1
    assert pods[a1["name"]]["metadata"]["name"] == pod_name(
        result.name, a1["name"], "flaky-step", result.profile.pod_name_format)


def test_retries_stop_at_the_limit() -> None:
    result = simulate(pipelines.load("retries_and_timeouts"), "3.5", fail={"flaky-step": 10})
    assert result.phase == "Failed"
    retry = next(n for n in result.nodes.values() if n["type"] == "Retry")
    assert len(retry["children"]) == 4  # the first try and three retries
    assert retry["phase"] == "Failed" and retry["message"] == "No more retries left"


def test_random_failures_are_seeded() -> None:
    a = simulate(pipelines.load("retries_and_timeouts"), "3.5", fail=0.5, seed=3)
    b = simulate(pipelines.load("retries_and_timeouts"), "3.5", fail=0.5, seed=3)
    assert a.name == b.name
    assert [n["phase"] for n in a.nodes.values()] == [n["phase"] for n in b.nodes.values()]


# ----------------------------------------------------------------------------- DAG semantics
def test_conditions_skip_with_the_evaluated_expression() -> None:
    skipped_total = 0
    for seed in range(6):
        result = simulate(pipelines.load("conditions"), "3.5", seed=seed)
        for n in result.nodes.values():
            if n["type"] == "Skipped":
                assert n["phase"] == "Skipped"
                expr = n["message"].removeprefix("when '").removesuffix("' evaluated false")
                assert "{{" not in expr and not evaluate_when(expr)
                skipped_total += 1
    assert skipped_total  # some coin flip went the other way


def test_exactly_one_branch_of_an_if_else_runs() -> None:
    result = simulate(pipelines.load("conditions"), "3.5")
    cond = {n["displayName"]: n for n in result.nodes.values()
            if n["displayName"] in ("condition-1", "condition-4")}  # heads / tails
    assert sorted(n["type"] for n in cond.values()) == ["DAG", "Skipped"]


def test_with_param_loop_nodes_and_items() -> None:
    result = simulate(pipelines.load("parallel_for"), "3.5")
    groups = [n for n in result.nodes.values() if n["type"] == "TaskGroup"]
    assert len(groups) == 4
    for g in groups:
        assert len(g["children"]) == 3
        for i, cid in enumerate(g["children"]):
            child = result.nodes[cid]
            assert child["name"].startswith(f"{g['name']}({i}:")
            assert child["boundaryID"] == g["boundaryID"]
    colours = next(g for g in groups if g["displayName"] == "for-loop-4")  # a pipeline parameter
    assert [result.nodes[c]["displayName"] for c in colours["children"]] == [
        "for-loop-4(0:red)", "for-loop-4(1:green)", "for-loop-4(2:blue)"]
    records = next(g for g in groups if g["displayName"] == "for-loop-3")
    child = result.nodes[records["children"][0]]
    shape, size = (p["value"] for p in child["inputs"]["parameters"])
    assert child["name"].endswith(f"(0:shape:{shape},size:{size})")


def test_loop_parallelism_limits_each_iteration_not_the_iterations() -> None:
    # KFP compiles ParallelFor(parallelism=1) onto the loop body's DAG template, so Argo
    # limits the tasks inside each iteration: `show` and the inner loop take turns, while
    # both outer iterations run side by side.
    result = simulate(pipelines.load("nested_loops"), "3.5", snapshots=True)
    both_iterations = False
    for snap in result.snapshots:
        running: dict[str, set[str]] = {}
        for pod in snap.pods:
            if pod["status"]["phase"] not in ("Pending", "Running"):
                continue
            parts = pod["metadata"]["annotations"][WF + "node-name"].split(".")
            if parts[1].startswith("for-loop-2("):
                task = "inner loop" if parts[2].startswith("for-loop-4") else parts[2]
                running.setdefault(parts[1], set()).add(task)
        both_iterations |= len(running) == 2
        assert all(len(tasks) == 1 for tasks in running.values()), running
    assert both_iterations


def test_with_items_dict_names_are_sorted_key_value_pairs() -> None:
    result = simulate(pipelines.load("nested_loops"), "3.5")
    names = {n["displayName"] for n in result.nodes.values()}
    assert "for-loop-2(0:a:1,b:2)" in names and "for-loop-2(1:a:10,b:20)" in names
    assert "for-loop-4(2:300)" in names


def test_exit_handler_runs_last_with_on_exit_label() -> None:
    result = simulate(pipelines.load("exit_handler"), "3.5", snapshots=True)
    exit_node = result.nodes[node_id(result.name, f"{result.name}.onExit")]
    assert exit_node["displayName"] == "onExit" and "boundaryID" not in exit_node
    assert exit_node["templateName"] == "report"
    on_exit = [p for p in result.pods if p["metadata"]["labels"].get(WF + "on-exit") == "true"]
    assert [p["metadata"]["annotations"][WF + "node-id"] for p in on_exit] == [exit_node["id"]]
    others = [n for n in result.nodes.values() if n["type"] == "Pod" and n is not exit_node]
    assert all(n["finishedAt"] <= exit_node["startedAt"] for n in others)


def test_recursion_is_bounded() -> None:
    result = simulate(pipelines.load("train_until_good"), "3.5")
    graphs = [n for n in result.nodes.values()
              if n["templateName"] == "graph-train-until-low-error-1" and n["type"] == "DAG"]
    assert len(graphs) == 2  # recursed once, then the error was small enough
    assert result.phase == "Succeeded"


def test_workflow_parallelism_limits_running_pods() -> None:
    result = simulate(pipelines.load("pod_settings"), "3.5", snapshots=True)
    for snap in result.snapshots:
        active = [p for p in snap.pods if p["status"]["phase"] in ("Pending", "Running")]
        assert len(active) <= 1


def test_dag_children_and_outbound_nodes() -> None:
    result = simulate(pipelines.load("two_step"), "3.5")
    root = result.nodes[result.name]
    pre = result.nodes[node_id(result.name, f"{result.name}.prepare-data")]
    train = result.nodes[node_id(result.name, f"{result.name}.train")]
    assert root["children"] == [pre["id"]]
    assert pre["children"] == [train["id"]]
    assert root["outboundNodes"] == [train["id"]]
    assert train["boundaryID"] == root["id"]


def test_compressed_nodes() -> None:
    result = simulate(pipelines.load("two_step"), "3.5", compress_nodes=True)
    status = result.workflow["status"]
    assert "nodes" not in status and status["compressedNodes"]
    assert len(result.nodes) == 3


def test_deterministic_names_and_sim_clock() -> None:
    a = simulate(pipelines.load("hello_world"), "3.5", seed=11, clock=SimClock())
    b = simulate(pipelines.load("hello_world"), "3.5", seed=11, clock=SimClock())
    assert a.name == b.name and a.name.startswith("hello-world-")
    assert a.nodes == b.nodes


# ----------------------------------------------------------------------------- cache webhook
def _one_step_runs(profile: str, store: ObjectStore, hook: KfpCacheWebhook,
                   execution_id: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    sim = Simulator(store, profile, cache=hook, seed=1)
    first = sim.submit(pipelines.load("hello_world"), "kubeflow")
    sim.run_until_complete()
    (pod1,) = store.list("pods", "kubeflow", f"{WF}workflow={first}")
    if execution_id:
        store.patch("pods", "kubeflow", pod1["metadata"]["name"],
                    {"metadata": {"labels": {KFP + "metadata_execution_id": execution_id}}})
    second = sim.submit(pipelines.load("hello_world"), "kubeflow")
    sim.run_until_complete()
    (pod2,) = store.list("pods", "kubeflow", f"{WF}workflow={second}")
    return store.get("pods", "kubeflow", pod1["metadata"]["name"]), pod2


@pytest.mark.parametrize("profile", ["3.1", "3.3"])
def test_cache_hit_pod(profile: str) -> None:
    store, hook = ObjectStore(), KfpCacheWebhook()
    pod1, pod2 = _one_step_runs(profile, store, hook, execution_id="42")
    l1, l2 = pod1["metadata"]["labels"], pod2["metadata"]["labels"]
    assert l1[KFP + "cache_id"] == "1"
    assert KFP + "reused_from_cache" not in l1
    assert l2[KFP + "reused_from_cache"] == "true"
    assert l2[KFP + "metadata_written"] == "true"
    assert l2[KFP + "metadata_execution_id"] == "42"
    assert l2[KFP + "cache_id"] == "1"
    a1, a2 = pod1["metadata"]["annotations"], pod2["metadata"]["annotations"]
    assert a2[WF + "outputs"] == a1[WF + "outputs"]
    assert a2[KFP + "execution_cache_key"] == a1[KFP + "execution_cache_key"]
    assert [c["name"] for c in pod2["spec"]["containers"]] == ["main"]
    assert pod2["spec"]["containers"][0]["command"][0] == "echo"
    assert "initContainers" not in pod2["spec"]
    assert pod2["status"]["phase"] == "Succeeded"
    assert l2[WF + "completed"] == "true"


def test_no_cache_on_3_6_and_none_without_completed_label() -> None:
    store, hook = ObjectStore(), KfpCacheWebhook()
    _, pod2 = _one_step_runs("3.6", store, hook)
    assert KFP + "reused_from_cache" not in pod2["metadata"]["labels"]
    assert hook.entries == {}
    store, hook = ObjectStore(), KfpCacheWebhook()
    sim = Simulator(store, "3.3", cache=hook, pod_gc="OnWorkflowCompletion")
    for _ in range(2):
        sim.submit(pipelines.load("hello_world"), "kubeflow")
        sim.run_until_complete()
    assert hook.entries == {} and hook.hits == []


def test_max_cache_staleness_p0d_never_hits() -> None:
    wf = pipelines.load("hello_world")
    for t in wf["spec"]["templates"]:
        if "container" in t:
            t["metadata"]["annotations"][KFP + "max_cache_staleness"] = "P0D"
    store, hook = ObjectStore(), KfpCacheWebhook()
    sim = Simulator(store, "3.3", cache=hook)
    for _ in range(2):
        sim.submit(wf, "kubeflow")
        sim.run_until_complete()
    assert hook.hits == []


# ----------------------------------------------------------------------------- modes
def test_paced_mode_reports_outputs_visibility() -> None:
    store = ObjectStore()
    seen: list[Any] = []
    done = threading.Event()

    def listener(ev: Any) -> None:
        seen.append(ev)
        if len(seen) == 2:
            done.set()

    sim = Simulator(store, "3.5", on_outputs=[listener])
    name = sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.run(pace_s=0.001)
    try:
        assert done.wait(30)
    finally:
        sim.stop()
    assert {ev.workflow for ev in seen} == {name}
    assert seen[0].monotonic <= seen[1].monotonic
    tr = [ev for ev in seen if ev.channel == "taskresult"]
    assert len(tr) == 2


def test_delete_workflow_removes_owned_objects() -> None:
    store = ObjectStore()
    sim = Simulator(store, "3.5")
    name = sim.submit(pipelines.load("two_step"), "kubeflow")
    for _ in range(4):
        sim.step()
    assert store.list("pods", "kubeflow")
    sim.delete_workflow("kubeflow", name)
    assert store.list("pods", "kubeflow") == []
    assert store.list("workflowtaskresults", "kubeflow") == []
    assert store.list("workflows", "kubeflow") == []
    assert not sim.step()


def test_generate_load_10000_pods() -> None:
    store = ObjectStore()
    made = generate_load(store, workflows=2000, steps=5, profile="3.5", seed=1)
    assert len(made) == len(set(made)) == 2000
    assert store.count("pods") == 10_000
    assert store.count("workflowtaskresults") == 0
    wfs = store.list("workflows", "kubeflow")
    assert {w["status"]["phase"] for w in wfs} == {"Succeeded"}
    sample = wfs[0]
    name = sample["metadata"]["name"]
    pods = store.list("pods", "kubeflow", f"{WF}workflow={name}")
    assert len(pods) == 5
    result = SimulationResult(
        name=name, namespace="kubeflow", profile=ArgoProfile.get("3.5"), workflow=sample,
        pods=pods, taskresults=[], configmaps=[], steps=0, outputs_log=[], cluster=store)
    for pod in pods:
        check_pod(pod, result)
    # artifacts are passed step to step
    by_step = {p["metadata"]["annotations"][WF + "node-name"].rsplit(".", 1)[1]: p for p in pods}
    t2 = pod_template(by_step["step-2"], result.profile)
    out1 = result.nodes[by_step["step-1"]["metadata"]["annotations"][WF + "node-id"]]
    assert t2["inputs"]["artifacts"][0]["s3"] == out1["outputs"]["artifacts"][0]["s3"]


def test_generate_load_running_state() -> None:
    store = ObjectStore()
    generate_load(store, workflows=60, steps=5, profile="3.5", completed=False, seed=2)
    phases = {p["status"]["phase"] for p in store.list("pods")}
    assert "Running" in phases or "Pending" in phases
    assert store.count("workflowtaskresults") > 0
    wfs = store.list("workflows")
    assert {w["status"]["phase"] for w in wfs} == {"Running"}
    assert all(w["metadata"]["labels"][WF + "completed"] == "false" for w in wfs)
