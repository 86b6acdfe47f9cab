"""The five scenarios; each returns a `Report` (see bench/README.md for what they measure)."""

from __future__ import annotations

import gc
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import CountingStore, Report, cpu_s, percentile, ratio
from bench.rig import Rig, ServedMlmd, drop_mysql, mlmd_url
from controller.gc_pause import paused_gc
from controller.health import Readiness
from controller.loop import Controller
from controller.metrics import Metrics
from controller.patching import PATCH_CONCURRENCY
from controller.report import PassReport
from reconcile import conventions as c
from reconcile.plan import WorkflowPlan
from store.apply import PreparedWrite, write_groups
from store.apply_steps import apply_step_plans
from store.capabilities import probe_capabilities
from store.connect import open_store
from store.types import TypeRegistry

CURRENT = "current"  # --mlmd-version: the embedded library (sqlite or mysql)


@dataclass(frozen=True)
class Sizes:
    workflows: int
    steps: int = 5


FULL = Sizes(2000)
POD_NAME_PROPERTY = "kfp_pod_name"  # docs/kfp-contract.md: the execution's pod name custom property
QUICK = Sizes(10)
# backfill's patch bound sets this label (a fresh value each run) on every pod: no pod has it yet.
PATCH_BOUND_LABEL = "bench.kfp-metadata-reconciler/patch-bound"


# --------------------------------------------------------------------------- helpers
def raw_write_s(chunks: list[list[WorkflowPlan]], url: str, batch_workflows: int = 1) -> tuple[float, int]:
    """A write bound: the same records as prepared protos, written straight into a fresh MLMD.

    `chunks` are the plans of each chunk of the pass. With `batch_workflows` 1, one
    `put_lineage_subgraph` per workflow (of up to CHUNK steps); above 1, the batches the
    pass writes (store/apply.py `write_groups` per chunk: up to that many workflows in at
    most three transactions). Only the calls are timed (types and protos are prepared
    first). On an MLMD without put_lineage_subgraph (1.0.0, 1.5.0), one `put_execution` per
    step through the write path alone (store/apply_steps.py), types made first: a consumer's
    event names the id its producer's call returned, so those protos cannot all be made
    beforehand. Returns (seconds, transactions).
    """
    store = open_store(url)
    types = TypeRegistry(store)
    plans = [plan for chunk in chunks for plan in chunk]
    if not probe_capabilities(store).lineage_subgraph:
        for plan in plans:
            for step_plan in plan.steps:
                types.execution_type_id(step_plan.step.execution.type_name)
                for out in step_plan.step.outputs or ():
                    types.artifact_type_id(out.type_name)
        types.context_type_id()
        started = time.perf_counter()
        result = apply_step_plans(store, types, plans)
        assert not result.failed, result.failed
        return time.perf_counter() - started, result.transactions
    prepared = [
        PreparedWrite(types, group) for chunk in chunks for group in write_groups(chunk, batch_workflows)
    ]
    started = time.perf_counter()
    transactions = sum(write.commit(store) for write in prepared)
    return time.perf_counter() - started, transactions


def duplicates(url: str) -> dict[str, int]:
    """Records that exist more than once for one key (executions, artifacts) or one event."""
    store = open_store(url)
    executions = store.get_executions()
    per_execution = Counter(
        e.external_id or e.custom_properties[POD_NAME_PROPERTY].string_value for e in executions
    )
    per_artifact = Counter(a.external_id or a.uri for a in store.get_artifacts())
    events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
    per_event = Counter(
        (e.execution_id, e.artifact_id, e.type, e.path.steps[0].key if e.path.steps else "") for e in events
    )
    return {
        "executions": sum(n - 1 for n in per_execution.values()),
        "artifacts": sum(n - 1 for n in per_artifact.values()),
        "events": sum(n - 1 for n in per_event.values()),
        "execution_count": len(executions),
    }


def wrong_labels(rig: Rig) -> int:
    """Recorded pods whose execution-id label does not name the execution of their own pod."""
    store = open_store(rig.url)
    by_pod = {e.custom_properties[POD_NAME_PROPERTY].string_value: e.id for e in store.get_executions()}
    wrong = 0
    for pod in rig.kube.list_pods(None).items:
        meta = pod["metadata"]
        label = (meta.get("labels") or {}).get(c.EXECUTION_ID_LABEL)
        if label != str(by_pod.get(meta["name"])):
            wrong += 1
    return wrong


def _pass_figures(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in figures.items()
        if k not in ("pods", "pods_unchanged", "actions", "phases_s", "api_bytes_by_kind")
    }


def _bound_list(rig: Rig, pods: int) -> float:
    seconds, listed = rig.bare_list()
    assert listed == pods, (listed, pods)
    return seconds


def patch_bound(rig: Rig, patches: int) -> dict[str, Any]:
    """The pass's pod patches alone: `patches` label-only merge patches, PATCH_CONCURRENCY in flight.

    One per pod (the first `patches` the controller's label selector lists), each setting
    PATCH_BOUND_LABEL to a value new this run, so the emulator stores a new version of every
    pod; sent through `rig.kube` (the real KubeClient) with the collector held, as the pass
    sends its patches. Returns wall and CPU seconds of this process and of the emulator.
    """
    pods = [
        (pod["metadata"]["namespace"], pod["metadata"]["name"])
        for page in rig.kube.pod_metadata_pages(None)
        for pod in page
    ][:patches]
    assert len(pods) == patches, (len(pods), patches)
    value = uuid.uuid4().hex
    bodies = [
        (namespace, name, {"metadata": {"labels": {PATCH_BOUND_LABEL: value}}}) for namespace, name in pods
    ]

    def one(item: tuple[str, str, dict[str, Any]]) -> bool:
        return rig.kube.patch_pod_metadata(*item)

    emu_cpu0 = rig.emu.cpu_s()
    wall0, cpu0 = time.perf_counter(), cpu_s()
    with paused_gc(), ThreadPoolExecutor(max_workers=PATCH_CONCURRENCY) as pool:
        patched = sum(pool.map(one, bodies))
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    emu_cpu = rig.emu.cpu_s() - emu_cpu0
    assert patched == patches, (patched, patches)
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "emulator_cpu_s": round(emu_cpu, 3),
        "patches": patched,
    }


# --------------------------------------------------------------------------- backfill
def backfill(workdir: Path, sizes: Sizes, mlmd: str = "sqlite", mlmd_version: str = CURRENT) -> Report:
    """Scenario 1: completed workflows already in the cluster, empty MLMD, one full pass.

    `mlmd_version` other than "current": that MLMD release's server over SQLite (gRPC).
    """
    served: list[ServedMlmd] = []
    if mlmd_version == CURRENT:
        url, bound_url, single_url = (
            mlmd_url(mlmd, workdir, name) for name in ("backfill", "backfill-bound", "backfill-bound-single")
        )
    else:
        mlmd = "sqlite"
        names = ("backfill", "backfill-bound", "backfill-bound-single")
        served = [ServedMlmd(mlmd_version, workdir, name) for name in names]
        url, bound_url, single_url = (server.url for server in served)
    rig = Rig(workdir, url)
    try:
        loaded = rig.load(sizes.workflows, sizes.steps)
        _, figures = rig.full_pass()
        pods = figures["pods"]
        list_s = _bound_list(rig, pods)
        batch = rig.controller.options.write_batch_workflows
        write_s, transactions = raw_write_s(rig.planned(bound_url), bound_url, batch)
        per_workflow_s, per_workflow_transactions = raw_write_s(rig.planned(single_url), single_url, 1)
        patching = patch_bound(rig, figures["patches"])
    finally:
        rig.close()
        for server in served:
            server.stop()
        drop_mysql(url)
        drop_mysql(bound_url)
        drop_mysql(single_url)
    result = Report(
        "backfill",
        {
            "workflows": sizes.workflows,
            "steps": sizes.steps,
            "pods": pods,
            "mlmd": mlmd,
            "mlmd_version": mlmd_version,
            "profile": "3.5",
        },
    )
    result.figures = _pass_figures(figures)
    result.bounds = {
        "batched_raw_write_s": round(write_s, 3),
        "batched_raw_write_pods_per_s": round(pods / write_s, 1),
        "batched_raw_write_transactions": transactions,
        "per_workflow_raw_write_s": round(per_workflow_s, 3),
        "per_workflow_raw_write_pods_per_s": round(pods / per_workflow_s, 1),
        "per_workflow_raw_write_transactions": per_workflow_transactions,
        "list_decode_s": round(list_s, 3),
        "bound_wall_s": round(write_s + list_s, 3),
        # The pass's pod patches sent alone; serial_floor_s adds them to the writes and the list.
        "patch_s": patching["wall_s"],
    }
    floor = ("batched_raw_write_s", "list_decode_s", "patch_s")
    serial_floor_s = result.bounds["serial_floor_s"] = round(sum(result.bounds[k] for k in floor), 3)
    result.ratios = {
        "pods_per_s_to_batched_raw_write": ratio(figures["pods_per_s"], pods / write_s),
        "pods_per_s_to_per_workflow_raw_write": ratio(figures["pods_per_s"], pods / per_workflow_s),
        "wall_to_bound": ratio(figures["wall_s"], write_s + list_s),
        "wall_to_serial_floor": ratio(figures["wall_s"], serial_floor_s),
    }
    result.parameters["write_batch_workflows"] = batch
    result.details = {
        "load": loaded,
        "actions": figures["actions"],
        "phases_s": figures["phases_s"],
        "patch_bound": patching,
    }
    result.target("pods_per_s", figures["pods_per_s"], 1000, at_least=True)
    to_bound = result.ratios["pods_per_s_to_batched_raw_write"]
    result.target("pods_per_s_to_batched_raw_write", to_bound, 0.8, at_least=True)
    result.target("errors", figures["errors"], 0)
    return result


# --------------------------------------------------------------------------- idle resync
def idle_resync(workdir: Path, sizes: Sizes, repeat: int = 3, mlmd_version: str = CURRENT) -> Report:
    """Scenario 2: the same pods already converged; full passes of a running and of a restarted controller.

    The figures are a running controller's resync (median of `repeat`): it lists metadata
    only and skips the steps its earlier passes found converged; `api_bytes` is what the
    emulator served meanwhile. Bounds, on the same objects in the same run: the paginated
    lists of pods, Workflows and WorkflowTaskResults, whole (bytes; list + json.loads time)
    and as PartialObjectMetadataList (bytes). `details.after_restart` is the first pass of a new
    controller (median of `repeat` restarts), which compares every step with MLMD.
    `mlmd_version` other than "current": that MLMD release's server over SQLite (gRPC).
    """
    served = ServedMlmd(mlmd_version, workdir, "idle") if mlmd_version != CURRENT else None
    rig = Rig(workdir, served.url if served else mlmd_url("sqlite", workdir, "idle"))
    try:
        loaded = rig.load(sizes.workflows, sizes.steps)
        _, converge = rig.full_pass()  # records everything and labels every pod
        _, relabelled = rig.full_pass()  # every pod changed (our labels): compared, found converged
        runs = [rig.full_pass()[1] for _ in range(repeat)]
        restarts = []
        for _ in range(repeat):
            _restart(rig)
            restarts.append(rig.full_pass()[1])
        pods = runs[0]["pods"]
        lists = rig.list_bounds()
        list_s = _bound_list(rig, pods)
        workflows_s, _ = rig.bare_list(resource="workflows")
        nogc_s, _ = rig.bare_list(pause_gc=True)
    finally:
        rig.close()
        if served is not None:
            served.stop()
    median, cold = _median_pass(runs), _median_pass(restarts)
    every = [relabelled, *runs, *restarts]
    result = Report(
        "idle-resync",
        {
            "workflows": sizes.workflows,
            "steps": sizes.steps,
            "pods": pods,
            "mlmd": "sqlite",
            "mlmd_version": mlmd_version,
        },
    )
    result.figures = _pass_figures(median)
    result.figures["mlmd_writes"] = max(r["mlmd_writes"] for r in every)
    result.figures["patches"] = max(r["patches"] for r in every)
    full, metadata = lists["full"], lists["metadata"]
    assert full["per_resource"]["pods"]["items"] == pods, (full, pods)
    result.bounds = {
        # Paginated lists of pods + Workflows + WorkflowTaskResults: whole (bytes, and the
        # fastest list + json.loads of the three) and as PartialObjectMetadataList.
        "full_list_bytes": full["bytes"],
        "full_list_decode_s": full["decode_s"],
        "metadata_list_bytes": metadata["bytes"],
        "metadata_list_decode_s": metadata["decode_s"],
        "list_decode_s": round(list_s, 3),
        # Not the bound, shown beside it: a full pass must also read every Workflow,
        # as completed Argo >= 3.4 workflows keep their outputs only in status.nodes.
        "list_decode_with_workflows_s": round(list_s + workflows_s, 3),
        # The same list with the collector held during json.loads, as KubeClient decodes.
        "list_decode_gc_paused_s": round(nogc_s, 3),
    }
    api_bytes = median["api_bytes"]
    result.ratios = {
        "api_bytes_to_metadata_list_bytes": ratio(api_bytes, metadata["bytes"]),
        "api_bytes_to_full_list_bytes": ratio(api_bytes, full["bytes"]),
        "wall_to_full_list_decode": ratio(median["wall_s"], full["decode_s"]),
        "after_restart_wall_to_full_list_decode": ratio(cold["wall_s"], full["decode_s"]),
        "wall_to_list_decode": ratio(median["wall_s"], list_s),
        "wall_to_list_decode_with_workflows": ratio(median["wall_s"], list_s + workflows_s),
        "wall_to_list_decode_gc_paused": ratio(median["wall_s"], nogc_s),
        "after_restart_wall_to_list_decode": ratio(cold["wall_s"], list_s),
        "after_restart_wall_to_list_decode_with_workflows": ratio(cold["wall_s"], list_s + workflows_s),
    }
    result.details = {
        "load": loaded,
        "passes_wall_s": [r["wall_s"] for r in runs],
        "pods_unchanged": median["pods_unchanged"],
        "phases_s": median["phases_s"],
        "api_bytes_by_kind": median["api_bytes_by_kind"],
        "lists": lists,
        "after_restart": {
            **_pass_figures(cold),
            "passes_wall_s": [r["wall_s"] for r in restarts],
            "pods_unchanged": cold["pods_unchanged"],
            "phases_s": cold["phases_s"],
        },
        "converging_pass": {k: converge[k] for k in ("wall_s", "pods_per_s", "mlmd_writes", "patches")},
    }
    # docs/design.md's targets: the pass reads next to nothing beyond the metadata lists,
    # and costs a fraction of reading the same objects whole.
    result.target(
        "api_bytes_to_metadata_list_bytes", result.ratios["api_bytes_to_metadata_list_bytes"], 1.25
    )
    result.target("wall_to_full_list_decode", result.ratios["wall_to_full_list_decode"], 0.35)
    result.target("mlmd_writes", result.figures["mlmd_writes"], 0)
    result.target("patches", result.figures["patches"], 0)
    return result


def _median_pass(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    return runs[walls.index(statistics.median_low(walls))]


def _restart(rig: Rig) -> None:
    """A new controller over the same cluster and MLMD: it remembers nothing of earlier passes."""
    rig.controller = Controller(
        rig.settings, rig.kube, Metrics(), Readiness(), store_opener=lambda: rig.store
    )


# --------------------------------------------------------------------------- recovery
def recovery(workdir: Path, sizes: Sizes) -> Report:
    """Scenario 4: backfill converged, MLMD restored from a half-way backup, one full pass."""
    url = mlmd_url("sqlite", workdir, "recovery")
    path = Path(url.removeprefix("sqlite:///"))
    backup = path.with_suffix(".half")
    rig = Rig(workdir, url)
    try:
        loaded = rig.load(sizes.workflows, sizes.steps)
        names = sorted(
            {p["metadata"]["labels"][c.ARGO_WORKFLOW_LABEL] for p in rig.kube.list_pods(None).items}
        )
        half = names[: len(names) // 2]
        rig.controller.active.set()
        first = rig.controller.run_pass("watch", {"kubeflow": set(half)})
        assert first is not None and not first.errors, first
        _release(rig)
        shutil.copyfile(path, backup)
        _reopen(rig)
        _, rest = rig.full_pass()
        _release(rig)
        shutil.copyfile(backup, path)  # the restore
        _reopen(rig)
        _, figures = rig.full_pass()
        _, after = rig.full_pass()
        dups = duplicates(url)
        wrong = wrong_labels(rig)
    finally:
        rig.close()
    result = Report(
        "recovery",
        {
            "workflows": sizes.workflows,
            "steps": sizes.steps,
            "pods": figures["pods"],
            "mlmd": "sqlite",
            "backup_after_workflows": len(half),
        },
    )
    result.figures = _pass_figures(figures)
    result.figures["duplicates"] = dups["executions"] + dups["artifacts"] + dups["events"]
    result.details = {
        "load": loaded,
        "actions": figures["actions"],
        "phases_s": figures["phases_s"],
        "duplicates_by_kind": dups,
        "wrong_labels_after": wrong,
        "next_pass": {k: after[k] for k in ("wall_s", "mlmd_writes", "patches")},
        "second_half_pass": {k: rest[k] for k in ("wall_s", "pods_per_s", "mlmd_writes", "patches")},
    }
    result.target("duplicates", result.figures["duplicates"], 0)
    result.target("wrong_labels_after", wrong, 0)
    result.target("next_pass_writes", after["mlmd_writes"] + after["patches"], 0)
    return result


def _release(rig: Rig) -> None:
    """Close the controller's MLMD connection (the store object is its only holder)."""
    rig.controller.stopping.set()
    rig.controller._store.drop()  # bench: a restarted controller below
    rig.store._store = None
    gc.collect()


def _reopen(rig: Rig) -> None:
    """A controller restarted after the restore: a new store connection, new type cache."""
    rig.store = CountingStore(open_store(rig.url))
    _restart(rig)


# --------------------------------------------------------------------------- latency
def latency(
    workdir: Path, workflows: int, steps: int, every_s: float, pace_s: float = 0.1, debounce_s: float = 0.3
) -> Report:
    """Scenario 3: the controller with its watch; steps finish at a steady rate."""
    rig = Rig(workdir, mlmd_url("sqlite", workdir, "latency"), debounce_s=debounce_s)
    controller = rig.controller
    try:
        controller.start()
        controller.activate()
        deadline = time.monotonic() + 30
        while not controller._rv_ready.is_set():  # bench: wait for the first list before starting
            if time.monotonic() > deadline:
                raise TimeoutError("the controller's first pass did not finish")
            time.sleep(0.05)
        time.sleep(0.5)  # the watch opens
        rig.emu.reset_counts()
        rig.emu.paced(workflows, steps, "3.5", pace_s, every_s)
        started = time.monotonic()
        rig.emu.wait_paced()
        visible = _first_visible(rig.emu.outputs())
        deadline = time.monotonic() + 30
        while len(_matched(visible, rig.store.output_committed)) < len(visible):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        rig.emu.stop_sim()
        matched = _matched(visible, rig.store.output_committed)
        counts = rig.emu.counts()
    finally:
        controller.stop()
        rig.close()
    lat = [committed - seen for seen, committed in matched.values()]
    result = Report(
        "latency",
        {
            "workflows": workflows,
            "steps_per_workflow": steps,
            "steps": len(visible),
            "submit_every_s": every_s,
            "simulator_pace_s": pace_s,
            "debounce_s": debounce_s,
            "steps_per_s": round(len(visible) / elapsed, 2),
            "mlmd": "sqlite",
        },
    )
    result.figures = {
        "latency_p50_s": _round(percentile(lat, 50)),
        "latency_p90_s": _round(percentile(lat, 90)),
        "latency_p99_s": _round(percentile(lat, 99)),
        "latency_max_s": _round(max(lat, default=None)),
        "measured": len(lat),
        "unmeasured": len(visible) - len(lat),
        "mlmd_writes": rig.store.writes,
        "mlmd_reads": rig.store.reads,
        "api_requests": sum(counts.values()),
    }
    result.target("latency_p50_s", result.figures["latency_p50_s"], 1.0)
    result.target("latency_p99_s", result.figures["latency_p99_s"], 3.0)
    result.target("unmeasured", result.figures["unmeasured"], 0)
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _first_visible(outputs: list[Any]) -> dict[tuple[str, str], float]:
    first: dict[tuple[str, str], float] = {}
    for o in outputs:
        first.setdefault((o.namespace, o.node_id), o.monotonic)
    return first


def _matched(visible: dict[tuple[str, str], float], committed: dict[str, float]) -> dict[Any, Any]:
    """(namespace, node id) -> (visible at, committed at), from execution keys .../<ns>/<uid>/<node>."""
    by_node = {}
    for key, at in list(committed.items()):
        parts = key.split("/")
        if len(parts) >= 5:
            by_node[(parts[2], parts[-1])] = at
    return {k: (v, by_node[k]) for k, v in visible.items() if k in by_node}


# --------------------------------------------------------------------------- scale
def _worker(rig: Rig, url: str, passes: int = 1) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.worker",
            "--kubeconfig",
            str(rig.kubeconfig),
            "--mlmd",
            url,
            "--passes",
            str(passes),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def scale(workdir: Path, pod_counts: list[int], steps: int = 5, plot: Path | None = None) -> Report:
    """Scenario 5: peak RSS and idle-resync time of a controller process at each size."""
    points = []
    for pods in pod_counts:
        url = mlmd_url("sqlite", workdir, f"scale-{pods}")
        rig = Rig(workdir, url)
        try:
            loaded = rig.load(max(1, pods // steps), steps)
            converge = _worker(rig, url)
            idle = _worker(rig, url, passes=2)
            list_s = _bound_list(rig, idle["pods"])
        finally:
            rig.close()
        points.append(
            {
                "pods": idle["pods"],
                "idle_wall_s": idle["wall_s"],
                "idle_cpu_s": idle["cpu_s"],
                "list_decode_s": round(list_s, 3),
                "idle_to_list_decode": ratio(idle["wall_s"], list_s),
                # The same process's next pass skips the steps the first one found converged.
                "running_idle_wall_s": idle["later_wall_s"][0],
                "running_idle_to_list_decode": ratio(idle["later_wall_s"][0], list_s),
                "peak_rss_mb": idle["peak_rss_mb"],
                "baseline_rss_mb": idle["baseline_rss_mb"],
                "idle_writes": idle["mlmd_writes"],
                "idle_patches": idle["patches"],
                "backfill_wall_s": converge["wall_s"],
                "backfill_peak_rss_mb": converge["peak_rss_mb"],
                "avg_pod_bytes": loaded["avg_pod_bytes"],
            }
        )
    largest = points[-1]
    result = Report("scale", {"pods": [p["pods"] for p in points], "steps": steps, "mlmd": "sqlite"})
    result.figures = {
        "peak_rss_mb": largest["peak_rss_mb"],
        "wall_s": largest["idle_wall_s"],
        "cpu_s": largest["idle_cpu_s"],
        "mlmd_writes": largest["idle_writes"],
        "patches": largest["idle_patches"],
    }
    result.bounds = {"list_decode_s": largest["list_decode_s"]}
    result.ratios = {
        "wall_to_list_decode": largest["idle_to_list_decode"],
        "running_wall_to_list_decode": largest["running_idle_to_list_decode"],
    }
    result.details = {"curve": points}
    if largest["pods"] >= 50_000:
        result.target("peak_rss_mb", largest["peak_rss_mb"], 400)
    if plot is not None:
        result.details["plot"] = str(_plot(points, plot))
    return result


def _plot(points: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pods = [p["pods"] for p in points]
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(pods, [p["peak_rss_mb"] for p in points], "o-", color="tab:blue", label="peak RSS (MB)")
    left.axhline(400, color="tab:blue", linestyle=":", linewidth=1, label="RSS target (400 MB)")
    left.set_xlabel("pods")
    left.set_ylabel("peak RSS of an idle-resync process (MB)", color="tab:blue")
    right = left.twinx()
    right.plot(
        pods, [p["idle_wall_s"] for p in points], "s-", color="tab:red", label="idle resync, new process (s)"
    )
    right.plot(
        pods,
        [p["running_idle_wall_s"] for p in points],
        "D-",
        color="tab:orange",
        label="idle resync, running controller (s)",
    )
    right.plot(
        pods, [p["list_decode_s"] for p in points], "^--", color="tab:gray", label="list + json.loads (s)"
    )
    right.set_ylabel("seconds", color="tab:red")
    lines = left.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    left.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    left.set_title("kfp-metadata-reconciler: cost of an idle full resync")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


__all__ = ["FULL", "QUICK", "PassReport", "Sizes", "backfill", "idle_resync", "latency", "recovery", "scale"]
