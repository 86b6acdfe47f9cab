"""The pass says what happened, and nothing else: conflicts named, counts true, secrets masked.

- Two pods claiming one step of one workflow are both named in errors; neither is recorded.
- `actions` counts only what was written: an INPUT event whose producer failed is pending,
  and a converged store gives 0 actions on the next pass although that producer still fails.
- Every problem, report line, metric label and Event masks credentials; text output escapes
  lone surrogates instead of dying on them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from controller.drift import Drift
from controller.kube import KubeClient, api_client_from
from controller.manual import ManualOutcome
from controller.metrics import Metrics
from controller.reconcile_pass import Chunk, desired_steps, run_pass
from controller.report import PassReport, PodProblem
from controller.report_view import print_drift, print_json, print_summary
from controller.sources import PassInputs
from reconcile.errors import Reason
from reconcile.options import ReconcileOptions
from reconcile.records import EventKind
from store.connect import open_store
from store.metadata import MetadataStore
from tests.mlmd_snapshot import snapshot
from tests.podfactory import chain, pods_of

OPTIONS = ReconcileOptions()
SECRET = "Pw-s3cr3t-91"
CLI = [sys.executable, "-m", "controller.cli"]


def copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------- conflicts
def test_two_pods_claiming_one_step_are_both_named_and_neither_recorded(tmp_path: Path) -> None:
    pods = pods_of(chain("wf-twin", 3), profile="3.3")
    twin = copy(pods[1])
    twin["metadata"]["name"] += "-twin"
    claimed = [pods[1]["metadata"]["name"], twin["metadata"]["name"]]
    client = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    store = MetadataStore.over(client)
    for _ in range(2):  # the same verdict on every pass, never a silent choice
        report = run_pass([Chunk([*pods, twin, copy(pods[0])])], store, OPTIONS)
        assert sorted(e.pod for e in report.errors) == claimed
        for error in report.errors:
            assert error.reason == Reason.DUPLICATE_STEP
            assert all(name in error.message for name in claimed)
    recorded = {e.custom_properties["kfp_pod_name"].string_value for e in client.get_executions()}
    # The pod listed twice (pods[0]) is one pod, recorded once; the claimed step is not recorded.
    assert recorded == {pods[0]["metadata"]["name"], pods[2]["metadata"]["name"]}
    assert len(client.get_executions()) == 2
    assert report.actions == {}


# ---------------------------------------------------------------------- counts
def poison_producer(client: Any, producer: dict[str, Any]) -> None:
    """Register the producer's execution type with a property type MLMD will refuse its writes for."""
    [step] = desired_steps([producer], OPTIONS, PassReport())
    name = step.desired.execution.type_name
    client.put_execution_type(pb.ExecutionType(name=name, properties={"run_id": pb.INT}))


def test_a_failed_producer_leaves_inputs_pending_and_a_second_pass_counts_nothing(tmp_path: Path) -> None:
    producer, consumer = pods_of(chain("wf-fail", 2), profile="3.3")
    client = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    poison_producer(client, producer)
    store = MetadataStore.over(client)

    first = run_pass([Chunk([producer, consumer])], store, OPTIONS)
    assert [(e.pod, e.reason) for e in first.errors] == [(producer["metadata"]["name"], "mlmd_write")]
    assert "event.input" not in first.actions  # nothing was linked: its artifact was never made
    assert first.actions["execution.create"] == 1
    assert first.pending_inputs == 1
    [execution] = client.get_executions()
    assert execution.custom_properties["kfp_pod_name"].string_value == consumer["metadata"]["name"]
    events = client.get_events_by_execution_ids([execution.id])
    assert not [e for e in events if e.type == EventKind.INPUT]
    # The consumer's pod names no input id it does not have.
    [patch] = [p for p in first.pod_patches if p.pod == consumer["metadata"]["name"]]
    assert (
        json.loads(
            patch.patch["metadata"]["annotations"]["pipelines.kubeflow.org/metadata_input_artifact_ids"]
        )
        == []
    )

    before = snapshot(client)
    for _ in range(2):
        again = run_pass([Chunk([producer, consumer])], store, OPTIONS)
        assert again.actions == {}, again.actions
        assert again.pending_inputs == 1
        assert [e.pod for e in again.errors] == [producer["metadata"]["name"]]
        assert snapshot(client) == before


# --------------------------------------------------------------------- secrets
def test_a_problem_masks_credentials_in_every_field() -> None:
    problem = PodProblem(
        "ns", "pod", "mlmd_write", f"cannot reach mysql//root:{SECRET}@db/mlmd, token={SECRET}"
    )
    assert SECRET not in str(problem)
    assert "root:***@db" in problem.message and "token=***" in problem.message


def test_metric_labels_mask_credentials() -> None:
    metrics = Metrics()
    metrics.error(f"pass_failed mysql://root:{SECRET}@db/mlmd")
    metrics.watch_restarted(f"https://user:{SECRET}@api")
    text = metrics.render().decode()
    assert SECRET not in text and "root:***@db" in text


def test_events_mask_credentials(api: Any, tmp_path: Path) -> None:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    kube = KubeClient(api_client_from(str(kubeconfig)))
    [pod] = pods_of(chain("wf-event", 1), profile="3.3")
    pod["metadata"]["uid"] = "0c1d2e3f-0000-4000-8000-000000000001"
    assert kube.emit_pod_event(pod, "MetadataReconcileFailed", f"bad: s3://AKIA:{SECRET}@minio/x")
    [event] = api.store.list("events")
    assert SECRET not in event["message"] and "AKIA:***@minio" in event["message"]


def hostile_outcome() -> ManualOutcome:
    report = PassReport()
    report.errors.append(
        PodProblem("kubeflow\ud800", "pod\udc80", "invalid_value", f"x mysql://u:{SECRET}@h/db")
    )
    report.warnings.append(PodProblem("kubeflow", "pod-w", "warning", f"password={SECRET} was lost"))
    return ManualOutcome(report, PassInputs([], {}, {}, []), offline=True)


def strict_utf8() -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)


def test_text_reports_escape_lone_surrogates_and_mask_credentials() -> None:
    outcome = hostile_outcome()
    raw, out = strict_utf8()
    print_summary(outcome, dry_run=False, verify=False, out=out, table=False)
    print_drift([Drift("mismatched_artifact", "key\udfff", f"uri s3://k:{SECRET}@h/a")], out)
    text = raw.getvalue().decode("utf-8")
    assert SECRET not in text
    assert "error: kubeflow\\ud800/pod\\udc80: invalid_value: x mysql://u:***@h/db" in text
    assert "warning: kubeflow/pod-w: password=*** was lost" in text
    assert "key\\udfff: uri s3://k:***@h/a" in text


def test_json_report_masks_credentials() -> None:
    raw, out = strict_utf8()
    print_json(hostile_outcome(), out, dry_run=False, verify=False)
    data = json.loads(raw.getvalue())
    assert SECRET not in raw.getvalue().decode("ascii")
    assert data["errors"][0]["namespace"] == "kubeflow\ud800"
    assert data["warnings"][0]["message"] == "password=*** was lost"


def test_the_cli_prints_a_hostile_pod_name_in_text(tmp_path: Path) -> None:
    pods = pods_of(chain("wf-text", 2), profile="3.3")
    pods[-1]["metadata"]["name"] = "pod\udc80"
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}), encoding="ascii")
    run = subprocess.run(
        [*CLI, "reconcile", "--from-file", str(dump), "--mlmd", f"sqlite:///{tmp_path}/m.sqlite"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8:strict"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "error: kubeflow/pod\\udc80: invalid_value: metadata.name" in run.stdout
