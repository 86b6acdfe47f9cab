"""Metadata-only answers (PartialObjectMetadata/List), content negotiation and traffic counts.

Everything goes through the official ``kubernetes`` client over HTTP, with the Accept headers
real clients send (client-go's metadata client, kubectl, the Python client's default).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch

from sandbox.apiserver import ApiServer
from tests.podfactory import chain, pods_of

from .conftest import pod

ARGO = ("argoproj.io", "v1alpha1")
META = "meta.k8s.io/v1"
AS_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
AS_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
# what client-go's metadata client sends: protobuf first (not served here), JSON, then plain JSON
CLIENT_GO_LIST = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
    f"{AS_LIST},application/json"
)
CLIENT_GO_WATCH = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,"
    f"{AS_OBJECT},application/json"
)
KUBECTL_TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
    "application/json"
)


def _read(resp: Any) -> dict[str, Any]:
    return json.loads(resp.data)


def _list_pods(v1: client.CoreV1Api, accept: str, **kw: Any) -> dict[str, Any]:
    return _read(v1.list_namespaced_pod("ns", _headers={"Accept": accept}, _preload_content=False, **kw))


def _names(doc: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in doc["items"] or []]


def _seed(v1: client.CoreV1Api) -> None:
    for i, labels in enumerate([{"app": "a"}, {"app": "a", "tier": "web"}, {"app": "b"}, {}, {"app": "c"}]):
        v1.create_namespaced_pod("ns", pod(f"p{i}", "ns", labels))
    v1.create_namespaced_pod("other", pod("q0", "other", {"app": "a"}))


def _status(exc: client.ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def test_metadata_list_shape_and_content(v1: client.CoreV1Api) -> None:
    _seed(v1)
    v1.patch_namespaced_pod("p0", "ns", {"metadata": {"annotations": {"note": "x"}}})
    full = _list_pods(v1, "application/json")
    meta = _list_pods(v1, CLIENT_GO_LIST)
    assert (meta["kind"], meta["apiVersion"]) == ("PartialObjectMetadataList", META)
    assert meta["metadata"] == full["metadata"]
    for item, obj in zip(meta["items"], full["items"], strict=True):
        assert item == {"kind": "PartialObjectMetadata", "apiVersion": META, "metadata": obj["metadata"]}
    assert meta["items"][0]["metadata"]["annotations"] == {"note": "x"}
    # a later write shows at once: nothing stale is served from what metadata lists keep
    v1.patch_namespaced_pod("p0", "ns", {"metadata": {"labels": {"app": "z"}}})
    again = _list_pods(v1, AS_LIST)
    assert again["items"][0]["metadata"]["labels"] == {"app": "z"}
    assert again["metadata"]["resourceVersion"] == again["items"][0]["metadata"]["resourceVersion"]
    # v1beta1 is served too, items included
    beta = _list_pods(v1, AS_LIST.replace("v=v1", "v=v1beta1"))
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert {i["apiVersion"] for i in beta["items"]} == {"meta.k8s.io/v1beta1"}
    # nothing matched: the real server's converted list holds no slice, so items is null
    empty = _list_pods(v1, AS_LIST, label_selector="app=nope")
    assert empty["items"] is None and empty["kind"] == "PartialObjectMetadataList"
    assert _list_pods(v1, "application/json", label_selector="app=nope")["items"] == []


@pytest.mark.parametrize(
    "selectors",
    [{}, {"label_selector": "app"}, {"label_selector": "app in (a,c)"},
     {"field_selector": "metadata.name!=p1"}],
)
def test_metadata_pages_are_the_full_pages(v1: client.CoreV1Api, selectors: dict[str, str]) -> None:
    _seed(v1)
    full_pages, meta_pages = [], []
    for accept, pages in (("application/json", full_pages), (AS_LIST, meta_pages)):
        token = None
        while True:
            page = _list_pods(v1, accept, limit=2, _continue=token, **selectors)
            pages.append(page)
            token = page["metadata"].get("continue")
            if not token:
                break
    assert [_names(p) for p in meta_pages] == [_names(p) for p in full_pages]
    assert [p["metadata"] for p in meta_pages] == [p["metadata"] for p in full_pages]
    assert len({p["metadata"]["resourceVersion"] for p in meta_pages}) == 1
    if not selectors:
        assert meta_pages[0]["metadata"]["remainingItemCount"] == 3
    else:
        assert "remainingItemCount" not in meta_pages[0]["metadata"]


def test_metadata_continue_tokens_mix_and_expire(api: ApiServer, v1: client.CoreV1Api) -> None:
    _seed(v1)
    first = _list_pods(v1, AS_LIST, limit=3)
    # a token is not tied to the representation: the full list resumes where metadata stopped
    rest = _list_pods(v1, "application/json", limit=3, _continue=first["metadata"]["continue"])
    assert _names(first) + _names(rest) == ["p0", "p1", "p2", "p3", "p4"]
    api.compact()
    with pytest.raises(client.ApiException) as exc:
        _list_pods(v1, AS_LIST, limit=3, _continue=first["metadata"]["continue"])
    assert exc.value.status == 410 and _status(exc.value)["reason"] == "Expired"
    # selectors are still checked before anything is converted
    with pytest.raises(client.ApiException) as exc:
        _list_pods(v1, AS_LIST, label_selector="a b c")
    assert exc.value.status == 400


def test_metadata_get_and_write_answers(v1: client.CoreV1Api) -> None:
    _seed(v1)
    got = _read(v1.read_namespaced_pod("p1", "ns", _headers={"Accept": AS_OBJECT}, _preload_content=False))
    full = v1.read_namespaced_pod("p1", "ns")
    assert set(got) == {"kind", "apiVersion", "metadata"} and got["kind"] == "PartialObjectMetadata"
    assert got["metadata"]["uid"] == full.metadata.uid and got["metadata"]["labels"] == full.metadata.labels
    # a patch answered as metadata: the pod is patched, the answer is its new metadata only
    patched = _read(v1.patch_namespaced_pod(
        "p1", "ns", {"metadata": {"labels": {"done": "true"}}},
        _content_type="application/merge-patch+json", _headers={"Accept": AS_OBJECT}, _preload_content=False))
    assert set(patched) == {"kind", "apiVersion", "metadata"}
    assert patched["metadata"]["labels"]["done"] == "true"
    assert int(patched["metadata"]["resourceVersion"]) > int(full.metadata.resource_version)
    assert v1.read_namespaced_pod("p1", "ns").spec.containers[0].image == "python:3.9"
    created = _read(v1.create_namespaced_pod("ns", pod("new", "ns"), _headers={"Accept": AS_OBJECT},
                                             _preload_content=False))
    assert created["kind"] == "PartialObjectMetadata" and created["metadata"]["name"] == "new"
    with pytest.raises(client.ApiException) as exc:
        v1.read_namespaced_pod("nope", "ns", _headers={"Accept": AS_OBJECT})
    assert exc.value.status == 404  # not found wins over the conversion


def test_metadata_for_custom_resources_events_and_leases(
    api_client: client.ApiClient, custom: client.CustomObjectsApi, v1: client.CoreV1Api,
    coord: client.CoordinationV1Api,
) -> None:
    for i in range(3):
        custom.create_namespaced_custom_object(*ARGO, "kubeflow", "workflows", {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": f"wf-{i}", "labels": {"pipeline/runid": f"r{i % 2}"}},
            "spec": {"templates": [{"name": "main", "container": {"image": "x" * 500}}]}})
        custom.create_namespaced_custom_object(*ARGO, "kubeflow", "workflowtaskresults", {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
            "metadata": {"name": f"wf-{i}-1", "labels": {"workflows.argoproj.io/workflow": f"wf-{i}"}},
            "outputs": {"artifacts": [{"name": "main-logs", "s3": {"key": "k"}}]}})
    wfs = _read(custom.list_namespaced_custom_object(
        *ARGO, "kubeflow", "workflows", label_selector="pipeline/runid=r0", limit=1,
        _headers={"Accept": AS_LIST}, _preload_content=False))
    assert wfs["kind"] == "PartialObjectMetadataList" and _names(wfs) == ["wf-0"]
    assert "spec" not in wfs["items"][0] and wfs["items"][0]["metadata"]["generation"] == 1
    rest = _read(custom.list_namespaced_custom_object(
        *ARGO, "kubeflow", "workflows", label_selector="pipeline/runid=r0", limit=1,
        _continue=wfs["metadata"]["continue"], _headers={"Accept": AS_LIST}, _preload_content=False))
    assert _names(rest) == ["wf-2"] and "continue" not in rest["metadata"]
    results = _read(custom.list_cluster_custom_object(
        *ARGO, "workflowtaskresults", _headers={"Accept": AS_LIST}, _preload_content=False))
    assert [i["metadata"]["labels"]["workflows.argoproj.io/workflow"] for i in results["items"]] == [
        "wf-0", "wf-1", "wf-2"]
    one = _read(custom.get_namespaced_custom_object(
        *ARGO, "kubeflow", "workflows", "wf-1", _headers={"Accept": AS_OBJECT}, _preload_content=False))
    assert one["kind"] == "PartialObjectMetadata" and one["metadata"]["name"] == "wf-1"
    with pytest.raises(client.ApiException) as exc:
        custom.list_namespaced_custom_object(*ARGO, "kubeflow", "workflows", _headers={"Accept": AS_OBJECT})
    assert exc.value.status == 406
    assert "(*unstructured.UnstructuredList)" in _status(exc.value)["message"]

    v1.create_namespaced_event("kubeflow", {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "R", "message": "m" * 300, "type": "Warning"})
    events = _read(v1.list_namespaced_event("kubeflow", _headers={"Accept": AS_LIST}, _preload_content=False))
    assert _names(events) == ["e1"] and "message" not in events["items"][0]
    coord.create_namespaced_lease("kube-system", {"metadata": {"name": "leader"},
                                                  "spec": {"holderIdentity": "a"}})
    lease = _read(coord.read_namespaced_lease("leader", "kube-system", _headers={"Accept": AS_OBJECT},
                                              _preload_content=False))
    assert lease["metadata"]["name"] == "leader" and "spec" not in lease
    namespaces = _read(v1.list_namespace(_headers={"Accept": AS_LIST}, _preload_content=False))
    assert {"kube-system", "kubeflow"} <= set(_names(namespaces))


def test_metadata_watch(api: ApiServer, v1: client.CoreV1Api) -> None:
    _seed(v1)
    rv = _list_pods(v1, AS_LIST)["metadata"]["resourceVersion"]
    v1.patch_namespaced_pod("p0", "ns", {"metadata": {"labels": {"app": "gone"}}})  # leaves app=a
    v1.create_namespaced_pod("ns", pod("p9", "ns", {"app": "a"}))
    v1.delete_namespaced_pod("p1", "ns")
    w = watch.Watch()
    events = []
    for ev in w.stream(v1.list_namespaced_pod, "ns", label_selector="app=a", resource_version=rv,
                       allow_watch_bookmarks=True, timeout_seconds=10, deserialize=False,
                       _headers={"Accept": CLIENT_GO_WATCH}):
        events.append(ev)
        if ev["type"] == "BOOKMARK":
            w.stop()
    seen = [(e["type"], e["object"]["metadata"].get("name")) for e in events]
    assert seen == [("DELETED", "p0"), ("ADDED", "p9"), ("DELETED", "p1"), ("BOOKMARK", None)]
    for e in events:
        assert set(e["object"]) == {"kind", "apiVersion", "metadata"}
        assert (e["object"]["kind"], e["object"]["apiVersion"]) == ("PartialObjectMetadata", META)
    assert events[0]["object"]["metadata"]["labels"] == {"app": "gone"}
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[-2]["object"]["metadata"]["resourceVersion"])

    # a live watch from now (initial state first), then an event arriving while it is open
    got: list[dict[str, Any]] = []
    done = threading.Event()

    def consume() -> None:
        w2 = watch.Watch()
        for ev in w2.stream(v1.list_namespaced_pod, "ns", timeout_seconds=5, deserialize=False,
                            _headers={"Accept": AS_OBJECT}):
            got.append(ev)
            if ev["object"]["metadata"]["name"] == "z-late":
                w2.stop()
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    assert api.wait_for_watches(2, timeout=10, started=True)  # the first one, and this one
    v1.create_namespaced_pod("ns", pod("z-late", "ns"))
    assert done.wait(10)
    assert [e["object"]["metadata"]["name"] for e in got] == ["p0", "p2", "p3", "p4", "p9", "z-late"]
    assert {e["object"]["kind"] for e in got} == {"PartialObjectMetadata"}

    # 410 on a compacted resourceVersion: the ERROR event carries a Status, not converted
    api.compact()
    resp = v1.list_namespaced_pod("ns", watch=True, resource_version=rv, timeout_seconds=5,
                                  _headers={"Accept": AS_OBJECT}, _preload_content=False)
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["kind"], e["object"]["code"]) for e in lines] == [
        ("ERROR", "Status", 410)]


def test_watch_asking_for_a_list_kind_gets_whole_objects(api: ApiServer, v1: client.CoreV1Api) -> None:
    """The real server converts each event's object and, when the conversion does not fit one
    object, logs it and sends the object as stored: no 406 on a watch."""
    _seed(v1)
    resp = v1.list_namespaced_pod("ns", watch=True, timeout_seconds=1, _headers={"Accept": AS_LIST},
                                  _preload_content=False)
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [e["object"]["kind"] for e in lines] == ["Pod"] * 5
    assert all("spec" in e["object"] for e in lines)


def test_negotiation(v1: client.CoreV1Api) -> None:
    _seed(v1)
    cases = {
        # the first clause the emulator can serve wins; an unknown conversion is skipped
        "application/json": "PodList",
        "": "PodList",
        "*/*": "PodList",
        "application/*;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1": "PartialObjectMetadataList",
        "application/json;as=Foo;g=meta.k8s.io;v=v1,application/json": "PodList",
        "application/json;as=Table;g=meta.k8s.io;v=v2,application/json": "PodList",
        "application/json;as=PartialObjectMetadataList,application/json": "PodList",  # no g/v
        "application/json;as=PartialObjectMetadataList;g=example.com;v=v1,application/json": "PodList",
        "application/yaml,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1":
            "PartialObjectMetadataList",
        KUBECTL_TABLE: "Table",
        # quality first, then the client's order
        f"application/json;q=0.5,{AS_LIST}": "PartialObjectMetadataList",
        f"{AS_LIST};q=0.1,application/json;q=0.9": "PodList",
        f"application/json;q=0,{AS_LIST};q=0.2": "PartialObjectMetadataList",
        "application/json;stream=watch": "PodList",
    }
    for accept, kind in cases.items():
        assert _list_pods(v1, accept)["kind"] == kind, accept
    table = _list_pods(v1, "application/json;as=Table;v=v1beta1;g=meta.k8s.io", limit=2)
    assert table["apiVersion"] == "meta.k8s.io/v1beta1" and len(table["rows"]) == 2
    assert table["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    assert table["metadata"]["continue"]


@pytest.mark.parametrize(
    ("accept", "message"),
    [
        ("application/vnd.kubernetes.protobuf",
         "only the following media types are accepted: application/json"),
        ("application/json;as=Foo;g=meta.k8s.io;v=v1", "only the following media types are accepted"),
        ("application/json;q=0", "only the following media types are accepted"),
        ("text/html", "only the following media types are accepted"),
        (AS_OBJECT,
         "you requested PartialObjectMetadata, but the requested object is a list (*core.PodList)"),
    ],
)
def test_not_acceptable_lists(api: ApiServer, v1: client.CoreV1Api, accept: str, message: str) -> None:
    _seed(v1)
    api.reset_counts()
    with pytest.raises(client.ApiException) as exc:
        v1.list_namespaced_pod("ns", _headers={"Accept": accept})
    status = _status(exc.value)
    assert exc.value.status == 406
    assert {k: status[k] for k in ("kind", "status", "reason", "code")} == {
        "kind": "Status", "status": "Failure", "reason": "NotAcceptable", "code": 406}
    assert status["message"].startswith(message) and "details" not in status
    view = "metadata" if accept == AS_OBJECT else "none"
    assert api.traffic() == {("list", "pods", view): (1, len(exc.value.body))}


def test_not_acceptable_object_and_writes(api: ApiServer, v1: client.CoreV1Api) -> None:
    _seed(v1)
    with pytest.raises(client.ApiException) as exc:
        v1.read_namespaced_pod("p0", "ns", _headers={"Accept": AS_LIST})
    assert exc.value.status == 406 and _status(exc.value)["message"] == (
        "you requested PartialObjectMetadataList, but the requested object is not a list (*core.Pod)")
    # nothing acceptable: refused before the write
    with pytest.raises(client.ApiException) as exc:
        v1.patch_namespaced_pod("p0", "ns", {"metadata": {"labels": {"x": "1"}}},
                                _headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert exc.value.status == 406 and "x" not in v1.read_namespaced_pod("p0", "ns").metadata.labels
    # a kind that does not fit is found when the answer is converted, after the write (as for real)
    with pytest.raises(client.ApiException) as exc:
        v1.patch_namespaced_pod("p0", "ns", {"metadata": {"labels": {"x": "2"}}},
                                _headers={"Accept": AS_LIST})
    assert exc.value.status == 406 and v1.read_namespaced_pod("p0", "ns").metadata.labels["x"] == "2"


def _admin_traffic(api: ApiServer, method: str = "GET") -> dict[str, Any]:
    req = urllib.request.Request(f"{api.url}/_sandbox/traffic", method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_traffic_counts_add_up(api: ApiServer, v1: client.CoreV1Api) -> None:
    for wf in range(6):
        for p in pods_of(chain(f"pipeline-{wf}", 5, namespace="ns")):
            v1.create_namespaced_pod("ns", p)
    api.reset_counts()
    received: dict[str, list[int]] = {}
    names: list[str] = []
    for view, accept in (("full", "application/json"), ("metadata", AS_LIST)):
        sizes, token = [], None
        while True:
            resp = v1.list_namespaced_pod("ns", limit=7, _continue=token, _headers={"Accept": accept},
                                          _preload_content=False)
            sizes.append(len(resp.data))
            doc = json.loads(resp.data)
            names += _names(doc)
            token = doc["metadata"].get("continue")
            if not token:
                break
        received[view] = sizes
    assert len(names) == 60 and names[:30] == names[30:]
    one = v1.read_namespaced_pod(names[0], "ns", _headers={"Accept": AS_OBJECT}, _preload_content=False)
    stream = v1.list_namespaced_pod("ns", watch=True, timeout_seconds=1, _headers={"Accept": AS_OBJECT},
                                    _preload_content=False).read()
    assert stream.count(b"\n") == 30
    assert api.traffic() == {
        ("list", "pods", "full"): (5, sum(received["full"])),
        ("list", "pods", "metadata"): (5, sum(received["metadata"])),
        ("get", "pods", "metadata"): (1, len(one.data)),
        ("watch", "pods", "metadata"): (1, len(stream)),
    }
    full, meta = sum(received["full"]), sum(received["metadata"])
    # spec (ARGO_TEMPLATE three times) and status stay home; managedFields come along, as for real
    assert meta < full * 0.6, (meta, full)
    # the admin endpoint says the same, and a DELETE zeroes it (request counts stay)
    rows = {(r["verb"], r["resource"], r["view"]): (r["requests"], r["bytes"])
            for r in _admin_traffic(api)["traffic"]}
    assert rows == {tuple(k): tuple(v) for k, v in api.traffic().items()}
    _admin_traffic(api, "DELETE")
    assert api.traffic() == {} and api.count("list", "pods") == 10
