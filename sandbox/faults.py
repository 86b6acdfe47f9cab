"""Fault rules for the API emulator: failures, latency and hangs.

A :class:`FaultInjector` holds rules that match requests by verb, resource,
namespace and name (``None`` matches anything). The HTTP layer calls
:meth:`FaultInjector.before_request` for every API request; it may sleep
(latency), block (hang), or return a :class:`Failure` to send instead of the
real answer.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class RequestInfo:
    """What a fault (or RBAC) rule can match on."""

    verb: str  # get/list/watch/create/update/patch/delete
    resource: str  # plural, e.g. "pods"; "" for non-resource requests
    subresource: str = ""
    namespace: str | None = None
    name: str | None = None
    group: str = ""
    path: str = ""


@dataclass
class _Rule:
    id: int
    kind: str  # fail / latency / hang
    verb: str | None
    resource: str | None
    namespace: str | None
    name: str | None
    remaining: int | None  # None = unlimited
    status: int = 500
    retry_after: int | None = None
    message: str | None = None
    seconds: float = 0.0
    timeout: float | None = None
    released: threading.Event = field(default_factory=threading.Event)
    hits: int = 0
    waiting: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def matches(self, info: RequestInfo) -> bool:
        if self.verb not in (None, "*") and self.verb != info.verb:
            return False
        if self.resource not in (None, "*"):
            full = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
            if self.resource not in (info.resource, full):
                return False
        if self.namespace is not None and self.namespace != info.namespace:
            return False
        return self.name is None or self.name == info.name


@dataclass
class Failure:
    """An error answer to send instead of serving the request."""

    status: int
    reason: str
    message: str
    retry_after: int | None = None


class HangHandle:
    """Controls one hang rule: wait until a request is held, then release it."""

    def __init__(self, injector: FaultInjector, rule: _Rule) -> None:
        self._injector = injector
        self._rule = rule
        self.id = rule.id

    def wait_hung(self, timeout: float = 10.0) -> bool:
        """Block until a matching request is being held (True) or ``timeout`` passes."""
        return self._rule.waiting.acquire(timeout=timeout)

    @property
    def hits(self) -> int:
        """How many requests this rule has held so far."""
        return self._rule.hits

    def release(self) -> None:
        """Let every held (and future) matching request proceed; removes the rule."""
        self._rule.released.set()
        self._injector.remove(self.id)


class FaultInjector:
    """Thread-safe collection of fault rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._ids = itertools.count(1)
        self._hangs: dict[int, _Rule] = {}

    def add(
        self,
        kind: str,
        *,
        verb: str | None = None,
        resource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        count: int | None = 1,
        status: int = 500,
        retry_after: int | None = None,
        message: str | None = None,
        seconds: float = 0.0,
        timeout: float | None = None,
    ) -> _Rule:
        """Add a rule (``kind`` is ``fail``, ``latency`` or ``hang``) and return it."""
        if kind not in ("fail", "latency", "hang"):
            raise ValueError(f"unknown fault kind {kind!r}")
        rule = _Rule(
            next(self._ids), kind, verb, resource, namespace, name, count,
            status=status, retry_after=retry_after, message=message,
            seconds=seconds, timeout=timeout,
        )
        with self._lock:
            self._rules.append(rule)
            if kind == "hang":
                self._hangs[rule.id] = rule
        return rule

    def hang_handle(self, rule: _Rule) -> HangHandle:
        """A :class:`HangHandle` for a hang rule."""
        return HangHandle(self, rule)

    def release(self, rule_id: int | None = None) -> None:
        """Release one hang rule by id, or all hangs when ``rule_id`` is None."""
        with self._lock:
            targets = [r for i, r in self._hangs.items() if rule_id in (None, i)]
        for r in targets:
            r.released.set()
            self.remove(r.id)

    def remove(self, rule_id: int) -> None:
        """Drop one rule (no-op if already gone)."""
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]
            self._hangs.pop(rule_id, None)

    def clear(self) -> None:
        """Drop every rule, releasing held requests."""
        self.release()
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        """A JSON-friendly description of the active rules."""
        with self._lock:
            return [
                {"id": r.id, "kind": r.kind, "verb": r.verb, "resource": r.resource,
                 "namespace": r.namespace, "name": r.name, "remaining": r.remaining,
                 "status": r.status, "seconds": r.seconds, "hits": r.hits}
                for r in self._rules
            ]

    def _take(self, info: RequestInfo) -> list[_Rule]:
        """Matching rules, consuming one use of each counted rule."""
        out = []
        with self._lock:
            for r in list(self._rules):
                if not r.matches(info):
                    continue
                if r.kind == "fail" and any(o.kind == "fail" for o in out):
                    continue
                r.hits += 1
                out.append(r)
                if r.remaining is not None:
                    r.remaining -= 1
                    if r.remaining <= 0 and r.kind != "hang":
                        self._rules.remove(r)
                    elif r.remaining <= 0:
                        # a hang rule stops matching new requests but stays releasable
                        self._rules.remove(r)
        return out

    def before_request(self, info: RequestInfo, sleep: Any) -> Failure | None:
        """Apply matching rules to one request; return a Failure to send, if any.

        ``sleep`` is the function used for latency (``time.sleep``).
        """
        rules = self._take(info)
        failure: Failure | None = None
        for r in rules:
            if r.kind == "latency":
                sleep(r.seconds)
            elif r.kind == "hang":
                r.waiting.release()
                r.released.wait(r.timeout)
            elif r.kind == "fail":
                reason = REASONS.get(r.status, "InternalError")
                msg = r.message or _default_message(r.status, info)
                failure = Failure(r.status, reason, msg, r.retry_after)
        return failure


def _default_message(status: int, info: RequestInfo) -> str:
    if status == 429:
        return "Too many requests, please try again later."
    if status == 503:
        return "the server is currently unable to handle the request"
    if status == 504:
        return "the server was unable to return a response in the time allotted"
    return f"sandbox fault injected for {info.verb} {info.resource}"
