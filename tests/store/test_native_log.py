"""MLMD's native (glog) lines never reach the terminal raw (store.native_log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from store.native_log import native_stderr_captured
from tests.conftest import MariaDB, new_database_name
from tests.podfactory import chain, pods_of

REPO = Path(__file__).resolve().parents[2]
GLOG_MARKERS = ("InitGoogleLogging", "mysql_metadata_source.cc")


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def localhost_url(mariadb_server: MariaDB) -> Iterator[str]:
    """A MySQL URL the server accepts but MLMD's own client cannot use ('localhost' = Unix socket).

    The login works, so the embedded library itself is reached, and it logs through glog.
    """
    name = new_database_name()
    yield f"mysql://root@localhost:{mariadb_server.port}/{name}"
    mariadb_server.drop_database(name)


OPEN_AND_REPORT = """
import logging, sys
from store.connect import StoreError, open_store
if len(sys.argv) > 2:
    logging.basicConfig(level=logging.DEBUG, format="LOG %(name)s: %(message)s", stream=sys.stdout)
try:
    open_store(sys.argv[1])
except StoreError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(3)
"""


def test_open_failure_prints_one_line_only(localhost_url: str, mariadb_server: MariaDB) -> None:
    done = _run(OPEN_AND_REPORT, localhost_url)
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot reach MLMD at mysql://root@localhost:")
    assert "write 127.0.0.1 instead" in lines[0]
    assert not any(marker in done.stderr for marker in GLOG_MARKERS)


def test_the_native_lines_go_to_the_debug_log(localhost_url: str) -> None:
    done = _run(OPEN_AND_REPORT, localhost_url, "--debug")
    assert done.returncode == 3
    logged = [line for line in done.stdout.splitlines() if line.startswith("LOG store.mlmd_native: ")]
    assert any("mysql_metadata_source.cc" in line for line in logged), done.stdout
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_cli_shows_one_line_and_exits_3(localhost_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "pods.json"
    dump.write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": pods_of(chain("wf", 1))}))
    command = ["reconcile", "--from-file", str(dump), "--mlmd", localhost_url]
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_capture_restores_fd_2(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_captured() as native:
        os.write(2, b"E1201 06:43:34.250698 17312 mysql_metadata_source.cc:174] inside\n")
    os.write(2, b"after\n")
    assert native.lines == ["E1201 06:43:34.250698 17312 mysql_metadata_source.cc:174] inside"]
    assert native.last_message() == "inside"
    assert capfd.readouterr().err == "after\n"


def test_capture_restores_fd_2_on_error(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), native_stderr_captured() as native:
        os.write(2, b"raw native line\n")
        raise RuntimeError("the library failed")
    os.write(2, b"after\n")
    assert native.lines == ["raw native line"]
    assert native.last_message() == ""  # not a glog line
    assert capfd.readouterr().err == "after\n"
