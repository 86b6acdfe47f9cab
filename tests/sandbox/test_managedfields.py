"""``metadata.managedFields`` as the emulator keeps them, seen through kubectl and the real client."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes import client

from sandbox.apiserver import ApiServer
from sandbox.managedfields import manager_from_user_agent
from sandbox.objectstore import ObjectStore

from .conftest import KubectlRunner, pod

ARGO = ("argoproj.io", "v1alpha1")
AS_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """managedFields by (manager, subresource)."""
    return {(e.get("manager", ""), e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}


def _labels_owned(entry: dict[str, Any]) -> set[str]:
    labels = entry["fieldsV1"].get("f:metadata", {}).get("f:labels", {})
    return {k[2:] for k in labels if k != "."}


def _raw_pod(v1: client.CoreV1Api, name: str) -> dict[str, Any]:
    return json.loads(v1.read_namespaced_pod(name, "ns", _preload_content=False).data)


def test_create_records_the_writer_and_its_fields(v1: client.CoreV1Api) -> None:
    body = pod("a", "ns", {"app": "a", "tier": "web"})
    body["metadata"]["finalizers"] = ["example.com/keep"]
    body["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"},
                                            {"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]
    body["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    v1.create_namespaced_pod("ns", body)
    created = _raw_pod(v1, "a")
    (entry,) = created["metadata"]["managedFields"]
    # the Python client's User-Agent is "OpenAPI-Generator/<version>/python"
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "fieldsType")} == {
        "manager": "OpenAPI-Generator", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["time"])
    assert list(created["metadata"])[-1] == "managedFields"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {
        "f:finalizers": {".": {}, 'v:"example.com/keep"': {}},
        "f:labels": {".": {}, "f:app": {}, "f:tier": {}},
    }  # name, namespace, uid, resourceVersion, creationTimestamp are nobody's
    main = fields["f:spec"]["f:containers"]['k:{"name":"main"}']
    assert main == {
        ".": {}, "f:image": {}, "f:name": {},
        "f:env": {".": {}, 'k:{"name":"P"}': {".": {}, "f:name": {}, "f:valueFrom": {"f:fieldRef": {}}},
                  'k:{"name":"X"}': {".": {}, "f:name": {}, "f:value": {}}},
        "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
            ".": {}, "f:containerPort": {}, "f:protocol": {}}},
    }
    assert fields["f:status"] == {"f:phase": {}}
    # the typed client reads them too
    typed = v1.read_namespaced_pod("a", "ns").metadata.managed_fields
    assert [(m.manager, m.operation) for m in typed] == [("OpenAPI-Generator", "Update")]


def test_later_writers_take_over_what_they_change(api: ApiServer, v1: client.CoreV1Api,
                                                  kubectl: KubectlRunner) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns", {"app": "a", "tier": "web", "gone": "soon"}))
    kubectl("label", "pod", "a", "-n", "ns", "--overwrite", "app=z", "extra=1")
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"gone": None, "mine": "x"}}},
                            field_manager="reconciler", _content_type="application/merge-patch+json")
    v1.patch_namespaced_pod_status("a", "ns", {"status": {"phase": "Succeeded"}}, field_manager="kubelet")
    entries = _entries(_raw_pod(v1, "a"))
    assert set(entries) == {("OpenAPI-Generator", ""), ("kubectl-label", ""), ("reconciler", ""),
                            ("kubelet", "status")}
    assert _labels_owned(entries[("OpenAPI-Generator", "")]) == {"tier"}  # app taken, gone removed
    assert _labels_owned(entries[("kubectl-label", "")]) == {"app", "extra"}
    assert _labels_owned(entries[("reconciler", "")]) == {"mine"}
    assert entries[("kubelet", "status")]["fieldsV1"] == {"f:status": {"f:phase": {}}}
    assert "f:status" not in entries[("OpenAPI-Generator", "")]["fieldsV1"]
    # a writer left owning nothing disappears
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"mine": None}}},
                            _content_type="application/merge-patch+json")
    assert ("reconciler", "") not in _entries(_raw_pod(v1, "a"))
    # metadata-only answers carry them, the same as the full object's
    meta = json.loads(v1.list_namespaced_pod("ns", _headers={"Accept": AS_LIST},
                                             _preload_content=False).data)
    assert meta["items"][0]["metadata"]["managedFields"] == _raw_pod(v1, "a")["metadata"]["managedFields"]
    # kubectl hides them unless asked, as for a real cluster
    assert "managedFields" not in kubectl("get", "pod", "a", "-n", "ns", "-o", "json").stdout
    shown = json.loads(kubectl("get", "pod", "a", "-n", "ns", "-o", "json", "--show-managed-fields").stdout)
    assert {e["manager"] for e in shown["metadata"]["managedFields"]} >= {"kubectl-label", "kubelet"}


def test_sent_managed_fields(v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns", {"app": "a"}))
    current = _raw_pod(v1, "a")
    # a read-modify-write that sends them back unchanged keeps them
    current["metadata"]["labels"]["b"] = "1"
    v1.replace_namespaced_pod("a", "ns", current, field_manager="editor")
    after = _entries(_raw_pod(v1, "a"))
    assert _labels_owned(after[("editor", "")]) == {"b"} and ("OpenAPI-Generator", "") in after
    # [] resets them: only what this write changed is recorded
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"managedFields": [], "labels": {"c": "1"}}},
                            field_manager="resetter", _content_type="application/merge-patch+json")
    reset = _raw_pod(v1, "a")["metadata"]["managedFields"]
    assert [(e["manager"], _labels_owned(e)) for e in reset] == [("resetter", {"c"})]
    # a status write cannot set them
    v1.patch_namespaced_pod_status("a", "ns", {"metadata": {"managedFields": []},
                                               "status": {"phase": "Failed"}}, field_manager="kubelet")
    assert {e["manager"] for e in _raw_pod(v1, "a")["metadata"]["managedFields"]} == {"resetter", "kubelet"}


def test_custom_resource_fields_are_opaque(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(*ARGO, "ns", "workflows", {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "wf-", "labels": {"workflows.argoproj.io/creator": "me"}},
        "spec": {"entrypoint": "main", "templates": [{"name": "main"}]}}, field_manager="argo")
    (wf,) = custom.list_namespaced_custom_object(*ARGO, "ns", "workflows")["items"]
    name = wf["metadata"]["name"]
    custom.patch_namespaced_custom_object(
        *ARGO, "ns", "workflows", name,
        {"metadata": {"labels": {"workflows.argoproj.io/phase": "Running"}}, "status": {"phase": "Running"}},
        field_manager="workflow-controller")
    entries = _entries(custom.get_namespaced_custom_object(*ARGO, "ns", "workflows", name))
    assert entries[("argo", "")]["fieldsV1"] == {
        "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:workflows.argoproj.io/creator": {}}},
        "f:spec": {},
    }
    assert entries[("workflow-controller", "")]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:workflows.argoproj.io/phase": {}}},
        "f:status": {},
    }
    assert entries[("argo", "")]["apiVersion"] == "argoproj.io/v1alpha1"


def test_in_process_writes_and_switching_off() -> None:
    store = ObjectStore()
    made = store.create("pods", pod("a", "ns"))
    assert [e["manager"] for e in made["metadata"]["managedFields"]] == ["sandbox"]
    patched = store.patch("pods", "ns", "a", {"metadata": {"labels": {"x": "1"}}}, manager="simulator")
    assert [e["manager"] for e in patched["metadata"]["managedFields"]] == ["sandbox", "simulator"]
    bare = ObjectStore(managed_fields=False)
    assert "managedFields" not in bare.create("pods", pod("a", "ns"))["metadata"]
    assert "managedFields" not in bare.patch("pods", "ns", "a", {"metadata": {"labels": {"x": "1"}}})[
        "metadata"]


@pytest.mark.parametrize(
    ("agent", "manager"),
    [("kubectl/v1.32.4 (linux/amd64) kubernetes/abc", "kubectl"), ("OpenAPI-Generator/37.0.2/python",
     "OpenAPI-Generator"), ("", ""), (None, ""), ("a\x00b/1", "ab"), ("x" * 200, "x" * 128)],
)
def test_manager_from_user_agent(agent: str | None, manager: str) -> None:
    assert manager_from_user_agent(agent) == manager


@pytest.mark.parametrize(
    "sent",
    ["nonsense", [{"manager": "x"}], [{"operation": "Update", "fieldsV1": {"f:a": 1}}],
     [{"operation": "Update", "manager": 7, "fieldsV1": {}}]],
)
def test_unreadable_sent_managed_fields_are_ignored(v1: client.CoreV1Api, sent: Any) -> None:
    """As upstream: what cannot be decoded is dropped and the stored entries are kept."""
    v1.create_namespaced_pod("ns", pod("a", "ns", {"app": "a"}))
    before = _raw_pod(v1, "a")["metadata"]["managedFields"]
    v1.patch_namespaced_pod("a", "ns", {"metadata": {"managedFields": sent, "labels": {"b": "1"}}},
                            field_manager="w", _content_type="application/merge-patch+json")
    after = _entries(_raw_pod(v1, "a"))
    assert after[("OpenAPI-Generator", "")] == before[0] and _labels_owned(after[("w", "")]) == {"b"}
