"""docs/deploy.md stays true: its sharding example renders as described, its metrics table
names metrics the controller exports, the paths it names exist."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from controller.metrics import Metrics
from tests.deploy import manifests
from tests.deploy.manifests import DEPLOY, REPO, one

DOC = (REPO / "docs" / "deploy.md").read_text()


def _block(marker: str) -> str:
    start = DOC.index(marker)
    return DOC[start : DOC.index("```", start)]


def _exported() -> set[str]:
    names = set()
    for line in Metrics().render().decode().splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name.removesuffix("_total") + "_total")
    return names


def test_sharding_example_renders_as_described(tmp_path: Path) -> None:
    shard = tmp_path / "shard-a"
    shard.mkdir()
    text = _block("# shard-a/kustomization.yaml").replace("<repo>", os.path.relpath(REPO, shard))
    (shard / "kustomization.yaml").write_text(text)
    objs = [d for d in yaml.safe_load_all(manifests.kustomize(shard)) if d]
    assert all(o["metadata"]["name"].endswith("-shard-a") for o in objs)
    dep = one(objs, "Deployment")
    env = manifests.container_env(objs)
    assert env["NAMESPACE_TO_WATCH"] == "team-a,team-b"
    lease = one(objs, "Role", "kfp-metadata-reconciler-leader-election-shard-a")
    assert (
        [env["KFPMR_LEASE_NAME"]] == lease["rules"][0]["resourceNames"] == ["kfp-metadata-reconciler-shard-a"]
    )
    assert one(objs, "RoleBinding")["roleRef"]["name"] == lease["metadata"]["name"]
    assert one(objs, "ClusterRoleBinding")["roleRef"]["name"] == one(objs, "ClusterRole")["metadata"]["name"]
    assert (
        dep["spec"]["template"]["spec"]["serviceAccountName"]
        == one(objs, "ServiceAccount")["metadata"]["name"]
    )
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/instance"] == "kfp-metadata-reconciler-shard-a"
    term = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    selectors = [
        dep["spec"]["selector"]["matchLabels"],
        one(objs, "Service")["spec"]["selector"],
        one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one(objs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        term["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"][
            "matchLabels"
        ],
    ]
    for selector in selectors:
        assert selector["app.kubernetes.io/instance"] == "kfp-metadata-reconciler-shard-a"
        assert selector.items() <= pod_labels.items()


def test_metrics_table_names_exported_metrics() -> None:
    exported = _exported()
    section = DOC[DOC.index("## What to watch") : DOC.index("**Alerts**")]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    table = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)", cell)}
    assert len(table) >= 10
    assert {f"kfp_metadata_reconciler_{n}" for n in table} <= exported
    process = set(re.findall(r"`((?:process|python)_[a-z_]+)`", section))
    assert process and process <= exported
    # The alerts are the PrometheusRule component's (tests/deploy/test_observability.py).
    assert "`deploy/components/prometheusrule` holds them" in DOC


def test_doc_names_the_real_paths() -> None:
    paths = set(re.findall(r"`(deploy/[\w./-]+)`", DOC))
    assert {f"deploy/components/{c}" for c in ("kfp-tls", "prometheusrule", "grafana-dashboard")} <= paths
    for path in paths:
        assert (REPO / path).exists(), path
    assert (DEPLOY / "Dockerfile.dockerignore").is_file()
