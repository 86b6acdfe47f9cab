"""One pass converges MLMD on every backend and MLMD version; a second pass writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import counts, record_key, snapshot, ui_view
from tests.podfactory import chain, pods_of
from tests.upstream_writer import write_like_upstream

KFP_EXECUTION_ID = "pipelines.kubeflow.org/metadata_execution_id"


def run(store: Any, pods: list[dict[str, Any]], **kw: Any) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions(), **kw)


def apply_patches(pods: list[dict[str, Any]], report: PassReport) -> None:
    """What the controller does with the patches: merge our labels/annotations into the pods."""
    by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    for patch in report.pod_patches:
        meta = by_name[(patch.namespace, patch.pod)]["metadata"]
        for field in ("labels", "annotations"):
            meta.setdefault(field, {}).update(patch.patch["metadata"].get(field, {}))


@pytest.mark.parametrize("profile", ["3.1", "3.3", "3.5"])
def test_chain_converges_and_second_pass_is_empty(store_url: str, profile: str) -> None:
    store = open_store(store_url)
    pods = pods_of(chain("wf-a", 4), profile=profile, outputs_annotation=True)
    first = run(store, pods)
    assert first.errors == []
    assert first.actions["execution.create"] == 4
    assert first.actions["artifact.create"] == 8  # out + main-logs per step
    assert first.actions["event.input"] == 3
    assert first.pending_inputs == 0
    assert len(first.pod_patches) == 4
    apply_patches(pods, first)

    second = run(store, pods)
    assert second.errors == []
    assert sum(second.actions.values()) == 0
    assert second.transactions == 0
    assert second.pod_patches == []
    assert counts(store) == {"contexts": 1, "executions": 4, "artifacts": 8}

    # Labels name the records found by key.
    execs = {e.external_id: e for e in store.get_executions()}
    for p in pods:
        labels = p["metadata"]["labels"]
        exec_id = int(labels["pipelines.kubeflow.org/metadata_execution_id"])
        assert any(e.id == exec_id for e in execs.values())
        assert labels["pipelines.kubeflow.org/metadata_written"] == "true"
        outs = json.loads(p["metadata"]["annotations"]["pipelines.kubeflow.org/metadata_output_artifact_ids"])
        assert [o["name"] for o in outs] == ["out", "main-logs"]


def test_chain_converges_on_old_mlmd_with_keys_where_the_server_keeps_them(old_mlmd_url: str) -> None:
    store = open_store(old_mlmd_url)
    pods = pods_of(chain("wf-a", 4), profile="3.3")
    first = run(store, pods)
    assert first.errors == [] and first.pending_inputs == 0
    assert (first.actions["execution.create"], first.actions["artifact.create"]) == (4, 8)
    assert first.actions["event.input"] == 3 and first.actions["event.output"] == 8
    keyed = MetadataStore.over(store).capabilities.external_ids
    # One transaction per workflow where put_lineage_subgraph exists, else one per step.
    assert first.transactions == (1 if keyed else 4)
    apply_patches(pods, first)
    second = run(store, pods)
    assert sum(second.actions.values()) == 0 and second.transactions == 0 and second.pod_patches == []
    assert counts(store) == {"contexts": 1, "executions": 4, "artifacts": 8}
    executions, artifacts = store.get_executions(), store.get_artifacts()
    field = "external_id" if keyed else "name"
    assert all(getattr(r, field).startswith("kfp-v1/step/kubeflow/") for r in [*executions, *artifacts])
    if not keyed:  # sent, and silently dropped by the server: never relied on
        assert {r.external_id for r in [*executions, *artifacts, *store.get_contexts()]} == {""}


def test_running_steps_then_outputs_later(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    steps = chain("wf-b", 2)
    running = pods_of(steps, phase="Running", profile="3.3")
    first = run(store, running)
    assert first.actions["execution.create"] == 2
    assert first.pending_outputs == 2
    assert first.pending_inputs == 1  # step-1's input waits for step-0's output
    apply_patches(running, first)
    assert all("pipelines.kubeflow.org/metadata_written" not in p["metadata"]["labels"] for p in running)

    done = pods_of(steps, phase="Succeeded", profile="3.3")
    for old, new in zip(running, done, strict=True):
        new["metadata"]["labels"].update(
            {
                k: v
                for k, v in old["metadata"]["labels"].items()
                if k.startswith("pipelines.kubeflow.org/metadata")
            }
        )
    second = run(store, done)
    assert second.actions["execution.update"] == 2  # state RUNNING -> COMPLETE
    assert second.actions["artifact.create"] == 4
    assert second.actions["event.input"] == 1
    assert second.pending_inputs == 0 and second.pending_outputs == 0
    apply_patches(done, second)
    assert sum(run(store, done).actions.values()) == 0


def test_adopts_upstream_records_without_duplicates(every_store_url: str) -> None:
    store = open_store(every_store_url)
    keyed = MetadataStore.over(store).capabilities.external_ids
    pods = pods_of(chain("wf-up", 3), profile="3.3")
    for p in pods:
        patch = write_like_upstream(store, p)
        p["metadata"]["labels"].update(patch["labels"])
        p["metadata"]["annotations"].update(patch["annotations"])
    before = counts(store)
    report = run(store, pods)
    assert report.errors == []
    assert report.actions["execution.create"] == 0 and report.actions["artifact.create"] == 0
    assert report.actions["execution.adopt"] == 3
    if keyed:
        assert report.actions["artifact.adopt"] == 6
        assert report.actions["context.adopt"] == 1
        assert all(e.external_id for e in store.get_executions())
        assert all(a.external_id for a in store.get_artifacts())
    else:
        # A name cannot be given to a stored record: adopted records are completed (the
        # state, pod_name) and found again by pod name in their run context, as upstream does.
        assert report.actions["artifact.adopt"] == 0 and report.actions["context.adopt"] == 0
        assert not any(record_key(r) for r in [*store.get_executions(), *store.get_artifacts()])
    assert counts(store) == before
    labels = {p["metadata"]["name"]: p["metadata"]["labels"][KFP_EXECUTION_ID] for p in pods}
    apply_patches(pods, report)
    assert {p["metadata"]["name"]: p["metadata"]["labels"][KFP_EXECUTION_ID] for p in pods} == labels
    again = run(store, pods)
    assert sum(again.actions.values()) == 0 and again.pod_patches == []


def test_same_state_on_every_backend_as_on_sqlite(every_store_url: str, tmp_path: Any) -> None:
    pods = pods_of(chain("wf-c", 3), profile="3.5", outputs_annotation=True)
    stores = [open_store(every_store_url), open_store(f"sqlite:///{tmp_path}/reference.sqlite")]
    for store in stores:
        run(store, [json.loads(json.dumps(p)) for p in pods])
    # What KFP's UI reads is the same on every version; the keys are too, in their field.
    assert ui_view(stores[0]) == ui_view(stores[1])
    if MetadataStore.over(stores[0]).capabilities.external_ids:
        assert snapshot(stores[0]) == snapshot(stores[1])
    else:
        got, want = snapshot(stores[0]), snapshot(stores[1])
        assert got["executions"] == want["executions"] and got["artifacts"] == want["artifacts"]
        assert got["events"] == want["events"] and got["attributions"] == want["attributions"]


def test_a_step_labelled_with_another_workflow_name_links_in_the_first_pass(every_store_url: str) -> None:
    """Its owner Workflow (namespace, uid) decides its upstream, not the label (fuzz found this)."""
    store = open_store(every_store_url)
    pods = pods_of(chain("wf-m", 2), profile="3.3")
    pods[1]["metadata"]["labels"]["workflows.argoproj.io/workflow"] = "mislabelled"
    first = run(store, pods)
    assert first.errors == [] and first.pending_inputs == 0 and first.actions["event.input"] == 1
    apply_patches(pods, first)
    second = run(store, pods)
    assert sum(second.actions.values()) == 0 and second.pod_patches == []
