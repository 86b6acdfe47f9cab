"""Writable SQL connections and throwaway databases for the sandbox's stored-run stores.

The project's readers (`history/`) only ever read; the sandbox plays the
services that write -- KFP's API server filling `run_details`, Argo's
controller filling its archive -- on the local MariaDB and PostgreSQL.
URLs are parsed by `history.url` (the same forms the readers take).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import psycopg
import pymysql
from psycopg.conninfo import make_conninfo

from history.url import DatabaseURL, parse_database_url

WHAT = "sandbox database"


def database_url(url: str | DatabaseURL) -> DatabaseURL:
    """`url` parsed (the history readers' URL forms)."""
    return url if isinstance(url, DatabaseURL) else parse_database_url(url, what=WHAT)


def _connect(url: DatabaseURL, database: str | None) -> Any:
    if url.dialect == "mysql":
        return pymysql.connect(
            host=url.host,
            port=url.port,
            user=url.user,
            password=url.password or "",
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=10,
        )
    conninfo = make_conninfo(
        host=url.host, port=str(url.port), user=url.user, dbname=database or "postgres", connect_timeout="10"
    )
    return psycopg.connect(conninfo, password=url.password, autocommit=True)


class SqlWriter:
    """An autocommit connection to one database that runs statements with `%s` placeholders."""

    def __init__(self, url: str | DatabaseURL) -> None:
        self.url = database_url(url)
        self.dialect = self.url.dialect
        self._conn = _connect(self.url, self.url.database)

    def quote(self, identifier: str) -> str:
        """`identifier` quoted for this dialect."""
        return f"`{identifier}`" if self.dialect == "mysql" else f'"{identifier}"'

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it touched."""
        if self.dialect == "mysql":
            with self._conn.cursor() as cursor:
                return int(cursor.execute(sql, tuple(args)))
        return int(self._conn.execute(sql, tuple(args)).rowcount)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one SELECT; all its rows."""
        if self.dialect == "mysql":
            with self._conn.cursor() as cursor:
                cursor.execute(sql, tuple(args))
                return list(cursor.fetchall())
        return list(self._conn.execute(sql, tuple(args)).fetchall())

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> SqlWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def create_database(url: str | DatabaseURL) -> DatabaseURL:
    """Create the (empty) database `url` names, dropping one of that name first."""
    target = database_url(url)
    drop_database(target)
    conn = _connect(target, None)
    try:
        if target.dialect == "mysql":
            with conn.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{target.database}` CHARACTER SET utf8mb4")
        else:
            conn.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        conn.close()
    return target


def drop_database(url: str | DatabaseURL) -> None:
    """Drop the database `url` names, if it exists (closing other sessions on PostgreSQL)."""
    target = database_url(url)
    conn = _connect(target, None)
    try:
        if target.dialect == "mysql":
            with conn.cursor() as cursor:
                cursor.execute("SET SESSION lock_wait_timeout = 30")
                cursor.execute(f"DROP DATABASE IF EXISTS `{target.database}`")
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    finally:
        conn.close()
