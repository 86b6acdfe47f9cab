"""The Argo/KFP v1 run simulator: runs compiled KFP v1 Workflows as Argo would.

The simulator plays four parts, each advancing one state transition per
:meth:`Simulator.step`:

* the **workflow controller** (``operate``): evaluates DAGs, creates pods and
  nodes, assesses finished pods into ``status.nodes``, persists the Workflow,
  then labels/deletes pods (``completed`` label, podGC) and deletes task results
  when the workflow completes;
* the **kubelet**: pod ``Pending`` -> ``Running`` -> ``Succeeded``/``Failed``;
* the **executor** (``wait``): reports outputs through a WorkflowTaskResult or the
  ``workflows.argoproj.io/outputs`` annotation, depending on the profile;
* optionally KFP's **cache webhook** (:mod:`sandbox.simulator.cache`).

Within one step the controller runs first (on the state the previous step left),
then pods created before this step move one stage. So every intermediate state
a reconciler can meet is persisted for at least one step: pod running without
outputs, outputs reported while the pod still runs, pod finished but node not
yet updated, node updated but pod not yet labelled ``completed``, and so on.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import gzip
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.cluster import Cluster, ClusterError
from sandbox.simulator import naming
from sandbox.simulator.cache import KfpCacheWebhook
from sandbox.simulator.expr import (
    ExpressionError,
    depends_tasks,
    evaluate,
    evaluate_depends,
    go_json,
    item_string,
    substitute,
    unresolved_tags,
)
from sandbox.simulator.profiles import ArgoProfile
from sandbox.simulator.shapes import (
    ANN_DEFAULT_CONTAINER,
    ANN_NODE_ID,
    ANN_NODE_NAME,
    ANN_OUTPUTS,
    ANN_POD_NAME_FORMAT,
    ANN_REPORT_COMPLETED,
    ANN_TEMPLATE,
    CONTAINER_ORDER,
    LABEL_COMPLETED,
    LABEL_ON_EXIT,
    LABEL_WORKFLOW,
    NODE_ORDER,
    ZERO_TIME,
    container_status,
    executor_command,
    executor_env,
    merge_pod_spec_patch,
    order_artifact,
    order_io,
    ordered,
    owner_ref_workflow,
    task_result,
    template_for_pod,
    template_json,
)
from sandbox.simulator.values import (
    OutputContext,
    OutputValues,
    default_output_value,
    lookup_output_type,
)

KFP_KEY_FORMAT = (
    "artifacts/{{workflow.name}}/{{workflow.creationTimestamp.Y}}/"
    "{{workflow.creationTimestamp.m}}/{{workflow.creationTimestamp.d}}/{{pod.name}}"
)
#: KFP's default artifact repository (manifests ``workflow-controller-configmap-patch.yaml``).
KFP_ARTIFACT_REPOSITORY: dict[str, Any] = {
    "archiveLogs": True,
    "s3": {
        "endpoint": "minio-service.kubeflow:9000",
        "bucket": "mlpipeline",
        "insecure": True,
        "accessKeySecret": {"name": "mlpipeline-minio-artifact", "key": "accesskey"},
        "secretKeySecret": {"name": "mlpipeline-minio-artifact", "key": "secretkey"},
        "keyFormat": KFP_KEY_FORMAT,
    },
}

POD_GC_STRATEGIES = (
    "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess",
)
FULFILLED = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})
_FAILED = frozenset({"Failed", "Error"})
MAX_NODE_DEPTH = 60  # bounds runaway recursion (e.g. a recursive graph component)

FailureSpec = Callable[[str, str, int], bool] | Mapping[str, int] | float | None


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimClock:
    """A deterministic clock: starts at ``start`` and moves ``tick`` per simulator step."""

    def __init__(self, start: datetime | None = None, tick: timedelta = timedelta(seconds=1)):
        self.now_dt = start or datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
        self.tick = tick

    def __call__(self) -> datetime:
        return self.now_dt

    def advance(self) -> None:
        """Move the clock one tick forward (called by the simulator every step)."""
        self.now_dt += self.tick


def wall_clock() -> datetime:
    """The real time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class OutputsVisible:
    """A step's outputs became readable in the cluster (for latency benchmarks).

    ``channel`` is "taskresult" or "annotation"; ``at`` is the simulator clock,
    ``monotonic`` is ``time.monotonic()`` when the write returned.
    """

    namespace: str
    workflow: str
    node_id: str
    node_name: str
    pod_name: str
    channel: str
    at: datetime
    monotonic: float


# ----------------------------------------------------------------------------- sink
def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (returns the new value; ``target`` is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict):
            target[k] = merge_patch(target.get(k), v)
        else:
            target[k] = v  # callers hand over freshly built patches
    return target


class _Sink:
    """Where the simulator's writes go: straight to the cluster, or buffered in memory."""

    def __init__(self, cluster: Cluster, buffered: bool = False) -> None:
        self.cluster = cluster
        self.buffered = buffered
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}

    def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        if not self.buffered:
            return self.cluster.create(resource, obj)
        meta = obj["metadata"]
        key = (resource, meta.get("namespace", ""), meta["name"])
        meta.setdefault("uid", str(uuid.uuid4()))
        self.objects[key] = obj
        return obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.buffered:
            return self.objects.get((resource, namespace, name))
        try:
            return self.cluster.get(resource, namespace, name)
        except ClusterError as e:
            if e.status == 404:
                return None
            raise

    def patch(self, resource: str, namespace: str, name: str,
              patch: dict[str, Any]) -> dict[str, Any] | None:
        if self.buffered:
            obj = self.objects.get((resource, namespace, name))
            if obj is None:
                return None
            return merge_patch(obj, patch)
        try:
            return self.cluster.patch(resource, namespace, name, patch, "merge")
        except ClusterError as e:
            if e.status == 404:
                return None
            raise

    def delete(self, resource: str, namespace: str, name: str) -> bool:
        if self.buffered:
            return self.objects.pop((resource, namespace, name), None) is not None
        try:
            self.cluster.delete(resource, namespace, name)
            return True
        except ClusterError as e:
            if e.status == 404:
                return False
            raise

    def flush(self) -> None:
        """Create every buffered object in the cluster (pods before task results)."""
        if not self.buffered:
            return
        pod_uids: dict[tuple[str, str], str] = {}
        order = {"pods": 0, "configmaps": 1, "workflowtaskresults": 2}
        need_pod_uids = any(
            k[0] == "workflowtaskresults"
            and any(r.get("kind") in ("Pod", "pods")
                    for r in o["metadata"].get("ownerReferences", []))
            for k, o in self.objects.items())
        for key in sorted(self.objects, key=lambda k: order.get(k[0], 9)):
            resource, ns, name = key
            obj = self.objects[key]
            obj["metadata"].pop("uid", None)
            if resource == "workflowtaskresults":
                for ref in obj["metadata"].get("ownerReferences", []):
                    if ref.get("kind") in ("Pod", "pods") and (ns, ref["name"]) in pod_uids:
                        ref["uid"] = pod_uids[(ns, ref["name"])]
            create_raw = getattr(self.cluster, "create_raw", None)
            if resource == "pods" and need_pod_uids:
                pod_uids[(ns, name)] = self.cluster.create(resource, obj)["metadata"]["uid"]
            elif create_raw is not None:
                create_raw(resource, obj)  # skips decoding the echo
            else:
                self.cluster.create(resource, obj)
        self.objects.clear()


# ----------------------------------------------------------------------------- state
@dataclass
class _PodRun:
    node_id: str
    node_name: str
    pod_name: str
    template: dict[str, Any]
    archive_key: str
    on_exit: bool
    created_step: int
    is_resource: bool
    uid: str = ""
    stage: str = "pending"  # pending, running, reported, finished, assessed, cleaned
    exit_code: int = 0
    outputs: dict[str, Any] | None = None
    cache_hit: bool = False
    cached_outputs: dict[str, Any] | None = None
    taskresult: bool = False
    deleted: bool = False
    started: str = ""
    finished: str = ""


@dataclass
class _Run:
    namespace: str
    name: str
    uid: str
    created: str
    spec: dict[str, Any]
    templates: dict[str, dict[str, Any]]
    globals: dict[str, str]
    repo: dict[str, Any]
    pod_gc: str | None
    pod_gc_selector: dict[str, str] | None
    loop_fields: dict[tuple[str, str], tuple[str, ...]]
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, _PodRun] = field(default_factory=dict)
    phase: str = "Running"
    started_at: str = ""
    finished_at: str = ""
    message: str = ""
    done: bool = False
    last_status: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    dirty: bool = True  # something changed since the controller last looked


@dataclass
class _DagCtx:
    run: _Run
    node: dict[str, Any]
    tmpl: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    scope: dict[str, str]
    artifacts: dict[str, dict[str, Any]]
    visited: set[str] = field(default_factory=set)
    failed: bool = False


def _fulfilled(node: dict[str, Any] | None) -> bool:
    return node is not None and node.get("phase") in FULFILLED


def _task_deps(task: dict[str, Any]) -> list[str]:
    if task.get("depends"):
        return depends_tasks(task["depends"])
    return list(task.get("dependencies") or [])


class Simulator:
    """Runs KFP v1 compiled Argo Workflows against a :class:`~sandbox.cluster.Cluster`.

    Args:
        cluster: the store to drive (e.g. ``sandbox.objectstore.ObjectStore``).
        profile: an Argo version ("3.1", "3.3", "3.5", "3.6") or an :class:`ArgoProfile`.
        seed: makes names, values and injected failures deterministic.
        pod_gc: ``None`` or an Argo podGC strategy; a workflow's own
            ``spec.podGC`` wins.
        artifact_repository: the controller's default artifact repository.
        cache: enable KFP cache-webhook emulation: ``True`` or a :class:`KfpCacheWebhook`
            (share one instance between simulators to share the cache DB).
        clock: a callable returning an aware datetime; :class:`SimClock` instances are
            advanced one tick per step. Default: wall clock.
        fail: failure injection: a float probability per attempt, a mapping
            ``{template or task name: number of failing attempts}``, or a callable
            ``(node_name, template_name, attempt) -> bool``.
        output_values: produces output parameter values (default
            :func:`~sandbox.simulator.values.default_output_value`).
        kfp_apiserver: apply what KFP's API server adds at submission (run-id label,
            ``cache_enabled`` label, ``sidecar.istio.io/inject`` annotation,
            ``optional`` on UI-metadata/metrics outputs).
        compress_nodes: store nodes as ``status.compressedNodes`` (gzip+base64).
        on_outputs: callbacks invoked with each :class:`OutputsVisible`.
    """

    def __init__(
        self,
        cluster: Cluster,
        profile: str | ArgoProfile = "3.5",
        *,
        seed: int = 0,
        pod_gc: str | None = None,
        artifact_repository: dict[str, Any] | None = None,
        cache: bool | KfpCacheWebhook | None = None,
        clock: Callable[[], datetime] | None = None,
        fail: FailureSpec = None,
        output_values: OutputValues | None = None,
        kfp_apiserver: bool = True,
        compress_nodes: bool = False,
        on_outputs: list[Callable[[OutputsVisible], None]] | None = None,
        _buffered: bool = False,
    ) -> None:
        if pod_gc is not None and pod_gc not in POD_GC_STRATEGIES:
            raise ValueError(f"unknown podGC strategy {pod_gc!r}; known: {POD_GC_STRATEGIES}")
        self.cluster = cluster
        self.profile = ArgoProfile.get(profile)
        self.seed = seed
        self.pod_gc = pod_gc
        self.artifact_repository = copy.deepcopy(artifact_repository or KFP_ARTIFACT_REPOSITORY)
        if cache is True:
            self.cache: KfpCacheWebhook | None = KfpCacheWebhook()
        elif isinstance(cache, KfpCacheWebhook):
            self.cache = cache
        else:
            self.cache = None
        self.clock = clock or wall_clock
        self.fail = fail
        self.output_values = output_values or default_output_value
        self.kfp_apiserver = kfp_apiserver
        self.compress_nodes = compress_nodes
        self.on_outputs: list[Callable[[OutputsVisible], None]] = list(on_outputs or [])
        self.outputs_log: list[OutputsVisible] = []
        self.steps = 0
        self._rng = random.Random(seed)
        self._runs: dict[tuple[str, str], _Run] = {}
        self._finished: dict[tuple[str, str], _Run] = {}
        self._all: list[_Run] = []
        self._sink = _Sink(cluster, buffered=_buffered)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ public API
    def submit(
        self,
        workflow: dict[str, Any],
        namespace: str = "kubeflow",
        name: str | None = None,
        *,
        parameters: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Create the Workflow in ``namespace`` and start running it; returns its name.

        ``generateName`` gets a deterministic 5-character suffix from the seed.
        ``parameters`` override ``spec.arguments.parameters`` values; a parameter with
        neither a value nor an override gets a deterministic ``<name>-<suffix>`` value,
        as a user would have to supply one when creating the run.
        """
        with self._lock:
            wf = json.loads(json.dumps(workflow))  # a deep copy, faster than deepcopy
            meta = wf.setdefault("metadata", {})
            if name is None:
                name = meta.get("name")
            generate = meta.pop("generateName", None) or "workflow-"
            generated = not name
            if generated:
                name = generate + naming.generated_suffix(self._rng)
            meta["name"] = name
            meta["namespace"] = namespace
            for k in ("uid", "resourceVersion", "creationTimestamp"):
                meta.pop(k, None)
            spec = wf.setdefault("spec", {})
            for p in spec.setdefault("arguments", {}).setdefault("parameters", []) or []:
                if parameters and p.get("name") in parameters:
                    p["value"] = str(parameters[p["name"]])
                elif "value" not in p:
                    # a run must supply every pipeline parameter without a default (the
                    # KFP UI/API insists); play the user with a deterministic value
                    p["value"] = f"{p['name']}-{naming.generated_suffix(self._rng)}"
            if self.kfp_apiserver:
                rid = run_id or str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
                self._apply_kfp_apiserver(wf, rid)
            labels = meta.setdefault("labels", {})
            labels[LABEL_COMPLETED] = "false"
            if self.profile.stamp_pod_name_format:
                meta.setdefault("annotations", {})[ANN_POD_NAME_FORMAT] = (
                    self.profile.pod_name_format
                )
            wf.pop("status", None)
            while True:
                try:
                    created = self.cluster.create("workflows", wf)
                    break
                except ClusterError as e:
                    if not (generated and e.status == 409):
                        raise
                    # like the API server's generateName: pick another suffix
                    name = generate + naming.generated_suffix(self._rng)
                    wf["metadata"]["name"] = name
            run = self._new_run(created)
            self._runs[(namespace, name)] = run
            self._all.append(run)
            if not self._sink.buffered:
                self._persist(run, force=True)
            return name

    def step(self) -> bool:
        """Advance every workflow by one transition; False when nothing was left to do."""
        with self._lock:
            if not self._runs:
                return False
            self.steps += 1
            advance = getattr(self.clock, "advance", None)
            if callable(advance):
                advance()
            for run in list(self._runs.values()):
                self._operate(run)
            for run in list(self._runs.values()):
                self._advance_pods(run)
            for key, run in list(self._runs.items()):
                if run.done:
                    self._finished[key] = self._runs.pop(key)
            return True

    def run_until_complete(self, max_steps: int = 10_000) -> int:
        """Step until every submitted workflow has completed; returns the steps taken."""
        n = 0
        while self.step():
            n += 1
            if n >= max_steps:
                raise RuntimeError(f"workflows still running after {max_steps} steps: "
                                   f"{sorted(self._runs)}")
        return n

    @property
    def active(self) -> list[tuple[str, str]]:
        """(namespace, name) of the workflows still running."""
        with self._lock:
            return sorted(self._runs)

    def run(self, pace_s: float = 0.5, *, background: bool = True,
            stop_when_idle: bool = False) -> None:
        """Step every ``pace_s`` seconds (in a daemon thread unless ``background=False``).

        Keeps running (idle steps are cheap) until :meth:`stop`, or, with
        ``stop_when_idle``, until no workflow is left.
        """
        def loop() -> None:
            while not self._stop.is_set():
                busy = self.step()
                if stop_when_idle and not busy:
                    break
                self._stop.wait(pace_s)

        self._stop.clear()
        if not background:
            loop()
            return
        if self._thread and self._thread.is_alive():
            raise RuntimeError("simulator is already running")
        self._thread = threading.Thread(target=loop, name="argo-simulator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the paced loop started by :meth:`run` and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def delete_workflow(self, namespace: str, name: str) -> None:
        """Delete a Workflow and, as Kubernetes' garbage collector would, what it owns."""
        with self._lock:
            self._runs.pop((namespace, name), None)
            self._finished.pop((namespace, name), None)
            self._all = [r for r in self._all if (r.namespace, r.name) != (namespace, name)]
            for resource in ("pods", "workflowtaskresults", "configmaps"):
                for obj in self.cluster.list(resource, namespace, f"{LABEL_WORKFLOW}={name}"):
                    self._sink.delete(resource, namespace, obj["metadata"]["name"])
            self._sink.delete("workflows", namespace, name)

    def add_outputs_listener(self, fn: Callable[[OutputsVisible], None]) -> None:
        """Call ``fn`` every time a step's outputs become visible."""
        self.on_outputs.append(fn)

    def workflow_phase(self, namespace: str, name: str) -> str | None:
        """The simulated phase of a submitted workflow (None if unknown)."""
        run = self._runs.get((namespace, name)) or self._finished.get((namespace, name))
        return run.phase if run else None

    # -------------------------------------------------------------- submission
    def _apply_kfp_apiserver(self, wf: dict[str, Any], run_id: str) -> None:
        wf["metadata"].setdefault("labels", {})["pipeline/runid"] = run_id
        spec = wf["spec"]
        pm = spec.setdefault("podMetadata", {})
        pm.setdefault("labels", {})["pipeline/runid"] = run_id
        for t in spec.get("templates", []):
            md = t.setdefault("metadata", {})
            md.setdefault("labels", {})["pipelines.kubeflow.org/cache_enabled"] = "true"
            if "container" in t or "resource" in t:
                md.setdefault("annotations", {})["sidecar.istio.io/inject"] = "false"
            for art in (t.get("outputs") or {}).get("artifacts") or []:
                if art.get("name") in ("mlpipeline-ui-metadata", "mlpipeline-metrics"):
                    art["optional"] = True

    def _new_run(self, wf: dict[str, Any]) -> _Run:
        meta, spec = wf["metadata"], wf["spec"]
        created = meta.get("creationTimestamp") or _ts(self.clock())
        try:
            cdt = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            cdt = self.clock()
        g = {
            "workflow.name": meta["name"],
            "workflow.namespace": meta["namespace"],
            "workflow.uid": meta.get("uid", ""),
            "workflow.serviceAccountName": spec.get("serviceAccountName", ""),
            "workflow.creationTimestamp": created,
            "workflow.creationTimestamp.Y": f"{cdt.year:04d}",
            "workflow.creationTimestamp.m": f"{cdt.month:02d}",
            "workflow.creationTimestamp.d": f"{cdt.day:02d}",
            "workflow.creationTimestamp.H": f"{cdt.hour:02d}",
            "workflow.creationTimestamp.M": f"{cdt.minute:02d}",
            "workflow.creationTimestamp.S": f"{cdt.second:02d}",
            "workflow.creationTimestamp.RFC3339": created,
            "workflow.priority": str(spec.get("priority", 0)),
        }
        # like substituteGlobalVariables: {{workflow.*}} inside argument values resolve
        # (KFP's RUN_ID_PLACEHOLDER is {{workflow.uid}})
        for p in (spec.get("arguments") or {}).get("parameters") or []:
            if "value" in p:
                p["value"] = substitute(str(p["value"]), g)
                g[f"workflow.parameters.{p['name']}"] = p["value"]
        gc = spec.get("podGC") or {}
        pod_gc = gc.get("strategy") or self.pod_gc
        selector = (gc.get("labelSelector") or {}).get("matchLabels")
        templates = {t["name"]: t for t in spec.get("templates", [])}
        run = _Run(
            namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
            created=created, spec=spec, templates=templates, globals=g,
            repo=self.artifact_repository, pod_gc=pod_gc, pod_gc_selector=selector,
            loop_fields=self._scan_loops(spec), started_at=_ts(self.clock()),
            labels=dict(meta.get("labels") or {}),
        )
        return run

    @staticmethod
    def _scan_loops(spec: dict[str, Any]) -> dict[tuple[str, str], tuple[str, ...]]:
        """(producer template, output parameter) -> item fields, for withParam outputs."""
        found: dict[tuple[str, str], tuple[str, ...]] = {}
        for t in spec.get("templates", []):
            tasks = {x["name"]: x for x in (t.get("dag") or {}).get("tasks", [])}
            for task in tasks.values():
                wp = task.get("withParam")
                if not isinstance(wp, str):
                    continue
                for tag in unresolved_tags(wp, "tasks."):
                    parts = tag.split(".")
                    if len(parts) == 5 and parts[2:4] == ["outputs", "parameters"]:
                        producer = tasks.get(parts[1])
                        if producer is None:
                            continue
                        fields_ = sorted({
                            tg.split(".", 1)[1]
                            for tg in unresolved_tags(task.get("arguments", {}), "item.")
                        })
                        found[(producer["template"], parts[4])] = tuple(fields_)
        return found

    # ------------------------------------------------------------------ nodes
    def _now(self) -> str:
        return _ts(self.clock())

    def _new_node(self, run: _Run, name: str, type_: str, template_name: str | None,
                  boundary: str, phase: str, *, display: str | None = None,
                  inputs: dict[str, Any] | None = None, message: str | None = None,
                  ) -> dict[str, Any]:
        nid = naming.node_id(run.name, name)
        node: dict[str, Any] = {
            "id": nid, "name": name,
            "displayName": display if display is not None else name.rsplit(".", 1)[-1],
            "type": type_,
        }
        if template_name:
            node["templateName"] = template_name
        node["templateScope"] = f"local/{run.name}"
        node["phase"] = phase
        if boundary:
            node["boundaryID"] = boundary
        if message:
            node["message"] = message
        node["startedAt"] = self._now()
        if phase in FULFILLED:
            node["finishedAt"] = node["startedAt"]
        if inputs:
            node["inputs"] = order_io(inputs)
        run.nodes[nid] = node
        return node

    def _finish_node(self, node: dict[str, Any], phase: str, message: str | None = None) -> None:
        node["phase"] = phase
        node["finishedAt"] = self._now()
        if message:
            node["message"] = message

    @staticmethod
    def _add_child(parent: dict[str, Any], child_id: str) -> None:
        children = parent.setdefault("children", [])
        if child_id not in children:
            children.append(child_id)

    def _outbound(self, run: _Run, nid: str) -> list[str]:
        node = run.nodes.get(nid)
        if node is None:
            return []
        t = node["type"]
        if t in ("Pod", "Skipped", "Suspend"):
            return [nid]
        if t == "TaskGroup":
            if not node.get("children"):
                return [nid]
            out: list[str] = []
            for c in node["children"]:
                out.extend(self._outbound(run, c))
            return out
        if t == "Retry":
            return [node["children"][-1]] if node.get("children") else [nid]
        out = []
        for o in node.get("outboundNodes") or []:
            out.extend(self._outbound(run, o))
        return out or [nid]

    # ------------------------------------------------------------------ inputs
    def _resolve_inputs(self, tmpl: dict[str, Any], args: dict[str, Any],
                        ) -> tuple[dict[str, Any], str | None]:
        """Bind arguments to a template's declared inputs (Argo ``ProcessArgs``)."""
        decl = tmpl.get("inputs") or {}
        arg_params = {p["name"]: p for p in args.get("parameters") or []}
        arg_arts = {a["name"]: a for a in args.get("artifacts") or []}
        params = []
        for p in decl.get("parameters") or []:
            q = dict(p)
            a = arg_params.get(p["name"])
            if a is not None and "value" in a:
                q["value"] = str(a["value"])
            elif "value" in p:
                q["value"] = str(p["value"])
            elif "default" in p:
                q["value"] = str(p["default"])
            else:
                return {}, f"inputs.parameters.{p['name']} was not supplied"
            params.append(q)
        arts = []
        for a in decl.get("artifacts") or []:
            loc_keys = ("s3", "raw", "http", "git", "gcs", "oss", "hdfs", "artifactory", "azure")
            if any(k in a for k in loc_keys):
                arts.append(dict(a))
                continue
            arg = arg_arts.get(a["name"])
            if arg is None:
                if a.get("optional"):
                    continue
                return {}, f"inputs.artifacts.{a['name']} was not supplied"
            art = {k: v for k, v in arg.items() if k not in ("from", "fromExpression")}
            art["name"] = a["name"]
            if a.get("path"):
                art["path"] = a["path"]
            else:
                art.pop("path", None)
            for k in ("mode", "recurseMode"):
                if k in a:
                    art[k] = a[k]
            arts.append(art)
        out: dict[str, Any] = {}
        if params:
            out["parameters"] = params
        if arts:
            out["artifacts"] = arts
        return out, None

    def _process_template(self, run: _Run, tmpl: dict[str, Any], inputs: dict[str, Any],
                          extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        env = dict(run.globals)
        if extra:
            env.update(extra)
        for p in inputs.get("parameters") or []:
            env[f"inputs.parameters.{p['name']}"] = p["value"]
        for a in inputs.get("artifacts") or []:
            if a.get("path"):
                env[f"inputs.artifacts.{a['name']}.path"] = a["path"]
        body = {k: v for k, v in tmpl.items() if k not in ("inputs", "dag")}
        out = substitute(body, env)
        if inputs:
            out["inputs"] = copy.deepcopy(inputs)
        if "dag" in tmpl:
            out["dag"] = tmpl["dag"]
        return ordered(out, ("name", "inputs", "outputs"))

    @staticmethod
    def _substitute_raw_data(run: _Run, inputs: dict[str, Any]) -> dict[str, Any]:
        """Argo's ``ProcessArgs`` substitutes over the whole template, bound inputs included, so
        a raw artifact's data may name a workflow parameter (KFP passes pipeline parameters
        to file inputs that way)."""
        arts = inputs.get("artifacts") or []
        if not any("raw" in a for a in arts):
            return inputs
        env = dict(run.globals)
        for p in inputs.get("parameters") or []:
            env[f"inputs.parameters.{p['name']}"] = p["value"]
        return {**inputs, "artifacts": [substitute(a, env) if "raw" in a else a for a in arts]}

    # ------------------------------------------------------------------ execution
    def _exec(self, run: _Run, node_name: str, tmpl_name: str, args: dict[str, Any],
              boundary: str, *, display: str | None = None, on_exit: bool = False,
              parallelism_boundary: tuple[str, int] | None = None,
              ) -> dict[str, Any] | None:
        """Argo ``executeTemplate``: create or advance the node for ``node_name``."""
        nid = naming.node_id(run.name, node_name)
        node = run.nodes.get(nid)
        if _fulfilled(node):
            return node
        tmpl = run.templates.get(tmpl_name)
        if node is None:
            if tmpl is None:
                return self._new_node(run, node_name, "Pod", tmpl_name, boundary, "Error",
                                      display=display,
                                      message=f"template {tmpl_name} not found")
            if node_name.count(".") > MAX_NODE_DEPTH:
                return self._new_node(run, node_name, "Skipped", tmpl_name, boundary, "Error",
                                      display=display, message="maximum recursion depth exceeded")
            if parallelism_boundary and not self._has_room(run, *parallelism_boundary):
                return None
            if ("container" in tmpl or "resource" in tmpl or "script" in tmpl) and \
                    "retryStrategy" not in tmpl and not self._wf_has_room(run):
                return None
            inputs, err = self._resolve_inputs(tmpl, args)
            if err:
                return self._new_node(run, node_name, "Pod", tmpl_name, boundary, "Error",
                                      display=display, message=err)
            inputs = self._substitute_raw_data(run, inputs)
        else:
            inputs = node.get("inputs") or {}
        assert tmpl is not None
        if "retryStrategy" in tmpl:
            return self._exec_retry(run, node, node_name, tmpl, inputs, boundary, display,
                                    on_exit)
        if "dag" in tmpl:
            if node is None:
                node = self._new_node(run, node_name, "DAG", tmpl_name, boundary, "Running",
                                      display=display, inputs=inputs)
            self._exec_dag(run, node, tmpl)
            return node
        if node is None:
            node = self._new_node(run, node_name, "Pod", tmpl_name, boundary, "Pending",
                                  display=display, inputs=inputs)
            node["progress"] = "0/1"
            self._start_pod(run, node, tmpl, inputs, on_exit)
        return node

    def _has_room(self, run: _Run, boundary_id: str, limit: int) -> bool:
        if limit <= 0:
            return True
        active = sum(
            1 for n in run.nodes.values()
            if n.get("boundaryID") == boundary_id and n["type"] in ("Pod", "DAG", "Steps")
            and n["phase"] in ("Pending", "Running")
        )
        return active < limit

    def _wf_has_room(self, run: _Run) -> bool:
        limit = run.spec.get("parallelism")
        if not limit:
            return True
        active = sum(1 for n in run.nodes.values()
                     if n["type"] == "Pod" and n["phase"] in ("Pending", "Running"))
        return active < int(limit)

    def _should_fail(self, node_name: str, template_name: str, attempt: int) -> bool:
        spec = self.fail
        if spec is None:
            return False
        if callable(spec):
            return bool(spec(node_name, template_name, attempt))
        if isinstance(spec, Mapping):
            task = node_name.rsplit(".", 1)[-1].split("(")[0]
            n = spec.get(template_name, spec.get(task, 0))
            return attempt < int(n)
        rng = random.Random(f"{self.seed}:fail:{node_name}")
        return rng.random() < float(spec)

    def _exec_retry(self, run: _Run, node: dict[str, Any] | None, node_name: str,
                    tmpl: dict[str, Any], inputs: dict[str, Any], boundary: str,
                    display: str | None, on_exit: bool) -> dict[str, Any] | None:
        if node is None:
            if not self._wf_has_room(run):
                return None
            node = self._new_node(run, node_name, "Retry", tmpl["name"], boundary, "Running",
                                  display=display, inputs=inputs)
        strategy = tmpl.get("retryStrategy") or {}
        limit = int(strategy["limit"]) if str(strategy.get("limit", "")).isdigit() else None
        children = node.get("children") or []
        if children:
            last = run.nodes[children[-1]]
            if not _fulfilled(last):
                return node
            if last["phase"] == "Succeeded":
                self._finish_node(node, "Succeeded")
                if last.get("outputs"):
                    node["outputs"] = copy.deepcopy(last["outputs"])
                return node
            if limit is not None and len(children) > limit:
                node["outputs"] = copy.deepcopy(last.get("outputs", {})) or node.get("outputs")
                if not node.get("outputs"):
                    node.pop("outputs", None)
                self._finish_node(node, last["phase"], "No more retries left")
                return node
        if not self._wf_has_room(run):
            return node
        attempt = len(children)
        child_name = f"{node_name}({attempt})"
        child = self._new_node(run, child_name, "Pod", tmpl["name"], boundary, "Pending",
                               display=f"{node['displayName']}({attempt})", inputs=inputs)
        child["progress"] = "0/1"
        if self.profile.node_flag:
            child["nodeFlag"] = {"retried": True}
        self._add_child(node, child["id"])
        self._start_pod(run, child, tmpl, inputs, on_exit, attempt=attempt)
        return node

    # ------------------------------------------------------------------ DAG
    def _exec_dag(self, run: _Run, node: dict[str, Any], tmpl: dict[str, Any]) -> None:
        tasks = {t["name"]: t for t in tmpl["dag"].get("tasks", [])}
        inputs = node.get("inputs") or {}
        scope = dict(run.globals)
        for p in inputs.get("parameters") or []:
            scope[f"inputs.parameters.{p['name']}"] = p["value"]
        arts = {a["name"]: a for a in inputs.get("artifacts") or []}
        ctx = _DagCtx(run, node, tmpl, tasks, scope, arts)
        dependents = {d for t in tasks.values() for d in _task_deps(t)}
        leaves = [n for n in tasks if n not in dependents]
        for name in leaves:
            self._exec_task(ctx, name)
        # assess the DAG
        states = []
        any_failed = False
        for name in tasks:
            tn = run.nodes.get(naming.node_id(run.name, f"{node['name']}.{name}"))
            if tn is None:
                states.append("pending")
            elif _fulfilled(tn):
                states.append("done")
                any_failed |= tn["phase"] in _FAILED
            else:
                states.append("running")
        if "running" in states:
            return
        if "pending" in states and not any_failed:
            return
        outbound: list[str] = []
        for name in leaves:
            tn = run.nodes.get(naming.node_id(run.name, f"{node['name']}.{name}"))
            if tn is not None:
                outbound.extend(self._outbound(run, tn["id"]))
        if outbound:
            node["outboundNodes"] = outbound
        if any_failed:
            failed = [n for n in tasks
                      if (run.nodes.get(naming.node_id(run.name, f"{node['name']}.{n}")) or {})
                      .get("phase") in _FAILED]
            self._finish_node(node, "Failed", f"child '{failed[0]}' failed" if failed else None)
        else:
            self._finish_node(node, "Succeeded")

    def _task_env(self, ctx: _DagCtx) -> dict[str, str]:
        env = dict(ctx.scope)
        for tname in ctx.tasks:
            tn = ctx.run.nodes.get(naming.node_id(ctx.run.name, f"{ctx.node['name']}.{tname}"))
            if tn is None:
                continue
            env[f"tasks.{tname}.status"] = tn["phase"]
            outs = tn.get("outputs") or {}
            for p in outs.get("parameters") or []:
                if "value" in p:
                    env[f"tasks.{tname}.outputs.parameters.{p['name']}"] = p["value"]
            if "result" in outs:
                env[f"tasks.{tname}.outputs.result"] = outs["result"]
            if "exitCode" in outs:
                env[f"tasks.{tname}.exitCode"] = outs["exitCode"]
        return env

    def _resolve_artifact(self, ctx: _DagCtx, ref: str) -> dict[str, Any] | None:
        tag = ref.strip()
        if tag.startswith("{{") and tag.endswith("}}"):
            tag = tag[2:-2].strip()
        parts = tag.split(".")
        if len(parts) == 3 and parts[:2] == ["inputs", "artifacts"]:
            art = ctx.artifacts.get(parts[2])
            return copy.deepcopy(art) if art else None
        if len(parts) == 5 and parts[0] == "tasks" and parts[2:4] == ["outputs", "artifacts"]:
            tn = ctx.run.nodes.get(naming.node_id(ctx.run.name, f"{ctx.node['name']}.{parts[1]}"))
            for a in ((tn or {}).get("outputs") or {}).get("artifacts") or []:
                if a["name"] == parts[4]:
                    return copy.deepcopy(a)
        return None

    def _exec_task(self, ctx: _DagCtx, name: str) -> None:
        if name in ctx.visited or name not in ctx.tasks:
            return
        ctx.visited.add(name)
        task = ctx.tasks[name]
        deps = _task_deps(task)
        for d in deps:
            self._exec_task(ctx, d)
        run = ctx.run
        boundary_name = ctx.node["name"]
        task_node_name = f"{boundary_name}.{name}"
        nid = naming.node_id(run.name, task_node_name)
        existing = run.nodes.get(nid)
        if _fulfilled(existing):
            if existing["phase"] in _FAILED:
                ctx.failed = True
            return
        dep_nodes = {d: run.nodes.get(naming.node_id(run.name, f"{boundary_name}.{d}"))
                     for d in deps}
        if any(not _fulfilled(n) for n in dep_nodes.values()):
            return

        if existing is not None and "withItems" not in task and "withParam" not in task:
            node = self._exec(run, task_node_name, task["template"], {}, ctx.node["id"])
            if node is not None and node.get("phase") in _FAILED:
                ctx.failed = True
            return

        def connect(child_id: str) -> None:
            if not deps:
                self._add_child(ctx.node, child_id)
                return
            for dn in dep_nodes.values():
                assert dn is not None
                for out in self._outbound(run, dn["id"]):
                    self._add_child(run.nodes[out], child_id)

        if existing is None:
            if ctx.failed and ctx.tmpl.get("failFast", True) is not False:
                return
            phases = {d: n["phase"] for d, n in dep_nodes.items() if n is not None}
            if task.get("depends"):
                ok = evaluate_depends(task["depends"], phases)
            else:
                ok = all(p in ("Succeeded", "Skipped") for p in phases.values())
            if not ok:
                n = self._new_node(run, task_node_name, "Skipped", task.get("template"),
                                   ctx.node["id"], "Omitted",
                                   message="omitted: depends condition not met")
                connect(n["id"])
                return
        env = self._task_env(ctx)
        resolved = substitute({k: v for k, v in task.items() if k != "name"}, env)
        args = resolved.get("arguments") or {}
        art_args = []
        for a in args.get("artifacts") or []:
            if "from" in a:
                src = self._resolve_artifact(ctx, a["from"])
                if src is None:
                    if a.get("optional"):
                        continue
                    art_args.append({"name": a["name"], "from": a["from"]})
                    continue
                src["name"] = a["name"]
                art_args.append(src)
            else:
                art_args.append(a)
        base_args = {"parameters": args.get("parameters") or [], "artifacts": art_args}
        limit = int(ctx.tmpl.get("parallelism") or 0)
        pb = (ctx.node["id"], limit) if limit else None
        tmpl_name = task["template"]

        items: list[Any] | None = None
        if "withItems" in resolved:
            items = list(resolved["withItems"] or [])
        elif "withParam" in resolved:
            raw = resolved["withParam"]
            try:
                items = json.loads(raw) if isinstance(raw, str) else list(raw)
            except ValueError:
                items = None
            if not isinstance(items, list):
                if existing is None:
                    n = self._new_node(run, task_node_name, "Skipped", tmpl_name,
                                       ctx.node["id"], "Error",
                                       message=f"withParam value could not be parsed as a "
                                               f"JSON list: {raw}")
                    connect(n["id"])
                return

        if items is None:
            when = resolved.get("when")
            if existing is None and when:
                try:
                    go = evaluate(when)
                except ExpressionError as e:
                    n = self._new_node(run, task_node_name, "Skipped", tmpl_name,
                                       ctx.node["id"], "Error", message=f"invalid when: {e}")
                    connect(n["id"])
                    return
                if not go:
                    n = self._new_node(run, task_node_name, "Skipped", tmpl_name,
                                       ctx.node["id"], "Skipped",
                                       message=f"when '{when}' evaluated false")
                    connect(n["id"])
                    return
            node = self._exec(run, task_node_name, tmpl_name, base_args, ctx.node["id"],
                              parallelism_boundary=pb)
            if node is not None and existing is None:
                connect(node["id"])
            if node is not None and node.get("phase") in _FAILED:
                ctx.failed = True
            return

        # loops: a TaskGroup node with one child per item
        if existing is None:
            if not items:
                n = self._new_node(run, task_node_name, "Skipped", tmpl_name, ctx.node["id"],
                                   "Skipped", message="Skipped, empty params")
                connect(n["id"])
                return
            existing = self._new_node(run, task_node_name, "TaskGroup", tmpl_name,
                                      ctx.node["id"], "Running")
            connect(existing["id"])
        group = existing
        all_done = True
        group_failed = False
        for i, item in enumerate(items):
            item_env, desc = self._item_env(item)
            child_name = f"{task_node_name}({i}:{desc})"
            cid = naming.node_id(run.name, child_name)
            child = run.nodes.get(cid)
            if child is None:
                t_args = substitute(base_args, item_env)
                when = substitute(resolved.get("when"), item_env)
                if when:
                    try:
                        go = evaluate(when)
                    except ExpressionError:
                        go = False
                    if not go:
                        child = self._new_node(run, child_name, "Skipped", tmpl_name,
                                               ctx.node["id"], "Skipped",
                                               display=f"{name}({i}:{desc})",
                                               message=f"when '{when}' evaluated false")
                        self._add_child(group, cid)
                        continue
                child = self._exec(run, child_name, tmpl_name, t_args, ctx.node["id"],
                                   display=f"{name}({i}:{desc})", parallelism_boundary=pb)
                if child is None:
                    all_done = False
                    continue
                self._add_child(group, cid)
            elif not _fulfilled(child):
                child = self._exec(run, child_name, tmpl_name, {}, ctx.node["id"])
            if child is None or not _fulfilled(child):
                all_done = False
            elif child["phase"] in _FAILED:
                group_failed = True
        if all_done:
            self._finish_node(group, "Failed" if group_failed else "Succeeded")
            if group_failed:
                ctx.failed = True

    @staticmethod
    def _item_env(item: Any) -> tuple[dict[str, str], str]:
        env: dict[str, str] = {}
        if isinstance(item, dict):
            vals = []
            for k, v in item.items():
                env[f"item.{k}"] = item_string(v)
                vals.append(f"{k}:{item_string(v)}")
            env["item"] = go_json(item)
            return env, ",".join(sorted(vals))
        if isinstance(item, list):
            env["item"] = go_json(item)
            return env, "[" + " ".join(item_string(v) for v in item) + "]"
        env["item"] = item_string(item)
        return env, item_string(item)

    # ------------------------------------------------------------------ pods
    def _archive_location(self, run: _Run, pod_name: str) -> tuple[dict[str, Any], str]:
        repo = run.repo
        env = dict(run.globals)
        env["pod.name"] = pod_name
        loc: dict[str, Any] = {}
        if "archiveLogs" in repo:
            loc["archiveLogs"] = repo["archiveLogs"]
        key = ""
        if "s3" in repo:
            s3 = {k: v for k, v in repo["s3"].items() if k != "keyFormat"}
            key = substitute(repo["s3"].get("keyFormat") or "{{workflow.name}}/{{pod.name}}", env)
            s3["key"] = key
            loc["s3"] = s3
        return loc, key

    def _deadline(self, run: _Run) -> str:
        ads = run.spec.get("activeDeadlineSeconds")
        if not ads:
            return ZERO_TIME
        start = datetime.strptime(run.started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return _ts(start + timedelta(seconds=int(ads)))

    def _start_pod(self, run: _Run, node: dict[str, Any], tmpl: dict[str, Any],
                   inputs: dict[str, Any], on_exit: bool, attempt: int = 0) -> None:
        prof = self.profile
        tname = tmpl["name"]
        pname = naming.pod_name(run.name, node["name"], tname, prof.pod_name_format,
                                empty_template_gives_wf=prof.empty_template_pod_name)
        extra = {"pod.name": pname, "node.name": node["name"],
                 "retries": str(attempt)}
        if on_exit:
            root = run.nodes.get(run.name)
            extra["workflow.status"] = (root or {}).get("phase", "Running")
        processed = self._process_template(run, tmpl, inputs, extra)
        archive, key = self._archive_location(run, pname)
        full = template_for_pod(processed, archive)
        full_json = template_json(full)
        if prof.template_inputs_artifacts_only:
            env_json = template_json(template_for_pod(processed, archive,
                                                      inputs_artifacts_only=True))
        else:
            env_json = full_json
        is_resource = "resource" in processed
        pr = _PodRun(node_id=node["id"], node_name=node["name"], pod_name=pname,
                     template=processed, archive_key=key, on_exit=on_exit,
                     created_step=self.steps, is_resource=is_resource)
        pod = self._build_pod(run, node, processed, pname, full_json, env_json, on_exit)
        if prof.offload_template_bytes and len(env_json) > prof.offload_template_bytes:
            self._offload_template(run, pod, pname, env_json)
        if self.cache is not None:
            hit = self.cache.mutate(self._sink, run.namespace, pod, prof)
            if hit is not None:
                pr.cache_hit = True
                pr.cached_outputs = hit
        created = self._sink.create("pods", pod)
        pr.uid = created["metadata"].get("uid", "")
        run.pods[node["id"]] = pr
        if pr.cache_hit and pr.cached_outputs:
            self._emit_outputs(run, pr, "annotation")

    def _offload_template(self, run: _Run, pod: dict[str, Any], pname: str, value: str) -> None:
        cm = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": pname, "namespace": run.namespace,
                           "labels": {LABEL_WORKFLOW: run.name},
                           "ownerReferences": [owner_ref_workflow(run.name, run.uid)]},
              "data": {"template": value}}
        self._sink.create("configmaps", cm)
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"] == "ARGO_TEMPLATE":
                    e["value"] = "offloaded"
                    c.setdefault("volumeMounts", []).append(
                        {"name": "argo-template", "mountPath": "/argo/config"})
        pod["spec"]["volumes"].append({"name": "argo-template", "configMap": {"name": pname}})

    def _build_pod(self, run: _Run, node: dict[str, Any], tmpl: dict[str, Any], pname: str,
                   full_json: str, env_json: str, on_exit: bool) -> dict[str, Any]:
        prof = self.profile
        spec = run.spec
        labels: dict[str, str] = {LABEL_WORKFLOW: run.name, LABEL_COMPLETED: "false"}
        if on_exit:
            labels[LABEL_ON_EXIT] = "true"
        ann: dict[str, str] = {ANN_NODE_NAME: node["name"]}
        if prof.node_id_annotation:
            ann[ANN_NODE_ID] = node["id"]
        if prof.default_container_annotation:
            ann[ANN_DEFAULT_CONTAINER] = "main"
        if prof.template_annotation:
            ann[ANN_TEMPLATE] = full_json
        pm = spec.get("podMetadata") or {}
        labels.update(pm.get("labels") or {})
        ann.update(pm.get("annotations") or {})
        md = tmpl.get("metadata") or {}
        labels.update(md.get("labels") or {})
        ann.update(md.get("annotations") or {})

        deadline = self._deadline(run)
        env_kw = {"wf_name": run.name, "wf_uid": run.uid, "node_id": node["id"],
                  "deadline": deadline}
        tv_all = env_json if prof.template_env == "all" else None
        tv_init = env_json if prof.template_env in ("all", "init") else None
        emissary = prof.executor == "emissary"
        in_arts = (tmpl.get("inputs") or {}).get("artifacts") or []
        is_resource = "resource" in tmpl
        volumes: list[dict[str, Any]] = []
        exec_mounts: list[dict[str, Any]] = []
        if emissary:
            volumes.append({"name": "var-run-argo", "emptyDir": {}})
            exec_mounts.append({"name": "var-run-argo", "mountPath": "/var/run/argo"})
        else:
            volumes.append({"name": "podmetadata", "downwardAPI": {"items": [
                {"path": "annotations", "fieldRef": {"apiVersion": "v1",
                                                     "fieldPath": "metadata.annotations"}}]}})
            volumes.append({"name": "docker-sock",
                            "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}})
        if in_arts:
            volumes.append({"name": "input-artifacts", "emptyDir": {}})

        def executor_container(cname: str, verb: str, tv: str | None,
                               mounts: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
            return ordered({
                "name": cname, "image": prof.executor_image,
                "command": executor_command(prof, verb, *extra),
                "env": executor_env(prof, cname, template_value=tv, **env_kw),
                "resources": {}, "volumeMounts": mounts,
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
            }, ())

        init_containers = []
        if emissary or in_arts:
            mounts = list(exec_mounts)
            if in_arts:
                mounts.append({"name": "input-artifacts", "mountPath": "/argo/inputs/artifacts"})
            if not emissary:
                mounts.append({"name": "podmetadata", "mountPath": "/argo/podmetadata"})
            init_containers.append(executor_container("init", "init", tv_init, mounts))
        containers = []
        if not is_resource:
            wmounts = list(exec_mounts)
            if emissary and prof.version not in ("3.1", "3.3"):
                volumes.append({"name": "tmp-dir-argo", "emptyDir": {}})
                wmounts.append({"name": "tmp-dir-argo", "mountPath": "/tmp"})
            if not emissary:
                wmounts = [{"name": "podmetadata", "mountPath": "/argo/podmetadata"},
                           {"name": "docker-sock", "mountPath": "/var/run/docker.sock",
                            "readOnly": True}]
            containers.append(executor_container("wait", "wait", tv_all, wmounts))
        main_env = executor_env(prof, "main", template_value=tv_all, **env_kw)
        emissary_prefix = ["/var/run/argo/argoexec", "emissary", "--loglevel", "info"]
        if prof.log_format_flag:
            emissary_prefix += ["--log-format", "text"]
        emissary_prefix.append("--")
        if is_resource:
            action = tmpl["resource"].get("action", "create")
            main = executor_container("main", "resource", tv_all, list(exec_mounts), action)
        else:
            c = copy.deepcopy(tmpl.get("container") or {})
            user_env = c.get("env") or []
            cmd = list(c.get("command") or [])
            if emissary:
                cmd = [*emissary_prefix, *cmd]
            mounts = list(c.get("volumeMounts") or []) + list(exec_mounts)
            for a in in_arts:
                if a.get("path"):
                    mounts.append({"name": "input-artifacts", "mountPath": a["path"],
                                   "subPath": a["name"]})
            c.update({"name": "main", "command": cmd, "env": list(user_env) + main_env,
                      "resources": c.get("resources") or {}, "volumeMounts": mounts,
                      "terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File",
                      "imagePullPolicy": c.get("imagePullPolicy") or (
                          "Always" if str(c.get("image", "")).endswith(":latest")
                          else "IfNotPresent")})
            if not c.get("args"):
                c.pop("args", None)
            main = ordered(c, CONTAINER_ORDER)
        containers.append(main)
        # Template sidecars follow main, with main's Argo env; the emissary wraps their
        # commands too, and `mirrorVolumeMounts` gives them main's own mounts.
        for sidecar in tmpl.get("sidecars") or []:
            s = copy.deepcopy(sidecar)
            mirror = s.pop("mirrorVolumeMounts", False)
            cmd = list(s.get("command") or [])
            if emissary:
                cmd = [*emissary_prefix, *cmd]
            mounts = list(s.get("volumeMounts") or [])
            if mirror:
                mounts += list((tmpl.get("container") or {}).get("volumeMounts") or [])
            s.update({"command": cmd, "env": list(s.get("env") or []) + executor_env(
                          prof, s["name"], template_value=tv_all, **env_kw),
                      "resources": s.get("resources") or {},
                      "volumeMounts": mounts + list(exec_mounts),
                      "terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File",
                      "imagePullPolicy": s.get("imagePullPolicy") or "IfNotPresent"})
            containers.append(ordered(s, CONTAINER_ORDER))
        # volumes: the template's, plus workflow volumes the containers mount
        volumes.extend(copy.deepcopy(tmpl.get("volumes") or []))
        mounted = {m["name"] for ct in containers for m in ct.get("volumeMounts") or []}
        have = {v["name"] for v in volumes}
        for v in substitute(spec.get("volumes") or [], run.globals):
            if v["name"] in mounted and v["name"] not in have:
                volumes.append(v)
        pod_spec: dict[str, Any] = {"volumes": volumes}
        if init_containers:
            pod_spec["initContainers"] = init_containers
        pod_spec["containers"] = containers
        pod_spec["restartPolicy"] = "Never"
        pod_spec["terminationGracePeriodSeconds"] = 30
        if tmpl.get("activeDeadlineSeconds"):
            pod_spec["activeDeadlineSeconds"] = int(tmpl["activeDeadlineSeconds"])
        pod_spec["dnsPolicy"] = spec.get("dnsPolicy", "ClusterFirst")
        node_selector = tmpl.get("nodeSelector") or spec.get("nodeSelector")
        if node_selector:
            pod_spec["nodeSelector"] = node_selector
        sa = tmpl.get("serviceAccountName") or spec.get("serviceAccountName") or "default"
        pod_spec["serviceAccountName"] = sa
        pod_spec["serviceAccount"] = sa
        for k in ("securityContext", "affinity", "tolerations", "hostAliases",
                  "imagePullSecrets", "priorityClassName", "dnsConfig", "schedulerName"):
            v = tmpl.get(k) if k in tmpl else spec.get(k)
            if v is not None:
                pod_spec[k] = copy.deepcopy(v)
        pod_spec.setdefault("securityContext", {})
        pod_spec.setdefault("schedulerName", "default-scheduler")
        pod_spec["enableServiceLinks"] = True
        pod_spec["preemptionPolicy"] = "PreemptLowerPriority"
        pod_spec["priority"] = 0
        if tmpl.get("podSpecPatch"):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                merge_pod_spec_patch(pod_spec, json.loads(tmpl["podSpecPatch"]))
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pname,
                "namespace": run.namespace,
                "labels": labels,
                "annotations": ann,
                "ownerReferences": [owner_ref_workflow(run.name, run.uid)],
            },
            "spec": pod_spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort"},
        }

    # ------------------------------------------------------------------ kubelet + executor
    def _container_names(self, pr: _PodRun, pod: dict[str, Any] | None) -> tuple[
            list[tuple[str, str]], list[tuple[str, str]]]:
        if pod is None:
            return [], []
        spec = pod.get("spec") or {}
        inits = [(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []]
        mains = sorted((c["name"], c.get("image", "")) for c in spec.get("containers") or [])
        return inits, mains

    def _advance_pods(self, run: _Run) -> bool:
        changed = False
        for pr in list(run.pods.values()):
            if pr.created_step >= self.steps or pr.deleted:
                continue
            if pr.stage == "pending":
                self._pod_running(run, pr)
            elif pr.stage == "running":
                if pr.cache_hit:
                    self._pod_finished(run, pr)
                else:
                    self._pod_report(run, pr)
            elif pr.stage == "reported":
                self._pod_finished(run, pr)
            else:
                continue
            changed = True
        if changed:
            run.dirty = True
        return changed

    def _pod_patch(self, run: _Run, pr: _PodRun, patch: dict[str, Any]) -> dict[str, Any] | None:
        obj = self._sink.patch("pods", run.namespace, pr.pod_name, patch)
        if obj is None:
            pr.deleted = True
        return obj

    def _pod_running(self, run: _Run, pr: _PodRun) -> None:
        now = self._now()
        pr.started = now
        pod = self._sink.get("pods", run.namespace, pr.pod_name)
        if pod is None:
            pr.deleted = True
            return
        inits, mains = self._container_names(pr, pod)
        status = {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "hostIP": "10.0.0.2", "podIP": f"10.244.0.{len(run.pods) % 250 + 2}",
            "startTime": now,
            "containerStatuses": [container_status(n, img, "running", started=now,
                                                   container_id_seed=f"{pr.uid}-{n}")
                                  for n, img in mains],
            "qosClass": "BestEffort",
        }
        if inits:
            status["initContainerStatuses"] = [
                container_status(n, img, "terminated", started=now, finished=now,
                                 container_id_seed=f"{pr.uid}-{n}") for n, img in inits]
        patch: dict[str, Any] = {"spec": {"nodeName": "sandbox-node-1"}, "status": status}
        prof = self.profile
        if not pr.cache_hit and not pr.is_resource:
            if prof.uses_taskresults and prof.taskresult_created_early:
                self._write_taskresult(run, pr, None, completed=False)
            elif not prof.uses_taskresults and prof.report_outputs_completed:
                patch["metadata"] = {"annotations": {ANN_REPORT_COMPLETED: "false"}}
        if self._pod_patch(run, pr, patch) is not None:
            pr.stage = "running"

    def _write_taskresult(self, run: _Run, pr: _PodRun, outputs: dict[str, Any] | None,
                          completed: bool) -> None:
        obj = task_result(self.profile, namespace=run.namespace, node_id=pr.node_id,
                          wf_name=run.name, wf_uid=run.uid, pod_name=pr.pod_name,
                          pod_uid=pr.uid, outputs=outputs, completed=completed)
        if not pr.taskresult:
            self._sink.create("workflowtaskresults", obj)
            pr.taskresult = True
            return
        patch: dict[str, Any] = {"metadata": {"labels": obj["metadata"]["labels"]}}
        if outputs:
            patch["outputs"] = outputs
        if self._sink.patch("workflowtaskresults", run.namespace, pr.node_id, patch) is None:
            self._sink.create("workflowtaskresults", obj)

    def _compute_outputs(self, run: _Run, pr: _PodRun, failed: bool) -> dict[str, Any]:
        tmpl = pr.template
        decl = tmpl.get("outputs") or {}
        rng = random.Random(f"{self.seed}:{run.name}:{pr.node_name}")
        values: dict[str, str] = {}
        params = []
        prefix = f"{tmpl['name']}-"
        if not failed:
            for p in decl.get("parameters") or []:
                short = p["name"][len(prefix):] if p["name"].startswith(prefix) else p["name"]
                vf = p.get("valueFrom") or {}
                ctx = OutputContext(
                    workflow_name=run.name, node_name=pr.node_name, template_name=tmpl["name"],
                    output_name=p["name"], short_name=short,
                    output_type=lookup_output_type(tmpl, short),
                    loop_item_fields=run.loop_fields.get((tmpl["name"], p["name"])),
                    rng=rng, template=tmpl, json_path=vf.get("jsonPath"),
                )
                value = self.output_values(ctx)
                if value is None:
                    value = default_output_value(ctx)
                if vf.get("path"):
                    values[vf["path"]] = value
                q = {"name": p["name"], "value": value}
                if vf:
                    q["valueFrom"] = vf
                params.append(q)
        arts = []
        for a in decl.get("artifacts") or []:
            if failed and not a.get("optional"):
                continue
            if failed:
                continue
            archive = a.get("archive") or {}
            if "none" in archive:
                fname = a["name"]
            elif "zip" in archive:
                fname = f"{a['name']}.zip"
            else:
                fname = f"{a['name']}.tgz"
            art = {k: v for k, v in a.items() if k not in ("from",)}
            art["s3"] = {"key": f"{pr.archive_key}/{fname}"}
            arts.append(order_artifact(art))
        if run.repo.get("archiveLogs") and not pr.is_resource:
            arts.append({"name": "main-logs", "s3": {"key": f"{pr.archive_key}/main.log"}})
        out: dict[str, Any] = {}
        if params:
            out["parameters"] = params
        if arts:
            out["artifacts"] = arts
        return out

    def _pod_report(self, run: _Run, pr: _PodRun) -> None:
        node = run.nodes.get(pr.node_id) or {}
        attempt = 0
        if node.get("name", "").endswith(")") and "(" in node["name"]:
            tail = node["name"].rsplit("(", 1)[1][:-1]
            attempt = int(tail) if tail.isdigit() else 0
        failed = self._should_fail(pr.node_name, pr.template["name"], attempt)
        pr.exit_code = 1 if failed else 0
        outputs = self._compute_outputs(run, pr, failed)
        pr.outputs = outputs
        prof = self.profile
        if prof.uses_taskresults:
            if outputs or prof.report_outputs_completed:
                self._write_taskresult(run, pr, outputs, completed=True)
        else:
            ann = {ANN_OUTPUTS: json.dumps(outputs, separators=(",", ":"))} if outputs else {}
            if prof.report_outputs_completed:
                ann[ANN_REPORT_COMPLETED] = "true"
            if ann and self._pod_patch(run, pr, {"metadata": {"annotations": ann}}) is None:
                return
        pr.stage = "reported"
        if outputs:
            self._emit_outputs(run, pr, "taskresult" if prof.uses_taskresults else "annotation")

    def _emit_outputs(self, run: _Run, pr: _PodRun, channel: str) -> None:
        ev = OutputsVisible(namespace=run.namespace, workflow=run.name, node_id=pr.node_id,
                            node_name=pr.node_name, pod_name=pr.pod_name, channel=channel,
                            at=self.clock(), monotonic=time.monotonic())
        self.outputs_log.append(ev)
        for fn in list(self.on_outputs):
            fn(ev)

    def _pod_finished(self, run: _Run, pr: _PodRun) -> None:
        now = self._now()
        pr.finished = now
        pod = self._sink.get("pods", run.namespace, pr.pod_name)
        if pod is None:
            pr.deleted = True
            return
        _, mains = self._container_names(pr, pod)
        statuses = []
        for n, img in mains:
            code = pr.exit_code if n == "main" else 0
            statuses.append(container_status(n, img, "terminated", started=pr.started or now,
                                             finished=now, exit_code=code,
                                             container_id_seed=f"{pr.uid}-{n}"))
        phase = "Failed" if pr.exit_code else "Succeeded"
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": pr.started or now},
                {"type": "Ready", "status": "False", "lastProbeTime": None,
                 "lastTransitionTime": now, "reason": "PodCompleted"},
                {"type": "ContainersReady", "status": "False", "lastProbeTime": None,
                 "lastTransitionTime": now, "reason": "PodCompleted"},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": pr.started or now}],
            "containerStatuses": statuses,
        }
        if phase == "Failed":
            status["message"] = ""
        if self._pod_patch(run, pr, {"status": status}) is not None:
            pr.stage = "finished"

    # ------------------------------------------------------------------ controller
    def _operate(self, run: _Run) -> None:
        if not run.dirty:
            return  # nothing happened since the last pass: operate would be a no-op
        run.dirty = False
        # 1. assess pods into nodes
        for pr in run.pods.values():
            node = run.nodes.get(pr.node_id)
            if node is None or _fulfilled(node):
                continue
            if pr.deleted and pr.stage not in ("finished", "assessed", "cleaned"):
                self._finish_node(node, "Error", "pod deleted")
                pr.stage = "assessed"
                continue
            if pr.stage in ("running", "reported") and node["phase"] == "Pending":
                node["phase"] = "Running"
                node["hostNodeName"] = "sandbox-node-1"
            elif pr.stage == "finished":
                self._assess(run, pr, node)
        # 2. evaluate the workflow
        entry = run.spec.get("entrypoint", "")
        args = run.spec.get("arguments") or {}
        root = self._exec(run, run.name, entry, args, "", display=run.name)
        complete = False
        if _fulfilled(root):
            assert root is not None
            on_exit = run.spec.get("onExit")
            if on_exit:
                exit_node = self._exec(run, f"{run.name}.onExit", on_exit, args, "",
                                       display="onExit", on_exit=True)
                complete = _fulfilled(exit_node)
            else:
                complete = True
            if complete:
                run.phase = "Succeeded"
                exit_failed = on_exit and (run.nodes.get(
                    naming.node_id(run.name, f"{run.name}.onExit")) or {}).get(
                    "phase") in _FAILED
                if root["phase"] in _FAILED or exit_failed:
                    run.phase = "Failed"
                    run.message = root.get("message") or "child failed"
                run.finished_at = self._now()
        # 3. persist, then 4. pod cleanup (label / delete) and task result deletion
        self._persist(run)
        for pr in run.pods.values():
            if pr.stage == "assessed":
                self._cleanup_pod(run, pr, run.phase if complete else "Running")
        if complete:
            self._delete_taskresults(run)
            run.done = True

    def _assess(self, run: _Run, pr: _PodRun, node: dict[str, Any]) -> None:
        outputs = copy.deepcopy(pr.cached_outputs if pr.cache_hit else pr.outputs) or {}
        if pr.cache_hit and self.profile.outputs == "taskresult" and \
                self.profile.version not in ("3.3", "3.5"):
            outputs = {}  # >= 3.6 never reads the outputs annotation
        outputs["exitCode"] = str(pr.exit_code)
        node["outputs"] = order_io(outputs)
        node["progress"] = "1/1" if pr.exit_code == 0 else "0/1"
        start = node.get("startedAt") or self._now()
        node["hostNodeName"] = "sandbox-node-1"
        if pr.exit_code:
            self._finish_node(node, "Failed", f"Error (exit code {pr.exit_code})")
        else:
            self._finish_node(node, "Succeeded")
        secs = max(1, self._seconds_between(start, node["finishedAt"]))
        node["resourcesDuration"] = {"cpu": secs, "memory": secs}
        pr.stage = "assessed"

    @staticmethod
    def _seconds_between(a: str, b: str) -> int:
        try:
            fa = datetime.strptime(a, "%Y-%m-%dT%H:%M:%SZ")
            fb = datetime.strptime(b, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return 0
        return int((fb - fa).total_seconds())

    def _cleanup_action(self, run: _Run, pr: _PodRun, wf_phase: str) -> str:
        """Argo ``determinePodCleanupAction`` (pod_cleanup.go)."""
        strategy = run.pod_gc
        completed = wf_phase in ("Succeeded", "Failed", "Error")
        node_phase = (run.nodes.get(pr.node_id) or {}).get("phase")
        pod_phase = "Succeeded" if node_phase == "Succeeded" else "Failed"
        if run.pod_gc_selector:
            pod = self._sink.get("pods", run.namespace, pr.pod_name) or {}
            labels = (pod.get("metadata") or {}).get("labels") or {}
            if any(labels.get(k) != v for k, v in run.pod_gc_selector.items()):
                return "label"
        if not strategy:
            return "label"
        if strategy == "OnWorkflowCompletion" and completed:
            return "delete"
        if strategy == "OnWorkflowSuccess" and wf_phase == "Succeeded":
            return "delete"
        if strategy == "OnPodCompletion":
            return "delete"
        if strategy == "OnPodSuccess" and pod_phase == "Succeeded":
            return "delete"
        if strategy == "OnPodSuccess" and pod_phase == "Failed":
            return "label"
        if completed:
            return "label"
        return ""

    def _cleanup_pod(self, run: _Run, pr: _PodRun, wf_phase: str) -> None:
        if pr.deleted:
            pr.stage = "cleaned"
            return
        action = self._cleanup_action(run, pr, wf_phase)
        if action == "label":
            obj = self._pod_patch(run, pr, {"metadata": {"labels": {LABEL_COMPLETED: "true"}}})
            pr.stage = "cleaned"
            if obj is not None and self.cache is not None:
                self.cache.observe(self._sink, run.namespace, obj)
        elif action == "delete":
            self._sink.delete("pods", run.namespace, pr.pod_name)
            pr.deleted = True
            pr.stage = "cleaned"

    def _delete_taskresults(self, run: _Run) -> None:
        if self._sink.buffered:
            for key in [k for k, o in self._sink.objects.items()
                        if k[0] == "workflowtaskresults" and k[1] == run.namespace
                        and o["metadata"].get("labels", {}).get(LABEL_WORKFLOW) == run.name]:
                self._sink.objects.pop(key, None)
            return
        for pr in run.pods.values():
            if pr.taskresult:
                self._sink.delete("workflowtaskresults", run.namespace, pr.node_id)
        for obj in self.cluster.list("workflowtaskresults", run.namespace,
                                     f"{LABEL_WORKFLOW}={run.name}"):
            self._sink.delete("workflowtaskresults", run.namespace, obj["metadata"]["name"])

    # ------------------------------------------------------------------ status
    def _progress(self, run: _Run) -> None:
        pods = [n for n in run.nodes.values() if n["type"] == "Pod"]
        for n in run.nodes.values():
            if n["type"] == "Pod":
                continue
            if n["phase"] in ("Skipped", "Omitted") and n["type"] == "Skipped":
                continue
            prefix_dot, prefix_par = n["name"] + ".", n["name"] + "("
            under = [p for p in pods if p["name"].startswith((prefix_dot, prefix_par))]
            if n["id"] == run.name:
                under = pods
            if under:
                done = sum(1 for p in under if p.get("progress") == "1/1")
                n["progress"] = f"{done}/{len(under)}"

    def build_status(self, run: _Run) -> dict[str, Any]:
        """The Workflow ``status`` for a run's current state."""
        self._progress(run)
        nodes = {nid: ordered(n, NODE_ORDER) for nid, n in run.nodes.items()}
        pods = [n for n in nodes.values() if n["type"] == "Pod"]
        done = sum(1 for p in pods if p.get("progress") == "1/1")
        status: dict[str, Any] = {"phase": run.phase, "startedAt": run.started_at,
                                  "finishedAt": run.finished_at or None}
        if run.message and run.phase in _FAILED:
            status["message"] = run.message
        status["progress"] = f"{done}/{len(pods)}"
        if self.compress_nodes:
            raw = json.dumps(nodes, separators=(",", ":")).encode()
            status["compressedNodes"] = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
        else:
            status["nodes"] = nodes
        status["artifactRepositoryRef"] = {"default": True,
                                           "artifactRepository": copy.deepcopy(run.repo)}
        running = any(n["phase"] in ("Pending", "Running") for n in pods)
        status["conditions"] = [{"type": "PodRunning", "status": "True" if running else "False"}]
        if run.done or run.finished_at:
            status["conditions"].append({"type": "Completed", "status": "True"})
        cpu = sum((n.get("resourcesDuration") or {}).get("cpu", 0) for n in pods)
        if cpu:
            status["resourcesDuration"] = {"cpu": cpu, "memory": cpu}
        if self.profile.task_results_completion_status and self.profile.uses_taskresults:
            trs = {pr.node_id: pr.stage not in ("pending", "running")
                   for pr in run.pods.values() if not pr.cache_hit}
            if trs:
                status["taskResultsCompletionStatus"] = trs
        return status

    def _persist(self, run: _Run, force: bool = False) -> None:
        if self._sink.buffered and not force:
            return  # fast mode: written once by flush()
        status = self.build_status(run)
        completed = bool(run.finished_at)
        labels = {LABEL_COMPLETED: "true" if completed else "false",
                  "workflows.argoproj.io/phase": run.phase}
        if not completed:
            status.pop("finishedAt", None)
        blob = json.dumps([status, labels], sort_keys=True)
        if blob == run.last_status and not force:
            return
        run.last_status = blob
        # a JSON patch replacing the whole status (as the controller's Update does), so
        # node fields keep their Go order and nothing stale survives
        patch: list[dict[str, Any]] = [{"op": "add", "path": "/status", "value": status}]
        patch += [{"op": "add", "path": "/metadata/labels/" + k.replace("~", "~0")
                   .replace("/", "~1"), "value": v} for k, v in labels.items()]
        try:
            self.cluster.patch("workflows", run.namespace, run.name, patch, "json")
        except ClusterError as e:
            if e.status != 404:
                raise
            run.done = True  # deleted behind our back

    def flush(self) -> None:
        """Write buffered objects (fast mode) and the current status of every workflow."""
        with self._lock:
            self._sink.flush()
            for run in self._all:
                self._persist(run, force=True)
