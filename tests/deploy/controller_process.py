"""`kfp-metadata-reconciler run` as a real process, configured by environment only, as the
Deployment runs it: start it, find its health port, fetch its endpoints, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.controller.harness import wait_until

# Names a test process may carry that would change the controller's settings.
FOREIGN = ("KUBECONFIG", "HOSTNAME", "NAMESPACE_TO_WATCH", "POD_NAME", "POD_NAMESPACE", "CA_CERT_PATH")


@dataclass
class ControllerProcess:
    """A running controller; ``stop()`` sends SIGTERM and returns what it wrote to stderr."""

    proc: subprocess.Popen[str]
    port: int
    stderr: str = field(default="")

    def get(self, path: str) -> tuple[int, str]:
        """``(status, body)`` of ``GET http://127.0.0.1:<port><path>``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr = err
        return err


def start_controller(env: dict[str, str], workdir: Path) -> ControllerProcess:
    """Start ``python -m controller.cli run`` with ``env`` over a clean environment (no
    ``KFPMR_*`` or KFP names of the test process leak in); waits for its health port."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KFPMR_", "METADATA_", "GRPC_")) and k not in FOREIGN
    }
    ready = workdir / f"ready-{len(list(workdir.glob('ready-*')))}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", "--ready-file", str(ready)],
        env={**base, **env},
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (ready.exists() and ready.read_text().strip()) or proc.poll() is not None,
            30,
            "the controller",
        )
    except AssertionError:
        proc.kill()
        raise
    if proc.poll() is not None:
        _, err = proc.communicate()
        raise AssertionError(f"the controller exited with {proc.returncode}:\n{err[-3000:]}")
    return ControllerProcess(proc, int(ready.read_text()))
