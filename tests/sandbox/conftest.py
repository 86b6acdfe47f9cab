"""Fixtures for the sandbox tests: a running API emulator and real clients for it.

* ``api`` -- a started :class:`sandbox.apiserver.ApiServer` (fast bookmarks), stopped after;
* ``kubeconfig`` -- an admin kubeconfig file for ``api``;
* ``api_client`` / ``v1`` / ``custom`` / ``coord`` -- the official ``kubernetes`` client
  configured from that kubeconfig (no global configuration is touched);
* ``kubectl`` -- runs the ``kubectl`` binary against ``api``; fails (never skips) when
  ``kubectl`` is not on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from sandbox.apiserver import ApiServer

KubectlRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> Path:
    """An admin kubeconfig pointing at ``api``."""
    return api.write_kubeconfig(tmp_path / "kubeconfig")


def make_client(path: Path) -> client.ApiClient:
    """A ``kubernetes`` ApiClient built from one kubeconfig file."""
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """The official client configured from ``kubeconfig``."""
    c = make_client(kubeconfig)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def v1(api_client: client.ApiClient) -> client.CoreV1Api:
    """CoreV1Api against the emulator."""
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    """CustomObjectsApi against the emulator."""
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def coord(api_client: client.ApiClient) -> client.CoordinationV1Api:
    """CoordinationV1Api against the emulator."""
    return client.CoordinationV1Api(api_client)


def pod(name: str, namespace: str = "default", labels: dict[str, str] | None = None,
        **extra: Any) -> dict[str, Any]:
    """A minimal pod manifest."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "main", "image": "python:3.9"}]},
        "status": {"phase": "Running"},
    }
    body.update(extra)
    return body


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> KubectlRunner:
    """Run ``kubectl --kubeconfig <api> ARGS...``; returns the CompletedProcess."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not on PATH (install the Debian package kubernetes-client)",
                    pytrace=False)

    def run(*args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "kcache"),
             *args],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc

    return run
