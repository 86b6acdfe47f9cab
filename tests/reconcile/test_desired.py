"""Desired records from one pod, field by field against the KFP v1 contract."""

from __future__ import annotations

import hashlib
import json

import pytest

from reconcile import keys
from reconcile.argo import PodView, fnv32a, node_id_for, pod_name_for
from reconcile.classify import Disposition, classify
from reconcile.desired import desired_step, output_name_to_argo
from reconcile.errors import PodError, Reason
from reconcile.options import ReconcileOptions
from reconcile.records import ExecutionState
from reconcile.uris import ArtifactRepository, artifact_uri
from tests.podfactory import Step, component_spec, pod

OPTS = ReconcileOptions()
PRODUCE = Step("demo-x7k2p", "produce", parameters={"n": "3"})
CONSUME = Step("demo-x7k2p", "consume", inputs={"dataset": "produce:out"}, outputs=("model",))
BY_TEMPLATE = {"produce": PRODUCE, "consume": CONSUME}


def step_of(pod_json: dict, **kw: object) -> object:
    view = PodView.from_json(pod_json)
    return desired_step(view, classify(view, OPTS), OPTS, **kw)


def test_node_id_and_pod_names_match_the_anatomy_example() -> None:
    assert node_id_for("demo-x7k2p", "demo-x7k2p.consume") == "demo-x7k2p-3498877707"
    assert node_id_for("demo-x7k2p", "demo-x7k2p") == "demo-x7k2p"
    assert (
        pod_name_for("demo-x7k2p", "consume", "demo-x7k2p-3498877707", "v2")
        == "demo-x7k2p-consume-3498877707"
    )
    assert pod_name_for("demo-x7k2p", "consume", "demo-x7k2p-3498877707", "v1") == "demo-x7k2p-3498877707"
    assert fnv32a("") == 0x811C9DC5


@pytest.mark.parametrize("profile", ["3.1", "3.3", "3.5", "3.6"])
def test_execution_follows_the_contract(profile: str) -> None:
    p = pod(CONSUME, BY_TEMPLATE, profile=profile, outputs_annotation=True)
    step = step_of(p)
    spec_text = component_spec(CONSUME)
    digest = hashlib.sha256(spec_text.encode()).hexdigest()
    assert step.execution.type_name == f"components.Consume@sha256={digest}"
    assert step.execution.properties == {
        "pipeline_name": "demo-x7k2p",
        "run_id": "demo-x7k2p",
        "component_id": "Consume",
    }
    assert step.execution.custom_properties["kfp_pod_name"] == p["metadata"]["name"]
    assert step.execution.custom_properties["pod_name"] == "demo-x7k2p-3498877707"
    assert step.execution.state is ExecutionState.COMPLETE
    assert step.context.name == "demo-x7k2p"
    assert step.context.properties == {"pipeline_name": "demo-x7k2p", "run_id": "demo-x7k2p"}
    assert step.execution.key == keys.execution_key("kubeflow", CONSUME.workflow_uid, "demo-x7k2p-3498877707")
    scheme = "v2" if profile in ("3.5", "3.6") else "v1"
    assert [(i.name, i.uri) for i in step.inputs] == [
        ("dataset", f"minio://mlpipeline/{PRODUCE.output_key('out', scheme)}")
    ]
    assert [(o.name, o.type_name, o.uri) for o in step.outputs] == [
        ("model", "Model", f"minio://mlpipeline/{CONSUME.output_key('model', scheme)}"),
        ("main-logs", "NoType", f"minio://mlpipeline/{CONSUME.key_prefix(scheme)}/main.log"),
    ]
    model = step.outputs[0]
    assert set(model.custom_properties) == {"name", "pipeline_name", "run_id", "argo_artifact"}
    assert json.loads(model.custom_properties["argo_artifact"])["name"] == "consume-model"


def test_parameter_arguments_convert_like_upstream() -> None:
    p = pod(PRODUCE, profile="3.5")
    p["metadata"]["annotations"]["pipelines.kubeflow.org/arguments.parameters"] = json.dumps(
        {"s": "x", "i": 3, "f": 1.5, "none": None, "b": True, "l": [1, 2]}
    )
    step = step_of(p)
    custom = step.execution.custom_properties
    assert custom["input:s"] == "x"
    assert custom["input:i"] == 3
    assert custom["input:f"] == 1.5
    assert custom["input:b"] == 1
    assert custom["input:l"] == "[1, 2]"
    # A null would be a Value with nothing set, on which MLMD aborts: left out, with a warning.
    assert "input:none" not in custom
    assert step.warnings == ("parameter 'none' is null; left out of the execution's properties",)


@pytest.mark.parametrize("text", ['{"s": "{"a":1}"}', "[]"])
def test_unparseable_parameter_arguments_lose_only_the_parameters(text: str) -> None:
    # Argo substitutes a dict loop item verbatim into this JSON: real clusters produce it.
    p = pod(PRODUCE, profile="3.5")
    p["metadata"]["annotations"]["pipelines.kubeflow.org/arguments.parameters"] = text
    step = step_of(p)
    assert not any(k.startswith("input:") for k in step.execution.custom_properties)
    assert len(step.warnings) == 1 and "arguments.parameters" in step.warnings[0]


def test_without_component_spec_the_template_names_the_type() -> None:
    p = pod(PRODUCE, profile="3.3")
    del p["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"]
    step = step_of(p)
    assert step.execution.type_name == "components.produce"
    assert step.execution.properties["component_id"] == "produce"


def test_outputs_unknown_until_reported() -> None:
    running = step_of(pod(PRODUCE, phase="Running", profile="3.5"))
    assert running.outputs is None
    assert running.execution.state is ExecutionState.RUNNING
    finished_no_source = step_of(pod(PRODUCE, profile="3.5"))
    assert finished_no_source.outputs is None  # 3.5 reports through WorkflowTaskResults


def test_outputs_from_taskresult_and_from_workflow_status() -> None:
    p = pod(PRODUCE, profile="3.5")
    arts = [{"name": "produce-out", "path": "/tmp/outputs/out/data", "s3": {"key": "a/b/out.tgz"}}]
    result = {
        "metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "true"}},
        "outputs": {"artifacts": arts},
    }
    assert [o.uri for o in step_of(p, taskresult=result).outputs] == ["minio://mlpipeline/a/b/out.tgz"]
    unfinished = {"metadata": {"labels": {"workflows.argoproj.io/report-outputs-completed": "false"}}}
    assert step_of(p, taskresult=unfinished).outputs is None
    node = {"phase": "Succeeded", "outputs": {"artifacts": arts, "exitCode": "0"}}
    assert [o.name for o in step_of(p, node=node).outputs] == ["out"]
    assert step_of(p, node={"phase": "Succeeded"}).outputs == ()


@pytest.mark.parametrize(
    ("artifact", "archive", "uri"),
    [
        ({"name": "a", "s3": {"endpoint": "s3.amazonaws.com", "bucket": "b", "key": "k"}}, None, "s3://b/k"),
        ({"name": "a", "s3": {"endpoint": "minio:9000", "bucket": "b", "key": "k"}}, None, "minio://b/k"),
        (
            {"name": "a", "s3": {"key": "k"}},
            {"s3": {"endpoint": "s3.us-east-1.amazonaws.com", "bucket": "x"}},
            "s3://x/k",
        ),
        ({"name": "a", "s3": {"key": "k"}}, None, "minio://mlpipeline/k"),
        ({"name": "a", "gcs": {"bucket": "g", "key": "p/q"}}, None, "gs://g/p/q"),
        ({"name": "a", "gcs": {"key": "p"}}, {"gcs": {"bucket": "g"}}, "gs://g/p"),
        ({"name": "a", "oss": {"bucket": "o", "key": "k"}}, None, "oss://o/k"),
        (
            {
                "name": "a",
                "azure": {"endpoint": "https://acct.blob.core.windows.net", "container": "c", "blob": "b"},
            },
            None,
            "https://acct.blob.core.windows.net/c/b",
        ),
        ({"name": "a", "hdfs": {"addresses": ["nn:8020"], "path": "/d/f"}}, None, "hdfs://nn:8020/d/f"),
        ({"name": "a", "http": {"url": "https://h/x"}}, None, "https://h/x"),
        ({"name": "a", "artifactory": {"url": "https://art/x"}}, None, "https://art/x"),
        ({"name": "a", "raw": {"data": "hello"}}, None, None),
        ({"name": "a", "path": "/p"}, None, None),
    ],
)
def test_artifact_uris(artifact: dict, archive: dict | None, uri: str | None) -> None:
    assert artifact_uri(artifact, archive, ArtifactRepository()) == uri


def test_key_only_artifact_without_any_bucket_is_an_error_not_minio_empty_bucket() -> None:
    with pytest.raises(PodError) as err:
        artifact_uri({"name": "a", "s3": {"key": "k"}}, None, ArtifactRepository(s3_bucket=""))
    assert err.value.reason is Reason.NO_ARTIFACT_REPOSITORY


def test_output_name_sanitisation_matches_the_compiler() -> None:
    assert output_name_to_argo("Output dataset (CSV)") == "Output-dataset-CSV"
    assert output_name_to_argo("--a__b--") == "a__b"


def classify_with(labels: dict | None = None, annotations: dict | None = None, **opts: object) -> Disposition:
    p = pod(PRODUCE, labels=labels, annotations=annotations)
    return classify(PodView.from_json(p), ReconcileOptions(**opts))


def test_classification() -> None:
    kfp = "pipelines.kubeflow.org/"
    assert classify_with() is Disposition.RECORD
    assert classify_with({kfp + "pipeline-sdk-type": "tfx-template"}) is Disposition.SKIP_TFX
    assert classify_with(annotations={kfp + "v2_component": "true"}) is Disposition.SKIP_V2
    hit = {
        kfp + "reused_from_cache": "true",
        kfp + "metadata_written": "true",
        kfp + "metadata_execution_id": "7",
    }
    assert classify_with(hit) is Disposition.SKIP_CACHE_HIT
    assert classify_with(hit, record_cache_hits=True) is Disposition.RECORD_CACHE_HIT
    assert classify_with({kfp + "metadata_written": "true"}) is Disposition.SKIP_OPTED_OUT
    written = {kfp + "metadata_written": "true", kfp + "metadata_execution_id": "7"}
    assert classify_with(written) is Disposition.RECORD  # verified, not skipped


def test_tfx_entrypoint_is_skipped() -> None:
    p = pod(PRODUCE)
    p["spec"]["containers"][1]["command"] = [
        "python",
        "/tfx-src/tfx/orchestration/kubeflow/container_entrypoint.py",
    ]
    assert classify(PodView.from_json(p), OPTS) is Disposition.SKIP_TFX


def test_cache_hit_recorded_as_cached_when_enabled() -> None:
    kfp = "pipelines.kubeflow.org/"
    hit = {
        kfp + "reused_from_cache": "true",
        kfp + "metadata_written": "true",
        kfp + "metadata_execution_id": "7",
    }
    p = pod(PRODUCE, labels=hit)
    view = PodView.from_json(p)
    opts = ReconcileOptions(record_cache_hits=True)
    step = desired_step(view, classify(view, opts), opts)
    assert step.execution.state is ExecutionState.CACHED
    assert step.execution.custom_properties["cached_execution_id"] == "7"
    assert step.outputs == ()


def _template_env(p: dict) -> list[dict]:
    return [
        e
        for c in p["spec"]["initContainers"] + p["spec"]["containers"]
        for e in c.get("env", [])
        if e["name"] == "ARGO_TEMPLATE"
    ]


def test_template_on_init_container_only_is_found_and_offloaded_is_reported() -> None:
    p = pod(PRODUCE, profile="3.6")
    assert step_of(p).execution.properties["component_id"] == "Produce"
    for env in _template_env(p):
        env["value"] = "offloaded"
    with pytest.raises(PodError) as err:
        step_of(p)
    assert err.value.reason is Reason.TEMPLATE_OFFLOADED


def _corrupt(mutate: object) -> PodError:
    p = pod(CONSUME, BY_TEMPLATE, profile="3.3", outputs_annotation=True)
    mutate(p)  # type: ignore[operator]
    with pytest.raises(PodError) as err:
        step_of(p)
    return err.value


ANN = "metadata", "annotations"


@pytest.mark.parametrize(
    ("mutate", "reason", "fragment"),
    [
        (
            lambda p: p["metadata"]["annotations"].update({"workflows.argoproj.io/outputs": "{not json"}),
            Reason.MALFORMED_ANNOTATION,
            "workflows.argoproj.io/outputs is not valid JSON",
        ),
        (
            lambda p: p["metadata"]["annotations"].update({"pipelines.kubeflow.org/component_spec": "[1"}),
            Reason.MALFORMED_ANNOTATION,
            "component_spec is not valid JSON",
        ),
        (
            lambda p: [e.update(value="{") for e in _template_env(p)],
            Reason.MALFORMED_TEMPLATE,
            "ARGO_TEMPLATE",
        ),
        (
            lambda p: [c.update(env=[]) for c in p["spec"]["containers"] + p["spec"]["initContainers"]],
            Reason.TEMPLATE_MISSING,
            "no Argo template",
        ),
        (lambda p: p["metadata"].pop("ownerReferences"), Reason.NO_WORKFLOW_OWNER, "ownerReference"),
        (
            lambda p: p["metadata"].update(labels={"workflows.argoproj.io/workflow": 5}),
            Reason.MALFORMED_POD,
            "metadata.labels",
        ),
        (
            lambda p: p["metadata"]["annotations"].update(
                {
                    "workflows.argoproj.io/outputs": json.dumps(
                        {"artifacts": [{"name": "x", "s4": {"key": "k"}}]}
                    )
                }
            ),
            Reason.UNKNOWN_ARTIFACT_KIND,
            "unknown location 's4'",
        ),
        (
            lambda p: p["metadata"]["annotations"].update(
                {"pipelines.kubeflow.org/arguments.parameters": json.dumps({"big": "x" * 1_000_000})}
            ),
            Reason.VALUE_TOO_LARGE,
            "limit",
        ),
        (
            lambda p: p["metadata"]["annotations"].update({"workflows.argoproj.io/outputs": "[" * 1_100_000}),
            Reason.VALUE_TOO_LARGE,
            "limit",
        ),
        (
            lambda p: p["metadata"]["annotations"].update(
                {"workflows.argoproj.io/outputs": '{"artifacts": 3}'}
            ),
            Reason.MALFORMED_ANNOTATION,
            "artifacts must be named objects",
        ),
    ],
)
def test_malformed_input_is_one_clear_error(mutate: object, reason: Reason, fragment: str) -> None:
    error = _corrupt(mutate)
    assert error.reason is reason
    assert fragment in error.message
    assert "\n" not in error.message


def test_long_keys_stay_within_mlmd_limits_and_unique() -> None:
    a = keys.execution_key("ns", "u" * 36, "w" * 300 + "-1")
    b = keys.execution_key("ns", "u" * 36, "w" * 300 + "-2")
    assert len(a) <= 255 and len(b) <= 255 and a != b
