"""The README's first command: `kfp-metadata-reconciler sandbox --runs 5`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from store.connect import open_store


def test_sandbox_runs_five_workflows_and_converges(tmp_path: Path, shared_dir: Path) -> None:
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
            "--fixtures",
            str(shared_dir / "fixtures" / "kfp-v1-workflows"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "summary:" in run.stdout
    assert "0 MLMD writes, 0 pod patches, 0 errors" in run.stdout  # the last pass
    store = open_store(f"sqlite:///{tmp_path}/mlmd.sqlite")
    assert len(store.get_contexts()) == 5
    executions = store.get_executions()
    assert executions and all(e.external_id.startswith("kfp-v1/step/") for e in executions)
