"""Steps a full pass found converged, so the next full passes can skip them.

Without this, every full pass of a running controller redoes the same work for
every finished step and gets the same answer: parse the pod's template, read
the step's records from MLMD, plan nothing. A step is remembered only when its
plan was empty (no MLMD action, nothing pending, no pod patch, no problem),
together with what that answer was computed from: the pod's uid and
resourceVersion (any change to the pod, our own labels included, gives it a
new one) and a digest of its WorkflowTaskResult and Workflow node. A later
full pass skips the pod while all of these are unchanged.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.reconcile_pass import Chunk, ListedPod
from controller.report import PassReport
from controller.sources import pod_node_id
from reconcile.argo import JSON
from store.metadata import MetadataStore
from store.witness import Witness

log = logging.getLogger(__name__)

PodKey = tuple[str, str]  # (namespace, pod name)


@dataclass(frozen=True, slots=True)  # one per pod: slots keep 50,000 of them small
class _Entry:
    uid: str
    resource_version: str
    node_id: str
    inputs: bytes  # digest of the step's WorkflowTaskResult and Workflow node
    verified_at: float


def _inputs_digest(chunk: Chunk, where: tuple[str, str]) -> bytes:
    both = [chunk.taskresults.get(where), chunk.nodes.get(where)]
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


class ConvergedSteps:
    """Pods whose steps were converged, and the evidence that they still are."""

    def __init__(self, recheck_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.recheck_s = recheck_s
        self._clock = clock
        self._entries: dict[PodKey, _Entry] = {}
        self._witness: Witness | None = None
        # Passes run one at a time, but leadership is lost (forget) on another thread.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enabled(self) -> bool:
        return self.recheck_s > 0

    def forget(self, why: str = "") -> None:
        """Drop every entry: the next full pass compares every step with MLMD."""
        with self._lock:
            if self._entries and why:
                log.info("forgetting converged steps", extra={"steps": len(self._entries), "reason": why})
            self._entries = {}
            self._witness = None

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

    def unchanged(self, pod: ListedPod, chunk: Chunk) -> bool:
        """True when this pod's step was converged and nothing it depends on changed since."""
        identity = _identity(pod)
        if identity is None:
            return False
        key, uid, resource_version = identity
        entry = self._entries.get(key)
        if entry is None or entry.uid != uid or entry.resource_version != resource_version:
            return False
        return entry.inputs == _inputs_digest(chunk, (key[0], entry.node_id))

    def learn(self, pods: Sequence[ListedPod], chunk: Chunk, report: PassReport) -> int:
        """Remember the pods of `pods` whose steps the chunk's `report` found converged.

        Only pods compared in this pass have plans in `report`: a pod skipped as unchanged
        keeps its entry as it was. Returns how many were added.
        """
        if not self.enabled:
            return 0
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
        learned = {}
        for pod in pods:
            identity = _identity(pod)
            where = pod_node_id(pod)
            if identity is None or where is None or identity[0] not in converged or identity[0] in troubled:
                continue
            key, uid, resource_version = identity
            learned[key] = _Entry(uid, resource_version, where[1], _inputs_digest(chunk, where), now)
        with self._lock:
            self._entries.update(learned)
        return len(learned)
