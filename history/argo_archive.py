"""Argo's workflow archive: finished Workflows kept in `argo_archived_workflows`.

With `persistence.archive: true` in its configuration, Argo's controller
writes every completed Workflow into its database (`persist/sqldb`,
`workflow_archive.go`), PostgreSQL or MySQL: one row per Workflow keyed by
`(clustername, uid)`, with `name`, `namespace`, `phase`, `startedat`,
`finishedat`, `instanceid` and the whole Workflow JSON in `workflow`
(PostgreSQL `json`, `jsonb` from Argo 3.6; MySQL `json`). The controller
hydrates the Workflow first -- `compressedNodes` inflated, offloaded nodes
read back -- so the archived JSON carries `status.nodes`. Its labels are
also rows of `argo_archived_workflows_labels` (`name`, `value`), which is
how a KFP run id (label `pipeline/runid`) is found without reading the JSON.

The run's finish time is `finishedat`: the Workflow's `status.finishedAt`,
read as UTC (Argo writes UTC; a MySQL server whose time zone was not UTC
when Argo wrote shifts it by the offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from history.errors import SourceLayoutError
from history.paging import DEFAULT_PAGE_BYTES, DEFAULT_PAGE_RUNS, RowRef, keyset_runs
from history.records import ALL_RUNS, RUN_ID_LABEL, RunScope, StoredRun, naive_utc, stored_run
from history.session import ReadOnlySession
from history.url import DatabaseURL, parse_database_url
from history.where import Where

SOURCE = "argo-archive"
WHAT = "Argo workflow archive"
TABLE = "argo_archived_workflows"
LABELS_TABLE = "argo_archived_workflows_labels"
PASSWORD_ENV = "KFPMR_ARGO_ARCHIVE_PASSWORD"
COLUMNS = frozenset(
    {"clustername", "uid", "name", "namespace", "phase", "workflow", "startedat", "finishedat", "instanceid"}
)
LABEL_COLUMNS = frozenset({"clustername", "uid", "name", "value"})

ArchiveKey = tuple[str, str]  # (clustername, uid)


def _aware(when: Any) -> datetime | None:
    if not isinstance(when, datetime):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class ArgoArchive:
    """Argo's workflow archive, open for reading stored runs (see the module docstring).

    `cluster_name` and `instance_id`, when given, read only the Workflows
    archived by that cluster (Argo's `clusterName`, default "default") and
    controller instance id.
    """

    def __init__(
        self,
        session: ReadOnlySession,
        *,
        cluster_name: str | None = None,
        instance_id: str | None = None,
        page_runs: int = DEFAULT_PAGE_RUNS,
        page_bytes: int = DEFAULT_PAGE_BYTES,
    ) -> None:
        self.session = session
        self.cluster_name = cluster_name
        self.instance_id = instance_id
        self.page_runs = page_runs
        self.page_bytes = page_bytes
        self._check_layout()

    def _columns(self, table: str) -> set[str]:
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
        return {str(name).lower() for (name,) in self.session.query(sql, (table,))}

    def _check_layout(self) -> None:
        where = f"{self.session.url.redacted()}"
        for table, wanted in ((TABLE, COLUMNS), (LABELS_TABLE, LABEL_COLUMNS)):
            columns = self._columns(table)
            if not columns:
                raise SourceLayoutError(
                    f"{where}: there is no {table} table; is Argo's workflow archive in this database?"
                )
            missing = sorted(wanted - columns)
            if missing:
                raise SourceLayoutError(
                    f"{where}: the column layout of {table} is not one this reader knows "
                    f"(Argo 3.x workflow archive): missing {', '.join(missing)}"
                )

    def _scope(self, scope: RunScope) -> Where:
        where = Where()
        if self.cluster_name is not None:
            where.add("a.clustername = %s", self.cluster_name)
        if self.instance_id is not None:
            where.add("a.instanceid = %s", self.instance_id)
        if scope.since is not None:
            where.add("a.finishedat >= %s", naive_utc(scope.since))
        if scope.until is not None:
            where.add("a.finishedat < %s", naive_utc(scope.until))
        where.add_in("a.namespace", scope.namespaces)
        where.add_in("a.name", scope.workflows)
        if scope.run_ids:
            ids = sorted(scope.run_ids)
            where.add(
                f"EXISTS (SELECT 1 FROM {LABELS_TABLE} l WHERE l.clustername = a.clustername "
                f"AND l.uid = a.uid AND l.name = %s AND l.value IN ({', '.join(['%s'] * len(ids))}))",
                RUN_ID_LABEL,
                *ids,
            )
        return where

    def _text(self) -> str:
        return "a.workflow" if self.session.dialect == "mysql" else "a.workflow::text"

    def _size(self) -> str:
        length = "LENGTH" if self.session.dialect == "mysql" else "OCTET_LENGTH"
        return f"COALESCE({length}({self._text()}), 0)"

    def count(self, scope: RunScope = ALL_RUNS) -> int:
        """How many archived Workflows `scope` selects (for a progress bar's total)."""
        where = self._scope(scope)
        [(total,)] = self.session.query(f"SELECT COUNT(*) FROM {TABLE} a{where.sql()}", where.args)
        return int(total)

    def runs(self, scope: RunScope = ALL_RUNS) -> Iterator[StoredRun]:
        """The archived Workflows `scope` selects, one at a time, in (cluster, uid) order."""
        base = self._scope(scope)

        def list_page(after: ArchiveKey | None, limit: int) -> list[RowRef[ArchiveKey]]:
            where = base.copy()
            if after is not None:
                where.add("a.clustername > %s OR (a.clustername = %s AND a.uid > %s)", after[0], *after)
            rows = self.session.query(
                f"SELECT a.clustername, a.uid, a.namespace, a.name, a.finishedat, {self._size()} "
                f"FROM {TABLE} a{where.sql()} ORDER BY a.clustername, a.uid LIMIT %s",
                [*where.args, limit],
            )
            return [RowRef(key=(str(r[0]), str(r[1])), size=int(r[5]), columns=tuple(r[2:5])) for r in rows]

        def fetch_texts(batch: list[RowRef[ArchiveKey]]) -> dict[ArchiveKey, Any]:
            pairs = ", ".join(["(%s, %s)"] * len(batch))
            args = [part for ref in batch for part in ref.key]
            rows = self.session.query(
                f"SELECT a.clustername, a.uid, {self._text()} FROM {TABLE} a "
                f"WHERE (a.clustername, a.uid) IN ({pairs})",
                args,
            )
            return {(str(cluster), str(uid)): text for cluster, uid, text in rows}

        def to_run(ref: RowRef[ArchiveKey], text: Any) -> StoredRun:
            namespace, name, finished = ref.columns
            return stored_run(
                source=SOURCE,
                key=ref.key[1],
                namespace=str(namespace or ""),
                workflow_name=str(name or ""),
                run_id=None,
                finished_at=_aware(finished),
                text=text,
                what=f"{TABLE}.workflow",
            )

        return keyset_runs(
            list_page, fetch_texts, to_run, page_runs=self.page_runs, page_bytes=self.page_bytes
        )

    def close(self) -> None:
        """Close the connection."""
        self.session.close()

    def __enter__(self) -> ArgoArchive:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_argo_archive(
    url: str | DatabaseURL,
    *,
    password: str | None = None,
    cluster_name: str | None = None,
    instance_id: str | None = None,
    page_runs: int = DEFAULT_PAGE_RUNS,
    page_bytes: int = DEFAULT_PAGE_BYTES,
) -> ArgoArchive:
    """Connect read-only to Argo's archive database and check its tables.

    `url` is `postgresql://user[:password]@host[:port]/database` or
    `mysql://...`; without a password in it, `password` or the environment
    variable KFPMR_ARGO_ARCHIVE_PASSWORD is used. Raises SourceConfigError,
    SourceUnavailableError or SourceLayoutError.
    """
    target = (
        url
        if isinstance(url, DatabaseURL)
        else parse_database_url(url, what=WHAT, password=password, password_env=PASSWORD_ENV)
    )
    session = ReadOnlySession(target, what=WHAT)
    try:
        return ArgoArchive(
            session,
            cluster_name=cluster_name,
            instance_id=instance_id,
            page_runs=page_runs,
            page_bytes=page_bytes,
        )
    except BaseException:
        session.close()
        raise
