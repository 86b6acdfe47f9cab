"""One pass converges MLMD on every backend; a second pass writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import counts, snapshot
from tests.podfactory import chain, pods_of
from tests.upstream_writer import write_like_upstream


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


def test_adopts_upstream_records_without_duplicates(store_url: str) -> None:
    store = open_store(store_url)
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
    assert report.actions["artifact.adopt"] == 6
    assert report.actions["context.adopt"] == 1
    assert counts(store) == before
    assert all(e.external_id for e in store.get_executions())
    assert all(a.external_id for a in store.get_artifacts())
    apply_patches(pods, report)
    assert sum(run(store, pods).actions.values()) == 0


def test_same_state_on_every_backend_as_on_sqlite(store_url: str, tmp_path: Any) -> None:
    pods = pods_of(chain("wf-c", 3), profile="3.5", outputs_annotation=True)
    stores = [open_store(store_url), open_store(f"sqlite:///{tmp_path}/reference.sqlite")]
    for store in stores:
        run(store, [json.loads(json.dumps(p)) for p in pods])
    assert snapshot(stores[0]) == snapshot(stores[1])
