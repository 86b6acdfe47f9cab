"""What the API emulator served: requests and body bytes per kind of request.

A kind of request is (verb, resource, view): the RBAC verb (get, list, watch,
create, update, patch, delete, deletecollection), the resource as request
counts name it (``pods``, ``pods/status``, ``workflows``), and the view the
client negotiated -- ``full`` (the stored objects), ``metadata``
(PartialObjectMetadata/List), ``table`` (kubectl's Table) or ``none`` (its
Accept header offered nothing the emulator serves; answered 406).

Bytes are the bodies sent: a whole answer for get/list/writes (error Status
bodies included), the event lines for a watch as they stream; HTTP heads and
chunk framing are not counted.
"""

from __future__ import annotations

import collections
import threading
from typing import NamedTuple

__all__ = ["RequestKind", "Served", "TrafficMeter"]


class RequestKind(NamedTuple):
    """One kind of request, e.g. ``RequestKind("list", "pods", "metadata")``."""

    verb: str
    resource: str
    view: str


class Served(NamedTuple):
    """Requests answered and body bytes sent for one kind of request."""

    requests: int
    bytes: int


class TrafficMeter:
    """Thread-safe counters of requests and body bytes per :class:`RequestKind`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: collections.Counter[RequestKind] = collections.Counter()
        self._bytes: collections.Counter[RequestKind] = collections.Counter()

    def request(self, kind: RequestKind) -> None:
        """Count one request of ``kind``."""
        with self._lock:
            self._requests[kind] += 1

    def sent(self, kind: RequestKind, size: int) -> None:
        """Count ``size`` body bytes sent for a request of ``kind``."""
        with self._lock:
            self._bytes[kind] += size

    def snapshot(self) -> dict[RequestKind, Served]:
        """Everything counted since the last :meth:`reset`."""
        with self._lock:
            kinds = self._requests.keys() | self._bytes.keys()
            return {k: Served(self._requests[k], self._bytes[k]) for k in kinds}

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._requests.clear()
            self._bytes.clear()
