"""`reconcile` and `verify` run by hand, as the console script, against the sandbox cluster.

Migration from the upstream metadata-writer, scoping, the terminal view, JSON versus text,
error lines and exit codes, and offline verification from a `kubectl get ... -o json` dump.
Disaster recovery itself (backup, restore, verify, reconcile) is in test_disaster_recovery.py.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconcile.conventions import CONTEXT_ID_LABEL, EXECUTION_ID_LABEL
from reconcile.keys import PREFIX
from sandbox import pipelines
from sandbox.apiserver import ApiServer
from sandbox.simulator import Simulator, generate_load
from store.connect import open_store
from tests.conftest import VersionedMlmd
from tests.controller.harness import Cluster, duplicate_counts
from tests.upstream_writer import write_like_upstream

CLI = [sys.executable, "-m", "controller.cli"]
ANSI = re.compile(r"\x1b[\[\]()]")
# Settings the CLI would otherwise pick up from the developer's environment.
FOREIGN_ENV = (
    "KUBECONFIG",
    "NAMESPACE_TO_WATCH",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KFPMR_", "METADATA_GRPC_", "METADATA_TLS")) and k not in FOREIGN_ENV
    }
    env.update(extra)
    return env


def command(cluster: Cluster, *args: str) -> list[str]:
    """The CLI with the cluster's MLMD and (unless reading a file or given one) its kubeconfig."""
    extra = []
    if "--mlmd" not in args:
        extra += ["--mlmd", cluster.mlmd.url]
    if "--from-file" not in args and "--kubeconfig" not in args:
        extra += ["--kubeconfig", str(cluster.kubeconfig)]
    return [*CLI, *args, *extra]


def cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(cluster, *args), capture_output=True, text=True, timeout=120, check=False, env=clean_env()
    )


def as_json(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in run.stderr, run.stderr
    return json.loads(run.stdout)


def summary_lines(text: str) -> dict[str, int]:
    """The plain `name: value` summary lines (numbers only) of a non-terminal run."""
    found = {}
    for line in text.splitlines():
        name, sep, value = line.rpartition(": ")
        if sep and not line.startswith((" ", "warning: ", "error: ")) and value.isdigit():
            found[name] = int(value)
    return found


def pods_of(
    cluster: Cluster, namespace: str | None = None, workflow: str | None = None
) -> list[dict[str, Any]]:
    found = []
    for pod in cluster.api.store.list("pods"):
        meta = pod["metadata"]
        if namespace is not None and meta["namespace"] != namespace:
            continue
        if workflow is not None and meta["labels"].get("workflows.argoproj.io/workflow") != workflow:
            continue
        found.append(pod)
    return found


def executions(cluster: Cluster) -> list[Any]:
    return open_store(cluster.mlmd.url).get_executions()


def step_namespace(execution: Any) -> str:
    """The namespace part of an execution's key (kfp-v1/step/<ns>/<uid>/<node>)."""
    return execution.external_id.removeprefix(f"{PREFIX}/step/").split("/", 1)[0]


NO_DUPLICATES = {"executions": 0, "artifacts": 0, "events": 0}


# ------------------------------------------------------------------------------- migration
def test_migration_adopts_what_the_upstream_writer_recorded(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.3", seed=3)
    upstream_runs = [
        sim.submit(pipelines.load(name), "kubeflow")
        for name in ("chain10", "two_step")
    ]
    sim.submit(pipelines.load("fan_out_fan_in"), "kubeflow")
    sim.run_until_complete()
    # A 3.5 run: its outputs come from the Workflow, not from a pod annotation.
    sim35 = Simulator(cluster.api.store, "3.5", seed=4)
    sim35.submit(pipelines.load("two_step"), "kubeflow")
    sim35.run_until_complete()
    all_pods = pods_of(cluster)

    # metadata-writer records each pod when its outputs appear: pipeline order.
    by_name = {p["metadata"]["name"]: p for p in all_pods}
    recorded = [
        p for p in all_pods if p["metadata"]["labels"]["workflows.argoproj.io/workflow"] in upstream_runs
    ]
    order = [o.pod_name for o in sim.outputs_log if o.pod_name in {p["metadata"]["name"] for p in recorded}]
    order += sorted({p["metadata"]["name"] for p in recorded} - set(order))
    upstream = open_store(cluster.mlmd.url)
    upstream_ids = {}
    for name in order:
        written = write_like_upstream(upstream, by_name[name])
        cluster.api.store.patch("pods", "kubeflow", name, {"metadata": written})
        upstream_ids[name] = written["labels"][EXECUTION_ID_LABEL]
    assert len(upstream_ids) == len(recorded) == 12

    expected = cluster.expected_snapshot()
    fresh_pods = {p["metadata"]["name"] for p in all_pods} - set(upstream_ids)
    fresh_keys = {
        ext
        for _type, ext, _props, custom, _state in expected["executions"]
        if dict(custom)["kfp_pod_name"] in fresh_pods
    }
    fresh_outputs = [a for a in expected["artifacts"] if a[1].split("/out/")[0] in fresh_keys]
    assert fresh_keys and fresh_outputs

    run = cli(cluster, "reconcile", "-A", "--output", "json")
    assert run.returncode == 0, run.stderr
    report = as_json(run)
    assert report["errors"] == []
    actions = report["actions"]
    assert actions["execution.adopt"] == len(upstream_ids)
    # Only the steps metadata-writer never saw get new records.
    assert actions["execution.create"] == len(fresh_keys)
    assert actions["artifact.create"] == len(fresh_outputs)
    assert actions["artifact.adopt"] == len(expected["artifacts"]) - len(fresh_outputs)
    assert actions["context.adopt"] == len(upstream_runs)

    stored = executions(cluster)
    assert len(stored) == len(all_pods)
    assert all(e.external_id.startswith(f"{PREFIX}/step/kubeflow/") for e in stored)
    assert duplicate_counts(cluster.mlmd.url) == NO_DUPLICATES
    assert cluster.labels_correct()
    # The adopted executions keep the ids metadata-writer gave them (and its labels stay valid).
    for pod in pods_of(cluster):
        name = pod["metadata"]["name"]
        if name in upstream_ids:
            assert pod["metadata"]["labels"][EXECUTION_ID_LABEL] == upstream_ids[name]

    check = cli(cluster, "verify", "-A")
    assert check.returncode == 0, check.stdout + check.stderr
    assert summary_lines(check.stdout)["drift found"] == 0


# ---------------------------------------------------------------------------------- scope
def test_namespace_and_workflow_scope_touch_nothing_else(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.5", seed=8)
    team_a = [
        sim.submit(pipelines.load("two_step"), "team-a"),
        sim.submit(pipelines.load("chain10"), "team-a"),
    ]
    team_b = [
        sim.submit(pipelines.load("two_step"), "team-b"),
        sim.submit(pipelines.load("fan_out_fan_in"), "team-b"),
    ]
    sim.run_until_complete()
    store = cluster.api.store

    # One workflow, looked up in every namespace.
    only = pods_of(cluster, "team-a", team_a[0])
    before = cluster.api.count("patch", "pods")
    run = cli(cluster, "reconcile", "--workflow", team_a[0], "-A", "--output", "json")
    assert run.returncode == 0, run.stderr
    report = as_json(run)
    assert report["pods_seen"] == len(only)
    assert cluster.api.count("patch", "pods") - before == len(only)
    assert {e.custom_properties["kfp_pod_name"].string_value for e in executions(cluster)} == {
        p["metadata"]["name"] for p in only
    }
    assert [c.name for c in open_store(cluster.mlmd.url).get_contexts()] == [team_a[0]]
    labelled = {
        p["metadata"]["name"] for p in store.list("pods") if EXECUTION_ID_LABEL in p["metadata"]["labels"]
    }
    assert labelled == {p["metadata"]["name"] for p in only}

    # One namespace: team-b keeps neither records nor labels.
    before = cluster.api.count("patch", "pods")
    run = cli(cluster, "reconcile", "--namespace", "team-a", "--output", "json")
    assert run.returncode == 0, run.stderr
    report = as_json(run)
    a_pods, b_pods = pods_of(cluster, "team-a"), pods_of(cluster, "team-b")
    assert report["pods_seen"] == len(a_pods)
    assert {p["namespace"] for p in report["pod_patches"]} == {"team-a"}
    assert cluster.api.count("patch", "pods") - before == len(a_pods) - len(only)
    assert {step_namespace(e) for e in executions(cluster)} == {"team-a"}
    assert len(executions(cluster)) == len(a_pods)
    assert sorted(c.name for c in open_store(cluster.mlmd.url).get_contexts()) == sorted(team_a)
    assert all(EXECUTION_ID_LABEL in p["metadata"]["labels"] for p in a_pods)
    assert not any(EXECUTION_ID_LABEL in p["metadata"]["labels"] for p in b_pods)

    before_counts = cluster.api.request_counts()
    still = cli(cluster, "verify", "--namespace", "team-b", "--output", "json")
    assert still.returncode == 4, still.stderr
    drift = as_json(still)["drift"]
    assert len(drift["missing_execution"]) == len(b_pods)
    assert {d["subject"] for d in drift["missing_context"]} == set(team_b)
    assert {d["subject"].split("/")[0] for d in drift["wrong_pod_metadata"]} == {"team-b"}
    clean = cli(cluster, "verify", "--namespace", "team-a")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    after_counts = cluster.api.request_counts()
    # verify reads and never writes.
    writes = ("create", "update", "patch", "delete")
    assert {k: v for k, v in after_counts.items() if k[0] in writes} == {
        k: v for k, v in before_counts.items() if k[0] in writes
    }


# ------------------------------------------------------------------------------- terminal
def run_on_terminal(args: list[str], timeout: float = 90.0) -> tuple[int, str]:
    """Run `args` with stdout and stderr on a pseudo-terminal; (exit code, everything drawn)."""
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (50, 140))
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=clean_env(TERM="xterm-256color"),
            close_fds=True,
        )
    finally:
        os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no EOF on the terminal within {timeout} s")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_and_table_on_a_terminal_plain_lines_otherwise(cluster: Cluster) -> None:
    generate_load(cluster.api.store, workflows=60, steps=5, profile="3.5", seed=11)
    pods = len(pods_of(cluster))
    assert pods >= 300

    code, screen = run_on_terminal(command(cluster, "reconcile", "-A"))
    assert code == 0, screen
    assert ANSI.search(screen)  # rich drew on the terminal
    assert "reading pods" in screen and "writing steps" in screen
    assert "━" in screen  # the bar
    assert f"{pods}/{pods}" in screen  # n/m count, at the end of each phase
    for corner in ("┏", "┃", "│", "└"):  # the summary table
        assert corner in screen
    for row in ("pods seen", "MLMD writes: execution.create", "pod label changes applied", "errors"):
        assert row in screen
    assert re.search(rf"pods seen\s*│\s*{pods}\b", screen)

    plain = cli(cluster, "reconcile", "-A")
    assert plain.returncode == 0, plain.stderr
    assert not ANSI.search(plain.stdout + plain.stderr)
    assert not any(ch in plain.stdout for ch in "━┏┃│")
    lines = summary_lines(plain.stdout)
    assert lines["pods seen"] == pods
    assert lines["MLMD writes"] == 0  # everything was written under the terminal
    assert lines["pod label changes applied"] == 0
    assert lines["errors"] == 0
    assert all(": " in line for line in plain.stdout.splitlines())


# ------------------------------------------------------------------------- JSON vs text
def broken_copy(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod of the same workflow whose component spec is not JSON (reported as an error)."""
    copy = json.loads(json.dumps(pod))
    meta = copy["metadata"]
    meta["name"] += "-broken"
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    meta["annotations"]["pipelines.kubeflow.org/component_spec"] = "{broken"
    return copy


def test_json_output_matches_the_text_summary(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.5", seed=12)
    sim.submit(pipelines.load("chain10"), "kubeflow")
    sim.submit(pipelines.load("fan_out_fan_in"), "kubeflow")
    # Half-way: finished steps, started ones (outputs not reported yet) ...
    while len(pods_of(cluster)) < 10 or all(p["status"]["phase"] == "Succeeded" for p in pods_of(cluster)):
        assert sim.step()
    cluster.api.store.create("pods", broken_copy(pods_of(cluster)[0]))  # ... and one bad pod

    views = {}
    for args in (("verify", "-A"), ("reconcile", "--dry-run", "-A")):
        as_text = cli(cluster, *args)
        in_json = cli(cluster, *args, "--output", "json")
        assert as_text.returncode == in_json.returncode, (as_text.stderr, in_json.stderr)
        assert "Traceback" not in as_text.stderr + in_json.stderr
        views[args[0]] = (as_text, as_json(in_json))

    for name, (text_run, data) in views.items():
        lines = summary_lines(text_run.stdout)
        verb = "MLMD writes planned"
        assert data["pods_seen"] == lines["pods seen"] == len(pods_of(cluster)), name
        assert data["pods_skipped"] == lines["pods skipped"], name
        assert data["steps_without_pod"] == lines["steps rebuilt from Workflow status (pod gone)"], name
        assert data["actions"] == {
            k.removeprefix(f"{verb}: "): v for k, v in lines.items() if k.startswith(f"{verb}: ")
        }
        assert data["actions"]["execution.create"] > 0
        assert len(data["errors"]) == lines["errors"] == 1, name
        assert data["errors"][0]["reason"] == "malformed_annotation"
        assert data["pending_outputs"] == lines["steps whose outputs are not reported yet"] > 0, name
        assert data["pending_inputs"] == lines["inputs waiting for their upstream artifact"], name
        assert data["dry_run"] is True and data["offline"] is False

    text_run, data = views["verify"]
    assert text_run.returncode == 4
    assert data["drift_total"] == summary_lines(text_run.stdout)["drift found"] > 0
    headers = dict(re.findall(r"^(\w+) \((\d+)\):$", text_run.stdout, re.M))
    assert {k: len(v) for k, v in data["drift"].items()} == {k: int(v) for k, v in headers.items()}
    # One run context per workflow, however many steps plan it.
    assert len(data["drift"]["missing_context"]) == data["actions"]["context.create"] == 2
    assert data["drift"]["missing_execution"] and data["drift"]["missing_artifact"]

    text_run, data = views["reconcile"]
    assert text_run.returncode == 1  # one pod failed
    lines = summary_lines(text_run.stdout)
    assert len(data["pod_patches"]) == lines["pod label changes (printed, not applied)"] > 0
    # The printed plan lists each write once: its lines add up to the counts.
    planned = Counter(line.split()[0] for line in text_run.stdout.splitlines() if line.startswith("  "))
    assert planned.pop("pod.patch") == len(data["pod_patches"])
    assert dict(planned) == data["actions"]
    assert executions(cluster) == []  # the dry runs and verify wrote nothing


# --------------------------------------------------------------------------------- errors
def test_errors_are_one_line_with_the_documented_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    gone = ApiServer()
    gone.start()
    dead_kubeconfig = gone.write_kubeconfig(tmp_path / "gone-kubeconfig")
    gone.stop()
    # An identity RBAC grants nothing (the admin identity of the other cases is never restricted).
    (tmp_path / "rbac.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: none}\nrules: []\n"
    )
    cluster.api.load_rbac(tmp_path / "rbac.yaml")
    nobody = cluster.api.write_kubeconfig(tmp_path / "nobody", user="system:serviceaccount:kubeflow:nobody")
    cases = {
        "forbidden": (["verify", "-A", "--kubeconfig", str(nobody)], 2, "HTTP 403 Forbidden"),
        "api server down": (
            ["verify", "-A", "--kubeconfig", str(dead_kubeconfig)],
            3,
            "Kubernetes API unavailable",
        ),
        "mlmd down": (["reconcile", "-A", "--mlmd", "grpc://127.0.0.1:1"], 3, "cannot reach MLMD"),
        "bad output": (["verify", "-A", "--output", "yaml"], 2, "invalid choice: 'yaml'"),
        "-n with -A": (["reconcile", "-n", "x", "-A"], 2, "not allowed with"),
        "unknown namespace": (["verify", "--namespace", "nope"], 2, "namespace 'nope' not found"),
        "unknown workflow": (["reconcile", "--workflow", "nope", "-A"], 2, "workflow nope not found"),
        "missing file": (["verify", "--from-file", str(tmp_path / "missing.json")], 2, "cannot read"),
    }
    # All at once: the API-server case spends its retries (about 3 s) while the others finish.
    started = {
        what: subprocess.Popen(
            command(cluster, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for what, (args, _, _) in cases.items()
    }
    for what, proc in started.items():
        stdout, stderr = proc.communicate(timeout=60)
        _, code, fragment = cases[what]
        assert proc.returncode == code, (what, stderr)
        assert fragment in stderr, (what, stderr)
        assert "Traceback" not in stderr, what
        assert [line for line in stderr.splitlines() if "error:" in line] == [stderr.splitlines()[-1]], what
        assert stdout == "", what
    assert cluster.api.count("patch", "pods") == 0


# -------------------------------------------------------------------------------- offline
def kubectl_dump(cluster: Cluster, path: Path) -> Path:
    """What an operator saves: `kubectl get pods,workflows,workflowtaskresults -A -o json`."""
    with path.open("w") as out:
        subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "get",
                "pods,workflows,workflowtaskresults",
                "-A",
                "-o",
                "json",
            ],
            stdout=out,
            check=True,
            timeout=60,
        )
    return path


def test_offline_label_drift_is_listed_but_not_counted(
    cluster: Cluster, tmp_path: Path
) -> None:
    sim = Simulator(cluster.api.store, "3.3", seed=13)
    sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.submit(pipelines.load("chain10"), "kubeflow")
    sim.run_until_complete()
    first = cli(cluster, "reconcile", "-A")
    assert first.returncode == 0, first.stderr
    assert cluster.labels_correct()

    # MLMD is complete; only labels go wrong (as after an id reuse or a hand edit).
    pods = sorted(pods_of(cluster), key=lambda p: p["metadata"]["name"])
    one, other, third = pods[0]["metadata"], pods[1]["metadata"], pods[2]["metadata"]
    store = cluster.api.store
    store.patch(
        "pods",
        "kubeflow",
        one["name"],
        {"metadata": {"labels": {EXECUTION_ID_LABEL: other["labels"][EXECUTION_ID_LABEL]}}},
    )
    store.patch("pods", "kubeflow", other["name"], {"metadata": {"labels": {EXECUTION_ID_LABEL: "987654"}}})
    store.patch("pods", "kubeflow", third["name"], {"metadata": {"labels": {CONTEXT_ID_LABEL: None}}})
    dump = kubectl_dump(cluster, tmp_path / "dump.json")

    offline = cli(cluster, "verify", "--from-file", str(dump), "--output", "json")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    data = as_json(offline)
    assert data["offline"] is True
    assert data["drift_total"] == 3 and data["drift_counted"] == 0
    details = {d["subject"].split("/", 1)[1]: d["detail"] for d in data["drift"]["wrong_pod_metadata"]}
    assert set(data["drift"]) == {"wrong_pod_metadata"}
    assert "names another record" in details[one["name"]]
    assert "does not exist" in details[other["name"]]
    assert "metadata_context_id missing" in details[third["name"]]

    as_text = cli(cluster, "verify", "--from-file", str(dump))
    assert as_text.returncode == 0, as_text.stderr
    assert "wrong_pod_metadata (3):" in as_text.stdout
    lines = summary_lines(as_text.stdout)
    assert lines["drift found"] == 3 and lines["drift counted (labels cannot be fixed offline)"] == 0

    # reconcile from the dump has nothing to write and prints the label changes it cannot make.
    patches_before = cluster.api.count("patch", "pods")
    repair = cli(cluster, "reconcile", "--from-file", str(dump))
    assert repair.returncode == 0, repair.stderr
    printed = [line.split()[1] for line in repair.stdout.splitlines() if line.startswith("  pod.patch ")]
    assert sorted(printed) == sorted(f"kubeflow/{m['name']}" for m in (one, other, third))
    lines = summary_lines(repair.stdout)
    assert lines["MLMD writes"] == 0 and lines["pod label changes (printed, not applied)"] == 3
    assert cluster.api.count("patch", "pods") == patches_before

    online = cli(cluster, "verify", "-A", "--output", "json")
    assert online.returncode == 4, online.stderr
    assert as_json(online)["drift"] == data["drift"]

    fixed = cli(cluster, "reconcile", "-A", "--output", "json")
    assert fixed.returncode == 0, fixed.stderr
    assert as_json(fixed)["actions"] == {} and len(as_json(fixed)["pod_patches"]) == 3
    assert cluster.labels_correct()
    assert cli(cluster, "verify", "-A").returncode == 0
    assert duplicate_counts(cluster.mlmd.url) == NO_DUPLICATES


def test_steps_that_cannot_be_rebuilt_are_errors_not_silence(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.5", seed=14, pod_gc="OnPodCompletion")
    name = sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.run_until_complete()
    assert pods_of(cluster) == []  # pod GC: the Workflow is the only source left
    broken = {"status": {"nodes": None, "compressedNodes": "bm90IGd6aXA="}}  # base64, not gzip
    cluster.api.store.patch("workflows", "kubeflow", name, broken, subresource="status")

    check = cli(cluster, "verify", "-A", "--output", "json")
    assert check.returncode == 1, check.stdout + check.stderr
    report = as_json(check)
    assert [(e["pod"], e["reason"]) for e in report["errors"]] == [(name, "malformed_workflow")]
    run = cli(cluster, "reconcile", "-A")
    assert run.returncode == 1, run.stdout + run.stderr
    assert (
        f"error: kubeflow/{name}: malformed_workflow: status.compressedNodes cannot be inflated" in run.stdout
    )
    assert executions(cluster) == []


def test_orphans_are_listed_but_do_not_count(cluster: Cluster) -> None:
    sim = Simulator(cluster.api.store, "3.3", seed=31)
    gone = sim.submit(pipelines.load("two_step"), "kubeflow")
    sim.submit(pipelines.load("chain10"), "kubeflow")
    sim.run_until_complete()
    assert cli(cluster, "reconcile").returncode == 0
    # Argo's TTL removes a finished Workflow and, through owner references, its pods.
    cluster.api.store.delete("workflows", "kubeflow", gone)
    for pod in cluster.api.store.list("pods", "kubeflow", f"workflows.argoproj.io/workflow={gone}"):
        cluster.api.store.delete("pods", "kubeflow", pod["metadata"]["name"])
    run = cli(cluster, "verify", "--output", "json")
    report = as_json(run)
    assert run.returncode == 0, report
    orphans = report["drift"]["orphaned_execution"]
    assert len(orphans) == 2 and report["drift_counted"] == 0
    assert all("pod and workflow are gone" in o["detail"] for o in orphans)
    assert len(executions(cluster)) == 12  # reported, never deleted


# ---------------------------------------------------------------------- old MLMD servers
def test_kfp_1_8_mlmd_switch_over_and_the_capabilities_line(
    tmp_path: Path, mlmd_server_factory: Callable[..., VersionedMlmd]
) -> None:
    """KFP 1.8's MLMD 1.5.0 (no external ids, no put_lineage_subgraph): metadata-writer's
    records are adopted, the rest recorded, and both commands say what the server can do."""
    api = ApiServer(bookmark_interval=0.5)
    api.start()
    try:
        served = mlmd_server_factory("1.5.0")
        cluster = Cluster(api, served.server, api.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
        sim = Simulator(api.store, "3.3", seed=5)
        upstream_run = sim.submit(pipelines.load("two_step"), "kubeflow")
        sim.submit(pipelines.load("chain10"), "kubeflow")
        sim.run_until_complete()
        upstream = open_store(served.url)
        for pod in pods_of(cluster):
            if pod["metadata"]["labels"]["workflows.argoproj.io/workflow"] == upstream_run:
                written = write_like_upstream(upstream, pod, key_only_bucket="")
                api.store.patch("pods", "kubeflow", pod["metadata"]["name"], {"metadata": written})

        run = cli(cluster, "reconcile", "-A", "--output", "json")
        assert run.returncode == 0, run.stderr
        report = as_json(run)
        assert report["capabilities"] == {
            "external_id": False,
            "put_lineage_subgraph": False,
            "filter_query": True,
            "key_placement": "name",
        }
        assert report["errors"] == [] and report["actions"]["execution.adopt"] == 2
        assert report["actions"]["execution.create"] == 10
        assert duplicate_counts(served.url) == NO_DUPLICATES
        assert cluster.labels_correct()

        check = cli(cluster, "verify", "-A")
        assert check.returncode == 0, check.stdout + check.stderr
        line = next(ln for ln in check.stdout.splitlines() if ln.startswith("MLMD capabilities: "))
        assert line == (
            "MLMD capabilities: external_id=no put_lineage_subgraph=no filter_query=yes "
            "(keys in name, one put_execution per step)"
        )
        assert summary_lines(check.stdout)["drift found"] == 0
    finally:
        api.stop()
