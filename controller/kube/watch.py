"""Watching pods: a stream of changes with bookmarks, ended promptly when asked to stop."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from controller.kube.errors import (
    TRANSIENT,
    KubeApiError,
    KubeUnavailableError,
    WatchExpired,
    describe,
    one_line,
)
from controller.kube.transport import Transport
from reconcile.conventions import ARGO_WORKFLOW_LABEL

log = logging.getLogger(__name__)

STOP_POLL_S = 0.05  # how often a watch's closer thread looks at ``stop``


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One pod watch event, cut down to what a trigger needs.

    ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK (a BOOKMARK has no namespace, name
    or labels; only its ``resource_version`` matters).
    """

    type: str
    namespace: str | None
    name: str | None
    labels: dict[str, str]
    resource_version: str


def watch_pods(
    transport: Transport,
    namespace: str | None,
    resource_version: str,
    *,
    timeout_s: int,
    stop: threading.Event,
    label_selector: str = ARGO_WORKFLOW_LABEL,
) -> Iterator[WatchEvent]:
    """Watch pods (one namespace, or all when None) from ``resource_version``, with bookmarks.

    Yields ADDED/MODIFIED/DELETED/BOOKMARK events as :class:`WatchEvent`. Ends cleanly
    when the server ends the stream (its ``timeoutSeconds`` = ``timeout_s``, or a cut
    connection) or within ~50 ms of ``stop`` being set: a closer thread shuts the
    stream's socket down, which unblocks the read at once.

    Raises:
        WatchExpired: the RV is too old (410, as an ERROR event or an HTTP error).
        KubeApiError: any other error answer or ERROR event.
        KubeUnavailableError: the watch could not be opened after every retry.
    """
    if timeout_s < 1:
        raise ValueError("timeout_s must be at least 1 second")
    if stop.is_set():
        return
    where = namespace or "all namespaces"
    what = f"watch pods in {where}"
    connect = transport.request_timeout[0]
    # the server ends the stream after timeout_s; the read timeout only catches a dead server
    read = timeout_s + max(transport.request_timeout[1], 30.0)
    kwargs: dict[str, Any] = {
        "watch": True,
        "allow_watch_bookmarks": True,
        "resource_version": resource_version,
        "timeout_seconds": int(timeout_s),
        "label_selector": label_selector,
        "_preload_content": False,
        "_request_timeout": (connect, read),
    }

    def open_stream() -> Any:
        if namespace is None:
            return transport.core.list_pod_for_all_namespaces(**kwargs)
        return transport.core.list_namespaced_pod(namespace, **kwargs)

    try:
        resp = transport.retried(open_stream, what, stop=stop)
    except KubeApiError as exc:
        if exc.status == 410:
            raise WatchExpired(exc.status, exc.reason, exc.message, what) from None
        raise
    except KubeUnavailableError:
        if stop.is_set():
            return
        raise
    closer = _StreamCloser(resp, stop, name=f"kube-watch-stop-{where}")
    try:
        for line in _lines(resp):
            event = _watch_event(line, what)
            if event is not None:
                yield event
            if stop.is_set():
                return
    except TRANSIENT as exc:
        if not stop.is_set():
            log.info("%s ended early: %s", what, describe(exc))
    finally:
        closer.finish()


class _StreamCloser:
    """Shuts a streaming response's socket down as soon as ``stop`` is set.

    A blocked ``recv`` on that socket then returns at once. ``finish`` (called when the
    stream ends) retires the closer under the same lock, so it can never touch the
    connection after it has gone back to the pool.
    """

    def __init__(self, resp: Any, stop: threading.Event, name: str) -> None:
        self._resp = resp
        self._stop = stop
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopped = self._stop.wait(STOP_POLL_S)
            with self._lock:
                if self._done:
                    return
                if stopped:
                    self._shutdown()
                    return

    def _shutdown(self) -> None:
        conn = getattr(self._resp, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """End the closer and release the response (dropping its connection)."""
        with self._lock:
            self._done = True
        with contextlib.suppress(Exception):
            self._resp.close()
        with contextlib.suppress(Exception):
            self._resp.release_conn()


def _lines(resp: Any) -> Iterator[bytes]:
    """Non-empty lines of a streaming response, as they arrive."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end > start:
                yield bytes(buffer[start:end])
            start = end + 1
        del buffer[:start]
    if buffer.strip():
        yield bytes(buffer)


def _watch_event(line: bytes, what: str) -> WatchEvent | None:
    """Parse one watch line; raise on ERROR events; None for lines that are not events."""
    try:
        doc = json.loads(line)
    except ValueError:
        text = one_line(line.decode("utf-8", "replace"), 120)
        log.warning("%s: ignoring a line that is not JSON: %s", what, text)
        return None
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("type") or "")
    obj = doc.get("object") if isinstance(doc.get("object"), dict) else {}
    if kind == "ERROR":
        status = int(obj.get("code") or 0)
        reason = str(obj.get("reason") or "Error")
        message = str(obj.get("message") or "")
        if status == 410:
            raise WatchExpired(status, reason, message, what)
        raise KubeApiError(status, reason, message, what)
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    return WatchEvent(
        type=kind,
        namespace=meta.get("namespace"),
        name=meta.get("name"),
        labels=dict(labels) if isinstance(labels, dict) else {},
        resource_version=str(meta.get("resourceVersion") or ""),
    )
