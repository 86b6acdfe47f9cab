"""The README's first command: `kfp-metadata-reconciler sandbox --runs 5`, and `--keep`."""

from __future__ import annotations

import json
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from store.connect import open_store
from tests.conftest import MariaDB, new_database_name

CLI = [sys.executable, "-m", "controller.cli"]


def run_printed(line: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A command line the sandbox printed, with this interpreter standing in for the console script."""
    argv = shlex.split(line)
    if argv[0] == "kfp-metadata-reconciler":
        argv = [*CLI, *argv[1:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def test_sandbox_runs_five_workflows_and_converges(tmp_path: Path) -> None:
    # README command 1, as it is written: no folder of workflows given, none beside the checkout.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "sandbox",
            "--runs",
            "5",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "summary:" in run.stdout
    assert "MLMD:          grpc://127.0.0.1:" in run.stdout  # the project's own gRPC server
    assert "final pass:    30 pods, 0 MLMD writes, 0 pod patches, 0 errors" in run.stdout
    assert "watch" in run.stdout  # the controller's watch triggered passes
    store = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    assert len(store.get_contexts()) == 5
    executions = store.get_executions()
    assert executions and all(e.external_id.startswith("kfp-v1/step/") for e in executions)
    # The cluster is left as a dump, with the line to try on it; it finds nothing to repair.
    dump = json.loads((tmp_path / "cluster.json").read_text())
    kinds = {item["kind"] for item in dump["items"]}
    assert dump["kind"] == "List" and {"Pod", "Workflow"} <= kinds
    assert sum(item["kind"] == "Pod" for item in dump["items"]) == 30
    [line] = [
        line.removeprefix("try:").strip() for line in run.stdout.splitlines() if line.startswith("try:")
    ]
    assert line.startswith(
        f"kfp-metadata-reconciler verify --from-file {tmp_path / 'cluster.json'} --mlmd sqlite:///"
    )
    verify = run_printed(line)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "drift counted (labels cannot be fixed offline): 0" in verify.stdout


def test_sandbox_takes_any_mlmd_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/elsewhere.sqlite"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "sandbox",
            "--runs",
            "2",
            "--argo",
            "3.6",
            "--workdir",
            str(tmp_path),
            "--mlmd",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert len(open_store(url).get_contexts()) == 2
    assert not (tmp_path / "mlmd.sqlite").exists()


def test_sandbox_pipelines_folder_without_workflows_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text("kind: ConfigMap\n")
    for folder, message in [
        (tmp_path / "missing", f"error: no compiled workflows (*.yaml) in {tmp_path / 'missing'}\n"),
        (tmp_path, f"error: {tmp_path / 'notes.yaml'}: not an Argo Workflow (kind: Workflow)\n"),
    ]:
        command = ["sandbox", "--pipelines", str(folder), "--workdir", str(tmp_path)]
        run = subprocess.run(
            [sys.executable, "-m", "controller.cli", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (run.returncode, run.stderr, run.stdout) == (2, message, "")


def test_sandbox_keep_leaves_a_cluster_the_printed_commands_work_against(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*CLI, "sandbox", "--runs", "1", "--workdir", str(tmp_path), "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # the demo prints these lines, then waits for Ctrl-C
            seen.append(line)
            if line.startswith("kept running until Ctrl-C"):
                break
        assert seen and seen[-1].startswith("kept running"), "".join(seen)
        commands = [process.stdout.readline().strip() for _ in range(4)]
        assert [c.split()[:2] for c in commands] == [
            ["kubectl", "--kubeconfig"],
            ["kfp-metadata-reconciler", "verify"],
            ["kfp-metadata-reconciler", "reconcile"],
            ["kfp-metadata-reconciler", "verify"],
        ]
        assert "--dry-run" in commands[2] and "--from-file" in commands[3]
        results = [run_printed(command) for command in commands]
        for command, result in zip(commands, results, strict=True):
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "workflow.argoproj.io/" in results[0].stdout  # kubectl saw the kept cluster
        assert "drift found: 0" in results[1].stdout
        assert "MLMD writes planned: 0" in results[2].stdout
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert rest.strip().endswith("stopped")
    assert "Traceback" not in stderr
    # Everything it started has stopped with it.
    gone = run_printed(commands[1], timeout=60)
    assert gone.returncode == 3, gone.stderr


# The installed console script, as a user runs it.
CONSOLE_SCRIPT = str(Path(sys.executable).with_name("kfp-metadata-reconciler"))


def test_sandbox_against_kfp_1_8s_mlmd(tmp_path: Path) -> None:
    """`sandbox --mlmd-version 1.5.0`: the loop against the MLMD server KFP 1.8 runs."""
    run = subprocess.run(
        [
            CONSOLE_SCRIPT,
            "sandbox",
            "--runs",
            "2",
            "--workdir",
            str(tmp_path),
            "--mlmd-version",
            "1.5.0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"(MLMD 1.5.0 over {tmp_path / 'mlmd.sqlite'})" in run.stdout
    assert "MLMD capabilities: external_id=no put_lineage_subgraph=no filter_query=yes" in run.stdout
    assert ", 0 MLMD writes, 0 pod patches, 0 errors" in run.stdout
    # The server is gone with the sandbox; its file is MLMD 1.5.0's (schema 7), keys in names.
    with sqlite3.connect(tmp_path / "mlmd.sqlite") as db:
        assert db.execute("SELECT schema_version FROM MLMDEnv").fetchall() == [(7,)]
        names = [name for (name,) in db.execute("SELECT name FROM Execution")]
        assert names and all(name.startswith("kfp-v1/step/kubeflow/") for name in names)
        assert len(db.execute("SELECT id FROM Context").fetchall()) == 2


def test_sandbox_mlmd_version_and_mlmd_url_exclude_each_other(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            CONSOLE_SCRIPT,
            "sandbox",
            "--workdir",
            str(tmp_path),
            "--mlmd-version",
            "1.0.0",
            "--mlmd",
            f"sqlite:///{tmp_path}/x.sqlite",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 2
    assert (
        run.stderr == "error: --mlmd-version starts a server; --mlmd uses one that runs: give one of them\n"
    )


def test_sandbox_run_store_shows_the_ttl_gap_and_the_printed_commands_repair_it(
    tmp_path: Path, mariadb_server: MariaDB
) -> None:
    """`sandbox --run-store`: a writer outage, KFP's TTL deleting the runs, and the repair it prints."""
    database = new_database_name()
    run_store = f"mysql://root@127.0.0.1:3306/{database}"
    try:
        run = subprocess.run(
            [*CLI, "sandbox", "--runs", "4", "--workdir", str(tmp_path), "--run-store", run_store],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert "writer outage: the controller stops recording; 2 more runs" in run.stdout
        assert "workflow TTL:  every finished Workflow deleted with its pods" in run.stdout
        assert "the gap:       2 runs (15 steps) are in neither the cluster nor MLMD" in run.stdout
        assert "final pass:    0 pods, 0 MLMD writes" in run.stdout  # the cluster alone sees nothing
        store = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
        assert len(store.get_contexts()) == 2
        lines = [line for line in run.stdout.splitlines() if "--from-kfp-db" in line]
        commands = [line.removeprefix("repair:").strip().split("   #")[0] for line in lines]
        assert [c.split()[1] for c in commands] == ["verify", "reconcile", "verify"]
        assert [run_printed(c).returncode for c in commands] == [4, 0, 0]
        assert len(store.get_contexts()) == 4
        keys = [e.external_id for e in store.get_executions()]
        assert len(keys) == len(set(keys)) == 12 + 15
    finally:
        mariadb_server.drop_database(database)
