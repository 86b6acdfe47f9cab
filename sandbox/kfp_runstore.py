"""A KFP-style run store: `mlpipeline.run_details` as KFP's API server fills it.

KFP's API server inserts a row when a run is created and its persistence
agent reports every change of the run's Workflow into it: `Conditions` (and
`State`, `StateHistory` on 2.x), `FinishedAtInSec` and the whole Workflow
JSON in `WorkflowRuntimeManifest` (`ReportWorkflowResource`, 1.8.5 and 2.x).
This writes the same rows, in the column layout of KFP 1.8.5, 2.5 or 2.17,
on MySQL/MariaDB or PostgreSQL. `sandbox.persistence` decides when.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sandbox.sqldb import SqlWriter

JSON = dict[str, Any]

LAYOUTS = ("1.8", "2.5", "2.17")
DEFAULT_EXPERIMENT = "6f1b3c2a-0d4e-4b7a-9c1e-5a2b3c4d5e6f"

# (column, MySQL type, PostgreSQL type, nullable) in gorm's order, per layout.
_COLUMNS_1_8 = [
    ("UUID", "varchar(255)", "varchar(255)", False),
    ("ExperimentUUID", "varchar(255)", "varchar(255)", False),
    ("DisplayName", "varchar(255)", "varchar(255)", False),
    ("Name", "varchar(255)", "varchar(255)", False),
    ("StorageState", "varchar(255)", "varchar(255)", False),
    ("Namespace", "varchar(255)", "varchar(255)", False),
    ("ServiceAccount", "varchar(255)", "varchar(255)", False),
    ("Description", "varchar(255)", "varchar(255)", False),
    ("CreatedAtInSec", "bigint", "bigint", False),
    ("ScheduledAtInSec", "bigint DEFAULT 0", "bigint DEFAULT 0", True),
    ("FinishedAtInSec", "bigint DEFAULT 0", "bigint DEFAULT 0", True),
    ("Conditions", "varchar(255)", "varchar(255)", False),
    ("PipelineId", "varchar(255)", "varchar(255)", False),
    ("PipelineName", "varchar(255)", "varchar(255)", False),
    ("PipelineSpecManifest", "longtext", "text", True),
    ("WorkflowSpecManifest", "longtext", "text", False),
    ("Parameters", "longtext", "text", True),
    ("PipelineRuntimeManifest", "longtext", "text", False),
    ("WorkflowRuntimeManifest", "longtext", "text", False),
]
_COLUMNS_2_5 = [
    *_COLUMNS_1_8,
    ("JobUUID", "varchar(255) DEFAULT NULL", "varchar(255)", True),
    ("State", "varchar(255) DEFAULT NULL", "varchar(255)", True),
    ("StateHistory", "longtext", "text", True),
    ("PipelineVersionId", "varchar(255) DEFAULT NULL", "varchar(255)", True),
    ("RuntimeParameters", "longtext", "text", True),
    ("PipelineRoot", "longtext", "text", True),
    ("PipelineContextId", "bigint DEFAULT 0", "bigint DEFAULT 0", True),
    ("PipelineRunContextId", "bigint DEFAULT 0", "bigint DEFAULT 0", True),
]
_COLUMNS_2_17 = [
    *_COLUMNS_2_5,
    ("PluginsInput", "longtext", "text", True),
    ("PluginsOutput", "longtext", "text", True),
]
LAYOUT_COLUMNS = {"1.8": _COLUMNS_1_8, "2.5": _COLUMNS_2_5, "2.17": _COLUMNS_2_17}

# Argo Workflow phase -> KFP 2.x run State (model.RuntimeState.ToV2).
_V2_STATES = {
    "": "PENDING",
    "Pending": "PENDING",
    "Running": "RUNNING",
    "Succeeded": "SUCCEEDED",
    "Skipped": "SKIPPED",
    "Failed": "FAILED",
    "Error": "FAILED",
}


def _epoch(timestamp: Any) -> int:
    if not isinstance(timestamp, str) or not timestamp:
        return 0
    try:
        when = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp())


def create_run_details(db: SqlWriter, layout: str = "1.8") -> None:
    """Create `run_details` in the column layout of KFP `layout` (1.8, 2.5 or 2.17)."""
    if layout not in LAYOUT_COLUMNS:
        raise ValueError(f"unknown KFP layout {layout!r}; known: {LAYOUTS}")
    mysql = db.dialect == "mysql"
    columns = []
    for name, mysql_type, pg_type, nullable in LAYOUT_COLUMNS[layout]:
        null = "" if nullable else " NOT NULL"
        columns.append(f"{db.quote(name)} {mysql_type if mysql else pg_type}{null}")
    columns.append(f"PRIMARY KEY ({db.quote('UUID')})")
    charset = " DEFAULT CHARSET=utf8mb4" if mysql else ""
    db.execute(f"CREATE TABLE run_details ({', '.join(columns)}){charset}")
    for index, parts in (
        ("experimentuuid_createatinsec", ("ExperimentUUID", "CreatedAtInSec")),
        ("namespace_conditions_finishedatinsec", ("Namespace", "Conditions", "FinishedAtInSec")),
    ):
        db.execute(f"CREATE INDEX {index} ON run_details ({', '.join(db.quote(p) for p in parts)})")


class KfpRunStore:
    """Writes runs into a `run_details` table as KFP's API server does."""

    def __init__(self, db: SqlWriter, layout: str = "1.8") -> None:
        if layout not in LAYOUT_COLUMNS:
            raise ValueError(f"unknown KFP layout {layout!r}; known: {LAYOUTS}")
        self.db = db
        self.layout = layout
        self._history: dict[str, list[JSON]] = {}

    def _row(self, run_id: str, workflow: JSON, stored: JSON) -> dict[str, Any]:
        meta, spec = workflow.get("metadata") or {}, workflow.get("spec") or {}
        status = workflow.get("status") or {}
        phase = str(status.get("phase") or "")
        created = _epoch(meta.get("creationTimestamp"))
        parameters = [
            {"name": p.get("name"), "value": p.get("value")}
            for p in (spec.get("arguments") or {}).get("parameters") or []
        ]
        row: dict[str, Any] = {
            "UUID": run_id,
            "ExperimentUUID": DEFAULT_EXPERIMENT,
            "DisplayName": f"Run of {meta.get('generateName') or meta.get('name')}",
            "Name": meta.get("name", ""),
            "StorageState": "STORAGESTATE_AVAILABLE" if self.layout == "1.8" else "AVAILABLE",
            "Namespace": meta.get("namespace", ""),
            "ServiceAccount": spec.get("serviceAccountName", ""),
            "Description": "",
            "CreatedAtInSec": created,
            "ScheduledAtInSec": created,
            "FinishedAtInSec": _epoch(status.get("finishedAt")),
            "Conditions": phase,
            "PipelineId": "",
            "PipelineName": "",
            "WorkflowSpecManifest": json.dumps({k: v for k, v in workflow.items() if k != "status"}),
            "Parameters": json.dumps(parameters),
            "PipelineRuntimeManifest": "",
            "WorkflowRuntimeManifest": json.dumps(stored, separators=(",", ":")),
        }
        if self.layout != "1.8":
            state = _V2_STATES.get(phase, "RUNTIME_STATE_UNSPECIFIED")
            history = self._history.setdefault(run_id, [])
            if not history or history[-1]["state"] != state:
                history.append({"update_time": datetime.now(UTC).isoformat(), "state": state})
            row.update(
                State=state,
                StateHistory=json.dumps(history),
                RuntimeParameters=json.dumps(parameters),
                PipelineRoot="",
                PipelineContextId=0,
                PipelineRunContextId=0,
            )
        return row

    def report(self, run_id: str, workflow: JSON, stored: JSON) -> None:
        """Record one report of a run's Workflow (`stored` is the JSON to keep).

        The first report creates the row (as `CreateRun`); later ones update
        what `ReportWorkflowResource` updates.
        """
        row = self._row(run_id, workflow, stored)
        q = self.db.quote
        changing = ["Conditions", "FinishedAtInSec", "WorkflowRuntimeManifest"]
        if self.layout != "1.8":
            changing += ["State", "StateHistory"]
        if self.db.query(f"SELECT 1 FROM run_details WHERE {q('UUID')} = %s", [run_id]):
            assignments = ", ".join(f"{q(c)} = %s" for c in changing)
            self.db.execute(
                f"UPDATE run_details SET {assignments} WHERE {q('UUID')} = %s",
                [*(row[c] for c in changing), run_id],
            )
            return
        names = list(row)
        self.db.execute(
            f"INSERT INTO run_details ({', '.join(q(n) for n in names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))})",
            [row[n] for n in names],
        )
