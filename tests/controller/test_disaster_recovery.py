"""Disaster recovery: MLMD restored from a half-way backup, then verify / reconcile by hand."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import pipelines
from sandbox.apiserver import ApiServer
from sandbox.mlmd_legacy import CURRENT, versioned_server
from sandbox.simulator import Simulator
from tests.conftest import OLD_MLMD_VERSIONS
from tests.controller.harness import Cluster, duplicate_counts, wait_until

FIRST_HALF = ["two_step", "chain10", "exit_handler"]
SECOND_HALF = [
    "fan_out_fan_in",
    "raw_container_ops",
    "output_directory",
]
KFP = "pipelines.kubeflow.org/"


@dataclass
class Backend:
    """How to back up and restore the database behind the MLMD server."""

    backup: Callable[[Path], None]
    restore: Callable[[Path], None]


@pytest.fixture(params=["sqlite", "mariadb"])
def dr_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cluster, Backend]]:
    yield from _dr_cluster(request, tmp_path, request.param)


@pytest.fixture(params=OLD_MLMD_VERSIONS, ids=[f"mlmd-{v}" for v in OLD_MLMD_VERSIONS])
def old_mlmd_dr_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cluster, Backend]]:
    """The stand-in cluster with an old MLMD server (over SQLite) behind it."""
    yield from _dr_cluster(request, tmp_path, "sqlite", request.param)


def _dr_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, version: str = CURRENT
) -> Iterator[tuple[Cluster, Backend]]:
    if backend == "sqlite":
        db_file = tmp_path / "mlmd.sqlite"
        store_url = f"sqlite:///{db_file}"

        def backup(target: Path) -> None:
            # An online backup (what `sqlite3 mlmd.sqlite ".backup target"` does).
            with sqlite3.connect(db_file) as src, sqlite3.connect(target) as dst:
                src.backup(dst)

        def restore(source: Path) -> None:
            shutil.copyfile(source, db_file)
    else:
        mysql_url = request.getfixturevalue("mysql_url")
        database = mysql_url.rsplit("/", 1)[1]
        store_url = mysql_url
        mysql = ["-h127.0.0.1", "-P3306", "-uroot"]

        def backup(target: Path) -> None:
            with target.open("wb") as out:
                subprocess.run(
                    ["mariadb-dump", *mysql, "--single-transaction", database], stdout=out, check=True
                )

        def restore(source: Path) -> None:
            subprocess.run(
                ["mariadb", *mysql, "-e", f"DROP DATABASE `{database}`; CREATE DATABASE `{database}`"],
                check=True,
            )
            with source.open("rb") as dump:
                subprocess.run(["mariadb", *mysql, database], stdin=dump, check=True)

    api = ApiServer(bookmark_interval=0.5)
    api.start()
    mlmd = versioned_server(version, store_url)
    mlmd.start()
    try:
        yield (
            Cluster(
                api,
                mlmd,
                api.write_kubeconfig(tmp_path / "kubeconfig"),
                tmp_path,
                context_keys=version not in ("1.0.0", "1.5.0"),
            ),
            Backend(backup, restore),
        )
    finally:
        mlmd.stop()
        api.stop()


def cli(cluster: Cluster, *args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    kubeconfig = kubeconfig or cluster.kubeconfig
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            *args,
            "--mlmd",
            cluster.mlmd.url,
            *([] if "--from-file" in args else ["--kubeconfig", str(kubeconfig)]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def converged(cluster: Cluster) -> bool:
    try:
        return cluster.actual_snapshot() == cluster.expected_snapshot() and cluster.labels_correct()
    except KeyError:
        return False


def pod_metadata(cluster: Cluster) -> dict[str, Any]:
    return {
        p["metadata"]["name"]: (p["metadata"].get("labels"), p["metadata"].get("annotations"))
        for p in cluster.api.store.list("pods")
    }


def run_with_restore(
    cluster: Cluster,
    backend: Backend,
    *,
    pod_gc: str | None = None,
    kubeconfig: Path | None = None,
    namespaces: list[str] | None = None,
) -> None:
    """Record everything with the controller, back up half-way, finish, restore the backup."""
    controller = cluster.controller(
        resync_interval_s=1.0, kubeconfig=str(kubeconfig or cluster.kubeconfig), namespaces=namespaces or []
    )
    controller.start()
    controller.activate()
    sim = Simulator(cluster.api.store, "3.5", seed=21, pod_gc=pod_gc)
    try:
        for name in FIRST_HALF:
            sim.submit(pipelines.load(name), "kubeflow")
        sim.run_until_complete()
        wait_until(lambda: converged(cluster), timeout=30, what="the first half recorded")
        backend.backup(cluster.workdir / "backup")
        for name in SECOND_HALF:
            sim.submit(pipelines.load(name), "kubeflow")
        sim.run_until_complete()
        wait_until(lambda: converged(cluster), timeout=30, what="everything recorded")
    finally:
        controller.stop()
    cluster.mlmd.stop()
    backend.restore(cluster.workdir / "backup")
    cluster.mlmd.start()


def test_restore_verify_reconcile_verify(dr_cluster: tuple[Cluster, Backend]) -> None:
    restore_verify_reconcile_verify(*dr_cluster)


def test_restore_drill_on_old_mlmd(old_mlmd_dr_cluster: tuple[Cluster, Backend]) -> None:
    """The drill of docs/disaster-recovery.md behind KFP 1.7's, 1.8's and 2.0.2's MLMD servers."""
    restore_verify_reconcile_verify(*old_mlmd_dr_cluster)


def restore_verify_reconcile_verify(cluster: Cluster, backend: Backend) -> None:
    """Restore a half-way backup, then verify (drift), reconcile --dry-run (writes nothing),
    reconcile, verify (clean): MLMD as if never lost, labels right, nothing twice."""
    run_with_restore(cluster, backend)
    never_lost = cluster.expected_snapshot()
    assert cluster.actual_snapshot() != never_lost

    drift = cli(cluster, "verify", "--output", "json")
    assert drift.returncode == 4, drift.stderr
    report = json.loads(drift.stdout)
    assert report["drift"]["missing_execution"] and report["drift"]["missing_artifact"]
    wrong = report["drift"]["wrong_pod_metadata"]
    assert any("does not exist" in d["detail"] or "names another record" in d["detail"] for d in wrong)

    before, pods_before = cluster.actual_snapshot(), pod_metadata(cluster)
    dry = cli(cluster, "reconcile", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "execution.create" in dry.stdout and "pod.patch" in dry.stdout
    assert cluster.actual_snapshot() == before and pod_metadata(cluster) == pods_before

    fixed = cli(cluster, "reconcile", "--output", "json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["errors"] == []
    clean = cli(cluster, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr

    assert cluster.actual_snapshot() == never_lost
    assert cluster.labels_correct()
    assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}


def test_restore_with_pod_gc_recovers_from_workflow_status(dr_cluster: tuple[Cluster, Backend]) -> None:
    cluster, backend = dr_cluster
    run_with_restore(cluster, backend, pod_gc="OnPodCompletion")
    assert cluster.api.store.list("pods") == []  # every finished step's pod is gone
    never_lost = cluster.expected_snapshot()

    drift = cli(cluster, "verify", "--output", "json")
    assert drift.returncode == 4, drift.stderr
    assert json.loads(drift.stdout)["steps_without_pod"] > 0
    fixed = cli(cluster, "reconcile", "--output", "json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["pod_patches"] == []  # no pods to label: reported, not an error
    assert cli(cluster, "verify").returncode == 0
    assert cluster.actual_snapshot() == never_lost
    assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}


def test_offline_recovery_from_a_dump(dr_cluster: tuple[Cluster, Backend]) -> None:
    cluster, backend = dr_cluster
    run_with_restore(cluster, backend)
    never_lost = cluster.expected_snapshot()
    pods, workflows, results = cluster.state()
    dump = cluster.workdir / "dump.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [*pods, *workflows, *results]}))

    first = cli(cluster, "verify", "--from-file", str(dump), "--output", "json")
    assert first.returncode == 4, first.stderr
    assert (
        json.loads(first.stdout)["drift_counted"] < json.loads(first.stdout)["drift_total"]
    )  # labels listed
    fixed = cli(cluster, "reconcile", "--from-file", str(dump), "--output", "json")
    assert fixed.returncode == 0, fixed.stderr
    # Label changes are printed for a later live pass (the ids may even match again: a restored
    # store hands out the same ids in the same order).
    again = cli(cluster, "verify", "--from-file", str(dump), "--output", "json")
    assert again.returncode == 0, again.stdout  # only label drift is left, and it does not count offline
    assert set(json.loads(again.stdout)["drift"]) <= {"wrong_pod_metadata"}
    assert cluster.actual_snapshot() == never_lost
    assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}


def test_recovery_needs_no_more_than_the_deployments_rights(cluster: Cluster) -> None:
    """The whole DR sequence, run with the ServiceAccount the kfp-dropin overlay renders."""
    from tests.deploy.rbac import restricted_kubeconfig

    restricted = restricted_kubeconfig(cluster.api, cluster.workdir / "sa.kubeconfig", overlay="kfp-dropin")
    db_file = cluster.workdir / "mlmd.sqlite"

    def backup(target: Path) -> None:
        with sqlite3.connect(db_file) as src, sqlite3.connect(target) as dst:
            src.backup(dst)

    run_with_restore(
        cluster,
        Backend(backup, lambda source: shutil.copyfile(source, db_file)),
        kubeconfig=restricted,
        namespaces=["kubeflow"],  # as the overlay's NAMESPACE_TO_WATCH
    )
    assert cli(cluster, "verify", "-n", "kubeflow", kubeconfig=restricted).returncode == 4
    assert cli(cluster, "reconcile", "-n", "kubeflow", kubeconfig=restricted).returncode == 0
    assert cli(cluster, "verify", "-n", "kubeflow", kubeconfig=restricted).returncode == 0
    assert cluster.labels_correct()
    # The only refusals are the CLI's namespace check, which a namespaced Role cannot grant
    # and which it then skips; the controller itself was never refused anything.
    refused = {(d["verb"], d["resource"]) for d in cluster.api.denied}
    assert refused <= {("get", "namespaces")}, cluster.api.denied


def test_a_running_controller_that_skips_converged_steps_repairs_a_restore(
    dr_cluster: tuple[Cluster, Backend],
) -> None:
    # "Let it run" (docs/disaster-recovery.md): the controller stays up through the restore,
    # after its passes had learned that every step was converged and stopped comparing them.
    cluster, backend = dr_cluster
    controller = cluster.controller(watch_enabled=False)
    controller.activate()
    sim = Simulator(cluster.api.store, "3.5", seed=22)
    try:
        for name in FIRST_HALF:
            sim.submit(pipelines.load(name), "kubeflow")
        sim.run_until_complete()
        for _ in range(2):  # records and labels, then finds everything converged
            assert controller.run_pass("resync") is not None
        backend.backup(cluster.workdir / "backup")
        for name in SECOND_HALF:
            sim.submit(pipelines.load(name), "kubeflow")
        sim.run_until_complete()
        for _ in range(2):
            assert controller.run_pass("resync") is not None
        warm = controller.run_pass("resync")
        pods = len(cluster.api.store.list("pods"))
        assert warm is not None and warm.pods_unchanged == pods and sum(warm.actions.values()) == 0
        never_lost = cluster.expected_snapshot()

        cluster.mlmd.stop()
        backend.restore(cluster.workdir / "backup")
        cluster.mlmd.start()
        assert cluster.actual_snapshot() != never_lost

        # The first call on the old connection may fail (the server went away): that pass
        # fails and the next one runs, as the controller's backoff would run it.
        reports = [controller.run_pass("resync") for _ in range(2)]
        repaired = next(r for r in reports if r is not None)
        assert repaired.pods_unchanged == 0 and repaired.errors == []
        assert cluster.actual_snapshot() == never_lost
        assert cluster.labels_correct()
        assert duplicate_counts(cluster.mlmd.url) == {"executions": 0, "artifacts": 0, "events": 0}
    finally:
        controller.stop()
