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

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

from controller.drift import Drift, drift_of_plan, label_drift, label_owners, orphans
from controller.kube import KubeAccess
from controller.logs import redacted_value
from controller.patching import apply_pod_patches
from controller.reconcile_pass import AfterChunk, Chunk, run_pass
from controller.report import PassReport, PodPatch, PodProblem, Progress
from controller.sources import PassInputs, Scope
from controller.stored_sources import StoredChunks, StoredReading
from reconcile.options import ReconcileOptions
from reconcile.plan import WorkflowPlan
from reconcile.redact import might_hold_secret
from store.metadata import MetadataStore


class ScopeSource(Protocol):
    """What a manual pass reads: chunks of whole workflows, and `read` (complete after them).

    `PassInputs` (named workflows, read whole), `ClusterStream` (namespaces of a cluster)
    and `DumpSource` (a saved dump) are such sources.
    """

    @property
    def read(self) -> PassInputs: ...

    def chunks(self) -> Iterator[Chunk]: ...


class PatchLog(Sequence[PodPatch]):
    """The pod patches a manual pass prints, each kept as its JSON text, credentials masked.

    A `reconcile --from-file` lists a patch for every pod whose labels in the file are not
    those of its records -- on a second pass of the same file, every pod. As objects, 50,000
    patches (labels, artifact-id annotations) take ~2.5 KB each, and their redacted copy
    for the output as much again; as text, a fifth of one. Items are read back as PodPatch
    one at a time; `lines()` gives the texts for the JSON output.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, patches: Sequence[PodPatch]) -> None:
        """Keep these patches (redacted now: the output prints them as they are)."""
        for patch in patches:
            fields = patch.__dict__
            # Most patches hold nothing redaction would touch; `might_hold_secret` says so
            # from the whole text at once (the walk below costs ~70 us a patch).
            if might_hold_secret(json.dumps(fields, ensure_ascii=False)):
                fields = redacted_value(fields)
            self._lines.append(json.dumps(fields, sort_keys=True, ensure_ascii=True))

    def lines(self) -> Iterator[str]:
        """Each patch as the JSON text of `{namespace, pod, patch}`."""
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> PodPatch: ...

    @overload
    def __getitem__(self, index: slice) -> list[PodPatch]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [PodPatch(**json.loads(line)) for line in self._lines[index]]
        return PodPatch(**json.loads(self._lines[index]))


@dataclass
class ManualOutcome:
    """A manual pass's report, what it read, and (for verify) the drift."""

    report: PassReport
    found: PassInputs
    drift: list[Drift] = field(default_factory=list)
    patches_applied: int = 0
    offline: bool = False
    stored: StoredReading | None = None
    steps_without_pod: int = 0
    items_ignored: dict[str, int] = field(default_factory=dict)


def run_manual(
    source: ScopeSource,
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

    The live source's chunks are handled one by one, as the controller's are: a chunk's pods
    are patched (`write`, against a cluster) and its drift found (`verify`) before the next is
    read, and only what the output shows is kept -- the pod patches (not for `verify`), a dry
    run's plans (`reconcile --dry-run` prints them), the drift -- never the pods.

    `stored`, when given, is read after the live source (possibly empty), in a pass of its
    own, with the Workflow uids and step keys the live source gave left out of it.
    `orphans_checked` False (a stored source scoped by time or run id) skips the search for
    orphaned records.
    """
    kept_plans: list[WorkflowPlan] = []
    kept_patches = PatchLog()
    drift: list[Drift] = []
    desired_keys: set[str] = set()  # step keys the live source gave (verify, or for `stored`)
    counts = {"steps_without_pod": 0, "patches_applied": 0}

    def after_chunk(chunk: Chunk, part: PassReport) -> None:
        counts["steps_without_pod"] += len(chunk.podless_steps)
        if write and kube is not None:
            counts["patches_applied"] += apply_pod_patches(kube, part)  # refused ones: errors in `part`
        if verify or stored is not None:
            for plan in part.plans:
                desired_keys.update(p.step.execution.key for p in plan.steps)
        if verify:
            for plan in part.plans:
                drift.extend(drift_of_plan(plan))
            drift.extend(label_drift(part, chunk.pods, label_owners(store, part, chunk.pods)))
        else:
            kept_patches.add(part.pod_patches)
            if not write:
                kept_plans.extend(part.plans)

    counting = _ProgressOverChunks(progress, getattr(source, "pods_total", None))
    report = run_pass(
        source.chunks(),
        store,
        options,
        dry_run=not write,
        after_chunk=counting.after(after_chunk),
        progress=counting.update if progress is not None else None,
    )
    found = source.read
    for namespace, name, message in found.problems:
        # A Workflow (or one of its nodes) that cannot be read: steps whose pod is gone are lost.
        report.errors.append(PodProblem(namespace, name, "malformed_workflow", message))
    report.errors += found.bad_items
    report.warnings += found.warnings
    if stored is not None:
        stored.live_uids = found.workflow_uids
        stored.live_keys = desired_keys
        stored.progress = progress
        stored.track_keys = verify and orphans_checked and not scope.workflows

        def after_stored_chunk(chunk: Chunk, part: PassReport) -> None:
            # Keep what the report needs, not the plans: a source may hold 100,000 runs.
            if verify:
                for plan in part.plans:
                    drift.extend(drift_of_plan(plan))
            elif not write:
                kept_plans.extend(part.plans)

        part = run_pass(
            stored.chunks(),
            store,
            options,
            dry_run=not write,
            after_chunk=after_stored_chunk,
            progress=progress,
        )
        report.merge(part)
        for namespace, name, message in stored.reading.problems:
            report.errors.append(PodProblem(namespace, name, "malformed_workflow", message))
        desired_keys |= stored.reading.step_keys
    report.plans, report.merged_patches = kept_plans, 0
    report.pod_patches = kept_patches  # type: ignore[assignment]  # a Sequence of PodPatch, read only
    outcome = ManualOutcome(
        report,
        found,
        drift=drift,
        patches_applied=counts["patches_applied"],
        offline=kube is None,
        steps_without_pod=counts["steps_without_pod"],
        items_ignored=dict(sorted(found.ignored_items.items())),
        stored=stored.reading if stored is not None else None,
    )
    if verify and not scope.workflows and orphans_checked:
        uids = found.workflow_uids | (stored.reading.workflow_uids if stored is not None else set())
        outcome.drift += orphans(store, scope.namespaces, desired_keys, uids)
    return outcome
    return outcome


class _ProgressOverChunks:
    """The pass reports progress per chunk; the bar shows it over the whole pass.

    `total_pods` is the number of pods the source will hand on, when it knows (a dump, once
    read); otherwise the bar's total grows with each chunk.
    """

    def __init__(self, progress: Progress | None, total_pods: int | None) -> None:
        self.progress = progress
        self.total_pods = total_pods
        self.before: dict[str, int] = {"pods": 0, "apply": 0}  # done in earlier chunks
        self.current: dict[str, int] = {"pods": 0, "apply": 0}

    def update(self, phase: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        before = self.before.setdefault(phase, 0)
        self.current[phase] = done
        whole = self.total_pods if phase == "pods" and self.total_pods else before + total
        self.progress(phase, before + done, whole)

    def after(self, after_chunk: AfterChunk) -> AfterChunk:
        def chunk_done(chunk: Chunk, part: PassReport) -> None:
            for phase, done in self.current.items():
                # Pods are reported every 100; the chunk's report counts every one.
                self.before[phase] = self.before.get(phase, 0) + (part.pods_seen if phase == "pods" else done)
            self.current = dict.fromkeys(self.current, 0)
            after_chunk(chunk, part)

        return chunk_done


def counted_drift(outcome: ManualOutcome) -> list[Drift]:
    """The drift that decides `verify`'s exit code.

    Orphans are history, not damage: once Argo's TTL removes a finished
    Workflow its records are orphans by definition, and there is nothing to
    repair. Offline, wrong labels cannot be repaired either. Both are listed,
    neither counts.
    """
    uncounted = {"orphaned_execution"} | ({"wrong_pod_metadata"} if outcome.offline else set())
    return [d for d in outcome.drift if d.kind not in uncounted]
