"""Golden tests: the project's pipelines run by the simulator, recorded field by field as
docs/kfp-contract.md says the KFP UI and cache server need them -- with the current library
on every Argo profile, and through the old MLMD servers (1.0.0, 1.5.0, 1.14.0), where what
the UI reads must be exactly what the current library records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from reconcile.argo import workflow_nodes
from reconcile.options import ReconcileOptions
from sandbox import pipelines
from sandbox.simulator import simulate
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import type_name, ui_view
from tests.store.test_converge import apply_patches

# Between them: chains, fan-out/in through a volume, exit handlers, raw ContainerOps, nested
# conditions, every way of passing data, directories, sanitised names and UI outputs, nested
# static loops, sidecars, and steps owned by TFX or KFP v2 (which must get no records).
PIPELINES = [
    "chain10",
    "two_step",
    "fan_out_fan_in",
    "exit_handler",
    "raw_container_ops",
    "conditions",
    "data_passing",
    "output_directory",
    "odd_names",
    "nested_loops",
    "pod_settings",
    "tfx_and_v2_steps",
]
KFP = "pipelines.kubeflow.org/"


def value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@pytest.mark.parametrize("profile", ["3.1", "3.3", "3.5", "3.6"])
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_recorded_per_contract(pipeline: str, profile: str, tmp_path: Path) -> None:
    recorded_per_contract(
        open_store(f"sqlite:///{tmp_path}/m.sqlite"), simulate(pipelines.load(pipeline), profile, seed=3)
    )


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_recorded_per_contract_on_old_mlmd(pipeline: str, old_mlmd_url: str, tmp_path: Path) -> None:
    run = simulate(pipelines.load(pipeline), "3.5", seed=3)
    store = open_store(old_mlmd_url)
    recorded_per_contract(store, run)
    reference = open_store(f"sqlite:///{tmp_path}/reference.sqlite")
    recorded_per_contract(reference, run)
    assert ui_view(store) == ui_view(reference)


def recorded_per_contract(store: Any, run: Any) -> None:
    """Record the run's finished steps in one pass, check a second pass is empty, and check
    every record and pod label field by field."""
    pods = [json.loads(json.dumps(p)) for p in run.pods if p["status"]["phase"] in ("Succeeded", "Failed")]
    nodes = {(run.namespace, k): v for k, v in workflow_nodes(run.workflow).items()}
    report = run_pass([Chunk(pods, nodes=nodes)], MetadataStore.over(store), ReconcileOptions())
    assert report.errors == []
    assert report.pending_inputs == 0 and report.pending_outputs == 0
    apply_patches(pods, report)
    again = run_pass([Chunk(pods, nodes=nodes)], MetadataStore.over(store), ReconcileOptions())
    assert sum(again.actions.values()) == 0 and again.pod_patches == []

    [context] = store.get_contexts()
    assert (type_name(store, context, "context"), context.name) == ("KfpRun", run.name)
    assert {k: value(v) for k, v in context.properties.items()} == {
        "pipeline_name": run.name,
        "run_id": run.name,
    }
    associated = {e.id for e in store.get_executions_by_context(context.id)}
    attributed = {a.id for a in store.get_artifacts_by_context(context.id)}
    executions = {e.id: e for e in store.get_executions()}
    artifacts = {a.id: a for a in store.get_artifacts()}
    events = store.get_events_by_execution_ids(list(executions))

    recorded = [
        p
        for p in pods
        if "tfx" not in p["metadata"]["labels"].get(KFP + "pipeline-sdk-type", "")
        and p["metadata"]["annotations"].get(KFP + "v2_component") != "true"
    ]
    assert len(executions) == len(recorded) and set(executions) == associated
    for pod in pods:
        if pod not in recorded:  # another writer's step: not ours to label either
            assert not any(k.startswith(KFP + "metadata_") for k in pod["metadata"]["labels"])
    for pod in recorded:
        meta = pod["metadata"]
        execution = executions[int(meta["labels"][KFP + "metadata_execution_id"])]
        custom = {k: value(v) for k, v in execution.custom_properties.items()}
        props = {k: value(v) for k, v in execution.properties.items()}
        assert custom["kfp_pod_name"] == meta["name"]
        node_id = meta["annotations"].get("workflows.argoproj.io/node-id", meta["name"])
        assert custom["pod_name"] == node_id
        assert props["pipeline_name"] == props["run_id"] == run.name
        spec_text = meta["annotations"].get(KFP + "component_spec")
        if spec_text:
            spec = json.loads(spec_text)
            digest = hashlib.sha256(spec_text.encode()).hexdigest()
            assert type_name(store, execution, "execution") == f"components.{spec['name']}@sha256={digest}"
            assert props["component_id"] == spec["name"]
            args = meta["annotations"].get(KFP + "arguments.parameters")
            try:
                expected_inputs = {f"input:{k}" for k in json.loads(args or "{}")}
            except ValueError:
                expected_inputs = set()  # Argo's loop substitution broke the JSON: a warning
            assert {k for k in custom if k.startswith("input:")} == expected_inputs
        else:
            assert type_name(store, execution, "execution").startswith("components.")
        assert meta["labels"][KFP + "metadata_context_id"] == str(context.id)
        assert meta["labels"][KFP + "metadata_written"] == "true"

        mine = [e for e in events if e.execution_id == execution.id]
        outputs = json.loads(meta["annotations"][KFP + "metadata_output_artifact_ids"])
        node = nodes[(run.namespace, node_id)]
        reported = [a for a in (node.get("outputs") or {}).get("artifacts", []) if "s3" in a]
        assert len(outputs) == len(reported)
        for out in outputs:
            artifact = artifacts[out["id"]]
            assert artifact.id in attributed
            assert artifact.uri == out["uri"] and artifact.uri.startswith("minio://mlpipeline/")
            assert type_name(store, artifact, "artifact") == out["type"]
            acustom = {k: value(v) for k, v in artifact.custom_properties.items()}
            assert acustom["name"] == out["name"]
            assert acustom["pipeline_name"] == acustom["run_id"] == run.name
            assert json.loads(acustom["argo_artifact"])["s3"]["key"] in artifact.uri
            assert [e.path.steps[0].key for e in mine if e.artifact_id == artifact.id and e.type == 4] == [
                out["name"]
            ]
        inputs = json.loads(meta["annotations"][KFP + "metadata_input_artifact_ids"])
        for link in inputs:
            assert [e.path.steps[0].key for e in mine if e.artifact_id == link["id"] and e.type == 3] == [
                link["name"]
            ]
            assert artifacts[link["id"]].uri == link["uri"]
