"""What MLMD schema a database holds, read without changing anything.

MLMD records its schema version in the one-row table ``MLMDEnv``; it writes that row last,
after all tables and indexes, in the same transaction. On MySQL every ``CREATE TABLE``
commits by itself, so a process killed while creating the schema leaves some tables and no
``MLMDEnv`` row -- a state the library refuses for ever after ("MLMDEnv table exists but no
schema_version", "There are a subset of tables"). :class:`SchemaState` tells the states
apart; :mod:`store.mysql_schema` acts on them.

The schema version the embedded library writes is found once by letting it create a
throwaway SQLite store (:func:`library_schema_version`).
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from ml_metadata import __version__ as _LIBRARY_VERSION
from ml_metadata.metadata_store.pywrap.metadata_store_extension import (
    metadata_store as metadata_store_serialized,
)
from ml_metadata.proto import metadata_store_pb2

from store.native_log import native_stderr_captured

__all__ = [
    "MLMD_TABLES",
    "SchemaState",
    "drop_mysql_tables",
    "library_schema_version",
    "library_version",
    "mysql_tables_with_rows",
    "read_mysql_schema",
    "read_sqlite_schema",
]

# Every table of MLMD schemas 6 to 10 (ml-metadata 1.0.0 to 1.17), by its exact name.
MLMD_TABLES: tuple[str, ...] = (
    "Artifact",
    "ArtifactProperty",
    "Association",
    "Attribution",
    "Context",
    "ContextProperty",
    "Event",
    "EventPath",
    "Execution",
    "ExecutionProperty",
    "MLMDEnv",
    "ParentContext",
    "ParentType",
    "Type",
    "TypeProperty",
)


@dataclass(frozen=True)
class SchemaState:
    """An MLMD database as found: does it exist, which MLMD tables, which schema version.

    ``versions`` holds the rows of ``MLMDEnv`` (one when MLMD finished creating the schema).
    """

    exists: bool
    tables: frozenset[str] = frozenset()
    versions: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """MLMD finished creating this schema: ``MLMDEnv`` holds exactly one version."""
        return len(self.versions) == 1

    @property
    def version(self) -> int | None:
        """The schema version if :attr:`complete`, else None."""
        return self.versions[0] if self.complete else None

    @property
    def empty(self) -> bool:
        """No MLMD table at all (or no database): MLMD would create the schema."""
        return not self.tables

    @property
    def partial(self) -> bool:
        """Some MLMD tables but no schema version: an interrupted creation, or damage."""
        return bool(self.tables) and not self.complete


def library_version() -> str:
    """The embedded ml-metadata library's release, e.g. ``1.17.1``."""
    return str(_LIBRARY_VERSION)


@functools.cache
def library_schema_version() -> int:
    """The MLMD schema version the embedded library creates and requires (10 for 1.14-1.17)."""
    with tempfile.TemporaryDirectory(prefix="kfpmr-schema-") as scratch:
        path = Path(scratch) / "probe.sqlite"
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        with native_stderr_captured():
            handle = metadata_store_serialized.CreateMetadataStore(
                config.SerializeToString(), metadata_store_pb2.MigrationOptions().SerializeToString()
            )
        del handle  # closes the file
        state = read_sqlite_schema(path, read_only=True)
    if state.version is None:
        raise RuntimeError(f"ml-metadata {library_version()} created no MLMDEnv row in a new SQLite store")
    return state.version


def read_sqlite_schema(path: Path, *, read_only: bool) -> SchemaState:
    """The :class:`SchemaState` of the SQLite file ``path``; never creates the file.

    ``read_only`` opens it with SQLite's read-only mode; otherwise read-write (which lets
    SQLite roll back a journal left by a killed writer). Raises ``sqlite3.Error`` for a file
    that is not a database or cannot be read.
    """
    if not path.exists():
        return SchemaState(exists=False)
    mode = "ro" if read_only else "rw"
    uri = f"file:{pathname2url(str(path))}?mode={mode}"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables = frozenset(name for name in MLMD_TABLES if name in names)
        versions: tuple[int, ...] = ()
        if "MLMDEnv" in tables:
            versions = tuple(int(row[0]) for row in db.execute("SELECT schema_version FROM MLMDEnv"))
    return SchemaState(exists=True, tables=tables, versions=versions)


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def read_mysql_schema(connection: Any, database: str) -> SchemaState:
    """The :class:`SchemaState` of MySQL ``database``, read through a PyMySQL ``connection``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        if cursor.fetchone() is None:
            return SchemaState(exists=False)
        cursor.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,)
        )
        names = {row[0] for row in cursor.fetchall()}
        tables = frozenset(name for name in MLMD_TABLES if name in names)
        versions: tuple[int, ...] = ()
        if "MLMDEnv" in tables:
            cursor.execute(f"SELECT schema_version FROM {_quoted(database)}.`MLMDEnv`")
            versions = tuple(int(row[0]) for row in cursor.fetchall())
    return SchemaState(exists=True, tables=tables, versions=versions)


def mysql_tables_with_rows(connection: Any, database: str, tables: frozenset[str]) -> list[str]:
    """Which of the MLMD ``tables`` of ``database`` hold at least one row."""
    found = []
    with connection.cursor() as cursor:
        for table in sorted(tables):
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_quoted(database)}.{_quoted(table)} LIMIT 1)")
            row = cursor.fetchone()
            if row is not None and row[0]:
                found.append(table)
    return found


def drop_mysql_tables(connection: Any, database: str, tables: frozenset[str]) -> None:
    """Drop the given MLMD ``tables`` of ``database`` (only ever called on empty ones)."""
    if tables:
        names = ", ".join(f"{_quoted(database)}.{_quoted(t)}" for t in sorted(tables))
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {names}")
