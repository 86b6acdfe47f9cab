"""`reconcile` and `verify` by hand: one scoped pass against a cluster or a saved dump.

Both read exactly what the controller's full or targeted pass reads, limited
to the namespaces and workflows asked for; `verify` is a dry run turned into
a drift report. Nothing outside the scope is read, written or patched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import inputs as pass_inputs
from controller.drift import Drift, drift_of_plan, label_drift, label_owners, orphans
from controller.reconcile_pass import PassReport, PodProblem, Progress, apply_pod_patches, reconcile_pods
from controller.settings import Settings
from reconcile import conventions as c
from reconcile.argo import JSON
from store.types import TypeRegistry


class ScopeError(Exception):
    """A namespace or workflow that does not exist (a usage error)."""


@dataclass(frozen=True)
class Scope:
    """What a manual pass covers: namespaces (None = all) and, optionally, workflow names."""

    namespaces: list[str] | None
    workflows: list[str] = field(default_factory=list)

    def holds(self, namespace: str, workflow: str | None) -> bool:
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return not self.workflows or workflow in self.workflows


@dataclass
class ManualOutcome:
    """A manual pass's report, what it read, and (for verify) the drift."""

    report: PassReport
    found: pass_inputs.PassInputs
    drift: list[Drift] = field(default_factory=list)
    patches_applied: int = 0
    offline: bool = False


def _meta(obj: JSON) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def read_file(path: str, scope: Scope, settings: Settings) -> pass_inputs.PassInputs:
    """Pods, Workflows and WorkflowTaskResults of a `kubectl get ... -o json` List, within scope."""
    try:
        with Path(path).open("rb") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ScopeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ScopeError(f"{path} is not JSON: {exc}") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ScopeError(f"{path} is not a Kubernetes List (no 'items' array)")
    default_kind = "Pod" if document.get("kind") == "PodList" else None
    pods, workflows, results = [], [], []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("kind", default_kind)
        meta = _meta(item)
        namespace = meta.get("namespace", "default")
        if kind == "Workflow":
            if scope.holds(namespace, meta.get("name")):
                workflows.append(item)
        elif kind in ("Pod", "WorkflowTaskResult") or kind is None:
            workflow = (meta.get("labels") or {}).get(c.ARGO_WORKFLOW_LABEL)
            if scope.holds(namespace, workflow):
                (results if kind == "WorkflowTaskResult" else pods).append(item)
    return pass_inputs.assemble(pods, workflows, results, settings.reconcile_options())


def read_cluster(kube: Any, scope: Scope, settings: Settings) -> pass_inputs.PassInputs:
    """What the controller's passes read, limited to the scope; unknown names are a ScopeError."""
    options = settings.reconcile_options()
    for namespace in scope.namespaces or []:
        if not kube.namespace_exists(namespace):
            raise ScopeError(f"namespace {namespace!r} not found")
    if not scope.workflows:
        return pass_inputs.read_all(kube, scope.namespaces or [], options)
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
    if missing:
        within = ", ".join(scope.namespaces) if scope.namespaces else "any namespace"
        raise ScopeError(f"workflow {', '.join(missing)} not found in {within}")
    return pass_inputs.read_workflows(kube, where, options)


def run_manual(
    found: pass_inputs.PassInputs,
    store: Any,
    settings: Settings,
    *,
    write: bool,
    verify: bool,
    scope: Scope,
    kube: Any = None,
    progress: Progress | None = None,
) -> ManualOutcome:
    """One pass over what was read: write MLMD and patch pods (`write`), or only report drift."""
    report = reconcile_pods(
        found.pods,
        store,
        TypeRegistry(store),
        settings.reconcile_options(),
        dry_run=not write,
        taskresults=found.taskresults,
        nodes=found.nodes,
        podless_steps=found.podless_steps,
        progress=progress,
    )
    for namespace, name, message in found.problems:
        # A Workflow (or one of its nodes) that cannot be read: steps whose pod is gone are lost.
        report.errors.append(PodProblem(namespace, name, "malformed_workflow", message))
    outcome = ManualOutcome(report, found, offline=kube is None)
    if write and kube is not None:
        outcome.patches_applied = apply_pod_patches(kube, report)
    if verify:
        contexts: set[str] = set()
        for plan in report.plans:
            for item in drift_of_plan(plan):
                if item.kind.endswith("_context"):
                    # Every step of a workflow plans its run context; report it once.
                    if item.subject in contexts:
                        continue
                    contexts.add(item.subject)
                outcome.drift.append(item)
        outcome.drift += label_drift(report, found.pods, label_owners(store, report, found.pods))
        if not scope.workflows:
            desired = {p.step.execution.key for p in report.plans}
            outcome.drift += orphans(store, scope.namespaces, desired, found.workflow_uids)
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
