"""The command line's contract with an operator, run as the console script in a child process.

One `error:` line and the documented exit code for every configuration problem (no store,
a missing store for a read-only command, a bad kubeconfig, a refused MySQL login, a URL
that does not parse), never a traceback, never a password; read-only commands create
nothing; unknown flags are reported by their command's parser; `--version`; the flags
operators know from kubectl and controller-runtime (`-o`, `--context`, `-n` on `run`,
`--metrics-bind-address`, `--health-probe-bind-address`, `--leader-elect`, `--log-level`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from ml_metadata.proto import metadata_store_pb2 as pb

from sandbox import pipelines
from sandbox.apiserver import ApiServer
from sandbox.simulator import Simulator
from store.connect import open_store
from tests.conftest import MariaDB, new_database_name
from tests.controller.harness import Cluster, wait_until
from tests.podfactory import chain, pods_of

CLI = [sys.executable, "-m", "controller.cli"]
REPO = Path(__file__).resolve().parents[2]
SECRET = "Pw-s3cr3t-77"
# Settings the CLI would otherwise pick up from the developer's environment.
FOREIGN_ENV = ("KUBECONFIG", "NAMESPACE_TO_WATCH", "KUBERNETES_SERVICE_HOST", "POD_NAMESPACE", "POD_NAME")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KFPMR_", "METADATA_GRPC_", "METADATA_TLS")) and k not in FOREIGN_ENV
    }
    # Python's own path: the child runs from a folder outside the checkout.
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd or REPO,
        env=clean_env(**env),
    )


def one_error(run: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The run's one `error:` line, having checked the exit code, the fragments and no traceback."""
    output = run.stdout + run.stderr
    assert run.returncode == code, output
    assert "Traceback" not in output, output
    assert SECRET not in output, output
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def usage_error(run: subprocess.CompletedProcess[str], command: str, *fragments: str) -> str:
    """The parser's error line of `command` (after its usage text), exit 2."""
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith(f"usage: kfp-metadata-reconciler {command} "), run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"kfp-metadata-reconciler {command}: error: "), run.stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "dump.json"
    items = pods_of(chain("wf-cli", 2), profile="3.3")
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return path


# ------------------------------------------------------------------------- parser
def test_version_names_the_package_and_ml_metadata() -> None:
    run = cli("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"kfp-metadata-reconciler {version('kfp-metadata-reconciler')} ")
    assert f"ml-metadata {version('ml-metadata')}" in run.stdout


@pytest.mark.parametrize("command", ["reconcile", "verify", "run", "sandbox"])
def test_an_unknown_flag_is_reported_by_its_command(command: str) -> None:
    run = cli(command, "--no-such-flag", "x")
    usage_error(run, command, "unrecognized arguments: --no-such-flag x")


def test_controller_runtime_flag_values_are_checked_by_run() -> None:
    usage_error(cli("run", "--leader-elect=maybe"), "run", "'maybe' is not a boolean")
    usage_error(cli("run", "--metrics-bind-address", "0"), "run", "shares its address")
    usage_error(cli("run", "--health-probe-bind-address", "8080"), "run", "use :PORT or HOST:PORT")
    usage_error(cli("run", "--log-level", "loud"), "run", "invalid choice: 'loud'")
    usage_error(cli("verify", "-o", "yaml"), "verify", "invalid choice: 'yaml'")
    differ = cli("run", "--metrics-bind-address", ":8080", "--health-probe-bind-address", ":8081")
    one_error(differ, 2, "served on one address")


# ---------------------------------------------------------------------- the store
@pytest.mark.parametrize(
    "command", [["reconcile", "-A"], ["verify", "-A"], ["reconcile", "--dry-run"], ["run"]]
)
def test_no_store_configured_is_one_line_and_creates_nothing(command: list[str], tmp_path: Path) -> None:
    run = cli(*command, cwd=tmp_path)
    one_error(run, 2, "no MLMD store configured", "--mlmd")
    assert tree(tmp_path) == []


def test_the_upstream_writers_service_names_configure_a_store(dump: Path, tmp_path: Path) -> None:
    # Nothing listens on port 1: the store was taken as configured, and then not reachable.
    run = cli(
        "verify",
        "--from-file",
        str(dump),
        cwd=tmp_path,
        METADATA_GRPC_SERVICE_HOST="127.0.0.1",
        METADATA_GRPC_SERVICE_PORT="1",
    )
    one_error(run, 3, "cannot reach MLMD at grpc://127.0.0.1:1")


@pytest.mark.parametrize("command", [["verify"], ["reconcile", "--dry-run"]])
def test_read_only_commands_never_create_a_sqlite_store(
    command: list[str], dump: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for url in (f"sqlite:///{work}/deeper/still/mlmd.sqlite", "sqlite:///relative/mlmd.sqlite"):
        run = cli(*command, "--from-file", str(dump), "--mlmd", url, cwd=work)
        one_error(run, 3, "does not exist", "never creates one")
        assert tree(work) == []


@pytest.mark.parametrize("command", [["verify"], ["reconcile", "--dry-run"]])
def test_read_only_commands_never_create_a_mysql_database_or_schema(
    command: list[str], dump: Path, mariadb_server: MariaDB
) -> None:
    name = new_database_name()
    mariadb_server.drop_database(name)
    try:
        run = cli(*command, "--from-file", str(dump), "--mlmd", mariadb_server.url(name))
        one_error(run, 3, name, "does not exist")
        assert (name,) not in mariadb_server.execute("SHOW DATABASES")
        # A database that exists but holds no MLMD schema gets no tables either.
        mariadb_server.execute(f"CREATE DATABASE `{name}`")
        run = cli(*command, "--from-file", str(dump), "--mlmd", mariadb_server.url(name))
        one_error(run, 3, name, "no MLMD schema")
        assert mariadb_server.execute(f"SHOW TABLES FROM `{name}`") == []
    finally:
        mariadb_server.drop_database(name)


def test_a_refused_mysql_login_is_one_line_without_the_library_log(
    dump: Path, mariadb_server: MariaDB, tmp_path: Path
) -> None:
    name = new_database_name()
    url = f"mysql://{mariadb_server.user}:{SECRET}@{mariadb_server.host}:{mariadb_server.port}/{name}"
    for command in (["reconcile"], ["verify"]):
        run = cli(*command, "--from-file", str(dump), "--mlmd", url)
        line = one_error(run, 3, "Access denied", f"{mariadb_server.user}:***@")
        assert "WARNING: Logging before InitGoogleLogging" not in line
    assert (name,) not in mariadb_server.execute("SHOW DATABASES")


@pytest.mark.parametrize(
    "url",
    [
        f"mysql//root:{SECRET}@db:3306/mlmd",  # the scheme's ':' missing
        f"mysql:/root:{SECRET}@db/mlmd",
        f"root:{SECRET}@db/mlmd",
        f"postgres://root:{SECRET}@db/mlmd",
        f"mysql://root:{SECRET}@db/mlmd?ssl=1",
    ],
)
def test_a_url_that_does_not_parse_never_shows_its_password(url: str, dump: Path) -> None:
    one_error(cli("reconcile", "--from-file", str(dump), "--mlmd", url), 2, "invalid MLMD store URL", "***")
    one_error(cli("reconcile", "--from-file", str(dump), KFPMR_MLMD_URL=url), 2, "invalid setting mlmd_url")


# --------------------------------------------------------------------- kubeconfig
def bad_kubeconfigs(folder: Path, good: Path) -> dict[str, tuple[list[str], str]]:
    """Broken kubeconfigs (and a context that is not there): name -> (flags, fragment)."""
    (folder / "yaml-error").write_text("apiVersion: v1\nclusters: [\n  - a: b: c\n")
    (folder / "a-list").write_text("- 1\n- 2\n")
    (folder / "empty").write_text("")
    (folder / "no-such-cert").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://127.0.0.1:1", "certificate-authority": "/nonexistent"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": SECRET}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    cases = {
        name: (["--kubeconfig", str(folder / name)], str(folder / name))
        for name in ("yaml-error", "a-list", "empty", "no-such-cert")
    }
    cases["missing file"] = (["--kubeconfig", str(folder / "missing")], str(folder / "missing"))
    cases["unknown context"] = (["--kubeconfig", str(good), "--context", "nope"], "nope")
    return cases


def test_kubeconfig_problems_are_one_line_and_exit_2(cluster: Cluster, tmp_path: Path) -> None:
    for name, (flags, fragment) in bad_kubeconfigs(tmp_path, cluster.kubeconfig).items():
        # Every command reads the kubeconfig through one function: each case once, two on all.
        commands = [["verify", "-A"]]
        if name in ("yaml-error", "unknown context"):
            commands += [["reconcile", "-A"], ["run"]]
        for command in commands:
            run = cli(*command, *flags, "--mlmd", cluster.mlmd.url)
            line = one_error(run, 2, "no Kubernetes configuration")
            assert fragment in line, (name, command, line)


def test_context_picks_the_kubeconfig_context(cluster: Cluster, tmp_path: Path) -> None:
    gone = ApiServer()
    gone.start()
    dead = yaml.safe_load(gone.write_kubeconfig(tmp_path / "gone").read_text())
    gone.stop()
    live = yaml.safe_load(cluster.kubeconfig.read_text())
    for config, name in ((dead, "dead"), (live, "live")):
        for section in ("clusters", "users", "contexts"):
            for entry in config[section]:
                entry["name"] = name
        config["contexts"][0]["context"].update(cluster=name, user=name)
    merged = {
        **live,
        "clusters": dead["clusters"] + live["clusters"],
        "users": dead["users"] + live["users"],
        "contexts": dead["contexts"] + live["contexts"],
        "current-context": "dead",
    }
    kubeconfig = tmp_path / "two-contexts"
    kubeconfig.write_text(yaml.safe_dump(merged))
    run = cli(
        "verify",
        "-A",
        "-o",
        "json",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "live",
        "--mlmd",
        cluster.mlmd.url,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["drift_total"] == 0
    one_error(
        cli("verify", "-A", "--kubeconfig", str(kubeconfig), "--mlmd", cluster.mlmd.url),
        3,
        "Kubernetes API unavailable",
    )


# ---------------------------------------------------------------------------- run
def health(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def start_run(*args: str, ready_file: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", "--ready-file", str(ready_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=clean_env(KFPMR_LOG_JSON="true", KFPMR_RESYNC_INTERVAL_S="2", KFPMR_RESYNC_JITTER_S="0", **env),
    )


def stop_run(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, Any]]]:
    """SIGTERM, then the exit code and the JSON log lines (every line must be JSON)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, [json.loads(line) for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_run_takes_kubectl_and_controller_runtime_flags(
    cluster: Cluster, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    sim = Simulator(cluster.api.store, "3.5", seed=3)
    sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.submit(pipelines.load("two_step"), "other")
    sim.run_until_complete()
    ready = tmp_path / "port"
    process = start_run(
        "-n",
        "kubeflow",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--context",
        yaml.safe_load(cluster.kubeconfig.read_text())["current-context"],
        "--mlmd",
        cluster.mlmd.url,
        "--metrics-bind-address",
        "127.0.0.1:0",
        "--health-probe-bind-address",
        "127.0.0.1:0",
        "--leader-elect=false",
        ready_file=ready,
    )
    running.append(process)
    port = int(wait_until(lambda: ready.exists() and ready.read_text(), timeout=60, what="the ready file"))
    wait_until(lambda: health(port, "/readyz") == 200, timeout=60, what="/readyz 200")

    def labelled(namespace: str) -> bool:
        pods = [p for p in cluster.api.store.list("pods") if p["metadata"]["namespace"] == namespace]
        return all("pipelines.kubeflow.org/metadata_execution_id" in p["metadata"]["labels"] for p in pods)

    wait_until(lambda: labelled("kubeflow"), timeout=60, what="the kubeflow pods labelled")
    assert health(port, "/metrics") == 200
    code, logs = stop_run(process)
    assert code == 0
    assert not labelled("other")  # -n kubeflow: the other namespace was left alone
    started = [line for line in logs if line["msg"] == "controller started"]
    assert started and started[0]["leader_election"] is False and started[0]["namespaces"] == ["kubeflow"]
    # APScheduler's INFO lines stay out unless DEBUG is asked for.
    assert not [line for line in logs if line["logger"].startswith("apscheduler")]
    assert {line["level"] for line in logs} <= {"INFO", "WARNING"}


def test_run_log_level_flag(cluster: Cluster, tmp_path: Path, running: list[subprocess.Popen[str]]) -> None:
    levels = {}
    for level in ("warning", "debug"):
        ready = tmp_path / f"port-{level}"
        process = start_run(
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--mlmd",
            cluster.mlmd.url,
            "--health-port",
            "0",
            "--no-leader-election",
            "--log-level",
            level,
            ready_file=ready,
        )
        running.append(process)
        port = int(wait_until(lambda r=ready: r.exists() and r.read_text(), timeout=60, what="ready file"))
        wait_until(lambda p=port: health(p, "/readyz") == 200, timeout=60, what="/readyz 200")
        code, logs = stop_run(process)
        assert code == 0
        levels[level] = logs
    assert not [line for line in levels["warning"] if line["level"] in ("DEBUG", "INFO")]
    assert any(line["logger"].startswith("apscheduler") for line in levels["debug"])
    assert any(line["msg"] == "controller started" for line in levels["debug"])


def test_run_stops_at_start_on_a_store_of_another_schema_version(
    cluster: Cluster, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "old.sqlite"
    open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE MLMDEnv SET schema_version = 7")
    started = time.monotonic()
    run = cli(
        "run", "--kubeconfig", str(cluster.kubeconfig), "--mlmd", f"sqlite:///{path}", "--health-port", "0"
    )
    one_error(run, 3, "schema version 7")
    assert time.monotonic() - started < 60


def test_run_stops_at_start_on_a_damaged_schema(
    cluster: Cluster, mysql_url: str, mariadb_server: MariaDB
) -> None:
    store = open_store(mysql_url)
    type_id = store.put_context_type(pb.ContextType(name="KfpRun"))
    store.put_contexts([pb.Context(type_id=type_id, name="precious")])
    database = mysql_url.rsplit("/", 1)[1]
    mariadb_server.execute(f"DELETE FROM `{database}`.MLMDEnv")
    run = cli("run", "--kubeconfig", str(cluster.kubeconfig), "--mlmd", mysql_url, "--health-port", "0")
    one_error(run, 3, "holds records", "no complete MLMD schema")
    assert mariadb_server.execute(f"SELECT name FROM `{database}`.Context") == [("precious",)]


def test_run_stops_at_start_on_a_refused_login(cluster: Cluster, mariadb_server: MariaDB) -> None:
    name = new_database_name()
    url = f"mysql://{mariadb_server.user}:{SECRET}@{mariadb_server.host}:{mariadb_server.port}/{name}"
    run = cli("run", "--kubeconfig", str(cluster.kubeconfig), "--mlmd", url, "--health-port", "0")
    one_error(run, 3, "Access denied", "root:***@")


def test_run_retries_an_unreachable_store_and_logs_no_password(
    cluster: Cluster, tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    ready = tmp_path / "port"
    url = f"mysql://root:{SECRET}@127.0.0.1:1/mlmd"
    process = start_run(
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--health-port",
        "0",
        "--no-leader-election",
        ready_file=ready,
        KFPMR_MLMD_URL=url,
    )
    running.append(process)
    port = int(wait_until(lambda: ready.exists() and ready.read_text(), timeout=60, what="the ready file"))
    assert health(port, "/healthz") == 200
    wait_until(lambda: health(port, "/readyz") == 503, timeout=30, what="/readyz 503 while MLMD is away")
    code, logs = stop_run(process)
    assert code == 0
    text = json.dumps(logs)
    assert SECRET not in text
    started = [line for line in logs if line["msg"] == "controller started"]
    assert started[0]["mlmd"] == "mysql://root:***@127.0.0.1:1/mlmd"
    assert any(line["msg"] == "MLMD cannot be reached yet; the passes will retry" for line in logs)
    assert any(line["msg"] == "pass failed" for line in logs)


def test_an_unexpected_failure_is_one_line_and_exit_5(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug of ours (any exception no layer turned into an error) is still one line, exit 5."""
    import argparse

    from controller import cli

    def handler(args: argparse.Namespace) -> int:
        raise TypeError("unhashable type: 'list' in mysql://root:s3cret@db/x")

    # Our own parser is replaced to reach main()'s last resort; nothing of Kubernetes or MLMD is.
    monkeypatch.setattr(cli, "_parse", lambda argv: argparse.Namespace(handler=handler))
    assert cli.main([]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: unexpected failure, a bug of the reconciler (TypeError")
    assert "s3cret" not in err and "Traceback" not in err
