"""What can go wrong talking to the API server, each as one line that names the request."""

from __future__ import annotations

import contextlib
import http.client
import json

import urllib3
from kubernetes.client.exceptions import ApiException


def one_line(text: str, limit: int = 300) -> str:
    """`text` with its whitespace collapsed, cut to `limit` characters (marked `...`)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class KubeConfigError(Exception):
    """No usable Kubernetes configuration (kubeconfig or in-cluster)."""


class KubeApiError(Exception):
    """The API server refused a request with an error that retrying will not fix (4xx).

    Attributes:
        status: the HTTP status (0 when no HTTP answer was involved).
        reason: the Status reason, e.g. ``NotFound``, ``Forbidden``, ``Expired``.
        message: the server's message.
        request: which request failed, e.g. ``list pods in kubeflow``.
    """

    def __init__(self, status: int, reason: str, message: str, request: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = one_line(message)
        self.request = request
        where = f"{request}: " if request else ""
        super().__init__(f"{where}HTTP {status} {reason}: {self.message}")


class WatchExpired(KubeApiError):
    """The watch's resourceVersion is too old (410 Gone): list again, then watch from the new RV."""


class ContinueExpired(KubeApiError):
    """A list's continue token expired (410 Gone on a next-page request): list again from the start."""


class BadResponse(Exception):
    """A 2xx answer whose body is not the JSON document expected (e.g. a proxy's page)."""


# Transport failures worth another attempt: refused/reset connections, timeouts, a body
# cut short. urllib3 wraps most of them (NewConnectionError, ReadTimeoutError,
# ProtocolError, MaxRetryError if someone re-enables its retries); the rest are OSError.
TRANSIENT = (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError, BadResponse)


class KubeUnavailableError(Exception):
    """The API server could not be reached, or kept failing, after every retry."""

    def __init__(self, request: str, problem: str, attempts: int) -> None:
        self.request = request
        self.problem = one_line(problem)
        self.attempts = attempts
        tries = "attempt" if attempts == 1 else "attempts"
        super().__init__(
            f"Kubernetes API unavailable: {request} failed after {attempts} {tries}: {self.problem}"
        )


def status_of(exc: ApiException) -> tuple[int, str, str]:
    """(status, reason, message) of an ApiException, preferring the Status body's fields."""
    status = int(exc.status or 0)
    reason = str(exc.reason or "")
    message = ""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            message = body
        else:
            if isinstance(doc, dict):
                reason = str(doc.get("reason") or reason)
                message = str(doc.get("message") or "")
    return status, reason, message or reason or "no message"


def retry_after(exc: ApiException) -> float | None:
    """Seconds from a ``Retry-After`` header (or the Status' retryAfterSeconds), if any."""
    value = None
    if exc.headers is not None:
        with contextlib.suppress(Exception):
            value = exc.headers.get("Retry-After")
    if value is None and exc.body:
        with contextlib.suppress(Exception):
            value = (json.loads(exc.body).get("details") or {}).get("retryAfterSeconds")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None  # an HTTP-date: fall back to our own backoff
    return max(0.0, seconds)


def describe(exc: BaseException) -> str:
    """A short, one-line description of a transport failure."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        cause = str(exc).split("Failed to establish a new connection:", 1)[-1].strip()
        return f"cannot connect ({cause})"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return f"timed out ({str(exc).split(': ', 1)[-1]})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
