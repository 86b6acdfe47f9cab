"""First use of an empty MySQL database: kills and concurrent starts never brick it (store.mysql_schema).

MLMD creates its schema one auto-committed CREATE TABLE at a time and writes its version
last; before this project's schema lock and repair, a kill in between left a database every
later run refused ("MLMDEnv table exists but no schema_version"), and concurrent first runs
failed on each other's half-made schema.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pymysql
import pytest
from ml_metadata.proto import metadata_store_pb2 as pb

from store.connect import (
    StoreMissingError,
    StoreSchemaDamagedError,
    StoreUnavailableError,
    open_store,
    parse_store_url,
)
from store.schema import MLMD_TABLES, library_schema_version
from tests.conftest import MariaDB, new_database_name

REPO = Path(__file__).resolve().parents[2]
# A first run: open the store (creating it), then exit; exit 3 with one line if it cannot.
FIRST_RUN = """
import sys
from store.connect import StoreError, open_store
try:
    open_store(sys.argv[1], timeout_s=30)
except StoreError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)
"""


def _first_run(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", FIRST_RUN, url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout_s: float = 120) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout_s)
    return process.returncode, stderr


@pytest.fixture
def fresh_databases(mariadb_server: MariaDB) -> Iterator[Callable[[], str]]:
    """``make()`` -> the URL of a new, not yet existing database; all dropped after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(new_database_name())
        mariadb_server.drop_database(names[-1])
        return mariadb_server.url(names[-1])

    yield make
    for name in names:
        mariadb_server.drop_database(name)


def _mlmd_tables(mariadb: MariaDB, database: str) -> set[str]:
    rows = mariadb.execute(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,)
    )
    return {name for (name,) in rows if name in MLMD_TABLES}


def _versions(mariadb: MariaDB, database: str) -> list[int]:
    try:
        return [v for (v,) in mariadb.execute(f"SELECT schema_version FROM `{database}`.MLMDEnv")]
    except pymysql.err.ProgrammingError:  # no MLMDEnv table yet
        return []


def _reference_type_names(tmp_path: Path) -> list[str]:
    """The types MLMD puts into a new store (its built-in 'simple types', hidden from get_*_types)."""
    path = tmp_path / "reference.sqlite"
    open_store(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = sorted(name for (name,) in db.execute("SELECT name FROM Type"))
    assert names, "a new store has MLMD's built-in types"
    return names


def _assert_usable_and_complete(url: str, mariadb: MariaDB, builtin_types: list[str]) -> None:
    database = parse_store_url(url).database or ""
    assert _mlmd_tables(mariadb, database) == set(MLMD_TABLES)
    assert _versions(mariadb, database) == [library_schema_version()]
    types = sorted(name for (name,) in mariadb.execute(f"SELECT name FROM `{database}`.Type"))
    assert types == builtin_types, "built-in types missing or duplicated"
    store = open_store(url)
    type_id = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=type_id, name="wf-1", external_id="run:wf-1")])
    assert [c.name for c in store.get_contexts_by_external_ids(["run:wf-1"])] == ["wf-1"]


def _kill_when(
    process: subprocess.Popen[str], mariadb: MariaDB, name: str, stage: int, deadline_s: float = 60
) -> str:
    """SIGKILL ``process`` once its schema creation reaches ``stage``; what the kill interrupted.

    Stage 0: the database exists; 1..15: that many MLMD tables exist; 16: the version row is
    written. Polls the server (a condition, not a pause) until then or until the child ends.
    """
    connection = mariadb.connect()
    deadline = time.monotonic() + deadline_s
    try:
        with connection.cursor() as cursor:
            while process.poll() is None:
                assert time.monotonic() < deadline, f"stage {stage} never reached"
                cursor.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,))
                if cursor.fetchone() is None:
                    continue
                cursor.execute(
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (name,)
                )
                tables = {t for (t,) in cursor.fetchall()} & set(MLMD_TABLES)
                reached = len(tables)
                if "MLMDEnv" in tables:
                    cursor.execute(f"SELECT COUNT(*) FROM `{name}`.MLMDEnv")
                    if cursor.fetchone()[0]:
                        reached = 16
                if reached >= stage:
                    process.kill()
                    process.wait()
                    return "killed"
    finally:
        connection.close()
    return "finished first"


def test_twenty_kills_during_first_use_each_then_a_rerun(
    fresh_databases: Callable[[], str], mariadb_server: MariaDB, tmp_path: Path
) -> None:
    builtin_types = _reference_type_names(tmp_path)
    rng = random.Random(20)  # reproducible "random moments"
    # Every stage once (0: database made, 1-15: tables made, 16: version written), in random
    # order, then three more at random: 20 kills.
    stages = rng.sample(range(17), 17) + [rng.randint(0, 16) for _ in range(3)]
    outcomes = []
    left_partial = 0
    for stage in stages:
        url = fresh_databases()
        database = parse_store_url(url).database or ""
        outcome = _kill_when(_first_run(url), mariadb_server, database, stage)
        tables = _mlmd_tables(mariadb_server, database)
        if tables and not _versions(mariadb_server, database):
            left_partial += 1
        outcomes.append((stage, outcome, len(tables)))
        open_store(url)  # the rerun, in this process
        _assert_usable_and_complete(url, mariadb_server, builtin_types)
    print("stage, outcome, MLMD tables left:", outcomes)
    # The kills really did land inside the schema creation, leaving half-made schemas.
    assert left_partial >= 8, outcomes


def test_three_concurrent_first_runs_all_succeed(
    fresh_databases: Callable[[], str], mariadb_server: MariaDB, tmp_path: Path
) -> None:
    builtin_types = _reference_type_names(tmp_path)
    for _ in range(3):
        url = fresh_databases()
        runs = [_first_run(url) for _ in range(3)]
        results = [_finish(run) for run in runs]
        assert [code for code, _ in results] == [0, 0, 0], results
        _assert_usable_and_complete(url, mariadb_server, builtin_types)


# ---------------------------------------------------------------------------- partial schemas by hand


def _complete_then(mysql_url: str, mariadb: MariaDB, *statements: str) -> str:
    open_store(mysql_url)
    database = parse_store_url(mysql_url).database or ""
    for statement in statements:
        mariadb.execute(statement.format(db=database))
    return database


@pytest.mark.parametrize(
    "damage",
    [
        # MLMDEnv made, its row never written (killed during the indexes)
        ("DELETE FROM `{db}`.Type", "DELETE FROM `{db}`.MLMDEnv"),
        # killed after a few tables, before MLMDEnv
        ("DROP TABLE `{db}`.MLMDEnv, `{db}`.Context, `{db}`.Association, `{db}`.Attribution",
         "DELETE FROM `{db}`.Type"),
    ],
    ids=["no-version-row", "some-tables"],
)
def test_an_interrupted_creation_is_redone(
    mysql_url: str, mariadb_server: MariaDB, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    damage: tuple[str, ...],
) -> None:
    database = _complete_then(mysql_url, mariadb_server, *damage)
    assert _versions(mariadb_server, database) == []
    with caplog.at_level(logging.WARNING, logger="store.mysql_schema"):
        open_store(mysql_url)
    assert "left unfinished by an interrupted first use" in caplog.text
    _assert_usable_and_complete(mysql_url, mariadb_server, _reference_type_names(tmp_path))


def test_a_partial_schema_someone_is_working_on_is_left_alone(
    mysql_url: str, mariadb_server: MariaDB, tmp_path: Path
) -> None:
    """A restore from a dump also passes through 'some tables, no version row'."""
    database = _complete_then(
        mysql_url, mariadb_server, "DELETE FROM `{db}`.Type", "DELETE FROM `{db}`.MLMDEnv"
    )
    restoring = mariadb_server.connect(database)  # like `mariadb metadb < metadb.sql`
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            open_store(mysql_url, lock_timeout_s=2)
        assert "other connections are using the database" in str(info.value)
        assert "left untouched" in str(info.value)
        assert time.monotonic() - started < 10
        assert _mlmd_tables(mariadb_server, database) == set(MLMD_TABLES)
    finally:
        restoring.close()
    open_store(mysql_url)  # the worker is gone: now the creation is redone
    _assert_usable_and_complete(mysql_url, mariadb_server, _reference_type_names(tmp_path))


def test_a_read_only_open_does_not_redo_it(mysql_url: str, mariadb_server: MariaDB) -> None:
    database = _complete_then(
        mysql_url, mariadb_server, "DELETE FROM `{db}`.Type", "DELETE FROM `{db}`.MLMDEnv"
    )
    with pytest.raises(StoreMissingError, match="unfinished"):
        open_store(mysql_url, read_only=True)
    assert _mlmd_tables(mariadb_server, database) == set(MLMD_TABLES)
    assert _versions(mariadb_server, database) == []


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read-only"])
def test_records_without_a_schema_version_are_never_touched(
    mysql_url: str, mariadb_server: MariaDB, read_only: bool
) -> None:
    store = open_store(mysql_url)
    type_id = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=type_id, name="precious")])
    database = parse_store_url(mysql_url).database
    mariadb_server.execute(f"DELETE FROM `{database}`.MLMDEnv")
    with pytest.raises(StoreSchemaDamagedError) as info:
        open_store(mysql_url, read_only=read_only)
    message = str(info.value)
    assert "\n" not in message
    assert "holds records (in Context, Type)" in message and "left untouched" in message
    assert mariadb_server.execute(f"SELECT name FROM `{database}`.Context") == [("precious",)]
    assert _mlmd_tables(mariadb_server, database) == set(MLMD_TABLES)
