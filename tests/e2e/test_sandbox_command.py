"""The README's first command: `kfp-metadata-reconciler sandbox --runs 5`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from store.connect import open_store


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
