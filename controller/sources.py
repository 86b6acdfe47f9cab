"""Where a pass's chunks come from: the cluster (streamed, or by workflow) or a saved dump.

Every source reads the same three things -- the Argo pods, their WorkflowTaskResults and
the Workflows -- and hands them to `run_pass` as Chunks of whole workflows. Outputs then
come from, in order, the pod's annotation, the step's WorkflowTaskResult (while the
workflow runs) and the Workflow's `status.nodes`; steps whose pod is gone are rebuilt
from `status.nodes` alone.

- `ClusterStream`: the controller's full pass; pods in chunks as the list pages arrive.
- `read_workflows`: the controller's targeted pass over the workflows the watch saw change.
- `read_cluster`: the `reconcile` and `verify` scopes on a cluster (streamed for namespaces);
  a saved dump is streamed by controller/dump_source.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.kube import KubeAccess
from controller.reconcile_pass import Chunk
from controller.report import PodProblem
from controller.slimming import slim_pod, slim_workflow
from reconcile import conventions as c
from reconcile.argo import JSON, node_id_for, workflow_nodes
from reconcile.errors import PodError
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep

log = logging.getLogger(__name__)

WORKFLOWS_PER_SELECTOR = 50  # workflow names in one label selector of a targeted read


@dataclass(frozen=True, slots=True)
class WorkflowSeen:
    """A Workflow as a pass read it: its resourceVersion and the ids of its Pod nodes."""

    resource_version: str | None
    pod_node_ids: frozenset[str]


@dataclass
class PassInputs:
    """What a source read: pods, their steps' WorkflowTaskResults and nodes, and the steps without a pod."""

    pods: list[JSON]
    taskresults: dict[tuple[str, str], JSON]  # (namespace, node id) -> result
    nodes: dict[tuple[str, str], JSON]  # (namespace, node id) -> status.nodes entry
    podless_steps: list[DesiredStep]
    # Problems with workflows (not pods): (namespace, name, message).
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    resource_versions: dict[str | None, str] = field(default_factory=dict)  # list RVs for the watch
    workflow_uids: set[str] = field(default_factory=set)  # of the Workflows read
    # (namespace, name) -> (resourceVersion, its Pod nodes' ids) of each Workflow read, both
    # from the same object: what lets a later pass tell from metadata alone that it is unchanged.
    workflows_seen: dict[tuple[str, str], WorkflowSeen] = field(default_factory=dict)
    # A dump's items that cannot be read (reported as errors), and its warnings.
    bad_items: list[PodProblem] = field(default_factory=list)
    warnings: list[PodProblem] = field(default_factory=list)
    ignored_items: Counter[str] = field(default_factory=Counter)  # a dump's items of other kinds, by kind

    def chunks(self) -> Iterator[Chunk]:
        """All of it as one chunk."""
        yield Chunk(self.pods, self.taskresults, self.nodes, self.podless_steps)

    @property
    def read(self) -> PassInputs:
        """Itself: what a source read besides its chunks (as `ClusterStream.read`)."""
        return self


def pod_node_id(pod: JSON) -> tuple[str, str] | None:
    """(namespace, Argo node id) of a pod's step: the keys of `taskresults` and `nodes`.

    None for a pod whose metadata is not shaped as Argo writes it (a list for a node id, a
    map that is not one...): the pass then names that pod in its errors (PodView.from_json).
    """
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        return None
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    if not (isinstance(annotations, dict) and isinstance(labels, dict) and isinstance(namespace, str)):
        return None
    node_id = annotations.get(c.ARGO_NODE_ID_ANNOTATION)
    node_name = annotations.get(c.ARGO_NODE_NAME_ANNOTATION)
    workflow = labels.get(c.ARGO_WORKFLOW_LABEL, "")
    if not node_id and node_name:
        if not (isinstance(node_name, str) and isinstance(workflow, str)):
            return None
        try:
            node_id = node_id_for(workflow, node_name)
        except UnicodeEncodeError:  # a lone surrogate: the pass reports it as an invalid value
            return None
    node_id = node_id or name
    return (namespace, node_id) if isinstance(node_id, str) else None


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
    rv = meta.get("resourceVersion")
    inputs.workflows_seen[(namespace, name)] = WorkflowSeen(
        rv if isinstance(rv, str) else None,
        frozenset(node_id for node_id, node in nodes.items() if node.get("type") == "Pod"),
    )
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


def read_all(kube: KubeAccess, namespaces: Sequence[str], options: ReconcileOptions) -> PassInputs:
    """Every Argo pod, Workflow and WorkflowTaskResult in scope, all held at once.

    Pods and Workflows are cut down to what the pass reads as each list page
    arrives, so memory grows with the cluster by a few KB per pod, not by the
    objects' full size.
    """
    listed = kube.list_pods(namespaces or None, transform=slim_pod)
    present = {key for key in map(pod_node_id, listed.items) if key is not None}
    workflows = kube.list_workflows(namespaces or None, transform=slim_workflow(present))
    taskresults = kube.list_taskresults(namespaces or None)
    inputs = assemble(listed.items, workflows, taskresults, options)
    inputs.resource_versions = dict(listed.resource_versions)
    return inputs


def read_workflows(
    kube: KubeAccess, scope: Mapping[str, set[str]], options: ReconcileOptions, *, slim: bool = False
) -> PassInputs:
    """The pods, results and Workflow objects of the named workflows only (namespace -> names).

    With `slim`, pods and Workflows are cut down as the streamed full pass cuts them
    (`controller/slimming.py`): a Workflow keeps its whole object only where a step's pod is gone.
    """
    pods: list[JSON] = []
    workflows: list[JSON] = []
    taskresults: list[JSON] = []
    names_by_namespace = [(namespace, sorted(names)) for namespace, names in sorted(scope.items())]
    for namespace, ordered in names_by_namespace:
        for start in range(0, len(ordered), WORKFLOWS_PER_SELECTOR):
            chunk = ordered[start : start + WORKFLOWS_PER_SELECTOR]
            selector = f"{c.ARGO_WORKFLOW_LABEL} in ({','.join(chunk)})"
            pods += kube.list_pods(
                [namespace], label_selector=selector, transform=slim_pod if slim else None
            ).items
            taskresults += kube.list_taskresults([namespace], label_selector=selector)
    cut = slim_workflow({key for key in map(pod_node_id, pods) if key is not None}) if slim else None
    for namespace, ordered in names_by_namespace:
        for name in ordered:
            workflow = kube.get_workflow(namespace, name)
            if workflow is not None:  # gone meanwhile: its pods are still reconciled
                workflows.append(cut(workflow) if cut is not None else workflow)
    return assemble(pods, workflows, taskresults, options)


# --- the streamed full pass ------------------------------------------------------


def _workflow_of(pod: JSON) -> tuple[Any, Any]:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
    return meta.get("namespace"), labels.get(c.ARGO_WORKFLOW_LABEL)


class WorkflowChunker:
    """Collects listed pods and hands them on in chunks of whole workflows.

    A list comes in namespace/name order and Argo names a step's pod after its
    workflow, so a workflow's pods arrive together; the pods of the last workflow
    seen are held back until the next page, which may hold more of them. (Should
    another workflow's pods sort in between, the workflow is reconciled in two
    chunks; an input whose upstream step comes in the later one links a pass later.)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.held: list[JSON] = []

    def add(self, page: list[JSON]) -> list[list[JSON]]:
        """The chunk this page completes, if any (at most one)."""
        self.held.extend(page)
        if len(self.held) < self.size:
            return []
        last = _workflow_of(self.held[-1])
        cut = len(self.held)
        while cut > 0 and _workflow_of(self.held[cut - 1]) == last:
            cut -= 1
        if cut == 0:
            return []  # one workflow bigger than a chunk: held until it ends, so it stays whole
        ready, self.held = self.held[:cut], self.held[cut:]
        return [ready]

    def flush(self) -> list[list[JSON]]:
        """The pods still held, as the last chunk (if any)."""
        ready, self.held = self.held, []
        return [ready] if ready else []


class ClusterStream:
    """A full pass that never holds every pod: what `read_all` reads, in chunks as it arrives.

    `chunks()` reads the WorkflowTaskResults and the Workflows' `status.nodes` first; then
    the pods, cut down as pages arrive and handed on in chunks of about `chunk_pods`,
    whole workflows where the list order allows, each before the next page is read.
    Last come the steps whose pod is gone (their Workflows are read again, whole, only
    then). `read` gathers the rest: the Workflows' problems and the lists'
    resourceVersions (complete once the chunks are).
    """

    def __init__(
        self, kube: KubeAccess, namespaces: Sequence[str], options: ReconcileOptions, chunk_pods: int
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.options = options
        self.chunk_pods = chunk_pods
        self.read = PassInputs(pods=[], taskresults={}, nodes={}, podless_steps=[])

    def chunks(self) -> Iterator[Chunk]:
        """The pass's chunks, read as they are taken."""
        kube, read, scope = self.kube, self.read, self.namespaces or None
        read.taskresults.update(_index_taskresults(kube.list_taskresults(scope)))
        pod_nodes: dict[tuple[str, str], set[str]] = {}
        for workflow in kube.list_workflows(scope, transform=slim_workflow(None)):
            nodes = _add_workflow(read, workflow, None, self.options)
            if nodes is not None:
                meta = workflow.get("metadata") or {}
                pod_nodes[(meta.get("namespace", "default"), meta.get("name", "?"))] = {
                    node_id for node_id, node in nodes.items() if node.get("type") == "Pod"
                }
        present: set[tuple[str, str]] = set()
        chunker = WorkflowChunker(self.chunk_pods)
        pages = kube.pod_pages(scope, transform=slim_pod)
        for page in pages:
            present.update(key for key in map(pod_node_id, page) if key is not None)
            for pods in chunker.add(page):
                yield Chunk(pods, read.taskresults, read.nodes)
        for pods in chunker.flush():
            yield Chunk(pods, read.taskresults, read.nodes)
        read.resource_versions = dict(pages.resource_versions)
        for (namespace, name), node_ids in pod_nodes.items():
            if all((namespace, node_id) in present for node_id in node_ids):
                continue
            workflow = kube.get_workflow(namespace, name)  # gone meanwhile: nothing to record
            if workflow is not None:
                _add_workflow(read, workflow, present, self.options)
        if read.podless_steps:
            yield Chunk((), read.taskresults, read.nodes, read.podless_steps)


# --- the manual commands' scopes -------------------------------------------------


class ScopeError(Exception):
    """A namespace or workflow that does not exist, or a dump that cannot be read (a usage error)."""


@dataclass(frozen=True)
class Scope:
    """What a manual pass covers: namespaces (None = all) and, optionally, workflow names."""

    namespaces: list[str] | None
    workflows: list[str] = field(default_factory=list)

    def holds(self, namespace: str, workflow: str | None) -> bool:
        """Whether an object of this namespace and workflow is in scope."""
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return not self.workflows or workflow in self.workflows


def _meta(obj: JSON) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def read_cluster(
    kube: KubeAccess, scope: Scope, options: ReconcileOptions, chunk_pods: int, *, missing_ok: bool = False
) -> PassInputs | ClusterStream:
    """What the controller's passes read, limited to the scope; unknown names are a ScopeError.

    With `missing_ok` (a stored source read too), workflow names the cluster lacks are not.
    Namespaces (`-n`, `-A`) stream as the controller's full pass does (`ClusterStream`,
    chunks of about `chunk_pods` pods): a command never holds every pod of a cluster.
    Named workflows are read whole (`read_workflows`).
    """
    for namespace in scope.namespaces or []:
        if not kube.namespace_exists(namespace):
            raise ScopeError(f"namespace {namespace!r} not found")
    if not scope.workflows:
        return ClusterStream(kube, scope.namespaces or [], options, chunk_pods)
    names = sorted(set(scope.workflows))
    where: dict[str, set[str]] = {}
    selector = f"{c.ARGO_WORKFLOW_LABEL} in ({','.join(names)})"
    for pod in kube.list_pods(scope.namespaces or None, label_selector=selector).items:
        meta = _meta(pod)
        where.setdefault(meta.get("namespace", "default"), set()).add(meta["labels"][c.ARGO_WORKFLOW_LABEL])
    for workflow in kube.list_workflows(scope.namespaces or None):
        meta = _meta(workflow)
        if meta.get("name") in names:
            where.setdefault(meta.get("namespace", "default"), set()).add(meta["name"])
    missing = sorted(set(names) - {n for found in where.values() for n in found})
    if missing and not missing_ok:
        within = ", ".join(scope.namespaces) if scope.namespaces else "any namespace"
        raise ScopeError(f"workflow {', '.join(missing)} not found in {within}")
    return read_workflows(kube, where, options)
