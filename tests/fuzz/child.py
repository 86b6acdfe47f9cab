"""Run the real CLI (and the project's gRPC server) in child processes and judge what they did.

A pass that makes MLMD abort kills the process it runs in; run as a child, that death is a
return code below zero here, and the test process lives on to report it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSON = dict[str, Any]
CLI = [sys.executable, "-m", "controller.cli"]
SERVER = [sys.executable, "-m", "store.server"]
REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on (grpc://\S+)")


@dataclass
class CliRun:
    """One `reconcile --from-file ... --output json` run of the console script."""

    returncode: int
    stdout: str
    stderr: str
    report: JSON | None = None

    @property
    def signalled(self) -> bool:
        """The child died of a signal (SIGABRT from MLMD's C++ core, SIGSEGV, ...)."""
        return self.returncode < 0

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stdout or "Traceback" in self.stderr

    def problems(self) -> list[str]:
        """What is wrong with the run itself, whatever the input was (empty: nothing)."""
        found = []
        if self.signalled:
            found.append(f"killed by signal {-self.returncode} ({signal.Signals(-self.returncode).name})")
        if self.traceback:
            found.append("a traceback in the output")
        if self.returncode not in (0, 1) and not self.signalled:
            found.append(f"exit code {self.returncode}")
        if self.report is None and self.returncode in (0, 1):
            found.append("no JSON report on stdout")
        if found:
            found.append(f"stderr: {self.stderr[-2000:]}")
        return found


def write_dump(path: Path, items: list[JSON]) -> Path:
    """A `kubectl get ... -o json` List of `items` (lone surrogates kept as JSON escapes)."""
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), encoding="ascii")
    return path


def run_cli(dump: Path, mlmd_url: str, timeout: float = 300) -> CliRun:
    """`kfp-metadata-reconciler reconcile --from-file dump --mlmd url --output json` in a child."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "0"}
    done = subprocess.run(
        [*CLI, "reconcile", "--from-file", str(dump), "--mlmd", mlmd_url, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
        env=env,
    )
    run = CliRun(done.returncode, done.stdout, done.stderr)
    if done.returncode in (0, 1):
        with contextlib.suppress(ValueError):
            run.report = json.loads(done.stdout)
    return run


@dataclass
class ServerChild:
    """`python -m store.server` in a child process: its URL, and whether it is still alive."""

    process: subprocess.Popen[str]
    url: str
    log: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def grpc_server(store_url: str, timeout_s: float = 60) -> Iterator[ServerChild]:
    """The project's MLMD gRPC server over `store_url`, in a child bound to a free port."""
    process = subprocess.Popen(
        [*SERVER, "--store", store_url, "--port", "0", "--grace", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    url = None
    while url is None:
        line = process.stderr.readline()
        if not line:
            raise RuntimeError(f"store.server exited ({process.wait()}): {''.join(lines)}")
        lines.append(line)
        match = _LISTENING.search(line)
        url = match.group(1) if match else None
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"store.server did not start within {timeout_s} s: {''.join(lines)}")
    child = ServerChild(process, url, lines)
    try:
        yield child
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stderr.close()


def executions_by_key(sqlite_path: Path) -> Counter[str]:
    """external_id -> number of executions carrying it, read from a store no child holds open."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(sqlite_path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    return Counter(e.external_id for e in store.get_executions())


def executions_by_pod(sqlite_path: Path) -> Counter[str]:
    """kfp_pod_name -> number of executions naming that pod."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(sqlite_path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    return Counter(e.custom_properties["kfp_pod_name"].string_value for e in store.get_executions())
