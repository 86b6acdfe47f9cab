"""The two distributions, built as pip builds them: the runtime carries no test rig.

The runtime wheel (../pyproject.toml) holds controller/, reconcile/, store/ and history/ only, and the
sandbox wheel (sandbox/pyproject.toml) holds sandbox/ only and adds the `sandbox` command
through the entry point group the CLI reads. Built from a copy of the tree, so the
checkout gets no build/ or egg-info of a test's making.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

from controller.cli import COMMANDS_GROUP

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    tree = tmp_path_factory.mktemp("tree") / "repo"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".sandbox", "build", "dist", "*.egg-info", "__pycache__", ".*cache"
        ),
    )
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for name, source in (("runtime", tree), ("sandbox", tree / "sandbox")):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                str(source),
                "-w",
                str(out / name),
            ],
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        (wheel,) = (out / name).glob("*.whl")
        built[name] = zipfile.ZipFile(wheel)
    return built


def _top_folders(wheel: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in wheel.namelist() if ".dist-info/" not in name}


def _entry_points(wheel: zipfile.ZipFile) -> ConfigParser:
    parser = ConfigParser()
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser.read_string(wheel.read(name).decode())
    return parser


def test_the_runtime_wheel_carries_no_sandbox(wheels: dict[str, zipfile.ZipFile]) -> None:
    runtime = wheels["runtime"]
    assert _top_folders(runtime) == {"controller", "history", "reconcile", "store"}
    assert "controller/reconcile_pass.py" in runtime.namelist()
    assert not [n for n in runtime.namelist() if "sandbox" in n or n.startswith("bench/")]
    assert dict(_entry_points(runtime)["console_scripts"]) == {
        "kfp-metadata-reconciler": "controller.cli:main"
    }
    assert not _entry_points(runtime).has_section(COMMANDS_GROUP)


def test_the_sandbox_wheel_carries_the_sandbox_and_its_command(wheels: dict[str, zipfile.ZipFile]) -> None:
    sandbox = wheels["sandbox"]
    assert _top_folders(sandbox) == {"sandbox"}
    assert {"sandbox/apiserver.py", "sandbox/command.py", "sandbox/simulator/engine.py"} <= set(
        sandbox.namelist()
    )
    assert dict(_entry_points(sandbox)[COMMANDS_GROUP]) == {"sandbox": "sandbox.command:add_command"}


def test_the_installed_cli_has_the_sandbox_command() -> None:
    # The test environment installs both distributions (scripts/test.sh).
    run = subprocess.run(
        [sys.executable, "-m", "controller.cli", "sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "--runs" in run.stdout
