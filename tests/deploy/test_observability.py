"""Alerts and dashboard: valid for Prometheus, behave as docs/deploy.md says, and query only
metrics a running controller exposes; build_info says what runs."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller.metrics import Metrics
from tests import podfactory
from tests.controller.harness import Cluster, wait_until
from tests.deploy import manifests
from tests.deploy.controller_process import start_controller
from tests.deploy.manifests import DEPLOY, REPO, Obj, one

COMPONENTS = DEPLOY / "components"
DASHBOARD = COMPONENTS / "grafana-dashboard" / "kfp-metadata-reconciler.json"
DOC = (REPO / "docs" / "deploy.md").read_text()
METRIC = re.compile(r"\b(kfp_metadata_reconciler_\w+|process_\w+|python_\w+)\b")
# Grafana's variables, replaced by what Prometheus would be sent.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def _rule_groups() -> list[Obj]:
    rule = yaml.safe_load((COMPONENTS / "prometheusrule" / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return rule["spec"]["groups"]


def _alerts() -> list[Obj]:
    return [r for group in _rule_groups() for r in group["rules"]]


def _dashboard() -> Obj:
    return json.loads(DASHBOARD.read_text())


def _panel_queries() -> dict[str, str]:
    """Every PromQL query of the dashboard by ``<panel title>/<refId>``, and its variables'."""
    queries = {}
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            queries[f"{panel['title']}/{target['refId']}"] = target["expr"]
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries[f"${variable['name']}"] = variable["query"]["query"]
    return queries


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(manifests.promtool()), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


# ------------------------------------------------------------ alerts


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups()}))
    checked = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_the_rule_check_is_live(tmp_path: Path) -> None:
    groups = _rule_groups()
    groups[0]["rules"][0]["expr"] = "time() - max by (job (kfp_metadata_reconciler_is_leader)"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    assert _promtool("check", "rules", "rules.yaml", cwd=tmp_path).returncode != 0


def _expanded(rule: Obj, labels: dict[str, str]) -> dict[str, str]:
    """The rule's annotations with ``{{ $labels.x }}`` filled in, as Prometheus renders them."""
    return {
        k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), v)
        for k, v in rule["annotations"].items()
    }


def _expect(alert: str, at: str, labels: dict[str, str] | None) -> Obj:
    """A promtool alert test: ``alert`` fires at ``at`` with ``labels`` (None: it does not)."""
    if labels is None:
        return {"eval_time": at, "alertname": alert, "exp_alerts": []}
    rule = next(r for r in _alerts() if r["alert"] == alert)
    full = {**labels, **rule["labels"]}
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": full, "exp_annotations": _expanded(rule, full)}],
    }


def test_each_alert_fires_when_it_should_and_only_then(tmp_path: Path) -> None:
    p = "kfp_metadata_reconciler_"
    target = 'job="kfp-metadata-reconciler-metrics",namespace="kubeflow"'
    where = {"job": "kfp-metadata-reconciler-metrics", "namespace": "kubeflow"}

    def series(name: str, values: str, **labels: str) -> Obj:
        extra = "".join(f',{k}="{v}"' for k, v in labels.items())
        return {"series": f"{p}{name}{{{target}{extra}}}", "values": values}

    tests = [
        {  # healthy: one leader, passes succeed every minute, no errors
            "interval": "1m",
            "input_series": [
                series("is_leader", "1x60", pod="a"),
                series("is_leader", "0x60", pod="b"),
                series("last_success_timestamp_seconds", "0+60x60", pod="a"),
                series("last_success_timestamp_seconds", "0x60", pod="b"),
                series("reconcile_errors_total", "3x60", pod="a", reason="malformed_annotation"),
                series("passes_total", "0+1x60", pod="a", trigger="resync", result="success"),
                series("passes_total", "0x60", pod="a", trigger="resync", result="failed"),
            ],
            "alert_rule_test": [_expect(a["alert"], "50m", None) for a in _alerts()],
        },
        {  # no leader, no success since the start, errors and failed passes all along
            "interval": "1m",
            "input_series": [
                series("is_leader", "0x60", pod="a"),
                series("is_leader", "0x60", pod="b"),
                series("last_success_timestamp_seconds", "0x60", pod="a"),
                series("reconcile_errors_total", "0+2x60", pod="a", reason="pass_StoreUnavailableError"),
                series("passes_total", "0+1x60", pod="a", trigger="resync", result="failed"),
                series("passes_total", "0x60", pod="a", trigger="resync", result="success"),
            ],
            "alert_rule_test": [
                _expect("KfpMetadataReconcilerNoLeader", "4m", None),
                _expect("KfpMetadataReconcilerNoLeader", "10m", where),
                _expect("KfpMetadataReconcilerNoSuccessfulPass", "14m", None),  # 600 s, then 5m pending
                _expect("KfpMetadataReconcilerNoSuccessfulPass", "20m", where),
                _expect("KfpMetadataReconcilerPassesFailing", "10m", None),
                _expect("KfpMetadataReconcilerPassesFailing", "20m", where),
                _expect("KfpMetadataReconcilerErrors", "20m", None),
                _expect(
                    "KfpMetadataReconcilerErrors", "45m", {**where, "reason": "pass_StoreUnavailableError"}
                ),
            ],
        },
        {  # nothing scraped at all: absent() still raises NoLeader
            "interval": "1m",
            "input_series": [{"series": 'up{job="other"}', "values": "1x20"}],
            "alert_rule_test": [_expect("KfpMetadataReconcilerNoLeader", "10m", {})],
        },
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": _rule_groups()}))
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    tested = _promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_docs_alert_table_is_the_rule_file() -> None:
    section = DOC[DOC.index("**Alerts**") : DOC.index("**Dashboard**")]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    documented = {cells[0].strip(" `"): (cells[2].strip(), cells[3].strip()) for cells in rows}
    assert documented == {a["alert"]: (a["for"], a["labels"]["severity"]) for a in _alerts()}


# ------------------------------------------------------------ dashboard


def test_the_dashboard_configmap(tmp_path: Path) -> None:
    objs = manifests.render(
        manifests.write_kustomization(
            tmp_path, [DEPLOY / "overlays" / "standalone"], [COMPONENTS / "grafana-dashboard"]
        )
    )
    configmap = one(objs, "ConfigMap", "kfp-metadata-reconciler-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == manifests.deployment(objs)["metadata"]["namespace"]
    assert json.loads(configmap["data"]["kfp-metadata-reconciler.json"]) == _dashboard()
    dashboard = _dashboard()
    assert dashboard["uid"] == "kfp-metadata-reconciler"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_dashboard_shows_what_issue_14_asks_for() -> None:
    used = {m for q in _panel_queries().values() for m in METRIC.findall(q)}
    p = "kfp_metadata_reconciler_"
    wanted = {
        f"{p}pass_duration_seconds_bucket",  # pass duration
        f"{p}pods_seen_total",
        f"{p}pods_skipped_total",
        f"{p}pods_unchanged_total",
        f"{p}actions_total",  # MLMD writes by kind
        f"{p}reconcile_errors_total",  # errors by reason
        f"{p}pending_inputs",  # backlog
        f"{p}pending_outputs",
        f"{p}is_leader",  # leadership
    }
    assert wanted <= used, wanted - used
    by_kind = [q for q in _panel_queries().values() if f"{p}actions_total" in q]
    assert any("by (kind)" in q for q in by_kind)
    by_reason = [q for q in _panel_queries().values() if f"{p}reconcile_errors_total" in q]
    assert any("by (reason)" in q for q in by_reason)


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    rules = []
    for i, query in enumerate(_panel_queries().values()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        if query.startswith("label_values("):  # Grafana's own function: check its metric alone
            query = query.removeprefix("label_values(").split(",")[0]
        assert "$" not in query, query
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    (tmp_path / "queries.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    checked = _promtool("check", "rules", "queries.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ------------------------------------------------------------ against a running controller


def _exposed(text: str) -> set[str]:
    """Every series name the exposition can carry, also of labelled metrics without a child yet."""
    names = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def _seed_pods(cluster: Cluster) -> None:
    """Two KFP runs and one broken pod, as Argo 3.3 leaves them (outputs on the pod)."""
    for workflow in ("wf-metrics-a", "wf-metrics-b"):
        for pod in podfactory.pods_of(podfactory.chain(workflow, 3), profile="3.3"):
            cluster.api.store.create("pods", pod)
    (bad,) = podfactory.pods_of(podfactory.chain("wf-metrics-bad", 1), profile="3.3")
    bad["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"] = "{broken"
    cluster.api.store.create("pods", bad)


def _sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    return None


def test_every_queried_metric_is_one_a_running_controller_exposes(cluster: Cluster, tmp_path: Path) -> None:
    _seed_pods(cluster)
    env = manifests.container_env(manifests.objects("kfp-dropin"))
    env.update(
        KFPMR_KUBECONFIG=str(cluster.kubeconfig),
        KFPMR_MLMD_URL=cluster.mlmd.url,
        KFPMR_HEALTH_PORT="0",
        KFPMR_RESYNC_INTERVAL_S="1",
        KFPMR_RESYNC_JITTER_S="0",
        KFPMR_LEASE_DURATION_S="3",
        KFPMR_RENEW_DEADLINE_S="2",
        KFPMR_RETRY_PERIOD_S="0.2",
    )
    controller = start_controller(env, tmp_path)
    p = "kfp_metadata_reconciler_"

    def scraped_after_passes() -> str | None:
        status, text = controller.get("/metrics")
        assert status == 200
        done = (_sample(text, f"{p}passes_total", trigger="resync", result="partial") or 0) >= 2
        return text if done and _sample(text, f"{p}is_leader") == 1 else None

    try:
        text = wait_until(scraped_after_passes, 60, "two full passes by the leader")
    finally:
        err = controller.stop()
    assert controller.proc.returncode == 0, err[-3000:]
    exposed = _exposed(text)
    # What the passes did shows up (so the names below are not just declared).
    assert _sample(text, f"{p}pods_seen_total") >= 7
    assert _sample(text, f"{p}actions_total", kind="execution.create") == 6
    assert _sample(text, f"{p}reconcile_errors_total", reason="malformed_annotation") >= 1
    assert _sample(text, f"{p}build_info", version=metadata.version("kfp-metadata-reconciler")) == 1
    assert _sample(text, "process_resident_memory_bytes") > 0
    queried: dict[str, set[str]] = {}
    for where, query in _panel_queries().items():
        queried.setdefault(f"panel {where}", set()).update(METRIC.findall(query))
    for alert in _alerts():
        queried.setdefault(f"alert {alert['alert']}", set()).update(METRIC.findall(alert["expr"]))
    assert all(queried.values()), [k for k, v in queried.items() if not v]
    unknown = {where: names - exposed for where, names in queried.items() if names - exposed}
    assert not unknown, unknown


def test_build_info_names_the_running_versions() -> None:
    families = {f.name: f for f in text_string_to_metric_families(Metrics().render().decode())}
    (sample,) = families["kfp_metadata_reconciler_build_info"].samples
    expected: dict[str, Any] = {
        "version": metadata.version("kfp-metadata-reconciler"),
        "python": platform.python_version(),
        "ml_metadata": metadata.version("ml-metadata"),
    }
    assert sample.labels == expected and sample.value == 1
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert families["process_start_time_seconds"].samples[0].value > 0
    assert {s.labels["implementation"] for s in families["python_info"].samples} == {"CPython"}


@pytest.mark.parametrize("component", ["prometheusrule", "grafana-dashboard", "servicemonitor"])
def test_monitoring_components_land_beside_the_deployment(tmp_path: Path, component: str) -> None:
    for overlay in ("kfp-dropin", "standalone", "multi-user"):
        objs = manifests.render(
            manifests.write_kustomization(
                tmp_path / overlay, [DEPLOY / "overlays" / overlay], [COMPONENTS / component]
            )
        )
        own = manifests.deployment(objs)["metadata"]["namespace"]
        added = [o for o in objs if o["kind"] in ("PrometheusRule", "ConfigMap", "ServiceMonitor")]
        assert len(added) == 1 and added[0]["metadata"]["namespace"] == own, (overlay, added)
        assert added[0]["metadata"]["labels"]["app.kubernetes.io/name"] == "kfp-metadata-reconciler"
