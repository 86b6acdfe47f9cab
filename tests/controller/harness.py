"""A stand-in cluster plus the controller, for end-to-end tests.

The API emulator (real HTTP, real `kubernetes` client), the Argo/KFP v1
simulator, and MLMD behind the project's gRPC server (so MLMD writes can be
counted and the server stopped and started) or an old MLMD server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.health import Readiness
from controller.kube import KubeClient, api_client_from
from controller.loop import Controller
from controller.metrics import Metrics
from controller.reconcile_pass import Chunk, run_pass
from controller.settings import Settings
from reconcile.argo import workflow_nodes
from reconcile.from_workflow import desired_steps_from_workflow
from reconcile.options import ReconcileOptions
from sandbox.apiserver import ApiServer
from sandbox.mlmd_legacy import MlmdServer
from store.connect import open_store
from store.metadata import MetadataStore
from store.server import MetadataServer
from tests.mlmd_snapshot import snapshot

KFP = "pipelines.kubeflow.org/"


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Cluster:
    api: ApiServer
    mlmd: MetadataServer | MlmdServer
    kubeconfig: Path
    workdir: Path
    # False behind an MLMD without external ids (1.0.0, 1.5.0): run contexts carry no key
    # there (found by name), so snapshots are compared without the contexts' external_id.
    context_keys: bool = True

    def comparable(self, picture: dict[str, Any]) -> dict[str, Any]:
        """A snapshot as this cluster's MLMD can hold it."""
        if self.context_keys:
            return picture
        contexts = sorted((t, name, None, props) for t, name, _, props in picture["contexts"])
        return {**picture, "contexts": contexts}

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kubeconfig": str(self.kubeconfig),
            "mlmd_url": self.mlmd.url,
            "resync_interval_s": 2.0,
            "resync_jitter_s": 0.0,
            "debounce_s": 0.05,
            "leader_election": False,
            "health_port": 0,
            "event_interval_s": 600.0,
            "watch_timeout_s": 30,
        }
        values.update(overrides)
        return Settings(**values)

    def controller(self, **overrides: Any) -> Controller:
        settings = self.settings(**overrides)
        kube = KubeClient(api_client_from(settings.kubeconfig), event_interval_s=settings.event_interval_s)
        return Controller(settings, kube, Metrics(), Readiness())

    def state(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        store = self.api.store
        return store.list("pods"), store.list("workflows"), store.list("workflowtaskresults")

    def expected_snapshot(self) -> dict[str, Any]:
        """MLMD as one `reconcile` pass over the cluster's current state would write it."""
        pods, workflows, results = self.state()
        target = open_store(f"sqlite:///{self.workdir}/expected-{time.monotonic_ns()}.sqlite")
        nodes, podless = {}, []
        present = {
            (
                p["metadata"]["namespace"],
                p["metadata"]["annotations"].get("workflows.argoproj.io/node-id", p["metadata"]["name"]),
            )
            for p in pods
        }
        for wf in workflows:
            ns = wf["metadata"]["namespace"]
            wf_nodes = workflow_nodes(wf)
            nodes.update({(ns, k): v for k, v in wf_nodes.items()})
            steps, _ = desired_steps_from_workflow(
                wf, ReconcileOptions(), exclude_node_ids={k for k in wf_nodes if (ns, k) in present}
            )
            podless += steps
        taskresults = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in results}
        run_pass([Chunk(pods, taskresults, nodes, podless)], MetadataStore.over(target), ReconcileOptions())
        return self.comparable(snapshot(target))

    def actual_snapshot(self) -> dict[str, Any]:
        return self.comparable(snapshot(open_store(self.mlmd.url)))

    def labels_correct(self) -> bool:
        """Every recorded pod's execution-id label names the execution carrying its key."""
        store = open_store(self.mlmd.url)
        by_pod = {e.custom_properties["kfp_pod_name"].string_value: e.id for e in store.get_executions()}
        pods = self.api.store.list("pods")
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            if labels.get(KFP + "reused_from_cache") == "true":
                continue
            if labels.get(KFP + "metadata_execution_id") != str(by_pod.get(pod["metadata"]["name"])):
                return False
        return True


def duplicate_counts(url: str) -> dict[str, int]:
    """Records that exist more than once for one step, output or event (must all be 0)."""
    store = open_store(url)
    executions = store.get_executions()
    per_pod: dict[str, int] = {}
    for e in executions:
        key = e.external_id or e.custom_properties["kfp_pod_name"].string_value
        per_pod[key] = per_pod.get(key, 0) + 1
    artifacts = store.get_artifacts()
    per_artifact: dict[str, int] = {}
    for a in artifacts:
        per_artifact[a.external_id or a.uri] = per_artifact.get(a.external_id or a.uri, 0) + 1
    events = store.get_events_by_execution_ids([e.id for e in executions])
    keys = [(e.execution_id, e.type, e.path.steps[0].key if e.path.steps else "") for e in events]
    return {
        "executions": sum(n - 1 for n in per_pod.values()),
        "artifacts": sum(n - 1 for n in per_artifact.values()),
        "events": len(keys) - len(set(keys)),
    }


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)[:4000]
