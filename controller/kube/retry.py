"""Retrying one Kubernetes request: which failures are worth another attempt, and how long to wait.

Retries are ours, and only ours: the client's own (urllib3's) are switched off on every
ApiClient we use (controller/kube/client.py), so a `RetryPolicy` alone decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

from controller.backoff import RetryPolicy
from controller.kube.errors import (
    TRANSIENT,
    KubeApiError,
    KubeUnavailableError,
    describe,
    retry_after,
    status_of,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_MAX_S = 60.0  # a Retry-After longer than this is capped


def with_retries(
    call: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    stop: threading.Event | None = None,
) -> T:
    """Run ``call`` (one request, including reading its body), retrying transient failures.

    Retried: 429 (waiting ``Retry-After`` when given), 500/502/503/504, and connection
    failures (refused, reset, timed out, cut short). Waits are ``policy.delay(attempt)``
    unless the server said how long; ``stop``, when set, ends the waiting early.

    Raises:
        KubeApiError: any other HTTP error, at once.
        KubeUnavailableError: still failing after the last attempt (or ``stop`` set).
    """
    problem = ""
    for attempt in range(policy.attempts):
        wait: float | None = None
        try:
            return call()
        except ApiException as exc:
            status, reason, message = status_of(exc)
            if status not in RETRY_STATUSES and status != 0:
                raise KubeApiError(status, reason, message, what) from None
            problem = f"HTTP {status} {reason}: {message}" if status else message
            if status in (429, 503):
                wait = retry_after(exc)
        except TRANSIENT as exc:
            problem = describe(exc)
        if attempt + 1 >= policy.attempts:
            break
        delay = min(wait, RETRY_AFTER_MAX_S) if wait is not None else policy.delay(attempt)
        log.debug(
            "retrying %s in %.2fs (attempt %d/%d): %s", what, delay, attempt + 1, policy.attempts, problem
        )
        if stop is not None:
            if stop.wait(delay):
                raise KubeUnavailableError(what, f"stopped while retrying; last: {problem}", attempt + 1)
        elif delay > 0:
            time.sleep(delay)
    raise KubeUnavailableError(what, problem, policy.attempts)
