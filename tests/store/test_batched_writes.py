"""Batched writes (store/apply.py): many workflows in at most three transactions, each record
linked to its own run context, and a failed batch retried workflow by workflow, then step by step.

Real MLMD (the embedded library over SQLite); the crash and concurrency cases are in
test_crash_safety.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from controller.reconcile_pass import Chunk, desired_steps, run_pass
from controller.report import PassReport
from reconcile.errors import Reason
from reconcile.options import ReconcileOptions
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import counts, snapshot
from tests.podfactory import Step, chain, pods_of

PROFILE = "3.3"


def healthy(workflows: int) -> list[dict[str, Any]]:
    pods = []
    for w in range(workflows):
        pods += pods_of(chain(f"wf-{w}", 3), profile=PROFILE)
    return pods


def refused_workflow() -> list[dict[str, Any]]:
    """A producer MLMD refuses (its type is poisoned by `poison`) and its consumer, which is fine."""
    steps = [
        Step("wf-bad", "refused-producer"),
        Step("wf-bad", "consumer", inputs={"data": "refused-producer:out"}),
    ]
    return pods_of(steps, profile=PROFILE)


def poison(client: Any, pod: dict[str, Any]) -> None:
    """Register the pod's execution type with a property type MLMD refuses its writes for."""
    [step] = desired_steps([pod], ReconcileOptions(), PassReport())
    name = step.desired.execution.type_name
    client.put_execution_type(pb.ExecutionType(name=name, properties={"run_id": pb.INT}))


def reconcile(pods: list[dict[str, Any]], client: Any, batch: int) -> PassReport:
    options = ReconcileOptions(write_batch_workflows=batch)
    return run_pass([Chunk(pods)], MetadataStore.over(client), options)


def test_many_workflows_take_three_transactions_and_each_record_its_own_context(tmp_path: Path) -> None:
    """12 workflows, batches of 5: 3 batches of 3 transactions; the same records, associations and
    attributions as one transaction per workflow, and the next pass writes nothing."""
    reference = open_store(f"sqlite:///{tmp_path}/ref.sqlite")
    assert reconcile(healthy(12), reference, 1).transactions == 12
    batched = open_store(f"sqlite:///{tmp_path}/batched.sqlite")
    report = reconcile(healthy(12), batched, 5)
    assert report.errors == [] and report.transactions == 9
    assert snapshot(batched) == snapshot(reference)
    for context in batched.get_contexts():
        workflow = context.name
        executions = batched.get_executions_by_context(context.id)
        assert len(executions) == 3
        pods = [e.custom_properties["kfp_pod_name"].string_value for e in executions]
        assert all(pod.rsplit("-", 1)[0] == workflow for pod in pods), (workflow, pods)
        assert len(batched.get_artifacts_by_context(context.id)) == 6
    again = reconcile(healthy(12), batched, 5)
    assert sum(again.actions.values()) == 0 and again.transactions == 0


def test_a_batch_with_one_refused_workflow_commits_the_others_and_names_the_bad_pod(tmp_path: Path) -> None:
    """The batch fails as a whole; read again and written workflow by workflow, the healthy ones
    are committed, and the refused workflow step by step: only its refused pod is reported,
    exactly as with one transaction per workflow."""
    pods = healthy(3) + refused_workflow() + healthy(6)[9:]
    producer = refused_workflow()[0]
    stores = {}
    reports = {}
    for batch in (1, 50):
        client = open_store(f"sqlite:///{tmp_path}/batch{batch}.sqlite")
        poison(client, producer)
        reports[batch] = reconcile(pods, client, batch)
        stores[batch] = client
    for report in reports.values():
        errors = [(e.pod, e.reason) for e in report.errors]
        assert errors == [(producer["metadata"]["name"], Reason.MLMD_WRITE)]
        assert report.pending_inputs == 1
    assert snapshot(stores[50]) == snapshot(stores[1])
    # 6 healthy workflows of 3 steps, and the refused workflow's consumer (2 outputs each).
    assert counts(stores[50]) == {"contexts": 7, "executions": 19, "artifacts": 38}
    assert reports[50].actions == reports[1].actions
    # The batch's attempt (its contexts, committed; its records, refused), 7 workflows alone
    # (the refused one too), then the refused workflow's two steps alone (one refused).
    assert reports[50].transactions == 2 + 7 + 2
    for _ in range(2):  # the next passes: the refused step again, nothing else
        again = reconcile(pods, stores[50], 50)
        assert [e.pod for e in again.errors] == [producer["metadata"]["name"]]
        assert sum(again.actions.values()) == 0


class StopBeforeLinks:
    """The MLMD client, but the links' transaction never happens (as if the process died)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def put_attributions_and_associations(self, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # what a SIGINT between two transactions looks like

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_records_left_unlinked_by_a_stopped_batch_are_drift_and_the_next_pass_links_them(
    tmp_path: Path,
) -> None:
    """A batch that stopped after its records and before their links (the records exist, no run
    context holds them): a dry run reports them, and one pass links each to its own context."""
    url = f"sqlite:///{tmp_path}/mlmd.sqlite"
    reference = open_store(f"sqlite:///{tmp_path}/ref.sqlite")
    reconcile(healthy(4), reference, 50)

    client = open_store(url)
    with contextlib.suppress(KeyboardInterrupt):
        reconcile(healthy(4), StopBeforeLinks(client), 50)
    assert counts(client) == {"contexts": 4, "executions": 12, "artifacts": 24}
    assert all(client.get_executions_by_context(c.id) == [] for c in client.get_contexts())

    dry = run_pass([Chunk(healthy(4))], MetadataStore.over(client), ReconcileOptions(), dry_run=True)
    assert dry.actions["execution.update"] == 12 and dry.actions["artifact.update"] == 24
    assert dry.transactions == 0

    report = reconcile(healthy(4), client, 50)
    assert report.errors == [] and report.transactions == 2  # records again, then links
    assert snapshot(client) == snapshot(reference)
    again = reconcile(healthy(4), client, 50)
    assert sum(again.actions.values()) == 0


def test_beside_linked_records_only_those_a_stopped_batch_left_are_linked_again(tmp_path: Path) -> None:
    """30 workflows linked, then a batch of 40 more stopped before its links: one read holds
    more executions than a page of MLMD's answers (100), and only the 40 are planned again."""
    url = f"sqlite:///{tmp_path}/mlmd.sqlite"
    reference = open_store(f"sqlite:///{tmp_path}/ref.sqlite")
    reconcile(healthy(70), reference, 50)
    client = open_store(url)
    reconcile(healthy(30), client, 50)
    with contextlib.suppress(KeyboardInterrupt):
        reconcile(healthy(70), StopBeforeLinks(client), 50)
    assert counts(client) == {"contexts": 70, "executions": 210, "artifacts": 420}

    dry = run_pass([Chunk(healthy(70))], MetadataStore.over(client), ReconcileOptions(), dry_run=True)
    assert dry.actions["execution.update"] == 40 * 3 and dry.actions["artifact.update"] == 40 * 6
    assert dry.actions["execution.create"] == 0

    reconcile(healthy(70), client, 50)
    assert snapshot(client) == snapshot(reference)
    assert sum(reconcile(healthy(70), client, 50).actions.values()) == 0
