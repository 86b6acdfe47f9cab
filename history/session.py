"""One read-only database connection for a stored-run reader (PyMySQL or psycopg 3).

Every query runs in a read-only transaction of its own that is rolled back
once its rows are fetched: the readers never write, never hold a snapshot
or a server-side cursor open while the caller works on what they yielded,
and a database that would take a write from a bug refuses it instead.
Driver errors become one-line `SourceUnavailableError`s that name the
source by its redacted URL and never show the password.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import psycopg
import pymysql
from psycopg.conninfo import make_conninfo

from history.errors import SourceConfigError, SourceUnavailableError
from history.url import DatabaseURL

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10

Row = tuple[Any, ...]


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, pymysql.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[1]} (MySQL error {exc.args[0]})"
    return str(exc) or type(exc).__name__


class ReadOnlySession:
    """A read-only connection to a MySQL/MariaDB or PostgreSQL database."""

    def __init__(self, url: DatabaseURL, *, what: str) -> None:
        self.url = url
        self.what = what
        self.dialect = url.dialect
        try:
            self._conn = self._connect()
        except (pymysql.MySQLError, psycopg.Error, OSError, ValueError) as exc:
            raise self._unavailable("cannot connect to", exc) from None

    def _unavailable(self, doing: str, exc: BaseException) -> SourceUnavailableError:
        reason = self.url.hide(_one_line(_reason(exc)))
        return SourceUnavailableError(f"{doing} the {self.what} at {self.url.redacted()}: {reason}")

    def _connect(self) -> Any:
        options = dict(self.url.options)
        timeout_text = options.pop("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT_S))
        if not timeout_text.isdigit() or int(timeout_text) < 1:
            raise SourceConfigError(
                f"{self.url.redacted()}: connect_timeout must be a whole number of seconds, "
                f"not {timeout_text!r}"
            )
        timeout = int(timeout_text)
        if self.dialect == "mysql":
            verify = options.pop("ssl_verify_cert", None)
            conn = pymysql.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.user,
                password=self.url.password or "",
                database=self.url.database,
                connect_timeout=timeout,
                charset="utf8mb4",
                autocommit=False,
                ssl_verify_cert=None if verify is None else verify.lower() in ("1", "true", "yes"),
                **options,
            )
            with conn.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION READ ONLY")
                # TIMESTAMP columns come back in UTC, as the readers take them.
                cursor.execute("SET time_zone = '+00:00'")
            conn.commit()
            return conn
        conninfo = make_conninfo(
            host=self.url.host,
            port=str(self.url.port),
            user=self.url.user,
            dbname=self.url.database,
            connect_timeout=str(timeout),
            **options,
        )
        conn = psycopg.connect(conninfo, password=self.url.password, autocommit=False)
        conn.read_only = True
        return conn

    def quote(self, identifier: str) -> str:
        """`identifier` quoted for this dialect (KFP's column names are mixed-case)."""
        return f"`{identifier}`" if self.dialect == "mysql" else f'"{identifier}"'

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        """Run one SELECT (placeholders `%s`) in a read-only transaction; all its rows."""
        try:
            if self.dialect == "mysql":
                with self._conn.cursor() as cursor:
                    cursor.execute(sql, tuple(args))
                    rows = list(cursor.fetchall())
            else:
                rows = self._conn.execute(sql, tuple(args)).fetchall()
            self._conn.rollback()
        except (pymysql.MySQLError, psycopg.Error, OSError) as exc:
            error = self._unavailable("a query failed on", exc)
            self._end_failed_transaction()
            raise error from None
        return rows

    def _end_failed_transaction(self) -> None:
        # PostgreSQL refuses every later query until a failed transaction is rolled back.
        try:
            self._conn.rollback()
        except (pymysql.MySQLError, psycopg.Error, OSError) as exc:
            log.debug("rollback on %s: %s", self.url.redacted(), self.url.hide(str(exc)))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except (pymysql.MySQLError, psycopg.Error, OSError) as exc:
            log.debug("closing %s: %s", self.url.redacted(), self.url.hide(str(exc)))

    def __enter__(self) -> ReadOnlySession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
