"""MLMD's newest records: what tells a controller whether anyone wrote since its last pass.

The newest and the most recently updated execution, artifact and context (six
one-record reads). Any write changes one of them -- a new record, or a record's
update time -- and a restore from an older backup takes them back to what they were
then. controller/converged.py says what this can and cannot see.
"""

from __future__ import annotations

from typing import Any

from ml_metadata.metadata_store import ListOptions, OrderByField, metadata_store

RecordKey = tuple[Any, ...]  # (id, external_id, create time, update time)
Witness = tuple[tuple[RecordKey, ...], ...]


def _record_key(record: Any) -> RecordKey:
    return (
        record.id,
        record.external_id,
        record.create_time_since_epoch,
        record.last_update_time_since_epoch,
    )


def read_witness(client: metadata_store.MetadataStore) -> Witness:
    """MLMD's newest and most recently updated execution, artifact and context."""
    rows = []
    for read in (client.get_executions, client.get_artifacts, client.get_contexts):
        for order in (OrderByField.ID, OrderByField.UPDATE_TIME):
            found = read(list_options=ListOptions(limit=1, order_by=order, is_asc=False))
            rows.append(tuple(_record_key(r) for r in found))
    return tuple(rows)
