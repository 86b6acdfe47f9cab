"""Events on pods: a core/v1 Event per (pod, reason), rate-limited, as event recorders write them."""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from controller.kube.errors import KubeApiError, KubeUnavailableError
from controller.kube.patches import MERGE_PATCH
from controller.kube.transport import Transport
from reconcile.redact import redact

log = logging.getLogger(__name__)

COMPONENT = "kfp-metadata-reconciler"  # the Events' source, and the client's user agent
EVENT_MESSAGE_MAX_BYTES = 1024
EVENT_CACHE_SIZE = 4096  # (pod uid, reason) pairs remembered for rate limiting, LRU


@dataclass(slots=True)
class _EventRecord:
    namespace: str
    name: str | None  # None: never written (the create failed)
    count: int
    sent_at: float  # time.monotonic() of the last attempt


def _truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (marked with ``...`` when cut)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


class EventRecorder:
    """Writes Events on pods, at most one per (pod uid, reason) per ``interval_s``.

    Events are best effort: a failure is logged, never raised, and each write gets at
    most two attempts so that it never holds a pass up for a full retry budget.
    """

    def __init__(self, transport: Transport, interval_s: float) -> None:
        self.transport = transport
        self.interval_s = interval_s
        self._retry = replace(transport.retry, attempts=min(2, transport.retry.attempts))
        self._events: collections.OrderedDict[tuple[str, str], _EventRecord] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._instance = socket.gethostname()

    def emit_pod_event(self, pod: dict[str, Any], reason: str, message: str, type: str = "Warning") -> bool:
        """Record a core/v1 Event on ``pod``, at most once per (pod uid, reason) per interval.

        The first time: create an Event. When the same pod and reason come back after
        ``interval_s``: patch that Event's count, lastTimestamp and message (as event
        recorders do), or create a new one if it has expired meanwhile.

        Returns:
            True when an Event was written; False when rate-limited or when the write
            failed (failures are logged, never raised).
        """
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        pod_name = str(meta.get("name") or "")
        uid = str(meta.get("uid") or f"{namespace}/{pod_name}")
        key = (uid, reason)
        now = time.monotonic()
        with self._lock:
            record = self._events.get(key)
            if record is not None and now - record.sent_at < self.interval_s:
                return False
            if record is None:
                record = _EventRecord(namespace, None, 0, now)
                self._events[key] = record
                while len(self._events) > EVENT_CACHE_SIZE:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(key)
            record.sent_at = now  # claim the slot before writing: one writer per interval
            previous_name, previous_count = record.name, record.count
        text = _truncate(redact(message), EVENT_MESSAGE_MAX_BYTES)  # Events are readable by many
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        timeout = self.transport.request_timeout
        core = self.transport.core
        what = f"event {reason} on pod {namespace}/{pod_name}"
        try:
            if previous_name is not None:
                body = {"count": previous_count + 1, "lastTimestamp": stamp, "message": text}
                try:
                    self.transport.retried(
                        self.transport.json(
                            lambda: core.patch_namespaced_event(
                                previous_name,
                                namespace,
                                body,
                                _content_type=MERGE_PATCH,
                                _preload_content=False,
                                _request_timeout=timeout,
                            )
                        ),
                        f"patch {what}",
                        policy=self._retry,
                    )
                except KubeApiError as exc:
                    if exc.status != 404:
                        raise
                else:
                    with self._lock:
                        record.count = previous_count + 1
                    return True
            name = f"{pod_name}.{time.time_ns():x}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": str(pod.get("apiVersion") or "v1"),
                    "kind": str(pod.get("kind") or "Pod"),
                    "namespace": namespace,
                    "name": pod_name,
                    "uid": str(meta.get("uid") or ""),
                },
                "reason": reason,
                "message": text,
                "type": type,
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "reportingInstance": self._instance,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            self.transport.retried(
                self.transport.json(
                    lambda: core.create_namespaced_event(
                        namespace,
                        event,
                        _preload_content=False,
                        _request_timeout=timeout,
                    )
                ),
                f"create {what}",
                policy=self._retry,
            )
        except (KubeApiError, KubeUnavailableError) as exc:
            log.warning("could not record %s: %s", what, exc)
            return False
        with self._lock:
            record.name, record.count = name, 1
        return True
