"""Least privilege, proven: the controller, run with the rendered RBAC enforced, makes only
allowed requests, uses every right it is given, and breaks when one is taken away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from sandbox import pipelines
from sandbox.faults import RequestInfo
from sandbox.simulator import Simulator
from store.connect import open_store
from tests.controller.harness import Cluster, duplicate_counts, wait_until
from tests.deploy import manifests
from tests.deploy.manifests import OVERLAYS, Obj
from tests.deploy.rbac import controller_env, restricted_kubeconfig

KFP = "pipelines.kubeflow.org/"
EXECUTION_ID = KFP + "metadata_execution_id"
BAD = {"metadata": {"annotations": {KFP + "component_spec": "{bad"}}}

# Namespaces with KFP runs per overlay; "elsewhere" is one the controller must not touch.
RUNS = {
    "standalone": {"kubeflow": "two_step", "elsewhere": "two_step"},
    "kfp-dropin": {"kubeflow": "two_step", "elsewhere": "two_step"},
    "multi-user": {"kubeflow": "two_step", "team-a": "fan_out_fan_in"},
}
WATCHED = {"standalone": {"kubeflow"}, "kfp-dropin": {"kubeflow"}, "multi-user": {"kubeflow", "team-a"}}


def _start(env: dict[str, str], ready: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("KFPMR_") and k not in env}
    for alias in ("KUBECONFIG", "HOSTNAME", "NAMESPACE_TO_WATCH", "POD_NAME", "POD_NAMESPACE"):
        base.pop(alias, None)
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--ready-file", str(ready)],
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _env(overlay: str, cluster: Cluster, kubeconfig: Path) -> dict[str, str]:
    return controller_env(
        overlay,
        KFPMR_KUBECONFIG=str(kubeconfig),
        KFPMR_MLMD_URL=cluster.mlmd.url,  # wins over the manifests' METADATA_GRPC_SERVICE_HOST
        KFPMR_HEALTH_PORT="0",
        KFPMR_RESYNC_INTERVAL_S="1",
        KFPMR_RESYNC_JITTER_S="0",
        KFPMR_DEBOUNCE_S="0.05",
        KFPMR_EVENT_INTERVAL_S="0.5",
        KFPMR_LEASE_DURATION_S="3",
        KFPMR_RENEW_DEADLINE_S="2",
        KFPMR_RETRY_PERIOD_S="0.2",
        KFPMR_LOG_LEVEL="WARNING",
    )


def _pods(cluster: Cluster, namespaces: set[str]) -> list[Obj]:
    return [p for p in cluster.api.store.list("pods") if p["metadata"]["namespace"] in namespaces]


def _recorded(cluster: Cluster, watched: set[str], skip: str) -> bool:
    """Every pod of the ``watched`` namespaces but ``skip`` is labelled with its own execution."""
    executions = {e.id: e for e in open_store(cluster.mlmd.url).get_executions()}
    pods = [p for p in _pods(cluster, watched) if p["metadata"]["name"] != skip]
    for pod in pods:
        label = (pod["metadata"].get("labels") or {}).get(EXECUTION_ID)
        execution = executions.get(int(label)) if label and label.isdigit() else None
        if (
            execution is None
            or execution.custom_properties["kfp_pod_name"].string_value != pod["metadata"]["name"]
        ):
            return False
    return bool(pods)


def _event_count(cluster: Cluster, pod: Obj) -> int:
    name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    events = [
        e
        for e in cluster.api.store.list("events")
        if e["involvedObject"]["name"] == name and e["metadata"]["namespace"] == ns
    ]
    return max((int(e.get("count") or 1) for e in events), default=0)


def _submit(cluster: Cluster, overlay: str) -> Simulator:
    sim = Simulator(cluster.api.store, "3.5", seed=31)
    for namespace, pipeline in RUNS[overlay].items():
        sim.submit(pipelines.load(pipeline), namespace)
    sim.run_until_complete()
    return sim


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_controller_runs_on_exactly_the_rendered_rbac(
    cluster: Cluster, tmp_path: Path, overlay: str
) -> None:
    objs = manifests.objects(overlay)
    own = manifests.deployment(objs)["metadata"]["namespace"]
    kubeconfig = restricted_kubeconfig(cluster.api, tmp_path / "sa.kubeconfig", overlay)
    sim = _submit(cluster, overlay)
    victim = _pods(cluster, {"kubeflow"})[0]
    cluster.api.store.patch("pods", "kubeflow", victim["metadata"]["name"], BAD)
    env = _env(overlay, cluster, kubeconfig)
    cluster.api.reset_counts()
    proc = _start(env, tmp_path / "ready")
    err = ""
    try:
        wait_until(lambda: (tmp_path / "ready").exists() or proc.poll() is not None, 30, "the controller")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        wait_until(
            lambda: _recorded(cluster, WATCHED[overlay], victim["metadata"]["name"]), 30, "the runs recorded"
        )
        # A run while it watches: the watch triggers a targeted pass (get workflows).
        sim.submit(pipelines.load("two_step"), "kubeflow", name="late-run")
        sim.run(pace_s=0.02, background=True, stop_when_idle=True)
        wait_until(lambda: not sim.active, 30, "the late run to finish")
        wait_until(lambda: cluster.api.count("get", "workflows") > 0, 20, "a targeted pass")
        wait_until(
            lambda: _recorded(cluster, WATCHED[overlay], victim["metadata"]["name"]),
            30,
            "the late run recorded",
        )
        # The bad pod: an Event, and later the same Event patched (count 2).
        wait_until(lambda: _event_count(cluster, victim) >= 2, 20, "the Event created and patched")
        lease = cluster.api.store.get("leases", own, "kfp-metadata-reconciler")
        assert lease["spec"]["holderIdentity"] == env["POD_NAME"]
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err[-3000:]
    assert cluster.api.denied == [], cluster.api.denied
    used = {(verb, resource) for verb, resource in cluster.api.request_counts()}
    assert used == manifests.granted(objs), (
        f"used but not granted: {used - manifests.granted(objs)}; "
        f"granted but never used: {manifests.granted(objs) - used}"
    )
    assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    # The lease was handed back on SIGTERM (an update, allowed by resourceNames).
    assert not cluster.api.store.get("leases", own, "kfp-metadata-reconciler")["spec"].get("holderIdentity")
    for pod in _pods(cluster, set(RUNS[overlay]) - WATCHED[overlay]):
        assert EXECUTION_ID not in (pod["metadata"].get("labels") or {}), "a pod outside its namespaces"


def _drop_pod_patch(objs: list[Obj]) -> None:
    for obj in objs:
        for rule in obj.get("rules") or []:
            if "pods" in rule["resources"]:
                rule["verbs"].remove("patch")


def test_a_removed_rule_gets_requests_denied(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = restricted_kubeconfig(cluster.api, tmp_path / "sa.kubeconfig", "kfp-dropin", _drop_pod_patch)
    sim = Simulator(cluster.api.store, "3.5", seed=32)
    sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.run_until_complete()
    proc = _start(_env("kfp-dropin", cluster, kubeconfig), tmp_path / "ready")
    try:
        wait_until(
            lambda: any(d["verb"] == "patch" and d["resource"] == "pods" for d in cluster.api.denied),
            30,
            "the pod patch to be denied",
        )
    finally:
        _stop(proc)
    denied = {(d["verb"], d["resource"], d["namespace"]) for d in cluster.api.denied}
    assert denied == {("patch", "pods", "kubeflow")}
    assert all(EXECUTION_ID not in (p["metadata"].get("labels") or {}) for p in _pods(cluster, {"kubeflow"}))


@pytest.mark.parametrize("overlay", ["standalone", "multi-user"])
def test_requests_outside_the_rules_are_denied(cluster: Cluster, tmp_path: Path, overlay: str) -> None:
    kubeconfig = restricted_kubeconfig(cluster.api, tmp_path / "sa.kubeconfig", overlay)
    api_client = config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api_client)
    coordination = client.CoordinationV1Api(api_client)
    own = manifests.deployment(manifests.objects(overlay))["metadata"]["namespace"]
    attempts: list[tuple[str, Any]] = [
        ("read a configmap", lambda: core.read_namespaced_config_map("pipeline-install-config", "kubeflow")),
        ("delete a pod", lambda: core.delete_namespaced_pod("p", "kubeflow")),
        ("read a pod", lambda: core.read_namespaced_pod("p", "kubeflow")),
        ("another lease", lambda: coordination.read_namespaced_lease("someone-else", own)),
        ("delete our lease", lambda: coordination.delete_namespaced_lease("kfp-metadata-reconciler", own)),
    ]
    if overlay == "standalone":
        attempts += [
            ("pods in another namespace", lambda: core.list_namespaced_pod("elsewhere")),
            ("pods everywhere", lambda: core.list_pod_for_all_namespaces()),
            ("pods in its own namespace", lambda: core.list_namespaced_pod(own)),
        ]
    for what, call in attempts:
        with pytest.raises(client.ApiException) as exc:
            call()
        assert exc.value.status == 403, what
    assert len(cluster.api.denied) == len(attempts)
    # Secrets: the emulator serves no secrets (it answers 404 before authorizing), so ask
    # its authorizer directly, with the same loaded rules and the same user.
    user = manifests.service_account_user(manifests.objects(overlay))
    for verb, namespace, name in [
        ("get", "kubeflow", "mlpipeline-minio-artifact"),
        ("list", "kubeflow", None),
        ("list", None, None),
        ("watch", own, None),
    ]:
        info = RequestInfo(verb, "secrets", namespace=namespace, name=name)
        assert not cluster.api.rbac.authorize(user, info).allowed, (verb, namespace)
    # ...while what it needs goes through with the same credentials.
    core.list_namespaced_pod("kubeflow")
    assert cluster.api.rbac.authorize(user, RequestInfo("list", "pods", namespace="kubeflow")).allowed
    api_client.close()
