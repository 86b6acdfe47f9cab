"""store.capabilities: what each MLMD version has, found without writing anything."""

from __future__ import annotations

import contextlib
import json
import sqlite3

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from reconcile.keys import KeyPlacement
from sandbox.mlmd_legacy import CURRENT
from store.capabilities import (
    ALL_CAPABILITIES,
    Capabilities,
    probe_capabilities,
    probe_lineage_subgraph,
)
from store.connect import StoreUnavailableError, open_store, parse_store_url
from store.server import MetadataServer
from tests.conftest import VersionedMlmd

EXPECTED = {
    "1.0.0": Capabilities(external_ids=False, lineage_subgraph=False, filter_query=False),
    "1.5.0": Capabilities(external_ids=False, lineage_subgraph=False, filter_query=True),
    "1.14.0": ALL_CAPABILITIES,
    CURRENT: ALL_CAPABILITIES,
}
RECORD_TABLES = ("Type", "Context", "Execution", "Artifact", "Event", "Association", "Attribution")


def _row_counts(sqlite_url: str) -> dict[str, int]:
    path = parse_store_url(sqlite_url).path
    assert path is not None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in RECORD_TABLES}


def test_each_version_has_what_its_release_notes_say(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    assert probe_capabilities(store) == EXPECTED[versioned_mlmd.version]


def test_probing_writes_nothing(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    context_type = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=context_type, name="wf-1")])
    before = _row_counts(versioned_mlmd.store_url)
    if isinstance(versioned_mlmd.server, MetadataServer):
        versioned_mlmd.server.reset_counts()
    probe_capabilities(store)
    assert _row_counts(versioned_mlmd.store_url) == before
    if isinstance(versioned_mlmd.server, MetadataServer):
        # The current server has external ids, so put_lineage_subgraph is never even called.
        assert versioned_mlmd.server.write_calls() == 0


def test_the_lineage_probe_is_refused_before_any_write(versioned_mlmd: VersionedMlmd) -> None:
    """Called directly (probe_capabilities skips it when external ids answer): never a write."""
    store = open_store(versioned_mlmd.url)
    store.put_execution_type(pb.ExecutionType(name="Step"))
    before = _row_counts(versioned_mlmd.store_url)
    assert probe_lineage_subgraph(store) == EXPECTED[versioned_mlmd.version].lineage_subgraph
    assert _row_counts(versioned_mlmd.store_url) == before


def test_a_store_with_records_is_probed_the_same(versioned_mlmd: VersionedMlmd) -> None:
    """The filter probe must not be fooled by what the store holds (1.0.0 returns it unfiltered)."""
    store = open_store(versioned_mlmd.url)
    context_type = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=context_type, name=f"wf-{i}") for i in range(3)])
    assert probe_capabilities(store) == EXPECTED[versioned_mlmd.version]


def test_embedded_stores_have_everything(sqlite_url: str, mysql_url: str) -> None:
    assert probe_capabilities(open_store(sqlite_url)) == ALL_CAPABILITIES
    assert probe_capabilities(open_store(mysql_url)) == ALL_CAPABILITIES
    assert probe_capabilities(open_store(sqlite_url)) == ALL_CAPABILITIES


def test_summary_and_json() -> None:
    old = EXPECTED["1.5.0"]
    assert old.summary() == (
        "MLMD capabilities: external_id=no put_lineage_subgraph=no filter_query=yes "
        "(keys in name, one put_execution per step)"
    )
    assert ALL_CAPABILITIES.summary() == (
        "MLMD capabilities: external_id=yes put_lineage_subgraph=yes filter_query=yes "
        "(keys in external_id, writes by put_lineage_subgraph)"
    )
    assert json.loads(json.dumps(old.to_json())) == {
        "external_id": False,
        "put_lineage_subgraph": False,
        "filter_query": True,
        "key_placement": "name",
    }
    assert ALL_CAPABILITIES.to_json()["key_placement"] == "external_id"


@pytest.mark.parametrize(
    "capabilities",
    [
        Capabilities(external_ids=True, lineage_subgraph=False, filter_query=True),
        Capabilities(external_ids=True, lineage_subgraph=True, filter_query=False),
        EXPECTED["1.0.0"],
        EXPECTED["1.5.0"],
    ],
)
def test_keys_go_in_external_id_only_with_every_api_the_keyed_path_calls(capabilities: Capabilities) -> None:
    assert capabilities.key_placement is KeyPlacement.NAME


def test_an_unreachable_server_is_one_clear_line(grpc_server: MetadataServer) -> None:
    store = open_store(grpc_server.url, call_timeout_s=2)
    grpc_server.stop()
    with pytest.raises(StoreUnavailableError) as info:
        probe_capabilities(store)
    message = str(info.value)
    assert message.startswith("probing MLMD for external_id failed: UnavailableError")
    assert "\n" not in message
