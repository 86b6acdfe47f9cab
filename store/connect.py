"""Connecting to ML Metadata (MLMD) by URL.

Accepted store URLs (see :func:`parse_store_url`):

* ``sqlite:///relative/path.db`` -- embedded SQLite, path relative to the working directory;
* ``sqlite:////absolute/path.db`` -- embedded SQLite, absolute path;
* ``sqlite://:memory:`` -- embedded in-memory SQLite (gone when the store is dropped);
* ``mysql://user[:password]@host[:port]/database`` -- embedded library talking to MySQL or
  MariaDB (port 3306 by default; user and password are URL-decoded);
* ``grpc://host:port`` / ``grpcs://host:port`` -- an MLMD gRPC server, plain or TLS.

Thread safety: an *embedded* store (SQLite or MySQL through the C++ library) owns a single
database connection and must not be used by several threads at once. A gRPC store
is a thin client over a thread-safe gRPC channel and may be shared freely.

Note also that the embedded library keeps the Python GIL while it runs, so a slow embedded
call (e.g. MySQL not answering) stalls every thread of the process for its duration.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

import grpc
from ml_metadata import errors as mlmd_errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.metadata_store.pywrap.metadata_store_extension import (
    metadata_store as metadata_store_serialized,
)
from ml_metadata.proto import (
    metadata_store_pb2,
    metadata_store_service_pb2,
    metadata_store_service_pb2_grpc,
)

from reconcile.redact import redact
from store.errors import (
    StoreConfigError,
    StoreError,
    StoreMissingError,
    StoreSchemaDamagedError,
    StoreSchemaMismatchError,
    StoreUnavailableError,
)
from store.mysql_schema import DEFAULT_LOCK_TIMEOUT_S, mismatch_error, mysql_schema_ready
from store.native_log import NativeOutput, native_stderr_captured
from store.schema import library_schema_version, read_sqlite_schema

__all__ = [
    "ACCEPTED_FORMS",
    "StoreConfigError",
    "StoreError",
    "StoreKind",
    "StoreMissingError",
    "StoreSchemaDamagedError",
    "StoreSchemaMismatchError",
    "StoreTarget",
    "StoreUnavailableError",
    "client_config",
    "connection_config",
    "create_embedded_handle",
    "host_port",
    "open_store",
    "parse_store_url",
]

log = logging.getLogger(__name__)

StoreKind = Literal["sqlite", "mysql", "grpc"]

MEMORY = ":memory:"
DEFAULT_MYSQL_PORT = 3306

ACCEPTED_FORMS = (
    "sqlite:///relative.db, sqlite:////absolute.db, sqlite://:memory:, "
    "mysql://user[:password]@host[:port]/database, grpc://host:port, grpcs://host:port"
)


def _one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace so that ``text`` fits on one log line, cut at ``limit`` chars."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _host_for_url(host: str) -> str:
    """Bracket an IPv6 literal so that it can be followed by ``:port``."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]"
    except ValueError:
        pass
    return host


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal host in brackets (``[::1]:8080``)."""
    return f"{_host_for_url(host)}:{port}"


@dataclass(frozen=True)
class StoreTarget:
    """Where an MLMD store lives, parsed from a store URL.

    ``kind`` decides which fields are used: ``sqlite`` uses ``path`` (``":memory:"`` for an
    in-memory database); ``mysql`` uses ``host``, ``port``, ``user``, ``password`` and
    ``database``; ``grpc`` uses ``host``, ``port`` and ``tls``.
    """

    kind: StoreKind
    path: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    tls: bool = False

    @property
    def embedded(self) -> bool:
        """True for stores run in-process by the C++ library (SQLite, MySQL)."""
        return self.kind != "grpc"

    def _url(self, password: str | None) -> str:
        if self.kind == "sqlite":
            return "sqlite://" + MEMORY if self.path == MEMORY else f"sqlite:///{self.path}"
        host = _host_for_url(self.host or "")
        if self.kind == "grpc":
            return f"{'grpcs' if self.tls else 'grpc'}://{host}:{self.port}"
        cred = quote(self.user or "", safe="")
        if password is not None:
            cred += ":" + password
        return f"mysql://{cred}@{host}:{self.port}/{quote(self.database or '', safe='')}"

    def url(self) -> str:
        """The URL of this target, password included (do not log it; see :meth:`redacted`)."""
        return self._url(None if self.password is None else quote(self.password, safe=""))

    def redacted(self) -> str:
        """The URL of this target with any password replaced by ``***``, safe for logs."""
        return self._url(None if not self.password else "***")

    def __str__(self) -> str:
        return self.redacted()


def _bad(url: str, reason: str) -> StoreConfigError:
    # The URL did not parse, so its password cannot be found by parsing: redact() finds a
    # credential in any shape (e.g. `mysql//user:pw@host`, the scheme's ':' missing).
    return StoreConfigError(
        _one_line(
            f"invalid MLMD store URL {redact(url)!r}: {reason}; accepted: {ACCEPTED_FORMS}",
            limit=1000,
        )
    )


def _parse_sqlite(url: str, rest: str) -> StoreTarget:
    if rest in (MEMORY, "/" + MEMORY):
        return StoreTarget(kind="sqlite", path=MEMORY)
    if not rest.startswith("/"):
        raise _bad(url, "a sqlite URL has no host: use sqlite:///relative.db or sqlite:////abs.db")
    if "?" in rest or "#" in rest:
        raise _bad(url, "a sqlite URL takes no query or fragment")
    path = rest[1:]
    if not path or path.endswith("/"):
        raise _bad(url, "the sqlite URL names no database file")
    return StoreTarget(kind="sqlite", path=path)


def _host_port(url: str, parts: Any, default_port: int | None) -> tuple[str, int]:
    try:
        port = parts.port
    except ValueError:
        raise _bad(url, "the port must be a number from 1 to 65535") from None
    host = parts.hostname
    if not host:
        raise _bad(url, "the host is missing")
    if port is None:
        if default_port is None:
            raise _bad(url, "the port is missing")
        port = default_port
    if not 0 < port < 65536:
        raise _bad(url, "the port must be a number from 1 to 65535")
    return host, port


def parse_store_url(url: str) -> StoreTarget:
    """Parse an MLMD store URL into a :class:`StoreTarget`.

    Raises :class:`StoreConfigError` with a one-line message naming the bad value and the
    accepted forms (:data:`ACCEPTED_FORMS`) for anything else. Passwords never appear in it.
    """
    if not isinstance(url, str) or not url.strip():
        raise _bad(str(url), "the URL is empty")
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise _bad(url, "it has no scheme")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _parse_sqlite(url, rest)
    if scheme not in ("mysql", "grpc", "grpcs"):
        raise _bad(url, f"unsupported scheme {scheme!r}")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise _bad(url, "query strings and fragments are not supported")
    if scheme == "mysql":
        host, port = _host_port(url, parts, DEFAULT_MYSQL_PORT)
        if not parts.username:
            raise _bad(url, "the MySQL user is missing (mysql://user[:password]@host/database)")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise _bad(url, "the MySQL database name is missing")
        if "/" in database:
            raise _bad(url, "the MySQL database name may not contain '/'")
        password = None if parts.password is None else unquote(parts.password)
        return StoreTarget(
            kind="mysql",
            host=host,
            port=port,
            user=unquote(parts.username),
            password=password,
            database=database,
        )
    host, port = _host_port(url, parts, None)
    if parts.username is not None or parts.password is not None:
        raise _bad(url, "a gRPC URL takes no user or password")
    if parts.path not in ("", "/"):
        raise _bad(url, "a gRPC URL takes no path")
    return StoreTarget(kind="grpc", host=host, port=port, tls=scheme == "grpcs")


def _as_target(url: str | StoreTarget) -> StoreTarget:
    return url if isinstance(url, StoreTarget) else parse_store_url(url)


def connection_config(target: StoreTarget, *, read_only: bool = False) -> metadata_store_pb2.ConnectionConfig:
    """Build the embedded-library ``ConnectionConfig`` for a SQLite or MySQL target.

    SQLite opens with ``READWRITE_OPENCREATE`` (``READONLY`` when ``read_only``; a relative
    path is made absolute); MySQL sets ``skip_db_creation`` only when ``read_only``, so a
    writer's library creates a missing database itself.
    """
    config = metadata_store_pb2.ConnectionConfig()
    if target.kind == "sqlite":
        modes = metadata_store_pb2.SqliteMetadataSourceConfig
        config.sqlite.connection_mode = modes.READONLY if read_only else modes.READWRITE_OPENCREATE
        if target.path != MEMORY:
            # An empty filename_uri is MLMD's in-memory database.
            config.sqlite.filename_uri = os.path.abspath(target.path or "")
    elif target.kind == "mysql":
        config.mysql.host = target.host or ""
        config.mysql.port = target.port or DEFAULT_MYSQL_PORT
        config.mysql.user = target.user or ""
        if target.password:
            config.mysql.password = target.password
        config.mysql.database = target.database or ""
        config.mysql.skip_db_creation = read_only
    else:
        raise StoreConfigError(f"{target.redacted()} is not an embedded store (sqlite or mysql)")
    return config


def _read_ca(ca_cert_path: str) -> str:
    try:
        pem = Path(ca_cert_path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StoreConfigError(_one_line(f"cannot read CA certificate {ca_cert_path!r}: {reason}")) from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise StoreConfigError(f"CA certificate {ca_cert_path!r} holds no PEM certificate")
    return pem


def client_config(
    target: StoreTarget,
    *,
    ca_cert_path: str | None = None,
    max_receive_message_length: int | None = None,
    call_timeout_s: float | None = None,
) -> metadata_store_pb2.MetadataStoreClientConfig:
    """Build the ``MetadataStoreClientConfig`` for a gRPC target.

    TLS (``grpcs://``) uses the PEM CA read from ``ca_cert_path`` if given, else the system
    roots. ``call_timeout_s`` becomes the deadline of every call made by the client.
    """
    if target.kind != "grpc":
        raise StoreConfigError(f"{target.redacted()} is not a gRPC store")
    config = metadata_store_pb2.MetadataStoreClientConfig()
    # MLMD joins host and port with ':' itself, so an IPv6 literal needs its brackets.
    config.host = _host_for_url(target.host or "")
    config.port = target.port or 0
    if target.tls:
        config.ssl_config.SetInParent()
        if ca_cert_path:
            config.ssl_config.custom_ca = _read_ca(ca_cert_path)
    elif ca_cert_path:
        log.warning("ignoring the CA certificate for %s: it does not use TLS", target.redacted())
    if max_receive_message_length is not None:
        if max_receive_message_length == 0 or max_receive_message_length < -1:
            raise StoreConfigError(
                f"max_receive_message_length must be positive (or -1 for no limit), "
                f"not {max_receive_message_length}"
            )
        config.channel_arguments.max_receive_message_length = max_receive_message_length
    if call_timeout_s is not None:
        config.client_timeout_sec = call_timeout_s
    return config


def _unavailable(target: StoreTarget, reason: object) -> StoreUnavailableError:
    return StoreUnavailableError(_one_line(f"cannot reach MLMD at {target.redacted()}: {reason}"))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _check_mysql(target: StoreTarget, timeout_s: float) -> None:
    """Fail fast, with a reason, unless a MySQL server greets us at host:port in time.

    The embedded library's own connect gives no reason on failure and can block the whole
    process (it keeps the GIL) for a long time, so read the server's greeting first: an
    error packet there (too many connections, host blocked) is reported as it is.
    """
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s) as sock:
            header = _recv_exact(sock, 4)
            if len(header) < 4:
                raise _unavailable(target, "the server closed the connection without a greeting")
            payload = _recv_exact(sock, min(int.from_bytes(header[:3], "little"), 4096))
    except TimeoutError:
        raise _unavailable(target, f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise _unavailable(target, exc.strerror or exc) from None
    if payload[:1] == b"\xff":
        message = payload[3:].decode("utf-8", "replace")
        if message.startswith("#"):
            message = message[6:]
        code = int.from_bytes(payload[1:3], "little")
        raise _unavailable(target, f"MySQL error {code}: {message}")
    if payload[:1] != b"\x0a":
        raise _unavailable(target, "the server at this address does not speak the MySQL protocol")


def _check_sqlite(target: StoreTarget, config: metadata_store_pb2.ConnectionConfig, read_only: bool) -> None:
    """Refuse, before the library sees it, a SQLite store it must not open or create.

    Read-only: the file must exist and hold an MLMD schema. Either way, an existing schema
    must be the library's version (it is never migrated). A writer gets the file's folder.
    """
    if target.path == MEMORY:
        if read_only:
            raise StoreMissingError(
                f"{target} is a new, empty store; a read-only command needs an existing one"
            )
        return
    path = Path(config.sqlite.filename_uri)
    if read_only and not path.is_file():
        raise StoreMissingError(
            f"the MLMD store {target} does not exist (no file {str(path)!r}); a read-only command "
            "never creates one (check the path)"
        )
    try:
        state = read_sqlite_schema(path, read_only=read_only)
    except (sqlite3.Error, OSError) as exc:
        raise _unavailable(target, f"cannot read {str(path)!r} as SQLite: {exc}") from None
    if state.complete and state.version != library_schema_version():
        raise mismatch_error(str(target), state.versions[0])
    if read_only and not state.complete:
        raise StoreMissingError(
            f"the file of {target} holds no (complete) MLMD schema; a read-only command never "
            "creates one (check the path)"
        )
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _unavailable(
                target, f"cannot create directory {str(path.parent)!r}: {exc.strerror or exc}"
            ) from None


def _embedded_reason(target: StoreTarget, exc: Exception, native: NativeOutput) -> str:
    text = _one_line(str(exc))
    if target.kind == "mysql" and "mysql_real_connect failed" in text:
        # The login worked over PyMySQL just before, so this is about MLMD's own client.
        if target.host == "localhost":
            return (
                "MLMD's MySQL client takes the host 'localhost' to mean a Unix socket, which it "
                "could not use; write 127.0.0.1 instead"
            )
        return (
            "MLMD's MySQL client could not log in although the same login works otherwise; the "
            "usual cause is a user whose authentication plugin is not mysql_native_password "
            f"(MLMD said: {_one_line(native.last_message(), 120) or text})"
        )
    return text or native.last_message() or type(exc).__name__


_Opened = TypeVar("_Opened")


def _open_embedded(
    target: StoreTarget,
    open_library: Callable[[metadata_store_pb2.ConnectionConfig], _Opened],
    *,
    read_only: bool,
    timeout_s: float,
    lock_timeout_s: float,
) -> _Opened:
    """Check the store as :func:`open_store` describes, then run ``open_library`` on its config.

    The library's native log lines are captured (see :mod:`store.native_log`); a MySQL open
    runs under the database's schema lock (see :mod:`store.mysql_schema`).
    """
    config = connection_config(target, read_only=read_only)
    if target.kind == "sqlite":
        _check_sqlite(target, config, read_only)
        return _call_library(target, open_library, config)
    _check_mysql(target, timeout_s)
    with mysql_schema_ready(target, read_only=read_only, timeout_s=timeout_s, lock_timeout_s=lock_timeout_s):
        return _call_library(target, open_library, config)


def _call_library(
    target: StoreTarget,
    open_library: Callable[[metadata_store_pb2.ConnectionConfig], _Opened],
    config: metadata_store_pb2.ConnectionConfig,
) -> _Opened:
    failure: Exception | None = None
    with native_stderr_captured() as native:
        try:
            return open_library(config)
        except (RuntimeError, mlmd_errors.StatusError) as exc:
            failure = exc
    # The native lines are only complete once the capture has ended.
    assert failure is not None
    raise _unavailable(target, _embedded_reason(target, failure, native))


def _serialized_handle(config: metadata_store_pb2.ConnectionConfig) -> Any:
    migration = metadata_store_pb2.MigrationOptions()  # never upgrades a schema
    return metadata_store_serialized.CreateMetadataStore(
        config.SerializeToString(), migration.SerializeToString()
    )


def create_embedded_handle(
    target: str | StoreTarget,
    *,
    timeout_s: float = 10.0,
    read_only: bool = False,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> Any:
    """Open the raw embedded-library handle (``metadata_store_serialized.MetadataStore``).

    This is what :class:`ml_metadata.metadata_store.MetadataStore` holds internally; the
    gRPC server forwards serialized requests to it. Not thread-safe: serialise its use.
    Checks and errors as :func:`open_store`.
    """
    return _open_embedded(
        _as_target(target),
        _serialized_handle,
        read_only=read_only,
        timeout_s=timeout_s,
        lock_timeout_s=lock_timeout_s,
    )


# MLMD's own client keeps gRPC's default reconnect backoff, which grows to 120 s: after a
# long MLMD outage the client would stay "unavailable" for minutes after MLMD is back.
RECONNECT_BACKOFF_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 3000),
]


def _channel(config: metadata_store_pb2.MetadataStoreClientConfig) -> grpc.Channel:
    """The channel MLMD's client would build for ``config``, plus a short reconnect backoff."""
    address = f"{config.host}:{config.port}"
    options = list(RECONNECT_BACKOFF_OPTIONS)
    arguments = config.channel_arguments
    if arguments.HasField("max_receive_message_length"):
        options.append(("grpc.max_receive_message_length", arguments.max_receive_message_length))
    if arguments.HasField("http2_max_ping_strikes"):
        options.append(("grpc.http2.max_ping_strikes", arguments.http2_max_ping_strikes))
    if not config.HasField("ssl_config"):
        return grpc.insecure_channel(address, options=options)
    ssl = config.ssl_config
    credentials = grpc.ssl_channel_credentials(
        ssl.custom_ca.encode("ascii") if ssl.HasField("custom_ca") else None,
        ssl.client_key.encode("ascii") if ssl.HasField("client_key") else None,
        ssl.server_cert.encode("ascii") if ssl.HasField("server_cert") else None,
    )
    return grpc.secure_channel(address, credentials, options=options)


class _GrpcMetadataStore(metadata_store.MetadataStore):
    """MLMD's gRPC client, its channel built by :func:`_channel` (quick reconnects)."""

    def _get_channel(self, config: metadata_store_pb2.MetadataStoreClientConfig) -> grpc.Channel:
        # Same contract as the base class: it also records the per-call deadline.
        if config.HasField("client_timeout_sec"):
            self._grpc_timeout_sec = config.client_timeout_sec
        return _channel(config)


def _probe_grpc(
    target: StoreTarget, config: metadata_store_pb2.MetadataStoreClientConfig, timeout_s: float
) -> None:
    """Make one cheap call with a deadline; gRPC channels otherwise connect lazily."""
    with _channel(config) as channel:
        stub = metadata_store_service_pb2_grpc.MetadataStoreServiceStub(channel)
        try:
            stub.GetContextTypes(metadata_store_service_pb2.GetContextTypesRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                reason = f"no answer within {timeout_s:g} s"
            else:
                details = exc.details() if hasattr(exc, "details") else str(exc)
                name = code.name if code is not None else "ERROR"
                reason = f"{name}: {details}"
            raise _unavailable(target, reason) from None


def open_store(
    url: str | StoreTarget,
    *,
    read_only: bool = False,
    ca_cert_path: str | None = None,
    max_receive_message_length: int | None = None,
    timeout_s: float = 10.0,
    call_timeout_s: float | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> metadata_store.MetadataStore:
    """Open and probe the MLMD store at ``url``.

    * ``sqlite``: opens the file, creating it and its parent directories if needed;
    * ``mysql``: checks the server answers on TCP within ``timeout_s``, logs in, and opens
      under the database's schema lock (waiting up to ``lock_timeout_s`` for another process
      creating the schema); the library creates a missing database and schema, and a
      schema whose creation was interrupted is created again once no other connection
      uses the database (:mod:`store.mysql_schema`);
    * ``grpc``/``grpcs``: builds the client (TLS with the optional CA in ``ca_cert_path``,
      ``max_receive_message_length`` on the channel, ``call_timeout_s`` as the deadline of
      every later call) and makes one ``GetContextTypes`` call with a ``timeout_s`` deadline.

    ``read_only`` (for verify and dry runs) never creates a file, folder, database or schema:
    a store that does not exist raises :class:`StoreMissingError`. A SQLite file is then
    opened read-only. It changes nothing for gRPC.

    An embedded store must hold the library's own schema version: the reconciler never
    migrates a database it did not create (:class:`StoreSchemaMismatchError`). The library's
    native log lines are logged at DEBUG, not printed.

    Raises :class:`StoreConfigError` for a bad URL or option, and
    :class:`StoreUnavailableError` or one of its subclasses (one line, e.g.
    ``cannot reach MLMD at grpc://127.0.0.1:1: UNAVAILABLE: ...``) when the store cannot be
    reached or opened. An embedded store is not thread-safe (see the module's docstring).
    """
    target = _as_target(url)
    if target.embedded:
        return _open_embedded(
            target,
            metadata_store.MetadataStore,
            read_only=read_only,
            timeout_s=timeout_s,
            lock_timeout_s=lock_timeout_s,
        )
    grpc_config = client_config(
        target,
        ca_cert_path=ca_cert_path,
        max_receive_message_length=max_receive_message_length,
        call_timeout_s=call_timeout_s,
    )
    _probe_grpc(target, grpc_config, timeout_s)
    return _GrpcMetadataStore(grpc_config)

