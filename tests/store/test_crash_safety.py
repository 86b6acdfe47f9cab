"""Crash safety and concurrent writers: never a duplicate execution, artifact or event."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import counts, snapshot
from tests.podfactory import chain, pods_of
from tests.store.test_converge import apply_patches


class Crash(BaseException):
    """The process died right after a committed transaction (not an Exception: nothing catches it)."""


class CrashAfter:
    """A store handle whose process 'dies' right after its n-th committed transaction."""

    def __init__(self, store: Any, n: int) -> None:
        self._store, self._left = store, n

    def put_lineage_subgraph(self, *args: Any, **kwargs: Any) -> Any:
        result = self._store.put_lineage_subgraph(*args, **kwargs)
        self._left -= 1
        if self._left == 0:
            raise Crash
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def reconcile(pods: list[dict[str, Any]], store: Any) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions())


def workload() -> list[dict[str, Any]]:
    pods = []
    for w in range(4):
        pods += pods_of(chain(f"wf-{w}", 3), profile="3.3")
    return pods


def test_interrupted_after_any_transaction_then_rerun(sqlite_url: str, tmp_path: Any) -> None:
    reference = open_store(f"sqlite:///{tmp_path}/ref.sqlite")
    reconcile(workload(), reference)
    expected = snapshot(reference)
    total = 4  # one transaction per workflow
    for n in range(1, total + 1):
        url = f"sqlite:///{tmp_path}/crash{n}.sqlite"
        store = open_store(url)
        pods = workload()
        with pytest.raises(Crash):
            reconcile(pods, CrashAfter(store, n))
        restarted = open_store(url)
        report = reconcile(pods, restarted)
        assert report.errors == []
        assert snapshot(restarted) == expected, f"crash after transaction {n}"
        assert counts(restarted) == {"contexts": 4, "executions": 12, "artifacts": 24}


def test_two_concurrent_writers_create_no_duplicates(mysql_url: str) -> None:
    pods = workload()
    reports = []

    def writer() -> None:
        store = open_store(mysql_url)
        reports.append(reconcile([dict(p) for p in pods], store))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    store = open_store(mysql_url)
    assert counts(store) == {"contexts": 4, "executions": 12, "artifacts": 24}
    assert all(r.errors == [] for r in reports), [r.errors for r in reports]
    events = store.get_events_by_execution_ids([e.id for e in store.get_executions()])
    assert len(events) == 12 * 2 + 4 * 2  # two outputs per step, one input per non-first step
    final = reconcile(pods, store)
    apply_patches(pods, final)
    assert sum(reconcile(pods, store).actions.values()) == 0
