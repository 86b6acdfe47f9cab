"""ObjectStore semantics, in process (no HTTP)."""

from __future__ import annotations

import json
import threading

import pytest

from sandbox.cluster import ClusterError
from sandbox.objectstore import ObjectStore
from sandbox.patching import json_patch, merge_patch, strategic_merge_patch

from .conftest import pod


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore(history_size=50)


def names(objs: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_create_assigns_metadata_and_global_rv(store: ObjectStore) -> None:
    a = store.create("pods", pod("a", "ns"))
    wf = store.create("workflows", {"metadata": {"generateName": "wf-", "namespace": "ns"}})
    meta = a["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(wf["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert wf["metadata"]["name"].startswith("wf-") and len(wf["metadata"]["name"]) > 3
    assert wf["metadata"]["generation"] == 1
    assert wf["apiVersion"] == "argoproj.io/v1alpha1" and wf["kind"] == "Workflow"
    assert names(store.list("namespaces")) == ["ns"]
    with pytest.raises(ClusterError) as e:
        store.create("pods", pod("a", "ns"))
    assert (e.value.status, e.value.reason) == (409, "AlreadyExists")
    with pytest.raises(ClusterError) as e:
        store.get("pods", "ns", "zz")
    assert e.value.status == 404


def test_generation_bumps_on_spec_change_only(store: ObjectStore) -> None:
    wf = store.create("workflows", {"metadata": {"name": "w"}, "spec": {"a": 1}})
    wf = store.patch("workflows", "default", "w", {"status": {"phase": "Running"}})
    assert wf["metadata"]["generation"] == 1
    wf = store.patch("workflows", "default", "w", {"spec": {"a": 2}})
    assert wf["metadata"]["generation"] == 2


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=a", ["p0", "p1"]),
        ("app==a", ["p0", "p1"]),
        ("app!=a", ["p2", "p3"]),
        ("app in (b, c)", ["p2"]),
        ("app notin (a)", ["p2", "p3"]),
        ("tier", ["p1"]),
        ("!tier", ["p0", "p2", "p3"]),
        ("app=a,tier=web", ["p1"]),
        ("app in (a,b),!tier", ["p0", "p2"]),
    ],
)
def test_label_selectors(store: ObjectStore, selector: str, expected: list[str]) -> None:
    store.create("pods", pod("p0", labels={"app": "a"}))
    store.create("pods", pod("p1", labels={"app": "a", "tier": "web"}))
    store.create("pods", pod("p2", labels={"app": "b"}))
    store.create("pods", pod("p3"))
    assert names(store.list("pods", label_selector=selector)) == expected


def test_bad_selector_is_400(store: ObjectStore) -> None:
    with pytest.raises(ClusterError) as e:
        store.list("pods", label_selector="a in (")
    assert e.value.status == 400


def test_field_selectors_and_namespaces(store: ObjectStore) -> None:
    store.create("pods", pod("a", "n1"))
    store.create("pods", pod("b", "n2", status={"phase": "Succeeded"}))
    assert names(store.list("pods", field_selector="status.phase=Succeeded")) == ["b"]
    assert names(store.list("pods", field_selector="status.phase!=Succeeded")) == ["a"]
    assert names(store.list("pods", field_selector="metadata.namespace==n1")) == ["a"]
    assert names(store.list("pods", field_selector="metadata.name=b")) == ["b"]
    assert names(store.list("pods", "n2")) == ["b"]


def test_pagination_and_expired_token(store: ObjectStore) -> None:
    for i in range(7):
        store.create("pods", pod(f"p{i}", "ns"))
    page = store.list_page("pods", "ns", limit=3)
    assert len(page.items) == 3 and page.remaining == 4 and page.continue_token
    got = names(page.objects())
    while page.continue_token:
        page = store.list_page("pods", "ns", limit=3, continue_token=page.continue_token)
        got += names(page.objects())
    assert got == [f"p{i}" for i in range(7)]
    first = store.list_page("pods", "ns", limit=3)
    store.compact()
    with pytest.raises(ClusterError) as e:
        store.list_page("pods", "ns", limit=3, continue_token=first.continue_token)
    assert (e.value.status, e.value.reason) == (410, "Expired")


def test_patch_kinds_and_conflicts(store: ObjectStore) -> None:
    p = store.create("pods", pod("a", labels={"x": "1"}))
    rv = p["metadata"]["resourceVersion"]
    p = store.patch("pods", "default", "a", {"metadata": {"labels": {"y": "2", "x": None}}})
    assert p["metadata"]["labels"] == {"y": "2"}
    p = store.patch("pods", "default", "a",
                    {"spec": {"containers": [{"name": "main", "image": "new"}]}}, "strategic")
    assert p["spec"]["containers"] == [{"name": "main", "image": "new"}]
    p = store.patch("pods", "default", "a",
                    [{"op": "add", "path": "/metadata/annotations", "value": {"k/v": "1"}},
                     {"op": "test", "path": "/metadata/labels/y", "value": "2"}], "json")
    assert p["metadata"]["annotations"] == {"k/v": "1"}
    for bad in ({"metadata": {"resourceVersion": rv, "labels": {"z": "1"}}},):
        with pytest.raises(ClusterError) as e:
            store.patch("pods", "default", "a", bad)
        assert e.value.status == 409
    stale = dict(p, metadata=dict(p["metadata"], resourceVersion=rv))
    with pytest.raises(ClusterError) as e:
        store.replace("pods", stale)
    assert e.value.reason == "Conflict"
    assert store.replace("pods", p)["metadata"]["resourceVersion"] != p["metadata"]["resourceVersion"]
    with pytest.raises(ClusterError) as e:
        store.patch("pods", "default", "a", [{"op": "test", "path": "/spec/x", "value": 1}], "json")
    assert e.value.status == 422


def test_merge_patches_leave_earlier_versions_and_untouched_parts_alone(store: ObjectStore) -> None:
    # A merge patch shares the parts it does not touch with the stored version before it.
    original = store.create("pods", pod("a", labels={"x": "1"}))
    first = store.patch("pods", "default", "a", {"metadata": {"annotations": {"note": "one"}}})
    second = store.patch("pods", "default", "a", {"metadata": {"labels": {"x": None, "y": "2"}}})
    assert first["metadata"]["labels"] == {"x": "1"} and first["metadata"]["annotations"] == {"note": "one"}
    assert second["metadata"]["labels"] == {"y": "2"} and second["metadata"]["annotations"] == {"note": "one"}
    assert first["spec"] == second["spec"] == original["spec"]
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (original, first, second)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    assert store.get("pods", "default", "a") == second
    # The history replays each version as it was written.
    replay = store.watch("pods", resource_version=original["metadata"]["resourceVersion"])
    seen = [json.loads(replay.get(1).raw)["metadata"] for _ in range(2)]
    assert [m["labels"] for m in seen] == [{"x": "1"}, {"y": "2"}]
    assert [m["resourceVersion"] for m in seen] == [str(rvs[1]), str(rvs[2])]


def test_patch_algorithms() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None}, "l": [2]}) == {
        "a": {"c": 2}, "l": [2]}
    doc = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]},
           "m": {"x": {"y": 1}}}
    out = strategic_merge_patch(doc, {"spec": {"containers": [{"name": "b", "image": "3"}]},
                                      "m": {"$patch": "replace", "z": 1}})
    assert out["spec"]["containers"][1] == {"name": "b", "image": "3"}
    assert out["m"] == {"z": 1}
    ops = [
        {"op": "add", "path": "/l/-", "value": 3},
        {"op": "copy", "from": "/l/0", "path": "/c"},
        {"op": "move", "from": "/c", "path": "/d"},
        {"op": "replace", "path": "/d", "value": 9},
        {"op": "remove", "path": "/l/0"},
    ]
    assert json_patch({"l": [1, 2]}, ops) == {"l": [2, 3], "d": 9}


def test_watch_history_selectors_and_410() -> None:
    store = ObjectStore(history_size=3)
    store.create("pods", pod("a", labels={"app": "x"}))
    start = store.resource_version
    w = store.watch("pods", resource_version=str(start), label_selector="app=x")
    store.patch("pods", "default", "a", {"metadata": {"labels": {"app": "y"}}})  # leaves selector
    store.patch("pods", "default", "a", {"metadata": {"labels": {"app": "x"}}})  # re-enters
    store.delete("pods", "default", "a")
    assert [w.get(1).type for _ in range(3)] == ["DELETED", "ADDED", "DELETED"]
    replay = store.watch("pods", resource_version=str(start))
    assert [replay.get(1).type for _ in range(3)] == ["MODIFIED", "MODIFIED", "DELETED"]
    for i in range(5):
        store.create("pods", pod(f"b{i}"))
    with pytest.raises(ClusterError) as e:
        store.watch("pods", resource_version=str(start))
    assert e.value.status == 410
    initial = store.watch("pods")
    assert [initial.get(1).type for _ in range(5)] == ["ADDED"] * 5
    assert initial.get(0) is None
    store.close_watchers()
    assert w.get(1).type == "CLOSED"


def test_concurrent_writes_get_unique_rvs() -> None:
    store = ObjectStore()
    rvs: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(100):
            o = store.create("pods", pod(f"t{t}-{i}"))
            with lock:
                rvs.append(o["metadata"]["resourceVersion"])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(rvs)) == 400
    assert store.count("pods") == 400
