"""KFP's run store read back: layouts, pages, scopes, unrecoverable runs, read-only, errors."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from history import (
    KfpLayout,
    RunScope,
    SourceConfigError,
    SourceLayoutError,
    SourceUnavailableError,
    StoredRun,
    Unrecoverable,
    open_kfp_db,
)
from history.records import ALL_RUNS, stored_run
from history.url import DatabaseURL
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from sandbox.kfp_runstore import KfpRunStore, create_run_details
from sandbox.persistence import NodesForm, every_second_compressed
from tests.history.conftest import record_runs

KfpStore = Callable[..., tuple[DatabaseURL, KfpRunStore]]


def read_all(url: DatabaseURL, scope: RunScope = ALL_RUNS, **kwargs: Any) -> list[StoredRun]:
    with open_kfp_db(url, **kwargs) as source:
        runs = list(source.runs(scope))
        assert source.count(scope) == len(runs)
    return runs


def finished_at(workflow: dict[str, Any]) -> datetime:
    return datetime.strptime(workflow["status"]["finishedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# --- the layouts it knows --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "layout", "expected"),
    [
        ("mysql", "1.8", KfpLayout.KFP_1_8),
        ("mysql", "2.5", KfpLayout.KFP_2),
        ("mysql", "2.17", KfpLayout.KFP_2),
        ("postgresql", "2.17", KfpLayout.KFP_2),
    ],
)
def test_each_known_layout_gives_every_run_with_its_workflow(
    kfp_store: KfpStore, dialect: str, layout: str, expected: KfpLayout
) -> None:
    url, store = kfp_store(dialect, layout)
    recorded = record_runs(runs=4, run_store=store, nodes_form=every_second_compressed)
    with open_kfp_db(url) as source:
        assert source.layout is expected
        runs = list(source.runs())
    assert sorted(r.workflow_name for r in runs) == sorted(recorded.names)
    assert [r.key for r in runs] == sorted(r.key for r in runs)  # run-id order
    assert sum("compressedNodes" in r.workflow["status"] for r in runs) == 2
    for run in runs:
        live = recorded.live_workflows[run.workflow_name]
        assert run.unrecoverable is None and run.namespace == "kubeflow"
        assert run.run_id == run.key == live["metadata"]["labels"]["pipeline/runid"]
        assert run.workflow_uid == live["metadata"]["uid"]
        assert run.finished_at == finished_at(live)
        steps, errors = desired_steps_from_workflow(run.workflow, ReconcileOptions())
        assert errors == [] and len(steps) == 3


def test_a_layout_it_does_not_know_is_one_clear_error(kfp_store: KfpStore) -> None:
    url, store = kfp_store("mysql", "1.8")
    db = store.db

    def error() -> str:
        with pytest.raises(SourceLayoutError) as caught:
            open_kfp_db(url)
        message = str(caught.value)
        assert "\n" not in message and url.redacted() in message
        return message

    db.execute("ALTER TABLE run_details ADD COLUMN State varchar(255)")
    assert "not one this reader knows (KFP 1.8.5 or 2.x): missing JobUUID, PipelineContextId" in error()
    db.execute("ALTER TABLE run_details DROP COLUMN State, ADD COLUMN Surprise int")
    assert error().endswith("not one this reader knows (KFP 1.8.5 or 2.x): unexpected Surprise")
    db.execute("ALTER TABLE run_details DROP COLUMN Surprise, DROP COLUMN WorkflowRuntimeManifest")
    assert error().endswith("missing WorkflowRuntimeManifest")
    db.execute("DROP TABLE run_details")
    assert "there is no run_details table; is this KFP's mlpipeline database?" in error()
    create_run_details(db, "2.17")
    with open_kfp_db(url) as source:
        assert source.layout is KfpLayout.KFP_2


# --- pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["mysql", "postgresql"])
def test_small_pages_give_the_same_runs_as_one_page(kfp_store: KfpStore, dialect: str) -> None:
    url, store = kfp_store(dialect, "1.8")
    record_runs(runs=10, run_store=store, nodes_form=every_second_compressed)
    whole = [(r.key, r.workflow) for r in read_all(url)]
    assert len(whole) == 10
    with open_kfp_db(url, page_runs=3, page_bytes=1) as source:
        queries: list[str] = []
        query = source.session.query

        def counting(sql: str, args: Any = ()) -> Any:
            queries.append(sql.split(" FROM ")[0])
            return query(sql, args)

        source.session.query = counting  # type: ignore[method-assign]
        paged = [(r.key, r.workflow) for r in source.runs()]
    assert paged == whole
    # 4 pages of keys (3+3+3+1) and, with a 1-byte budget, one fetch per run.
    lists = [q for q in queries if "LENGTH" in q]
    assert len(lists) == 4 and len(queries) == 4 + 10


# --- scopes --------------------------------------------------------------------------


def test_scopes_select_by_finish_time_run_id_namespace_and_workflow(kfp_store: KfpStore) -> None:
    url, store = kfp_store("mysql", "2.17")
    recorded = record_runs(runs=6, run_store=store, namespaces=("team-a", "team-b"), stagger=3)
    runs = read_all(url)
    assert len({r.finished_at for r in runs}) == 6
    by_finish = sorted(runs, key=lambda r: r.finished_at or datetime.min.replace(tzinfo=UTC))
    first, third, last = by_finish[0], by_finish[2], by_finish[-1]
    assert first.finished_at and third.finished_at and last.finished_at

    def names(**scope: Any) -> list[str]:
        return sorted(r.workflow_name for r in read_all(url, RunScope(**scope)))

    everything = sorted(recorded.names)
    assert names() == everything
    later = [r.workflow_name for r in by_finish[2:]]
    assert names(since=third.finished_at) == sorted(later)
    assert names(until=third.finished_at) == sorted(r.workflow_name for r in by_finish[:2])
    assert names(since=third.finished_at, until=last.finished_at) == sorted(later[:-1])
    assert names(since=last.finished_at + timedelta(seconds=1)) == []
    assert names(run_ids={first.key, last.key, "no-such-run"}) == sorted(
        [first.workflow_name, last.workflow_name]
    )
    assert names(namespaces={"team-b"}) == sorted(r.workflow_name for r in runs if r.namespace == "team-b")
    assert names(workflows={first.workflow_name}) == [first.workflow_name]
    assert names(namespaces={"team-a"}, workflows={first.workflow_name, last.workflow_name}) == sorted(
        r.workflow_name for r in (first, last) if r.namespace == "team-a"
    )

    # A run not finished when last stored has no finish time: in unbounded scopes only.
    running = json.loads(json.dumps(recorded.live_workflows[first.workflow_name]))
    running["metadata"].update(name="still-running", uid="uid-still-running")
    running["metadata"]["labels"]["pipeline/runid"] = "run-still-running"
    running["status"].update(phase="Running", finishedAt=None)
    store.report("run-still-running", running, running)
    assert "still-running" in names()
    assert "still-running" not in names(since=first.finished_at)
    assert "still-running" not in names(until=last.finished_at + timedelta(days=1))
    [unfinished] = read_all(url, RunScope(workflows={"still-running"}))
    assert unfinished.finished_at is None and unfinished.unrecoverable is None


def test_a_scope_takes_only_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        RunScope(since=datetime(2024, 5, 1))


# --- what cannot be recovered is marked, not dropped ---------------------------------


def test_unrecoverable_runs_are_marked_and_named(kfp_store: KfpStore) -> None:
    url, store = kfp_store("mysql", "1.8")

    def forms(index: int) -> NodesForm:
        return "offloaded" if index == 1 else "nodes"

    recorded = record_runs(runs=5, run_store=store, nodes_form=forms)
    runs = {r.workflow_name: r for r in read_all(url)}
    [offloaded] = [r for r in runs.values() if r.run_id and recorded.agent.form_of(r.run_id) == "offloaded"]
    assert offloaded.unrecoverable is Unrecoverable.NODES_OFFLOADED
    assert offloaded.workflow is not None and "nodes" not in offloaded.workflow["status"]
    assert offloaded.detail.startswith("Argo offloaded the Workflow's nodes to its database (version fnv:")
    assert str(offloaded) == f"kubeflow/{offloaded.workflow_name} (kfp-db {offloaded.key})"

    db = store.db
    q = db.quote
    intact = [r.key for r in runs.values() if r is not offloaded]
    never, bad_json, not_object = intact[:3]
    for key, text in ((never, ""), (bad_json, "{not json"), (not_object, "[1, 2]")):
        db.execute(
            f"UPDATE run_details SET {q('WorkflowRuntimeManifest')} = %s WHERE {q('UUID')} = %s", [text, key]
        )
    by_key = {r.key: r for r in read_all(url)}
    assert by_key[never].unrecoverable is Unrecoverable.NO_WORKFLOW
    assert by_key[never].detail == "WorkflowRuntimeManifest is empty: the run was never reported"
    assert by_key[bad_json].unrecoverable is Unrecoverable.MALFORMED
    assert by_key[bad_json].detail.startswith("WorkflowRuntimeManifest is not valid JSON (")
    assert by_key[not_object].detail == "WorkflowRuntimeManifest is not a JSON object"
    assert all(by_key[k].workflow is None for k in (never, bad_json, not_object))
    assert by_key[intact[3]].unrecoverable is None


# --- read-only, and errors without credentials ---------------------------------------


@pytest.mark.parametrize("dialect", ["mysql", "postgresql"])
def test_the_reader_cannot_write(kfp_store: KfpStore, dialect: str) -> None:
    url, store = kfp_store(dialect, "1.8")
    record_runs(runs=1, run_store=store)
    q = store.db.quote
    with open_kfp_db(url) as source:
        with pytest.raises(SourceUnavailableError, match="a query failed on the KFP database at"):
            source.session.query(f"UPDATE run_details SET {q('Description')} = 'changed'")
        [run] = list(source.runs())  # the session is still usable
    assert store.db.query(f"SELECT {q('Description')} FROM run_details") == [("",)]
    assert run.unrecoverable is None


def test_connection_errors_name_the_source_and_hide_the_password(mariadb_server: object) -> None:
    with pytest.raises(SourceUnavailableError) as caught:
        open_kfp_db("mysql://root:not-the-password@127.0.0.1:3306/mlpipeline")
    message = str(caught.value)
    assert message.startswith(
        "cannot connect to the KFP database at mysql://root:***@127.0.0.1:3306/mlpipeline: "
    )
    assert "Access denied" in message and "not-the-password" not in message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the socket closes
    with pytest.raises(
        SourceUnavailableError, match=f"at mysql://root:\\*\\*\\*@127.0.0.1:{port}/mlpipeline: "
    ):
        open_kfp_db(f"mysql://root:pw@127.0.0.1:{port}/mlpipeline")


def test_the_password_can_come_from_the_environment(
    kfp_store: KfpStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = kfp_store("mysql", "1.8")
    monkeypatch.setenv("KFPMR_KFP_DB_PASSWORD", "wrong-from-env")
    with pytest.raises(SourceUnavailableError) as caught:
        open_kfp_db(f"mysql://root@127.0.0.1:3306/{url.database}")
    assert "Access denied" in str(caught.value) and "wrong-from-env" not in str(caught.value)
    monkeypatch.delenv("KFPMR_KFP_DB_PASSWORD")
    with open_kfp_db(f"mysql://root@127.0.0.1:3306/{url.database}") as source:
        assert source.count() == 0


def test_text_no_parser_can_take_is_malformed_not_a_crash() -> None:
    def parsed(text: str) -> StoredRun:
        return stored_run(
            source="kfp-db",
            key="k",
            namespace="ns",
            workflow_name="wf",
            run_id=None,
            finished_at=None,
            text=text,
            what="M",
        )

    assert parsed("[" * 100_000).unrecoverable is Unrecoverable.MALFORMED  # too deep for json
    assert parsed(" \n\t").unrecoverable is Unrecoverable.NO_WORKFLOW
    labelled = parsed('{"metadata": {"labels": {"pipeline/runid": "r-1"}}}')
    assert labelled.unrecoverable is None and labelled.run_id == "r-1" and labelled.workflow_uid is None


def test_a_bad_connect_timeout_is_a_usage_error() -> None:
    with pytest.raises(
        SourceConfigError, match="connect_timeout must be a whole number of seconds, not 'soon'"
    ):
        open_kfp_db("mysql://root:pw@127.0.0.1:3306/mlpipeline?connect_timeout=soon")
