"""A database of another MLMD schema version is refused, never migrated (store.connect, store.schema)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from store.connect import (
    StoreSchemaMismatchError,
    StoreUnavailableError,
    open_store,
    parse_store_url,
)
from store.schema import library_schema_version, library_version
from store.server import MetadataServer
from tests.conftest import MariaDB, VersionedMlmd
from tests.podfactory import chain, pods_of


def _old_store(
    factory: Callable[..., VersionedMlmd], version: str, backend: str
) -> tuple[VersionedMlmd, str]:
    """A store written by an old release's server, the server stopped; and its direct URL."""
    served = factory(version, backend)
    store = open_store(served.url)
    type_id = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=type_id, name="wf-old")])
    served.server.stop()
    return served, served.store_url


def _mysql_snapshot(mariadb: MariaDB, database: str) -> dict[str, tuple[object, ...]]:
    """Each table's definition and rows, exactly (one connection: this runs ~30 queries)."""
    connection = mariadb.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            tables = [row[0] for row in cursor.fetchall()]
            snapshot = {}
            for table in tables:
                cursor.execute(f"SHOW CREATE TABLE `{table}`")
                definition = cursor.fetchone()[1]
                cursor.execute(f"SELECT * FROM `{table}`")
                snapshot[table] = (definition, tuple(cursor.fetchall()))
            return snapshot
    finally:
        connection.close()


def _assert_clear(message: str, found: int) -> None:
    assert "\n" not in message
    assert f"schema version {found}" in message
    assert f"schema version {library_schema_version()}" in message
    assert f"ml-metadata {library_version()}" in message
    assert "never migrates" in message
    assert "grpc://metadata-grpc-service:8080" in message


def test_library_schema_version_is_read_from_the_library() -> None:
    assert library_schema_version() == 10  # ml-metadata 1.14 to 1.17


@pytest.mark.parametrize(("version", "schema"), [("1.5.0", 7), ("1.0.0", 6)])
@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
def test_sqlite_of_an_old_release_is_refused_untouched(
    mlmd_server_factory: Callable[..., VersionedMlmd], version: str, schema: int, read_only: bool
) -> None:
    _, url = _old_store(mlmd_server_factory, version, "sqlite")
    path = Path(parse_store_url(url).path or "")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreSchemaMismatchError) as info:
        open_store(url, read_only=read_only)
    _assert_clear(str(info.value), schema)
    assert str(info.value).startswith(f"the MLMD database {url} has schema version {schema}")
    assert isinstance(info.value, StoreUnavailableError)  # the CLI's exit 3
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
def test_mysql_of_1_5_is_refused_untouched(
    mlmd_server_factory: Callable[..., VersionedMlmd], mariadb_server: MariaDB, read_only: bool
) -> None:
    served, url = _old_store(mlmd_server_factory, "1.5.0", "mysql")
    database = parse_store_url(url).database or ""
    before = _mysql_snapshot(mariadb_server, database)
    assert before["MLMDEnv"][1] == ((7,),)
    assert len(before) == 15
    with pytest.raises(StoreSchemaMismatchError) as info:
        open_store(url, read_only=read_only)
    _assert_clear(str(info.value), 7)
    assert _mysql_snapshot(mariadb_server, database) == before
    # The old release's own server still serves it, as KFP's would.
    served.server.start()
    assert [c.name for c in open_store(served.url).get_contexts()] == ["wf-old"]


def test_the_project_server_refuses_it_too(mlmd_server_factory: Callable[..., VersionedMlmd]) -> None:
    _, url = _old_store(mlmd_server_factory, "1.5.0", "sqlite")
    server = MetadataServer(url)
    with pytest.raises(StoreSchemaMismatchError, match="has schema version 7"):
        server.start()
    assert not server.running


def test_the_cli_exits_3_with_one_line(
    mlmd_server_factory: Callable[..., VersionedMlmd], tmp_path: Path
) -> None:
    _, url = _old_store(mlmd_server_factory, "1.5.0", "mysql")
    dump = tmp_path / "pods.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": pods_of(chain("wf", 1))}))
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "reconcile", "--from-file", str(dump), "--mlmd", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: the MLMD database mysql://")
    _assert_clear(lines[0], 7)
