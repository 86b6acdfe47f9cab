"""Full passes skip steps found converged before, and stop trusting that as soon as anything changed.

End to end: the emulator, the real kubernetes client, real MLMD behind the gRPC server.
"""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from controller import sources
from controller.converged import ConvergedSteps
from controller.loop import Controller
from reconcile import conventions as c
from sandbox import pipelines
from sandbox.simulator import Simulator
from store.connect import open_store
from tests.controller.harness import Cluster, duplicate_counts
from tests.controller.test_controller_e2e import converged, metric_total, submit_all


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def converged_and_learned(cluster: Cluster, **overrides: object) -> Controller:
    """A controller whose first pass recorded everything and whose second found it converged."""
    sim = Simulator(cluster.api.store, "3.5", seed=5)
    submit_all(sim)
    sim.run_until_complete()
    controller = cluster.controller(watch_enabled=False, **overrides)
    controller.activate()
    first = controller.run_pass("resync")
    assert first is not None and first.errors == [] and first.patch_count == first.pods_seen
    # Every pod was just patched (new resourceVersion): compared again, and found converged.
    second = controller.run_pass("resync")
    assert second is not None and second.pods_unchanged == 0
    assert sum(second.actions.values()) == 0 and second.patch_count == 0
    return controller


def pod_count(cluster: Cluster) -> int:
    return len(cluster.api.store.list("pods"))


def test_an_idle_pass_skips_every_unchanged_pod(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        assert len(controller.converged) == pod_count(cluster)
        cluster.mlmd.reset_counts()
        cluster.api.reset_counts()
        report = controller.run_pass("resync")
        assert report is not None and report.pods_seen == report.pods_unchanged == pod_count(cluster)
        assert sum(report.actions.values()) == 0 and report.patch_count == 0
        # Only the six newest-record reads before the pass and the six after it.
        calls = cluster.mlmd.call_counts()
        assert sum(calls.values()) == 12, calls
        assert set(calls) == {"GetExecutions", "GetArtifacts", "GetContexts"}
        assert cluster.api.request_counts().get(("list", "pods"), 0) >= 1  # it did look
        # Only this pass skipped any.
        assert metric_total(controller.metrics, "kfp_metadata_reconciler_pods_unchanged") == pod_count(
            cluster
        )
        assert converged(cluster)
    finally:
        controller.stop()


def test_a_pod_changed_by_hand_is_compared_again_and_mended(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        victim = cluster.api.store.list("pods")[0]["metadata"]
        wrong_id = {"metadata": {"labels": {c.EXECUTION_ID_LABEL: "999999"}}}
        cluster.api.store.patch("pods", victim["namespace"], victim["name"], wrong_id)
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == pod_count(cluster) - 1
        assert report.patch_count == 1 and sum(report.actions.values()) == 0
        assert converged(cluster)
    finally:
        controller.stop()


def test_a_changed_workflow_node_or_task_result_is_compared_again(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        found = sources.read_all(controller.kube, [], controller.options)
        memo = controller.converged
        chunk = next(found.chunks())
        assert all(memo.unchanged(pod, chunk) for pod in found.pods)
        pod = found.pods[0]
        where = sources.pod_node_id(pod)
        assert where is not None

        node_changed = copy.deepcopy(found)
        node_changed.nodes[where] = {**node_changed.nodes.get(where, {}), "phase": "Failed"}
        assert not memo.unchanged(pod, next(node_changed.chunks()))

        result_changed = copy.deepcopy(found)
        result_changed.taskresults[where] = {"outputs": {"artifacts": [{"name": "late", "s3": {"key": "k"}}]}}
        assert not memo.unchanged(pod, next(result_changed.chunks()))

        moved_on = copy.deepcopy(pod)
        moved_on["metadata"]["resourceVersion"] += "0"
        assert not memo.unchanged(moved_on, chunk)
        recreated = copy.deepcopy(pod)
        recreated["metadata"]["uid"] = "another-pod-of-the-same-name"
        assert not memo.unchanged(recreated, chunk)
    finally:
        controller.stop()


def test_any_other_write_to_mlmd_makes_the_next_pass_compare_everything(
    cluster: Cluster
) -> None:
    controller = converged_and_learned(cluster)
    try:
        # Another MLMD client (a notebook, KFP v2) writes between two passes.
        other = open_store(cluster.mlmd.url)
        type_id = other.put_context_type(pb.ContextType(name="SomeoneElsesContext"))
        other.put_contexts([pb.Context(type_id=type_id, name="theirs")])
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == 0
        assert sum(report.actions.values()) == 0 and report.patch_count == 0
        assert len(controller.converged) == pod_count(cluster)  # learned again
    finally:
        controller.stop()


@pytest.mark.parametrize("recheck_s", [3600.0, 0.0])
def test_an_mlmd_restore_between_passes_is_seen_by_the_next_pass(
    cluster: Cluster, recheck_s: float
) -> None:
    # MLMD's database goes back to an older backup while no pass runs: the controller sees
    # no error at all (had it seen one, it would have forgotten everything anyway). Its next
    # full pass must still recreate what the restore lost.
    sim = Simulator(cluster.api.store, "3.5", seed=6)
    sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.run_until_complete()
    controller = cluster.controller(watch_enabled=False, converged_recheck_s=recheck_s)
    controller.activate()
    try:
        for _ in range(2):
            assert controller.run_pass("resync") is not None
        db_file = cluster.workdir / "mlmd.sqlite"
        backup = cluster.workdir / "half-way.sqlite"
        _sqlite_backup(db_file, backup)
        submit_all(sim)
        sim.run_until_complete()
        for _ in range(2):
            assert controller.run_pass("resync") is not None
        warm = controller.run_pass("resync")
        assert warm is not None
        assert (
            warm.pods_unchanged
            == (warm.pods_seen if recheck_s else 0)
            == (pod_count(cluster) if recheck_s else 0)
        )

        # Restored in place through SQLite's backup API, under the running MLMD server.
        _sqlite_backup(backup, db_file)

        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == 0 and report.errors == []
        assert report.actions["execution.create"] > 0
        assert converged(cluster)
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()


def test_entries_expire_after_the_recheck_interval(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        clock = FakeClock()
        controller.converged = ConvergedSteps(600.0, clock=clock)
        assert controller.run_pass("resync") is not None  # learns at t=1000
        clock.now += 599
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == pod_count(cluster)
        clock.now += 2
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == 0  # older than 600 s: compared in full
        assert sum(report.actions.values()) == 0
    finally:
        controller.stop()


def test_recheck_zero_compares_every_step_on_every_pass(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster, converged_recheck_s=0.0)
    try:
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == 0 and len(controller.converged) == 0
    finally:
        controller.stop()


def test_losing_leadership_forgets(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        assert len(controller.converged) == pod_count(cluster)
        controller.deactivate()
        assert len(controller.converged) == 0
        controller.activate()
        report = controller.run_pass("resync")
        assert report is not None and report.pods_unchanged == 0
    finally:
        controller.stop()


def _sqlite_backup(source: Path, target: Path) -> None:
    # Online, as `sqlite3 source ".backup target"` does it.
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
