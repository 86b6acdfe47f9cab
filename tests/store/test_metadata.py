"""The store's seam: MLMD's errors come out as store errors, and a dropped store reopens.

Real MLMD (embedded SQLite, and the project's gRPC server, stopped to make it go away).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.plan import plan_workflows
from store.connect import open_store
from store.errors import StoreConflict, StoreError, StoreUnavailable, StoreUnavailableError, StoreWriteError
from store.metadata import MetadataStore, MlmdClient
from store.server import MetadataServer
from tests.reconcile.test_plan import PRODUCER, step


def test_a_conflicting_write_fails_its_steps_with_store_conflict(sqlite_url: str) -> None:
    store = MetadataStore.over(open_store(sqlite_url))
    plans, _ = plan_workflows([PRODUCER], store.read_actual([PRODUCER]))
    # Another writer stores the same execution between our read and our write.
    other = MetadataStore.over(store.open())
    other_plans, _ = plan_workflows([PRODUCER], other.read_actual([PRODUCER]))
    assert other.apply(other_plans).failed == {}
    result = store.apply(plans)
    error = result.failed[PRODUCER.execution.key]
    assert isinstance(error, StoreConflict) and isinstance(error, StoreError)
    assert str(error)  # MLMD's own message, one transaction's worth
    assert result.transactions == 1 and result.applied == {}


def test_a_refused_value_fails_its_steps_with_a_write_error(sqlite_url: str) -> None:
    client = open_store(sqlite_url)
    # Someone declared our execution type with an int run_id: MLMD refuses our string.
    properties = {"pipeline_name": pb.STRING, "run_id": pb.INT, "component_id": pb.STRING}
    client.put_execution_type(pb.ExecutionType(name="components.op", properties=properties))
    store = MetadataStore.over(client)
    wrong = step("w", outputs=())
    plans, _ = plan_workflows([wrong], store.read_actual([wrong]))
    result = store.apply(plans)
    error = result.failed[wrong.execution.key]
    assert isinstance(error, StoreWriteError) and "run_id" in str(error)
    assert isinstance(error.__cause__, Exception)  # MLMD's own error, kept for the log


def test_mlmd_going_away_mid_pass_is_store_unavailable(tmp_path: Path) -> None:
    server = MetadataServer(f"sqlite:///{tmp_path}/mlmd.sqlite")
    server.start()
    store = MetadataStore.over(open_store(server.url, call_timeout_s=5.0))
    assert store.read_actual([PRODUCER]).executions == {}
    server.stop()
    with pytest.raises(StoreUnavailable) as raised:
        store.read_actual([PRODUCER])
    assert isinstance(raised.value, StoreUnavailableError)  # the same "cannot reach MLMD" family
    with pytest.raises(StoreUnavailable):
        store.read_witness()


def test_a_dropped_store_is_opened_again_on_next_use(sqlite_url: str) -> None:
    opened: list[MlmdClient] = []

    def opener() -> MlmdClient:
        opened.append(open_store(sqlite_url))
        return opened[-1]

    store = MetadataStore(opener)
    assert opened == []  # opened on first use, not before
    store.read_witness()
    store.read_witness()
    assert len(opened) == 1
    store.drop()
    store.read_witness()
    assert len(opened) == 2
