"""Fixtures of the deploy tests: the stand-in cluster (as tests/controller uses)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.apiserver import ApiServer
from store.server import MetadataServer
from tests.controller.harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    api = ApiServer(bookmark_interval=0.5)
    api.start()
    mlmd = MetadataServer(f"sqlite:///{tmp_path}/mlmd.sqlite")
    mlmd.start()
    try:
        yield Cluster(api, mlmd, api.write_kubeconfig(tmp_path / "kubeconfig"), tmp_path)
    finally:
        mlmd.stop()
        api.stop()
