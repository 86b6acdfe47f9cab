"""store.connect: URL parsing, opening each backend, failing fast and clearly."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from store.connect import (
    ACCEPTED_FORMS,
    StoreConfigError,
    StoreError,
    StoreTarget,
    StoreUnavailableError,
    client_config,
    connection_config,
    open_store,
    parse_store_url,
)

# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/path.db", StoreTarget(kind="sqlite", path="rel/path.db")),
        ("sqlite:////abs/path.db", StoreTarget(kind="sqlite", path="/abs/path.db")),
        ("sqlite://:memory:", StoreTarget(kind="sqlite", path=":memory:")),
        ("sqlite:///:memory:", StoreTarget(kind="sqlite", path=":memory:")),
        (
            "mysql://user:pass@db.example:3307/mlmd",
            StoreTarget(
                kind="mysql",
                host="db.example",
                port=3307,
                user="user",
                password="pass",
                database="mlmd",
            ),
        ),
        (
            "mysql://root@127.0.0.1/metadb",
            StoreTarget(kind="mysql", host="127.0.0.1", port=3306, user="root", database="metadb"),
        ),
        (
            "mysql://us%40er:p%40ss%3Aw%2Fd@h/my%20db",
            StoreTarget(
                kind="mysql", host="h", port=3306, user="us@er", password="p@ss:w/d", database="my db"
            ),
        ),
        (
            "grpc://metadata-grpc-service:8080",
            StoreTarget(kind="grpc", host="metadata-grpc-service", port=8080),
        ),
        ("grpcs://mlmd.example:443", StoreTarget(kind="grpc", host="mlmd.example", port=443, tls=True)),
        ("grpc://[::1]:8080", StoreTarget(kind="grpc", host="::1", port=8080)),
        ("GRPC://h:1/", StoreTarget(kind="grpc", host="h", port=1)),
        ("  grpc://h:1  ", StoreTarget(kind="grpc", host="h", port=1)),
    ],
)
def test_parse_accepted_forms(url: str, expected: StoreTarget) -> None:
    target = parse_store_url(url)
    assert target == expected
    assert target.password == expected.password
    # The URL of a parsed target parses back to the same target.
    assert parse_store_url(target.url()) == target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("just-a-path.db", "no scheme"),
        ("postgres://u@h/db", "unsupported scheme 'postgres'"),
        ("http://h:80", "unsupported scheme 'http'"),
        ("sqlite://host/file.db", "no host"),
        ("sqlite:///", "no database file"),
        ("sqlite:///dir/", "no database file"),
        ("sqlite:///x.db?mode=ro", "no query"),
        ("mysql://h/db", "user is missing"),
        ("mysql://u@/db", "host is missing"),
        ("mysql://u@h", "database name is missing"),
        ("mysql://u@h/", "database name is missing"),
        ("mysql://u@h/a/b", "may not contain '/'"),
        ("mysql://u@h:notaport/db", "port must be a number"),
        ("mysql://u@h:70000/db", "port must be a number"),
        ("mysql://u@h/db?ssl=true", "query strings"),
        ("grpc://h", "port is missing"),
        ("grpc://:8080", "host is missing"),
        ("grpc://h:0", "port must be a number"),
        ("grpc://h:8080/path", "no path"),
        ("grpc://u:p@h:8080", "no user or password"),
    ],
)
def test_parse_rejects_with_one_clear_line(url: str, reason: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        parse_store_url(url)
    message = str(info.value)
    assert "\n" not in message
    assert reason in message
    assert repr(url.strip()).replace(":p@", ":***@") in message  # names the bad value
    assert ACCEPTED_FORMS in message  # and what is accepted
    assert isinstance(info.value, StoreError)


def test_parse_error_hides_password() -> None:
    with pytest.raises(StoreConfigError) as info:
        parse_store_url("mysql://root:s3cr3t@h:99999/db")
    assert "s3cr3t" not in str(info.value)
    assert "root:***@h" in str(info.value)


def test_redacted_hides_password_only() -> None:
    target = parse_store_url("mysql://root:s3cr%2Ft@db:3306/mlmd")
    assert target.redacted() == "mysql://root:***@db:3306/mlmd"
    assert str(target) == target.redacted()
    assert "s3cr" not in repr(target)
    assert target.url() == "mysql://root:s3cr%2Ft@db:3306/mlmd"
    assert parse_store_url("mysql://root@db/mlmd").redacted() == "mysql://root@db:3306/mlmd"
    assert parse_store_url("sqlite:////a/b.db").redacted() == "sqlite:////a/b.db"
    assert parse_store_url("sqlite:///a/b.db").redacted() == "sqlite:///a/b.db"
    assert parse_store_url("grpcs://h:443").redacted() == "grpcs://h:443"


def test_connection_config_fields(tmp_path: Path) -> None:
    config = connection_config(parse_store_url(f"sqlite:///{tmp_path}/x.db"))
    assert config.sqlite.filename_uri == f"{tmp_path}/x.db"
    assert config.sqlite.connection_mode == metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    config = connection_config(parse_store_url("mysql://u:p@h:3307/db"))
    assert (config.mysql.host, config.mysql.port, config.mysql.user) == ("h", 3307, "u")
    assert (config.mysql.password, config.mysql.database) == ("p", "db")
    assert not config.mysql.skip_db_creation
    with pytest.raises(StoreConfigError):
        connection_config(parse_store_url("grpc://h:1"))


def test_client_config_fields(tmp_path: Path) -> None:
    config = client_config(parse_store_url("grpc://[::1]:8080"), max_receive_message_length=1 << 26)
    assert (config.host, config.port) == ("[::1]", 8080)
    assert not config.HasField("ssl_config")
    assert config.channel_arguments.max_receive_message_length == 1 << 26
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    config = client_config(parse_store_url("grpcs://h:443"), ca_cert_path=str(ca))
    assert config.ssl_config.custom_ca.startswith("-----BEGIN CERTIFICATE-----")
    assert client_config(parse_store_url("grpcs://h:443")).HasField("ssl_config")
    with pytest.raises(StoreConfigError, match="cannot read CA certificate"):
        client_config(parse_store_url("grpcs://h:443"), ca_cert_path=str(tmp_path / "none.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(StoreConfigError, match="no PEM certificate"):
        client_config(parse_store_url("grpcs://h:443"), ca_cert_path=str(tmp_path / "junk.pem"))
    with pytest.raises(StoreConfigError, match="max_receive_message_length"):
        client_config(parse_store_url("grpc://h:1"), max_receive_message_length=0)


# ---------------------------------------------------------------------------- opening


def _round_trip(store: metadata_store.MetadataStore) -> None:
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
    [context_id] = store.put_contexts(
        [metadata_store_pb2.Context(type_id=type_id, name="wf-1", external_id="run:wf-1")]
    )
    assert store.get_context_type("KfpRun").id == type_id
    [context] = store.get_contexts_by_external_ids(["run:wf-1"])
    assert (context.id, context.name) == (context_id, "wf-1")


def test_open_store_round_trip_on_each_backend(store_url: str) -> None:
    store = open_store(store_url)
    assert store.get_context_types() == []  # each test gets a fresh, empty store
    _round_trip(store)
    # A second connection sees the same data.
    assert open_store(store_url).get_context_type("KfpRun").name == "KfpRun"


def test_open_store_accepts_a_target(sqlite_url: str) -> None:
    _round_trip(open_store(parse_store_url(sqlite_url)))


def test_sqlite_creates_parent_dirs_and_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///deep/er/metadata.db")
    _round_trip(store)
    assert (tmp_path / "deep" / "er" / "metadata.db").is_file()


def test_sqlite_in_memory() -> None:
    store = open_store("sqlite://:memory:")
    _round_trip(store)
    assert open_store("sqlite://:memory:").get_context_types() == []  # each one is private


def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailableError, match=r"^cannot reach MLMD at sqlite:///"):
        open_store(f"sqlite:///{tmp_path}/file/sub/metadata.db")


def test_mysql_database_is_created_by_mlmd(mysql_url: str, mariadb_server) -> None:
    database = parse_store_url(mysql_url).database
    assert not mariadb_server.execute("SHOW DATABASES LIKE %s", (database,))
    open_store(mysql_url)
    assert mariadb_server.execute("SHOW DATABASES LIKE %s", (database,))


def _assert_quick_one_line(exc: StoreError, started: float, prefix: str, limit_s: float) -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith(prefix), message
    assert len(message) < 400
    assert time.monotonic() - started < limit_s


def test_unreachable_mysql_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        open_store("mysql://root:pw@127.0.0.1:1/nodb", timeout_s=2)
    _assert_quick_one_line(info.value, started, "cannot reach MLMD at mysql://root:***@127.0.0.1:1/nodb: ", 2)
    assert "pw" not in str(info.value).replace("***", "")


def test_mysql_bad_password_is_unavailable(mariadb_server) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        open_store("mysql://root:wrong-pw@127.0.0.1:3306/kfpmr_never", timeout_s=2)
    _assert_quick_one_line(info.value, started, "cannot reach MLMD at mysql://root:***@", 5)
    assert "wrong-pw" not in str(info.value)
    assert "password" in str(info.value)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_silent_mysql_times_out(silent_listener: int) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"mysql://root@127.0.0.1:{silent_listener}/db", timeout_s=1)
    _assert_quick_one_line(info.value, started, "cannot reach MLMD at mysql://", 3)
    assert "no answer within 1 s" in str(info.value)


def test_non_mysql_server_is_rejected(grpc_server) -> None:
    # A gRPC server does not greet like MySQL does: wait for the timeout, say so.
    with pytest.raises(StoreUnavailableError):
        open_store(f"mysql://root@127.0.0.1:{grpc_server.port}/db", timeout_s=1)


def test_unreachable_grpc_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        open_store("grpc://127.0.0.1:1", timeout_s=3)
    _assert_quick_one_line(info.value, started, "cannot reach MLMD at grpc://127.0.0.1:1: UNAVAILABLE", 3)


def test_silent_grpc_times_out(silent_listener: int) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        open_store(f"grpc://127.0.0.1:{silent_listener}", timeout_s=1)
    _assert_quick_one_line(
        info.value, started, f"cannot reach MLMD at grpc://127.0.0.1:{silent_listener}: ", 3
    )
    assert "within 1 s" in str(info.value) or "timed out" in str(info.value)


def test_grpc_call_timeout_is_applied(grpc_url: str) -> None:
    store = open_store(grpc_url, call_timeout_s=7.5)
    assert store._grpc_timeout_sec == 7.5
    _round_trip(store)

