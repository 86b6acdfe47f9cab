"""What the stored-run readers yield, and the scope they read.

A reader yields one `StoredRun` per stored Workflow: the Workflow JSON
(parsed, ready for `reconcile.from_workflow.desired_steps_from_workflow`)
plus what the source knows about the run. A run the source holds but whose
steps cannot be rebuilt from it carries an `Unrecoverable` reason instead of
being dropped, so a pass can count and name it.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from reconcile.argo import offloaded_nodes_version

JSON = dict[str, Any]

RUN_ID_LABEL = "pipeline/runid"  # KFP's API server stamps it on the Workflow and every pod


class Unrecoverable(StrEnum):
    """Why a stored run's steps cannot be rebuilt from the source."""

    # Argo offloaded the nodes to its own database; the source has only the rest.
    NODES_OFFLOADED = "nodes_offloaded"
    # The row holds no Workflow: KFP created the run but it was never reported.
    NO_WORKFLOW = "no_workflow"
    # The stored text is not a Workflow JSON object.
    MALFORMED = "malformed"


@dataclass(frozen=True)
class RunScope:
    """Which stored runs to read; empty sets and None bounds mean "all".

    `since` <= finish time < `until`; either bound leaves out the runs that
    have no finish time (not finished when last stored). Times must be
    timezone-aware. `run_ids` are KFP run ids (the `pipeline/runid` label),
    `workflows` Workflow names.
    """

    since: datetime | None = None
    until: datetime | None = None
    run_ids: Set[str] = frozenset()
    namespaces: Set[str] = frozenset()
    workflows: Set[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                raise ValueError(f"RunScope.{name} must be timezone-aware, not {when!r}")

    @property
    def timed(self) -> bool:
        """Whether a finish-time bound is set."""
        return self.since is not None or self.until is not None


ALL_RUNS = RunScope()


@dataclass(frozen=True)
class StoredRun:
    """One stored Workflow and what its source knows about the run.

    `key` is the source's own key (KFP: the run id; Argo archive: the
    Workflow uid). `workflow` is None only when the stored text could not be
    read (`Unrecoverable.MALFORMED`, `NO_WORKFLOW`); with `NODES_OFFLOADED`
    it holds the Workflow without its nodes.
    """

    source: str
    key: str
    namespace: str
    workflow_name: str
    run_id: str | None
    finished_at: datetime | None
    workflow: JSON | None = field(repr=False)
    unrecoverable: Unrecoverable | None = None
    detail: str = ""

    @property
    def workflow_uid(self) -> str | None:
        """The Workflow's uid, part of every step key (None when unreadable)."""
        meta = (self.workflow or {}).get("metadata")
        uid = meta.get("uid") if isinstance(meta, dict) else None
        return uid if isinstance(uid, str) and uid else None

    def __str__(self) -> str:
        run = f", run {self.run_id}" if self.run_id and self.run_id != self.key else ""
        return f"{self.namespace}/{self.workflow_name} ({self.source} {self.key}{run})"


def epoch_to_utc(seconds: int | None) -> datetime | None:
    """A Unix time in seconds as an aware UTC datetime; None for 0 or None (not finished)."""
    if not seconds:
        return None
    return datetime.fromtimestamp(int(seconds), UTC)


def naive_utc(when: datetime | None) -> datetime | None:
    """An aware datetime as the naive UTC value a TIMESTAMP column holds (None stays None)."""
    return None if when is None else when.astimezone(UTC).replace(tzinfo=None)


def _run_id_label(workflow: JSON) -> str | None:
    meta = workflow.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    value = labels.get(RUN_ID_LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) and value else None


def stored_run(
    *,
    source: str,
    key: str,
    namespace: str,
    workflow_name: str,
    run_id: str | None,
    finished_at: datetime | None,
    text: str | bytes | None,
    what: str,
) -> StoredRun:
    """Parse one stored Workflow text into a StoredRun, marking what cannot be recovered.

    `what` names the stored text in messages ("WorkflowRuntimeManifest").
    The run id falls back to the Workflow's `pipeline/runid` label.
    """
    parts = {
        "source": source,
        "key": key,
        "namespace": namespace,
        "workflow_name": workflow_name,
        "finished_at": finished_at,
    }
    if not text or text.isspace():
        return StoredRun(
            **parts,
            run_id=run_id,
            workflow=None,
            unrecoverable=Unrecoverable.NO_WORKFLOW,
            detail=f"{what} is empty: the run was never reported",
        )
    try:
        workflow = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return StoredRun(
            **parts,
            run_id=run_id,
            workflow=None,
            unrecoverable=Unrecoverable.MALFORMED,
            detail=f"{what} is not valid JSON ({exc})",
        )
    if not isinstance(workflow, dict):
        return StoredRun(
            **parts,
            run_id=run_id,
            workflow=None,
            unrecoverable=Unrecoverable.MALFORMED,
            detail=f"{what} is not a JSON object",
        )
    run_id = run_id or _run_id_label(workflow)
    offloaded = offloaded_nodes_version(workflow)
    if offloaded is not None:
        return StoredRun(
            **parts,
            run_id=run_id,
            workflow=workflow,
            unrecoverable=Unrecoverable.NODES_OFFLOADED,
            detail=(
                f"Argo offloaded the Workflow's nodes to its database (version {offloaded}) "
                f"and the {source} does not hold them"
            ),
        )
    return StoredRun(**parts, run_id=run_id, workflow=workflow)
