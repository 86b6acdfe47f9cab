"""The pass says what happened, and nothing else: conflicts named, counts true.

- Two pods claiming one step of one workflow are both named in errors; neither is recorded.
- `actions` counts only what was written: an INPUT event whose producer failed is pending,
  and a converged store gives 0 actions on the next pass although that producer still fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from controller.reconcile_pass import Chunk, desired_steps, run_pass
from controller.report import PassReport
from reconcile.errors import Reason
from reconcile.options import ReconcileOptions
from reconcile.records import EventKind
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import snapshot
from tests.podfactory import chain, pods_of

OPTIONS = ReconcileOptions()


def copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------- conflicts
def test_two_pods_claiming_one_step_are_both_named_and_neither_recorded(tmp_path: Path) -> None:
    pods = pods_of(chain("wf-twin", 3), profile="3.3")
    twin = copy(pods[1])
    twin["metadata"]["name"] += "-twin"
    claimed = [pods[1]["metadata"]["name"], twin["metadata"]["name"]]
    client = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    store = MetadataStore.over(client)
    for _ in range(2):  # the same verdict on every pass, never a silent choice
        report = run_pass([Chunk([*pods, twin, copy(pods[0])])], store, OPTIONS)
        assert sorted(e.pod for e in report.errors) == claimed
        for error in report.errors:
            assert error.reason == Reason.DUPLICATE_STEP
            assert all(name in error.message for name in claimed)
    recorded = {e.custom_properties["kfp_pod_name"].string_value for e in client.get_executions()}
    # The pod listed twice (pods[0]) is one pod, recorded once; the claimed step is not recorded.
    assert recorded == {pods[0]["metadata"]["name"], pods[2]["metadata"]["name"]}
    assert len(client.get_executions()) == 2
    assert report.actions == {}


# ---------------------------------------------------------------------- counts
def poison_producer(client: Any, producer: dict[str, Any]) -> None:
    """Register the producer's execution type with a property type MLMD will refuse its writes for."""
    [step] = desired_steps([producer], OPTIONS, PassReport())
    name = step.desired.execution.type_name
    client.put_execution_type(pb.ExecutionType(name=name, properties={"run_id": pb.INT}))


def test_a_failed_producer_leaves_inputs_pending_and_a_second_pass_counts_nothing(tmp_path: Path) -> None:
    producer, consumer = pods_of(chain("wf-fail", 2), profile="3.3")
    client = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    poison_producer(client, producer)
    store = MetadataStore.over(client)

    first = run_pass([Chunk([producer, consumer])], store, OPTIONS)
    assert [(e.pod, e.reason) for e in first.errors] == [(producer["metadata"]["name"], "mlmd_write")]
    assert "event.input" not in first.actions  # nothing was linked: its artifact was never made
    assert first.actions["execution.create"] == 1
    assert first.pending_inputs == 1
    [execution] = client.get_executions()
    assert execution.custom_properties["kfp_pod_name"].string_value == consumer["metadata"]["name"]
    events = client.get_events_by_execution_ids([execution.id])
    assert not [e for e in events if e.type == EventKind.INPUT]
    # The consumer's pod names no input id it does not have.
    [patch] = [p for p in first.pod_patches if p.pod == consumer["metadata"]["name"]]
    assert (
        json.loads(
            patch.patch["metadata"]["annotations"]["pipelines.kubeflow.org/metadata_input_artifact_ids"]
        )
        == []
    )

    before = snapshot(client)
    for _ in range(2):
        again = run_pass([Chunk([producer, consumer])], store, OPTIONS)
        assert again.actions == {}, again.actions
        assert again.pending_inputs == 1
        assert [e.pod for e in again.errors] == [producer["metadata"]["name"]]
        assert snapshot(client) == before
