"""KFP's run store: every run's Argo Workflow, read from `mlpipeline.run_details`.

KFP's API server keeps one `run_details` row per run (KFP 1.8.5:
`backend/src/apiserver/model/run.go`; the same table in 2.x), and its
persistence agent reports each Workflow change into it, so the column
`WorkflowRuntimeManifest` holds the run's whole Workflow JSON as last seen
-- spec, templates, annotations and status with its nodes -- long after
KFP deleted the Workflow itself (one day after it finished, by default).
Rows go only when a user deletes the run.

The reader knows two column layouts and refuses any other with one error:

- **kfp-1.8** (1.8.x): the 19 columns of 1.8.5's `RunDetail`, and no others.
- **kfp-2** (2.0 to 2.17 and later): those 19 plus 2.0's `JobUUID`, `State`,
  `StateHistory`, `PipelineVersionId`, `RuntimeParameters`, `PipelineRoot`,
  `PipelineContextId` and `PipelineRunContextId`; columns later 2.x releases
  add (`PluginsInput`, `PluginsOutput`, ...) are tolerated.

The run's finish time is `FinishedAtInSec`: the Workflow's
`status.finishedAt` in whole seconds, 0 until the run finished. MySQL and
MariaDB are read (`mysql://`), and PostgreSQL (`postgresql://`), which KFP
2.x can use too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Set
from enum import StrEnum
from types import TracebackType
from typing import Any

from history.errors import SourceLayoutError
from history.paging import DEFAULT_PAGE_BYTES, DEFAULT_PAGE_RUNS, RowRef, keyset_runs
from history.records import ALL_RUNS, RunScope, StoredRun, epoch_to_utc, stored_run
from history.session import ReadOnlySession
from history.url import DatabaseURL, parse_database_url
from history.where import Where

SOURCE = "kfp-db"
WHAT = "KFP database"
TABLE = "run_details"
DEFAULT_DATABASE = "mlpipeline"
PASSWORD_ENV = "KFPMR_KFP_DB_PASSWORD"
MANIFEST = "WorkflowRuntimeManifest"

COLUMNS_1_8 = frozenset(
    {
        "UUID",
        "ExperimentUUID",
        "DisplayName",
        "Name",
        "StorageState",
        "Namespace",
        "ServiceAccount",
        "Description",
        "CreatedAtInSec",
        "ScheduledAtInSec",
        "FinishedAtInSec",
        "Conditions",
        "PipelineId",
        "PipelineName",
        "PipelineSpecManifest",
        "WorkflowSpecManifest",
        "Parameters",
        "PipelineRuntimeManifest",
        "WorkflowRuntimeManifest",
    }
)
COLUMNS_2_ADDED = frozenset(
    {
        "JobUUID",
        "State",
        "StateHistory",
        "PipelineVersionId",
        "RuntimeParameters",
        "PipelineRoot",
        "PipelineContextId",
        "PipelineRunContextId",
    }
)


class KfpLayout(StrEnum):
    """The `run_details` column layouts this reader knows."""

    KFP_1_8 = "kfp-1.8"
    KFP_2 = "kfp-2"


def detect_layout(columns: Set[str], where: str) -> KfpLayout:
    """The layout of a `run_details` table with these columns; SourceLayoutError otherwise.

    `where` names the table in the error ("run_details in mysql://...").
    """
    if not columns:
        raise SourceLayoutError(f"{where}: there is no {TABLE} table; is this KFP's mlpipeline database?")
    if columns == COLUMNS_1_8:
        return KfpLayout.KFP_1_8
    if columns >= COLUMNS_1_8 | COLUMNS_2_ADDED:
        return KfpLayout.KFP_2
    added = columns & COLUMNS_2_ADDED
    nearest = COLUMNS_1_8 | COLUMNS_2_ADDED if added else COLUMNS_1_8
    missing = sorted(nearest - columns)
    extra = sorted(columns - nearest)
    parts = [f"missing {', '.join(missing)}"] if missing else []
    parts += [f"unexpected {', '.join(extra)}"] if extra else []
    raise SourceLayoutError(
        f"{where}: the column layout of {TABLE} is not one this reader knows "
        f"(KFP 1.8.5 or 2.x): {'; '.join(parts)}"
    )


class KfpRunDatabase:
    """KFP's mlpipeline database, open for reading stored runs (see the module docstring)."""

    def __init__(
        self,
        session: ReadOnlySession,
        *,
        page_runs: int = DEFAULT_PAGE_RUNS,
        page_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> None:
        self.session = session
        self.page_runs = page_runs
        self.page_bytes = page_bytes
        self._q = session.quote
        self.layout = detect_layout(self._columns(), f"{TABLE} in {session.url.redacted()}")

    def _columns(self) -> set[str]:
        if self.session.dialect == "mysql":
            sql = (
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s"
            )
        else:
            sql = (
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s"
            )
        names = {str(name) for (name,) in self.session.query(sql, (TABLE,))}
        if self.session.dialect == "mysql":
            # MySQL column names are case-insensitive: compare in the spelling KFP uses.
            known = {n.lower(): n for n in COLUMNS_1_8 | COLUMNS_2_ADDED}
            names = {known.get(n.lower(), n) for n in names}
        return names

    def _scope(self, scope: RunScope) -> Where:
        q = self._q
        where = Where()
        finished = q("FinishedAtInSec")
        if scope.timed:
            where.add(f"{finished} > 0")
        # FinishedAtInSec has whole seconds: widen the window to them rather than miss a run.
        if scope.since is not None:
            where.add(f"{finished} >= %s", math.floor(scope.since.timestamp()))
        if scope.until is not None:
            where.add(f"{finished} < %s", math.ceil(scope.until.timestamp()))
        where.add_in(q("UUID"), scope.run_ids)
        where.add_in(q("Namespace"), scope.namespaces)
        where.add_in(q("Name"), scope.workflows)
        return where

    def _size(self) -> str:
        length = "LENGTH" if self.session.dialect == "mysql" else "OCTET_LENGTH"
        return f"COALESCE({length}({self._q(MANIFEST)}), 0)"

    def count(self, scope: RunScope = ALL_RUNS) -> int:
        """How many stored runs `scope` selects (for a progress bar's total)."""
        where = self._scope(scope)
        [(total,)] = self.session.query(f"SELECT COUNT(*) FROM {TABLE}{where.sql()}", where.args)
        return int(total)

    def runs(self, scope: RunScope = ALL_RUNS) -> Iterator[StoredRun]:
        """The stored runs `scope` selects, one at a time, in run-id order (bounded memory)."""
        q = self._q
        base = self._scope(scope)

        def list_page(after: str | None, limit: int) -> list[RowRef[str]]:
            where = base.copy()
            if after is not None:
                where.add(f"{q('UUID')} > %s", after)
            rows = self.session.query(
                f"SELECT {q('UUID')}, {q('Namespace')}, {q('Name')}, {q('FinishedAtInSec')}, {self._size()} "
                f"FROM {TABLE}{where.sql()} ORDER BY {q('UUID')} LIMIT %s",
                [*where.args, limit],
            )
            return [RowRef(key=str(r[0]), size=int(r[4]), columns=tuple(r[1:4])) for r in rows]

        def fetch_texts(batch: list[RowRef[str]]) -> dict[str, Any]:
            where = Where().add_in(q("UUID"), [ref.key for ref in batch])
            sql = f"SELECT {q('UUID')}, {q(MANIFEST)} FROM {TABLE}{where.sql()}"
            rows = self.session.query(sql, where.args)
            return {str(key): text for key, text in rows}

        def to_run(ref: RowRef[str], text: Any) -> StoredRun:
            namespace, name, finished = ref.columns
            return stored_run(
                source=SOURCE,
                key=ref.key,
                namespace=str(namespace or ""),
                workflow_name=str(name or ""),
                run_id=ref.key,
                finished_at=epoch_to_utc(finished),
                text=text,
                what=MANIFEST,
            )

        return keyset_runs(
            list_page, fetch_texts, to_run, page_runs=self.page_runs, page_bytes=self.page_bytes
        )

    def close(self) -> None:
        """Close the connection."""
        self.session.close()

    def __enter__(self) -> KfpRunDatabase:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_kfp_db(
    url: str | DatabaseURL,
    *,
    password: str | None = None,
    page_runs: int = DEFAULT_PAGE_RUNS,
    page_bytes: int = DEFAULT_PAGE_BYTES,
) -> KfpRunDatabase:
    """Connect read-only to KFP's mlpipeline database and check its `run_details` layout.

    `url` is `mysql://user[:password]@host[:port]/mlpipeline` (the database
    name defaults to `mlpipeline`) or `postgresql://...`; without a password
    in it, `password` or the environment variable KFPMR_KFP_DB_PASSWORD is
    used. Raises SourceConfigError (bad URL), SourceUnavailableError (cannot
    connect or query) or SourceLayoutError (no known `run_details` layout).
    """
    target = (
        url
        if isinstance(url, DatabaseURL)
        else parse_database_url(
            url, what=WHAT, password=password, password_env=PASSWORD_ENV, default_database=DEFAULT_DATABASE
        )
    )
    session = ReadOnlySession(target, what=WHAT)
    try:
        return KfpRunDatabase(session, page_runs=page_runs, page_bytes=page_bytes)
    except BaseException:
        session.close()
        raise
