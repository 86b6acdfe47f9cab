"""The health endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` on one port.

* ``GET /healthz`` -- ``200 ok`` while the process is alive. It is answered by the
  server's own threads and touches no state shared with reconcile passes, so it
  answers while a pass runs, while MLMD or the API server is down, and while
  another (slow) request is being served.
* ``GET /readyz`` -- ``200 <reason>`` or ``503 <reason>`` from the ``ready()``
  callable (typically a :class:`Readiness`); an exception in it is a 503.
* ``GET /metrics`` -- the Prometheus text exposition of a :class:`~controller.metrics.Metrics`.

Every request runs in its own daemon thread (``ThreadingHTTPServer``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from controller.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], tuple[bool, str]]


class Readiness:
    """Thread-safe readiness state, updated by the controller and read by ``/readyz``.

    Ready iff the last successful pass finished at most ``2 * period_s`` ago and
    MLMD was reachable at the last check. Before the first successful pass it is
    not ready ("no successful pass yet").

    All times (``at``, ``now``) are on ``clock``: Unix time (``time.time``) by default,
    so callers may pass ``time.time()`` values; tests inject their own clock. An
    instance is callable: ``readiness()`` is ``readiness.check()``, so it can be
    passed as the ``ready`` of :class:`HealthServer`.
    """

    def __init__(self, period_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.period_s = period_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last_success: float | None = None
        self._last_failure: str | None = None
        self._mlmd_ok = True
        self._mlmd_reason = ""

    def pass_succeeded(self, at: float | None = None) -> None:
        """A pass finished without a fatal error at ``at`` (default: now). MLMD was evidently reachable."""
        when = self.clock() if at is None else at
        with self._lock:
            if self._last_success is None or when > self._last_success:
                self._last_success = when
            self._last_failure = None
            self._mlmd_ok, self._mlmd_reason = True, ""

    def pass_failed(self, reason: str) -> None:
        """A pass ended with a fatal error; ``reason`` is shown by ``/readyz`` when not ready."""
        with self._lock:
            self._last_failure = reason

    def mlmd_reachable(self, reachable: bool, reason: str = "") -> None:
        """Result of the latest MLMD reachability check (``reason`` says why not)."""
        with self._lock:
            self._mlmd_ok, self._mlmd_reason = reachable, reason

    def check(self, now: float | None = None, period_s: float | None = None) -> tuple[bool, str]:
        """``(ready, reason)`` at ``now`` (default: the clock) for a resync period of ``period_s``."""
        now = self.clock() if now is None else now
        period = self.period_s if period_s is None else period_s
        if period is None:
            raise ValueError("Readiness.check needs period_s (none given at construction)")
        with self._lock:
            last, failure = self._last_success, self._last_failure
            mlmd_ok, mlmd_reason = self._mlmd_ok, self._mlmd_reason
        if not mlmd_ok:
            return False, f"MLMD unreachable: {mlmd_reason or 'unknown reason'}"
        if last is None:
            return False, "no successful pass yet" + (f" (last failure: {failure})" if failure else "")
        age = now - last
        if age > 2 * period:
            msg = f"last successful pass {age:.0f}s ago (more than 2 x {period:g}s)"
            return False, msg + (f"; last failure: {failure}" if failure else "")
        return True, f"ok: last successful pass {max(age, 0.0):.0f}s ago"

    def __call__(self) -> tuple[bool, str]:
        return self.check()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], owner: HealthServer) -> None:
        self.owner = owner
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("health %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n")
        elif path == "/readyz":
            ok, reason = self.server.owner.readiness()
            self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, f"{reason}\n".encode())
        elif path == "/metrics":
            self._send(HTTPStatus.OK, self.server.owner.metrics.render(), CONTENT_TYPE)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /healthz, /readyz or /metrics\n")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (0 = a free port)."""

    def __init__(self, host: str, port: int, metrics: Metrics, ready: ReadyCheck) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.ready = ready
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8080`` (the bound port after :meth:`start`)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def readiness(self) -> tuple[bool, str]:
        """``ready()``, with any exception turned into ``(False, reason)``."""
        try:
            ok, reason = self.ready()
        except Exception as exc:
            log.warning("readiness check raised", exc_info=True)
            return False, f"readiness check failed: {type(exc).__name__}: {exc}"
        return bool(ok), str(reason)

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread; ``.port`` is then the bound port."""
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name=f"health-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("health endpoints listening", extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (requests in flight finish in their daemon threads)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
