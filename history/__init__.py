"""Stored-run sources: the Argo Workflows that outlive the cluster's copy.

KFP deletes a run's Workflow (and its pods) a day after the run finished,
but its run store keeps the Workflow JSON (`mlpipeline.run_details`), and
Argo's workflow archive may keep it too (`argo_archived_workflows`). The
readers here stream those stored Workflows, page by page with bounded
memory and read-only, as `StoredRun`s for `reconcile.from_workflow`. Pure
I/O over SQL: no Kubernetes, no MLMD (docs/stored-runs.md).

    with open_kfp_db("mysql://reader@mysql.kubeflow/mlpipeline") as source:
        total = source.count(scope)
        for run in source.runs(scope):
            ...  # run.workflow, run.unrecoverable, run.finished_at
"""

from history.argo_archive import ArgoArchive, open_argo_archive
from history.errors import HistoryError, SourceConfigError, SourceLayoutError, SourceUnavailableError
from history.kfp_db import KfpLayout, KfpRunDatabase, open_kfp_db
from history.records import RunScope, StoredRun, Unrecoverable
from history.source import StoredRunSource
from history.url import DatabaseURL, parse_database_url

__all__ = [
    "ArgoArchive",
    "DatabaseURL",
    "HistoryError",
    "KfpLayout",
    "KfpRunDatabase",
    "RunScope",
    "SourceConfigError",
    "SourceLayoutError",
    "SourceUnavailableError",
    "StoredRun",
    "StoredRunSource",
    "Unrecoverable",
    "open_argo_archive",
    "open_kfp_db",
    "parse_database_url",
]
