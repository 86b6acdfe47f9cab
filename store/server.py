"""An MLMD ``MetadataStoreService`` gRPC server backed by the embedded MLMD library.

Every RPC of ``ml_metadata.MetadataStoreService`` is forwarded, as raw serialized bytes, to
the embedded library's ``metadata_store_serialized.<Method>(handle, request_bytes)`` -- the
same call :class:`ml_metadata.metadata_store.MetadataStore` makes for an embedded store --
and a non-zero MLMD status becomes the gRPC status of the same number with the library's
message as details. So a ``MetadataStore(MetadataStoreClientConfig)`` client sees the very
exceptions (``AlreadyExistsError``, ``NotFoundError``, ...) it would see embedded.

Run it with ``python -m store.server --store URL [--host H] [--port N]
[--tls-cert F --tls-key F]``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import (
    metadata_store as metadata_store_serialized,
)
from ml_metadata.proto import metadata_store_service_pb2

from store.connect import (
    StoreConfigError,
    StoreError,
    StoreTarget,
    create_embedded_handle,
    host_port,
    parse_store_url,
)

__all__ = ["SERVICE_NAME", "MetadataServer", "main", "service_method_names"]

log = logging.getLogger(__name__)

_SERVICE = metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"]
SERVICE_NAME: str = _SERVICE.full_name
_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}
# No message size limit: MLMD requests (put_lineage_subgraph) and answers can be large.
_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # Fail clearly when the port is taken instead of silently sharing it.
    ("grpc.so_reuseport", 0),
]


def service_method_names() -> list[str]:
    """The names of every RPC method of ``ml_metadata.MetadataStoreService``."""
    return [method.name for method in _SERVICE.methods]


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StoreConfigError(f"cannot read TLS {what} {path!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise StoreConfigError(f"TLS {what} {path!r} is not a PEM file")
    return data


class MetadataServer:
    """An MLMD gRPC server over an embedded SQLite or MySQL store.

    ``start()`` opens the store and binds ``host:port`` (``port=0`` picks a free port, which
    is kept for later restarts); ``stop()`` stops serving and closes the store, so that a
    later ``start()`` reopens it (and sees e.g. a database restored in between). Calls to
    the embedded handle are serialised with a lock. An in-memory SQLite store loses its data
    on every stop.
    """

    def __init__(
        self,
        store_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert_path: str | None = None,
        tls_key_path: str | None = None,
        max_workers: int = 8,
    ) -> None:
        """Configure the server; raises :class:`StoreConfigError` for a bad argument."""
        target = parse_store_url(store_url)
        if not target.embedded:
            raise StoreConfigError(
                f"the MLMD server needs an embedded store (sqlite or mysql), not {target.redacted()}"
            )
        if (tls_cert_path is None) != (tls_key_path is None):
            raise StoreConfigError("TLS needs both a certificate and a key file")
        if not 0 <= port < 65536:
            raise StoreConfigError(f"port must be from 0 to 65535, not {port}")
        if max_workers < 1:
            raise StoreConfigError(f"max_workers must be at least 1, not {max_workers}")
        self._target: StoreTarget = target
        self._host = host
        self._port = port
        self._tls_cert_path = tls_cert_path
        self._tls_key_path = tls_key_path
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._handle: Any = None
        self._server: grpc.Server | None = None
        self._handler = grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {name: self._method_handler(name) for name in service_method_names()},
        )

    @property
    def store_target(self) -> StoreTarget:
        """The embedded store this server serves."""
        return self._target

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS."""
        return self._tls_cert_path is not None

    @property
    def host(self) -> str:
        """The host the server binds."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (0 before the first start with ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        """``grpc://host:port`` (``grpcs://`` with TLS) for clients."""
        target = StoreTarget(kind="grpc", host=self._host, port=self._port, tls=self.tls)
        return target.url()

    def call_counts(self) -> dict[str, int]:
        """RPCs served so far by method name (e.g. ``PutLineageSubgraph``), for tests and benchmarks."""
        with self._lock:
            return dict(self._calls)

    def write_calls(self) -> int:
        """How many served RPCs were writes (``Put*``)."""
        return sum(n for name, n in self.call_counts().items() if name.startswith("Put"))

    def reset_counts(self) -> None:
        """Forget the call counts."""
        with self._lock:
            self._calls.clear()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def _method_handler(self, name: str) -> grpc.RpcMethodHandler:
        cc_method: Callable[[Any, bytes], tuple[bytes, bytes, int]] | None = getattr(
            metadata_store_serialized, name, None
        )

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if cc_method is None:
                context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{name} is not supported by the embedded MLMD library",
                )
            with self._lock:
                if self._handle is None:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the MLMD server is stopping")
                self._calls[name] += 1
                response, message, code = cc_method(self._handle, request)
            if code != 0:
                status = _STATUS_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
                context.abort(status, message.decode("utf-8", "replace"))
            return response

        # No (de)serializers: requests and responses stay raw bytes, never reparsed.
        return grpc.unary_unary_rpc_method_handler(handle)

    def start(self) -> int:
        """Open the store, bind and start serving; returns the bound port.

        Raises :class:`StoreConfigError` (bad TLS files) or
        :class:`~store.connect.StoreUnavailableError` (store cannot be opened, port taken).
        """
        if self._server is not None:
            return self._port
        credentials = None
        if self._tls_cert_path is not None and self._tls_key_path is not None:
            credentials = grpc.ssl_server_credentials(
                [
                    (
                        _read_pem(self._tls_key_path, "key"),
                        _read_pem(self._tls_cert_path, "certificate"),
                    )
                ]
            )
        handle = create_embedded_handle(self._target)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="mlmd-server"),
            handlers=[self._handler],
            options=_SERVER_OPTIONS,
        )
        address = host_port(self._host, self._port)
        try:
            if credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            port = 0
            log.debug("binding %s failed: %s", address, exc)
        if not port:
            server.stop(None)
            raise StoreError(f"cannot listen on {address}: address in use or not available")
        with self._lock:
            self._handle = handle
        server.start()
        self._server = server
        self._port = port
        log.debug("MLMD server for %s started on %s", self._target, self.url)
        return port

    def stop(self, grace: float | None = None) -> None:
        """Stop serving (letting calls in flight finish within ``grace`` s) and close the store."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        with self._lock:
            self._handle = None

    def __enter__(self) -> MetadataServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MetadataServer({self._target.redacted()!r}, url={self.url!r})"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m store.server",
        description="Serve MLMD's MetadataStoreService over an embedded SQLite or MySQL store.",
    )
    parser.add_argument("--store", required=True, help="sqlite:///file.db or mysql://... URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument("--tls-cert", help="PEM server certificate (chain); needs --tls-key")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--max-workers", type=int, default=8, help="server threads (8)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to drain on stop (5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; returns the process exit code.

    Exit codes: 0 after a clean stop, 1 when the store cannot be opened or the port bound,
    2 for bad arguments. Errors are one line on stderr.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    prog = "python -m store.server"
    try:
        server = MetadataServer(
            args.store,
            host=args.host,
            port=args.port,
            tls_cert_path=args.tls_cert,
            tls_key_path=args.tls_key,
            max_workers=args.max_workers,
        )
    except StoreConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server.start()
    except StoreConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    log.info("MLMD gRPC server listening on %s (store %s)", server.url, server.store_target)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(args.grace)
    log.info("MLMD gRPC server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
