"""Facts about Argo's objects, read from plain JSON (docs/argo-anatomy.md)."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

from reconcile import conventions as c
from reconcile.errors import PodError, Reason
from reconcile.jsontext import MAX_JSON_DEPTH, json_depth_exceeds, parse_json
from reconcile.values import MAX_NAME_CHARS, checked_text

JSON = dict[str, Any]

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})
TERMINAL_NODE_PHASES = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})
# Argo compresses `status.nodes` only past ~1 MB (a Workflow is at most etcd's 1.5 MiB object, and
# compression is about tenfold), so the inflated text is bounded far above a string value.
MAX_NODES_JSON_BYTES = 64 * 1024 * 1024


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


POD_NAME_FORMAT_ANNOTATION = "workflows.argoproj.io/pod-name-format"


def pod_name_scheme(workflow_annotations: dict[str, str]) -> str:
    """The pod-name scheme (`v1` or `v2`) a Workflow's pods were named under.

    As Argo's `GetWorkflowPodNameVersion` (3.4-3.6): the `pod-name-format`
    annotation says `v1` or `v2`, and any other value means Argo's default,
    v2. Without the annotation Argo falls back to its controller's POD_NAMES
    variable, which the Workflow does not show: v1 is assumed, since Argo
    stamps the annotation from 3.4 on and older versions named pods v1.
    """
    value = workflow_annotations.get(POD_NAME_FORMAT_ANNOTATION)
    if value is None:
        return "v1"
    return "v1" if value == "v1" else "v2"


def pod_name_for(
    workflow_name: str, template_name: str, node_id: str, scheme: str, node_name: str | None = None
) -> str:
    """The pod name Argo gives a node under pod-name scheme `v1` or `v2` (`GeneratePodName`).

    v2 is `<wf>-<template>-<fnv32a(node name)>` with the prefix cut to 242
    characters, or `<wf>-<hash>` for an empty template name. The hash is that
    of the node name (`node_name`); without it, the node id's own suffix,
    which Argo computed from the same name.
    """
    if scheme == "v1" or node_id == workflow_name:
        return node_id
    suffix = str(fnv32a(node_name)) if node_name else node_id[len(workflow_name) + 1 :]
    if not template_name:
        return f"{workflow_name}-{suffix}"
    prefix = f"{workflow_name}-{template_name}"[:242]
    return f"{prefix}-{suffix}"


def parse_json_text(text: Any, what: str, reason: Reason, max_bytes: int = c.MAX_STRING_VALUE_BYTES) -> Any:
    """JSON read from a pod or Workflow: bounded in size and depth, one clear PodError otherwise."""
    return parse_json(text, what, reason, max_bytes)


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


def _dict_or_empty(value: Any, what: str) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PodError(Reason.MALFORMED_POD, f"{what} is not an object")
    return value


def _containers(value: Any, what: str) -> list[JSON]:
    """Containers whose fields the pass reads (name, command, env) have the right types."""
    containers = _list_of_dicts(value, what)
    for i, container in enumerate(containers):
        where = f"{what}[{i}]"
        if not isinstance(container.get("name", ""), str):
            raise PodError(Reason.MALFORMED_POD, f"{where}.name is not a string")
        command = container.get("command")
        if command is not None and not (
            isinstance(command, list) and all(isinstance(arg, str) for arg in command)
        ):
            raise PodError(Reason.MALFORMED_POD, f"{where}.command is not a list of strings")
        for var in _list_of_dicts(container.get("env"), f"{where}.env"):
            if not isinstance(var.get("name"), str):
                raise PodError(Reason.MALFORMED_POD, f"{where}.env has an entry without a string name")
    return containers


def _identity(value: Any, what: str) -> str:
    """A string that becomes part of a record's key or name: stored unchanged, or a PodError."""
    return checked_text(value, what, max_chars=MAX_NAME_CHARS)


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
        """Validate the shape of a pod as `kubectl get pod -o json` prints it.

        Raises PodError, and nothing else, for any input: a wrong type anywhere the pass
        reads, JSON nested deeper than MAX_JSON_DEPTH, or a name, namespace, workflow
        label, node id or owner uid that MLMD could not store unchanged.
        """
        if not isinstance(obj, dict):
            raise PodError(Reason.MALFORMED_POD, "pod is not a JSON object")
        if json_depth_exceeds(obj):
            raise PodError(Reason.MALFORMED_POD, f"pod is nested deeper than {MAX_JSON_DEPTH} levels")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise PodError(Reason.MALFORMED_POD, "pod has no metadata")
        name, namespace = meta.get("name"), meta.get("namespace", "default")
        if not isinstance(name, str) or not name or not isinstance(namespace, str):
            raise PodError(Reason.MALFORMED_POD, "pod has no metadata.name/namespace")
        _identity(name, "metadata.name")
        _identity(namespace, "metadata.namespace")
        labels = _str_map(meta.get("labels"), "metadata.labels")
        annotations = _str_map(meta.get("annotations"), "metadata.annotations")
        workflow_name = labels.get(c.ARGO_WORKFLOW_LABEL, "")
        if not workflow_name:
            raise PodError(Reason.MALFORMED_POD, f"pod has no {c.ARGO_WORKFLOW_LABEL} label")
        _identity(workflow_name, f"label {c.ARGO_WORKFLOW_LABEL}")
        for key in (c.ARGO_NODE_ID_ANNOTATION, c.ARGO_NODE_NAME_ANNOTATION):
            if key in annotations:
                checked_text(annotations[key], f"annotation {key}")
        workflow_uid = None
        for ref in _list_of_dicts(meta.get("ownerReferences"), "metadata.ownerReferences"):
            if ref.get("kind") == "Workflow" and isinstance(ref.get("uid"), str):
                workflow_uid = _identity(ref["uid"], "the Workflow ownerReference's uid")
                break
        spec = _dict_or_empty(obj.get("spec"), "spec")
        status = _dict_or_empty(obj.get("status"), "status")
        phase = status.get("phase", "Pending")
        if not isinstance(phase, str):
            raise PodError(Reason.MALFORMED_POD, "status.phase is not a string")
        return cls(
            namespace=namespace,
            name=name,
            labels=labels,
            annotations=annotations,
            phase=phase,
            workflow_name=workflow_name,
            workflow_uid=workflow_uid,
            containers=_containers(spec.get("containers"), "spec.containers"),
            init_containers=_containers(spec.get("initContainers"), "spec.initContainers"),
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
                if env.get("name") != c.ARGO_TEMPLATE_ENV:
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
    meta = taskresult.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict):
        return True
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


def offloaded_nodes_version(workflow: JSON) -> str | None:
    """The offload version when a Workflow's nodes live only in Argo's node-status table.

    With node-status offloading on, Argo keeps a large Workflow's nodes in its
    database (`argo_workflows` by default) and leaves `status.nodes` and
    `status.compressedNodes` empty, naming the stored copy in
    `status.offloadNodeStatusVersion`. None when the Workflow carries its nodes
    (or never had them offloaded).
    """
    status = workflow.get("status")
    if not isinstance(status, dict):
        return None
    version = status.get("offloadNodeStatusVersion")
    if not isinstance(version, str) or not version:
        return None
    if status.get("nodes") or status.get("compressedNodes"):
        return None  # hydrated: the nodes are here after all
    return version


def workflow_nodes(workflow: JSON) -> dict[str, JSON]:
    """A Workflow's `status.nodes` by node id, inflating `status.compressedNodes` (gzip+base64)."""
    status = workflow.get("status")
    status = status if isinstance(status, dict) else {}
    nodes = status.get("nodes")
    if not nodes and status.get("compressedNodes"):
        nodes = parse_json_text(
            _inflated(status["compressedNodes"]),
            "status.compressedNodes",
            Reason.MALFORMED_POD,
            MAX_NODES_JSON_BYTES,
        )
    if not isinstance(nodes, dict):
        return {}
    return {k: v for k, v in nodes.items() if isinstance(v, dict)}


def _inflated(compressed: Any) -> str:
    """gzip+base64 text inflated, refusing more than MAX_NODES_JSON_BYTES (a decompression bomb)."""
    if not isinstance(compressed, str):
        raise PodError(Reason.MALFORMED_POD, "status.compressedNodes is not a string")
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
        data = inflater.decompress(base64.b64decode(compressed), MAX_NODES_JSON_BYTES + 1)
        if len(data) > MAX_NODES_JSON_BYTES:
            raise PodError(
                Reason.VALUE_TOO_LARGE,
                f"status.compressedNodes inflates to more than {MAX_NODES_JSON_BYTES} bytes",
            )
        return data.decode("utf-8")
    except (ValueError, zlib.error) as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise PodError(Reason.MALFORMED_POD, f"status.compressedNodes cannot be inflated ({exc})") from None
