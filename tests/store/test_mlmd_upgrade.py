"""KFP clusters between MLMD versions, over the old servers themselves (gRPC).

* Switching from KFP 1.8's metadata-writer (MLMD 1.5.0; 1.0.0 on KFP 1.7): one pass adopts
  what that writer left -- its conventions, `minio:///<key>` URIs included -- creating
  nothing twice, correcting the URIs and labelling every pod with the records it already had.
* KFP's upgrade from 1.8 to 2.0.2+: MLMD 1.14.0 migrates the 1.5.0 database in place (schema
  7 -> 10); the records the reconciler wrote with their keys in names are then found and get
  their external_id, with no record created, lost or relinked and no label changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile_pass import Chunk, run_pass
from controller.report import PassReport
from reconcile.options import ReconcileOptions
from sandbox.mlmd_legacy import LegacyServerError, MlmdServer, versioned_server
from store.connect import open_store
from store.metadata import MetadataStore
from tests.conftest import OLD_MLMD_VERSIONS, VersionedMlmd
from tests.mlmd_snapshot import counts, ui_view
from tests.podfactory import chain, pods_of
from tests.store.test_converge import apply_patches
from tests.upstream_writer import write_like_upstream

KFP = "pipelines.kubeflow.org/"
IDS = (KFP + "metadata_execution_id", KFP + "metadata_context_id")


def run(store: Any, pods: list[dict[str, Any]]) -> PassReport:
    return run_pass([Chunk(pods)], MetadataStore.over(store), ReconcileOptions())


def record_like_upstream(store: Any, pods: list[dict[str, Any]], **kw: Any) -> None:
    """What metadata-writer wrote for these pods, and the labels it patched onto them."""
    for pod in pods:
        patch = write_like_upstream(store, pod, **kw)
        pod["metadata"]["labels"].update(patch["labels"])
        pod["metadata"]["annotations"].update(patch["annotations"])


def ids_on(pods: list[dict[str, Any]]) -> dict[str, tuple[str | None, ...]]:
    return {p["metadata"]["name"]: tuple(p["metadata"]["labels"].get(k) for k in IDS) for p in pods}


def output_ids(pods: list[dict[str, Any]]) -> dict[str, list[int]]:
    annotation = KFP + "metadata_output_artifact_ids"
    return {
        p["metadata"]["name"]: [o["id"] for o in json.loads(p["metadata"]["annotations"][annotation])]
        for p in pods
    }


def all_records(store: Any) -> list[Any]:
    return [*store.get_contexts(), *store.get_executions(), *store.get_artifacts()]


@pytest.mark.parametrize("version", OLD_MLMD_VERSIONS)
def test_a_store_metadata_writer_left_is_adopted_in_one_pass(
    version: str, mlmd_server_factory: Callable[..., VersionedMlmd], tmp_path: Path
) -> None:
    store = open_store(mlmd_server_factory(version).url)
    pods = pods_of(chain("wf-up", 3), profile="3.3") + pods_of(chain("wf-up2", 2), profile="3.3")
    record_like_upstream(store, pods, key_only_bucket="")  # KFP 1.8.5's minio:///<key>
    before, labels, outputs = counts(store), ids_on(pods), output_ids(pods)
    assert {a.uri.split("/")[2] for a in store.get_artifacts()} == {""}  # an empty bucket

    report = run(store, pods)
    assert report.errors == []
    assert report.actions["execution.create"] == 0 and report.actions["artifact.create"] == 0
    assert report.actions["execution.adopt"] == 5 and report.actions["artifact.adopt"] == 10
    assert counts(store) == before
    assert {a.uri.split("/")[2] for a in store.get_artifacts()} == {"mlpipeline"}  # corrected
    apply_patches(pods, report)
    assert ids_on(pods) == labels and output_ids(pods) == outputs  # the records they named
    assert all(p["metadata"]["labels"][KFP + "metadata_written"] == "true" for p in pods)

    again = run(store, pods)
    assert sum(again.actions.values()) == 0 and again.transactions == 0 and again.pod_patches == []
    # What KFP's UI shows is what a first record by the reconciler would show.
    fresh = open_store(f"sqlite:///{tmp_path}/fresh.sqlite")
    run(fresh, pods_of(chain("wf-up", 3), profile="3.3") + pods_of(chain("wf-up2", 2), profile="3.3"))
    assert ui_view(store) == ui_view(fresh)


@pytest.fixture(params=["sqlite", "mysql"])
def kfp18_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where KFP 1.8's MLMD keeps its database: a SQLite file, or a MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/metadb.sqlite"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
def servers() -> Iterator[Callable[..., MlmdServer]]:
    """Start old servers over one store, one after the other; stopped after the test."""
    started: list[MlmdServer] = []

    def start(version: str, store_url: str, **kw: Any) -> MlmdServer:
        server = versioned_server(version, store_url, **kw)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def test_the_upgrade_to_mlmd_1_14_keys_every_record_and_changes_nothing_else(
    kfp18_store_url: str, servers: Callable[..., MlmdServer]
) -> None:
    old = servers("1.5.0", kfp18_store_url)
    store = open_store(old.url)
    ours = pods_of(chain("wf-ours", 3), profile="3.3")
    upstream = pods_of(chain("wf-up", 3), profile="3.3")
    record_like_upstream(store, upstream, key_only_bucket="")
    running = pods_of(chain("wf-late", 2), profile="3.3", phase="Running")  # outputs come later
    pods = ours + upstream + running
    apply_patches(pods, run(store, pods))  # the legacy mode: keys in names, upstream adopted
    assert sum(run(store, pods).actions.values()) == 0
    labels, before, view = ids_on(pods), counts(store), ui_view(store)
    events = len(store.get_events_by_execution_ids([e.id for e in store.get_executions()]))
    assert not any(r.external_id for r in all_records(store))
    old.stop()

    # KFP 2.0.2's MLMD server over the same database, migrating it as KFP's upgrade does.
    store = open_store(servers("1.14.0", kfp18_store_url, upgrade_schema=True).url)
    assert MetadataStore.over(store).capabilities.external_ids
    report = run(store, pods)
    assert report.errors == []
    assert not [kind for kind in report.actions if kind.endswith(".create") or kind.startswith("event.")]
    assert report.actions["execution.adopt"] == 8 and report.actions["context.adopt"] == 3
    assert report.actions["artifact.adopt"] == 12  # 6 ours, 6 the upstream writer's
    assert all(r.external_id for r in all_records(store))  # every record keyed
    assert counts(store) == before and ui_view(store) == view
    assert len(store.get_events_by_execution_ids([e.id for e in store.get_executions()])) == events
    apply_patches(pods, report)
    assert ids_on(pods) == labels  # the same records, so the same ids
    again = run(store, pods)
    assert sum(again.actions.values()) == 0 and again.pod_patches == []

    # The step that was running finishes on the new server: its outputs and its consumer's
    # input link are written as on any 1.14 server, next to the adopted records.
    finished = pods_of(chain("wf-late", 2), profile="3.3")
    for now, earlier in zip(finished, running, strict=True):
        now["metadata"]["labels"].update({k: v for k, v in earlier["metadata"]["labels"].items() if k in IDS})
    done = run(store, ours + upstream + finished)
    assert done.errors == [] and done.actions["artifact.create"] == 4 and done.actions["event.input"] == 1
    assert all(r.external_id for r in all_records(store))


def test_mlmd_1_14_refuses_a_1_5_database_unless_told_to_migrate(
    tmp_path: Path, servers: Callable[..., MlmdServer]
) -> None:
    url = f"sqlite:///{tmp_path}/metadb.sqlite"
    old = servers("1.5.0", url)
    open_store(old.url).get_context_types()
    old.stop()
    with pytest.raises(LegacyServerError, match=r"version 7 is older than library version 10"):
        servers("1.14.0", url)
