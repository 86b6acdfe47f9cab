"""The writes on MLMD without put_lineage_subgraph (store/apply_steps.py), through old servers.

One put_execution per step; what an update must carry so MLMD keeps what it holds; and the
check that keeps an event added late from being written twice on schemas without unique events.
"""

from __future__ import annotations

from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from reconcile.plan import plan_workflows
from store.connect import open_store
from store.errors import StoreConflict
from store.metadata import MetadataStore
from tests.podfactory import chain, pods_of
from tests.store.test_converge import apply_patches
from tests.upstream_writer import write_like_upstream


def run(store: Any, pods: list[dict[str, Any]]) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions())


def events_of(store: Any) -> list[tuple[int, int, int]]:
    executions = [e.id for e in store.get_executions()]
    events = store.get_events_by_execution_ids(executions)
    return sorted((e.execution_id, e.artifact_id, e.type) for e in events)


def test_an_event_another_writer_added_meanwhile_is_not_written_again(old_mlmd_url: str) -> None:
    store = open_store(old_mlmd_url)
    steps = chain("wf-late", 2)
    running, done = pods_of(steps, phase="Running", profile="3.3"), pods_of(steps, profile="3.3")
    # The consumer is recorded, outputs and all, before its producer's outputs are known ...
    assert run(store, [running[0], done[1]]).pending_inputs == 1
    assert run(store, done[:1]).actions["artifact.create"] == 2  # ... which come later

    # Writer A plans the late INPUT event; writer B writes it first; then A applies its plan.
    slow = MetadataStore.over(open_store(old_mlmd_url))
    desired = _desired(done)
    plans, _ = plan_workflows(desired, slow.read_actual(desired))
    assert [kind for plan in plans for kind, _ in plan.actions()] == ["event.input"]
    assert run(store, done).actions["event.input"] == 1
    before = events_of(store)
    result = slow.apply(plans)
    if slow.capabilities.external_ids:  # schema 10 refuses a second such event itself
        assert [type(e) for e in result.failed.values()] == [StoreConflict]
    else:  # older schemas would take it: the write path looked again and did not send it
        assert result.failed == {}
    assert events_of(store) == before  # the INPUT event once


def _desired(pods: list[dict[str, Any]]) -> list[Any]:
    from controller.reconcile_pass import desired_steps
    from controller.report import PassReport as Report

    return [step.desired for step in desired_steps(pods, ReconcileOptions(), Report())]


def test_an_adopted_artifact_keeps_the_properties_its_old_type_declares(every_store_url: str) -> None:
    """Types made before KFP PR #4004 declare name, pipeline_name, run_id: an update keeps them."""
    store = open_store(every_store_url)
    pods = pods_of(chain("wf-old", 2), profile="3.3")
    for pod in pods:
        patch = write_like_upstream(store, pod, key_only_bucket="")  # URIs to correct: a write
        pod["metadata"]["labels"].update(patch["labels"])
    declared = {"name": pb.STRING, "pipeline_name": pb.STRING, "run_id": pb.STRING}
    for artifact in store.get_artifacts():
        [old_type] = store.get_artifact_types_by_id([artifact.type_id])
        old_type.properties.update(declared)
        store.put_artifact_type(old_type, can_add_fields=True)
        artifact.properties["name"].string_value = artifact.custom_properties["name"].string_value
        artifact.properties["run_id"].string_value = "wf-old"
        store.put_artifacts([artifact])
    report = run(store, pods)
    assert report.errors == [] and report.actions["artifact.create"] == 0
    for artifact in store.get_artifacts():
        assert artifact.uri.startswith("minio://mlpipeline/")
        assert artifact.properties["run_id"].string_value == "wf-old"
        assert artifact.properties["name"].string_value == artifact.custom_properties["name"].string_value
    apply_patches(pods, report)
    assert sum(run(store, pods).actions.values()) == 0


def test_a_run_context_with_other_properties_is_updated_once(old_mlmd_url: str) -> None:
    store = open_store(old_mlmd_url)
    pods = pods_of(chain("wf-ctx", 3), profile="3.3")
    apply_patches(pods, run(store, pods))
    [context] = store.get_contexts()
    context.properties["pipeline_name"].string_value = "renamed by someone"
    store.put_contexts([context])
    report = run(store, pods)
    assert report.errors == [] and report.actions["context.update"] == 1
    assert report.transactions == 1  # the first step's transaction carries it; nothing else to write
    [fixed] = store.get_contexts()
    assert fixed.id == context.id and fixed.properties["pipeline_name"].string_value == "wf-ctx"
    assert sum(run(store, pods).actions.values()) == 0
