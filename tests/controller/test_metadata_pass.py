"""A running controller's full pass lists metadata only and reads whole just what changed.

End to end: the emulator (whose per-request-kind traffic counts are the evidence), the
real kubernetes client, real MLMD behind the gRPC server.
"""

from __future__ import annotations

from ml_metadata.proto import metadata_store_pb2 as pb

from controller.kube.lists import metadata_only
from controller.loop import Controller
from controller.report import PassReport
from reconcile import conventions as c
from sandbox import pipelines
from sandbox.simulator import Simulator
from sandbox.traffic import RequestKind, Served
from store.connect import open_store
from tests.controller.harness import Cluster, duplicate_counts
from tests.controller.test_controller_e2e import converged
from tests.controller.test_converged import converged_and_learned, pod_count

KINDS = ("pods", "workflows", "workflowtaskresults")


def traffic(cluster: Cluster) -> dict[RequestKind, Served]:
    return cluster.api.traffic()


def reads(cluster: Cluster, view: str) -> dict[tuple[str, str], int]:
    """(verb, resource) -> requests of get/list of the three kinds in `view` (full or metadata)."""
    return {
        (k.verb, k.resource): v.requests
        for k, v in traffic(cluster).items()
        if k.view == view and k.verb in ("get", "list") and k.resource in KINDS
    }


def served_bytes(cluster: Cluster, view: str) -> int:
    return sum(v.bytes for k, v in traffic(cluster).items() if k.view == view and k.resource in KINDS)


def resync(controller: Controller, cluster: Cluster) -> PassReport:
    """One full pass, the emulator's counts reset first; the pass must not fail."""
    cluster.api.reset_counts()
    report = controller.run_pass("resync")
    assert report is not None
    return report


def assert_idle_again(controller: Controller, cluster: Cluster) -> None:
    """The next pass skips every pod and reads nothing whole."""
    idle = resync(controller, cluster)
    assert idle.pods_unchanged == pod_count(cluster)
    assert reads(cluster, "full") == {}


def test_an_idle_pass_reads_only_metadata_lists(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        pods = pod_count(cluster)
        report = resync(controller, cluster)
        assert report.pods_seen == report.pods_unchanged == pods
        assert sum(report.actions.values()) == 0 and report.patch_count == 0 and report.errors == []
        # One list of each kind, metadata only; nothing read whole, nothing written.
        assert reads(cluster, "metadata") == {("list", kind): 1 for kind in KINDS}
        assert reads(cluster, "full") == {}
        assert not any(k.verb in ("patch", "update", "create") for k in traffic(cluster))
        metadata_bytes = served_bytes(cluster, "metadata")

        # What the same lists cost whole (the pass before this one's way).
        cluster.api.reset_counts()
        controller.converged.forget("test: compare everything")
        full = controller.run_pass("resync")
        assert full is not None and full.pods_unchanged == 0
        assert served_bytes(cluster, "metadata") == 0
        assert metadata_bytes * 3 < served_bytes(cluster, "full")
        assert converged(cluster)
    finally:
        controller.stop()


def test_a_changed_pod_is_read_whole_and_mended(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        victim = cluster.api.store.list("pods")[0]["metadata"]
        workflow = victim["labels"][c.ARGO_WORKFLOW_LABEL]
        workflows = len(cluster.api.store.list("workflows"))
        wrong_id = {"metadata": {"labels": {c.EXECUTION_ID_LABEL: "999999"}}}
        cluster.api.store.patch("pods", victim["namespace"], victim["name"], wrong_id)
        report = resync(controller, cluster)
        assert report.errors == []
        assert report.pods_seen == pod_count(cluster) and report.pods_unchanged == pod_count(cluster) - 1
        assert report.patch_count == 1 and sum(report.actions.values()) == 0
        # Its workflow only: one narrowed list of pods and of results, its Workflow by name.
        assert reads(cluster, "full") == {
            ("list", "pods"): 1,
            ("list", "workflowtaskresults"): 1,
            ("get", "workflows"): 1,
        }
        narrowed = traffic(cluster)[RequestKind("list", "pods", "full")].bytes
        assert converged(cluster)

        # The patch gave the pod a new resourceVersion: compared once more, then idle again.
        again = controller.run_pass("resync")
        assert again is not None and again.pods_unchanged == pod_count(cluster) - 1
        assert_idle_again(controller, cluster)

        # The narrowed list served that workflow's pods, not everyone's.
        controller.converged.forget("test: compare everything")
        cluster.api.reset_counts()
        assert controller.run_pass("resync") is not None
        every = traffic(cluster)[RequestKind("list", "pods", "full")].bytes
        assert workflow and narrowed < every * 2 / workflows
    finally:
        controller.stop()


def test_a_changed_workflow_is_read_whole_then_idle_again(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        wf = cluster.api.store.list("workflows")[0]["metadata"]
        # A change that does not touch what a step reads: a new resourceVersion only.
        relabel = {"metadata": {"labels": {"x": "1"}}}
        cluster.api.store.patch("workflows", wf["namespace"], wf["name"], relabel)
        report = resync(controller, cluster)
        assert report.pods_unchanged == report.pods_seen == pod_count(cluster)
        assert reads(cluster, "full")[("get", "workflows")] == 1
        assert sum(report.actions.values()) == 0 and report.patch_count == 0
        # The skipped pods' entries moved on to the new resourceVersion: idle again.
        assert_idle_again(controller, cluster)
    finally:
        controller.stop()


def test_a_changed_task_result_is_read_whole_and_its_step_compared(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        # Argo 3.5 deletes a finished workflow's results: one is put back by hand, with the
        # outputs its node holds (a result Argo has not deleted yet).
        pod = cluster.api.store.list("pods")[0]["metadata"]
        namespace, workflow = pod["namespace"], pod["labels"][c.ARGO_WORKFLOW_LABEL]
        node_id = pod["annotations"][c.ARGO_NODE_ID_ANNOTATION]
        node = cluster.api.store.get("workflows", namespace, workflow)["status"]["nodes"][node_id]
        result = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTaskResult",
            "metadata": {
                "name": node_id,
                "namespace": namespace,
                "labels": {c.ARGO_WORKFLOW_LABEL: workflow},
            },
            "outputs": node.get("outputs", {}),
        }
        cluster.api.store.create("workflowtaskresults", result)
        for expected_unchanged in (pod_count(cluster) - 1, pod_count(cluster)):
            report = controller.run_pass("resync")  # a new input: compared, learned again
            assert report is not None and report.pods_unchanged == expected_unchanged
            assert sum(report.actions.values()) == 0 and report.patch_count == 0
        relabel = {"metadata": {"labels": {"x": "1"}}}
        cluster.api.store.patch("workflowtaskresults", namespace, node_id, relabel)
        report = resync(controller, cluster)
        assert report.pods_unchanged == pod_count(cluster) - 1
        assert sum(report.actions.values()) == 0 and report.patch_count == 0 and report.errors == []
        assert reads(cluster, "full") == {
            ("list", "pods"): 1,
            ("list", "workflowtaskresults"): 1,
            ("get", "workflows"): 1,
        }
        assert_idle_again(controller, cluster)
    finally:
        controller.stop()


def test_a_new_workflow_is_read_whole_and_recorded(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        before = pod_count(cluster)
        sim = Simulator(cluster.api.store, "3.5", seed=11)
        sim.submit(pipelines.load("two_step"), "kubeflow")
        sim.run_until_complete()
        added = pod_count(cluster) - before
        assert added > 0
        report = resync(controller, cluster)
        assert report.errors == []
        assert report.pods_seen == pod_count(cluster) and report.pods_unchanged == before
        assert report.actions["execution.create"] == added and report.patch_count == added
        assert reads(cluster, "full")[("get", "workflows")] == 1
        assert converged(cluster)
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()


def test_a_step_whose_pod_is_gone_is_rebuilt_from_its_workflow(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        victim = cluster.api.store.list("pods")[0]["metadata"]
        cluster.api.store.delete("pods", victim["namespace"], victim["name"])
        for _ in range(2):
            report = resync(controller, cluster)
            assert report.errors == [] and sum(report.actions.values()) == 0
            # The Workflow with a Pod node but no pod is read whole every pass, as before.
            assert reads(cluster, "full")[("get", "workflows")] == 1
    finally:
        controller.stop()


def test_after_mlmd_changed_every_step_is_compared_from_full_lists(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        other = open_store(cluster.mlmd.url)
        type_id = other.put_context_type(pb.ContextType(name="SomeoneElsesContext"))
        other.put_contexts([pb.Context(type_id=type_id, name="theirs")])
        report = resync(controller, cluster)
        assert report.pods_unchanged == 0 and report.pods_seen == pod_count(cluster)
        assert reads(cluster, "metadata") == {}
        assert reads(cluster, "full")[("list", "pods")] >= 1
    finally:
        controller.stop()


def test_a_restarted_controller_compares_everything_from_full_lists(cluster: Cluster) -> None:
    first = converged_and_learned(cluster)
    first.stop()
    controller = cluster.controller(watch_enabled=False)
    controller.activate()
    try:
        report = resync(controller, cluster)
        assert report.pods_unchanged == 0 and sum(report.actions.values()) == 0
        assert reads(cluster, "metadata") == {}
    finally:
        controller.stop()


def test_when_most_pods_changed_one_whole_list_replaces_the_narrowed_ones(cluster: Cluster) -> None:
    controller = converged_and_learned(cluster)
    try:
        for pod in cluster.api.store.list("pods"):
            meta = pod["metadata"]
            relabel = {"metadata": {"labels": {"x": "1"}}}
            cluster.api.store.patch("pods", meta["namespace"], meta["name"], relabel)
        report = resync(controller, cluster)
        assert report.errors == [] and report.pods_unchanged == 0
        assert report.pods_seen == pod_count(cluster) and sum(report.actions.values()) == 0
        assert reads(cluster, "metadata") == {("list", kind): 1 for kind in KINDS}
        # ClusterStream's lists, one of each kind, instead of a narrowed list per workflow.
        assert reads(cluster, "full") == {("list", kind): 1 for kind in KINDS}
    finally:
        controller.stop()


def test_metadata_only_keeps_identity_labels_and_annotations() -> None:
    whole = {
        "kind": "PartialObjectMetadata",
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "7",
            "labels": {"a": "b"},
            "annotations": {"c": "d"},
            "managedFields": [{"manager": "argo"}],
            "ownerReferences": [],
        },
        "spec": {"containers": []},
    }
    kept = ("name", "namespace", "uid", "resourceVersion", "labels", "annotations")
    assert metadata_only(whole) == {"metadata": {k: whole["metadata"][k] for k in kept}}
    # Malformed: an empty metadata, which matches nothing remembered (the pod is read whole).
    assert metadata_only({"metadata": "nope"}) == {"metadata": {}}
    assert metadata_only(["not", "an", "object"]) == {"metadata": {}}
