"""open_store(read_only=True) never creates a file, folder, database or schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from ml_metadata import errors
from ml_metadata.proto import metadata_store_pb2 as pb

from store.connect import (
    StoreMissingError,
    StoreUnavailableError,
    connection_config,
    open_store,
    parse_store_url,
)
from tests.conftest import MariaDB


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _assert_one_line(exc: Exception, *parts: str) -> None:
    message = str(exc)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    assert isinstance(exc, StoreUnavailableError)  # the CLI's exit 3


def test_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/typo/dir/metadata.sqlite"
    with pytest.raises(StoreMissingError) as info:
        open_store(url, read_only=True)
    _assert_one_line(info.value, url, "does not exist", "never creates")
    assert _tree(tmp_path) == []


def test_relative_sqlite_path_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreMissingError):
        open_store("sqlite:///mlmd.sqlite", read_only=True)
    assert _tree(tmp_path) == []


def test_empty_sqlite_file_stays_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    path.touch()
    with pytest.raises(StoreMissingError) as info:
        open_store(f"sqlite:///{path}", read_only=True)
    _assert_one_line(info.value, "holds no (complete) MLMD schema")
    assert path.stat().st_size == 0
    assert _tree(tmp_path) == ["empty.sqlite"]


def test_not_a_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not sqlite at all, but long enough to have a header " * 10)
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"sqlite:///{path}", read_only=True)
    _assert_one_line(info.value, "cannot read", "as SQLite")


def test_in_memory_read_only_is_refused() -> None:
    with pytest.raises(StoreMissingError, match="new, empty store"):
        open_store("sqlite://:memory:", read_only=True)


def test_existing_sqlite_store_opens_read_only(sqlite_url: str) -> None:
    writer = open_store(sqlite_url)
    type_id = writer.put_context_type(pb.ContextType(name="KfpRun"))
    writer.put_contexts([pb.Context(type_id=type_id, name="wf-1")])
    del writer
    path = Path(parse_store_url(sqlite_url).path or "")
    mtime = path.stat().st_mtime_ns
    reader = open_store(sqlite_url, read_only=True)
    assert [c.name for c in reader.get_contexts()] == ["wf-1"]
    with pytest.raises(errors.StatusError):  # SQLite itself refuses: opened read-only
        reader.put_contexts([pb.Context(type_id=type_id, name="wf-2")])
    assert path.stat().st_mtime_ns == mtime
    assert not any(p.name.endswith("-journal") for p in path.parent.iterdir())


def _databases(mariadb: MariaDB) -> set[str]:
    return {row[0] for row in mariadb.execute("SHOW DATABASES")}


def test_missing_mysql_database_is_not_created(mysql_url: str, mariadb_server: MariaDB) -> None:
    before = _databases(mariadb_server)
    with pytest.raises(StoreMissingError) as info:
        open_store(mysql_url, read_only=True)
    _assert_one_line(info.value, "does not exist", "never creates", "check the database name")
    assert _databases(mariadb_server) == before


def test_mysql_database_without_schema_gets_no_tables(mysql_url: str, mariadb_server: MariaDB) -> None:
    database = parse_store_url(mysql_url).database
    mariadb_server.execute(f"CREATE DATABASE `{database}`")
    mariadb_server.execute(f"CREATE TABLE `{database}`.other_app (id INT)")
    with pytest.raises(StoreMissingError) as info:
        open_store(mysql_url, read_only=True)
    _assert_one_line(info.value, "holds no MLMD schema")
    assert mariadb_server.execute(f"SHOW TABLES FROM `{database}`") == [("other_app",)]


def test_existing_mysql_store_opens_read_only(mysql_url: str, mariadb_server: MariaDB) -> None:
    writer = open_store(mysql_url)
    type_id = writer.put_context_type(pb.ContextType(name="KfpRun"))
    writer.put_contexts([pb.Context(type_id=type_id, name="wf-1")])
    reader = open_store(mysql_url, read_only=True)
    assert [c.name for c in reader.get_contexts()] == ["wf-1"]


def test_password_never_in_read_only_errors(mariadb_server: MariaDB) -> None:
    with pytest.raises(StoreUnavailableError) as info:
        open_store("mysql://root:s3cret-pw@127.0.0.1:3306/kfpmr_never_made", read_only=True)
    assert "s3cret-pw" not in str(info.value)
    assert "Access denied" in str(info.value)
    assert "kfpmr_never_made" not in _databases(mariadb_server)


def test_grpc_is_unaffected(grpc_url: str) -> None:
    assert open_store(grpc_url, read_only=True).get_context_types() == []



def test_read_only_connection_configs() -> None:
    modes = pb.SqliteMetadataSourceConfig
    sqlite = connection_config(parse_store_url("sqlite:////data/m.sqlite"), read_only=True)
    assert sqlite.sqlite.connection_mode == modes.READONLY
    writer = connection_config(parse_store_url("sqlite:////data/m.sqlite"))
    assert writer.sqlite.connection_mode == modes.READWRITE_OPENCREATE
    assert connection_config(parse_store_url("mysql://u@h/db"), read_only=True).mysql.skip_db_creation
    assert not connection_config(parse_store_url("mysql://u@h/db")).mysql.skip_db_creation
