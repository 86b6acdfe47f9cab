"""A benchmark rig: the emulator process, MLMD, and a Controller wired as the Deployment runs it."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.cluster import EmulatorProcess
from bench.common import MYSQL_URL, CountingStore, TimedKube, cpu_s
from controller.gc_pause import paused_gc
from controller.health import Readiness
from controller.kube import KubeClient, api_client_from
from controller.kube.lists import METADATA_LIST_ACCEPT
from controller.loop import Controller
from controller.metrics import Metrics
from controller.reconcile_pass import run_pass
from controller.report import PassReport
from controller.settings import Settings
from controller.sources import ClusterStream
from reconcile.conventions import ARGO_WORKFLOW_LABEL
from reconcile.plan import WorkflowPlan
from store.connect import open_store
from store.metadata import MetadataStore

PAGE = 500  # the controller's list page size (KubeClient's default)


def mlmd_url(kind: str, workdir: Path, name: str) -> str:
    """A fresh, empty MLMD: an SQLite file under `workdir`, or a throwaway MariaDB database."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / name}.sqlite"
    if kind == "mysql":
        return MYSQL_URL.format(db=f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}")
    raise ValueError(f"unknown --mlmd {kind!r} (sqlite or mysql)")


class ServedMlmd:
    """An old MLMD server (sandbox/mlmd_legacy.py) over a fresh SQLite file, for `--mlmd-version`."""

    def __init__(self, version: str, workdir: Path, name: str) -> None:
        from sandbox.mlmd_legacy import versioned_server

        self.server = versioned_server(version, f"sqlite:///{workdir / name}.sqlite", install=True)
        self.server.start()
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()


def drop_mysql(url: str) -> None:
    """Drop a throwaway database made by `mlmd_url("mysql", ...)`."""
    if not url.startswith("mysql://"):
        return
    import pymysql

    db = url.rsplit("/", 1)[1]
    assert db.startswith("bench_"), db
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    finally:
        conn.close()


class Rig:
    """The emulator (child process) loaded with workflows, a store, and a controller over both."""

    def __init__(self, workdir: Path, url: str, *, debounce_s: float = 0.3) -> None:
        self.workdir = workdir
        self.emu = EmulatorProcess()
        self.kubeconfig = self.emu.kubeconfig(workdir / "kubeconfig")
        self.url = url
        self.store = CountingStore(open_store(url))
        self.settings = Settings(
            kubeconfig=str(self.kubeconfig),
            mlmd_url=url,
            leader_election=False,
            health_port=0,
            resync_interval_s=3600.0,
            resync_jitter_s=0.0,
            debounce_s=debounce_s,
            event_interval_s=600.0,
            watch_timeout_s=300,
        )
        self.kube = TimedKube(
            KubeClient(api_client_from(str(self.kubeconfig)), event_interval_s=self.settings.event_interval_s)
        )
        self.controller = Controller(
            self.settings, self.kube, Metrics(), Readiness(), store_opener=lambda: self.store
        )
        self.loaded: dict[str, Any] = {}

    def load(self, workflows: int, steps: int, profile: str = "3.5") -> dict[str, Any]:
        self.loaded = self.emu.load(workflows, steps, profile)
        return self.loaded

    def full_pass(self) -> tuple[PassReport, dict[str, Any]]:
        """One full pass exactly as the scheduled resync runs it, with its figures."""
        self.controller.active.set()
        self.emu.reset_counts()
        self.store.reset()
        self.kube.reset()
        emu_cpu0 = self.emu.cpu_s()
        wall0, cpu0 = time.perf_counter(), cpu_s()
        report = self.controller.run_pass("resync")
        wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
        emu_cpu = self.emu.cpu_s() - emu_cpu0
        if report is None:
            raise RuntimeError("the pass failed (see the log)")
        counts = self.emu.counts()
        served = self.emu.traffic()
        pods = report.pods_seen
        patching = self.kube.busy["patch_pod_metadata"]  # 8 patches in flight: wall time, not the sum
        figures = {
            "pods": pods,
            "pods_unchanged": report.pods_unchanged,
            "pods_per_s": round(pods / wall, 1) if wall else None,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "mlmd_reads": self.store.reads,
            "mlmd_writes": self.store.writes,
            "mlmd_transactions": report.transactions,
            "api_requests": sum(counts.values()),
            # Body bytes the emulator served during the pass, every request counted.
            "api_bytes": sum(size for _, size in served.values()),
            "api_bytes_by_kind": {
                "/".join(kind): size for kind, (_, size) in sorted(served.items()) if size
            },
            "patches": counts.get(("patch", "pods"), 0),
            "errors": len(report.errors),
            "actions": dict(report.actions),
            # The pass reconciles and patches each chunk of pods between list pages: "list"
            # is the rest of the wall time (paging, decoding, cutting pods down).
            "phases_s": {
                "list": round(max(0.0, wall - report.duration_s - patching), 3),
                "reconcile": round(report.duration_s, 3),
                "patch": round(patching, 3),
                "patch_calls_summed": round(self.kube.seconds["patch_pod_metadata"], 3),
            },
            "emulator_cpu_s": round(emu_cpu, 3),
            "emulator_share": round(emu_cpu / wall, 3) if wall else None,
        }
        return report, figures

    def planned(self, url: str) -> list[list[WorkflowPlan]]:
        """The plans a pass over the cluster makes against the MLMD at `url`, not applied, by chunk."""
        # The chunks a full pass reconciles (the batches of a write never span two).
        stream = ClusterStream(self.kube, [], self.controller.options, self.controller.settings.chunk_pods)
        store = MetadataStore.over(open_store(url))
        chunks: list[list[WorkflowPlan]] = []
        run_pass(
            stream.chunks(),
            store,
            self.controller.options,
            dry_run=True,
            after_chunk=lambda _, report: chunks.append(list(report.plans)),
        )
        return chunks

    def bare_list(self, repeat: int = 3, resource: str = "pods", pause_gc: bool = False) -> tuple[float, int]:
        """The bound: the fastest of `repeat` bare paginated lists + json.loads of the same objects.

        `resource` is "pods" (with the controller's label selector) or "workflows";
        `pause_gc` holds the garbage collector during each json.loads (as KubeClient does).
        """
        api_client = api_client_from(str(self.kubeconfig))
        v1 = client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)

        def page(token: str | None) -> Any:
            if resource == "pods":
                return v1.list_pod_for_all_namespaces(
                    label_selector=ARGO_WORKFLOW_LABEL, limit=PAGE, _continue=token, _preload_content=False
                )
            return custom.list_cluster_custom_object(
                "argoproj.io", "v1alpha1", resource, limit=PAGE, _continue=token, _preload_content=False
            )

        best, count = float("inf"), 0
        try:
            for _ in range(repeat):
                started = time.perf_counter()
                token, count = None, 0
                while True:
                    data = page(token).data
                    if pause_gc:
                        with paused_gc():
                            doc = json.loads(data)
                    else:
                        doc = json.loads(data)
                    count += len(doc["items"])
                    token = doc["metadata"].get("continue")
                    del doc
                    if not token:
                        break
                best = min(best, time.perf_counter() - started)
        finally:
            api_client.close()
        return best, count

    def list_bounds(self, repeat: int = 3) -> dict[str, Any]:
        """Paginated lists of pods, Workflows and WorkflowTaskResults, whole and metadata only.

        What a full pass must read at the least, on the same objects in the same run: for
        each view (``full``: the objects; ``metadata``: ``PartialObjectMetadataList``), the
        body bytes served and the fastest of `repeat` lists + ``json.loads`` of all three
        kinds (the pods with the controller's label selector, PAGE a page). Returns
        ``{view: {"bytes", "decode_s", "items", "per_resource": {...}}}``.
        """
        api_client = api_client_from(str(self.kubeconfig))
        v1 = client.CoreV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        accepts = {"full": "application/json", "metadata": METADATA_LIST_ACCEPT}

        def page(resource: str, token: str | None, accept: str) -> Any:
            headers = {"Accept": accept}
            if resource == "pods":
                return v1.list_pod_for_all_namespaces(
                    label_selector=ARGO_WORKFLOW_LABEL,
                    limit=PAGE,
                    _continue=token,
                    _headers=headers,
                    _preload_content=False,
                )
            return custom.list_cluster_custom_object(
                "argoproj.io", "v1alpha1", resource, limit=PAGE, _continue=token, _headers=headers,
                _preload_content=False,
            )

        bounds: dict[str, Any] = {}
        try:
            for view, accept in accepts.items():
                best: dict[str, Any] | None = None
                for _ in range(repeat):
                    run: dict[str, Any] = {"bytes": 0, "decode_s": 0.0, "items": 0, "per_resource": {}}
                    for resource in ("pods", "workflows", "workflowtaskresults"):
                        started = time.perf_counter()
                        token, size, items = None, 0, 0
                        while True:
                            data = page(resource, token, accept).data
                            size += len(data)
                            doc = json.loads(data)
                            items += len(doc.get("items") or [])  # an empty metadata list: null
                            token = doc["metadata"].get("continue")
                            del doc
                            if not token:
                                break
                        seconds = time.perf_counter() - started
                        run["per_resource"][resource] = {
                            "bytes": size,
                            "decode_s": round(seconds, 3),
                            "items": items,
                        }
                        run["bytes"] += size
                        run["decode_s"] += seconds
                        run["items"] += items
                    if best is None or run["decode_s"] < best["decode_s"]:
                        best = run
                assert best is not None
                best["decode_s"] = round(best["decode_s"], 3)
                bounds[view] = best
        finally:
            api_client.close()
        return bounds

    def close(self) -> None:
        self.controller.stopping.set()
        self.kube.close()
        self.emu.close()
