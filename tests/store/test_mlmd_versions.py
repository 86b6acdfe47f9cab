"""The old MLMD servers answer as each release's real server does (sandbox/mlmd_legacy*.py).

Each test runs against 1.0.0 (KFP 1.7), 1.5.0 (KFP 1.8, 2.0.0-2.0.1), 1.14.0 (KFP 2.0.2 on)
and the current library, through the current library's gRPC client -- the skew a reconciler
meets in the field.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
from ml_metadata.proto import metadata_store_service_pb2, metadata_store_service_pb2_grpc

from sandbox.mlmd_legacy import CURRENT, SERVER_VERSIONS
from sandbox.mlmd_venvs import LEGACY_VERSIONS
from store.connect import open_store, parse_store_url
from store.schema import library_schema_version
from tests.conftest import MariaDB, VersionedMlmd

WITHOUT_EXTERNAL_IDS = {"1.0.0", "1.5.0"}


def _has_external_ids(version: str) -> bool:
    return version not in WITHOUT_EXTERNAL_IDS


def _types(store: metadata_store.MetadataStore) -> tuple[int, int, int]:
    return (
        store.put_context_type(pb.ContextType(name="KfpRun")),
        store.put_execution_type(pb.ExecutionType(name="Step")),
        store.put_artifact_type(pb.ArtifactType(name="Blob")),
    )


def test_servers_report_their_own_release(versioned_mlmd: VersionedMlmd) -> None:
    """Each server is the release it claims: the schema it creates is that release's."""
    open_store(versioned_mlmd.url).get_context_types()
    path = parse_store_url(versioned_mlmd.store_url).path
    assert path is not None
    with contextlib.closing(sqlite3.connect(path)) as db:
        [(schema,)] = db.execute("SELECT schema_version FROM MLMDEnv").fetchall()
    if versioned_mlmd.version == CURRENT:
        assert schema == library_schema_version() == 10
    else:
        assert schema == LEGACY_VERSIONS[versioned_mlmd.version].schema_version


@pytest.mark.parametrize(
    "method",
    [
        "PutLineageSubgraph",
        "GetArtifactsByExternalIds",
        "GetExecutionsByExternalIds",
        "GetContextsByExternalIds",
    ],
)
def test_newer_rpcs_are_unimplemented_before_1_11(versioned_mlmd: VersionedMlmd, method: str) -> None:
    store = open_store(versioned_mlmd.url)
    calls: dict[str, Callable[[], object]] = {
        "PutLineageSubgraph": lambda: store.put_lineage_subgraph([], [], [], []),
        "GetArtifactsByExternalIds": lambda: store.get_artifacts_by_external_ids(["a"]),
        "GetExecutionsByExternalIds": lambda: store.get_executions_by_external_ids(["e"]),
        "GetContextsByExternalIds": lambda: store.get_contexts_by_external_ids(["c"]),
    }
    if _has_external_ids(versioned_mlmd.version):
        with contextlib.suppress(errors.NotFoundError):  # 1.14 says NOT_FOUND for unknown keys
            calls[method]()
    else:
        with pytest.raises(errors.UnimplementedError):
            calls[method]()


def test_unimplemented_is_the_grpc_status(versioned_mlmd: VersionedMlmd) -> None:
    """A raw stub sees gRPC's UNIMPLEMENTED, as any client of the real server would."""
    address = versioned_mlmd.url.removeprefix("grpc://")
    with grpc.insecure_channel(address) as channel:
        stub = metadata_store_service_pb2_grpc.MetadataStoreServiceStub(channel)
        request = metadata_store_service_pb2.GetContextsByExternalIdsRequest(external_ids=["x"])
        try:
            stub.GetContextsByExternalIds(request, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
    if _has_external_ids(versioned_mlmd.version):
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)
    else:
        assert code == grpc.StatusCode.UNIMPLEMENTED


def test_external_id_is_silently_dropped_before_1_11(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    context_type, execution_type, artifact_type = _types(store)
    [context_id] = store.put_contexts([pb.Context(type_id=context_type, name="wf", external_id="run:wf")])
    [execution_id] = store.put_executions([pb.Execution(type_id=execution_type, external_id="step:1")])
    [artifact_id] = store.put_artifacts(
        [pb.Artifact(type_id=artifact_type, uri="s3://b/a", external_id="art:1")]
    )
    [context] = store.get_contexts_by_id([context_id])
    [execution] = store.get_executions_by_id([execution_id])
    [artifact] = store.get_artifacts_by_id([artifact_id])
    stored = (context.external_id, execution.external_id, artifact.external_id)
    if _has_external_ids(versioned_mlmd.version):
        assert stored == ("run:wf", "step:1", "art:1")
    else:
        assert stored == ("", "", "")  # written without an error, kept without the key


def test_filter_query_is_ignored_by_1_0_and_honoured_from_1_5(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    context_type, _, _ = _types(store)
    store.put_contexts([pb.Context(type_id=context_type, name=name) for name in ("a", "b", "c")])
    found = store.get_contexts(list_options=metadata_store.ListOptions(filter_query="name = 'b'"))
    names = sorted(c.name for c in found)
    if versioned_mlmd.version == "1.0.0":
        assert names == ["a", "b", "c"]  # the unknown field was ignored: an unfiltered list
    else:
        assert names == ["b"]


def test_same_execution_name_is_already_exists_everywhere(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    _, execution_type, _ = _types(store)
    store.put_executions([pb.Execution(type_id=execution_type, name="wf-1-step")])
    with pytest.raises(errors.AlreadyExistsError):
        store.put_executions([pb.Execution(type_id=execution_type, name="wf-1-step")])
    # Another type may use the name.
    other = store.put_execution_type(pb.ExecutionType(name="OtherStep"))
    store.put_executions([pb.Execution(type_id=other, name="wf-1-step")])
    assert len(store.get_executions()) == 2


def test_put_execution_with_contexts_artifacts_and_events_everywhere(versioned_mlmd: VersionedMlmd) -> None:
    store = open_store(versioned_mlmd.url)
    context_type, execution_type, artifact_type = _types(store)
    execution = pb.Execution(
        type_id=execution_type,
        name="wf-1-train",
        last_known_state=pb.Execution.COMPLETE,
        custom_properties={"pod_name": pb.Value(string_value="wf-1-train-123")},
    )
    artifact = pb.Artifact(type_id=artifact_type, uri="minio://mlpipeline/artifacts/model.tgz")
    event = pb.Event(type=pb.Event.OUTPUT)
    event.path.steps.add().key = "model"
    context = pb.Context(type_id=context_type, name="wf-1")
    execution_id, [artifact_id], [context_id] = store.put_execution(
        execution, [(artifact, event)], [context], reuse_context_if_already_exist=True
    )
    # A second step of the same run reuses the run context by name.
    second = pb.Execution(type_id=execution_type, name="wf-1-eval")
    input_event = pb.Event(type=pb.Event.INPUT, artifact_id=artifact_id)
    second_id, _, [same_context] = store.put_execution(
        second, [(pb.Artifact(id=artifact_id, type_id=artifact_type, uri=artifact.uri), input_event)],
        [pb.Context(type_id=context_type, name="wf-1")], reuse_context_if_already_exist=True,
    )
    assert same_context == context_id
    assert {e.id for e in store.get_executions_by_context(context_id)} == {execution_id, second_id}
    assert [a.id for a in store.get_artifacts_by_context(context_id)] == [artifact_id]
    events = store.get_events_by_artifact_ids([artifact_id])
    assert sorted((e.execution_id, e.type) for e in events) == sorted(
        [(execution_id, pb.Event.OUTPUT), (second_id, pb.Event.INPUT)]
    )
    [stored] = store.get_executions_by_id([execution_id])
    assert stored.custom_properties["pod_name"].string_value == "wf-1-train-123"
    assert stored.last_known_state == pb.Execution.COMPLETE


@pytest.mark.parametrize("version", [v for v in SERVER_VERSIONS if v != CURRENT])
def test_old_servers_over_mysql_create_their_own_schema(
    version: str, mlmd_server_factory: Callable[..., VersionedMlmd], mariadb_server: MariaDB
) -> None:
    served = mlmd_server_factory(version, "mysql")
    store = open_store(served.url)
    context_type, _, _ = _types(store)
    store.put_contexts([pb.Context(type_id=context_type, name="wf")])
    database = parse_store_url(served.store_url).database
    [(schema,)] = mariadb_server.execute(f"SELECT schema_version FROM `{database}`.MLMDEnv")
    assert schema == LEGACY_VERSIONS[version].schema_version
    [(name,)] = mariadb_server.execute(f"SELECT name FROM `{database}`.Context")
    assert name == "wf"


def test_a_missing_venv_fails_loudly(tmp_path: Path) -> None:
    from sandbox.mlmd_legacy import LegacyMlmdServer
    from sandbox.mlmd_venvs import MlmdVenvError

    server = LegacyMlmdServer("1.5.0", f"sqlite:///{tmp_path}/m.sqlite", venv_root=tmp_path / "no-venvs")
    with pytest.raises(MlmdVenvError, match=r"ml-metadata 1\.5\.0 venv is not installed.*mlmd_venvs install"):
        server.start()
    assert not server.running


def test_a_missing_interpreter_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.mlmd_venvs import MlmdVenvError, ensure_venv

    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(MlmdVenvError) as info:
        ensure_venv("1.0.0", tmp_path / "venvs")
    assert str(info.value).startswith("no Python 3.8 interpreter found")
    assert "pyenv install 3.8" in str(info.value)
    assert not (tmp_path / "venvs" / "1.0.0").exists()
