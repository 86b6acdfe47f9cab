"""KFP's persistence agent and workflow TTL, played against the sandbox cluster.

In KFP the persistence agent watches Workflows and reports each change to
the API server, which stores the run's Workflow in `run_details`; once a
finished run is stored, the API server labels its Workflow
`pipeline/persistedFinalState=true`, and when the agent sees that label on a
Workflow finished more than `TTL_SECONDS_AFTER_WORKFLOW_FINISH` ago (86400
in KFP's manifests) it reports once more and the API server deletes the
Workflow -- and Kubernetes' garbage collector its pods
(`persistence/worker/workflow_saver.go`, `ReportWorkflowResource`, 1.8.5
and 2.x). With Argo's archive on, Argo's controller also archives each
completed Workflow.

`PersistenceAgent.sync()` does one round of all of that over the cluster's
Workflows; call it as often as an informer would see changes (the demo and
tests call it between simulator steps). Opt-in: nothing in the simulator
calls it. How each run's nodes are stored can be chosen per run
(`nodes_form`): as they are, gzip+base64 `compressedNodes` (what Argo does
with a large Workflow), or offloaded (what Argo's node-status offloading
leaves: no nodes, an `offloadNodeStatusVersion`).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sandbox.argo_archive import ArgoArchiveWriter
from sandbox.cluster import Cluster, ClusterError
from sandbox.kfp_runstore import KfpRunStore
from sandbox.simulator.engine import wall_clock
from sandbox.simulator.naming import fnv32a

JSON = dict[str, Any]
NodesForm = Literal["nodes", "compressed", "offloaded"]

RUN_ID_LABEL = "pipeline/runid"
PERSISTED_FINAL_STATE_LABEL = "pipeline/persistedFinalState"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
KFP_WORKFLOW_TTL_S = 86400.0
FINAL_PHASES = frozenset({"Succeeded", "Failed", "Error", "Skipped"})
# What Kubernetes' garbage collector deletes with a Workflow (its ownerReferences).
OWNED_RESOURCES = ("pods", "workflowtaskresults", "configmaps")


def keep_nodes(index: int) -> NodesForm:
    """Every run's nodes stored as they are."""
    return "nodes"


def every_second_compressed(index: int) -> NodesForm:
    """The second, fourth, ... run's nodes stored as `compressedNodes`."""
    return "compressed" if index % 2 else "nodes"


def stored_form(workflow: JSON, form: NodesForm) -> JSON:
    """The Workflow as stored with its nodes in `form` (a copy when changed)."""
    status = workflow.get("status")
    if form == "nodes" or not isinstance(status, dict) or not status.get("nodes"):
        return workflow
    out = copy.deepcopy(workflow)
    nodes = out["status"].pop("nodes")
    if form == "compressed":
        raw = json.dumps(nodes, separators=(",", ":")).encode()
        out["status"]["compressedNodes"] = base64.b64encode(gzip.compress(raw, mtime=0)).decode()
    else:
        # Argo names the stored copy `fnv:<FNV-1 hash of the nodes' JSON>`; any stable hash serves here.
        out["status"]["offloadNodeStatusVersion"] = f"fnv:{fnv32a(json.dumps(nodes, sort_keys=True))}"
    return out


def _finished_at(workflow: JSON) -> datetime | None:
    value = (workflow.get("status") or {}).get("finishedAt")
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class SyncReport:
    """What one `sync()` did."""

    reported: int = 0
    archived: int = 0
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (namespace, workflow)


class PersistenceAgent:
    """Stores runs as KFP does (and archives them as Argo can), then deletes them after the TTL."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        run_store: KfpRunStore | None = None,
        archive: ArgoArchiveWriter | None = None,
        ttl_s: float = KFP_WORKFLOW_TTL_S,
        clock: Callable[[], datetime] = wall_clock,
        nodes_form: Callable[[int], NodesForm] = keep_nodes,
    ) -> None:
        self.cluster = cluster
        self.run_store = run_store
        self.archive = archive
        self.ttl_s = ttl_s
        self.clock = clock
        self.nodes_form = nodes_form
        self._seen: dict[tuple[str, str], str] = {}  # (namespace, name) -> resourceVersion reported
        self._forms: dict[str, NodesForm] = {}  # run id -> how its nodes are stored
        self._archived: set[str] = set()  # uids

    def form_of(self, run_id: str) -> NodesForm:
        """How the nodes of run `run_id` are stored (fixed when the run is first seen)."""
        if run_id not in self._forms:
            self._forms[run_id] = self.nodes_form(len(self._forms))
        return self._forms[run_id]

    def _report(self, run_id: str, workflow: JSON) -> None:
        if self.run_store is not None:
            self.run_store.report(run_id, workflow, stored_form(workflow, self.form_of(run_id)))

    def _delete(self, namespace: str, name: str) -> None:
        for resource in OWNED_RESOURCES:
            for obj in self.cluster.list(resource, namespace, f"{WORKFLOW_LABEL}={name}"):
                try:
                    self.cluster.delete(resource, namespace, obj["metadata"]["name"])
                except ClusterError as exc:
                    if exc.status != 404:
                        raise
        try:
            self.cluster.delete("workflows", namespace, name)
        except ClusterError as exc:
            if exc.status != 404:
                raise

    def sync(self) -> SyncReport:
        """One round over the cluster's KFP Workflows: report changes, archive, delete after the TTL."""
        report = SyncReport()
        now = self.clock()
        for workflow in self.cluster.list("workflows"):
            meta = workflow.get("metadata") or {}
            labels = meta.get("labels") or {}
            run_id = labels.get(RUN_ID_LABEL)
            if not run_id:
                continue  # not a KFP run: the agent skips it
            namespace, name = meta.get("namespace", "default"), meta.get("name", "")
            key = (namespace, name)
            phase = (workflow.get("status") or {}).get("phase", "")
            finished = _finished_at(workflow)
            if labels.get(PERSISTED_FINAL_STATE_LABEL) == "true":
                if finished is not None and (now - finished).total_seconds() >= self.ttl_s:
                    self._report(run_id, workflow)
                    report.reported += 1
                    self._delete(namespace, name)
                    self._seen.pop(key, None)
                    report.deleted.append(key)
                continue
            if self._seen.get(key) == meta.get("resourceVersion"):
                continue
            self._report(run_id, workflow)
            report.reported += 1
            if phase in FINAL_PHASES:
                uid = str(meta.get("uid", ""))
                if self.archive is not None and uid not in self._archived:
                    self.archive.archive(workflow)
                    self._archived.add(uid)
                    report.archived += 1
                mark = {"metadata": {"labels": {PERSISTED_FINAL_STATE_LABEL: "true"}}}
                patched = self.cluster.patch("workflows", namespace, name, mark)
                self._seen[key] = patched["metadata"].get("resourceVersion", "")
            else:
                self._seen[key] = meta.get("resourceVersion", "")
        return report
