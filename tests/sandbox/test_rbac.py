"""Optional RBAC: rules loaded from (kustomize-style) YAML, enforced per bearer token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from sandbox.apiserver import ApiServer

from .conftest import make_client, pod

RBAC_YAML = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reconciler
  namespace: kubeflow
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reconciler
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, patch]
- apiGroups: [argoproj.io]
  resources: [workflows]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reconciler-lease
  namespace: kubeflow
rules:
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, update]
  resourceNames: [metadata-reconciler]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: reconciler
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reconciler}
subjects:
- {kind: ServiceAccount, name: reconciler, namespace: kubeflow}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reconciler-lease
  namespace: kubeflow
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reconciler-lease}
subjects:
- {kind: ServiceAccount, name: reconciler, namespace: kubeflow}
"""

SA = "system:serviceaccount:kubeflow:reconciler"


def _forbidden(call) -> dict:  # type: ignore[no-untyped-def]
    with pytest.raises(client.ApiException) as exc:
        call()
    assert exc.value.status == 403
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status" and body["reason"] == "Forbidden" and body["code"] == 403
    return body


def test_rbac_allows_and_forbids(api: ApiServer, tmp_path: Path, v1: client.CoreV1Api) -> None:
    (tmp_path / "rbac.yaml").write_text(RBAC_YAML)
    assert api.load_rbac(tmp_path / "rbac.yaml") == 4  # the ServiceAccount is skipped
    v1.create_namespaced_pod("kubeflow", pod("p", "kubeflow"))  # admin bypasses RBAC
    sa_client = make_client(api.write_kubeconfig(tmp_path / "sa", user=SA, namespace="kubeflow"))
    sa = client.CoreV1Api(sa_client)
    custom = client.CustomObjectsApi(sa_client)
    coord = client.CoordinationV1Api(sa_client)

    # allowed
    assert [p.metadata.name for p in sa.list_pod_for_all_namespaces().items] == ["p"]
    assert sa.patch_namespaced_pod("p", "kubeflow", {"metadata": {"labels": {"x": "1"}}})
    custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "kubeflow", "workflows")
    sa.create_namespaced_event("kubeflow", {"metadata": {"name": "e"}, "reason": "R",
                                            "involvedObject": {"kind": "Pod", "name": "p"}})
    coord.create_namespaced_lease("kubeflow", {"metadata": {"name": "metadata-reconciler"},
                                               "spec": {"holderIdentity": "me"}})
    lease = coord.read_namespaced_lease("metadata-reconciler", "kubeflow")
    coord.replace_namespaced_lease("metadata-reconciler", "kubeflow", lease)

    # forbidden: verbs, subresources, groups, resourceNames, namespaces
    body = _forbidden(lambda: sa.delete_namespaced_pod("p", "kubeflow"))
    assert body["message"] == (
        f'pods "p" is forbidden: User "{SA}" cannot delete resource "pods" in API group "" '
        'in the namespace "kubeflow"')
    assert body["details"] == {"name": "p", "kind": "pods"}
    _forbidden(lambda: sa.patch_namespaced_pod_status("p", "kubeflow",
                                                      {"status": {"phase": "Failed"}}))
    _forbidden(lambda: custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", "kubeflow", "workflowtaskresults",
        {"metadata": {"name": "r"}}))
    _forbidden(lambda: coord.read_namespaced_lease("other", "kubeflow"))
    _forbidden(lambda: coord.create_namespaced_lease("default", {"metadata": {"name": "x"}}))
    _forbidden(lambda: sa.list_namespaced_config_map("kubeflow"))

    denied = api.denied
    assert [(d["verb"], d["resource"], d["subresource"]) for d in denied] == [
        ("delete", "pods", ""), ("patch", "pods", "status"), ("create", "workflowtaskresults", ""),
        ("get", "leases", ""), ("create", "leases", ""), ("list", "configmaps", "")]
    assert all(d["user"] == SA for d in denied)

    # a caller with no binding gets nothing; discovery stays open
    other = client.CoreV1Api(make_client(api.write_kubeconfig(tmp_path / "o", user="mallory")))
    _forbidden(lambda: other.list_namespaced_pod("kubeflow"))
    assert other.get_api_resources().resources
    sa_client.close()

    api.clear_rbac()
    assert other.list_namespaced_pod("kubeflow").items


def test_rules_without_bindings_apply_to_everyone(api: ApiServer, tmp_path: Path) -> None:
    api.load_rbac(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n"
        "rules:\n- {apiGroups: ['*'], resources: ['pods', 'pods/*'], verbs: ['get', 'list']}\n")
    v1 = client.CoreV1Api(make_client(api.write_kubeconfig(tmp_path / "k", user="anyone")))
    assert v1.list_namespaced_pod("default").items == []
    _forbidden(lambda: v1.create_namespaced_pod("default", pod("p")))
    assert api.denied[-1]["verb"] == "create"
