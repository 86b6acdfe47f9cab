"""``meta.k8s.io`` Table answers, the form ``kubectl get`` prints.

kubectl asks for them with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...``
(see :mod:`sandbox.negotiation`). Columns follow the real server's printers for
pods (Ready, Status, Restarts) and the Workflow CRD's printer column (Status);
every kind gets Name and Age. ``?includeObject=`` picks what each row carries:
``Metadata`` (default: a PartialObjectMetadata), ``Object`` or ``None``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sandbox.cluster import ClusterError

__all__ = ["table"]

_INCLUDE = ("Metadata", "None", "Object")


def _age(ts: str | None, now: float) -> str:
    """Age as kubectl prints it (``42s``, ``5m``, ``3h``, ``2d``)."""
    if not ts:
        return "<unknown>"
    try:
        t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "<unknown>"
    s = max(0, int(now - t))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _column(name: str, description: str, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": "string", "format": fmt, "description": description, "priority": 0}


def _columns(resource: str) -> list[dict[str, Any]]:
    cols = [_column("Name", "Name must be unique within a namespace.", "name")]
    if resource == "pods":
        cols += [_column("Ready", "ready"), _column("Status", "phase"), _column("Restarts", "restarts")]
    elif resource == "workflows":
        cols.append(_column("Status", "Status of the workflow"))
    cols.append(_column("Age", "CreationTimestamp"))
    return cols


def _cells(resource: str, obj: dict[str, Any], now: float) -> list[Any]:
    meta = obj.get("metadata") or {}
    cells: list[Any] = [meta.get("name", "")]
    status = obj.get("status") or {}
    if resource == "pods":
        cs = status.get("containerStatuses") or []
        total = len((obj.get("spec") or {}).get("containers") or []) or len(cs)
        ready = sum(1 for c in cs if c.get("ready"))
        restarts = sum(int(c.get("restartCount") or 0) for c in cs)
        cells += [f"{ready}/{total}", status.get("phase", "Pending"), str(restarts)]
    elif resource == "workflows":
        cells.append(status.get("phase", ""))
    cells.append(_age(meta.get("creationTimestamp"), now))
    return cells


def table(
    resource: str,
    objs: list[dict[str, Any]],
    query: dict[str, str],
    table_meta: dict[str, Any],
    api_version: str = "meta.k8s.io/v1",
) -> dict[str, Any]:
    """A Table of ``objs`` (one row each); 400 BadRequest on an unknown ``includeObject``.

    ``table_meta`` is the Table's own metadata (resourceVersion, continue, ...);
    ``api_version`` is the ``meta.k8s.io`` version the client asked for.
    """
    include = query.get("includeObject") or "Metadata"
    if include not in _INCLUDE:
        raise ClusterError(
            400,
            "BadRequest",
            f'Unable to convert to Table as requested: includeObject: Unsupported value: "{include}": '
            'supported values: "Metadata", "None", "Object"',
        )
    now = time.time()
    rows = []
    for obj in objs:
        row: dict[str, Any] = {"cells": _cells(resource, obj, now)}
        if include == "Object":
            row["object"] = obj
        elif include == "Metadata":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": api_version,
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": table_meta,
        "columnDefinitions": _columns(resource),
        "rows": rows,
    }
