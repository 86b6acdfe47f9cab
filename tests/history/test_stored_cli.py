"""`reconcile` and `verify` with `--from-kfp-db` / `--from-argo-archive`, as the console script.

The disaster-recovery drill of issue 15: KFP runs on the sandbox cluster, their
Workflows stored by KFP's persistence agent (MariaDB, KFP 1.8.5 layout, half
with `compressedNodes`) and archived by Argo (PostgreSQL); MLMD (over MariaDB)
reconciled from the live cluster and backed up; more runs; the workflow TTL
deletes every Workflow and pod; MLMD restored from the backup. Then `verify`
with the stored source reports what is missing (exit 4), `reconcile` repairs
it, `verify` exits 0 and MLMD equals the never-lost state, with no duplicates.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from history import open_kfp_db
from history.url import DatabaseURL
from reconcile.keys import PREFIX
from sandbox.apiserver import ApiServer
from sandbox.argo_archive import ArgoArchiveWriter
from sandbox.kfp_runstore import KfpRunStore
from sandbox.persistence import NodesForm, PersistenceAgent, every_second_compressed
from sandbox.simulator import SimClock, Simulator, chain_workflow
from sandbox.sqldb import SqlWriter
from store.connect import open_store
from tests.controller.test_manual_cli import CLI, clean_env, run_on_terminal
from tests.mlmd_snapshot import snapshot

KfpStore = Callable[..., tuple[DatabaseURL, KfpRunStore]]
ArchiveStore = Callable[..., tuple[DatabaseURL, ArgoArchiveWriter]]
STEPS = 3  # per run (chain_workflow)
TTL_S = 3600.0


def plain(url: DatabaseURL) -> str:
    """The URL as a command line gives it (the test servers need no password)."""
    return url.redacted()


@dataclass
class StoredCluster:
    """The sandbox cluster with KFP's persistence agent (and Argo's archive) recording runs."""

    api: ApiServer
    clock: SimClock
    simulator: Simulator
    agent: PersistenceAgent
    kubeconfig: Path
    mlmd_url: str
    names: list[str] = field(default_factory=list)

    def run(self, count: int, namespace: str = "kubeflow") -> list[str]:
        """Submit `count` chain runs and simulate them to completion, the agent syncing."""
        names = [self.simulator.submit(chain_workflow(STEPS), namespace) for _ in range(count)]
        for _ in range(10_000):
            if not self.simulator.active:
                break
            self.simulator.step()
            self.agent.sync()
        else:
            raise AssertionError("the simulated runs did not finish")
        self.agent.sync()
        self.names += names
        return names

    def age_past_ttl(self) -> list[tuple[str, str]]:
        """Move the clock past the TTL: the agent deletes every finished Workflow and its pods."""
        self.clock.now_dt += timedelta(seconds=TTL_S + 1)
        deleted = self.agent.sync().deleted
        assert self.api.store.list("workflows") == [] and self.api.store.list("pods") == []
        return deleted

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The console script with this cluster's kubeconfig and MLMD (and `env` set)."""
        command = [*CLI, *args, "--mlmd", self.mlmd_url]
        if "--no-cluster" not in args:
            command += ["--kubeconfig", str(self.kubeconfig)]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False, env=clean_env(**env)
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(done.stdout)


def start_cluster(
    tmp_path: Path,
    mlmd_url: str,
    run_store: KfpRunStore | None,
    archive: ArgoArchiveWriter | None,
    nodes_form: Callable[[int], NodesForm] = every_second_compressed,
) -> StoredCluster:
    api = ApiServer(bookmark_interval=0.5)
    api.start()
    clock = SimClock()
    simulator = Simulator(api.store, "3.5", seed=3, clock=clock)
    agent = PersistenceAgent(
        api.store, run_store=run_store, archive=archive, ttl_s=TTL_S, clock=clock, nodes_form=nodes_form
    )
    return StoredCluster(
        api, clock, simulator, agent, api.write_kubeconfig(tmp_path / "kubeconfig"), mlmd_url
    )


@pytest.fixture
def stored_cluster(
    tmp_path: Path, mysql_url: str, kfp_store: KfpStore, archive_store: ArchiveStore
) -> Iterator[tuple[StoredCluster, DatabaseURL, DatabaseURL]]:
    kfp_url, kfp = kfp_store("mysql", "1.8")
    archive_url, archive = archive_store("postgresql")
    cluster = start_cluster(tmp_path, mysql_url, kfp, archive)
    open_store(mysql_url)  # an empty MLMD: verify never creates one
    try:
        yield cluster, kfp_url, archive_url
    finally:
        cluster.api.stop()


def mariadb_backup(mysql_url: str, target: Path) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    with target.open("wb") as out:
        subprocess.run(
            ["mariadb-dump", "-h127.0.0.1", "-P3306", "-uroot", "--single-transaction", database],
            stdout=out,
            check=True,
        )


def mariadb_restore(mysql_url: str, source: Path) -> None:
    database = mysql_url.rsplit("/", 1)[1]
    admin = ["mariadb", "-h127.0.0.1", "-P3306", "-uroot"]
    subprocess.run([*admin, "-e", f"DROP DATABASE `{database}`; CREATE DATABASE `{database}`"], check=True)
    with source.open("rb") as dump:
        subprocess.run([*admin, database], stdin=dump, check=True)


def execution_keys(mlmd_url: str) -> list[str]:
    return [e.external_id for e in open_store(mlmd_url).get_executions() if e.external_id.startswith(PREFIX)]


@pytest.mark.parametrize("flag", ["--from-kfp-db", "--from-argo-archive"])
def test_dr_drill_restore_older_than_the_workflow_ttl(
    stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL], tmp_path: Path, flag: str
) -> None:
    cluster, kfp_url, archive_url = stored_cluster
    source = plain(kfp_url if flag == "--from-kfp-db" else archive_url)
    first = cluster.run(4)
    assert cluster.cli("reconcile", "-A").returncode == 0
    backup = tmp_path / "mlmd-backup.sql"
    mariadb_backup(cluster.mlmd_url, backup)
    second = cluster.run(4)
    assert cluster.cli("reconcile", "-A").returncode == 0
    never_lost = snapshot(open_store(cluster.mlmd_url))
    assert len(execution_keys(cluster.mlmd_url)) == 8 * STEPS
    # A day later: the TTL deleted every Workflow and pod; then MLMD is restored from the backup.
    assert sorted(name for _, name in cluster.age_past_ttl()) == sorted(first + second)
    mariadb_restore(cluster.mlmd_url, backup)
    assert len(execution_keys(cluster.mlmd_url)) == 4 * STEPS

    # The cluster alone cannot tell: nothing is left in it, the restored records look orphaned.
    alone = cluster.cli("verify", "-A", "-o", "json")
    assert alone.returncode == 0, alone.stderr
    assert as_json(alone)["drift_counted"] == 0
    assert len(as_json(alone)["drift"]["orphaned_execution"]) == 4 * STEPS

    drift = cluster.cli("verify", "-A", flag, source, "-o", "json")
    assert drift.returncode == 4, drift.stderr
    report = as_json(drift)
    assert report["stored_runs"]["runs_read"] == 8 and report["stored_runs"]["unrecoverable_total"] == 0
    assert len(report["drift"]["missing_execution"]) == 4 * STEPS
    assert len(report["drift"]["missing_context"]) == 4
    assert {d["subject"] for d in report["drift"]["missing_context"]} == set(second)
    assert "orphaned_execution" not in report["drift"]  # the stored runs account for the first half
    assert len(execution_keys(cluster.mlmd_url)) == 4 * STEPS

    dry = cluster.cli("reconcile", "-A", flag, source, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("execution.create") == 4 * STEPS + 1  # one line each, plus the summary row
    assert len(execution_keys(cluster.mlmd_url)) == 4 * STEPS

    repair = cluster.cli("reconcile", "-A", flag, source)
    assert repair.returncode == 0, repair.stderr
    assert "steps rebuilt from stored runs: 24" in repair.stdout
    assert "MLMD writes: execution.create: 12" in repair.stdout

    clean = cluster.cli("verify", "-A", flag, source)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "drift found: 0" in clean.stdout
    assert snapshot(open_store(cluster.mlmd_url)) == never_lost
    keys = execution_keys(cluster.mlmd_url)
    assert len(keys) == len(set(keys)) == 8 * STEPS

    # Again, and the other source after it: keys are the same, nothing is written twice.
    other = plain(archive_url if flag == "--from-kfp-db" else kfp_url)
    other_flag = "--from-argo-archive" if flag == "--from-kfp-db" else "--from-kfp-db"
    for args in ((flag, source), (other_flag, other)):
        again = as_json(cluster.cli("reconcile", "-A", *args, "-o", "json"))
        assert again["actions"] == {} and again["errors"] == []
    assert snapshot(open_store(cluster.mlmd_url)) == never_lost


def test_a_combined_pass_lets_the_live_objects_win(
    stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL], mariadb_server: Any
) -> None:
    """Cluster and stored source in one command; and one after the other: never a duplicate."""
    cluster, kfp_url, _ = stored_cluster
    old = cluster.run(2)
    cluster.age_past_ttl()
    live = cluster.run(2)  # still in the cluster, and stored too
    source = plain(kfp_url)

    dry = as_json(cluster.cli("reconcile", "-A", "--from-kfp-db", source, "--dry-run", "-o", "json"))
    assert dry["pods_seen"] == 2 * STEPS
    assert dry["stored_runs"]["runs_read"] == 4
    assert dry["stored_runs"]["runs_live"] == 2  # their Workflows are in the cluster: the live objects win
    assert dry["stored_runs"]["steps"] == 2 * STEPS
    assert dry["actions"]["execution.create"] == 4 * STEPS

    done = as_json(cluster.cli("reconcile", "-A", "--from-kfp-db", source, "-o", "json"))
    assert done["actions"]["execution.create"] == 4 * STEPS and done["errors"] == []
    assert len(done["pod_patches"]) == 2 * STEPS  # the live pods are labelled
    keys = execution_keys(cluster.mlmd_url)
    assert len(keys) == len(set(keys)) == 4 * STEPS
    combined = snapshot(open_store(cluster.mlmd_url))

    # One after the other, in either order, into an empty MLMD: the same records, once.
    target = cluster.mlmd_url + "_seq"
    for order in (("cluster", "stored"), ("stored", "cluster")):
        mariadb_server.drop_database(target.rsplit("/", 1)[1])
        for which in order:
            args = ["reconcile", "-A", "--mlmd", target]
            args += ["--from-kfp-db", source, "--no-cluster"] if which == "stored" else []
            done_one = subprocess.run(
                [*CLI, *args, "--kubeconfig", str(cluster.kubeconfig)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                env=clean_env(),
            )
            assert done_one.returncode == 0, done_one.stderr
        assert snapshot(open_store(target)) == combined, order
        keys = execution_keys(target)
        assert len(keys) == len(set(keys)) == 4 * STEPS
    mariadb_server.drop_database(target.rsplit("/", 1)[1])
    assert old and live


def test_unrecoverable_runs_are_counted_and_named(
    tmp_path: Path, mysql_url: str, kfp_store: KfpStore
) -> None:
    kfp_url, kfp = kfp_store("mysql", "2.17")
    cluster = start_cluster(
        tmp_path, mysql_url, kfp, None, nodes_form=lambda i: "offloaded" if i == 0 else "compressed"
    )
    try:
        names = cluster.run(3)
        cluster.age_past_ttl()
    finally:
        cluster.api.stop()
    source = plain(kfp_url)
    done = cluster.cli("reconcile", "--no-cluster", "--from-kfp-db", source, "-o", "json")
    assert done.returncode == 0, done.stderr
    stored = as_json(done)["stored_runs"]
    assert stored["runs_read"] == 3 and stored["steps"] == 2 * STEPS
    assert stored["unrecoverable_total"] == 1
    [lost] = stored["unrecoverable"]
    assert lost["reason"] == "nodes_offloaded"
    [name] = [n for n in names if f"kubeflow/{n} (kfp-db " in lost["run"]]
    text = cluster.cli("verify", "--no-cluster", "--from-kfp-db", source)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "stored runs unrecoverable: 1" in text.stdout
    assert f"unrecoverable: kubeflow/{name} (kfp-db " in text.stdout

    # Bad rows: text that is not JSON, and a node that cannot be read. One line each, the rest
    # of the pass goes on; the bad node is an error (exit 1), its run's other steps recorded.
    others = [n for n in names if n != name]
    with SqlWriter(kfp_url) as db:
        db.execute(
            "UPDATE run_details SET WorkflowRuntimeManifest = %s WHERE Name = %s", ["{not json", others[0]]
        )
        [(text_of,)] = db.query(
            "SELECT WorkflowRuntimeManifest FROM run_details WHERE Name = %s", [others[1]]
        )
        workflow = json.loads(text_of)
        nodes = json.loads(gzip.decompress(base64.b64decode(workflow["status"].pop("compressedNodes"))))
        broken = next(k for k, v in nodes.items() if v.get("type") == "Pod")
        nodes[broken]["type"] = 7
        workflow["status"]["nodes"] = nodes
        db.execute(
            "UPDATE run_details SET WorkflowRuntimeManifest = %s WHERE Name = %s",
            [json.dumps(workflow), others[1]],
        )
    bad = cluster.cli("verify", "--no-cluster", "--from-kfp-db", source, "-o", "json")
    assert bad.returncode == 1, bad.stderr  # the broken node: an error; nothing else is missing
    report = as_json(bad)
    reasons = sorted(u["reason"] for u in report["stored_runs"]["unrecoverable"])
    assert reasons == ["malformed", "nodes_offloaded"]
    [error] = report["errors"]
    assert error["reason"] == "malformed_workflow" and error["pod"] == f"{others[1]}/{broken}"
    assert "has no type" in error["message"] and f"kubeflow/{others[1]} (kfp-db " in error["message"]
    assert report["stored_runs"]["steps"] == STEPS - 1


def test_scopes_select_stored_runs(stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL]) -> None:
    cluster, kfp_url, archive_url = stored_cluster
    first = cluster.run(2)
    cluster.clock.now_dt += timedelta(hours=1)
    cut = cluster.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    second = cluster.run(2, namespace="team-a")
    cluster.age_past_ttl()
    for source in ("--from-kfp-db", plain(kfp_url)), ("--from-argo-archive", plain(archive_url)):

        def read(*scope: str, source: tuple[str, str] = source) -> dict[str, Any]:
            done = cluster.cli("verify", "--no-cluster", *source, *scope, "-o", "json")
            assert done.returncode == 4, done.stderr
            return as_json(done)

        assert read("--since", cut)["stored_runs"]["runs_read"] == 2
        assert read("--until", cut)["stored_runs"]["runs_read"] == 2
        assert read("-n", "team-a")["stored_runs"]["runs_read"] == 2
        one = read("--workflow", second[0])
        assert one["stored_runs"]["runs_read"] == 1
        assert {d["subject"] for d in one["drift"]["missing_context"]} == {second[0]}
        assert (
            read("--since", cut, "--workflow", first[0], "--workflow", second[1])["stored_runs"]["runs_read"]
            == 1
        )
    with open_kfp_db(kfp_url) as db:
        run_id = next(r.run_id for r in db.runs() if r.workflow_name == second[1])
    assert run_id
    for source in ("--from-kfp-db", plain(kfp_url)), ("--from-argo-archive", plain(archive_url)):
        done = cluster.cli("verify", "--no-cluster", *source, "--run-id", run_id, "-o", "json")
        assert done.returncode == 4, done.stderr
        report = as_json(done)
        assert report["stored_runs"]["runs_read"] == 1
        assert {d["subject"] for d in report["drift"]["missing_context"]} == {second[1]}
        assert "orphaned_execution" not in report["drift"]  # a partial read looks for no orphans


def test_source_errors_are_one_line_with_the_documented_exit_code(
    stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL], mariadb_server: Any
) -> None:
    cluster, kfp_url, _ = stored_cluster
    base = ("verify", "--no-cluster")
    cases = [
        (("--from-kfp-db", "mysql://root@127.0.0.1:1/mlpipeline?connect_timeout=2"), 3, "cannot connect"),
        (("--from-kfp-db", "mysql://root:hunter2@127.0.0.1:3306/mlpipeline"), 3, "cannot connect"),
        (("--from-kfp-db", "http://host/db"), 2, "unsupported scheme"),
        (("--from-kfp-db", plain(kfp_url).rsplit("/", 1)[0] + "/mysql"), 2, "no run_details table"),
        (("--from-argo-archive", plain(kfp_url)), 2, "no argo_archived_workflows table"),
        (("--from-kfp-db", plain(kfp_url), "--since", "yesterday"), 2, "is not a time"),
        (("--since", "2026-01-01"), 2, "need(s) a stored source"),
        (("--from-kfp-db", plain(kfp_url), "--from-argo-archive", plain(kfp_url)), 2, "not allowed with"),
    ]
    for args, code, words in cases:
        done = cluster.cli(*base, *args)
        assert done.returncode == code, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 or (code == 2 and "usage:" in done.stderr), done.stderr
        assert words in done.stderr, (args, done.stderr)
        assert "hunter2" not in done.stderr + done.stdout


def test_the_password_comes_from_the_settings_and_is_never_printed(
    stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL], mariadb_server: Any
) -> None:
    """A reader that may only SELECT run_details, its password from KFPMR_KFP_DB_PASSWORD."""
    cluster, kfp_url, _ = stored_cluster
    cluster.run(1)
    cluster.age_past_ttl()
    user, secret = f"kfpmr_stored_{os.getpid()}", "Pw-9f3!kq-stored"
    mariadb_server.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}'")
    try:
        mariadb_server.execute(f"GRANT SELECT ON `{kfp_url.database}`.run_details TO '{user}'@'%'")
        url = f"mysql://{user}@127.0.0.1:3306/{kfp_url.database}"
        done = cluster.cli("reconcile", "--no-cluster", "--from-kfp-db", url, "-o", "json",
                           KFPMR_KFP_DB_PASSWORD=secret)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert as_json(done)["stored_runs"]["steps"] == STEPS
        assert secret not in done.stdout + done.stderr
        wrong = cluster.cli(
            "verify", "--no-cluster", "--from-kfp-db", url, KFPMR_KFP_DB_PASSWORD=secret + "x"
        )
        assert wrong.returncode == 3 and wrong.stderr.startswith("error: cannot connect to the KFP database")
        assert secret not in wrong.stdout + wrong.stderr
        in_url = url.replace(f"{user}@", f"{user}:{secret}@")
        shown = cluster.cli("verify", "--no-cluster", "--from-kfp-db", in_url, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        assert as_json(shown)["stored_runs"]["url"] == f"mysql://{user}:***@127.0.0.1:3306/{kfp_url.database}"
        assert secret not in shown.stdout + shown.stderr
    finally:
        mariadb_server.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def test_a_progress_bar_over_the_stored_runs_on_a_terminal(
    stored_cluster: tuple[StoredCluster, DatabaseURL, DatabaseURL],
) -> None:
    cluster, kfp_url, _ = stored_cluster
    cluster.run(3)
    cluster.age_past_ttl()
    args = ["reconcile", "--no-cluster", "--from-kfp-db", plain(kfp_url), "--mlmd", cluster.mlmd_url]
    code, screen = run_on_terminal([*CLI, *args])
    assert code == 0, screen
    assert "reading stored runs" in screen and "3/3" in screen  # the bar over the runs, and its count
    assert re.search(r"steps rebuilt from stored runs\s*│\s*9\b", screen)  # the summary table
