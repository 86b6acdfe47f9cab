"""Steps rebuilt from stored runs equal the steps the live pods gave, and MLMD ends the same.

Runs are simulated with KFP's persistence agent storing them (KFP 1.8.5 and
2.x layouts on MariaDB, half with `compressedNodes`; Argo's archive on
PostgreSQL); their pods are kept as they were when the runs finished, then
the workflow TTL deletes everything from the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from history import RunScope, StoredRun, StoredRunSource, open_argo_archive, open_kfp_db
from history.records import ALL_RUNS
from history.url import DatabaseURL
from reconcile.argo import PodView, offloaded_nodes_version, pod_name_scheme, workflow_nodes
from reconcile.classify import classify
from reconcile.desired import desired_step
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from reconcile.records import DesiredStep, ExecutionState
from sandbox.argo_archive import ArgoArchiveWriter
from sandbox.kfp_runstore import KfpRunStore
from sandbox.persistence import PERSISTED_FINAL_STATE_LABEL, every_second_compressed
from store.connect import open_store
from store.metadata import MetadataStore
from tests.history.conftest import RecordedRuns, record_runs
from tests.mlmd_snapshot import snapshot

OPTIONS = ReconcileOptions()
KfpStore = Callable[..., tuple[DatabaseURL, KfpRunStore]]
ArchiveStore = Callable[..., tuple[DatabaseURL, ArgoArchiveWriter]]


def pod_steps(
    pods: Iterable[dict[str, Any]], workflow: dict[str, Any], options: ReconcileOptions
) -> list[DesiredStep]:
    """The steps the pod path gives for a finished run's pods (outputs from its nodes)."""
    nodes = workflow_nodes(workflow)
    steps = []
    for raw in pods:
        pod = PodView.from_json(raw)
        disposition = classify(pod, options)
        if not disposition.skipped:
            steps.append(desired_step(pod, disposition, options, node=nodes[pod.node_id()]))
    return steps


def stored_steps(runs: Iterable[StoredRun], options: ReconcileOptions = OPTIONS) -> list[DesiredStep]:
    steps: list[DesiredStep] = []
    for run in runs:
        assert run.unrecoverable is None and run.workflow is not None
        found, errors = desired_steps_from_workflow(run.workflow, options)
        assert errors == []
        steps += found
    return steps


def by_key(steps: Iterable[DesiredStep]) -> dict[str, DesiredStep]:
    keyed = {s.execution.key: s for s in steps}
    return keyed


def read_kfp(url: DatabaseURL, scope: RunScope = ALL_RUNS) -> list[StoredRun]:
    with open_kfp_db(url, page_runs=2) as source:
        assert isinstance(source, StoredRunSource)
        return list(source.runs(scope))


def read_archive(url: DatabaseURL) -> list[StoredRun]:
    with open_argo_archive(url, page_runs=2) as source:
        assert isinstance(source, StoredRunSource)
        return list(source.runs())


def live_steps(
    recorded: RecordedRuns, names: Iterable[str], options: ReconcileOptions = OPTIONS
) -> list[DesiredStep]:
    steps: list[DesiredStep] = []
    for name in names:
        steps += pod_steps(recorded.live_pods[name], recorded.live_workflows[name], options)
    return steps


@pytest.mark.parametrize(("profile", "layout"), [("3.3", "1.8"), ("3.5", "2.5"), ("3.6", "2.17")])
def test_stored_runs_give_the_steps_the_live_pods_gave(
    kfp_store: KfpStore, archive_store: ArchiveStore, profile: str, layout: str
) -> None:
    kfp_url, kfp = kfp_store("mysql", layout)
    archive_url, archive = archive_store("postgresql")
    recorded = record_runs(
        runs=4, profile=profile, run_store=kfp, archive=archive, nodes_form=every_second_compressed
    )
    live = by_key(live_steps(recorded, recorded.names))
    assert len(live) == 4 * 3
    recorded.age_past_ttl()
    assert recorded.store.list("workflows") == [] and recorded.store.list("pods") == []

    from_kfp = read_kfp(kfp_url)
    assert sum("compressedNodes" in r.workflow["status"] for r in from_kfp) == 2
    for source, runs in (("kfp-db", from_kfp), ("argo-archive", read_archive(archive_url))):
        stored = by_key(stored_steps(runs))
        assert stored == live, source
    # What the pod carried, rebuilt: resolved parameter arguments and the pod's own name.
    pod_names = {p["metadata"]["name"] for pods in recorded.live_pods.values() for p in pods}
    for step in stored.values():
        custom = step.execution.custom_properties
        assert custom["input:n"] == "3"
        assert custom["kfp_pod_name"] in pod_names and step.ref.pod_name == custom["kfp_pod_name"]
        assert (custom["kfp_pod_name"] == custom["pod_name"]) is (profile == "3.3")  # v1 vs v2 names
        assert step.execution.state is ExecutionState.COMPLETE and step.outputs


def test_cache_hits_are_what_a_stored_run_cannot_tell(kfp_store: KfpStore) -> None:
    """docs/stored-runs.md: a cache hit is marked on its pod only, so a stored run records no step for it."""
    url, kfp = kfp_store("mysql", "1.8")
    # Argo 3.1: a hit pod keeps its template annotation. From 3.2 the webhook's container swap
    # drops ARGO_TEMPLATE with the containers, and the pod path cannot record hits either.
    recorded = record_runs(runs=2, profile="3.1", run_store=kfp, cache=True, stagger=30)
    options = ReconcileOptions(record_cache_hits=True)
    live = by_key(live_steps(recorded, recorded.names, options))
    hits = {k for k, s in live.items() if s.execution.state is ExecutionState.CACHED}
    assert len(hits) == 3  # the second run's every step came from the cache
    stored = by_key(stored_steps(read_kfp(url), options))
    assert set(stored) == set(live) - hits
    assert all(stored[k] == live[k] for k in stored)
    # With the default (hits not recorded) the two agree entirely.
    assert by_key(stored_steps(read_kfp(url))) == by_key(live_steps(recorded, recorded.names))


# --- MLMD: restored from stored runs equals the never-lost state ---------------------


def converge(store: Any, steps: list[DesiredStep]) -> int:
    """One pass of `steps` (as steps whose pod is gone) into `store`; the steps it wrote."""
    report = run_pass([Chunk(podless_steps=steps)], MetadataStore.over(store), ReconcileOptions())
    assert report.errors == []
    assert report.pending_inputs == 0 and report.pending_outputs == 0
    return sum(step.writes_mlmd for plan in report.plans for step in plan.steps)


def combined(live: list[DesiredStep], stored: list[DesiredStep]) -> list[DesiredStep]:
    """A combined pass's steps: a step present in both comes from the live objects."""
    known = {s.execution.key for s in live}
    return live + [s for s in stored if s.execution.key not in known]


def test_a_store_restored_from_stored_runs_equals_the_never_lost_one(
    kfp_store: KfpStore, archive_store: ArchiveStore, tmp_path: Path
) -> None:
    kfp_url, kfp = kfp_store("mysql", "1.8")
    archive_url, archive = archive_store("postgresql")
    recorded = record_runs(runs=6, run_store=kfp, archive=archive, nodes_form=every_second_compressed)
    live = live_steps(recorded, recorded.names)
    never_lost = open_store(f"sqlite:///{tmp_path}/never-lost.sqlite")
    assert converge(never_lost, live) == len(live)
    recorded.age_past_ttl()

    from_kfp, from_archive = stored_steps(read_kfp(kfp_url)), stored_steps(read_archive(archive_url))
    half = live_steps(recorded, recorded.names[:3])
    for name, steps in (
        ("kfp", from_kfp),
        ("archive", from_archive),
        ("combined", combined(half, from_kfp)),
        ("one-after-another", half),
    ):
        restored = open_store(f"sqlite:///{tmp_path}/{name}.sqlite")
        converge(restored, steps)
        if name == "one-after-another":
            # The sources one after another: the stored runs find the live half's records.
            assert converge(restored, from_kfp) == len(live) - len(half)
            assert converge(restored, from_archive) == 0
        assert snapshot(restored) == snapshot(never_lost), name
        assert converge(restored, from_kfp) == 0  # converged: nothing twice


# --- the workflow TTL, as KFP applies it ---------------------------------------------


def test_the_ttl_deletes_finished_workflows_and_their_pods_and_keeps_the_stored_runs(
    kfp_store: KfpStore,
) -> None:
    url, kfp = kfp_store("mysql", "1.8")
    recorded = record_runs(runs=2, run_store=kfp, ttl_s=30)
    cluster = recorded.store
    for workflow in cluster.list("workflows"):
        assert workflow["metadata"]["labels"][PERSISTED_FINAL_STATE_LABEL] == "true"
    assert len(cluster.list("pods")) == 6
    for _ in range(25):  # younger than the TTL: kept
        recorded.clock.advance()
        assert recorded.agent.sync().deleted == []
    deleted = recorded.age_past_ttl()
    assert sorted(name for _, name in deleted) == sorted(recorded.names)
    for resource in ("workflows", "pods", "workflowtaskresults", "configmaps"):
        assert cluster.list(resource) == [], resource
    runs = read_kfp(url)
    assert sorted(r.workflow_name for r in runs) == sorted(recorded.names)
    # The last report, made as the Workflow was deleted, is what the store keeps.
    assert all(r.workflow["metadata"]["labels"][PERSISTED_FINAL_STATE_LABEL] == "true" for r in runs)


def test_workflows_without_a_run_id_are_neither_stored_nor_deleted(kfp_store: KfpStore) -> None:
    url, kfp = kfp_store("mysql", "1.8")
    recorded = record_runs(runs=1, run_store=kfp, ttl_s=1)
    foreign = copy.deepcopy(recorded.live_workflows[recorded.names[0]])
    foreign["metadata"] = {"name": "not-kfp", "namespace": "kubeflow", "labels": {}}
    recorded.store.create("workflows", foreign)
    for _ in range(5):
        recorded.clock.advance()
        recorded.agent.sync()
    assert [w["metadata"]["name"] for w in recorded.store.list("workflows")] == ["not-kfp"]
    assert [r.workflow_name for r in read_kfp(url)] == recorded.names


# --- pure checks on stored Workflows -------------------------------------------------


def test_pod_name_scheme_as_argo_reads_the_annotation() -> None:
    key = "workflows.argoproj.io/pod-name-format"
    assert pod_name_scheme({}) == "v1"  # no annotation: Argo < 3.4, which named pods v1
    assert pod_name_scheme({key: "v1"}) == "v1"
    assert pod_name_scheme({key: "v2"}) == "v2"
    assert pod_name_scheme({key: "V1"}) == "v2"  # any other value: Argo's default
    recorded = record_runs(runs=1, profile="3.5")
    workflow = recorded.live_workflows[recorded.names[0]]
    pods = {p["metadata"]["name"] for p in recorded.live_pods[recorded.names[0]]}
    workflow["metadata"]["annotations"][key] = "something-else"
    steps, errors = desired_steps_from_workflow(workflow, OPTIONS)
    assert errors == [] and {s.ref.pod_name for s in steps} == pods


def test_offloaded_nodes_are_told_apart_from_a_run_without_nodes() -> None:
    recorded = record_runs(runs=1)
    workflow = recorded.live_workflows[recorded.names[0]]
    assert offloaded_nodes_version(workflow) is None
    offloaded = copy.deepcopy(workflow)
    del offloaded["status"]["nodes"]
    offloaded["status"]["offloadNodeStatusVersion"] = "fnv:784"
    assert offloaded_nodes_version(offloaded) == "fnv:784"
    # The pure layer gives no steps and no error: the reader is what marks the run.
    assert desired_steps_from_workflow(offloaded, OPTIONS) == ([], [])
    hydrated = copy.deepcopy(workflow)
    hydrated["status"]["offloadNodeStatusVersion"] = "fnv:784"
    assert offloaded_nodes_version(hydrated) is None
    assert offloaded_nodes_version({"status": "garbage"}) is None
