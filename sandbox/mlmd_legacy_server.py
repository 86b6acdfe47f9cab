"""An MLMD gRPC server over an OLD ml-metadata library, answering as that version's server does.

This file runs in the interpreter of a venv that holds one old ml-metadata release and its
grpcio (Python 3.8 for 1.0.0 and 1.5.0), made by ``sandbox/mlmd_venvs.py``; it imports
nothing of this project. It serves ``ml_metadata.MetadataStoreService`` as described by that
release's own service descriptor, each method calling the library's serialized function of
the same name -- the call MLMD's own C++ server makes -- so:

* an RPC the release does not declare (``PutLineageSubgraph`` before 1.8.0,
  ``Get*ByExternalIds`` before 1.11.0) answers ``UNIMPLEMENTED``, from gRPC itself;
* a field the release does not know (``external_id``, ``filter_query``) is parsed as an
  unknown proto2 field and ignored, without an error;
* errors are the library's own status codes and messages.

Usage (normally through ``sandbox/mlmd_legacy.py``)::

    <venv>/bin/python mlmd_legacy_server.py [--host H] [--port P] [--upgrade-schema] < config.pb

The store's ``ml_metadata.ConnectionConfig`` arrives serialized on stdin (so no password is
ever on a command line); a field the release does not know is ignored there too. Once
serving, one line goes to stdout: ``serving ml-metadata <version> on <host>:<port>``. SIGTERM
or SIGINT stop it (exit 0); a store that cannot be opened exits 1 with one line on stderr.

Like the real server, it never changes the schema of a store that exists, unless told to
(``--upgrade-schema``: ``MigrationOptions.enable_upgrade_migration``, what KFP's upgrade
does when it moves from MLMD 1.5.0 to 1.14.0 and the database from schema 7 to 10).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from typing import Any, Callable

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import (
    metadata_store as serialized_api,
)
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

try:  # the release's own version string, for the "serving" line
    from ml_metadata.version import __version__ as LIBRARY_VERSION
except ImportError:  # pragma: no cover - every 1.x release has it
    LIBRARY_VERSION = "unknown"

SERVICE = metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"]
STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


class LegacyService:
    """Every method of this release's ``MetadataStoreService``, over one library handle.

    The library's handle is not thread-safe, so calls are serialised with a lock, as the
    project's own server (``store/server.py``) does.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._lock = threading.Lock()

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        """One raw-bytes handler per RPC declared by this release's service descriptor."""
        return {method.name: self._handler(method.name) for method in SERVICE.methods}

    def _handler(self, name: str) -> grpc.RpcMethodHandler:
        call: Callable[[Any, bytes], tuple[bytes, bytes, int]] | None = getattr(serialized_api, name, None)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            if call is None:
                # Declared in the proto but not in this release's Python extension
                # (GetLineageGraph in 1.5.0): say so instead of failing obscurely.
                context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{name} is not implemented by ml-metadata {LIBRARY_VERSION}",
                )
            with self._lock:
                response, message, code = call(self._handle, request)
            if code != 0:
                status = STATUS_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
                context.abort(status, message.decode("utf-8", "replace"))
            return response

        # No (de)serializers: requests reach the library exactly as the client sent them.
        return grpc.unary_unary_rpc_method_handler(handle)


def open_library_store(config_bytes: bytes, upgrade_schema: bool = False) -> Any:
    """Open (creating if needed) the store described by a serialized ``ConnectionConfig``.

    An older schema is migrated to this release's only with ``upgrade_schema``.
    """
    config = metadata_store_pb2.ConnectionConfig()
    config.ParseFromString(config_bytes)
    migration = metadata_store_pb2.MigrationOptions(enable_upgrade_migration=upgrade_schema)
    return serialized_api.CreateMetadataStore(config.SerializeToString(), migration.SerializeToString())


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line: where to listen."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--upgrade-schema", action="store_true", help="migrate an older schema to this release's"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; the exit code."""
    args = parse_arguments(argv)
    try:
        handle = open_library_store(sys.stdin.buffer.read(), args.upgrade_schema)
    except Exception as exc:  # the library raises RuntimeError or its own StatusError
        print(f"error: cannot open the store: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    service = LegacyService(handle)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        handlers=[grpc.method_handlers_generic_handler(SERVICE.full_name, service.method_handlers())],
        options=[
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    address = f"{host}:{args.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        print(f"error: cannot listen on {address}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    server.start()
    print(f"serving ml-metadata {LIBRARY_VERSION} on {host}:{port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
