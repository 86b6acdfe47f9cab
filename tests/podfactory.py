"""Hand-built KFP v1 step pods, shaped as docs/argo-anatomy.md describes them.

Used by the unit tests of the pure layer and the store; the simulator builds
whole workflows for the end-to-end tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reconcile.argo import fnv32a

ARCHIVE = {
    "archiveLogs": True,
    "s3": {
        "endpoint": "minio-service.kubeflow:9000",
        "bucket": "mlpipeline",
        "insecure": True,
        "accessKeySecret": {"name": "mlpipeline-minio-artifact", "key": "accesskey"},
        "secretKeySecret": {"name": "mlpipeline-minio-artifact", "key": "secretkey"},
    },
}


@dataclass
class Step:
    """One container step of a workflow, with its artifacts wired by name."""

    workflow: str
    template: str
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> producer "template:output"
    outputs: tuple[str, ...] = ("out",)
    parameters: dict[str, Any] = field(default_factory=dict)
    namespace: str = "kubeflow"
    workflow_uid: str = "9b2d4e6f-1a3c-4b5d-8e7f-0a1b2c3d4e5f"

    @property
    def node_name(self) -> str:
        return f"{self.workflow}.{self.template}"

    @property
    def node_id(self) -> str:
        return f"{self.workflow}-{fnv32a(self.node_name)}"

    def pod_name(self, scheme: str = "v2") -> str:
        suffix = self.node_id.rsplit("-", 1)[1]
        return self.node_id if scheme == "v1" else f"{self.workflow}-{self.template}-{suffix}"

    def key_prefix(self, scheme: str = "v2") -> str:
        return f"artifacts/{self.workflow}/2024/05/01/{self.pod_name(scheme)}"

    def output_key(self, output: str, scheme: str = "v2") -> str:
        return f"{self.key_prefix(scheme)}/{self.template}-{output}.tgz"


def component_spec(step: Step) -> str:
    spec = {
        "name": step.template.replace("-", " ").title(),
        "inputs": [{"name": n} for n in step.inputs]
        + [{"name": p, "type": "String"} for p in step.parameters],
        "outputs": [{"name": o, "type": "Dataset" if o == "out" else "Model"} for o in step.outputs],
        "implementation": {"container": {"image": "python:3.9"}},
    }
    return json.dumps(spec, sort_keys=True)


def pod(
    step: Step,
    steps_by_template: dict[str, Step] | None = None,
    *,
    phase: str = "Succeeded",
    profile: str = "3.5",
    outputs_annotation: bool | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A pod of `step` as Argo `profile` creates it (outputs annotation per profile unless forced)."""
    scheme = "v2" if profile in ("3.5", "3.6") else "v1"
    steps_by_template = steps_by_template or {}
    input_artifacts = []
    for name, source in step.inputs.items():
        producer_template, output = source.split(":")
        producer = steps_by_template[producer_template]
        input_artifacts.append(
            {
                "name": f"{producer_template}-{output}",
                "path": f"/tmp/inputs/{name}/data",
                "s3": {"key": producer.output_key(output, scheme)},
            }
        )
    archive = json.loads(json.dumps(ARCHIVE))
    archive["s3"]["key"] = step.key_prefix(scheme)
    template = {
        "name": step.template,
        "inputs": {
            "parameters": [{"name": k, "value": str(v)} for k, v in step.parameters.items()],
            "artifacts": input_artifacts,
        },
        "outputs": {
            "artifacts": [
                {"name": f"{step.template}-{o}", "path": f"/tmp/outputs/{o}/data"} for o in step.outputs
            ]
        },
        "metadata": {"annotations": {}, "labels": {}},
        "container": {"name": "", "image": "python:3.9", "command": ["sh", "-ec", "true"]},
        "archiveLocation": archive,
    }
    template_json = json.dumps(template)
    meta_annotations = {
        "workflows.argoproj.io/node-name": step.node_name,
        "pipelines.kubeflow.org/component_spec": component_spec(step),
        "pipelines.kubeflow.org/component_ref": "{}",
        "pipelines.kubeflow.org/arguments.parameters": json.dumps(step.parameters),
        "sidecar.istio.io/inject": "false",
    }
    if profile != "3.1":
        meta_annotations["workflows.argoproj.io/node-id"] = step.node_id
        meta_annotations["kubectl.kubernetes.io/default-container"] = "main"
    else:
        meta_annotations["workflows.argoproj.io/template"] = template_json
    if outputs_annotation is None:
        outputs_annotation = profile in ("3.1", "3.3")
    if outputs_annotation and phase in ("Succeeded", "Failed"):
        artifacts = [
            {
                "name": f"{step.template}-{o}",
                "path": f"/tmp/outputs/{o}/data",
                "s3": {"key": step.output_key(o, scheme)},
            }
            for o in step.outputs
        ]
        artifacts.append({"name": "main-logs", "s3": {"key": f"{step.key_prefix(scheme)}/main.log"}})
        meta_annotations["workflows.argoproj.io/outputs"] = json.dumps({"artifacts": artifacts})
    meta_annotations.update(annotations or {})
    env_template = [] if profile == "3.1" else [{"name": "ARGO_TEMPLATE", "value": template_json}]
    containers = [
        {
            "name": "wait",
            "image": "quay.io/argoproj/argoexec:v3.5.14",
            "env": [] if profile == "3.6" else env_template,
        },
        {
            "name": "main",
            "image": "python:3.9",
            "command": ["/var/run/argo/argoexec", "emissary", "--", "sh"],
            "env": [] if profile == "3.6" else env_template,
        },
    ]
    init = (
        []
        if profile == "3.1"
        else [{"name": "init", "image": "quay.io/argoproj/argoexec", "env": env_template}]
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": step.pod_name(scheme),
            "namespace": step.namespace,
            "uid": f"uid-{step.node_id}",
            "labels": {
                "workflows.argoproj.io/workflow": step.workflow,
                "workflows.argoproj.io/completed": "true" if phase in ("Succeeded", "Failed") else "false",
                "pipelines.kubeflow.org/kfp_sdk_version": "1.8.22",
                "pipelines.kubeflow.org/pipeline-sdk-type": "kfp",
                "pipelines.kubeflow.org/enable_caching": "true",
                **(labels or {}),
            },
            "annotations": meta_annotations,
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Workflow",
                    "name": step.workflow,
                    "uid": step.workflow_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"initContainers": init, "containers": containers},
        "status": {"phase": phase},
    }


def chain(workflow: str, length: int, **kw: Any) -> list[Step]:
    """A linear pipeline: step i consumes step i-1's `out`."""
    steps = []
    for i in range(length):
        inputs = {"data": f"step-{i - 1}:out"} if i else {}
        steps.append(Step(workflow, f"step-{i}", inputs=inputs, parameters={"n": i}, **kw))
    return steps


def pods_of(steps: list[Step], **kw: Any) -> list[dict[str, Any]]:
    by_template = {s.template: s for s in steps}
    return [pod(s, by_template, **kw) for s in steps]
