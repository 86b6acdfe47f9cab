"""Executions by id and by key prefix: what `verify` reads beyond what a pass reads."""

from __future__ import annotations

from collections.abc import Collection

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import ListOptions, metadata_store

from reconcile.records import StoredExecution
from store.convert import stored_execution


def execution_keys(client: metadata_store.MetadataStore, ids: Collection[int]) -> dict[int, str | None]:
    """Execution id -> its external_id (None: it has none), for those of `ids` that exist (one read)."""
    if not ids:
        return {}
    try:
        found = client.get_executions_by_id(sorted(ids))
    except mlmd_errors.NotFoundError:
        found = []
    return {e.id: e.external_id or None for e in found}


def executions_keyed_under(client: metadata_store.MetadataStore, prefix: str) -> list[StoredExecution]:
    """Every execution whose external_id starts with `prefix` (which holds no quote)."""
    query = f"external_id LIKE '{prefix}%'"
    return [stored_execution(e) for e in client.get_executions(list_options=ListOptions(filter_query=query))]
