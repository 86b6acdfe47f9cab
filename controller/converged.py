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
(six one-record reads) and compares them with what they were when the last
pass ended; if anything else wrote since, or a restore took records away, it
differs and everything is forgotten. One loss it cannot see: a restore to a
backup taken just before a write that neither created nor updated a record (an
input event added to an existing execution) with nothing written after it.
So each entry also expires after `recheck_s`, and every step is compared with
MLMD in full at that pace whatever happens; the store being dropped (an MLMD
error) or leadership being lost forgets everything too. The manual commands
never use this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ml_metadata.metadata_store import ListOptions, OrderByField

from controller.inputs import PassInputs, pod_node_id
from controller.reconcile_pass import PassReport
from reconcile.argo import JSON

log = logging.getLogger(__name__)

PodKey = tuple[str, str]  # (namespace, pod name)
Witness = tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)  # one per pod: slots keep 50,000 of them small
class _Entry:
    uid: str
    resource_version: str
    node_id: str
    inputs: bytes  # digest of the step's WorkflowTaskResult and Workflow node
    verified_at: float


def _record_key(record: Any) -> tuple[Any, ...]:
    return (
        record.id,
        record.external_id,
        record.create_time_since_epoch,
        record.last_update_time_since_epoch,
    )


def read_witness(store: Any) -> Witness:
    """MLMD's newest and most recently updated execution, artifact and context.

    Any write changes one of them (a new record, or a record's update time), and a
    restore from an older backup takes them back to what they were then.
    """
    rows = []
    for read in (store.get_executions, store.get_artifacts, store.get_contexts):
        for order in (OrderByField.ID, OrderByField.UPDATE_TIME):
            found = read(list_options=ListOptions(limit=1, order_by=order, is_asc=False))
            rows.append(tuple(_record_key(r) for r in found))
    return tuple(rows)


def _inputs_digest(inputs: PassInputs, where: tuple[str, str]) -> bytes:
    both = [inputs.taskresults.get(where), inputs.nodes.get(where)]
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

    def before_pass(self, store: Any) -> bool:
        """Forget what may no longer hold: all if MLMD changed since the last pass, else old entries.

        Returns True when MLMD changed (as far as the witness tells; False when nothing was
        remembered to compare with).
        """
        if not self._entries:
            return False
        if read_witness(store) != self._witness:
            self.forget("MLMD changed since the last pass (another writer, or a restore)")
            return True
        cutoff = self._clock() - self.recheck_s
        with self._lock:
            self._entries = {k: e for k, e in self._entries.items() if e.verified_at > cutoff}
        return False

    def after_pass(self, store: Any) -> None:
        """Note MLMD as this pass leaves it, so the next pass can tell whether it changed."""
        self._witness = read_witness(store) if self._entries else None

    def unchanged(self, pod: JSON, inputs: PassInputs) -> bool:
        """True when this pod's step was converged and nothing it depends on changed since."""
        identity = _identity(pod)
        if identity is None:
            return False
        key, uid, resource_version = identity
        entry = self._entries.get(key)
        if entry is None or entry.uid != uid or entry.resource_version != resource_version:
            return False
        return entry.inputs == _inputs_digest(inputs, (key[0], entry.node_id))

    def learn(self, pods: list[JSON], inputs: PassInputs, report: PassReport) -> int:
        """Remember the pods of `pods` whose steps `report` (not merged yet) found converged.

        Returns how many were added.
        """
        if not self.enabled:
            return 0
        troubled = {(p.namespace, p.pod) for p in report.errors + report.warnings}
        troubled |= {(p.namespace, p.pod) for p in report.pod_patches}
        converged = set()
        for plan in report.plans:
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
            learned[key] = _Entry(uid, resource_version, where[1], _inputs_digest(inputs, where), now)
        with self._lock:
            self._entries.update(learned)
        return len(learned)
