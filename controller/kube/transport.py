"""One ApiClient's requests: raw JSON answers, our retries, and a timeout on every call.

Everything reads the API server's answers as raw JSON (``_preload_content=False`` and
``json.loads``): the ``kubernetes`` client's model deserialisation costs ~16x per pod and
would decide the cost of a no-op resync.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

from controller.backoff import RetryPolicy
from controller.gc_pause import paused_gc
from controller.kube.errors import BadResponse
from controller.kube.retry import with_retries

T = TypeVar("T")
JSON = dict[str, Any]


class Transport:
    """The core and custom-object APIs of one ApiClient, with the retry policy and timeouts.

    Args:
        api_client: its urllib3 retries must be off (controller/kube/client.py does that).
        retry: retry policy of every request made through :meth:`retried`.
        request_timeout: (connect, read) seconds of every request but watches.
    """

    def __init__(
        self, api_client: client.ApiClient, retry: RetryPolicy, request_timeout: tuple[float, float]
    ) -> None:
        self.api_client = api_client
        self.retry = retry
        self.request_timeout = request_timeout
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def retried(
        self,
        call: Callable[[], T],
        what: str,
        *,
        policy: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """``call`` (one request), retried as ``policy`` (default: this transport's) says."""
        return with_retries(call, what, policy or self.retry, stop)

    @staticmethod
    def _body(resp: Any) -> bytes:
        """The whole body of a ``_preload_content=False`` response; its connection is released."""
        try:
            return resp.data
        except BaseException:
            resp.close()  # half-read: the connection cannot be reused
            raise
        finally:
            resp.release_conn()

    def json(self, request: Callable[[], Any]) -> Callable[[], Any]:
        """Wrap a ``_preload_content=False`` request: read its whole body and parse it."""

        def call() -> Any:
            data = self._body(request())
            try:
                with paused_gc():
                    return json.loads(data)
            except ValueError as exc:
                raise BadResponse(f"response is not JSON ({exc})") from None

        return call

    def drained(self, request: Callable[[], Any]) -> Callable[[], None]:
        """Wrap a ``_preload_content=False`` request whose answer is not used: read, not parse.

        A pod patch answers with the whole pod (~15 KB for an Argo 3.5 step); parsing
        10,000 of them in a backfill would only cost CPU.
        """

        def call() -> None:
            self._body(request())

        return call
