"""Pytest fixtures used across the suites: the three MLMD backends and the API emulator.

* ``store_url`` -- parametrised over sqlite, mysql and grpc: a test that takes it runs once
  on each backend, each time on a fresh, empty store;
* ``sqlite_url``, ``mysql_url``, ``grpc_url`` (and ``grpc_server``) -- one backend each;
* ``mariadb_server`` -- the MariaDB server at 127.0.0.1:3306 (root, no password) that every
  machine here and CI runs: if it is not reachable the tests that need it FAIL, loudly;
* ``mlmd_server_factory`` -- ``start(version, backend)``: an MLMD gRPC server of an old
  ml-metadata release ("1.0.0", "1.5.0", "1.14.0", from the venvs scripts/test.sh installs)
  or the "current" one, over a fresh SQLite file or MariaDB database; ``versioned_mlmd`` and
  ``versioned_grpc_url`` are parametrised over all four (SQLite), ``old_mlmd_url`` over the
  three old ones, and ``every_store_url`` over the three backends of the current library and
  the three old servers. A missing interpreter or venv FAILS the test;
* ``api`` -- a running Kubernetes API emulator.

Workflows to run come from the project's own compiled pipelines: ``sandbox.pipelines.load``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from sandbox.mlmd_legacy import CURRENT, SERVER_VERSIONS, LegacyServerError, MlmdServer, versioned_server
from sandbox.mlmd_venvs import MlmdVenvError
from store.server import MetadataServer

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306
MARIADB_USER = "root"
MARIADB_PASSWORD = ""

STORE_KINDS = ("sqlite", "mysql", "grpc")
DB_PREFIX = "kfpmr_t_"  # test databases are named kfpmr_t_<pid>_<counter>

_db_counter = itertools.count()


@dataclass(frozen=True)
class MariaDB:
    """Where the test MariaDB server is, and a way to run admin statements on it."""

    host: str = MARIADB_HOST
    port: int = MARIADB_PORT
    user: str = MARIADB_USER
    password: str = MARIADB_PASSWORD

    def connect(self, database: str | None = None, timeout_s: float = 5.0) -> Any:
        """A new autocommit PyMySQL connection (close it, or use it in a ``with``)."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            connect_timeout=timeout_s,
            autocommit=True,
        )

    def execute(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows."""
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists (waiting at most 30 s for table locks)."""
        conn = self.connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SET SESSION lock_wait_timeout = 30")
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()

    def url(self, database: str) -> str:
        """The store URL of ``database`` on this server."""
        cred = self.user if not self.password else f"{self.user}:{self.password}"
        return f"mysql://{cred}@{self.host}:{self.port}/{database}"


@pytest.fixture(scope="session")
def mariadb_server() -> MariaDB:
    """The MariaDB server every machine runs; fails (never skips) when it is unreachable."""
    server = MariaDB()
    problem = None
    try:
        server.execute("SELECT 1")
    except Exception as exc:  # any failure here means the environment is broken
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        pytest.fail(
            f"MariaDB is not reachable at {server.host}:{server.port} as {server.user!r} "
            f"with an empty password ({problem}); the store tests need it. "
            "Start it (scripts/test.sh does: start-stop-daemon --start --background "
            "--exec /usr/sbin/mariadbd) and run the tests again.",
            pytrace=False,
        )
    _drop_stale_databases(server)
    return server


def _drop_stale_databases(server: MariaDB) -> None:
    """Drop test databases left behind by test processes that no longer run."""
    for (name,) in server.execute(f"SHOW DATABASES LIKE '{DB_PREFIX}%'"):
        pid = name[len(DB_PREFIX) :].split("_", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            server.drop_database(name)


def new_database_name() -> str:
    """A database name no other test (or test process) uses; dropped as stale once we exit."""
    return f"{DB_PREFIX}{os.getpid()}_{next(_db_counter)}"


@pytest.fixture
def mysql_url(mariadb_server: MariaDB) -> Iterator[str]:
    """A fresh, empty MariaDB database for this test as a ``mysql://`` URL; dropped after.

    The database itself is not created: MLMD creates it on first connect.
    """
    name = new_database_name()
    mariadb_server.drop_database(name)
    yield mariadb_server.url(name)
    mariadb_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A ``sqlite:////abs/path`` URL of a not yet existing file under ``tmp_path``."""
    return f"sqlite:///{tmp_path / 'mlmd' / 'metadata.sqlite'}"


@pytest.fixture
def grpc_server(tmp_path: Path) -> Iterator[MetadataServer]:
    """The project's MLMD gRPC server over a fresh SQLite file, started; stopped after."""
    server = MetadataServer(f"sqlite:///{tmp_path / 'mlmd-server' / 'metadata.sqlite'}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def grpc_url(grpc_server: MetadataServer) -> str:
    """The ``grpc://127.0.0.1:PORT`` URL of :func:`grpc_server`."""
    return grpc_server.url


@pytest.fixture(params=STORE_KINDS, ids=list(STORE_KINDS))
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty MLMD store of each kind in turn: sqlite, mysql, grpc."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def api() -> Iterator[Any]:
    """A running Kubernetes API emulator on a random port with 0.2 s bookmarks."""
    from sandbox.apiserver import ApiServer

    server = ApiServer(bookmark_interval=0.2).start()
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- MLMD versions

MLMD_BACKENDS = ("sqlite", "mysql")


@dataclass(frozen=True)
class VersionedMlmd:
    """A started MLMD server of one version: its ``grpc://`` URL and the store it serves."""

    version: str
    backend: str
    url: str
    store_url: str
    server: MlmdServer


@pytest.fixture
def mlmd_server_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., VersionedMlmd]]:
    """``start(version, backend="sqlite")``: a started MLMD server of that version, stopped after.

    ``version`` is "1.0.0", "1.5.0", "1.14.0" (old releases, each in its venv's interpreter)
    or "current" (the project's server); ``backend`` "sqlite" (a fresh file) or "mysql" (a
    fresh MariaDB database, created by that version's library, dropped after).
    """
    started: list[MlmdServer] = []
    databases: list[str] = []
    counter = itertools.count()

    def start(version: str, backend: str = "sqlite") -> VersionedMlmd:
        assert version in SERVER_VERSIONS, version
        assert backend in MLMD_BACKENDS, backend
        if backend == "sqlite":
            store_url = f"sqlite:///{tmp_path / f'mlmd-{version}-{next(counter)}' / 'metadata.sqlite'}"
        else:
            mariadb: MariaDB = request.getfixturevalue("mariadb_server")
            databases.append(new_database_name())
            mariadb.drop_database(databases[-1])
            store_url = mariadb.url(databases[-1])
        server = versioned_server(version, store_url)
        try:
            server.start()
        except (MlmdVenvError, LegacyServerError) as exc:
            pytest.fail(f"MLMD {version} server: {exc}", pytrace=False)
        started.append(server)
        return VersionedMlmd(version, backend, server.url, store_url, server)

    yield start
    for server in started:
        server.stop()
    if databases:
        mariadb = request.getfixturevalue("mariadb_server")
        for name in databases:
            mariadb.drop_database(name)


@pytest.fixture(params=SERVER_VERSIONS, ids=list(SERVER_VERSIONS))
def versioned_mlmd(
    request: pytest.FixtureRequest, mlmd_server_factory: Callable[..., VersionedMlmd]
) -> VersionedMlmd:
    """An MLMD server of each version in turn ("1.0.0", "1.5.0", "1.14.0", "current") over SQLite."""
    return mlmd_server_factory(request.param)


@pytest.fixture
def versioned_grpc_url(versioned_mlmd: VersionedMlmd) -> str:
    """The ``grpc://`` URL of :func:`versioned_mlmd`: each MLMD server version in turn."""
    return versioned_mlmd.url


OLD_MLMD_VERSIONS = tuple(v for v in SERVER_VERSIONS if v != CURRENT)


@pytest.fixture(params=OLD_MLMD_VERSIONS, ids=[f"mlmd-{v}" for v in OLD_MLMD_VERSIONS])
def old_mlmd_url(request: pytest.FixtureRequest, mlmd_server_factory: Callable[..., VersionedMlmd]) -> str:
    """The ``grpc://`` URL of an old MLMD server ("1.0.0", "1.5.0", "1.14.0") over SQLite, in turn."""
    return mlmd_server_factory(request.param).url


@pytest.fixture(
    params=[*STORE_KINDS, *OLD_MLMD_VERSIONS], ids=[*STORE_KINDS, *(f"mlmd-{v}" for v in OLD_MLMD_VERSIONS)]
)
def every_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh store of every kind in turn: the current library over sqlite, mysql and grpc,
    then the old MLMD servers 1.0.0, 1.5.0 and 1.14.0 (each over SQLite, through gRPC)."""
    if request.param in STORE_KINDS:
        return str(request.getfixturevalue(f"{request.param}_url"))
    factory: Callable[..., VersionedMlmd] = request.getfixturevalue("mlmd_server_factory")
    return factory(request.param).url
