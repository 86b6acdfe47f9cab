"""Drift: what `verify` reports -- the difference a dry-run pass found, grouped by kind.

Every planned write is drift of some kind (a missing record, one the
upstream writer left without our key, or one whose fields differ), every
planned pod patch is label drift, and records with our keys that no pod and
no Workflow accounts for any more are orphans (reported, never deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from controller.report import PassReport
from reconcile import conventions as c
from reconcile import keys
from reconcile.plan import Op, StepPlan, WorkflowPlan
from store.metadata import MetadataStore

# Report order: what is missing, then what lacks our key, then what differs.
KINDS = (
    "missing_context",
    "missing_execution",
    "missing_artifact",
    "missing_event",
    "unkeyed_context",
    "unkeyed_execution",
    "unkeyed_artifact",
    "mismatched_context",
    "mismatched_execution",
    "mismatched_artifact",
    "wrong_pod_metadata",
    "orphaned_execution",
)


@dataclass(frozen=True)
class Drift:
    """One difference between MLMD (or a pod) and what it should be."""

    kind: str
    subject: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def drift_of_plan(plan: WorkflowPlan) -> list[Drift]:
    """The record drift one workflow's plan implies: its run context's (once), then each step's."""
    found: list[Drift] = []
    if plan.context_write is not None:
        kind = {Op.CREATE: "missing_context", Op.ADOPT: "unkeyed_context", Op.UPDATE: "mismatched_context"}[
            plan.context_write.op
        ]
        found.append(Drift(kind, plan.context.name, f"run context {plan.context.name!r}"))
    for step_plan in plan.steps:
        found += _step_drift(step_plan)
    return found


def _step_drift(plan: StepPlan) -> list[Drift]:
    found: list[Drift] = []
    step = plan.step
    if plan.execution is not None:
        ex = plan.execution
        if ex.op is Op.CREATE:
            found.append(Drift("missing_execution", ex.desired.key, f"step {step.ref}"))
        else:
            kind = "unkeyed_execution" if ex.op is Op.ADOPT else "mismatched_execution"
            found.append(
                Drift(
                    kind,
                    ex.desired.key,
                    f"id {ex.stored.id if ex.stored else '?'}: differs in {', '.join(ex.changes)}",
                )
            )
    for link in plan.inputs:
        found.append(Drift("missing_event", step.execution.key, f"INPUT {link.name!r} from {link.uri}"))
    for out in plan.outputs:
        if out.op is Op.CREATE:
            found.append(
                Drift("missing_artifact", out.desired.key, f"output {out.desired.name!r} {out.desired.uri}")
            )
            continue
        if out.op is not None:
            kind = "unkeyed_artifact" if out.op is Op.ADOPT else "mismatched_artifact"
            stored_id = out.stored.id if out.stored else "?"
            found.append(Drift(kind, out.desired.key, f"id {stored_id}: differs in {', '.join(out.changes)}"))
        if out.add_event:
            found.append(Drift("missing_event", step.execution.key, f"OUTPUT {out.desired.name!r}"))
    return found


def _label_detail(key: str, current: str | None, desired: str, owners: Mapping[int, str | None]) -> str:
    short = key.removeprefix(c.KFP)
    if current is None:
        return f"{short} missing (should be {desired[:80]})"
    if key == c.EXECUTION_ID_LABEL and current.isdigit():
        owner = owners.get(int(current), "<none>")
        if owner == "<none>":
            return f"{short}={current} names an execution that does not exist (should be {desired})"
        return f"{short}={current} names another record ({owner or 'no key'}); should be {desired}"
    return f"{short}={current[:80]} (should be {desired[:80]})"


def _metadata(pod: Any) -> dict[str, Any]:
    """A listed pod's metadata, {} when it is not a map (such a pod is in the report's errors)."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    return meta if isinstance(meta, dict) else {}


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def label_drift(report: PassReport, pods: Iterable[Any], owners: Mapping[int, str | None]) -> list[Drift]:
    """One drift per wrong label or annotation of ours on a pod."""
    current = {}
    for pod in pods:
        meta = _metadata(pod)
        current[(meta.get("namespace", "default"), meta.get("name"))] = meta
    found = []
    for patch in report.pod_patches:
        meta = current.get((patch.namespace, patch.pod), {})
        for field in ("labels", "annotations"):
            have = _map(meta.get(field))
            for key, want in patch.patch["metadata"].get(field, {}).items():
                detail = _label_detail(key, have.get(key), want, owners)
                found.append(Drift("wrong_pod_metadata", f"{patch.namespace}/{patch.pod}", detail))
    return found


def label_owners(store: MetadataStore, report: PassReport, pods: Iterable[Any]) -> dict[int, str | None]:
    """Execution id -> its key, for the ids that wrong labels name (one batched read)."""
    wrong = {(p.namespace, p.pod) for p in report.pod_patches}
    ids = set()
    for pod in pods:
        meta = _metadata(pod)
        if (meta.get("namespace", "default"), meta.get("name")) in wrong:
            value = _map(meta.get("labels")).get(c.EXECUTION_ID_LABEL, "")
            if isinstance(value, str) and value.isdigit():
                ids.add(int(value))
    if not ids:
        return {}
    return store.execution_keys(ids)


def orphans(
    store: MetadataStore,
    namespaces: Sequence[str] | None,
    desired_keys: set[str],
    live_workflow_uids: set[str],
) -> list[Drift]:
    """Our executions whose step no listed pod or Workflow accounts for any more (never deleted)."""
    prefixes = [f"{keys.PREFIX}/step/{ns}/" for ns in namespaces] if namespaces else [f"{keys.PREFIX}/step/"]
    found = []
    for prefix in prefixes:
        for execution in store.executions_keyed_under(prefix):
            key = execution.external_id or execution.name or ""
            if key in desired_keys:
                continue
            parts = key[len(keys.PREFIX) + len("/step/") :].split("/", 2)
            if len(parts) == 3 and parts[1] in live_workflow_uids:
                continue  # its Workflow still exists (e.g. a node not yet or no longer a step)
            pod = execution.custom_properties.get("kfp_pod_name")
            detail = f"id {execution.id}, pod {'?' if pod is None else pod}: pod and workflow are gone"
            found.append(Drift("orphaned_execution", key, detail))
    return found


def grouped(drift: Iterable[Drift]) -> dict[str, list[Drift]]:
    """Drift by kind, in report order."""
    groups: dict[str, list[Drift]] = {kind: [] for kind in KINDS}
    for item in drift:
        groups.setdefault(item.kind, []).append(item)
    return {kind: items for kind, items in groups.items() if items}
