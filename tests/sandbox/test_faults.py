"""Fault injection, from Python and over the admin endpoint, seen by the real client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from sandbox.apiserver import ApiServer

from .conftest import pod


def admin(api: ApiServer, body: dict[str, Any]) -> dict[str, Any]:
    """POST one action to the emulator's fault endpoint."""
    req = urllib.request.Request(f"{api.url}/_sandbox/faults", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_fail_next_500(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    api.fail_next(2, status=500, verb="patch", resource="pods")
    for _ in range(2):
        with pytest.raises(client.ApiException) as exc:
            v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"x": "1"}}})
        assert exc.value.status == 500
        body = json.loads(exc.value.body)
        assert body["kind"] == "Status" and body["reason"] == "InternalError"
    # reads are untouched, and the third patch goes through
    assert v1.read_namespaced_pod("a", "ns").metadata.labels == {}
    assert v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"x": "1"}}})
    assert api.count("patch", "pods") == 3


def test_429_with_retry_after(api: ApiServer, v1: client.CoreV1Api) -> None:
    api.fail_next(1, status=429, verb="list", resource="pods", retry_after=1)
    req = urllib.request.Request(f"{api.url}/api/v1/namespaces/ns/pods",
                                 headers={"Authorization": f"Bearer {api.token_for(None)}"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 429 and exc.value.headers["Retry-After"] == "1"
    body = json.loads(exc.value.read())
    assert body["kind"] == "Status" and body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == 1
    # the official client (urllib3) honours Retry-After and retries by itself
    api.reset_counts()
    api.fail_next(1, status=429, verb="list", resource="pods", retry_after=1)
    t0 = time.monotonic()
    assert v1.list_namespaced_pod("ns").items == []
    assert time.monotonic() - t0 >= 1.0
    assert api.count("list", "pods") == 2
    # PATCH is not retried by urllib3: the caller sees the 429 and its Retry-After
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    api.fail_next(1, status=429, verb="patch", resource="pods", retry_after=3)
    with pytest.raises(client.ApiException) as apiexc:
        v1.patch_namespaced_pod("a", "ns", {"metadata": {"labels": {"x": "1"}}})
    assert apiexc.value.status == 429 and apiexc.value.headers["Retry-After"] == "3"


def test_503_over_admin_endpoint(api: ApiServer, custom: client.CustomObjectsApi) -> None:
    rule = admin(api, {"action": "fail", "status": 503, "resource": "workflows", "count": 1})
    assert rule["id"]
    with pytest.raises(client.ApiException) as exc:
        custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "ns", "workflows")
    assert exc.value.status == 503
    assert json.loads(exc.value.body)["reason"] == "ServiceUnavailable"
    assert custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "ns",
                                                "workflows")["items"] == []
    admin(api, {"action": "fail", "status": 500, "count": None})
    with pytest.raises(client.ApiException):
        custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "ns", "workflows")
    admin(api, {"action": "clear"})
    custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "ns", "workflows")


def test_latency(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.list_namespaced_pod("ns")  # warm the connection
    api.add_latency(0.3, verb="list", resource="pods", count=1)
    t0 = time.monotonic()
    v1.list_namespaced_pod("ns")
    slow = time.monotonic() - t0
    t0 = time.monotonic()
    v1.list_namespaced_pod("ns")
    fast = time.monotonic() - t0
    assert slow >= 0.3 and fast < 0.3


def test_hang_until_released(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    handle = api.hang(verb="get", resource="pods", timeout=30)
    result: list[Any] = []
    done = threading.Event()

    def read() -> None:
        result.append(v1.read_namespaced_pod("a", "ns").metadata.name)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert handle.wait_hung(10)
    # while one request is held, others are served
    assert v1.list_namespaced_pod("ns").items[0].metadata.name == "a"
    assert not done.is_set()
    handle.release()
    assert done.wait(10) and result == ["a"]


def test_hang_times_out_then_serves(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    api.hang(verb="get", resource="pods", timeout=0.5)
    t0 = time.monotonic()
    assert v1.read_namespaced_pod("a", "ns").metadata.name == "a"
    assert time.monotonic() - t0 >= 0.5
    # a client-side timeout shorter than the hang surfaces as a read timeout
    api.hang(verb="get", resource="pods", timeout=5, count=None)
    with pytest.raises((urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.MaxRetryError)):
        v1.read_namespaced_pod("a", "ns", _request_timeout=0.3)
    api.release_hangs()
    assert v1.read_namespaced_pod("a", "ns").metadata.name == "a"


def test_cut_watches(api: ApiServer, v1: client.CoreV1Api, custom: client.CustomObjectsApi
                     ) -> None:
    ended = threading.Event()
    seen: list[str] = []

    def pods() -> None:
        for ev in watch.Watch().stream(v1.list_namespaced_pod, "ns", timeout_seconds=60):
            seen.append(ev["type"])
        ended.set()

    threading.Thread(target=pods, daemon=True).start()
    resp = custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", "ns", "workflows",
                                                watch=True, _preload_content=False)
    assert api.wait_for_watches(2, timeout=10)
    assert admin(api, {"action": "cut-watches"}) == {"cut": 2}
    assert ended.wait(10)
    assert resp.read() == b""  # the raw stream ended too
    assert api.open_watches() == 0
    # new watches work again
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    events = list(watch.Watch().stream(v1.list_namespaced_pod, "ns", timeout_seconds=1))
    assert [e["type"] for e in events] == ["ADDED"]


def test_compact_forces_410(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    rv = v1.list_namespaced_pod("ns").metadata.resource_version
    new_rv = admin(api, {"action": "compact"})["resourceVersion"]
    assert int(new_rv) > int(rv)
    with pytest.raises(client.ApiException) as exc:
        list(watch.Watch().stream(v1.list_namespaced_pod, "ns", resource_version=rv,
                                  timeout_seconds=5))
    assert exc.value.status == 410
    # relisting gives an RV that can be watched from
    rv2 = v1.list_namespaced_pod("ns").metadata.resource_version
    v1.create_namespaced_pod("ns", pod("b", "ns"))
    events = list(watch.Watch().stream(v1.list_namespaced_pod, "ns", resource_version=rv2,
                                       timeout_seconds=1))
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "b")]


def test_stop_start_same_port_keeps_data(api: ApiServer, v1: client.CoreV1Api) -> None:
    v1.create_namespaced_pod("ns", pod("a", "ns"))
    port = api.port
    api.stop()
    assert not api.running
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        v1.list_namespaced_pod("ns", _request_timeout=2)
    api.start()
    assert api.port == port
    assert [p.metadata.name for p in v1.list_namespaced_pod("ns").items] == ["a"]
    # the same over the admin endpoint, with some downtime
    assert admin(api, {"action": "restart", "downtime": 0.2})["port"] == port
    deadline = time.monotonic() + 10
    while True:
        try:
            names = [p.metadata.name for p in v1.list_namespaced_pod("ns").items]
            break
        except urllib3.exceptions.HTTPError:
            assert time.monotonic() < deadline, "server did not come back"
    assert names == ["a"] and api.port == port
