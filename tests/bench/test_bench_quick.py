"""Every bench scenario's quick mode runs and its outcome is correct (timings are not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.__main__ import run

pytestmark = pytest.mark.timeout(120)

FIGURES = {"pods_per_s", "wall_s", "cpu_s", "mlmd_reads", "mlmd_writes", "api_requests", "patches"}


def _common(doc: dict, scenario: str) -> None:
    assert doc["scenario"] == scenario
    assert doc["machine"]["cpu_count"] >= 1
    assert doc["machine"]["python"].startswith("3.")


def test_backfill_records_every_pod_and_patches_each_once(tmp_path: Path) -> None:
    doc = run("backfill", True, tmp_path).to_json()
    _common(doc, "backfill")
    figures = doc["figures"]
    assert set(figures) >= FIGURES
    pods = doc["parameters"]["pods"]
    assert pods == 50
    assert figures["errors"] == 0
    assert figures["patches"] == pods
    # The 10 workflows are one chunk and one batch: contexts, records, links.
    assert doc["parameters"]["write_batch_workflows"] == 50
    assert figures["mlmd_transactions"] == 3
    assert figures["mlmd_writes"] >= 3  # and the types, made on first use
    assert doc["details"]["actions"]["execution.create"] == pods
    assert doc["bounds"]["batched_raw_write_transactions"] == 3
    assert doc["bounds"]["per_workflow_raw_write_transactions"] == doc["parameters"]["workflows"]
    assert doc["bounds"]["batched_raw_write_s"] > 0 and doc["bounds"]["per_workflow_raw_write_s"] > 0
    assert doc["bounds"]["list_decode_s"] > 0
    assert doc["bounds"]["patch_s"] > 0 and doc["bounds"]["serial_floor_s"] > 0
    assert doc["details"]["patch_bound"]["patches"] == pods
    assert doc["ratios"]["wall_to_serial_floor"] > 0
    assert doc["ratios"]["pods_per_s_to_batched_raw_write"] > 0
    assert doc["ratios"]["pods_per_s_to_per_workflow_raw_write"] > 0
    assert "pods_per_s_to_batched_raw_write" in doc["targets"]


def test_idle_resync_writes_nothing_and_patches_nothing(tmp_path: Path) -> None:
    doc = run("idle-resync", True, tmp_path).to_json()
    _common(doc, "idle-resync")
    assert set(doc["figures"]) >= FIGURES
    assert doc["figures"]["mlmd_writes"] == 0
    assert doc["figures"]["patches"] == 0
    assert doc["figures"]["errors"] == 0
    assert doc["targets"]["mlmd_writes"]["met"] and doc["targets"]["patches"]["met"]
    assert doc["details"]["converging_pass"]["patches"] == doc["parameters"]["pods"]
    # A running controller skips every step it found converged; a restarted one compares them all.
    assert doc["details"]["pods_unchanged"] == doc["parameters"]["pods"]
    assert doc["details"]["after_restart"]["pods_unchanged"] == 0
    # The running controller's reads: MLMD's newest records, six before the pass and six after.
    assert doc["figures"]["mlmd_reads"] == 12
    # ...and of the API, the three lists as metadata only: nothing read whole.
    figures, bounds, ratios = doc["figures"], doc["bounds"], doc["ratios"]
    assert figures["api_bytes"] > 0 and figures["emulator_cpu_s"] >= 0
    assert bounds["metadata_list_bytes"] * 2 < bounds["full_list_bytes"]
    assert bounds["full_list_decode_s"] > 0
    assert set(doc["details"]["api_bytes_by_kind"]) == {
        f"list/{kind}/metadata" for kind in ("pods", "workflows", "workflowtaskresults")
    } - ({"list/workflowtaskresults/metadata"} if not _served_results(doc) else set())
    assert figures["api_bytes"] <= 1.25 * bounds["metadata_list_bytes"]
    assert doc["targets"]["api_bytes_to_metadata_list_bytes"]["met"]
    assert ratios["api_bytes_to_full_list_bytes"] < 1 and ratios["wall_to_full_list_decode"] > 0
    # A restarted controller lists everything whole.
    restarted = doc["details"]["after_restart"]["api_bytes"]
    assert restarted >= bounds["full_list_bytes"] - bounds["metadata_list_bytes"]


def _served_results(doc: dict) -> bool:
    """Whether the WorkflowTaskResults' metadata list had a body (an empty list still has one)."""
    return doc["details"]["lists"]["metadata"]["per_resource"]["workflowtaskresults"]["bytes"] > 0


def test_recovery_after_restore_has_no_duplicates_and_converges(tmp_path: Path) -> None:
    doc = run("recovery", True, tmp_path).to_json()
    _common(doc, "recovery")
    assert doc["figures"]["duplicates"] == 0
    assert doc["details"]["duplicates_by_kind"]["execution_count"] == doc["parameters"]["pods"]
    assert doc["details"]["wrong_labels_after"] == 0
    assert doc["details"]["next_pass"]["mlmd_writes"] == 0
    assert doc["details"]["next_pass"]["patches"] == 0
    # the half lost with the restore was written again
    assert doc["details"]["actions"]["execution.create"] == doc["parameters"]["pods"] // 2


def test_latency_measures_every_step(tmp_path: Path) -> None:
    doc = run("latency", True, tmp_path).to_json()
    _common(doc, "latency")
    figures = doc["figures"]
    assert doc["parameters"]["steps"] == 20
    assert figures["unmeasured"] == 0
    assert figures["measured"] == 20
    for name in ("latency_p50_s", "latency_p90_s", "latency_p99_s"):
        assert figures[name] is not None and figures[name] >= 0
    assert figures["latency_p50_s"] <= figures["latency_p90_s"] <= figures["latency_p99_s"]


def test_scale_reports_a_curve(tmp_path: Path) -> None:
    doc = run("scale", True, tmp_path).to_json()
    _common(doc, "scale")
    curve = doc["details"]["curve"]
    assert [p["pods"] for p in curve] == [50, 200]
    for point in curve:
        assert point["peak_rss_mb"] >= point["baseline_rss_mb"] > 0
        assert point["idle_writes"] == 0 and point["idle_patches"] == 0
        assert point["running_idle_wall_s"] > 0


def test_command_line_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    assert bench_main(["idle-resync", "--quick", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["parameters"]["quick"] is True


def test_backfill_and_idle_resync_against_kfp_1_8s_mlmd(tmp_path: Path) -> None:
    """`--mlmd-version 1.5.0`: one put_execution per step, then idle passes that write nothing."""
    backfill = run("backfill", True, tmp_path / "backfill", mlmd_version="1.5.0").to_json()
    pods = backfill["parameters"]["pods"]
    assert backfill["parameters"]["mlmd_version"] == "1.5.0"
    assert backfill["figures"]["errors"] == 0 and backfill["figures"]["patches"] == pods
    assert backfill["figures"]["mlmd_transactions"] == pods  # one per step, not per workflow
    # Both bounds are one put_execution per step: there are no batches without put_lineage_subgraph.
    assert backfill["bounds"]["batched_raw_write_transactions"] == pods
    assert backfill["bounds"]["per_workflow_raw_write_transactions"] == pods
    assert backfill["details"]["actions"]["execution.create"] == pods
    idle = run("idle-resync", True, tmp_path / "idle", mlmd_version="1.5.0").to_json()
    assert idle["figures"]["mlmd_writes"] == 0 and idle["figures"]["patches"] == 0
    assert idle["details"]["after_restart"]["mlmd_writes"] == 0
    assert idle["details"]["after_restart"]["pods_unchanged"] == 0


def test_stored_runs_backfills_every_stored_step_once_with_bounded_memory(tmp_path: Path) -> None:
    doc = run("stored-runs", True, tmp_path).to_json()
    _common(doc, "stored-runs")
    figures, runs = doc["figures"], doc["parameters"]["runs"]
    assert runs == 20
    assert figures["executions"] == runs * doc["parameters"]["steps_per_run"]
    assert figures["duplicates"] == 0 and figures["errors"] == 0 and figures["unrecoverable"] == 0
    assert figures["second_pass_writes"] == 0
    assert doc["details"]["stored_runs"]["runs_read"] == runs
    assert doc["details"]["tenth"]["steps"] == 2 * doc["parameters"]["steps_per_run"]
    assert doc["bounds"]["read_steps"] == figures["executions"]
    assert figures["peak_rss_mb"] > 0 and doc["bounds"]["baseline_rss_mb"] > 0
    assert doc["ratios"]["peak_rss_to_tenth"] is not None


def test_dump_reconciles_the_file_then_writes_nothing(tmp_path: Path) -> None:
    """`reconcile --from-file` of a simulator dump through the CLI, twice; the bound is measured too."""
    doc = run("dump", True, tmp_path).to_json()
    _common(doc, "dump")
    [point] = doc["details"]["points"]
    assert point["pods"] == 50 and point["dump"]["Workflow"] == 10
    first, second = point["first_pass"], point["second_pass"]
    assert first["returncode"] == 0 and first["errors"] == 0 and first["pods_seen"] == 50
    assert first["actions"]["execution.create"] == 50 and first["actions"]["event.input"] == 40
    assert second["returncode"] == 0 and second["actions"] == {} and second["mlmd_transactions"] == 0
    assert first["peak_rss_mb"] > 0 and point["parse"]["wall_s"] > 0 and point["json_load"]["wall_s"] > 0
    assert doc["ratios"]["second_pass_to_parse_50"] > 0
    assert doc["bounds"]["mlmd_read_s_50"] > 0 and doc["bounds"]["no_op_floor_s_50"] > 0
    assert doc["ratios"]["second_pass_to_no_op_floor_50"] > 0
    # The reads ran against the store the first pass converged: every step is found.
    assert point["mlmd_read"]["steps"] == point["mlmd_read"]["found_executions"] == 50
    assert set(doc["targets"]) == {"peak_rss_mb_50", "second_pass_to_parse_50", "second_pass_to_json_load_50"}
