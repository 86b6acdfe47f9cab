"""Safe first use of a MySQL database by the embedded MLMD library.

MLMD creates its schema on first connect, one auto-committed ``CREATE TABLE`` at a time, and
writes the schema version last. Left alone, a process killed in between bricks the database
(every later open fails), and concurrent first opens trip over each other's half-made
schema; concurrent opens also each insert MLMD's built-in types, in duplicate.

:func:`mysql_schema_ready` is held around the library's open. On a separate PyMySQL
connection it takes a MySQL advisory lock (``GET_LOCK``) named after the database, so that
reconcilers open a database one at a time; then it reads the schema state (never creating
anything) and decides:

* complete, the library's schema version: go ahead;
* complete, another version: :class:`StoreSchemaMismatchError` (never migrated);
* empty or missing: read-only -> :class:`StoreMissingError`; else the library creates it;
* partial (MLMD tables, no version row) and every MLMD table empty: an interrupted creation.
  Read-only -> :class:`StoreMissingError`; else, once no other connection uses the database,
  drop those tables so the library redoes it. Nothing can have written records there: no
  MLMD library opens a partial schema. Another connection on the database means someone is
  still at work there -- a restore from a dump, or a killed process's last statement still
  running on the server: wait for it a little, then give up (:class:`StoreUnavailableError`,
  try again later) rather than drop tables under it;
* partial with records: :class:`StoreSchemaDamagedError`; nothing is touched.

The lock is released when the block ends, or by the server when a killed process's
connection closes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import pymysql

from store.errors import (
    StoreLoginRefusedError,
    StoreMissingError,
    StoreSchemaDamagedError,
    StoreSchemaMismatchError,
    StoreUnavailableError,
)
from store.schema import (
    MLMD_TABLES,
    SchemaState,
    drop_mysql_tables,
    library_schema_version,
    library_version,
    mysql_tables_with_rows,
    read_mysql_schema,
)

__all__ = ["DEFAULT_LOCK_TIMEOUT_S", "KFP_MLMD_URL", "lock_name", "mismatch_error", "mysql_schema_ready"]

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 120.0
# How long a partial schema may stay in use by other connections before we give up on it.
SESSIONS_SETTLE_S = 10.0
# What to use instead of a database of another schema version: the MLMD server that owns it.
KFP_MLMD_URL = "grpc://metadata-grpc-service:8080"
_LOCK_PREFIX = "kfpmr.mlmd_schema."
_MAX_LOCK_NAME = 64  # MySQL's limit on GET_LOCK names
# MySQL's answers to a login it refuses: access denied (user or password), no access to the
# database, no password given where one is needed.
LOGIN_REFUSED = frozenset({1044, 1045, 1698})


def lock_name(database: str) -> str:
    """The advisory lock's name for ``database`` (hashed if the name would be too long)."""
    name = _LOCK_PREFIX + database
    if len(name) <= _MAX_LOCK_NAME:
        return name
    return _LOCK_PREFIX + hashlib.sha256(database.encode()).hexdigest()[: _MAX_LOCK_NAME - len(_LOCK_PREFIX)]


def mismatch_error(store: str, found: int) -> StoreSchemaMismatchError:
    """The one-line error for a database of schema ``found`` (not the library's) at ``store``."""
    return StoreSchemaMismatchError(
        f"the MLMD database {store} has schema version {found}, but this reconciler's MLMD library "
        f"(ml-metadata {library_version()}) uses schema version {library_schema_version()} and never "
        f"migrates a database it did not create; connect through the MLMD gRPC server that owns this "
        f"database instead (in KFP: --mlmd {KFP_MLMD_URL})"
    )


def _connect(target: Any, timeout_s: float, lock_timeout_s: float) -> Any:
    try:
        return pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password or "",
            connect_timeout=timeout_s,
            # GET_LOCK waits on the server: leave it time to answer.
            read_timeout=lock_timeout_s + timeout_s,
            write_timeout=timeout_s,
            autocommit=True,
            charset="utf8mb4",
        )
    except pymysql.MySQLError as exc:
        reason = _mysql_reason(exc)
        message = f"cannot reach MLMD at {target.redacted()}: {reason}"
        if getattr(exc, "args", (None,))[0] in LOGIN_REFUSED:
            raise StoreLoginRefusedError(message) from None
        raise StoreUnavailableError(message) from None


def _mysql_reason(exc: Exception) -> str:
    """``MySQL error 1045: Access denied for user ...`` from a PyMySQL error (no password in it)."""
    args = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return " ".join(f"MySQL error {args[0]}: {args[1]}".split())
    return " ".join(str(exc).split()) or type(exc).__name__


def _acquire(connection: Any, target: Any, lock_timeout_s: float) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, %s)", (lock_name(target.database), lock_timeout_s))
        row = cursor.fetchone()
    if row is None or row[0] != 1:
        raise StoreUnavailableError(
            f"cannot open MLMD at {target.redacted()}: another process has held its schema lock "
            f"for more than {lock_timeout_s:g} s (it may be creating the MLMD schema)"
        )


def _other_sessions(connection: Any, database: str) -> list[str]:
    """Other connections using ``database`` (those of other users need the PROCESS privilege)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT USER, COMMAND FROM information_schema.PROCESSLIST "
            "WHERE BINARY DB = %s AND ID <> CONNECTION_ID()",
            (database,),
        )
        return [f"{user} ({command})" for user, command in cursor.fetchall()]


def _wait_for_other_sessions(connection: Any, target: Any, settle_s: float) -> None:
    deadline = time.monotonic() + settle_s
    while others := _other_sessions(connection, target.database):
        if time.monotonic() >= deadline:
            raise StoreUnavailableError(
                f"the MLMD schema of {target.redacted()} is incomplete and other connections are "
                f"using the database ({', '.join(others[:3])}): a restore or another first run? It "
                "was left untouched; try again when they are done"
            )
        time.sleep(0.1)  # poll interval; the processlist decides


def _refuse_records(connection: Any, target: Any, state: SchemaState) -> None:
    """A partial schema holding any row is someone's data: never touch it."""
    with_rows = mysql_tables_with_rows(connection, target.database, state.tables)
    if with_rows or len(state.versions) > 1:
        env = f"{len(state.versions)} rows in MLMDEnv" if "MLMDEnv" in state.tables else "no MLMDEnv table"
        raise StoreSchemaDamagedError(
            f"the MLMD database {target.redacted()} holds records (in {', '.join(with_rows) or 'MLMDEnv'}) "
            f"but no complete MLMD schema ({env}); it was left untouched: restore it from a backup or "
            "repair it by hand"
        )


def _missing(target: Any, what: str) -> StoreMissingError:
    return StoreMissingError(
        f"the MySQL database of {target.redacted()} {what}; a read-only command never creates one "
        "(check the database name)"
    )


def _check(connection: Any, target: Any, state: SchemaState, read_only: bool, settle_s: float) -> None:
    """Raise for a state the library must not open; redo an interrupted creation (writers)."""
    if state.complete:
        if state.version != library_schema_version():
            raise mismatch_error(target.redacted(), state.versions[0])
        return
    if state.empty:
        if read_only:
            raise _missing(target, "holds no MLMD schema" if state.exists else "does not exist")
        return
    _refuse_records(connection, target, state)
    if read_only:
        raise StoreMissingError(
            f"the MLMD schema of {target.redacted()} is unfinished (an interrupted first use, or a "
            "restore under way); a read-only command does not finish it: run a writing command once"
        )
    if settle_s > 0:
        # Let whoever still works there finish, then decide again on what they left.
        _wait_for_other_sessions(connection, target, settle_s)
        _check(connection, target, read_mysql_schema(connection, target.database), read_only, 0.0)
        return
    log.warning(
        "the MLMD schema of %s was left unfinished by an interrupted first use (%d of %d tables, no "
        "version); its empty tables are dropped and the schema is created again",
        target.redacted(),
        len(state.tables),
        len(MLMD_TABLES),
    )
    drop_mysql_tables(connection, target.database, state.tables)


@contextlib.contextmanager
def mysql_schema_ready(
    target: Any, *, read_only: bool, timeout_s: float, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Iterator[SchemaState]:
    """Hold the database's schema lock, having checked (and for writers repaired) its schema.

    ``target`` is a ``mysql`` :class:`~store.connect.StoreTarget`. Open the embedded library
    inside the block. Raises the errors listed in the module docstring, and
    :class:`StoreUnavailableError` when MySQL refuses the login or the lock stays taken.
    """
    connection = _connect(target, timeout_s, lock_timeout_s)
    try:
        try:
            _acquire(connection, target, lock_timeout_s)
            state = read_mysql_schema(connection, target.database)
            _check(connection, target, state, read_only, min(SESSIONS_SETTLE_S, lock_timeout_s))
        except pymysql.MySQLError as exc:
            raise StoreUnavailableError(
                f"cannot open MLMD at {target.redacted()}: {_mysql_reason(exc)}"
            ) from None
        yield state
    finally:
        connection.close()  # releases the lock
