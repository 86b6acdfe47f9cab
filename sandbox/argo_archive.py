"""An Argo-style workflow archive: `argo_archived_workflows` as Argo's controller fills it.

With archiving on, Argo's controller writes each completed Workflow into its
database once (`archiveWorkflowAux`): it hydrates the Workflow first
(`compressedNodes` inflated, offloaded nodes read back), labels it
`workflows.argoproj.io/workflow-archiving-status: Persisted`, replaces any
row of the same `(clustername, uid)` and writes its labels into
`argo_archived_workflows_labels`. The tables here have the columns Argo's
migrations leave (3.5-3.6; `workflow` is `jsonb` on PostgreSQL, `json` on
MySQL).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from datetime import UTC, datetime
from typing import Any

from sandbox.sqldb import SqlWriter

JSON = dict[str, Any]

ARCHIVING_STATUS_LABEL = "workflows.argoproj.io/workflow-archiving-status"
DEFAULT_CLUSTER = "default"


def create_archive_tables(db: SqlWriter) -> None:
    """Create `argo_archived_workflows` and its labels table as Argo's migrations leave them."""
    mysql = db.dialect == "mysql"
    json_type = "json" if mysql else "jsonb"
    stamp = "timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP" if mysql else "timestamp NOT NULL"
    charset = " DEFAULT CHARSET=utf8mb4" if mysql else ""
    db.execute(
        "CREATE TABLE argo_archived_workflows (uid varchar(128) NOT NULL, name varchar(256) NOT NULL, "
        f"phase varchar(25) NOT NULL, namespace varchar(256) NOT NULL, workflow {json_type} NOT NULL, "
        f"startedat {stamp}, finishedat {stamp}, clustername varchar(64) NOT NULL, "
        f"instanceid varchar(64) NOT NULL, PRIMARY KEY (clustername, uid)){charset}"
    )
    for index, columns in (
        ("i1", "clustername, instanceid, namespace"),
        ("i2", "clustername, instanceid, finishedat"),
    ):
        db.execute(f"CREATE INDEX argo_archived_workflows_{index} ON argo_archived_workflows ({columns})")
    db.execute(
        "CREATE TABLE argo_archived_workflows_labels (clustername varchar(64) NOT NULL, "
        "uid varchar(128) NOT NULL, name varchar(317) NOT NULL, value varchar(63) NOT NULL, "
        "PRIMARY KEY (clustername, uid, name), FOREIGN KEY (clustername, uid) "
        f"REFERENCES argo_archived_workflows (clustername, uid) ON DELETE CASCADE){charset}"
    )


def hydrated(workflow: JSON) -> JSON:
    """A copy of `workflow` with `status.compressedNodes` inflated into `status.nodes`."""
    out = copy.deepcopy(workflow)
    status = out.get("status") or {}
    packed = status.pop("compressedNodes", None)
    if packed:
        status["nodes"] = json.loads(gzip.decompress(base64.b64decode(packed)))
    return out


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str) and value:
        try:
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            pass
    return datetime.now(UTC).replace(tzinfo=None)


class ArgoArchiveWriter:
    """Archives completed Workflows as Argo's controller does."""

    def __init__(self, db: SqlWriter, *, cluster_name: str = DEFAULT_CLUSTER, instance_id: str = "") -> None:
        self.db = db
        self.cluster_name = cluster_name
        self.instance_id = instance_id

    def archive(self, workflow: JSON) -> None:
        """Write one completed Workflow (hydrated, labelled) and its labels, replacing an older copy."""
        wf = hydrated(workflow)
        meta = wf.setdefault("metadata", {})
        meta.setdefault("labels", {})[ARCHIVING_STATUS_LABEL] = "Persisted"
        status = wf.get("status") or {}
        uid = str(meta.get("uid", ""))
        key = [self.cluster_name, uid]
        self.db.execute("DELETE FROM argo_archived_workflows WHERE clustername = %s AND uid = %s", key)
        self.db.execute(
            "INSERT INTO argo_archived_workflows (uid, name, phase, namespace, workflow, startedat, "
            "finishedat, clustername, instanceid) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                uid,
                meta.get("name", ""),
                status.get("phase", ""),
                meta.get("namespace", ""),
                json.dumps(wf, separators=(",", ":")),
                _timestamp(status.get("startedAt")),
                _timestamp(status.get("finishedAt")),
                self.cluster_name,
                self.instance_id,
            ],
        )
        for name, value in sorted((meta.get("labels") or {}).items()):
            self.db.execute(
                "INSERT INTO argo_archived_workflows_labels (clustername, uid, name, value) "
                "VALUES (%s, %s, %s, %s)",
                [self.cluster_name, uid, name, value],
            )
