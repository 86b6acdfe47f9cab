"""Throwaway MariaDB and PostgreSQL databases, and simulated KFP runs stored in them.

* ``postgres_server`` -- the PostgreSQL server at 127.0.0.1:5432 (trust auth, user
  postgres) every machine here runs; unreachable means FAIL, never skip;
* ``new_database`` -- a factory of empty, uniquely named databases on MariaDB
  (``"mysql"``) or PostgreSQL (``"postgresql"``), all dropped after the test;
* ``stored_runs`` -- simulate KFP runs with the persistence agent writing a run
  store (and optionally an archive); see :func:`record_runs`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from history.url import DatabaseURL, parse_database_url
from sandbox.argo_archive import ArgoArchiveWriter, create_archive_tables
from sandbox.kfp_runstore import KfpRunStore, create_run_details
from sandbox.objectstore import ObjectStore
from sandbox.persistence import NodesForm, PersistenceAgent, keep_nodes
from sandbox.simulator import SimClock, Simulator, chain_workflow
from sandbox.sqldb import SqlWriter, create_database, drop_database
from tests.conftest import MariaDB

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
DB_PREFIX = "kfpmr_h_"  # kfpmr_h_<pid>_<counter>
SERVERS = {
    "mysql": "mysql://root@127.0.0.1:3306/{name}",
    "postgresql": f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{{name}}",
}

_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the local PostgreSQL server; fails (never skips) when unreachable."""
    problem = None
    try:
        with psycopg.connect(
            f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres", connect_timeout=5
        ) as conn:
            stale = [
                name
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (DB_PREFIX + "%",)
                )
            ]
    except psycopg.Error as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as {PG_USER!r} with trust auth ({problem}); "
            "the stored-run tests need it. Start it (pg_ctlcluster 15 main start) and run them again.",
            pytrace=False,
        )
    for name in stale:
        if _stale(name):
            drop_database(SERVERS["postgresql"].format(name=name))
    return SERVERS["postgresql"].format(name="postgres")


def _stale(name: str) -> bool:
    """A test database left behind by a test process that no longer runs."""
    pid = name[len(DB_PREFIX) :].split("_", 1)[0]
    return pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="session")
def database_servers(mariadb_server: MariaDB, postgres_server: str) -> None:
    """Both servers reachable, and this suite's stale MariaDB databases dropped."""
    for (name,) in mariadb_server.execute(f"SHOW DATABASES LIKE '{DB_PREFIX}%'"):
        if _stale(name):
            mariadb_server.drop_database(name)


@pytest.fixture
def new_database(database_servers: None) -> Iterator[Callable[[str], DatabaseURL]]:
    """`new_database(dialect)`: a fresh empty database on MariaDB or PostgreSQL; all dropped after."""
    made: list[DatabaseURL] = []

    def make(dialect: str) -> DatabaseURL:
        name = f"{DB_PREFIX}{os.getpid()}_{next(_counter)}"
        url = create_database(parse_database_url(SERVERS[dialect].format(name=name), what="test database"))
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


@dataclass
class RecordedRuns:
    """Runs simulated with the persistence agent storing them, and what the cluster held."""

    store: ObjectStore
    clock: SimClock
    simulator: Simulator
    agent: PersistenceAgent
    names: list[str]
    live_pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # workflow -> pods
    live_workflows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def age_past_ttl(self, max_ticks: int = 10_000) -> list[tuple[str, str]]:
        """Advance the clock until the agent deleted every Workflow; what it deleted."""
        deleted: list[tuple[str, str]] = []
        for _ in range(max_ticks):
            if not self.store.list("workflows"):
                return deleted
            self.clock.advance()
            deleted += self.agent.sync().deleted
        raise AssertionError(f"Workflows left after {max_ticks} ticks: {self.store.list('workflows')}")


def record_runs(
    *,
    runs: int,
    profile: str = "3.5",
    run_store: KfpRunStore | None = None,
    archive: ArgoArchiveWriter | None = None,
    nodes_form: Callable[[int], NodesForm] = keep_nodes,
    ttl_s: float = 30.0,
    steps: int = 3,
    namespaces: tuple[str, ...] = ("kubeflow",),
    stagger: int = 0,
    seed: int = 5,
    cache: bool = False,
) -> RecordedRuns:
    """Simulate `runs` chain runs to completion with the agent syncing after every step.

    Run i is submitted after `i * stagger` steps (so finish times differ) in
    namespace `namespaces[i % len]`. The live pods and Workflows are kept as
    they were when the runs finished, before any TTL deletion. With `cache`,
    KFP's cache webhook serves repeated steps from earlier runs.
    """
    store = ObjectStore()
    clock = SimClock()
    simulator = Simulator(store, profile, seed=seed, clock=clock, cache=cache)
    agent = PersistenceAgent(
        store, run_store=run_store, archive=archive, ttl_s=ttl_s, clock=clock, nodes_form=nodes_form
    )
    recorded = RecordedRuns(store, clock, simulator, agent, names=[])
    submitted = 0
    tick = 0
    while submitted < runs or simulator.active:
        if submitted < runs and tick >= submitted * stagger:
            namespace = namespaces[submitted % len(namespaces)]
            recorded.names.append(simulator.submit(chain_workflow(steps), namespace))
            submitted += 1
            continue
        simulator.step()
        agent.sync()
        tick += 1
        assert tick < 10_000, "the simulated runs did not finish"
    for workflow in store.list("workflows"):
        name = workflow["metadata"]["name"]
        recorded.live_workflows[name] = workflow
        recorded.live_pods[name] = store.list("pods", None, f"workflows.argoproj.io/workflow={name}")
    return recorded


@pytest.fixture
def kfp_store(new_database: Callable[[str], DatabaseURL]) -> Callable[..., tuple[DatabaseURL, KfpRunStore]]:
    """`kfp_store(dialect, layout)`: a fresh mlpipeline-shaped database and its run-store writer."""
    writers: list[SqlWriter] = []

    def make(dialect: str = "mysql", layout: str = "1.8") -> tuple[DatabaseURL, KfpRunStore]:
        url = new_database(dialect)
        writer = SqlWriter(url)
        writers.append(writer)
        create_run_details(writer, layout)
        return url, KfpRunStore(writer, layout)

    yield make
    for writer in writers:
        writer.close()


@pytest.fixture
def archive_store(
    new_database: Callable[[str], DatabaseURL],
) -> Callable[..., tuple[DatabaseURL, ArgoArchiveWriter]]:
    """`archive_store(dialect)`: a fresh database with Argo's archive tables and a writer."""
    writers: list[SqlWriter] = []

    def make(dialect: str = "postgresql", **kwargs: Any) -> tuple[DatabaseURL, ArgoArchiveWriter]:
        url = new_database(dialect)
        writer = SqlWriter(url)
        writers.append(writer)
        create_archive_tables(writer)
        return url, ArgoArchiveWriter(writer, **kwargs)

    yield make
    for writer in writers:
        writer.close()
