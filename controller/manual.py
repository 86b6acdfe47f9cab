"""`reconcile` and `verify` by hand: one scoped pass against a cluster or a saved dump.

Both read exactly what the controller's full or targeted pass reads, limited
to the namespaces and workflows asked for (controller/sources.py), and run the
same `run_pass`; `verify` is a dry run turned into a drift report. Nothing
outside the scope is read, written or patched.

A stored source (KFP's run store, Argo's archive: controller/stored_sources.py)
is read after the live one, in a pass of its own over bounded chunks: only
counts and drift of its chunks are kept (their plans too for a dry run, which
prints them), and the live source's steps and Workflows win over stored ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.drift import Drift, drift_of_plan, label_drift, label_owners, orphans
from controller.kube import KubeAccess
from controller.patching import apply_pod_patches
from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport, PodProblem, Progress
from controller.sources import PassInputs, Scope
from controller.stored_sources import StoredChunks, StoredReading
from reconcile.options import ReconcileOptions
from reconcile.plan import WorkflowPlan
from store.metadata import MetadataStore


@dataclass
class ManualOutcome:
    """A manual pass's report, what it read, and (for verify) the drift."""

    report: PassReport
    found: PassInputs
    drift: list[Drift] = field(default_factory=list)
    patches_applied: int = 0
    offline: bool = False
    stored: StoredReading | None = None


def run_manual(
    found: PassInputs,
    store: MetadataStore,
    options: ReconcileOptions,
    *,
    write: bool,
    verify: bool,
    scope: Scope,
    kube: KubeAccess | None = None,
    progress: Progress | None = None,
    stored: StoredChunks | None = None,
    orphans_checked: bool = True,
) -> ManualOutcome:
    """One pass over what was read: write MLMD and patch pods (`write`), or only report drift.

    `stored`, when given, is read after `found` (the live objects, possibly none), with the
    Workflow uids and step keys `found` gave left out of it. `orphans_checked` False (a
    stored source scoped by time or run id) skips the search for orphaned records.
    """
    report = run_pass(found.chunks(), store, options, dry_run=not write, progress=progress)
    for namespace, name, message in found.problems:
        # A Workflow (or one of its nodes) that cannot be read: steps whose pod is gone are lost.
        report.errors.append(PodProblem(namespace, name, "malformed_workflow", message))
    outcome = ManualOutcome(report, found, offline=kube is None)
    desired = {p.step.execution.key for plan in report.plans for p in plan.steps}
    stored_drift: list[Drift] = []
    if stored is not None:
        outcome.stored = stored.reading
        stored.live_uids = found.workflow_uids
        stored.live_keys = desired
        stored.progress = progress
        stored.track_keys = verify and orphans_checked and not scope.workflows
        kept: list[WorkflowPlan] = []

        def after_chunk(chunk: Chunk, part: PassReport) -> None:
            # Keep what the report needs, not the plans: a source may hold 100,000 runs.
            if verify:
                for plan in part.plans:
                    stored_drift.extend(drift_of_plan(plan))
            elif not write:
                kept.extend(part.plans)

        part = run_pass(
            stored.chunks(), store, options, dry_run=not write, after_chunk=after_chunk, progress=progress
        )
        report.merge(part)
        report.plans += kept
        for namespace, name, message in stored.reading.problems:
            report.errors.append(PodProblem(namespace, name, "malformed_workflow", message))
        desired |= stored.reading.step_keys
    if write and kube is not None:
        outcome.patches_applied = apply_pod_patches(kube, report)
    if verify:
        for plan in report.plans:
            outcome.drift += drift_of_plan(plan)
        outcome.drift += stored_drift
        outcome.drift += label_drift(report, found.pods, label_owners(store, report, found.pods))
        if not scope.workflows and orphans_checked:
            uids = found.workflow_uids | (stored.reading.workflow_uids if stored is not None else set())
            outcome.drift += orphans(store, scope.namespaces, desired, uids)
    return outcome


def counted_drift(outcome: ManualOutcome) -> list[Drift]:
    """The drift that decides `verify`'s exit code.

    Orphans are history, not damage: once Argo's TTL removes a finished
    Workflow its records are orphans by definition, and there is nothing to
    repair. Offline, wrong labels cannot be repaired either. Both are listed,
    neither counts.
    """
    uncounted = {"orphaned_execution"} | ({"wrong_pod_metadata"} if outcome.offline else set())
    return [d for d in outcome.drift if d.kind not in uncounted]
