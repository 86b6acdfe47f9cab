"""`kfp-metadata-reconciler reconcile --from-file`, run as the console script an operator runs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from store.connect import open_store
from tests.podfactory import chain, pods_of

CLI = [sys.executable, "-m", "controller.cli"]


def cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **env}
    )


def write_list(path: Path, items: list[dict[str, Any]], kind: str = "PodList") -> Path:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": kind, "items": items}))
    return path


def test_thousand_pods_then_again_writes_nothing(tmp_path: Path) -> None:
    pods = []
    for w in range(200):
        pods += pods_of(chain(f"wf-{w:03d}", 5), profile="3.3")
    assert len(pods) == 1000
    dump = write_list(tmp_path / "pods.json", pods)
    url = f"sqlite:///{tmp_path}/mlmd.sqlite"

    first = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "--output", "json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["pods_seen"] == 1000 and report["errors"] == []
    assert report["actions"]["execution.create"] == 1000
    assert report["actions"]["artifact.create"] == 2000
    assert report["actions"]["event.input"] == 800
    assert len(report["pod_patches"]) == 1000

    second = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "--output", "json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["actions"] == {}
    assert again["mlmd_transactions"] == 0
    # The file still carries the old labels, so the label changes are listed again, unapplied.
    assert len(again["pod_patches"]) == 1000


def test_dry_run_writes_nothing_and_lists_every_change(tmp_path: Path) -> None:
    dump = write_list(tmp_path / "pods.json", pods_of(chain("wf-d", 2), profile="3.3"))
    url = f"sqlite:///{tmp_path}/mlmd.sqlite"
    open_store(url)  # a new, empty store: a dry run never creates one
    empty = (tmp_path / "mlmd.sqlite").read_bytes()
    dry = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "execution.create" in dry.stdout and "event.input" in dry.stdout
    assert (tmp_path / "mlmd.sqlite").read_bytes() == empty
    real = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "--output", "json")
    assert json.loads(real.stdout)["actions"]["execution.create"] == 2  # the dry run wrote nothing


def test_bad_pods_are_reported_and_the_rest_converge(tmp_path: Path) -> None:
    pods = pods_of(chain("wf-e", 3), profile="3.3")
    pods[1]["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"] = "{broken"
    pods.append({"kind": "Pod", "metadata": {"name": "stray", "namespace": "x"}})
    huge = pods_of(chain("wf-f", 1), profile="3.3")[0]
    huge["metadata"]["annotations"]["workflows.argoproj.io/outputs"] = json.dumps(
        {"artifacts": [{"name": "x", "s3": {"key": "k" * 1_048_576}}]}
    )
    pods.append(huge)
    dump = write_list(tmp_path / "pods.json", pods)
    run = cli(
        "reconcile", "--from-file", str(dump), "--mlmd", f"sqlite:///{tmp_path}/m.sqlite", "--output", "json"
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    problems = {(e["pod"], e["reason"]) for e in report["errors"]}
    assert problems == {
        (pods[1]["metadata"]["name"], "malformed_annotation"),
        ("stray", "malformed_pod"),
        (huge["metadata"]["name"], "value_too_large"),
    }
    assert report["actions"]["execution.create"] == 2  # the two good steps of wf-e


def test_mixed_list_uses_workflow_status_for_outputs(tmp_path: Path) -> None:
    steps = chain("wf-g", 2)
    pods = pods_of(steps, profile="3.5")  # 3.5: no outputs annotation
    nodes = {}
    for s, p in zip(steps, pods, strict=True):
        arts = [{"name": f"{s.template}-out", "s3": {"key": s.output_key("out")}}]
        nodes[s.node_id] = {"id": s.node_id, "phase": "Succeeded", "outputs": {"artifacts": arts}}
        p["kind"] = "Pod"
    workflow = {
        "kind": "Workflow",
        "metadata": {"name": "wf-g", "namespace": "kubeflow"},
        "status": {"nodes": nodes},
    }
    dump = write_list(tmp_path / "all.json", [*pods, workflow], kind="List")
    run = cli(
        "reconcile", "--from-file", str(dump), "--mlmd", f"sqlite:///{tmp_path}/m.sqlite", "--output", "json"
    )
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stderr
    assert report["actions"]["artifact.create"] == 2
    assert report["actions"]["event.input"] == 1
    assert report["pending_outputs"] == 0


def test_usage_and_unreachable_errors_are_one_line(tmp_path: Path) -> None:
    dump = write_list(tmp_path / "p.json", [])
    store = ["--mlmd", f"sqlite:///{tmp_path}/m.sqlite"]
    cases = [
        (["reconcile", "--from-file", str(tmp_path / "missing.json"), *store], 2, "cannot read"),
        (["reconcile", "--from-file", str(dump), "--mlmd", "postgres://x"], 2, "invalid"),
        (["reconcile", "--from-file", str(dump), "--output", "yaml"], 2, "invalid choice"),
        (["reconcile", "--from-file", str(dump), "--mlmd", "grpc://127.0.0.1:1"], 3, "cannot reach MLMD"),
    ]
    (tmp_path / "notjson.json").write_text("{")
    cases.append((["reconcile", "--from-file", str(tmp_path / "notjson.json"), *store], 2, "is not JSON"))
    for args, code, fragment in cases:
        run = cli(*args, timeout=60)
        assert run.returncode == code, (args, run.stderr)
        assert fragment in run.stderr
        assert "Traceback" not in run.stderr
        assert len([line for line in run.stderr.splitlines() if "error:" in line]) == 1


def sandbox_items(workflows: int) -> list[dict[str, Any]]:
    """Pods, Workflows and WorkflowTaskResults of the sandbox's simulator: finished and running runs."""
    from sandbox.objectstore import ObjectStore
    from sandbox.simulator.runner import generate_load

    cluster = ObjectStore()
    generate_load(cluster, workflows=workflows, steps=5, profile="3.5", seed=1)
    generate_load(cluster, workflows=workflows, steps=5, profile="3.5", seed=2, completed=False)
    return [obj for kind in ("pods", "workflows", "workflowtaskresults") for obj in cluster.list(kind)]


def mlmd_contents(path: Path) -> tuple[list[str], list[tuple[str, str]], int]:
    """Execution keys, artifact (key, uri) and the number of events of a SQLite store."""
    store = open_store(f"sqlite:///{path}", read_only=True)
    executions = sorted(e.external_id for e in store.get_executions())
    artifacts = sorted((a.external_id, a.uri) for a in store.get_artifacts())
    events = store.get_events_by_execution_ids([e.id for e in store.get_executions()])
    return executions, artifacts, len(events)


def test_a_dump_in_any_order_converges_as_a_sorted_one(tmp_path: Path) -> None:
    """A workflow's pods, its Workflow and its results far apart: chunks still hold whole workflows."""
    items = sandbox_items(12)
    kinds = {item["kind"] for item in items}
    assert kinds == {"Pod", "Workflow", "WorkflowTaskResult"}
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    reports = {}
    for name, order in (("sorted", items), ("shuffled", shuffled)):
        dump = write_list(tmp_path / f"{name}.json", order, kind="List")
        url = f"sqlite:///{tmp_path}/{name}.sqlite"
        # Chunks of ~7 pods: every chunk boundary would split a 5-step workflow if chunks were cut blindly.
        run = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "-o", "json", KFPMR_CHUNK_PODS="7")
        assert run.returncode == 0, run.stderr
        reports[name] = json.loads(run.stdout)
        again = cli("reconcile", "--from-file", str(dump), "--mlmd", url, "-o", "json", KFPMR_CHUNK_PODS="7")
        assert json.loads(again.stdout)["actions"] == {}, again.stdout
    for field in ("actions", "pending_inputs", "pending_outputs", "pods_seen", "errors", "steps_without_pod"):
        assert reports["sorted"][field] == reports["shuffled"][field], field
    assert reports["sorted"]["actions"]["event.input"] > 0
    assert mlmd_contents(tmp_path / "sorted.sqlite") == mlmd_contents(tmp_path / "shuffled.sqlite")
