"""The emulator through the official ``kubernetes`` Python client, over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from sandbox.apiserver import ApiServer

from .conftest import make_client, pod

ARGO = ("argoproj.io", "v1alpha1")


def _names(items: list) -> list[str]:
    return [p.metadata.name for p in items]


def _status(exc: client.ApiException) -> dict:
    return json.loads(exc.body)


def test_list_label_selectors_and_pagination(v1: client.CoreV1Api) -> None:
    labels = [{"app": "a"}, {"app": "a", "tier": "web"}, {"app": "b"}, {}, {"app": "c"}]
    for i, lb in enumerate(labels):
        v1.create_namespaced_pod("ns1", pod(f"p{i}", "ns1", lb))
    v1.create_namespaced_pod("ns2", pod("q0", "ns2", {"app": "a"}))
    cases = {
        "app=a": ["p0", "p1"],
        "app==a": ["p0", "p1"],
        "app!=a": ["p2", "p3", "p4"],
        "app in (b,c)": ["p2", "p4"],
        "app notin (a,b)": ["p3", "p4"],
        "tier": ["p1"],
        "!app": ["p3"],
        "app=a,!tier": ["p0"],
    }
    for selector, expected in cases.items():
        got = _names(v1.list_namespaced_pod("ns1", label_selector=selector).items)
        assert got == expected, selector
    everywhere = v1.list_pod_for_all_namespaces(label_selector="app=a")
    assert _names(everywhere.items) == ["p0", "p1", "q0"]
    assert _names(v1.list_namespaced_pod("ns1", field_selector="metadata.name=p3").items) == [
        "p3"]

    first = v1.list_namespaced_pod("ns1", limit=2)
    assert _names(first.items) == ["p0", "p1"]
    assert first.metadata.remaining_item_count == 3
    assert first.metadata._continue
    seen = _names(first.items)
    token = first.metadata._continue
    pages = 1
    while token:
        page = v1.list_namespaced_pod("ns1", limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        seen += _names(page.items)
        token = page.metadata._continue
        pages += 1
    assert seen == ["p0", "p1", "p2", "p3", "p4"] and pages == 3
    sel = v1.list_namespaced_pod("ns1", label_selector="app", limit=2)
    assert _names(sel.items) == ["p0", "p1"] and sel.metadata._continue
    rest = v1.list_namespaced_pod("ns1", label_selector="app", limit=2,
                                  _continue=sel.metadata._continue)
    assert _names(rest.items) == ["p2", "p4"] and not rest.metadata._continue


def test_watch_resume_bookmarks_and_expiry(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("before", "ns"))
    rv = v1.list_namespaced_pod("ns").metadata.resource_version
    v1.create_namespaced_pod("ns", pod("after1", "ns"))
    v1.patch_namespaced_pod("after1", "ns", {"metadata": {"labels": {"x": "1"}}})
    v1.delete_namespaced_pod("after1", "ns")

    w = watch.Watch()
    events = []
    for ev in w.stream(v1.list_namespaced_pod, "ns", resource_version=rv,
                       allow_watch_bookmarks=True, timeout_seconds=10):
        events.append(ev)
        if ev["type"] == "BOOKMARK":
            w.stop()
    kinds = [(e["type"], e["object"].metadata.name if e["type"] != "BOOKMARK" else None)
             for e in events]
    assert kinds == [("ADDED", "after1"), ("MODIFIED", "after1"), ("DELETED", "after1"),
                     ("BOOKMARK", None)]
    bookmark = events[-1]["raw_object"]
    assert set(bookmark) == {"kind", "apiVersion", "metadata"}
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(
        events[2]["object"].metadata.resource_version)

    api.compact()
    with pytest.raises(client.ApiException) as exc:
        for _ in watch.Watch().stream(v1.list_namespaced_pod, "ns", resource_version=rv,
                                      timeout_seconds=5):
            pass
    assert exc.value.status == 410 and "Expired" in exc.value.reason
    # the raw stream: one ERROR event carrying a 410 Status, then the stream ends
    resp = v1.list_namespaced_pod("ns", watch=True, resource_version=rv, timeout_seconds=5,
                                  _preload_content=False)
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410 and lines[0]["object"]["reason"] == "Expired"
    # a continue token issued before the compaction is expired too
    v1.create_namespaced_pod("ns", pod("more", "ns"))
    token = v1.list_namespaced_pod("ns", limit=1).metadata._continue
    api.compact()
    with pytest.raises(client.ApiException) as exc:
        v1.list_namespaced_pod("ns", limit=1, _continue=token)
    assert exc.value.status == 410 and _status(exc.value)["reason"] == "Expired"


def test_watch_initial_state_then_live_then_timeout(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    got: list[tuple[str, str]] = []
    w = watch.Watch()
    done = threading.Event()

    def consume() -> None:
        for ev in w.stream(v1.list_namespaced_pod, "ns", timeout_seconds=3):
            got.append((ev["type"], ev["object"].metadata.name))
            if len(got) == 2:
                w.stop()
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert api.wait_for_watches(1, timeout=5)
    v1.create_namespaced_pod("ns", pod("b", "ns"))
    assert done.wait(10)
    assert got == [("ADDED", "a"), ("ADDED", "b")]
    # timeoutSeconds ends the stream cleanly with no events
    resp = v1.list_namespaced_pod("ns", watch=True, resource_version=str(api.store.resource_version),
                                  timeout_seconds=1, _preload_content=False)
    assert resp.read() == b""


def test_merge_patch_labels(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns", {"keep": "1", "drop": "1"}))
    out = v1.patch_namespaced_pod(
        "a", "ns",
        {"metadata": {"labels": {"pipelines.kubeflow.org/metadata_written": "true",
                                 "drop": None}}},
        _content_type="application/merge-patch+json",
    )
    assert out.metadata.labels == {"keep": "1", "pipelines.kubeflow.org/metadata_written": "true"}
    assert v1.read_namespaced_pod("a", "ns").metadata.labels == out.metadata.labels


def test_strategic_merge_and_json_patch(v1: client.CoreV1Api, custom: client.CustomObjectsApi
                                        ) -> None:
    body = pod("a", "ns")
    body["spec"]["containers"].append({"name": "wait", "image": "argoexec"})
    v1.create_namespaced_pod("ns", body)
    # a dict body goes out as strategic merge patch: containers merge by name
    out = v1.patch_namespaced_pod(
        "a", "ns", {"metadata": {"annotations": {"a": "1"}},
                    "spec": {"containers": [{"name": "wait", "image": "argoexec:v3.5"}]}})
    assert [(c.name, c.image) for c in out.spec.containers] == [
        ("main", "python:3.9"), ("wait", "argoexec:v3.5")]
    # a list body goes out as JSON patch
    out = v1.patch_namespaced_pod("a", "ns", [
        {"op": "test", "path": "/metadata/annotations/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
        {"op": "remove", "path": "/metadata/annotations/a"},
    ])
    assert out.metadata.labels == {"x/y": "z"} and not out.metadata.annotations
    with pytest.raises(client.ApiException) as exc:
        v1.patch_namespaced_pod("a", "ns", [{"op": "test", "path": "/metadata/name",
                                            "value": "b"}])
    assert exc.value.status == 422 and _status(exc.value)["reason"] == "Invalid"
    # custom resources refuse strategic merge patch, like the real server
    custom.create_namespaced_custom_object(*ARGO, "ns", "workflows",
                                           {"metadata": {"name": "wf"}, "spec": {}})
    with pytest.raises(client.ApiException) as exc:
        custom.patch_namespaced_custom_object(
            *ARGO, "ns", "workflows", "wf", {"spec": {"x": 1}},
            _content_type="application/strategic-merge-patch+json")
    assert exc.value.status == 415


def test_conflict_on_stale_resource_version(v1: client.CoreV1Api) -> None:
    created = v1.create_namespaced_pod("ns", pod("a", "ns"))
    stale = created.metadata.resource_version
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"x": "1"}}})
    created.metadata.labels = {"y": "2"}
    with pytest.raises(client.ApiException) as exc:
        v1.replace_namespaced_pod("a", "ns", created)
    st = _status(exc.value)
    assert exc.value.status == 409
    assert st["kind"] == "Status" and st["status"] == "Failure" and st["reason"] == "Conflict"
    assert st["details"]["name"] == "a" and st["code"] == 409
    with pytest.raises(client.ApiException) as exc:
        v1.patch_namespaced_pod("a", "ns", {"metadata": {"resourceVersion": stale,
                                                         "labels": {"z": "3"}}},
                                _content_type="application/merge-patch+json")
    assert exc.value.status == 409
    fresh = v1.read_namespaced_pod("a", "ns")
    fresh.metadata.labels = {"y": "2"}
    assert v1.replace_namespaced_pod("a", "ns", fresh).metadata.labels == {"y": "2"}
    with pytest.raises(client.ApiException) as exc:
        v1.create_namespaced_pod("ns", pod("a", "ns"))
    assert exc.value.status == 409 and _status(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as exc:
        v1.read_namespaced_pod("zz", "ns")
    assert exc.value.status == 404 and _status(exc.value)["reason"] == "NotFound"


def test_lease_create_renew(coord: client.CoordinationV1Api) -> None:
    now = dt.datetime.now(dt.UTC)
    lease = coord.create_namespaced_lease("kube-system", client.V1Lease(
        metadata=client.V1ObjectMeta(name="reconciler"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15,
                                 acquire_time=now, renew_time=now)))
    first_rv = lease.metadata.resource_version
    lease.spec.renew_time = now + dt.timedelta(seconds=5)
    renewed = coord.replace_namespaced_lease("reconciler", "kube-system", lease)
    assert renewed.metadata.resource_version != first_rv
    assert renewed.spec.renew_time == now.replace(microsecond=now.microsecond) + dt.timedelta(
        seconds=5)
    lease.metadata.resource_version = first_rv
    lease.spec.holder_identity = "b"
    with pytest.raises(client.ApiException) as exc:
        coord.replace_namespaced_lease("reconciler", "kube-system", lease)
    assert exc.value.status == 409
    patched = coord.patch_namespaced_lease("reconciler", "kube-system",
                                           {"spec": {"holderIdentity": "c"}})
    assert patched.spec.holder_identity == "c"
    assert coord.read_namespaced_lease("reconciler", "kube-system").spec.holder_identity == "c"


def test_leader_election_against_lease(api: ApiServer, kubeconfig: Path) -> None:
    """Two ``kubernetes.leaderelection`` candidates: one leads and renews, the other
    takes over once the leader stops."""
    events: dict[str, threading.Event] = {
        k: threading.Event() for k in ("a-leads", "a-stop", "a-stopped", "b-leads", "b-stop")}
    clients = []

    def candidate(identity: str) -> None:
        lock = LeaseLock("leader", "kube-system", identity)
        c = make_client(kubeconfig)
        clients.append(c)
        lock.api_instance = client.CoordinationV1Api(c)

        def lead() -> None:
            events[f"{identity}-leads"].set()
            events[f"{identity}-stop"].wait(30)
            raise RuntimeError("stepping down")

        cfg = electionconfig.Config(lock, lease_duration=2, renew_deadline=1.5,
                                    retry_period=1, onstarted_leading=lead,
                                    onstopped_leading=events.get(
                                        f"{identity}-stopped", threading.Event()).set)
        leaderelection.LeaderElection(cfg).run()

    ta = threading.Thread(target=candidate, args=("a",), daemon=True)
    ta.start()
    assert events["a-leads"].wait(10)
    tb = threading.Thread(target=candidate, args=("b",), daemon=True)
    tb.start()
    coord = client.CoordinationV1Api(make_client(kubeconfig))
    assert coord.read_namespaced_lease("leader", "kube-system").spec.holder_identity == "a"
    assert not events["b-leads"].is_set()
    events["a-stop"].set()
    assert events["a-stopped"].wait(10)
    assert events["b-leads"].wait(15)
    assert coord.read_namespaced_lease("leader", "kube-system").spec.holder_identity == "b"
    assert api.count("update", "leases") >= 2
    events["b-stop"].set()
    tb.join(10)
    for c in clients:
        c.close()


def test_events_create_list_patch(v1: client.CoreV1Api) -> None:
    ev = {
        "metadata": {"generateName": "p.", "namespace": "ns"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"},
        "reason": "BadAnnotation", "message": "outputs annotation is not JSON",
        "type": "Warning", "count": 1, "source": {"component": "kfp-metadata-reconciler"},
    }
    created = v1.create_namespaced_event("ns", ev)
    assert created.metadata.name.startswith("p.")
    v1.patch_namespaced_event(created.metadata.name, "ns", {"count": 2})
    listed = v1.list_namespaced_event("ns")
    assert [(e.reason, e.count) for e in listed.items] == [("BadAnnotation", 2)]
    assert len(v1.list_event_for_all_namespaces(
        field_selector="metadata.namespace=ns").items) == 1


def test_namespaces_and_configmaps(v1: client.CoreV1Api) -> None:
    v1.create_namespace({"metadata": {"name": "kubeflow"}})
    assert v1.read_namespace("kubeflow").status.phase == "Active"
    v1.create_namespaced_config_map("kubeflow", {"metadata": {"name": "cm"},
                                                 "data": {"k": "v"}})
    assert v1.read_namespaced_config_map("cm", "kubeflow").data == {"k": "v"}
    assert [c.metadata.name for c in v1.list_namespaced_config_map("kubeflow").items] == ["cm"]
    assert "kubeflow" in [n.metadata.name for n in v1.list_namespace().items]


def test_workflows_and_taskresults_crud(custom: client.CustomObjectsApi) -> None:
    wf = custom.create_namespaced_custom_object(*ARGO, "ns", "workflows", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "demo-", "labels": {"pipeline/runid": "r1"}},
        "spec": {"entrypoint": "main"}})
    name = wf["metadata"]["name"]
    assert name.startswith("demo-") and wf["metadata"]["generation"] == 1
    got = custom.get_namespaced_custom_object(*ARGO, "ns", "workflows", name)
    assert got["spec"] == {"entrypoint": "main"}
    patched = custom.patch_namespaced_custom_object(
        *ARGO, "ns", "workflows", name, {"status": {"phase": "Running"}})
    assert patched["status"] == {"phase": "Running"}
    status = custom.patch_namespaced_custom_object_status(
        *ARGO, "ns", "workflows", name, {"status": {"phase": "Succeeded"}})
    assert status["status"]["phase"] == "Succeeded"
    listed = custom.list_namespaced_custom_object(*ARGO, "ns", "workflows",
                                                  label_selector="pipeline/runid=r1")
    assert listed["kind"] == "WorkflowList" and [w["metadata"]["name"] for w in listed["items"]] == [
        name]
    allns = custom.list_cluster_custom_object(*ARGO, "workflows")
    assert len(allns["items"]) == 1
    tr = custom.create_namespaced_custom_object(*ARGO, "ns", "workflowtaskresults", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
        "metadata": {"name": f"{name}-123", "labels": {"workflows.argoproj.io/workflow": name}},
        "outputs": {"artifacts": [{"name": "main-logs", "s3": {"key": "k"}}]}})
    assert tr["outputs"]["artifacts"][0]["name"] == "main-logs"
    custom.delete_namespaced_custom_object(*ARGO, "ns", "workflows", name)
    with pytest.raises(client.ApiException) as exc:
        custom.get_namespaced_custom_object(*ARGO, "ns", "workflows", name)
    assert exc.value.status == 404
    st = _status(exc.value)
    assert st["details"] == {"name": name, "group": "argoproj.io", "kind": "workflows"}
    # no cascading delete: the task result is still there
    assert len(custom.list_namespaced_custom_object(*ARGO, "ns", "workflowtaskresults")[
        "items"]) == 1


def test_discovery(api_client: client.ApiClient) -> None:
    assert client.VersionApi(api_client).get_code().major == "1"
    assert client.CoreApi(api_client).get_api_versions().versions == ["v1"]
    core = {r.name: r for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert core["pods"].short_names == ["po"] and core["pods"].namespaced
    assert "watch" in core["pods"].verbs and "pods/status" in core
    assert not core["namespaces"].namespaced
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups["argoproj.io"].preferred_version.group_version == "argoproj.io/v1alpha1"
    assert "coordination.k8s.io" in groups
    argo = client.CustomObjectsApi(api_client).get_api_resources("argoproj.io", "v1alpha1")
    wf = {r.name: r for r in argo.resources}
    assert wf["workflows"].short_names == ["wf"] and wf["workflows"].kind == "Workflow"
    assert wf["workflowtaskresults"].kind == "WorkflowTaskResult"
    coord = client.CoordinationV1Api(api_client).get_api_resources()
    assert [r.name for r in coord.resources] == ["leases"]


def test_request_counts(api: ApiServer, v1: client.CoreV1Api) -> None:
    api.reset_counts()
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    v1.list_namespaced_pod("ns")
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"x": "1"}}})
    v1.patch_namespaced_pod_status("a", "ns", {"status": {"phase": "Succeeded"}})
    assert api.request_counts() == {("create", "pods"): 1, ("list", "pods"): 1,
                                    ("patch", "pods"): 1, ("patch", "pods/status"): 1}
    assert v1.read_namespaced_pod("a", "ns").status.phase == "Succeeded"
