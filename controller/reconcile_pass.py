"""One reconcile pass: chunks of whole workflows in; MLMD converged and pod patches out.

`run_pass` is the one function that reconciles. Every trigger calls it -- the
controller's full and targeted passes (controller/loop.py), `reconcile` and `verify`
(controller/manual.py) -- and only the chunks it is fed differ (controller/sources.py).
Each chunk goes through the same pipeline, top to bottom in `reconcile_chunk`:

    desired  = desired_steps(pods)              validate, classify, the records each step should have
    actual   = store.read_actual(desired)       what MLMD holds for them, in batched reads
    plans    = plan_workflows(desired, actual)  one plan per workflow (reconcile/plan.py)
    applied  = store.apply(plans)               batches of workflows (not in a dry run)
    patches  = pod_patch(pod, applied ids)      the labels each pod should carry
    after_chunk(chunk, report)                  the caller patches the pods, emits Events...

It does no Kubernetes I/O and opens nothing: scheduling, leadership, caches and the
store's lifecycle stay with its callers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.gc_pause import paused_gc
from controller.report import PassReport, PodPatch, PodProblem, Progress
from reconcile.argo import JSON, PodView
from reconcile.classify import Disposition, classify
from reconcile.desired import desired_step
from reconcile.errors import PodError, Reason
from reconcile.options import ReconcileOptions
from reconcile.plan import ActualState, StepPlan, WorkflowPlan, plan_workflows
from reconcile.pod_metadata import AppliedIds, current_pod_metadata, desired_pod_metadata, pod_patch
from reconcile.records import DesiredStep
from store.apply import ApplyResult
from store.errors import StoreConflict, StoreError, StoreUnavailable
from store.metadata import MetadataStore

StepWhere = tuple[str, str]  # (namespace, Argo node id)
ListedPod = Any  # a pod as listed: JSON, possibly malformed (the pass validates it)


@dataclass(frozen=True)
class Chunk:
    """Pods of whole workflows and what their steps need: a pass reconciles one chunk at a time.

    `taskresults` and `nodes` map (namespace, node id) to a step's WorkflowTaskResult and
    Workflow `status.nodes` entry, where known (they may hold other chunks' too).
    `podless_steps` are steps whose pod is gone (pod GC, node loss), rebuilt from their
    Workflow: they get records, and no patches.
    """

    pods: Sequence[ListedPod] = ()
    taskresults: Mapping[StepWhere, JSON] = field(default_factory=dict)
    nodes: Mapping[StepWhere, JSON] = field(default_factory=dict)
    podless_steps: Sequence[DesiredStep] = ()


# skip(pod, chunk): True for a pod to leave out (its step converged before, nothing changed since).
SkipPod = Callable[[ListedPod, Chunk], bool]
# after_chunk(chunk, report): the chunk is reconciled; its report holds its plans and pod patches.
AfterChunk = Callable[[Chunk, PassReport], None]


def run_pass(
    chunks: Iterable[Chunk],
    store: MetadataStore,
    options: ReconcileOptions,
    *,
    dry_run: bool = False,
    skip: SkipPod | None = None,
    after_chunk: AfterChunk | None = None,
    progress: Progress | None = None,
) -> PassReport:
    """Converge MLMD with each chunk in turn, and return the pass's report.

    `dry_run` writes nothing: the report says what would be written. `skip` leaves pods
    out (counted in `pods_unchanged`). `after_chunk` is handed each chunk's report, with
    its plans and pod patches, before the next chunk is read; the pass's report then keeps
    their counts only, so a pass over a large cluster never holds them all. Without
    `after_chunk`, the report keeps them.

    Raises StoreUnavailable when MLMD stops answering (the pass stops, no pod is blamed),
    and the other StoreErrors of a failed read.
    """
    report = PassReport()
    # A pass allocates a record per pod and per stored record and frees them by reference
    # counting; none form cycles, so collections in between would only walk them. Held
    # while the chunks are read too: their pages come and go the same way.
    with paused_gc():
        for chunk in chunks:
            part = reconcile_chunk(chunk, store, options, dry_run=dry_run, skip=skip, progress=progress)
            if after_chunk is not None:
                after_chunk(chunk, part)
            report.merge(part, keep_plans=after_chunk is None)
    return report


def reconcile_chunk(
    chunk: Chunk,
    store: MetadataStore,
    options: ReconcileOptions,
    *,
    dry_run: bool = False,
    skip: SkipPod | None = None,
    progress: Progress | None = None,
) -> PassReport:
    """One chunk through the pipeline: desired -> actual -> plan -> apply -> pod patches."""
    started = time.monotonic()
    report = PassReport()
    pods = [pod for pod in chunk.pods if skip is None or not skip(pod, chunk)]
    steps = with_podless(
        desired_steps(pods, options, report, chunk.taskresults, chunk.nodes, progress), chunk
    )
    actual = store.read_actual([s.desired for s in steps.values()])
    plans = _plan(steps, actual, report)
    if dry_run:
        applied = _as_planned(plans)
    else:
        plans, applied = _apply(plans, steps, store, report, progress, options.write_batch_workflows)
    _report_plans(plans, applied, steps, report)
    report.pods_unchanged = len(chunk.pods) - len(pods)
    report.pods_seen += report.pods_unchanged
    report.duration_s = time.monotonic() - started
    return report


# --- desired ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    pod: PodView | None  # None: the pod is gone, the step comes from its Workflow
    disposition: Disposition
    desired: DesiredStep

    def problem(self, reason: str, message: str) -> PodProblem:
        """A report line naming the pod, or the workflow node when the pod is gone."""
        if self.pod is not None:
            return PodProblem(self.pod.namespace, self.pod.name, reason, message)
        ref = self.desired.ref
        return PodProblem(ref.namespace, ref.pod_name or ref.node_id, reason, message)


def desired_steps(
    pods: Iterable[ListedPod],
    options: ReconcileOptions,
    report: PassReport,
    taskresults: Mapping[StepWhere, JSON] | None = None,
    nodes: Mapping[StepWhere, JSON] | None = None,
    progress: Progress | None = None,
) -> list[_Step]:
    """Validate, classify and turn pods into desired steps; bad pods go to the report.

    `taskresults` and `nodes` map (namespace, node id) to the step's
    WorkflowTaskResult and Workflow `status.nodes` entry, where known.
    """
    claims: dict[str, list[_Step]] = {}
    pods = list(pods)
    for raw in pods:
        report.pods_seen += 1
        if progress is not None and report.pods_seen % 100 == 0:
            progress("pods", report.pods_seen, len(pods))
        try:
            pod = PodView.from_json(raw)
        except PodError as exc:
            meta = raw.get("metadata") if isinstance(raw, dict) else None
            meta = meta if isinstance(meta, dict) else {}
            report.errors.append(
                PodProblem(
                    str(meta.get("namespace", "?")), str(meta.get("name", "?")), exc.reason, exc.message
                )
            )
            continue
        disposition = classify(pod, options)
        if disposition.skipped:
            report.pods_skipped[disposition.value] += 1
            continue
        try:
            where = (pod.namespace, pod.node_id())
            desired = desired_step(
                pod,
                disposition,
                options,
                taskresult=(taskresults or {}).get(where),
                node=(nodes or {}).get(where),
            )
        except PodError as exc:
            report.errors.append(PodProblem(pod.namespace, pod.name, exc.reason, exc.message))
            continue
        claims.setdefault(desired.execution.key, []).append(_Step(pod, disposition, desired))
    steps = []
    for claimants in claims.values():
        step = _one_claimant(claimants, report)
        if step is not None:
            assert step.pod is not None
            for warning in step.desired.warnings:
                report.warnings.append(PodProblem(step.pod.namespace, step.pod.name, "warning", warning))
            steps.append(step)
    return steps


def _one_claimant(claimants: list[_Step], report: PassReport) -> _Step | None:
    """The step of the one pod that claims its key; None, and an error per pod, when several do.

    Argo runs one pod per node, so two pods naming one node of one workflow cannot both
    be right, and the pass cannot tell which is: neither is recorded, both are named.
    The same pod listed twice (a dump joined from two) is one pod.
    """
    pods = {(s.pod.namespace, s.pod.name): s for s in reversed(claimants) if s.pod is not None}
    if len(pods) == 1:
        return next(iter(pods.values()))
    ref = claimants[0].desired.ref
    names = ", ".join(sorted(name for _, name in pods))
    message = (
        f"pods {names} all claim node {ref.node_id} of workflow {ref.workflow_name}; "
        "Argo runs one pod per node, so none of them is recorded"
    )
    for namespace, name in sorted(pods):
        report.errors.append(PodProblem(namespace, name, Reason.DUPLICATE_STEP, message))
    return None


def with_podless(steps: list[_Step], chunk: Chunk) -> dict[str, _Step]:
    """The pods' steps and the chunk's podless ones (a step with a pod wins), by execution key."""
    by_key = {s.desired.execution.key: s for s in steps}
    for desired in chunk.podless_steps:
        by_key.setdefault(desired.execution.key, _Step(None, Disposition.RECORD, desired))
    return by_key


# --- plan ------------------------------------------------------------------------


def _plan(steps: Mapping[str, _Step], actual: ActualState, report: PassReport) -> list[WorkflowPlan]:
    """A plan per workflow; the steps that cannot be planned go to the report."""
    plans, refused = plan_workflows([s.desired for s in steps.values()], actual)
    for desired, exc in refused:
        report.errors.append(steps[desired.execution.key].problem(exc.reason, exc.message))
    return plans


def _as_planned(plans: Sequence[WorkflowPlan]) -> dict[str, AppliedIds]:
    """The ids a dry run can name: those of records already stored."""
    return {
        p.step.execution.key: AppliedIds(plan.context_id, p.execution_id, {})
        for plan in plans
        for p in plan.steps
    }


# --- apply -----------------------------------------------------------------------


def _apply(
    plans: list[WorkflowPlan],
    steps: Mapping[str, _Step],
    store: MetadataStore,
    report: PassReport,
    progress: Progress | None,
    batch_workflows: int = 1,
) -> tuple[list[WorkflowPlan], dict[str, AppliedIds]]:
    """Write the plans; returns what was written (as plans) and the ids each step has now.

    The steps of a failed batch of workflows are read, planned and written again workflow
    by workflow; those of a failed workflow transaction, again step by step.
    """
    result = _apply_with_progress(store, plans, progress, batch_workflows)
    report.transactions += result.transactions
    applied = dict(result.applied)
    written = [p for p in (plan.only(result.applied) for plan in plans) if p.steps]
    failures = result.failed
    if failures and batch_workflows > 1:
        failures = _retry_by_workflow(failures, steps, store, report, applied, written)
    if failures:
        failed = {key: steps[key] for key in failures}
        written += _retry_one_by_one(failed, store, report, applied, failures)
    if result.contexts_of_failed:
        written = _with_contexts_written(written, plans, result.contexts_of_failed)
    # An input whose producer failed was not linked (store/apply.py leaves it for a later
    # pass): it is pending, not written, so that `actions` counts only what was written.
    return [_as_written(plan, applied) for plan in written], applied


def _as_written(plan: WorkflowPlan, applied: Mapping[str, AppliedIds]) -> WorkflowPlan:
    """`plan` as it was written: each step's inputs that got no artifact id become pending."""
    steps = tuple(
        without_unresolved_inputs(p, applied[p.step.execution.key].artifact_ids) for p in plan.steps
    )
    return replace(plan, steps=steps)


def without_unresolved_inputs(plan: StepPlan, resolved: Collection[str]) -> StepPlan:
    """`plan` with its links to artifacts this pass was to create, but did not, moved to pending.

    `resolved` holds the keys of the artifacts that were created (a producer that failed
    created none); a link to a stored artifact (by id) is always kept.
    """
    unresolved = [
        link for link in plan.inputs if link.artifact_id is None and link.artifact_key not in resolved
    ]
    if not unresolved:
        return plan
    names = {link.name for link in unresolved}
    waiting = tuple(want for want in plan.step.inputs if want.name in names)
    return replace(
        plan,
        inputs=tuple(link for link in plan.inputs if link not in unresolved),
        pending_inputs=plan.pending_inputs + waiting,
    )


def _with_contexts_written(
    written: list[WorkflowPlan], planned: Sequence[WorkflowPlan], contexts: Collection[str]
) -> list[WorkflowPlan]:
    """`written` with the context writes of batches that failed after writing their contexts.

    Their retries found those contexts stored and planned no write of them, but this pass
    made it: it is counted, once (a context alone when none of its steps got written).
    """
    original = {plan.context.name: plan.context_write for plan in planned}
    names = set(contexts)
    out = []
    for plan in written:
        if plan.context.name in names and plan.context_write is None:
            plan = replace(plan, context_write=original.get(plan.context.name))
            names.discard(plan.context.name)
        out.append(plan)
    out += [replace(plan, steps=()) for plan in planned if plan.context.name in names]
    return out


def _retry_by_workflow(
    first_errors: Mapping[str, StoreError],
    steps: Mapping[str, _Step],
    store: MetadataStore,
    report: PassReport,
    applied: dict[str, AppliedIds],
    written: list[WorkflowPlan],
) -> dict[str, StoreError]:
    """Re-read and re-plan the steps of failed batches, then write each workflow alone.

    A batch fails as a whole when one of its workflows is refused or another writer got
    there first; alone, each workflow either converges against the fresh state or fails
    its own steps, which are returned (to be retried step by step). Adds what was
    written to `written` and the ids to `applied`.
    """
    for error in first_errors.values():
        if isinstance(error, StoreUnavailable):
            raise error
    failed = {key: steps[key] for key in first_errors}
    actual = store.read_actual([s.desired for s in failed.values()])
    plans = _plan(failed, actual, report)
    result = store.apply(plans)
    report.transactions += result.transactions
    applied.update(result.applied)
    written += [p for p in (plan.only(result.applied) for plan in plans) if p.steps]
    return result.failed


def _apply_with_progress(
    store: MetadataStore, plans: Sequence[WorkflowPlan], progress: Progress | None, batch_workflows: int = 1
) -> ApplyResult:
    """store.apply, a few workflows at a time when someone watches the progress."""
    if progress is None:
        return store.apply(plans, batch_workflows=batch_workflows)
    result, created_ids, done = ApplyResult(), {}, 0
    total = sum(len(plan.steps) for plan in plans)
    group = max(20, batch_workflows)
    for start in range(0, len(plans), group):
        batch = plans[start : start + group]
        result.merge(store.apply(batch, created_ids, batch_workflows))
        done += sum(len(plan.steps) for plan in batch)
        progress("apply", done, total)
    return result


def _retry_one_by_one(
    failed: Mapping[str, _Step],
    store: MetadataStore,
    report: PassReport,
    applied: dict[str, AppliedIds],
    first_errors: Mapping[str, StoreError],
) -> list[WorkflowPlan]:
    """Re-read and re-plan steps whose transaction failed, then write each alone.

    A transaction fails when another writer got there first (StoreConflict) or one
    step's values are refused; alone, each step either converges against the fresh
    state or is reported with its own error. Returns what was written, as plans.
    """
    for error in first_errors.values():
        if isinstance(error, StoreUnavailable):
            raise error
    actual = store.read_actual([s.desired for s in failed.values()])
    written: list[WorkflowPlan] = []
    created_ids: dict[str, int] = {}
    for plan in _plan(failed, actual, report):
        done: set[str] = set()
        for step_plan in plan.steps:
            key = step_plan.step.execution.key
            # Producers come first: one that failed created nothing for this step to link to.
            step_plan = without_unresolved_inputs(step_plan, created_ids)
            if not step_plan.writes_mlmd and plan.context_write is None:
                # Nothing left to write (its inputs wait for their producer): no transaction.
                applied[key] = AppliedIds(plan.context_id, step_plan.execution_id, {})
                done.add(key)
                continue
            result = store.apply([replace(plan, steps=(step_plan,))], created_ids)
            report.transactions += result.transactions
            error = result.failed.get(key)
            if error is None:
                applied.update(result.applied)
                done.add(key)
                continue
            if isinstance(error, StoreUnavailable):
                raise error
            reason = Reason.MLMD_CONFLICT if isinstance(error, StoreConflict) else Reason.MLMD_WRITE
            report.errors.append(failed[key].problem(reason, str(error).splitlines()[0]))
        if done:
            written.append(plan.only(done))
    return written


# --- pod patches -----------------------------------------------------------------


def _report_plans(
    plans: Sequence[WorkflowPlan],
    applied: Mapping[str, AppliedIds],
    steps: Mapping[str, _Step],
    report: PassReport,
) -> None:
    """Count the plans' writes and what is pending, and patch each pod to the ids its records have."""
    for plan in plans:
        report.plans.append(plan)
        report.actions.update(kind for kind, _ in plan.actions())
        for step_plan in plan.steps:
            key = step_plan.step.execution.key
            report.pending_inputs += len(step_plan.pending_inputs)
            report.pending_outputs += step_plan.step.outputs is None
            step = steps[key]
            if step.pod is None or step.disposition is Disposition.RECORD_CACHE_HIT:
                # No pod to label, or the cache webhook's labels name the original execution.
                continue
            patch = pod_patch(current_pod_metadata(step.pod), desired_pod_metadata(step_plan, applied[key]))
            if patch is not None:
                report.pod_patches.append(PodPatch(step.pod.namespace, step.pod.name, patch))
