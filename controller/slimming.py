"""Slimming: a pod or Workflow cut down to what a pass reads, as each list page arrives.

Parsed, an Argo 3.5 KFP pod is ~35 KB of Python objects (its template sits on three
containers): a full pass at 50,000 pods would hold ~1.8 GB of them, and even a chunk
~70 MB. Cut down, a pod keeps its metadata and one copy of its template: a few KB.
Anything not shaped as expected is kept as it is, so validation reports it exactly as
it would the whole object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconcile import conventions as c
from reconcile.argo import JSON, workflow_nodes
from reconcile.errors import PodError

# Of the pod's metadata, what the pass reads (PodView, pod patches, Events).
_POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations", "ownerReferences")


def _slim_container(container: Any, seen: dict[str, str]) -> Any:
    if not isinstance(container, dict):
        return container
    env = container.get("env")
    slim: JSON = {k: container[k] for k in ("name", "command") if k in container}
    if isinstance(env, list):
        kept = []
        for var in env:
            if isinstance(var, dict) and var.get("name") == c.ARGO_TEMPLATE_ENV:
                value = var.get("value")
                if isinstance(value, str):
                    # Argo 3.2-3.5 put the same template on every container: keep one string.
                    var = {**var, "value": seen.setdefault(value, value)}
                kept.append(var)
            elif not isinstance(var, dict):
                kept.append(var)  # malformed: left for validation to report
        slim["env"] = kept
    elif env is not None:
        slim["env"] = env
    return slim


def slim_pod(pod: JSON) -> JSON:
    """A pod cut down to the fields the pass reads (PodView, classify, template, patches).

    Of the metadata, name, namespace, uid, resourceVersion, labels, annotations and
    ownerReferences; of the spec, each container's name, command and ARGO_TEMPLATE
    env (one copy of the template); of the status, the phase. Anything not shaped as
    expected is kept as it is, so validation reports it exactly as before.
    """
    if not isinstance(pod, dict):
        return pod
    slim: JSON = {k: v for k, v in pod.items() if k not in ("spec", "status", "metadata")}
    meta = pod.get("metadata")
    if isinstance(meta, dict):
        slim["metadata"] = {k: meta[k] for k in _POD_METADATA if k in meta}
    elif "metadata" in pod:
        slim["metadata"] = meta
    spec = pod.get("spec")
    if isinstance(spec, dict):
        seen: dict[str, str] = {}
        slim_spec: JSON = {}
        for part in ("initContainers", "containers"):
            containers = spec.get(part)
            if isinstance(containers, list):
                slim_spec[part] = [_slim_container(ct, seen) for ct in containers]
            elif part in spec:
                slim_spec[part] = containers
        slim["spec"] = slim_spec
    elif "spec" in pod:
        slim["spec"] = spec
    status = pod.get("status")
    if isinstance(status, dict):
        slim["status"] = {"phase": status["phase"]} if "phase" in status else {}
    elif "status" in pod:
        slim["status"] = status
    return slim


def slim_node(node: JSON) -> JSON:
    """A `status.nodes` entry cut down to what a step's records read.

    id, name, type, phase, templateName and, of the outputs, the artifacts.
    """
    slim = {k: node[k] for k in ("id", "name", "type", "phase", "templateName") if k in node}
    outputs = node.get("outputs")
    if isinstance(outputs, dict):
        # Of the outputs, a step's records read only the artifacts (and whether there are any).
        slim["outputs"] = {"artifacts": outputs.get("artifacts", [])} if outputs else {}
    elif "outputs" in node:
        slim["outputs"] = outputs  # malformed: left for validation to report
    return slim


def slim_workflow(present: set[tuple[str, str]] | None) -> Callable[[JSON], JSON]:
    """A Workflow transform: its nodes only, unless a step's pod is gone (then kept whole).

    `present` holds (namespace, node id) of the pods listed. A Workflow with a Pod node
    that has no pod is kept whole: its steps are rebuilt from the full object. With
    `present` None, every Workflow is cut down.
    """

    def slim(workflow: JSON) -> JSON:
        if not isinstance(workflow, dict):
            return workflow
        try:
            nodes = workflow_nodes(workflow)
        except PodError:
            return workflow  # reported when the Workflow is read (controller/sources.py)
        meta = workflow.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        if present is not None and any(
            n.get("type") == "Pod" and (namespace, i) not in present for i, n in nodes.items()
        ):
            return workflow
        kept = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "labels") if k in meta}
        return {"metadata": kept, "status": {"nodes": {i: slim_node(n) for i, n in nodes.items()}}}

    return slim
