"""Executions by id and by key prefix: what `verify` reads beyond what a pass reads.

The key is where the store keeps it (reconcile/keys.py): `external_id`, or `name` on MLMD
without external ids.
"""

from __future__ import annotations

from collections.abc import Collection

from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import ListOptions, metadata_store

from reconcile.keys import KeyPlacement
from reconcile.records import StoredExecution
from store.convert import stored_execution


def execution_keys(
    client: metadata_store.MetadataStore,
    ids: Collection[int],
    placement: KeyPlacement = KeyPlacement.EXTERNAL_ID,
) -> dict[int, str | None]:
    """Execution id -> its key (None: it has none), for those of `ids` that exist (one read)."""
    if not ids:
        return {}
    try:
        found = client.get_executions_by_id(sorted(ids))
    except mlmd_errors.NotFoundError:
        found = []
    field = placement.value
    return {e.id: getattr(e, field) or None for e in found}


def executions_keyed_under(
    client: metadata_store.MetadataStore,
    prefix: str,
    placement: KeyPlacement = KeyPlacement.EXTERNAL_ID,
    *,
    filter_query: bool = True,
) -> list[StoredExecution]:
    """Every execution whose key starts with `prefix` (which holds no quote).

    A server that ignores `filter_query` (MLMD 1.0.0) answers a filtered list with every
    execution; there the whole list is read (the only way it has) and checked here.
    """
    field = placement.value
    if filter_query:
        query = f"{field} LIKE '{prefix}%'"
        found = client.get_executions(list_options=ListOptions(filter_query=query))
    else:
        found = client.get_executions()
    return [stored_execution(e) for e in found if getattr(e, field).startswith(prefix)]
