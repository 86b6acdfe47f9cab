"""deploy/ renders with kustomize (current and Debian's v2.0.3) into valid, hardened objects."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, OVERLAYS, Obj, deployment, find, one

SCHEMA_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
SA = "kfp-metadata-reconciler"
WORKLOAD_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "list"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["kfp-metadata-reconciler"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
]


def _version(binary: Path) -> str:
    out = subprocess.run([str(binary), "version", "--client"], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def _normalized(objs: list[Obj]) -> dict[tuple[str, str, str], Obj]:
    """Objects by (kind, namespace, name); container env as a mapping (its order differs
    between kustomize versions and carries no meaning: no $(VAR) references are used)."""
    out = {}
    for o in copy.deepcopy(objs):
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert not any("$(" in str(v.get("value", "")) for v in c.get("env", []))
            c["env"] = {v["name"]: v for v in c.get("env", [])}
        out[(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])] = o
    return out


def test_the_tools_are_the_ones_meant() -> None:
    assert "Kustomize Version: v5." in _version(manifests.kubectl())
    assert 'GitVersion:"v1.20.' in _version(manifests.legacy_kubectl())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_same_with_kustomize_v5_and_v2(overlay: str) -> None:
    current = _normalized(manifests.objects(overlay))
    legacy = _normalized(manifests.objects(overlay, legacy=True))
    assert sorted(current) == sorted(legacy)
    assert current == legacy
    kinds = sorted(k for k, _, _ in current)
    assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= set(kinds)


def test_base_renders() -> None:
    objs = [d for d in yaml.safe_load_all(manifests.rendered_text("base")) if d]
    assert {o["kind"] for o in objs} == {
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_kubernetes_schemas(overlay: str) -> None:
    for obj in manifests.objects(overlay):
        for version in SCHEMA_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_schema_check_is_live() -> None:
    dep = deployment(manifests.objects("kfp-dropin"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, SCHEMA_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_servicemonitor_component_scrapes_the_metrics_service(tmp_path: Path, overlay: str) -> None:
    # No `namespace:` in the installer's kustomization: the component finds the namespace itself.
    objs = manifests.render(
        manifests.write_kustomization(
            tmp_path, [DEPLOY / "overlays" / overlay], [DEPLOY / "components" / "servicemonitor"]
        )
    )
    monitor, service = one(objs, "ServiceMonitor"), one(objs, "Service")
    # No offline schema exists for this CRD (kubernetes-validate ships core APIs only), so
    # check what makes it work: same namespace, selector matches, the port exists.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(monitor, SCHEMA_VERSIONS[0], strict=True)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    own = deployment(objs)["metadata"]["namespace"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"] == own
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"


def test_components_need_current_kustomize(tmp_path: Path) -> None:
    """As docs/deploy.md says: kustomize v2.0.3 (kubectl <= 1.20) cannot use Components."""
    installed = manifests.write_kustomization(
        tmp_path, [DEPLOY / "overlays" / "kfp-dropin"], [DEPLOY / "components" / "servicemonitor"]
    )
    assert one(manifests.render(installed), "ServiceMonitor")
    with pytest.raises(AssertionError):
        manifests.kustomize(installed, manifests.legacy_kubectl())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_standard_labels_everywhere(overlay: str) -> None:
    for o in manifests.objects(overlay):
        labels = o["metadata"].get("labels") or {}
        wanted = LABELS if o["kind"] != "Namespace" else LABELS[:1]
        assert all(labels.get(k) for k in wanted), (o["kind"], o["metadata"]["name"], labels)
    pod_labels = deployment(manifests.objects(overlay))["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) for k in LABELS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_hardened(overlay: str) -> None:
    objs = manifests.objects(overlay)
    dep = deployment(objs)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] == 10001
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}
    assert all("emptyDir" in v for v in pod["volumes"])
    assert pod["automountServiceAccountToken"] is True and pod["enableServiceLinks"] is False
    assert one(objs, "ServiceAccount", SA)["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == SA
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
    assert "command" not in c  # the image's ENTRYPOINT runs
    pdb = one(objs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    selector = spec["selector"]["matchLabels"]
    for obj, sel in [
        (pdb, pdb["spec"]["selector"]["matchLabels"]),
        (one(objs, "Service"), one(objs, "Service")["spec"]["selector"]),
        (one(objs, "NetworkPolicy"), one(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]),
    ]:
        assert sel == selector, obj["kind"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    service = one(objs, "Service")
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


def _rules(obj: Obj) -> list[dict[str, Any]]:
    return obj["rules"]


def _subjects_ok(binding: Obj, namespace: str) -> None:
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": namespace}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_grants_exactly_what_the_code_uses(overlay: str) -> None:
    objs = manifests.objects(overlay)
    own = deployment(objs)["metadata"]["namespace"]
    everything = [r for o in objs if o["kind"] in ("Role", "ClusterRole") for r in o["rules"]]
    for rule in everything:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert not {"secrets", "configmaps"} & set(rule["resources"])
    lease = one(objs, "Role", "kfp-metadata-reconciler-leader-election")
    assert lease["metadata"]["namespace"] == own and _rules(lease) == LEASE_RULES
    _subjects_ok(one(objs, "RoleBinding", "kfp-metadata-reconciler-leader-election"), own)
    if overlay == "multi-user":
        assert not find(objs, "Role", "kfp-metadata-reconciler")
        assert _rules(one(objs, "ClusterRole", "kfp-metadata-reconciler")) == WORKLOAD_RULES
        _subjects_ok(one(objs, "ClusterRoleBinding", "kfp-metadata-reconciler"), own)
        return
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")
    watched = "kubeflow"
    role = one(objs, "Role", "kfp-metadata-reconciler")
    binding = one(objs, "RoleBinding", "kfp-metadata-reconciler")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == watched
    assert _rules(role) == WORKLOAD_RULES
    _subjects_ok(binding, own)


def test_namespaces_per_overlay() -> None:
    def namespaces(overlay: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for o in manifests.objects(overlay):
            if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                out.setdefault(o["metadata"]["namespace"], set()).add(o["kind"])
        return out

    assert namespaces("kfp-dropin") == {
        "kubeflow": {
            "ServiceAccount",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
        }
    }
    assert namespaces("multi-user")["kubeflow"] >= {"Deployment", "Role", "RoleBinding"}
    standalone = namespaces("standalone")
    assert standalone["kubeflow"] == {"Role", "RoleBinding"}
    assert "Deployment" in standalone["kfp-metadata-reconciler"]
    ns = one(manifests.objects("standalone"), "Namespace", "kfp-metadata-reconciler")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_checkov_suppressions_carry_reasons() -> None:
    annotations = deployment(manifests.objects("kfp-dropin"))["metadata"]["annotations"]
    skips = {k: v for k, v in annotations.items() if k.startswith("checkov.io/skip")}
    assert skips
    for value in skips.values():
        assert re.fullmatch(r"CKV2?_K8S_\d+=\S.{20,}", value), value
