"""Stored runs as one more chunk source: KFP's run store or Argo's archive, into a pass.

`reconcile --from-kfp-db URL` and `--from-argo-archive URL` read the Workflows
`history/` streams and hand their steps to `run_pass` as pod-less steps, in
chunks of at most `batch_runs` whole runs, so memory stays bounded however
many runs the source holds. The steps are those `from_workflow` rebuilds from a
live Workflow whose pods are gone, with the same keys, so a stored source can
be read before or after the cluster, as often as wanted, without duplicates.

In a combined pass (the cluster or a dump, then a stored source) the live
objects win: a stored run whose Workflow uid the live source still has is
skipped (`runs_live`), and so is a stored step whose key a live pod gave
(`steps_live`). Runs the source holds but cannot rebuild (nodes offloaded,
no Workflow, malformed text) are counted and named (`unrecoverable`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.reconcile_pass import Chunk
from history import (
    ArgoArchive,
    KfpRunDatabase,
    RunScope,
    StoredRun,
    StoredRunSource,
    open_argo_archive,
    open_kfp_db,
)
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep

log = logging.getLogger(__name__)

# Runs per chunk: one chunk's steps are read from MLMD and planned together; 50 runs of a
# typical pipeline are a few hundred steps, the size the pod path's chunks have.
DEFAULT_BATCH_RUNS = 50
KFP_DB = "kfp-db"
ARGO_ARCHIVE = "argo-archive"

# progress(phase, done, total), as controller.report.Progress
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class UnrecoverableRun:
    """A stored run whose steps cannot be rebuilt from the source: named in the report."""

    run: str  # e.g. "kubeflow/demo-x7k2p (kfp-db 3f1c...)"
    reason: str  # history.Unrecoverable value
    detail: str

    def to_json(self) -> dict[str, str]:
        """The `--output json` form."""
        return {"run": self.run, "reason": self.reason, "detail": self.detail}


@dataclass
class StoredReading:
    """What a stored source gave a pass: counts, the unrecoverable runs, the uids read."""

    source: str  # kfp-db or argo-archive
    url: str  # redacted: never a password
    runs_total: int = 0  # what the scope selected when the pass began
    runs_read: int = 0
    runs_live: int = 0  # skipped: the live source still has their Workflow
    steps: int = 0  # pod-less steps handed to the pass
    steps_live: int = 0  # skipped: a live pod gave the same step
    unrecoverable: list[UnrecoverableRun] = field(default_factory=list)
    # (namespace, workflow[/node], message): Workflows or nodes that cannot be read.
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    # Of the runs read and the steps handed to the pass; only for verify's orphan search
    # (`StoredChunks.track_keys`), so a reconcile over 100,000 runs does not hold them.
    workflow_uids: set[str] = field(default_factory=set)
    step_keys: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        """The `stored_runs` object of `--output json`."""
        return {
            "source": self.source,
            "url": self.url,
            "runs_total": self.runs_total,
            "runs_read": self.runs_read,
            "runs_live": self.runs_live,
            "steps": self.steps,
            "steps_live": self.steps_live,
            "unrecoverable_total": len(self.unrecoverable),
            "unrecoverable": [u.to_json() for u in self.unrecoverable],
        }


def open_stored_source(
    kind: str,
    url: str,
    *,
    password: str | None = None,
    cluster_name: str | None = None,
    page_runs: int | None = None,
) -> tuple[StoredRunSource, StoredReading]:
    """Open `kind` (KFP_DB or ARGO_ARCHIVE) read-only at `url`, with an empty reading of it.

    Without a password in the URL, `password` (a setting) is used, else the
    reader's environment variable (KFPMR_KFP_DB_PASSWORD, KFPMR_ARGO_ARCHIVE_PASSWORD).
    Raises history's SourceConfigError, SourceLayoutError or SourceUnavailableError.
    """
    paging: dict[str, int] = {} if page_runs is None else {"page_runs": page_runs}
    source: KfpRunDatabase | ArgoArchive
    if kind == KFP_DB:
        source = open_kfp_db(url, password=password, **paging)
    elif kind == ARGO_ARCHIVE:
        source = open_argo_archive(url, password=password, cluster_name=cluster_name, **paging)
    else:
        raise ValueError(f"unknown stored source {kind!r}")
    return source, StoredReading(source=kind, url=source.session.url.redacted())


class StoredChunks:
    """The chunks of a stored source's runs in `scope`; `reading` fills as they are taken.

    `live_uids` and `live_keys` (Workflow uids and step keys the live source
    gave, in a combined pass) are left out: the live objects win. They are
    read when `chunks()` runs, so a caller may fill them after constructing this.
    """

    def __init__(
        self,
        source: StoredRunSource,
        scope: RunScope,
        options: ReconcileOptions,
        reading: StoredReading,
        *,
        batch_runs: int = DEFAULT_BATCH_RUNS,
        live_uids: Collection[str] = frozenset(),
        live_keys: Collection[str] = frozenset(),
        progress: Progress | None = None,
    ) -> None:
        if batch_runs < 1:
            raise ValueError("batch_runs must be at least 1")
        self.source = source
        self.scope = scope
        self.options = options
        self.reading = reading
        self.batch_runs = batch_runs
        self.live_uids = live_uids
        self.live_keys = live_keys
        self.progress = progress
        self.track_keys = True  # fill reading.workflow_uids and step_keys

    def _steps_of(self, run: StoredRun) -> list[DesiredStep]:
        """The run's steps, or none when it is unrecoverable or live (counted either way)."""
        reading = self.reading
        uid = run.workflow_uid
        if uid is not None and self.track_keys:
            reading.workflow_uids.add(uid)
        if run.unrecoverable is not None or run.workflow is None:
            reason = run.unrecoverable.value if run.unrecoverable is not None else "malformed"
            reading.unrecoverable.append(UnrecoverableRun(str(run), reason, run.detail))
            # INFO: the report names every one of them; a warning line each would say it twice.
            log.info("stored run %s cannot be rebuilt: %s: %s", run, reason, run.detail)
            return []
        if uid is not None and uid in self.live_uids:
            reading.runs_live += 1
            return []
        steps, errors = desired_steps_from_workflow(run.workflow, self.options)
        for node_id, error in errors:
            reading.problems.append(
                (run.namespace, f"{run.workflow_name}/{node_id}", f"{error.message} (stored in {run})")
            )
        kept = [s for s in steps if s.execution.key not in self.live_keys]
        reading.steps_live += len(steps) - len(kept)
        reading.steps += len(kept)
        if self.track_keys:
            reading.step_keys.update(s.execution.key for s in kept)
        return kept

    def chunks(self) -> Iterator[Chunk]:
        """Chunks of pod-less steps, `batch_runs` runs at a time, read as they are taken."""
        reading = self.reading
        reading.runs_total = self.source.count(self.scope)
        if self.progress is not None:
            self.progress("runs", 0, reading.runs_total)
        batch: list[DesiredStep] = []
        runs_in_batch = 0
        for run in self.source.runs(self.scope):
            reading.runs_read += 1
            batch += self._steps_of(run)
            runs_in_batch += 1
            if self.progress is not None:
                # A run added meanwhile may push the count past the first total.
                self.progress("runs", reading.runs_read, max(reading.runs_total, reading.runs_read))
            if runs_in_batch >= self.batch_runs:
                if batch:
                    yield Chunk(podless_steps=batch)
                batch, runs_in_batch = [], 0
        if batch:
            yield Chunk(podless_steps=batch)


def parse_time(text: str) -> datetime:
    """A `--since`/`--until` value: ISO 8601 date or date and time; UTC unless it names a zone.

    Raises ValueError with the accepted forms.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an ISO 8601 date or date and time, e.g. 2026-11-30 or "
            "2026-11-30T08:00:00Z (UTC unless a zone is given)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when
