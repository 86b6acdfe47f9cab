"""A running controller's full pass that reads whole only what changed since the last one.

`ClusterStream` reads every pod, WorkflowTaskResult and Workflow whole, and the
converged memory then skips most pods: in a real cluster a KFP step pod is 10-40 KB
and a Workflow carries all its nodes, so an idle resync is nearly all list and decode.
`ChangedStream` first lists the three as metadata only (``PartialObjectMetadataList``:
paginated, same label selector, a fraction of the bytes), and decides from
uid/resourceVersion alone which workflows need a look:

- a pod that is not remembered converged, or whose uid, resourceVersion, its
  WorkflowTaskResult's or its Workflow's resourceVersion differ from when it was
  (`ConvergedSteps.unchanged_metadata`);
- a Workflow not read before at its current resourceVersion, or one with a Pod node
  whose pod is not listed (its steps are rebuilt from the Workflow, as every pass does).

Only those workflows are read whole -- their pods and results by narrowed lists
(``workflows.argoproj.io/workflow in (...)``, 50 names a selector), their Workflows by
name -- in chunks of about `chunk_pods` pods, and go through `run_pass` as any chunk
does (the converged memory still skips their unchanged pods). The pods of every other
workflow are counted in `unchanged` and never read. When most pods changed, the
narrowed reads would cost more than one list: the pass is then `ClusterStream`'s.

Used only while the converged memory is valid (controller/loop.py): a restarted
controller, the manual commands and a pass after MLMD changed compare everything.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence

from controller.converged import ConvergedSteps, WorkflowKey
from controller.kube import KubeAccess
from controller.reconcile_pass import Chunk
from controller.sources import ClusterStream, PassInputs, pod_node_id, read_workflows
from reconcile import conventions as c
from reconcile.argo import JSON
from reconcile.options import ReconcileOptions

log = logging.getLogger(__name__)

# Above this share of the pods in changed workflows, one full list costs less than the
# narrowed ones (and reads the same objects): the pass falls back to ClusterStream.
FULL_LIST_SHARE = 0.5


def _meta(obj: JSON) -> dict:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


def _versions(items: list[JSON]) -> dict[tuple[str, str], str]:
    """(namespace, name) -> resourceVersion of listed objects' metadata."""
    found = {}
    for item in items:
        meta = _meta(item)
        namespace, name, rv = meta.get("namespace", "default"), meta.get("name"), meta.get("resourceVersion")
        if isinstance(namespace, str) and isinstance(name, str) and isinstance(rv, str):
            found[(namespace, name)] = rv
    return found


class ChangedStream:
    """A full pass's chunks: metadata lists first, then whole objects of the changed workflows only.

    After `chunks()` is exhausted, `read` holds what ClusterStream's does (problems, the
    pod list's resourceVersions for the watch, the Workflows read), `unchanged` the pods
    left out without being read whole, and `listed_workflows` every Workflow listed.
    """

    def __init__(
        self,
        kube: KubeAccess,
        namespaces: Sequence[str],
        options: ReconcileOptions,
        chunk_pods: int,
        converged: ConvergedSteps,
    ) -> None:
        self.kube = kube
        self.namespaces = namespaces
        self.options = options
        self.chunk_pods = chunk_pods
        self.converged = converged
        self.read = PassInputs(pods=[], taskresults={}, nodes={}, podless_steps=[])
        self.unchanged = 0
        self.listed_workflows: set[WorkflowKey] = set()
        self.fell_back = False

    def chunks(self) -> Iterator[Chunk]:
        """The pass's chunks, read as they are taken."""
        kube, scope = self.kube, self.namespaces or None
        taskresult_rvs = _versions(kube.list_taskresult_metadata(scope))
        workflow_rvs = _versions(kube.list_workflow_metadata(scope))
        self.listed_workflows = set(workflow_rvs)
        present: set[tuple[str, str]] = set()
        pods_of: Counter[WorkflowKey] = Counter()
        changed: set[WorkflowKey] = set()
        total = 0
        pages = kube.pod_metadata_pages(scope)
        for page in pages:
            for pod in page:
                total += 1
                meta = pod["metadata"]
                labels = meta.get("labels") or {}
                workflow = (meta.get("namespace", "default"), labels.get(c.ARGO_WORKFLOW_LABEL))
                if not isinstance(workflow[0], str) or not isinstance(workflow[1], str) or not workflow[1]:
                    # Cannot be read back by its workflow's name: only a whole list finds it.
                    changed.add(("", ""))
                    continue
                pods_of[workflow] += 1
                where = pod_node_id(pod)
                if where is not None:
                    present.add(where)
                if not self.converged.unchanged_metadata(pod, taskresult_rvs, workflow_rvs):
                    changed.add(workflow)
        self.read.resource_versions = dict(pages.resource_versions)
        for (namespace, name), rv in workflow_rvs.items():
            node_ids = self.converged.workflow_pod_nodes(namespace, name, rv)
            if node_ids is None or any((namespace, node_id) not in present for node_id in node_ids):
                changed.add((namespace, name))
        in_changed = sum(pods_of[w] for w in changed)
        if ("", "") in changed or in_changed > FULL_LIST_SHARE * total:
            yield from self._full(in_changed, total)
            return
        self.unchanged = total - in_changed
        log.debug(
            "metadata lists read",
            extra={"pods": total, "changed_workflows": len(changed), "pods_to_read": in_changed},
        )
        group: list[WorkflowKey] = []
        size = 0
        for workflow in sorted(changed):
            group.append(workflow)
            size += pods_of[workflow]
            if size >= self.chunk_pods:
                yield self._read(group)
                group, size = [], 0
        if group:
            yield self._read(group)

    def _full(self, in_changed: int, total: int) -> Iterator[Chunk]:
        log.debug("most pods changed: listing them whole", extra={"pods": total, "pods_to_read": in_changed})
        self.fell_back = True
        stream = ClusterStream(self.kube, self.namespaces, self.options, self.chunk_pods)
        self.read = stream.read
        yield from stream.chunks()

    def _read(self, group: list[WorkflowKey]) -> Chunk:
        """One chunk: the whole pods, results and Workflows of `group`'s workflows."""
        where: dict[str, set[str]] = {}
        for namespace, name in group:
            where.setdefault(namespace, set()).add(name)
        inputs = read_workflows(self.kube, where, self.options, slim=True)
        self.read.problems += inputs.problems
        self.read.workflows_seen.update(inputs.workflows_seen)
        self.read.workflow_uids |= inputs.workflow_uids
        return Chunk(inputs.pods, inputs.taskresults, inputs.nodes, inputs.podless_steps)
