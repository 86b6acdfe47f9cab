"""Records written the way KFP's upstream metadata-writer writes them (contract §1).

No external_id, separate non-atomic calls, pod labels pointing at the ids.
Tests use it to build the state a migration from metadata-writer starts from. `store` is
any MLMD client: the embedded library, or a gRPC client of any server version (each
old server writes with its own release's library, as it did in a KFP 1.7 or 1.8 cluster).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.argo import PodView, template_of
from reconcile.desired import output_name_to_argo


def _type(store: Any, kind: str, proto: Any) -> int:
    try:
        return getattr(store, f"get_{kind}_type")(proto.name).id
    except errors.NotFoundError:
        return getattr(store, f"put_{kind}_type")(proto)


def write_like_upstream(
    store: Any, pod_json: dict[str, Any], *, outputs: bool = True, key_only_bucket: str = "mlpipeline"
) -> dict[str, Any]:
    """Record one pod as metadata-writer would; return the labels/annotations it patches.

    `key_only_bucket` is the bucket it puts in the URI of an artifact Argo reports by key
    only: "" writes `minio:///<key>`, as the writer of KFP 1.8.5 and later does (contract §1
    Phase B.2); the default stands for a writer that knew the bucket.
    """
    pod = PodView.from_json(pod_json)
    wf = pod.workflow_name
    template = template_of(pod)
    ctype = _type(
        store,
        "context",
        pb.ContextType(name="KfpRun", properties={"pipeline_name": pb.STRING, "run_id": pb.STRING}),
    )
    found = store.get_context_by_type_and_name("KfpRun", wf)
    if found is None:
        ctx = pb.Context(type_id=ctype, name=wf)
        ctx.properties["pipeline_name"].string_value = wf
        ctx.properties["run_id"].string_value = wf
        context_id = store.put_contexts([ctx])[0]
    else:
        context_id = found.id
    spec_text = pod.annotations["pipelines.kubeflow.org/component_spec"]
    spec = json.loads(spec_text)
    name = spec.get("name") or template["name"]
    type_name = f"components.{name}@sha256={hashlib.sha256(spec_text.encode()).hexdigest()}"
    etype = _type(
        store,
        "execution",
        pb.ExecutionType(
            name=type_name,
            properties={"pipeline_name": pb.STRING, "run_id": pb.STRING, "component_id": pb.STRING},
        ),
    )
    execution = pb.Execution(type_id=etype)
    execution.properties["pipeline_name"].string_value = wf
    execution.properties["run_id"].string_value = wf
    execution.properties["component_id"].string_value = name
    execution.custom_properties["kfp_pod_name"].string_value = pod.name
    for key, value in json.loads(
        pod.annotations.get("pipelines.kubeflow.org/arguments.parameters", "{}")
    ).items():
        execution.custom_properties[f"input:{key}"].string_value = str(value)
    execution_id = store.put_executions([execution])[0]
    store.put_attributions_and_associations(
        [], [pb.Association(execution_id=execution_id, context_id=context_id)]
    )
    inputs = []
    for art in template.get("inputs", {}).get("artifacts", []):
        s3 = art["s3"]
        uri = f"minio://{s3.get('bucket', key_only_bucket)}/{s3['key']}"
        found_artifacts = store.get_artifacts_by_uri(uri)
        if not found_artifacts:
            continue
        key = art["path"].removeprefix("/tmp/inputs/").removesuffix("/data")
        event = pb.Event(execution_id=execution_id, artifact_id=found_artifacts[-1].id, type=pb.Event.INPUT)
        event.path.steps.add().key = key
        store.put_events([event])
        inputs.append({"id": found_artifacts[-1].id, "name": key, "uri": uri})
    labels = {
        "pipelines.kubeflow.org/metadata_execution_id": str(execution_id),
        "pipelines.kubeflow.org/metadata_context_id": str(context_id),
    }
    annotations = {"pipelines.kubeflow.org/metadata_input_artifact_ids": json.dumps(inputs)}
    if outputs and "workflows.argoproj.io/outputs" in pod.annotations:
        types = {
            output_name_to_argo(o["name"]): o.get("type") for o in spec.get("outputs", []) if o.get("type")
        }
        written = []
        for art in json.loads(pod.annotations["workflows.argoproj.io/outputs"])["artifacts"]:
            out_name = art["name"].removeprefix(template["name"] + "-")
            uri = f"minio://{art['s3'].get('bucket', key_only_bucket)}/{art['s3']['key']}"
            atype = _type(store, "artifact", pb.ArtifactType(name=types.get(out_name, "NoType")))
            artifact = pb.Artifact(type_id=atype, uri=uri)
            artifact.custom_properties["name"].string_value = out_name
            artifact.custom_properties["pipeline_name"].string_value = wf
            artifact.custom_properties["run_id"].string_value = wf
            artifact.custom_properties["argo_artifact"].string_value = json.dumps(art, sort_keys=True)
            artifact_id = store.put_artifacts([artifact])[0]
            event = pb.Event(execution_id=execution_id, artifact_id=artifact_id, type=pb.Event.OUTPUT)
            event.path.steps.add().key = out_name
            store.put_events([event])
            store.put_attributions_and_associations(
                [pb.Attribution(artifact_id=artifact_id, context_id=context_id)], []
            )
            written.append(
                {"id": artifact_id, "name": out_name, "uri": uri, "type": types.get(out_name, "NoType")}
            )
        labels["pipelines.kubeflow.org/metadata_written"] = "true"
        annotations["pipelines.kubeflow.org/metadata_output_artifact_ids"] = json.dumps(written)
    return {"labels": labels, "annotations": annotations}
