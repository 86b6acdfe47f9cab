"""Argo's workflow archive read back on PostgreSQL and MySQL: runs, pages, scopes, layout, read-only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from history import RunScope, SourceLayoutError, SourceUnavailableError, StoredRun, open_argo_archive
from history.records import ALL_RUNS
from history.url import DatabaseURL
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from sandbox.argo_archive import ArgoArchiveWriter
from sandbox.persistence import every_second_compressed, stored_form
from tests.history.conftest import record_runs

ArchiveStore = Callable[..., tuple[DatabaseURL, ArgoArchiveWriter]]


def read_all(url: DatabaseURL, scope: RunScope = ALL_RUNS, **kwargs: Any) -> list[StoredRun]:
    with open_argo_archive(url, **kwargs) as source:
        runs = list(source.runs(scope))
        assert source.count(scope) == len(runs)
    return runs


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_archived_workflows_come_back_hydrated_with_their_run_ids(
    archive_store: ArchiveStore, dialect: str
) -> None:
    url, archive = archive_store(dialect)
    recorded = record_runs(runs=4, archive=archive, nodes_form=every_second_compressed)
    runs = read_all(url)
    assert sorted(r.workflow_name for r in runs) == sorted(recorded.names)
    for run in runs:
        live = recorded.live_workflows[run.workflow_name]
        assert run.key == run.workflow_uid == live["metadata"]["uid"]
        assert run.run_id == live["metadata"]["labels"]["pipeline/runid"]
        assert run.finished_at == datetime.strptime(
            live["status"]["finishedAt"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=UTC)
        assert (
            run.workflow["metadata"]["labels"]["workflows.argoproj.io/workflow-archiving-status"]
            == "Persisted"
        )
        assert run.workflow["status"]["nodes"] == live["status"]["nodes"]  # Argo archives hydrated
        steps, errors = desired_steps_from_workflow(run.workflow, ReconcileOptions())
        assert errors == [] and len(steps) == 3


def test_a_compressed_or_offloaded_archive_row_is_read_as_it_is(archive_store: ArchiveStore) -> None:
    """Argo hydrates before archiving; a row that is not hydrated anyway is still read right."""
    url, archive = archive_store("postgresql")
    recorded = record_runs(runs=2)
    first, second = (recorded.live_workflows[n] for n in sorted(recorded.names))
    archive.archive(first)
    archive.archive(second)
    for workflow, form in ((first, "compressed"), (second, "offloaded")):
        stored = stored_form(workflow, form)
        stored["metadata"]["labels"]["workflows.argoproj.io/workflow-archiving-status"] = "Persisted"
        archive.db.execute(
            "UPDATE argo_archived_workflows SET workflow = %s WHERE uid = %s",
            [json.dumps(stored), workflow["metadata"]["uid"]],
        )
    by_uid = {r.key: r for r in read_all(url)}
    compressed = by_uid[first["metadata"]["uid"]]
    assert compressed.unrecoverable is None and "compressedNodes" in compressed.workflow["status"]
    assert len(desired_steps_from_workflow(compressed.workflow, ReconcileOptions())[0]) == 3
    offloaded = by_uid[second["metadata"]["uid"]]
    assert offloaded.unrecoverable == "nodes_offloaded"
    assert "the argo-archive does not hold them" in offloaded.detail


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_pages_and_scopes(archive_store: ArchiveStore, dialect: str) -> None:
    url, archive = archive_store(dialect)
    recorded = record_runs(runs=7, archive=archive, namespaces=("team-a", "team-b"), stagger=3)
    whole = read_all(url)
    assert len(whole) == 7
    paged = read_all(url, page_runs=3, page_bytes=1)
    assert [(r.key, r.workflow) for r in paged] == [(r.key, r.workflow) for r in whole]

    by_finish = sorted(whole, key=lambda r: r.finished_at or datetime.min.replace(tzinfo=UTC))
    assert len({r.finished_at for r in whole}) == 7
    third, last = by_finish[2], by_finish[-1]
    assert third.finished_at and last.finished_at

    def names(**scope: Any) -> list[str]:
        return sorted(r.workflow_name for r in read_all(url, RunScope(**scope)))

    assert names() == sorted(recorded.names)
    assert names(since=third.finished_at) == sorted(r.workflow_name for r in by_finish[2:])
    assert names(since=third.finished_at, until=last.finished_at) == sorted(
        r.workflow_name for r in by_finish[2:-1]
    )
    assert names(until=third.finished_at - timedelta(microseconds=1)) == sorted(
        r.workflow_name for r in by_finish[:2]
    )
    assert names(run_ids={third.run_id, "no-such-run"}) == [third.workflow_name]
    assert names(namespaces={"team-a"}) == sorted(r.workflow_name for r in whole if r.namespace == "team-a")
    assert names(workflows={last.workflow_name, third.workflow_name}) == sorted(
        [last.workflow_name, third.workflow_name]
    )


def test_cluster_and_instance_select_whose_archive_is_read(archive_store: ArchiveStore) -> None:
    url, archive = archive_store("postgresql", cluster_name="east", instance_id="kfp")
    recorded = record_runs(runs=2)
    first, second = (recorded.live_workflows[n] for n in sorted(recorded.names))
    archive.archive(first)
    ArgoArchiveWriter(archive.db, cluster_name="west", instance_id="").archive(second)
    assert len(read_all(url)) == 2
    assert [r.workflow_name for r in read_all(url, cluster_name="east")] == [first["metadata"]["name"]]
    assert [r.workflow_name for r in read_all(url, instance_id="")] == [second["metadata"]["name"]]
    assert read_all(url, cluster_name="west", instance_id="kfp") == []
    # The same uid archived by two clusters is two rows, and both are read.
    ArgoArchiveWriter(archive.db, cluster_name="west").archive(first)
    assert sorted(r.workflow_name for r in read_all(url)) == sorted(
        [*recorded.names, first["metadata"]["name"]]
    )


def test_a_database_without_the_archive_is_one_clear_error(archive_store: ArchiveStore) -> None:
    url, archive = archive_store("postgresql")
    archive.db.execute("ALTER TABLE argo_archived_workflows DROP COLUMN instanceid")
    with pytest.raises(SourceLayoutError) as caught:
        open_argo_archive(url)
    assert str(caught.value) == (
        f"{url.redacted()}: the column layout of argo_archived_workflows is not one this reader knows "
        "(Argo 3.x workflow archive): missing instanceid"
    )
    archive.db.execute("DROP TABLE argo_archived_workflows CASCADE")
    with pytest.raises(SourceLayoutError, match="there is no argo_archived_workflows table"):
        open_argo_archive(url)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_the_reader_cannot_write(archive_store: ArchiveStore, dialect: str) -> None:
    url, archive = archive_store(dialect)
    record_runs(runs=1, archive=archive)
    with open_argo_archive(url) as source:
        with pytest.raises(SourceUnavailableError, match="a query failed on the Argo workflow archive at"):
            source.session.query("DELETE FROM argo_archived_workflows")
        assert source.count() == 1
    assert archive.db.query("SELECT COUNT(*) FROM argo_archived_workflows") == [(1,)]
