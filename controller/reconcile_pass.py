"""One reconcile pass over a set of pods: desired -> actual -> plan -> apply -> pod patches.

This is the function every trigger calls (the scheduler's full resync, the
watch's targeted pass, the `reconcile` command); it does no Kubernetes I/O:
it returns the pod patches and the caller applies (or prints) them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ml_metadata import errors as mlmd_errors

from reconcile.argo import JSON, PodView
from reconcile.classify import Disposition, classify
from reconcile.desired import desired_step
from reconcile.errors import PodError, Reason
from reconcile.options import ReconcileOptions
from reconcile.plan import StepPlan, order_for_apply, pass_outputs_by_uri, plan_step
from reconcile.pod_metadata import (
    AppliedIds,
    current_pod_metadata,
    desired_pod_metadata,
    pod_patch,
)
from reconcile.records import DesiredStep
from store.actual import read_actual
from store.apply import ApplyResult, apply_plans
from store.types import TypeRegistry

# progress(phase, done, total): phase "pods" while pods are read, "apply" while steps are written.
Progress = Callable[[str, int, int], None]

PATCH_CONCURRENCY = 8

# MLMD errors that mean the store itself is unusable: the pass stops, no pod is blamed.
STORE_DOWN = (mlmd_errors.UnavailableError, mlmd_errors.DeadlineExceededError)


@dataclass(frozen=True)
class PodProblem:
    """One pod that could not be reconciled."""

    namespace: str
    pod: str
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}: {self.reason}: {self.message}"


@dataclass(frozen=True)
class PodPatch:
    """A JSON merge patch of our labels/annotations for one pod."""

    namespace: str
    pod: str
    patch: dict[str, Any]


@dataclass
class PassReport:
    """What a pass saw and did; `to_json` is the `--output json` object."""

    pods_seen: int = 0
    pods_unchanged: int = 0  # of pods_seen: skipped, converged in an earlier pass and unchanged since
    pods_skipped: Counter[str] = field(default_factory=Counter)
    errors: list[PodProblem] = field(default_factory=list)
    warnings: list[PodProblem] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    pod_patches: list[PodPatch] = field(default_factory=list)
    pending_inputs: int = 0
    pending_outputs: int = 0
    transactions: int = 0
    duration_s: float = 0.0
    plans: list[StepPlan] = field(default_factory=list, repr=False)
    merged_patches: int = 0  # patches of merged chunks: counted, the chunks patched their own pods

    @property
    def patch_count(self) -> int:
        """Pod patches this pass planned (merged chunks' and its own)."""
        return self.merged_patches + len(self.pod_patches)

    def merge(self, part: PassReport) -> None:
        """Add the report of one chunk of a pass whose pods were patched already.

        Its plans and patches are not kept (`patch_count` counts the patches); durations
        add up.
        """
        self.pods_seen += part.pods_seen
        self.pods_unchanged += part.pods_unchanged
        self.pods_skipped.update(part.pods_skipped)
        self.errors += part.errors
        self.warnings += part.warnings
        self.actions.update(part.actions)
        self.merged_patches += part.patch_count
        self.pending_inputs += part.pending_inputs
        self.pending_outputs += part.pending_outputs
        self.transactions += part.transactions
        self.duration_s += part.duration_s

    def to_json(self) -> dict[str, Any]:
        return {
            "pods_seen": self.pods_seen,
            "pods_skipped": sum(self.pods_skipped.values()),
            "pods_skipped_by_reason": dict(sorted(self.pods_skipped.items())),
            "errors": [e.__dict__ for e in self.errors],
            "warnings": [w.__dict__ for w in self.warnings],
            "actions": dict(sorted(self.actions.items())),
            "pod_patches": [p.__dict__ for p in self.pod_patches],
            "pending_inputs": self.pending_inputs,
            "pending_outputs": self.pending_outputs,
            "mlmd_transactions": self.transactions,
            "duration_s": round(self.duration_s, 3),
        }


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
    pods: Iterable[Any],
    options: ReconcileOptions,
    report: PassReport,
    taskresults: Mapping[tuple[str, str], JSON] | None = None,
    nodes: Mapping[tuple[str, str], JSON] | None = None,
    progress: Progress | None = None,
) -> list[_Step]:
    """Validate, classify and turn pods into desired steps; bad pods go to the report.

    `taskresults` and `nodes` map (namespace, node id) to the step's
    WorkflowTaskResult and Workflow `status.nodes` entry, where known.
    """
    steps: dict[str, _Step] = {}
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
        for warning in desired.warnings:
            report.warnings.append(PodProblem(pod.namespace, pod.name, "warning", warning))
        steps[desired.execution.key] = _Step(pod, disposition, desired)
    return list(steps.values())


def _plan_all(steps: list[_Step], store: Any, report: PassReport) -> list[tuple[_Step, StepPlan]]:
    actual = read_actual(store, [s.desired for s in steps])
    upcoming = pass_outputs_by_uri((s.desired for s in steps), actual)
    planned = []
    for step in steps:
        try:
            planned.append((step, plan_step(step.desired, actual, upcoming)))
        except PodError as exc:
            report.errors.append(step.problem(exc.reason, exc.message))
    return planned


def reconcile_pods(
    pods: Iterable[Any],
    store: Any,
    types: TypeRegistry,
    options: ReconcileOptions,
    *,
    dry_run: bool = False,
    taskresults: Mapping[tuple[str, str], JSON] | None = None,
    nodes: Mapping[tuple[str, str], JSON] | None = None,
    podless_steps: Iterable[DesiredStep] = (),
    progress: Progress | None = None,
) -> PassReport:
    """Converge MLMD with `pods` and return the report, including the pod patches to make.

    `podless_steps` are steps whose pod is gone (pod GC, node loss), derived
    from their Workflow's `status.nodes`; they get records but no patches.
    Raises MLMD's UnavailableError/DeadlineExceededError when the store is down.
    """
    from controller.kube import paused_gc

    # A pass allocates a record per pod and per stored record and frees them all at
    # its end; none form reference cycles, so collections in between only walk them.
    with paused_gc():
        return _reconcile(pods, store, types, options, dry_run, taskresults, nodes, podless_steps, progress)


def _reconcile(
    pods: Iterable[Any],
    store: Any,
    types: TypeRegistry,
    options: ReconcileOptions,
    dry_run: bool,
    taskresults: Mapping[tuple[str, str], JSON] | None,
    nodes: Mapping[tuple[str, str], JSON] | None,
    podless_steps: Iterable[DesiredStep],
    progress: Progress | None,
) -> PassReport:
    started = time.monotonic()
    report = PassReport()
    steps = desired_steps(pods, options, report, taskresults, nodes, progress)
    known = {s.desired.execution.key for s in steps}
    steps += [_Step(None, Disposition.RECORD, d) for d in podless_steps if d.execution.key not in known]
    planned = _plan_all(steps, store, report)

    applied: dict[str, AppliedIds] = {}
    if dry_run:
        for _, plan in planned:
            applied[plan.step.execution.key] = AppliedIds(plan.context_id, plan.execution_id, {})
        final = planned
    else:
        result = _apply_with_progress(store, types, [p for _, p in planned], progress)
        report.transactions += result.transactions
        applied.update(result.applied)
        final = [(s, p) for s, p in planned if p.step.execution.key in result.applied]
        failed = [s for s, p in planned if p.step.execution.key in result.failed]
        if failed:
            final += _retry_one_by_one(failed, store, types, report, applied, result.failed)

    contexts_written: set[str] = set()
    for step, plan in final:
        report.plans.append(plan)
        for kind, detail in plan.actions():
            if kind.startswith("context."):
                # Every step of a workflow plans its context; it is written once.
                if detail in contexts_written:
                    continue
                contexts_written.add(detail)
            report.actions[kind] += 1
        report.pending_inputs += len(plan.pending_inputs)
        report.pending_outputs += plan.step.outputs is None
        if step.pod is None or step.disposition is Disposition.RECORD_CACHE_HIT:
            # No pod to label, or the cache webhook's labels name the original execution.
            continue
        desired = desired_pod_metadata(plan, applied[plan.step.execution.key])
        patch = pod_patch(current_pod_metadata(step.pod), desired)
        if patch is not None:
            report.pod_patches.append(PodPatch(step.pod.namespace, step.pod.name, patch))
    report.duration_s = time.monotonic() - started
    return report


def apply_pod_patches(kube: Any, report: PassReport, keep_going: Callable[[], bool] = lambda: True) -> int:
    """Merge-patch our labels onto the pods; a refused patch is that pod's error, not the pass's.

    Returns the number of pods patched (a pod that is gone meanwhile is not an error).
    `keep_going` is asked before each patch (leadership may be lost mid-pass).
    """
    from controller.kube import KubeApiError

    def one(patch: PodPatch) -> int:
        if not keep_going():
            return 0
        try:
            return int(kube.patch_pod_metadata(patch.namespace, patch.pod, patch.patch))
        except KubeApiError as exc:
            report.errors.append(PodProblem(patch.namespace, patch.pod, "pod_patch", exc.message))
            return 0

    # Patches are independent round trips; a few in flight hide the latency of each.
    with ThreadPoolExecutor(max_workers=PATCH_CONCURRENCY) as pool:
        return sum(pool.map(one, report.pod_patches))


def _apply_with_progress(
    store: Any, types: TypeRegistry, plans: list[StepPlan], progress: Progress | None
) -> ApplyResult:
    """apply_plans, a few workflows at a time when someone watches the progress."""
    if progress is None:
        return apply_plans(store, types, plans)
    by_workflow: dict[str, list[StepPlan]] = {}
    for plan in plans:
        by_workflow.setdefault(plan.step.context.name, []).append(plan)
    groups = list(by_workflow.values())
    result, created, done = ApplyResult(), {}, 0
    for start in range(0, len(groups), 20):
        batch = [p for group in groups[start : start + 20] for p in group]
        part = apply_plans(store, types, batch, created)
        result.applied.update(part.applied)
        result.failed.update(part.failed)
        result.transactions += part.transactions
        done += len(batch)
        progress("apply", done, len(plans))
    return result


def _retry_one_by_one(
    failed: list[_Step],
    store: Any,
    types: TypeRegistry,
    report: PassReport,
    applied: dict[str, AppliedIds],
    first_errors: Mapping[str, Exception],
) -> list[tuple[_Step, StepPlan]]:
    """Re-read and re-plan steps whose batch failed, then write each alone.

    A batch fails when another writer got there first (AlreadyExists) or one
    step's values are refused; alone, each step either converges against the
    fresh state or is reported with its own error.
    """
    for error in first_errors.values():
        if isinstance(error, STORE_DOWN):
            raise error
    done = []
    created_ids: dict[str, int] = {}
    planned = _plan_all(failed, store, report)
    order = {id(p): i for i, p in enumerate(order_for_apply([p for _, p in planned]))}
    for step, plan in sorted(planned, key=lambda sp: order[id(sp[1])]):
        result = apply_plans(store, types, [plan], created_ids)
        report.transactions += result.transactions
        error = result.failed.get(plan.step.execution.key)
        if error is None:
            applied.update(result.applied)
            done.append((step, plan))
            continue
        if isinstance(error, STORE_DOWN):
            raise error
        reason = (
            Reason.MLMD_CONFLICT if isinstance(error, mlmd_errors.AlreadyExistsError) else Reason.MLMD_WRITE
        )
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        report.errors.append(step.problem(reason, message))
    return done
