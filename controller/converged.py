"""Steps a full pass found converged, so the next full passes can skip them.

Without this, every full pass of a running controller redoes the same work for
every finished step and gets the same answer: parse the pod's template, read
the step's records from MLMD, plan nothing. A step is remembered only when its
plan was empty (no MLMD action, nothing pending, no pod patch, no problem),
together with what that answer was computed from: the pod's uid and
resourceVersion (any change to the pod, our own labels included, gives it a
new one) and a digest of its WorkflowTaskResult and Workflow node. A later
full pass skips the pod while all of these are unchanged.

Each entry also keeps the resourceVersions of that WorkflowTaskResult and Workflow, and
the Workflows read are remembered with their Pod nodes: while anything is remembered, a
full pass lists metadata only and reads whole just the workflows where a uid or
resourceVersion moved (controller/changed_stream.py, `unchanged_metadata`); there the
digest still decides, and a skipped pod's entry moves on to the new resourceVersions.

The other half of a plan is MLMD, which nothing here deletes from: it loses
records only when its database is restored from a backup. So every pass first
reads MLMD's newest and most recently updated execution, artifact and context
(six one-record reads, store/witness.py) and compares them with what they were
when the last pass ended; if anything else wrote since, or a restore took
records away, it differs and everything is forgotten. One loss it cannot see:
a restore to a backup taken just before a write that neither created nor
updated a record (an input event added to an existing execution) with nothing
written after it. So each entry also expires after `recheck_s`, and every step
is compared with MLMD in full at that pace whatever happens; the store being
dropped (an MLMD error) or leadership being lost forgets everything too. The
manual commands never use this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from controller.reconcile_pass import Chunk, ListedPod
from controller.report import PassReport
from controller.slimming import slim_node
from controller.sources import WorkflowSeen, pod_node_id
from reconcile import conventions as c
from reconcile.argo import JSON
from store.metadata import MetadataStore
from store.witness import Witness

log = logging.getLogger(__name__)

PodKey = tuple[str, str]  # (namespace, pod name)
WorkflowKey = tuple[str, str]  # (namespace, Workflow name)
StepWhere = tuple[str, str]  # (namespace, Argo node id): a WorkflowTaskResult's name


@dataclass(frozen=True, slots=True)  # one per pod: slots keep 50,000 of them small
class _Entry:
    uid: str
    resource_version: str
    node_id: str
    inputs: bytes  # digest of the step's WorkflowTaskResult and Workflow node
    verified_at: float
    # The resourceVersions those inputs were read at (None: there was none), so that a pass
    # can tell from metadata lists alone that they did not change.
    taskresult_rv: str | None = None
    workflow_rv: str | None = None


def _inputs_digest(chunk: Chunk, where: tuple[str, str]) -> bytes:
    node = chunk.nodes.get(where)
    # Of a node, only what a cut-down Workflow keeps: a node read whole (a Workflow with a
    # pod gone is kept whole) then digests the same as one read cut down.
    both = [chunk.taskresults.get(where), slim_node(node) if isinstance(node, dict) else node]
    text = json.dumps(both, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _identity(pod: JSON) -> tuple[PodKey, str, str] | None:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        return None
    namespace, name = meta.get("namespace"), meta.get("name")
    uid, resource_version = meta.get("uid"), meta.get("resourceVersion")
    if not all(isinstance(v, str) and v for v in (namespace, name, uid, resource_version)):
        return None
    return (namespace, name), uid, resource_version


def _resource_version(obj: object) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return rv if isinstance(rv, str) else None


def _workflow_key(pod: JSON) -> WorkflowKey | None:
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    name = labels.get(c.ARGO_WORKFLOW_LABEL) if isinstance(labels, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return (namespace, name) if isinstance(namespace, str) and isinstance(name, str) else None


class ConvergedSteps:
    """Pods whose steps were converged, and the evidence that they still are."""

    def __init__(self, recheck_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._entries: dict[PodKey, _Entry] = {}
        self._witness: Witness | None = None
        # Workflows as the last pass that read them found them (resourceVersion, Pod node ids).
        self._workflows: dict[WorkflowKey, WorkflowSeen] = {}
        # Pods `skip` found unchanged in the chunk being reconciled: `learn` moves their
        # entries on to the resourceVersions of the inputs they were just compared with.
        self._confirmed: set[PodKey] = set()
        # Passes run one at a time, but leadership is lost (forget) on another thread.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.recheck_s > 0

    @property
    def valid(self) -> bool:
        """Whether there is anything to skip with: a full pass may then decide from metadata lists.

        Call after `before_pass`: a restarted controller, or one that just saw MLMD change,
        remembers nothing and compares every step.
        """
        return self.enabled and bool(self._entries)

    def forget(self, why: str = "") -> None:
        """Drop every entry: the next full pass compares every step with MLMD."""
        with self._lock:
            if self._entries and why:
                log.info("forgetting converged steps", extra={"steps": len(self._entries), "reason": why})
            self._entries = {}
            self._witness = None
            self._workflows = {}
            self._confirmed = set()

    def before_pass(self, store: MetadataStore) -> bool:
        """Forget what may no longer hold: all if MLMD changed since the last pass, else old entries.

        Returns True when MLMD changed (as far as the witness tells; False when nothing was
        remembered to compare with).
        """
        if not self._entries:
            return False
        if store.read_witness() != self._witness:
            self.forget("MLMD changed since the last pass (another writer, or a restore)")
            return True
        cutoff = self._clock() - self.recheck_s
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items() if e.verified_at > cutoff}
        return False

    def after_pass(self, store: MetadataStore) -> None:
        """Note MLMD as this pass leaves it, so the next pass can tell whether it changed."""
        self._witness = store.read_witness() if self._entries else None

    def _entry_of(self, pod: ListedPod) -> tuple[PodKey, _Entry] | None:
        """(key, entry) remembered for this very pod (same uid and resourceVersion), else None."""
        identity = _identity(pod)
        if identity is None:
            return None
        key, uid, resource_version = identity
        entry = self._entries.get(key)
        if entry is None or entry.uid != uid or entry.resource_version != resource_version:
            return None
        return key, entry

    def unchanged(self, pod: ListedPod, chunk: Chunk) -> bool:
        """True when this pod's step was converged and nothing it depends on changed since."""
        found = self._entry_of(pod)
        if found is None:
            return False
        key, entry = found
        return entry.inputs == _inputs_digest(chunk, (key[0], entry.node_id))

    def skip(self, pod: ListedPod, chunk: Chunk) -> bool:
        """`unchanged`, as the pass's skip: also notes the pod for `learn` to bring up to date."""
        if not self.unchanged(pod, chunk):
            return False
        identity = _identity(pod)
        if identity is not None:
            self._confirmed.add(identity[0])
        return True

    def unchanged_metadata(
        self,
        pod: JSON,
        taskresult_rvs: Mapping[StepWhere, str],
        workflow_rvs: Mapping[WorkflowKey, str],
    ) -> bool:
        """True when this pod's step was converged and, by resourceVersions alone, nothing changed.

        `pod` needs its metadata only (a PartialObjectMetadata); `taskresult_rvs` and
        `workflow_rvs` are the resourceVersions of every WorkflowTaskResult and Workflow
        listed. Stricter than `unchanged`: any change to the step's Workflow (not only to
        its node) counts; its pods are then read whole and `unchanged` decides.
        """
        found = self._entry_of(pod)
        if found is None:
            return False
        key, entry = found
        if taskresult_rvs.get((key[0], entry.node_id)) != entry.taskresult_rv:
            return False
        workflow = _workflow_key(pod)
        return workflow is not None and workflow_rvs.get(workflow) == entry.workflow_rv

    def workflow_pod_nodes(self, namespace: str, name: str, resource_version: str) -> frozenset[str] | None:
        """The Pod node ids of a Workflow last read at `resource_version`; None when not known so."""
        seen = self._workflows.get((namespace, name))
        if seen is None or seen.resource_version is None or seen.resource_version != resource_version:
            return None
        return seen.pod_node_ids

    def note_workflows(
        self, seen: Mapping[WorkflowKey, WorkflowSeen], listed: Collection[WorkflowKey] | None = None
    ) -> None:
        """Remember the Workflows a pass read; with `listed`, forget those no longer listed."""
        if not self.enabled:
            return
        with self._lock:
            if listed is None:
                self._workflows = dict(seen)
            else:
                kept = {k: v for k, v in self._workflows.items() if k in listed}
                kept.update(seen)
                self._workflows = kept

    def learn(
        self,
        pods: Sequence[ListedPod],
        chunk: Chunk,
        report: PassReport,
        workflows: Mapping[WorkflowKey, WorkflowSeen] | None = None,
    ) -> int:
        """Remember the pods of `pods` whose steps the chunk's `report` found converged.

        Only pods compared in this pass have plans in `report`: a pod skipped as unchanged
        (by `skip`) keeps its entry, verified when it was, now with the resourceVersions of
        the inputs it was compared with. `workflows` gives the resourceVersion of each
        step's Workflow as the chunk was read. Returns how many were added.
        """
        confirmed, self._confirmed = self._confirmed, set()
        if not self.enabled:
            return 0
        workflows = workflows or {}

        def versions(pod: JSON, where: StepWhere) -> tuple[str | None, str | None]:
            workflow = _workflow_key(pod)
            seen = workflows.get(workflow) if workflow is not None else None
            return _resource_version(chunk.taskresults.get(where)), seen.resource_version if seen else None

        troubled = {(p.namespace, p.pod) for p in report.errors + report.warnings}
        troubled |= {(p.namespace, p.pod) for p in report.pod_patches}
        converged = set()
        for workflow in report.plans:
            if workflow.context_write is not None:
                continue
            for plan in workflow.steps:
                ref = plan.step.ref
                settled = not plan.writes_mlmd and not plan.pending_inputs and plan.step.outputs is not None
                if ref.pod_name and settled:
                    converged.add((ref.namespace, ref.pod_name))
        now = self._clock()
        learned, refreshed = {}, {}
        for pod in pods:
            identity = _identity(pod)
            where = pod_node_id(pod)
            if identity is None or where is None:
                continue
            key, uid, resource_version = identity
            if key in confirmed:
                entry = self._entries.get(key)
                if entry is not None:
                    taskresult_rv, workflow_rv = versions(pod, (key[0], entry.node_id))
                    refreshed[key] = replace(entry, taskresult_rv=taskresult_rv, workflow_rv=workflow_rv)
                continue
            if key not in converged or key in troubled:
                continue
            taskresult_rv, workflow_rv = versions(pod, where)
            learned[key] = _Entry(
                uid, resource_version, where[1], _inputs_digest(chunk, where), now, taskresult_rv, workflow_rv
            )
        with self._lock:
            self._entries.update(refreshed)
            self._entries.update(learned)
        return len(learned)
