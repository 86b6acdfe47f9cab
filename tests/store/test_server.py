"""store.server: the project's MLMD gRPC server over the embedded library."""

from __future__ import annotations

import datetime
import ipaddress
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

from store.connect import (
    StoreConfigError,
    StoreError,
    StoreUnavailableError,
    open_store,
)
from store.server import SERVICE_NAME, MetadataServer, service_method_names

REPO = Path(__file__).resolve().parents[2]
_NOT_IN_EMBEDDED_LIBRARY = {"GetParentContextsByContexts", "GetChildrenContextsByContexts", "GetLineageGraph"}

# ---------------------------------------------------------------------------- helpers


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except errors.StatusError as exc:
        return type(exc).__name__, None


def _scenario(store: metadata_store.MetadataStore) -> list[tuple[str, Any]]:
    """A series of calls, most of which fail in MLMD-specific ways."""
    pb = metadata_store_pb2
    type_id = store.put_context_type(pb.ContextType(name="KfpRun"))
    exec_type = store.put_execution_type(pb.ExecutionType(name="Step"))
    store.put_contexts([pb.Context(type_id=type_id, name="wf-1", external_id="run:wf-1")])
    return [
        # duplicate context name
        _outcome(lambda: store.put_contexts([pb.Context(type_id=type_id, name="wf-1")])),
        # duplicate external_id
        _outcome(lambda: store.put_contexts([pb.Context(type_id=type_id, name="x", external_id="run:wf-1")])),
        # unknown type name
        _outcome(lambda: store.get_context_type("NoSuchType")),
        # unknown type id
        _outcome(lambda: store.put_contexts([pb.Context(type_id=99999, name="y")])),
        # a context without a name
        _outcome(lambda: store.put_contexts([pb.Context(type_id=type_id)])),
        # incompatible type redefinition
        _outcome(
            lambda: store.put_execution_type(
                pb.ExecutionType(name="Step", properties={"p": pb.STRING}), can_add_fields=False
            )
        ),
        # bad filter query
        _outcome(
            lambda: store.get_contexts(
                list_options=metadata_store.ListOptions(filter_query="name === nonsense")
            )
        ),
        # successful reads, compared by value
        ("ok", [c.name for c in store.get_contexts_by_external_ids(["run:wf-1", "missing"])]),
        ("ok", store.get_execution_type("Step").id == exec_type),
    ]


def _make_pki(directory: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost signed by it."""
    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("kfpmr test CA"))
        .issuer_name(name("kfpmr test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _make_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------- service


def test_every_service_method_is_served(grpc_server: MetadataServer) -> None:
    names = service_method_names()
    assert len(names) >= 50 and "PutExecution" in names and "GetContextTypes" in names
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        for method in names:
            call = channel.unary_unary(f"/{SERVICE_NAME}/{method}")
            try:
                call(b"", timeout=5)
            except grpc.RpcError as exc:
                # An empty request may be invalid, but every method reaches the library,
                # except the three the embedded library of MLMD 1.17 does not have.
                assert "Method not found" not in (exc.details() or ""), method
                if method in _NOT_IN_EMBEDDED_LIBRARY:
                    assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, method
                else:
                    assert exc.code() in (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.NOT_FOUND,
                    ), (method, exc.code(), exc.details())


def test_unsupported_method_is_unimplemented(grpc_server: MetadataServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        call = channel.unary_unary(f"/{SERVICE_NAME}/GetLineageGraph")
        with pytest.raises(grpc.RpcError) as info:
            call(metadata_store_service_pb2.GetLineageGraphRequest().SerializeToString(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "GetLineageGraph" in info.value.details()


def test_grpc_errors_match_embedded(sqlite_url: str, grpc_url: str) -> None:
    embedded = _scenario(open_store(sqlite_url))
    remote = _scenario(open_store(grpc_url))
    assert remote == embedded
    kinds = [kind for kind, _ in embedded]
    assert "AlreadyExistsError" in kinds and "NotFoundError" in kinds
    assert "InvalidArgumentError" in kinds


def test_error_message_is_passed_through(grpc_url: str) -> None:
    store = open_store(grpc_url)
    with pytest.raises(errors.NotFoundError, match="NoSuchType"):
        store.get_context_type("NoSuchType")


def test_mysql_backed_server(mysql_url: str) -> None:
    with MetadataServer(mysql_url) as server:
        assert server.url.startswith("grpc://127.0.0.1:")
        store = open_store(server.url)
        type_id = store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
        store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name="wf")])
        with pytest.raises(errors.AlreadyExistsError):
            store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name="wf")])
    assert open_store(mysql_url).get_contexts()[0].name == "wf"


def test_large_batches_over_grpc(grpc_url: str) -> None:
    store = open_store(grpc_url, max_receive_message_length=64 << 20)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Step"))
    executions = [
        metadata_store_pb2.Execution(
            type_id=type_id,
            external_id=f"exec:{i}",
            custom_properties={"pod_name": metadata_store_pb2.Value(string_value="p" * 200)},
        )
        for i in range(2000)
    ]
    ids = store.put_executions(executions)
    assert len(ids) == 2000
    found = store.get_executions_by_external_ids([f"exec:{i}" for i in range(2000)])
    assert len(found) == 2000


def test_concurrent_clients(grpc_url: str) -> None:
    store = open_store(grpc_url)
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            client = open_store(grpc_url)
            for i in range(20):
                client.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=f"c-{worker}-{i}")])
        except BaseException as exc:  # asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(store.get_contexts()) == 160


# ---------------------------------------------------------------------------- lifecycle


def test_stop_and_start_on_the_same_port(tmp_path: Path) -> None:
    server = MetadataServer(f"sqlite:///{tmp_path}/m.db")
    port = server.start()
    assert port > 0 and server.port == port and server.running
    store = open_store(server.url)
    store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
    server.stop()
    assert not server.running
    with pytest.raises(errors.UnavailableError):
        store.get_context_types()
    with pytest.raises(StoreUnavailableError):
        open_store(server.url, timeout_s=1)
    time.sleep(0.5)
    assert server.start() == port
    # The existing client reconnects by itself, quickly, and sees the data kept on disk.
    deadline = time.monotonic() + 10
    while True:
        try:
            assert [t.name for t in store.get_context_types()] == ["KfpRun"]
            break
        except errors.UnavailableError:
            assert time.monotonic() < deadline, "the client did not reconnect within 10 s"
            time.sleep(0.1)
    server.stop()
    server.stop()  # idempotent


def test_context_manager_and_url(tmp_path: Path) -> None:
    with MetadataServer(f"sqlite:///{tmp_path}/m.db", port=0) as server:
        assert server.url == f"grpc://127.0.0.1:{server.port}"
        assert server.start() == server.port  # starting twice is harmless
        open_store(server.url).get_context_types()
    assert not server.running


def test_port_in_use_is_a_clear_error(grpc_server: MetadataServer, tmp_path: Path) -> None:
    other = MetadataServer(f"sqlite:///{tmp_path}/other.db", port=grpc_server.port)
    with pytest.raises(StoreError, match=re.escape(f"cannot listen on 127.0.0.1:{grpc_server.port}")):
        other.start()
    assert not other.running


def test_bad_server_arguments(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="embedded store"):
        MetadataServer("grpc://127.0.0.1:9")
    with pytest.raises(StoreConfigError, match="invalid MLMD store URL"):
        MetadataServer("nonsense")
    with pytest.raises(StoreConfigError, match="both a certificate and a key"):
        MetadataServer(f"sqlite:///{tmp_path}/m.db", tls_cert_path="x.pem")
    with pytest.raises(StoreConfigError, match="port"):
        MetadataServer(f"sqlite:///{tmp_path}/m.db", port=70000)


def test_unreachable_store_fails_start() -> None:
    server = MetadataServer("mysql://root@127.0.0.1:1/db")
    with pytest.raises(
        StoreUnavailableError, match=re.escape("cannot reach MLMD at mysql://root@127.0.0.1:1/db")
    ):
        server.start()
    assert not server.running


# ---------------------------------------------------------------------------- TLS


def test_tls_with_custom_ca(pki: dict[str, Path], tmp_path: Path) -> None:
    with MetadataServer(
        f"sqlite:///{tmp_path}/m.db", tls_cert_path=str(pki["cert"]), tls_key_path=str(pki["key"])
    ) as server:
        assert server.url == f"grpcs://127.0.0.1:{server.port}"
        store = open_store(server.url, ca_cert_path=str(pki["ca"]))
        store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
        assert [t.name for t in store.get_context_types()] == ["KfpRun"]
        with pytest.raises(errors.NotFoundError):
            store.get_context_type("nope")

        # No CA: the system roots do not trust the server; clean one-line failure.
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            open_store(server.url, timeout_s=3)
        message = str(info.value)
        assert message.startswith(f"cannot reach MLMD at grpcs://127.0.0.1:{server.port}: ")
        assert "\n" not in message
        assert time.monotonic() - started < 4

        # Plain gRPC against the TLS port fails cleanly too.
        with pytest.raises(StoreUnavailableError):
            open_store(f"grpc://127.0.0.1:{server.port}", timeout_s=2)


def test_tls_bad_files(tmp_path: Path, pki: dict[str, Path]) -> None:
    (tmp_path / "junk.pem").write_text("junk")
    server = MetadataServer(
        f"sqlite:///{tmp_path}/m.db", tls_cert_path=str(tmp_path / "junk.pem"), tls_key_path=str(pki["key"])
    )
    with pytest.raises(StoreConfigError, match="not a PEM file"):
        server.start()
    server = MetadataServer(
        f"sqlite:///{tmp_path}/m.db", tls_cert_path=str(tmp_path / "none.pem"), tls_key_path=str(pki["key"])
    )
    with pytest.raises(StoreConfigError, match="cannot read TLS certificate"):
        server.start()


# ---------------------------------------------------------------------------- CLI


class _Process:
    """A ``python -m store.server`` subprocess whose stderr is read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "store.server", *args],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text: str, timeout_s: float = 30) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout_s} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the process ended before printing {text!r}: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def finish(self, timeout_s: float = 30) -> tuple[int, list[str]]:
        code = self.proc.wait(timeout=timeout_s)
        while (line := self.lines.get(timeout=timeout_s)) is not None:
            self.seen.append(line)
        return code, self.seen

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn() -> Iterator[Callable[..., _Process]]:
    started: list[_Process] = []

    def run(*args: str) -> _Process:
        process = _Process(*args)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_signal(spawn: Callable[..., _Process], tmp_path: Path, signum: int) -> None:
    process = spawn("--store", f"sqlite:///{tmp_path}/cli.db", "--port", "0")
    line = process.wait_for("listening on ")
    url = line.split("listening on ", 1)[1].split()[0]
    assert url.startswith("grpc://127.0.0.1:")
    store = open_store(url)
    store.put_context_type(metadata_store_pb2.ContextType(name="KfpRun"))
    with pytest.raises(errors.AlreadyExistsError):
        type_id = store.get_context_type("KfpRun").id
        store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name="a")])
        store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name="a")])
    process.proc.send_signal(signum)
    code, lines = process.finish()
    assert code == 0, lines
    assert not any("Traceback" in line for line in lines), lines
    assert (tmp_path / "cli.db").is_file()


def test_cli_tls(spawn: Callable[..., _Process], tmp_path: Path, pki: dict[str, Path]) -> None:
    process = spawn(
        "--store",
        f"sqlite:///{tmp_path}/cli.db",
        "--tls-cert",
        str(pki["cert"]),
        "--tls-key",
        str(pki["key"]),
    )
    url = process.wait_for("listening on ").split("listening on ", 1)[1].split()[0]
    assert url.startswith("grpcs://127.0.0.1:")
    assert open_store(url, ca_cert_path=str(pki["ca"])).get_context_types() == []
    process.proc.terminate()
    assert process.finish()[0] == 0


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        ([], 2, "--store"),
        (["--store", "nonsense"], 2, "invalid MLMD store URL"),
        (["--store", "grpc://127.0.0.1:1"], 2, "embedded store"),
        (["--store", "sqlite:///x.db", "--port", "abc"], 2, "invalid int value"),
        (["--store", "sqlite:///x.db", "--tls-cert", "a.pem"], 2, "both a certificate and a key"),
        (["--store", "sqlite:///x.db", "--tls-cert", "none.pem", "--tls-key", "none.key"], 2, "cannot read"),
        (["--store", "mysql://root@127.0.0.1:1/db"], 1, "cannot reach MLMD at mysql://root@127.0.0.1:1/db"),
    ],
)
def test_cli_errors_are_one_line(
    spawn: Callable[..., _Process], tmp_path: Path, args: list[str], code: int, text: str
) -> None:
    args = [a.replace("sqlite:///x.db", f"sqlite:///{tmp_path}/x.db") for a in args]
    process = spawn(*args)
    exit_code, lines = process.finish()
    lines = [line for line in lines if line.strip()]
    assert exit_code == code, lines
    assert len(lines) == 1, lines
    assert text in lines[0]
    assert lines[0].startswith("python -m store.server: error: ")
