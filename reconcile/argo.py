"""Facts about Argo's objects, read from plain JSON (docs/argo-anatomy.md)."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from reconcile import conventions as c
from reconcile.errors import PodError, Reason

JSON = dict[str, Any]

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})
TERMINAL_NODE_PHASES = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})


def fnv32a(text: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes, as Argo hashes node names."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def node_id_for(workflow_name: str, node_name: str) -> str:
    """Argo's node id: the workflow name for the root node, else `<wf>-<fnv32a(name)>`."""
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


def pod_name_for(workflow_name: str, template_name: str, node_id: str, scheme: str) -> str:
    """The pod name Argo gives a node under pod-name scheme `v1` or `v2`."""
    if scheme == "v1" or node_id == workflow_name:
        return node_id
    suffix = node_id[len(workflow_name) + 1 :]
    if not template_name:
        return f"{workflow_name}-{suffix}"
    prefix = f"{workflow_name}-{template_name}"[:242]
    return f"{prefix}-{suffix}"


def parse_json_text(text: Any, what: str, reason: Reason) -> Any:
    """json.loads with one clear PodError naming what could not be read."""
    if not isinstance(text, str):
        raise PodError(reason, f"{what} is not a string")
    if len(text.encode("utf-8", "surrogatepass")) > c.MAX_STRING_VALUE_BYTES:
        raise PodError(
            Reason.VALUE_TOO_LARGE,
            f"{what} is {len(text)} characters; the limit is {c.MAX_STRING_VALUE_BYTES} bytes",
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PodError(reason, f"{what} is not valid JSON ({exc})") from None


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise PodError(Reason.MALFORMED_POD, f"{what} is not a map of strings")
    return value


def _list_of_dicts(value: Any, what: str) -> list[JSON]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise PodError(Reason.MALFORMED_POD, f"{what} is not a list of objects")
    return value


@dataclass(frozen=True)
class PodView:
    """The fields of a pod the reconciler reads, validated once."""

    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    phase: str
    workflow_name: str
    workflow_uid: str | None
    containers: list[JSON] = field(repr=False)
    init_containers: list[JSON] = field(repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> PodView:
        """Validate the shape of a pod as `kubectl get pod -o json` prints it."""
        if not isinstance(obj, dict):
            raise PodError(Reason.MALFORMED_POD, "pod is not a JSON object")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise PodError(Reason.MALFORMED_POD, "pod has no metadata")
        name, namespace = meta.get("name"), meta.get("namespace", "default")
        if not isinstance(name, str) or not name or not isinstance(namespace, str):
            raise PodError(Reason.MALFORMED_POD, "pod has no metadata.name/namespace")
        labels = _str_map(meta.get("labels"), "metadata.labels")
        annotations = _str_map(meta.get("annotations"), "metadata.annotations")
        workflow_name = labels.get(c.ARGO_WORKFLOW_LABEL, "")
        if not workflow_name:
            raise PodError(Reason.MALFORMED_POD, f"pod has no {c.ARGO_WORKFLOW_LABEL} label")
        workflow_uid = None
        for ref in _list_of_dicts(meta.get("ownerReferences"), "metadata.ownerReferences"):
            if ref.get("kind") == "Workflow" and isinstance(ref.get("uid"), str):
                workflow_uid = ref["uid"]
                break
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
        phase = status.get("phase", "Pending")
        return cls(
            namespace=namespace,
            name=name,
            labels=labels,
            annotations=annotations,
            phase=phase if isinstance(phase, str) else "Unknown",
            workflow_name=workflow_name,
            workflow_uid=workflow_uid,
            containers=_list_of_dicts(spec.get("containers"), "spec.containers"),
            init_containers=_list_of_dicts(spec.get("initContainers"), "spec.initContainers"),
        )

    @property
    def finished(self) -> bool:
        """The pod ran to an end (Succeeded or Failed)."""
        return self.phase in TERMINAL_POD_PHASES

    def node_id(self) -> str:
        """The Argo node id: the `node-id` annotation (>= 3.2), else hashed from the node name."""
        node_id = self.annotations.get(c.ARGO_NODE_ID_ANNOTATION)
        if node_id:
            return node_id
        node_name = self.annotations.get(c.ARGO_NODE_NAME_ANNOTATION)
        if node_name:
            return node_id_for(self.workflow_name, node_name)
        # Argo <= 3.3 names a pod after its node id (pod-name scheme v1).
        return self.name


def template_of(pod: PodView) -> JSON:
    """The processed Argo template a pod runs, wherever this Argo version put it.

    <= 3.1: the `workflows.argoproj.io/template` annotation; 3.2-3.5: the
    ARGO_TEMPLATE env var of every container; >= 3.6: of init containers only,
    possibly `offloaded` to a ConfigMap (reported, never guessed).
    """
    text = pod.annotations.get(c.ARGO_TEMPLATE_ANNOTATION)
    where = f"annotation {c.ARGO_TEMPLATE_ANNOTATION}"
    offloaded = False
    if text is None:
        for container in [*pod.init_containers, *pod.containers]:
            for env in container.get("env") or []:
                if not isinstance(env, dict) or env.get("name") != c.ARGO_TEMPLATE_ENV:
                    continue
                value = env.get("value")
                if value == c.ARGO_TEMPLATE_OFFLOADED:
                    offloaded = True
                    continue
                text = value
                where = f"env {c.ARGO_TEMPLATE_ENV} of container {container.get('name')!r}"
                break
            if text is not None:
                break
    if text is None:
        if offloaded:
            raise PodError(
                Reason.TEMPLATE_OFFLOADED,
                f"{c.ARGO_TEMPLATE_ENV} is offloaded to a ConfigMap; the template is not on the pod",
            )
        raise PodError(
            Reason.TEMPLATE_MISSING,
            f"no Argo template: neither {c.ARGO_TEMPLATE_ANNOTATION} nor {c.ARGO_TEMPLATE_ENV}",
        )
    template = parse_json_text(text, where, Reason.MALFORMED_TEMPLATE)
    if not isinstance(template, dict):
        raise PodError(Reason.MALFORMED_TEMPLATE, f"{where} is not a JSON object")
    return template


def reported_output_artifacts(
    pod: PodView | None,
    taskresult: JSON | None = None,
    node: JSON | None = None,
) -> list[JSON] | None:
    """A finished step's output artifacts, from the first source that has them.

    Order (docs/design.md, pass step 3): the pod's outputs annotation (Argo <= 3.2, or
    3.3-3.5 when RBAC forbids WorkflowTaskResults); the step's
    WorkflowTaskResult (deleted when the workflow completes); the Workflow's
    `status.nodes` entry. None means no source has reported yet.
    """
    if pod is not None and c.ARGO_OUTPUTS_ANNOTATION in pod.annotations:
        outputs = parse_json_text(
            pod.annotations[c.ARGO_OUTPUTS_ANNOTATION],
            f"annotation {c.ARGO_OUTPUTS_ANNOTATION}",
            Reason.MALFORMED_ANNOTATION,
        )
        return _artifacts_of(outputs, f"annotation {c.ARGO_OUTPUTS_ANNOTATION}")
    if taskresult is not None and _taskresult_complete(taskresult):
        return _artifacts_of(taskresult.get("outputs") or {}, "WorkflowTaskResult outputs")
    if node is not None and (node.get("outputs") or node.get("phase") in TERMINAL_NODE_PHASES):
        return _artifacts_of(node.get("outputs") or {}, "status.nodes outputs")
    return None


def _taskresult_complete(taskresult: JSON) -> bool:
    # From 3.5.3 a result exists from the start and is flipped to complete at the end.
    labels = (taskresult.get("metadata") or {}).get("labels") or {}
    return labels.get(c.ARGO_REPORT_OUTPUTS_COMPLETED_LABEL, "true") == "true"


def _artifacts_of(outputs: Any, what: str) -> list[JSON]:
    if not isinstance(outputs, dict):
        raise PodError(Reason.MALFORMED_ANNOTATION, f"{what} is not a JSON object")
    artifacts = outputs.get("artifacts") or []
    if not isinstance(artifacts, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in artifacts
    ):
        raise PodError(Reason.MALFORMED_ANNOTATION, f"{what}: artifacts must be named objects")
    return artifacts


def workflow_nodes(workflow: JSON) -> dict[str, JSON]:
    """A Workflow's `status.nodes` by node id, inflating `status.compressedNodes` (gzip+base64)."""
    status = workflow.get("status") or {}
    nodes = status.get("nodes")
    if not nodes and status.get("compressedNodes"):
        try:
            text = gzip.decompress(base64.b64decode(status["compressedNodes"])).decode("utf-8")
        except (ValueError, OSError) as exc:
            raise PodError(
                Reason.MALFORMED_POD, f"status.compressedNodes cannot be inflated ({exc})"
            ) from None
        nodes = parse_json_text(text, "status.compressedNodes", Reason.MALFORMED_POD)
    if not isinstance(nodes, dict):
        return {}
    return {k: v for k, v in nodes.items() if isinstance(v, dict)}
