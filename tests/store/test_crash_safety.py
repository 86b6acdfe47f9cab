"""Crash safety and concurrent writers: never a duplicate execution, artifact or event.

On the current library (batches of workflows in three transactions, or one put_lineage_subgraph
per workflow) and on the old MLMD servers (1.0.0 and 1.5.0: one put_execution per step; 1.14.0
as the current one), through gRPC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from sandbox.mlmd_legacy import CURRENT
from store.connect import open_store
from store.metadata import MetadataStore
from tests.conftest import OLD_MLMD_VERSIONS, VersionedMlmd
from tests.mlmd_snapshot import counts, snapshot
from tests.podfactory import chain, pods_of
from tests.store.test_converge import apply_patches


class Crash(BaseException):
    """The process died right after a committed transaction (not an Exception: nothing catches it)."""


class CrashAfter:
    """A store handle whose process 'dies' right after its n-th committed transaction.

    A transaction is a put_lineage_subgraph, put_attributions_and_associations or put_execution
    call; the capability probe's put_lineage_subgraph, which an old server refuses, commits
    nothing and is not counted.
    """

    def __init__(self, store: Any, n: int) -> None:
        self._store, self._left = store, n

    def _committed(self, result: Any) -> Any:
        self._left -= 1
        if self._left == 0:
            raise Crash
        return result

    def put_lineage_subgraph(self, *args: Any, **kwargs: Any) -> Any:
        return self._committed(self._store.put_lineage_subgraph(*args, **kwargs))

    def put_execution(self, *args: Any, **kwargs: Any) -> Any:
        return self._committed(self._store.put_execution(*args, **kwargs))

    def put_attributions_and_associations(self, *args: Any, **kwargs: Any) -> Any:
        return self._committed(self._store.put_attributions_and_associations(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def reconcile(pods: list[dict[str, Any]], store: Any, batch: int = 50) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions(write_batch_workflows=batch))


def workload() -> list[dict[str, Any]]:
    pods = []
    for w in range(4):
        pods += pods_of(chain(f"wf-{w}", 3), profile="3.3")
    return pods


@pytest.mark.parametrize(
    ("batch", "transactions"),
    [
        (1, 4),  # one transaction per workflow
        (3, 4),  # a batch of 3 workflows (contexts, records, links), then the 4th alone (one)
        (50, 3),  # one batch: contexts, records, links
    ],
)
def test_interrupted_after_any_transaction_then_rerun(
    batch: int, transactions: int, sqlite_url: str, tmp_path: Any
) -> None:
    """A crash after every transaction, batched or not: the rerun (batched too) converges to
    the state one uninterrupted pass leaves, every record linked to its own run context once."""
    reference = open_store(f"sqlite:///{tmp_path}/ref.sqlite")
    assert reconcile(workload(), reference, batch).transactions == transactions
    expected = snapshot(reference)
    for n in range(1, transactions + 1):
        url = f"sqlite:///{tmp_path}/crash{n}.sqlite"
        store = open_store(url)
        pods = workload()
        with pytest.raises(Crash):
            reconcile(pods, CrashAfter(store, n), batch)
        restarted = open_store(url)
        report = reconcile(pods, restarted, batch)
        assert report.errors == []
        assert snapshot(restarted) == expected, f"crash after transaction {n}"
        assert counts(restarted) == {"contexts": 4, "executions": 12, "artifacts": 24}
        again = reconcile(pods, restarted, batch)
        assert sum(again.actions.values()) == 0 and again.transactions == 0, f"crash after {n}"


@pytest.mark.parametrize("version", OLD_MLMD_VERSIONS)
def test_interrupted_after_any_transaction_on_old_mlmd(
    version: str, mlmd_server_factory: Callable[..., VersionedMlmd]
) -> None:
    """A crash after every transaction of a pass on an old server: each rerun converges to the
    state one uninterrupted pass leaves, with no record twice."""
    reference = open_store(mlmd_server_factory(version).url)
    total = reconcile(workload(), reference).transactions
    expected = snapshot(reference)
    # 1.14.0: one batch of the 4 workflows (contexts, records, links); else one per step.
    assert total == (3 if MetadataStore.over(reference).capabilities.external_ids else 12)
    for n in range(1, total + 1):
        store = open_store(mlmd_server_factory(version).url)
        pods = workload()
        with pytest.raises(Crash):
            reconcile(pods, CrashAfter(store, n))
        report = reconcile(pods, store)
        assert report.errors == []
        assert snapshot(store) == expected, f"crash after transaction {n}"
        assert counts(store) == {"contexts": 4, "executions": 12, "artifacts": 24}


@pytest.mark.parametrize(
    ("version", "batch"),
    [(CURRENT, 50), (CURRENT, 2), *((v, 50) for v in OLD_MLMD_VERSIONS)],
)
def test_three_concurrent_writers_create_no_duplicates(
    version: str,
    batch: int,
    request: pytest.FixtureRequest,
    mlmd_server_factory: Callable[..., VersionedMlmd],
) -> None:
    """Three passes at once (the current library over MySQL, old servers over gRPC); on the
    current library in one batch of the 4 workflows, and in batches of 2 (one writer's batch
    meets another's records not yet linked)."""
    url = request.getfixturevalue("mysql_url") if version == CURRENT else mlmd_server_factory(version).url
    pods = workload()
    reports: list[PassReport] = []
    failures: list[BaseException] = []
    start = threading.Barrier(3)

    def writer() -> None:
        try:
            store = open_store(url)
            start.wait(timeout=60)
            reports.append(reconcile([dict(p) for p in pods], store, batch))
        except BaseException as exc:  # reported below: a thread's error must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == [] and len(reports) == 3
    store = open_store(url)
    assert counts(store) == {"contexts": 4, "executions": 12, "artifacts": 24}
    assert all(r.errors == [] for r in reports), [r.errors for r in reports]
    events = store.get_events_by_execution_ids([e.id for e in store.get_executions()])
    assert len(events) == 12 * 2 + 4 * 2  # two outputs per step, one input per non-first step
    for context in store.get_contexts():  # each record in its own run context, once
        executions = store.get_executions_by_context(context.id)
        assert len(executions) == 3 and len(store.get_artifacts_by_context(context.id)) == 6
        assert all(context.name in e.custom_properties["kfp_pod_name"].string_value for e in executions)
    final = reconcile(pods, store, batch)
    apply_patches(pods, final)
    assert sum(reconcile(pods, store, batch).actions.values()) == 0
