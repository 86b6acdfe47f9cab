"""The bookkeeping labels and annotations a reconciled pod carries (docs/kfp-contract.md §3).

Labels are output, never input of truth: they are computed from the ids of
the records found or written by key, and a pod whose labels differ (missing,
stale after a restore, or naming a reused id) is patched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconcile import conventions as c
from reconcile.argo import PodView
from reconcile.plan import StepPlan
from reconcile.records import PodMetadata


@dataclass(frozen=True)
class AppliedIds:
    """Ids a step's records have once its plan is applied (None: not yet, e.g. a dry run)."""

    context_id: int | None
    execution_id: int | None
    artifact_ids: Mapping[str, int]  # artifact key -> id, for artifacts this pass wrote


def _id(value: int | None) -> Any:
    return value if value is not None else "<new>"


def desired_pod_metadata(plan: StepPlan, applied: AppliedIds) -> PodMetadata:
    """What our labels and annotations on the step's pod should say."""
    labels = {
        c.EXECUTION_ID_LABEL: str(_id(applied.execution_id)),
        c.CONTEXT_ID_LABEL: str(_id(applied.context_id)),
    }
    linked: dict[str, tuple[Any, str]] = {}
    for done in plan.linked_inputs:
        linked[done.name] = (done.artifact_id, done.uri)
    for link in plan.inputs:
        artifact_id = link.artifact_id
        if artifact_id is None and link.artifact_key is not None:
            artifact_id = applied.artifact_ids.get(link.artifact_key)
        linked[link.name] = (_id(artifact_id), link.uri)
    inputs = [
        {"id": linked[want.name][0], "name": want.name, "uri": want.uri}
        for want in plan.step.inputs
        if want.name in linked
    ]
    annotations = {c.INPUT_ARTIFACT_IDS_ANNOTATION: json.dumps(inputs)}
    if plan.step.outputs is not None:
        ids = {want.key: artifact_id for want, artifact_id in plan.stored_outputs}
        for out in plan.outputs:
            stored_id = out.stored.id if out.stored is not None else None
            ids[out.desired.key] = applied.artifact_ids.get(out.desired.key, stored_id)
        outputs = [
            {"id": _id(ids.get(a.key)), "name": a.name, "uri": a.uri, "type": a.type_name}
            for a in plan.step.outputs
        ]
        labels[c.METADATA_WRITTEN_LABEL] = "true"
        annotations[c.OUTPUT_ARTIFACT_IDS_ANNOTATION] = json.dumps(outputs)
    return PodMetadata(labels=labels, annotations=annotations)


def current_pod_metadata(pod: PodView) -> PodMetadata:
    """Our labels and annotations as the pod carries them now."""
    return PodMetadata(
        labels={k: pod.labels[k] for k in c.OWNED_LABELS if k in pod.labels},
        annotations={k: pod.annotations[k] for k in c.OWNED_ANNOTATIONS if k in pod.annotations},
    )


def pod_patch(current: PodMetadata, desired: PodMetadata) -> dict[str, Any] | None:
    """A JSON merge patch setting only our keys that differ, or None when none do."""
    labels = {k: v for k, v in desired.labels.items() if current.labels.get(k) != v}
    annotations = {k: v for k, v in desired.annotations.items() if current.annotations.get(k) != v}
    if not labels and not annotations:
        return None
    metadata: dict[str, Any] = {}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata}
