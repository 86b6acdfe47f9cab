"""A Kubernetes API emulator speaking the real REST protocol over HTTP/1.1.

``ApiServer`` serves an :class:`~sandbox.objectstore.ObjectStore` on
127.0.0.1 so that the official ``kubernetes`` Python client and ``kubectl``
work unchanged: discovery, get/list (pagination, selectors), watch (resume,
bookmarks, 410 Expired, timeouts), create, update with resourceVersion
preconditions, merge / strategic-merge / JSON patches and delete, for the
resources in :data:`sandbox.cluster.RESOURCES`.

Every answer is content-negotiated from the ``Accept`` header as the real
server does it (:mod:`sandbox.negotiation`): the stored objects, metadata only
(``as=PartialObjectMetadata`` / ``as=PartialObjectMetadataList``, on get, list,
watch and the answers to writes), or kubectl's ``as=Table``; 406 NotAcceptable
when nothing offered is served. Writes are recorded in ``metadata.managedFields``
under ``?fieldManager=`` or the User-Agent's first word (:mod:`sandbox.managedfields`).

It also offers, from Python and over ``/_sandbox/...`` admin endpoints:
request counting, traffic counting (requests and body bytes per verb,
resource and view: ``/_sandbox/traffic``), fault injection (failures,
latency, hangs, cut watches, compaction, stop/start on the same port) and
optional RBAC enforcement.

Example::

    with ApiServer() as api:
        api.write_kubeconfig("/tmp/kc")
        kubernetes.config.load_kube_config(config_file="/tmp/kc")
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from sandbox.cluster import RESOURCES, ClusterError
from sandbox.faults import FaultInjector, HangHandle, RequestInfo
from sandbox.managedfields import manager_from_user_agent
from sandbox.negotiation import Representation, mismatch, negotiate, not_acceptable
from sandbox.objectstore import (
    CUSTOM_GROUPS,
    ObjectStore,
    Watcher,
    WatchEvent,
    dumps,
    partial_object,
    status_body,
)
from sandbox.rbac import Authorizer
from sandbox.tables import table
from sandbox.traffic import RequestKind, Served, TrafficMeter

__all__ = ["ADMIN_TOKEN", "ApiServer"]

ADMIN_TOKEN = "sandbox-admin-token"
ADMIN_USER = "sandbox-admin"

_SHORT_NAMES: dict[str, list[str]] = {
    "pods": ["po"],
    "events": ["ev"],
    "namespaces": ["ns"],
    "configmaps": ["cm"],
    "workflows": ["wf"],
    "workflowtaskresults": [],
    "leases": [],
}
_SUBRESOURCES: dict[str, list[str]] = {"pods": ["status"], "workflows": ["status"]}
_ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_SMALL_ANSWER = 256 * 1024  # answers up to this size go out with their head in one write

_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}


class _Route:
    """A parsed resource URL."""

    __slots__ = ("group", "name", "namespace", "resource", "subresource", "version", "watch_path")

    def __init__(self) -> None:
        self.group = ""
        self.version = ""
        self.resource = ""
        self.namespace: str | None = None
        self.name: str | None = None
        self.subresource = ""
        self.watch_path = False


def _parse_route(path: str) -> _Route | None:
    parts = [p for p in path.split("/") if p]
    r = _Route()
    if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
        r.version, rest = "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        r.group, r.version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if rest and rest[0] == "watch":
        r.watch_path = True
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        r.namespace = rest[1]
        rest = rest[2:]
    if not rest or len(rest) > 3:
        return None
    r.resource = rest[0]
    r.name = rest[1] if len(rest) > 1 else None
    r.subresource = rest[2] if len(rest) > 2 else ""
    return r


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer  # type: ignore[assignment]
    traffic_kind: RequestKind | None = None  # what this request's body bytes count towards

    # silence the default stderr access log
    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm holds the body until the client's delayed ACK (~40 ms a request).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.api._track_conn(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.api._track_conn(self.connection, False)

    def do_GET(self) -> None:
        self.server.api._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.api._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.api._handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.api._handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.api._handle(self, "DELETE")

    def send_bytes(
        self,
        code: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.traffic_kind is not None:
            self.server.api.traffic_meter.sent(self.traffic_kind, len(body))
        if self.command != "HEAD" and len(body) <= _SMALL_ANSWER:
            # Head and body in one write: one segment for a small answer instead of two.
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)  # a list page (megabytes): not copied into the head


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], api: ApiServer) -> None:
        self.api = api
        super().__init__(addr, _Handler)


class ApiServer:
    """The HTTP Kubernetes API emulator.

    Args:
        store: the object store to serve (a new one by default).
        host: address to bind (127.0.0.1).
        port: port to bind; 0 picks a free one (kept across :meth:`stop`/:meth:`start`).
        bookmark_interval: seconds between BOOKMARK events on watches that
            asked for them.
        default_watch_timeout: how long a watch without ``timeoutSeconds`` lasts.
    """

    def __init__(
        self,
        store: ObjectStore | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
    ) -> None:
        self.store = store if store is not None else ObjectStore()
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.faults = FaultInjector()
        self.rbac = Authorizer()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._conns: set[socket.socket] = set()
        self._watchers: set[Watcher] = set()
        self._tokens: dict[str, str] = {ADMIN_TOKEN: ADMIN_USER}
        self._watches_started = 0
        self._nonresource: collections.Counter[str] = collections.Counter()
        self.traffic_meter = TrafficMeter()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._httpd is not None

    def start(self) -> ApiServer:
        """Bind (on the same port as before, if any) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        deadline = time.monotonic() + 10
        while True:
            try:
                httpd = _HTTPServer((self.host, self.port), self)
                break
            except OSError:
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"apiserver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the listener, cut watches and open connections.

        The store (and so all data) is kept; :meth:`start` serves it again on
        the same port.
        """
        httpd = self._httpd
        if httpd is None:
            return
        self._httpd = None
        httpd.shutdown()
        httpd.server_close()
        self.cut_watches()
        self.faults.release()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, stay down for ``downtime`` seconds, start again on the same port."""
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        self.start()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ kubeconfig
    def token_for(self, user: str | None) -> str:
        """The bearer token identifying ``user`` (admin, bypassing RBAC, if None)."""
        if user is None:
            return ADMIN_TOKEN
        token = "sandbox." + base64.urlsafe_b64encode(user.encode()).decode().rstrip("=")
        with self._lock:
            self._tokens[token] = user
        return token

    def kubeconfig(self, user: str | None = None, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig dict pointing at this server (plain http, bearer token)."""
        uname = user or ADMIN_USER
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": uname, "user": {"token": self.token_for(user)}}],
            "contexts": [
                {"name": "sandbox", "context": {"cluster": "sandbox", "user": uname, "namespace": namespace}}
            ],
            "current-context": "sandbox",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, user: str | None = None, namespace: str = "default") -> Path:
        """Write a kubeconfig for ``user`` (e.g. ``system:serviceaccount:ns:sa``).

        ``user=None`` gives an admin identity that RBAC never restricts.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(self.kubeconfig(user, namespace), sort_keys=False))
        return p

    # ------------------------------------------------------------ counting
    def request_counts(self) -> dict[tuple[str, str], int]:
        """Requests served so far by (verb, resource), e.g. ``("patch", "pods")``.

        Subresources count as ``"pods/status"``; verbs are RBAC verbs
        (get/list/watch/create/update/patch/delete).
        """
        with self._lock:
            return dict(self._counts)

    def count(self, verb: str, resource: str) -> int:
        """Requests served for one (verb, resource)."""
        with self._lock:
            return self._counts.get((verb, resource), 0)

    def reset_counts(self) -> None:
        """Zero all request counters, the traffic counts (:meth:`traffic`) included."""
        with self._lock:
            self._counts.clear()
            self._nonresource.clear()
        self.traffic_meter.reset()

    def traffic(self) -> dict[RequestKind, Served]:
        """Requests and body bytes served by (verb, resource, view) since the last reset.

        ``view`` is ``full``, ``metadata`` (PartialObjectMetadata/List), ``table``
        or ``none`` (406: the Accept header offered nothing served); see
        :mod:`sandbox.traffic`. Example::

            api.traffic()[("list", "pods", "metadata")].bytes
        """
        return self.traffic_meter.snapshot()

    def reset_traffic(self) -> None:
        """Zero the traffic counts only (request counts stay)."""
        self.traffic_meter.reset()

    def nonresource_counts(self) -> dict[str, int]:
        """Discovery/other non-resource requests by ``"METHOD /path"``."""
        with self._lock:
            return dict(self._nonresource)

    # ------------------------------------------------------------ faults
    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> int:
        """Fail the next ``count`` matching requests with ``status``; returns the rule id.

        ``status=429`` (or 503) with ``retry_after`` sends a ``Retry-After``
        header. ``count=None`` fails until :meth:`clear_faults`.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        return self.faults.add(
            "fail",
            verb=verb,
            resource=resource,
            namespace=namespace,
            name=name,
            count=count,
            status=status,
            retry_after=retry_after,
            message=message,
        ).id

    def add_latency(
        self,
        seconds: float,
        verb: str | None = None,
        resource: str | None = None,
        count: int | None = None,
    ) -> int:
        """Delay matching requests by ``seconds`` (all of them unless ``count``)."""
        return self.faults.add("latency", verb=verb, resource=resource, count=count, seconds=seconds).id

    def hang(
        self,
        verb: str | None = None,
        resource: str | None = None,
        count: int | None = 1,
        timeout: float | None = 30.0,
        name: str | None = None,
    ) -> HangHandle:
        """Hold the next ``count`` matching requests until released or ``timeout``.

        After release (or the timeout) a held request is served normally.
        """
        rule = self.faults.add("hang", verb=verb, resource=resource, count=count, timeout=timeout, name=name)
        return self.faults.hang_handle(rule)

    def release_hangs(self) -> None:
        """Release every held request."""
        self.faults.release()

    def clear_faults(self) -> None:
        """Remove every fault rule (releasing hangs)."""
        self.faults.clear()

    def cut_watches(self) -> int:
        """End every open HTTP watch stream now; returns how many were cut."""
        with self._lock:
            ws = list(self._watchers)
        for w in ws:
            w.close()
        return len(ws)

    def compact(self) -> int:
        """Compact the store's history: older watch RVs and continue tokens get 410."""
        return self.store.compact()

    def open_watches(self) -> int:
        """Number of HTTP watch streams currently open."""
        with self._lock:
            return len(self._watchers)

    def wait_for_watches(self, n: int, timeout: float = 10.0, started: bool = False) -> bool:
        """Wait until at least ``n`` watch streams are open (or, with
        ``started=True``, have ever been started); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._watches_started if started else len(self._watchers)) >= n,
                timeout,
            )

    # ------------------------------------------------------------ RBAC
    def load_rbac(self, source: str | Path, default_namespace: str = "default") -> int:
        """Load Role/ClusterRole/(Cluster)RoleBinding YAML and start enforcing it."""
        return self.rbac.load(source, default_namespace)

    def clear_rbac(self) -> None:
        """Stop enforcing RBAC and forget the loaded rules."""
        self.rbac.clear()

    @property
    def denied(self) -> list[dict[str, Any]]:
        """Requests RBAC rejected so far."""
        return list(self.rbac.denied)

    # ------------------------------------------------------------ internals
    def _track_conn(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _user(self, h: _Handler) -> str:
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:].strip()
            with self._lock:
                user = self._tokens.get(token)
            if user is None and token.startswith("sandbox."):
                b = token[8:]
                try:
                    user = base64.urlsafe_b64decode(b + "=" * (-len(b) % 4)).decode()
                except ValueError:
                    user = None
            return user or "system:anonymous"
        return "system:anonymous"

    def _read_body(self, h: _Handler) -> bytes:
        n = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(n) if n else b""

    def _handle(self, h: _Handler, method: str) -> None:
        h.traffic_kind = None  # the connection may have served another request before
        try:
            url = urlsplit(h.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            path = url.path.rstrip("/") or "/"
            if path.startswith("/_sandbox"):
                self._admin(h, method, path)
                return
            route = _parse_route(path)
            if route is None:
                with self._lock:
                    self._nonresource[f"{method} {path}"] += 1
                if method == "GET":
                    self._discovery(h, path)
                else:
                    self._error(
                        h, ClusterError(404, "NotFound", "the server could not find the requested resource")
                    )
                return
            self._resource(h, method, route, query, path)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True
        except ClusterError as e:
            self._error(h, e)
        except Exception as e:  # the emulator must answer, never drop the connection
            self._error(h, ClusterError(500, "InternalError", f"sandbox internal error: {e!r}"))

    def _error(
        self,
        h: _Handler,
        e: ClusterError,
        route: _Route | None = None,
        retry_after: int | None = None,
    ) -> None:
        kind = None
        if route is not None and route.resource in RESOURCES:
            kind = route.resource
        body = status_body(
            e.status,
            e.reason,
            e.message,
            name=route.name if route else None,
            kind=kind,
            group=route.group if route and route.group else None,
            retry_after=retry_after,
        )
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        try:
            h.send_bytes(e.status, body, headers=headers)
        except OSError:
            h.close_connection = True

    # ------------------------------------------------------------ discovery
    def _discovery(self, h: _Handler, path: str) -> None:
        if path == "/version":
            h.send_bytes(
                200,
                dumps(
                    {
                        "major": "1",
                        "minor": "32",
                        "gitVersion": "v1.32.0-sandbox",
                        "gitCommit": "0000000000000000000000000000000000000000",
                        "gitTreeState": "clean",
                        "buildDate": "2025-01-01T00:00:00Z",
                        "goVersion": "go1.23.0",
                        "compiler": "gc",
                        "platform": "linux/amd64",
                    }
                ),
            )
        elif path == "/api":
            h.send_bytes(
                200,
                dumps(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}
                        ],
                    }
                ),
            )
        elif path == "/apis":
            groups = sorted({g for g, _, _, _ in RESOURCES.values() if g})
            h.send_bytes(
                200,
                dumps(
                    {
                        "kind": "APIGroupList",
                        "apiVersion": "v1",
                        "groups": [self._group(g) for g in groups],
                    }
                ),
            )
        elif path == "/api/v1":
            h.send_bytes(200, self._resource_list("", "v1"))
        elif path.startswith("/apis/"):
            parts = path.split("/")[2:]
            groups = {g: v for g, v, _, _ in RESOURCES.values() if g}
            if len(parts) == 1 and parts[0] in groups:
                body = self._group(parts[0])
                body.update(kind="APIGroup", apiVersion="v1")
                h.send_bytes(200, dumps(body))
            elif len(parts) == 2 and groups.get(parts[0]) == parts[1]:
                h.send_bytes(200, self._resource_list(parts[0], parts[1]))
            else:
                self._error(
                    h, ClusterError(404, "NotFound", "the server could not find the requested resource")
                )
        else:
            self._error(h, ClusterError(404, "NotFound", "the server could not find the requested resource"))

    @staticmethod
    def _group(group: str) -> dict[str, Any]:
        version = next(v for g, v, _, _ in RESOURCES.values() if g == group)
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    @staticmethod
    def _resource_list(group: str, version: str) -> bytes:
        resources = []
        for plural, (g, v, kind, namespaced) in RESOURCES.items():
            if g != group or v != version:
                continue
            entry: dict[str, Any] = {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": [*_ALL_VERBS, "deletecollection"],
            }
            if _SHORT_NAMES.get(plural):
                entry["shortNames"] = _SHORT_NAMES[plural]
            if plural == "pods":
                entry["categories"] = ["all"]
            if g in CUSTOM_GROUPS:
                entry["categories"] = ["all", "argo"] if plural == "workflows" else ["argo"]
            resources.append(entry)
            for sub in _SUBRESOURCES.get(plural, []):
                resources.append(
                    {
                        "name": f"{plural}/{sub}",
                        "singularName": "",
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return dumps(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        )

    # ------------------------------------------------------------ admin
    def _admin(self, h: _Handler, method: str, path: str) -> None:
        body = self._read_body(h) if method in ("POST", "PUT", "PATCH") else b""
        if path == "/_sandbox/counts" and method == "GET":
            counts = [
                {"verb": v, "resource": r, "count": n} for (v, r), n in sorted(self.request_counts().items())
            ]
            h.send_bytes(200, dumps({"counts": counts}))
        elif path == "/_sandbox/counts" and method == "DELETE":
            self.reset_counts()
            h.send_bytes(200, b"{}")
        elif path == "/_sandbox/traffic" and method == "GET":
            traffic = [
                {**k._asdict(), **v._asdict()} for k, v in sorted(self.traffic().items())
            ]
            h.send_bytes(200, dumps({"traffic": traffic}))
        elif path == "/_sandbox/traffic" and method == "DELETE":
            self.reset_traffic()
            h.send_bytes(200, b"{}")
        elif path == "/_sandbox/denied" and method == "GET":
            h.send_bytes(200, dumps({"denied": self.denied}))
        elif path == "/_sandbox/faults" and method == "GET":
            h.send_bytes(200, dumps({"rules": self.faults.rules(), "openWatches": self.open_watches()}))
        elif path == "/_sandbox/faults" and method == "POST":
            try:
                req = json.loads(body or b"{}")
                result = self._admin_action(req)
            except (ValueError, TypeError, KeyError) as e:
                h.send_bytes(400, status_body(400, "BadRequest", f"bad fault request: {e}"))
                return
            h.send_bytes(200, dumps(result))
            if req.get("action") == "restart":
                # Only after the answer is flushed: stopping cuts open connections.
                h.wfile.flush()
                downtime = float(req.get("downtime", 0.0))
                threading.Thread(target=self.restart, args=(downtime,), daemon=True).start()
        elif path == "/_sandbox/rbac" and method == "POST":
            n = self.load_rbac(body.decode())
            h.send_bytes(200, dumps({"loaded": n}))
        elif path == "/_sandbox/rbac" and method == "DELETE":
            self.clear_rbac()
            h.send_bytes(200, b"{}")
        else:
            h.send_bytes(404, status_body(404, "NotFound", f"no admin endpoint {method} {path}"))

    def _admin_action(self, req: dict[str, Any]) -> dict[str, Any]:
        action = req["action"]
        match = {k: req.get(k) for k in ("verb", "resource")}
        if action == "fail":
            rid = self.fail_next(
                count=req.get("count", 1),
                status=int(req.get("status", 500)),
                namespace=req.get("namespace"),
                name=req.get("name"),
                retry_after=req.get("retryAfter"),
                message=req.get("message"),
                **match,
            )
            return {"id": rid}
        if action == "latency":
            return {"id": self.add_latency(float(req["seconds"]), count=req.get("count"), **match)}
        if action == "hang":
            handle = self.hang(
                count=req.get("count", 1), timeout=req.get("timeout", 30.0), name=req.get("name"), **match
            )
            return {"id": handle.id}
        if action == "release":
            self.faults.release(req.get("id"))
            return {}
        if action == "clear":
            self.clear_faults()
            return {}
        if action == "cut-watches":
            return {"cut": self.cut_watches()}
        if action == "compact":
            return {"resourceVersion": str(self.compact())}
        if action == "restart":
            float(req.get("downtime", 0.0))  # validated here, acted on once answered
            return {"restarting": True, "port": self.port}
        raise ValueError(f"unknown action {action!r}")

    # ------------------------------------------------------------ resources
    def _resource(self, h: _Handler, method: str, route: _Route, query: dict[str, str], path: str) -> None:
        spec = RESOURCES.get(route.resource)
        if spec is None or spec[0] != route.group or spec[1] != route.version:
            self._read_body(h)
            raise ClusterError(404, "NotFound", "the server could not find the requested resource")
        group, _, _, namespaced = spec
        if not namespaced:
            route.namespace = None
        if route.subresource and route.subresource not in _SUBRESOURCES.get(route.resource, []):
            self._read_body(h)
            raise ClusterError(404, "NotFound", "the server could not find the requested resource")
        watch = route.watch_path or query.get("watch") in ("true", "1")
        if method == "GET":
            verb = "get" if route.name and not watch else ("watch" if watch else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
            if method == "DELETE" and not route.name:
                verb = "deletecollection"
        info = RequestInfo(verb, route.resource, route.subresource, route.namespace, route.name, group, path)
        body = self._read_body(h) if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        counted = f"{route.resource}/{route.subresource}" if route.subresource else route.resource
        with self._lock:
            self._counts[(verb, counted)] += 1
        wanted = negotiate(h.headers.get("Accept"))
        h.traffic_kind = RequestKind(verb, counted, wanted.view if wanted is not None else "none")
        self.traffic_meter.request(h.traffic_kind)
        failure = self.faults.before_request(info, time.sleep)
        if failure is not None:
            self._error(
                h,
                ClusterError(failure.status, failure.reason, failure.message),
                route,
                retry_after=failure.retry_after,
            )
            return
        user = self._user(h)
        if user != ADMIN_USER:
            decision = self.rbac.authorize(user, info)
            if not decision.allowed:
                self._error(h, ClusterError(403, "Forbidden", decision.message()), route)
                return
        if namespaced and route.name and route.namespace is None:
            raise ClusterError(404, "NotFound", "the server could not find the requested resource")
        if wanted is None:
            raise not_acceptable()  # before anything is read or written, as the real server does
        store = self.store
        res = route.resource
        # who managedFields records this write under, as the real server names it
        manager = query.get("fieldManager") or manager_from_user_agent(h.headers.get("User-Agent"))
        try:
            if verb == "get":
                self._get(h, route, wanted, query)
            elif verb == "list":
                self._list(h, route, wanted, query)
            elif verb == "watch":
                self._watch(h, route, wanted, query)
            elif verb == "create":
                obj = self._json(body)
                raw = store.create_raw(res, obj, namespace=route.namespace, manager=manager)
                self._send_object(h, 201, raw, route, wanted, query)
            elif verb == "update":
                obj = self._json(body)
                raw = store.replace_raw(
                    res,
                    obj,
                    namespace=route.namespace,
                    name=route.name,
                    subresource=route.subresource or None,
                    manager=manager,
                )
                self._send_object(h, 200, raw, route, wanted, query)
            elif verb == "patch":
                ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip()
                ptype = _PATCH_TYPES.get(ctype)
                if ptype is None or (ptype == "strategic" and group in CUSTOM_GROUPS):
                    raise ClusterError(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media "
                        "types include: application/json-patch+json, "
                        "application/merge-patch+json"
                        + ("" if group in CUSTOM_GROUPS else ", application/strategic-merge-patch+json"),
                    )
                raw = store.patch_raw(
                    res,
                    route.namespace,
                    route.name or "",
                    self._json(body),
                    ptype,
                    route.subresource or None,
                    manager,
                )
                self._send_object(h, 200, raw, route, wanted, query)
            elif verb == "delete":
                opts = self._json(body) if body.strip() else {}
                pre = (opts or {}).get("preconditions") or {}
                raw = store.delete_raw(
                    res,
                    route.namespace,
                    route.name or "",
                    precondition_rv=pre.get("resourceVersion"),
                    precondition_uid=pre.get("uid"),
                )
                self._send_object(h, 200, raw, route, wanted, query)
            else:
                raise ClusterError(
                    405, "MethodNotAllowed", f"{verb} is not supported on {res} by the sandbox"
                )
        except ClusterError as e:
            # A 406 Status names no object, as the real server's does not.
            self._error(h, e, route if e.status != 406 else None)

    @staticmethod
    def _json(body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError as e:
            raise ClusterError(400, "BadRequest", f"invalid JSON body: {e}") from None

    # -- answers in the negotiated representation
    @staticmethod
    def _check_fits(wanted: Representation, route: _Route, is_list: bool) -> None:
        group, _, kind, _ = RESOURCES[route.resource]
        error = mismatch(wanted, group, kind, is_list)
        if error is not None:
            raise error

    def _get(self, h: _Handler, route: _Route, wanted: Representation, query: dict[str, str]) -> None:
        name = route.name or ""
        if wanted.metadata_only:
            meta = self.store.get_metadata_raw(route.resource, route.namespace, name)
            self._check_fits(wanted, route, is_list=False)
            h.send_bytes(200, partial_object(meta, wanted.api_version))
            return
        raw = self.store.get_raw(route.resource, route.namespace, name)
        self._send_object(h, 200, raw, route, wanted, query)

    def _send_object(
        self,
        h: _Handler,
        code: int,
        raw: bytes,
        route: _Route,
        wanted: Representation,
        query: dict[str, str],
    ) -> None:
        """Send one object (a get's, or a write's answer) as the client asked for it."""
        if wanted.kind == "":
            h.send_bytes(code, raw)
            return
        self._check_fits(wanted, route, is_list=False)
        obj = json.loads(raw)
        if wanted.metadata_only:
            h.send_bytes(code, partial_object(dumps(obj.get("metadata") or {}), wanted.api_version))
            return
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        meta = {"resourceVersion": rv} if rv else {}
        h.send_bytes(code, dumps(table(route.resource, [obj], query, meta, wanted.api_version)))

    def _list(self, h: _Handler, route: _Route, wanted: Representation, query: dict[str, str]) -> None:
        limit_s = query.get("limit") or ""
        try:
            limit = int(limit_s) if limit_s else None
        except ValueError:
            raise ClusterError(400, "BadRequest", f"invalid limit {limit_s!r}") from None
        page = self.store.list_page(
            route.resource,
            route.namespace,
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            limit=limit if limit and limit > 0 else None,
            continue_token=query.get("continue") or None,
            metadata_only=wanted.kind == "PartialObjectMetadataList",
        )
        self._check_fits(wanted, route, is_list=True)
        if wanted.kind == "Table":
            tbl = table(route.resource, page.objects(), query, page.list_meta(), wanted.api_version)
            h.send_bytes(200, dumps(tbl))
        else:
            h.send_bytes(200, page.body(wanted.api_version))

    # -- watch
    def _end_and_drop(self, h: _Handler) -> None:
        """End a cut stream and drop its connection, the FIN in the same segment.

        Were the FIN sent later, a client could read the end of the stream, put the
        connection back in its pool and send its next request down it before the FIN
        arrived, and see that request fail ("remote end closed connection"). Corked,
        the last chunk and the FIN arrive together, so the client's pool sees the
        connection closed before it reuses it.
        """
        sock = h.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        h.wfile.write(b"0\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # flushes the corked chunk with the FIN
        h.close_connection = True

    def _write_chunk(self, h: _Handler, data: bytes) -> None:
        if h.traffic_kind is not None:
            self.traffic_meter.sent(h.traffic_kind, len(data))
        h.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")

    @staticmethod
    def _event_line(
        ev: WatchEvent, route: _Route, wanted: Representation, query: dict[str, str]
    ) -> bytes:
        """One watch event as the client asked for it.

        As on the real server, every event's object is converted, BOOKMARKs
        included, except error Statuses; a conversion that does not fit one
        object (``PartialObjectMetadataList``) leaves the object as stored.
        """
        if wanted.kind == "PartialObjectMetadata" and ev.type != "ERROR":
            obj = partial_object(ev.metadata_raw(), wanted.api_version)
            return b'{"type":"' + ev.type.encode() + b'","object":' + obj + b"}\n"
        if wanted.kind == "Table" and ev.type in ("ADDED", "MODIFIED", "DELETED"):
            meta = {"resourceVersion": str(ev.rv)}
            tbl = table(route.resource, [ev.object()], query, meta, wanted.api_version)
            return b'{"type":"' + ev.type.encode() + b'","object":' + dumps(tbl) + b"}\n"
        return ev.line()

    def _watch(self, h: _Handler, route: _Route, wanted: Representation, query: dict[str, str]) -> None:
        if wanted.kind == "Table":
            table(route.resource, [], query, {})  # a bad includeObject is a 400 before the stream starts
        try:
            w = self.store.watch(
                route.resource,
                route.namespace,
                resource_version=query.get("resourceVersion") or None,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                send_initial=(query.get("sendInitialEvents") == "true") or None,
            )
        except ClusterError as e:
            if e.status != 410:
                raise
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            status = status_body(410, "Expired", e.message)
            self._write_chunk(h, b'{"type":"ERROR","object":' + status + b"}\n")
            h.wfile.write(b"0\r\n\r\n")
            return
        with self._cond:
            self._watchers.add(w)
            self._watches_started += 1
            self._cond.notify_all()
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = float(query.get("timeoutSeconds") or self.default_watch_timeout)
        except ValueError:
            timeout = self.default_watch_timeout
        now = time.monotonic()
        deadline = now + timeout
        next_bookmark = now + self.bookmark_interval
        clean = True
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("Cache-Control", "no-cache, private")
            h.end_headers()
            h.wfile.flush()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = deadline - now
                if bookmarks:
                    if now >= next_bookmark:
                        w.request_bookmark()
                        next_bookmark = now + self.bookmark_interval
                    wait = min(wait, max(0.0, next_bookmark - now))
                ev = w.get(timeout=wait)
                if ev is None:
                    continue
                if ev.type == "CLOSED":
                    clean = False
                    break
                self._write_chunk(h, self._event_line(ev, route, wanted, query))
            # unregister before the client can see the end of the stream
            self._end_watch(w)
            if clean:
                h.wfile.write(b"0\r\n\r\n")
            else:
                self._end_and_drop(h)
        except OSError:
            h.close_connection = True
        finally:
            self._end_watch(w)

    def _end_watch(self, w: Watcher) -> None:
        w.close()
        with self._cond:
            self._watchers.discard(w)
            self._cond.notify_all()
