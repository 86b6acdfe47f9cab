"""What one pass reads from Kubernetes: pods, WorkflowTaskResults and Workflows.

A full pass reads everything in the configured namespaces; a targeted pass
(triggered by the watch) reads only the named workflows. Outputs then come
from, in order, the pod's annotation, the step's WorkflowTaskResult (while
the workflow runs) and the Workflow's `status.nodes` -- and steps whose pod
is gone are rebuilt from `status.nodes` alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconcile import conventions as c
from reconcile.argo import JSON, node_id_for, workflow_nodes
from reconcile.errors import PodError
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep

log = logging.getLogger(__name__)


@dataclass
class PassInputs:
    """Everything a pass needs, read from the cluster."""

    pods: list[JSON]
    taskresults: dict[tuple[str, str], JSON]  # (namespace, node id) -> result
    nodes: dict[tuple[str, str], JSON]  # (namespace, node id) -> status.nodes entry
    podless_steps: list[DesiredStep]
    # Problems with workflows (not pods): (namespace, name, message).
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    resource_versions: dict[str | None, str] = field(default_factory=dict)  # list RVs for the watch
    workflow_uids: set[str] = field(default_factory=set)  # of the Workflows read


def pod_node_id(pod: JSON) -> tuple[str, str] | None:
    """(namespace, Argo node id) of a pod's step: the keys of `taskresults` and `nodes`."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    namespace = meta.get("namespace", "default")
    node_id = annotations.get(c.ARGO_NODE_ID_ANNOTATION)
    if not node_id and annotations.get(c.ARGO_NODE_NAME_ANNOTATION):
        node_id = node_id_for(labels.get(c.ARGO_WORKFLOW_LABEL, ""), annotations[c.ARGO_NODE_NAME_ANNOTATION])
    return (namespace, node_id or meta.get("name", "")) if isinstance(namespace, str) else None


def _index_taskresults(taskresults: Iterable[JSON]) -> dict[tuple[str, str], JSON]:
    by_step = {}
    for result in taskresults:
        meta = result.get("metadata") or {}
        by_step[(meta.get("namespace", "default"), meta.get("name", ""))] = result
    return by_step


def _add_workflow(
    inputs: PassInputs, workflow: JSON, present: set[tuple[str, str]] | None, options: ReconcileOptions
) -> dict[str, JSON] | None:
    """Index a Workflow's nodes into `inputs`; with `present`, also derive its podless steps.

    Returns the Workflow's nodes, or None when it cannot be read (reported in `inputs`).
    """
    meta = workflow.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "?")
    if isinstance(meta.get("uid"), str):
        inputs.workflow_uids.add(meta["uid"])
    try:
        nodes = workflow_nodes(workflow)
    except PodError as exc:
        inputs.problems.append((namespace, name, exc.message))
        return None
    for node_id, node in nodes.items():
        if node.get("type", "Pod") == "Pod":  # DAG, Steps, Retry... nodes have no pod: no step reads them
            inputs.nodes[(namespace, node_id)] = node
    if present is None:
        return nodes
    gone = {node_id for node_id in nodes if (namespace, node_id) not in present}
    if not any(nodes[n].get("type") == "Pod" for n in gone):
        return nodes
    steps, errors = desired_steps_from_workflow(
        workflow, options, exclude_node_ids={n for n in nodes if n not in gone}
    )
    inputs.podless_steps += steps
    inputs.problems += [(namespace, f"{name}/{node_id}", err.message) for node_id, err in errors]
    return nodes


def assemble(
    pods: list[JSON],
    workflows: Iterable[JSON],
    taskresults: Iterable[JSON],
    options: ReconcileOptions,
) -> PassInputs:
    """Index taskresults and nodes by step, and derive the steps whose pod is gone."""
    present = {key for key in map(pod_node_id, pods) if key is not None}
    inputs = PassInputs(pods=pods, taskresults=_index_taskresults(taskresults), nodes={}, podless_steps=[])
    for workflow in workflows:
        _add_workflow(inputs, workflow, present, options)
    return inputs


# --- slimming: keep only what a pass reads, as each list page arrives -------------
# Parsed, an Argo 3.5 KFP pod is ~35 KB of Python objects (its template sits on three
# containers): `read_all` at 50,000 pods would hold ~1.8 GB of them, and even a chunk
# of `stream_all` ~70 MB. Cut down, a pod keeps its metadata and one copy of its
# template: a few KB.

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


def _slim_node(node: JSON) -> JSON:
    slim = {k: node[k] for k in ("id", "name", "type", "phase", "templateName") if k in node}
    outputs = node.get("outputs")
    if isinstance(outputs, dict):
        # Of the outputs, a step's records read only the artifacts (and whether there are any).
        slim["outputs"] = {"artifacts": outputs.get("artifacts", [])} if outputs else {}
    elif "outputs" in node:
        slim["outputs"] = outputs  # malformed: left for validation to report
    return slim


def slim_workflow(present: set[tuple[str, str]] | None) -> Any:
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
            return workflow  # reported by `assemble`
        meta = workflow.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        if present is not None and any(
            n.get("type") == "Pod" and (namespace, i) not in present for i, n in nodes.items()
        ):
            return workflow
        kept = {k: meta[k] for k in ("name", "namespace", "uid", "labels") if k in meta}
        return {"metadata": kept, "status": {"nodes": {i: _slim_node(n) for i, n in nodes.items()}}}

    return slim


def read_all(kube: Any, namespaces: Sequence[str], options: ReconcileOptions) -> PassInputs:
    """A full pass: every Argo pod, Workflow and WorkflowTaskResult in scope.

    Pods and Workflows are cut down to what the pass reads as each list page
    arrives (`slim_pod`, `slim_workflow`), so memory grows with the cluster
    by a few KB per pod, not by the objects' full size.
    """
    listed = kube.list_pods(namespaces or None, transform=slim_pod)
    present = {key for key in map(pod_node_id, listed.items) if key is not None}
    workflows = kube.list_workflows(namespaces or None, transform=slim_workflow(present))
    taskresults = kube.list_taskresults(namespaces or None)
    inputs = assemble(listed.items, workflows, taskresults, options)
    inputs.resource_versions = dict(listed.resource_versions)
    return inputs


def _workflow_of(pod: JSON) -> tuple[Any, Any]:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    return meta.get("namespace"), labels.get(c.ARGO_WORKFLOW_LABEL)


class _Chunks:
    """Collects listed pods and hands them on in chunks of whole workflows.

    A list comes in namespace/name order and Argo names a step's pod after its
    workflow, so a workflow's pods arrive together; the pods of the last workflow
    seen are held back until the next page, which may hold more of them. (Should
    another workflow's pods sort in between, the workflow is reconciled in two
    chunks; an input whose upstream step comes in the later one links a pass later.)
    """

    def __init__(self, size: int, emit: Callable[[list[JSON]], None]) -> None:
        self.size, self.emit = size, emit
        self.held: list[JSON] = []

    def add(self, page: list[JSON]) -> None:
        self.held.extend(page)
        if len(self.held) < self.size:
            return
        last = _workflow_of(self.held[-1])
        cut = len(self.held)
        while cut > 0 and _workflow_of(self.held[cut - 1]) == last:
            cut -= 1
        if cut == 0:
            return  # one workflow bigger than a chunk: held until it ends, so it stays whole
        ready, self.held = self.held[:cut], self.held[cut:]
        self.emit(ready)

    def flush(self) -> None:
        if self.held:
            ready, self.held = self.held, []
            self.emit(ready)


def stream_all(
    kube: Any,
    namespaces: Sequence[str],
    options: ReconcileOptions,
    on_pods: Callable[[list[JSON], PassInputs], None],
    chunk_pods: int,
) -> PassInputs:
    """A full pass that never holds every pod: what `read_all` reads, handed on in chunks.

    WorkflowTaskResults and the Workflows' `status.nodes` are read first; then the
    pods, cut down as pages arrive (`slim_pod`) and passed to `on_pods(pods, inputs)`
    in chunks of about `chunk_pods`, whole workflows where the list order allows.
    Returns the inputs with `pods` empty and, last, the steps whose pod is gone
    (their Workflows are read again, whole, only then).
    """
    taskresults = _index_taskresults(kube.list_taskresults(namespaces or None))
    inputs = PassInputs(pods=[], taskresults=taskresults, nodes={}, podless_steps=[])
    pod_nodes: dict[tuple[str, str], set[str]] = {}
    for workflow in kube.list_workflows(namespaces or None, transform=slim_workflow(None)):
        nodes = _add_workflow(inputs, workflow, None, options)
        if nodes is not None:
            meta = workflow.get("metadata") or {}
            pod_nodes[(meta.get("namespace", "default"), meta.get("name", "?"))] = {
                node_id for node_id, node in nodes.items() if node.get("type") == "Pod"
            }
    present: set[tuple[str, str]] = set()
    chunks = _Chunks(chunk_pods, lambda pods: on_pods(pods, inputs))

    def sink(page: list[JSON]) -> None:
        present.update(key for key in map(pod_node_id, page) if key is not None)
        chunks.add(page)

    listed = kube.list_pods(namespaces or None, transform=slim_pod, sink=sink)
    chunks.flush()
    inputs.resource_versions = dict(listed.resource_versions)
    for (namespace, name), node_ids in pod_nodes.items():
        if all((namespace, node_id) in present for node_id in node_ids):
            continue
        workflow = kube.get_workflow(namespace, name)  # gone meanwhile: nothing to record
        if workflow is not None:
            _add_workflow(inputs, workflow, present, options)
    return inputs


def read_workflows(kube: Any, scope: Mapping[str, set[str]], options: ReconcileOptions) -> PassInputs:
    """A targeted pass: the pods, results and Workflow objects of the named workflows only."""
    pods: list[JSON] = []
    workflows: list[JSON] = []
    taskresults: list[JSON] = []
    for namespace, names in sorted(scope.items()):
        ordered = sorted(names)
        for start in range(0, len(ordered), 50):
            chunk = ordered[start : start + 50]
            selector = f"{c.ARGO_WORKFLOW_LABEL} in ({','.join(chunk)})"
            pods += kube.list_pods([namespace], label_selector=selector).items
            taskresults += kube.list_taskresults([namespace], label_selector=selector)
        for name in ordered:
            workflow = kube.get_workflow(namespace, name)
            if workflow is not None:
                workflows.append(workflow)
    return assemble(pods, workflows, taskresults, options)
