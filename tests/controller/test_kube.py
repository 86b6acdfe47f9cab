"""controller.kube against the API emulator over real HTTP with the real ``kubernetes`` client.

Nothing here patches the client: faults (errors, hangs, downtime, compaction, cut watches)
are injected by the emulator, and every assertion reads the emulator's request counts or
its store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.kube import (
    KubeApiError,
    KubeClient,
    KubeConfigError,
    KubeUnavailableError,
    RetryPolicy,
    WatchEvent,
    WatchExpired,
    api_client_from,
)
from reconcile.conventions import ARGO_WORKFLOW_LABEL as WORKFLOW_LABEL
from sandbox.apiserver import ApiServer
from sandbox.simulator import Simulator, chain_workflow

FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)


def _pod(
    name: str,
    namespace: str = "kubeflow",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {WORKFLOW_LABEL: "wf-1"} if labels is None else labels,
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "main", "image": "python:3.9"}]},
        "status": {"phase": "Running"},
    }


@pytest.fixture
def kubeconfig(api: ApiServer, tmp_path: Path) -> str:
    return str(api.write_kubeconfig(tmp_path / "kubeconfig"))


def _client(kubeconfig: str, **kwargs: Any) -> KubeClient:
    kwargs.setdefault("retry", FAST)
    return KubeClient(api_client_from(kubeconfig), **kwargs)


@pytest.fixture
def kube(kubeconfig: str) -> Iterator[KubeClient]:
    k = _client(kubeconfig)
    try:
        yield k
    finally:
        k.close()


# ------------------------------------------------------------------ configuration
def test_api_client_from_explicit_and_default_kubeconfig(
    api: ApiServer, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.store.create("pods", _pod("p"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    for api_client in (api_client_from(kubeconfig, context="sandbox"), api_client_from()):
        assert api_client.configuration.retries is False
        assert [p["metadata"]["name"] for p in KubeClient(api_client).list_pods(None).items] == ["p"]
        api_client.close()


def test_api_client_from_reports_missing_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KubeConfigError) as err:
        api_client_from(str(tmp_path / "nope"))
    assert str(err.value).startswith("no Kubernetes configuration: kubeconfig ")
    assert "\n" not in str(err.value)
    # in-cluster is chosen when KUBERNETES_SERVICE_HOST is set; here there is no token
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeConfigError, match="in-cluster service account"):
        api_client_from()


def test_client_takes_over_retries_of_a_given_api_client(api: ApiServer, kubeconfig: str) -> None:
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    assert api_client.configuration.retries is None  # urllib3 would retry 3 times on its own
    kube = KubeClient(api_client, retry=RetryPolicy(attempts=2, base_s=0.0, max_s=0.0))
    assert api_client.configuration.retries is False
    api.fail_next(2, 500, verb="list", resource="pods")
    with pytest.raises(KubeUnavailableError):
        kube.list_pods(None)
    assert api.count("list", "pods") == 2  # ours only: no hidden urllib3 attempts
    api_client.close()


# ------------------------------------------------------------------ lists
def test_paginated_raw_list_across_namespaces(api: ApiServer, kube: KubeClient) -> None:
    for i in range(300):
        api.store.create("pods", _pod(f"p-{i:03d}", "team-a" if i % 2 else "team-b"))
    api.store.create("pods", _pod("not-argo", "team-a", labels={"app": "x"}))
    k = KubeClient(kube.api_client, retry=FAST, page_size=40)

    listed = k.list_pods(None)
    assert len(listed.items) == 300
    assert all(isinstance(p, dict) for p in listed.items)
    assert {p["metadata"]["name"] for p in listed.items} == {f"p-{i:03d}" for i in range(300)}
    assert api.count("list", "pods") == 8  # ceil(300 / 40)
    assert list(listed.resource_versions) == [None]
    assert listed.resource_versions[None] == str(api.store.resource_version)

    api.reset_counts()
    per_ns = k.list_pods(["team-a", "team-b", "team-a"])
    assert len(per_ns.items) == 300
    assert sorted(per_ns.resource_versions) == ["team-a", "team-b"]
    assert all(rv.isdigit() for rv in per_ns.resource_versions.values())
    assert api.count("list", "pods") == 2 * 4  # 150 per namespace, 40 a page

    only_a = k.list_pods(["team-a"], label_selector="app=x")
    assert [p["metadata"]["name"] for p in only_a.items] == ["not-argo"]


def test_expired_continue_token_restarts_the_list(api: ApiServer, kube: KubeClient) -> None:
    for i in range(30):
        api.store.create("pods", _pod(f"p-{i:02d}"))
    k = KubeClient(kube.api_client, retry=FAST, page_size=10)
    first = api.hang(verb="list", resource="pods")
    result: queue.Queue[Any] = queue.Queue()
    worker = threading.Thread(target=lambda: result.put(k.list_pods(None)))
    worker.start()
    assert first.wait_hung()
    second = api.hang(verb="list", resource="pods")  # matches the next page's request
    first.release()
    assert second.wait_hung()
    api.compact()  # the first page's continue token is now too old: 410
    api.store.create("pods", _pod("late"))
    second.release()
    listed = result.get(timeout=10)
    worker.join()
    assert len(listed.items) == 31  # a fresh, consistent list (including the late pod)
    assert api.count("list", "pods") == 2 + 4


def test_pod_pages_are_read_one_at_a_time_as_they_are_taken(api: ApiServer, kube: KubeClient) -> None:
    for i in range(25):
        api.store.create("pods", _pod(f"p-{i:02d}", "team-a" if i % 2 else "team-b"))
    k = KubeClient(kube.api_client, retry=FAST, page_size=10)
    api.reset_counts()
    pages = k.pod_pages(["team-a", "team-b"])
    assert api.count("list", "pods") == 0  # nothing is read before a page is asked for
    seen = []
    for page in pages:
        assert api.count("list", "pods") == len(seen) + 1  # one request per page taken
        seen.append([p["metadata"]["name"] for p in page])
        assert pages.resource_versions.keys() <= {"team-a", "team-b"}
    assert [len(names) for names in seen] == [10, 2, 10, 3]  # 12 in team-a, 13 in team-b
    listed = k.list_pods(None).items
    assert sorted(n for names in seen for n in names) == sorted(p["metadata"]["name"] for p in listed)
    assert sorted(pages.resource_versions) == ["team-a", "team-b"]


def test_pod_pages_start_over_when_the_continue_token_expires(api: ApiServer, kube: KubeClient) -> None:
    for i in range(30):
        api.store.create("pods", _pod(f"p-{i:02d}"))
    k = KubeClient(kube.api_client, retry=FAST, page_size=10)
    pages = k.pod_pages(None)
    first = [p["metadata"]["name"] for p in next(iter(pages))]
    api.compact()  # the first page's continue token is now too old: 410
    api.store.create("pods", _pod("z-late"))  # sorts last
    rest = [p["metadata"]["name"] for page in pages for p in page]
    assert first == rest[:10]  # the list started over: the first page is seen again
    assert len(rest) == 31 and rest[-1] == "z-late"
    assert pages.resource_versions[None] == str(api.store.resource_version)


def test_workflows_and_taskresults(api: ApiServer, kube: KubeClient) -> None:
    sim = Simulator(api.store, "3.5")
    names = {sim.submit(chain_workflow(3), ns): ns for ns in ("team-a", "team-b")}
    for _ in range(6):
        sim.step()
    k = KubeClient(kube.api_client, retry=FAST, page_size=1)

    workflows = k.list_workflows(None)
    assert {(w["metadata"]["namespace"], w["metadata"]["name"]) for w in workflows} == {
        (ns, name) for name, ns in names.items()
    }
    assert all(w["kind"] == "Workflow" and "status" in w for w in workflows)
    assert [w["metadata"]["namespace"] for w in k.list_workflows(["team-b"])] == ["team-b"]

    results = k.list_taskresults(None)
    assert len(results) == api.store.count("workflowtaskresults") >= 2
    assert all(r["kind"] == "WorkflowTaskResult" for r in results)
    name_a = next(n for n, ns in names.items() if ns == "team-a")
    selected = k.list_taskresults(["team-a"], label_selector=f"{WORKFLOW_LABEL}={name_a}")
    assert selected and all(r["metadata"]["labels"][WORKFLOW_LABEL] == name_a for r in selected)

    assert k.get_workflow("team-a", name_a)["metadata"]["name"] == name_a  # type: ignore[index]
    assert k.get_workflow("team-a", "no-such-workflow") is None


def test_missing_crd_lists_as_empty_and_is_logged_once(
    api: ApiServer, kube: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail_next(
        2,
        404,
        verb="list",
        resource="workflowtaskresults",
        message="the server could not find the requested resource",
    )
    with caplog.at_level(logging.WARNING, logger="controller.kube"):
        assert kube.list_taskresults(None) == []
        assert kube.list_taskresults(["team-a", "team-b"]) == []
    assert api.count("list", "workflowtaskresults") == 2  # the other namespace is not asked
    assert len([r for r in caplog.records if "workflowtaskresults" in r.getMessage()]) == 1


# ------------------------------------------------------------------ patches
def test_merge_patch_changes_only_the_given_keys(api: ApiServer, kube: KubeClient) -> None:
    api.store.create(
        "pods", _pod("p", labels={WORKFLOW_LABEL: "wf", "keep": "1", "drop": "x"}, annotations={"note": "a"})
    )
    before = api.store.get("pods", "kubeflow", "p")
    patch = {
        "metadata": {
            "labels": {"pipelines.kubeflow.org/metadata_written": "true", "drop": None},
            "annotations": {"kfp/extra": "v"},
        }
    }
    assert kube.patch_pod_metadata("kubeflow", "p", patch) is True
    after = api.store.get("pods", "kubeflow", "p")
    assert after["metadata"]["labels"] == {
        WORKFLOW_LABEL: "wf",
        "keep": "1",
        "pipelines.kubeflow.org/metadata_written": "true",
    }
    assert after["metadata"]["annotations"] == {"note": "a", "kfp/extra": "v"}
    assert after["spec"] == before["spec"] and after["status"] == before["status"]
    assert api.count("patch", "pods") == 1
    with pytest.raises(ValueError):
        kube.patch_pod_metadata("kubeflow", "p", {"spec": {}})


def test_patch_of_a_gone_pod_returns_false(api: ApiServer, kube: KubeClient) -> None:
    assert kube.patch_pod_metadata("kubeflow", "gone", {"metadata": {"labels": {"a": "b"}}}) is False
    assert api.count("patch", "pods") == 1


def test_other_client_errors_are_raised_at_once(api: ApiServer, kube: KubeClient) -> None:
    api.fail_next(1, 403, verb="list", resource="pods", message="pods is forbidden: no")
    with pytest.raises(KubeApiError) as err:
        kube.list_pods(["kubeflow"])
    assert (err.value.status, err.value.reason) == (403, "Forbidden")
    assert "list pods in kubeflow" in str(err.value) and "forbidden" in str(err.value)
    assert api.count("list", "pods") == 1


# ------------------------------------------------------------------ events
def _events(api: ApiServer) -> list[dict[str, Any]]:
    return api.store.list("events")


def test_event_is_created_once_then_rate_limited(api: ApiServer, kube: KubeClient) -> None:
    pod = api.store.create("pods", _pod("p"))
    assert kube.emit_pod_event(pod, "MalformedOutputs", "bad JSON " + "x" * 5000) is True
    assert kube.emit_pod_event(pod, "MalformedOutputs", "bad JSON again") is False
    assert api.count("create", "events") == 1 and api.count("patch", "events") == 0
    [event] = _events(api)
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "kubeflow",
        "name": "p",
        "uid": pod["metadata"]["uid"],
    }
    assert event["source"] == {"component": "kfp-metadata-reconciler"}
    assert (event["reason"], event["type"], event["count"]) == ("MalformedOutputs", "Warning", 1)
    assert event["firstTimestamp"] and event["lastTimestamp"]
    assert len(event["message"].encode()) <= 1024 and event["message"].startswith("bad JSON x")
    # another reason on the same pod is its own stream
    assert kube.emit_pod_event(pod, "UnknownArtifact", "s3?") is True
    assert len(_events(api)) == 2


def test_event_count_is_bumped_after_the_interval(api: ApiServer, kubeconfig: str) -> None:
    kube = _client(kubeconfig, event_interval_s=0.0)
    pod = api.store.create("pods", _pod("p"))
    assert kube.emit_pod_event(pod, "MalformedOutputs", "first") is True
    assert kube.emit_pod_event(pod, "MalformedOutputs", "second") is True
    assert kube.emit_pod_event(pod, "MalformedOutputs", "third") is True
    [event] = _events(api)
    assert (event["count"], event["message"]) == (3, "third")
    assert api.count("create", "events") == 1 and api.count("patch", "events") == 2
    # the Event expired (deleted) meanwhile: a new one is created
    api.store.delete("events", "kubeflow", event["metadata"]["name"])
    assert kube.emit_pod_event(pod, "MalformedOutputs", "fourth") is True
    [event] = _events(api)
    assert (event["count"], event["message"]) == (1, "fourth")
    kube.close()


def test_event_that_cannot_be_written_is_logged_not_raised(
    api: ApiServer, kube: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    pod = api.store.create("pods", _pod("p"))
    api.fail_next(10, 403, verb="create", resource="events", message="events is forbidden")
    with caplog.at_level(logging.WARNING, logger="controller.kube"):
        assert kube.emit_pod_event(pod, "Bad", "x") is False
    assert "could not record event Bad on pod kubeflow/p" in caplog.text
    api.clear_faults()
    api.stop()
    assert kube.emit_pod_event(pod, "Other", "y") is False  # unreachable: also only logged


# ------------------------------------------------------------------ retries
def test_server_errors_are_retried(api: ApiServer, kube: KubeClient) -> None:
    api.store.create("pods", _pod("p"))
    api.fail_next(2, 500, verb="list", resource="pods")
    assert len(kube.list_pods(None).items) == 1
    assert api.count("list", "pods") == 3


def test_429_waits_for_retry_after(api: ApiServer, kube: KubeClient) -> None:
    api.fail_next(1, 429, verb="patch", resource="pods", retry_after=1)
    api.store.create("pods", _pod("p"))
    started = time.monotonic()
    assert kube.patch_pod_metadata("kubeflow", "p", {"metadata": {"labels": {"a": "b"}}}) is True
    assert time.monotonic() - started >= 1.0  # FAST's own backoff is at most 0.05 s
    assert api.count("patch", "pods") == 2


def test_persistent_503_gives_one_line_unavailable_error(api: ApiServer, kube: KubeClient) -> None:
    api.fail_next(100, 503, verb="list", resource="pods")
    with pytest.raises(KubeUnavailableError) as err:
        kube.list_pods(["kubeflow"])
    message = str(err.value)
    assert "\n" not in message
    assert "list pods in kubeflow" in message and "503" in message and "3 attempts" in message
    assert api.count("list", "pods") == 3


def test_stopped_api_server_fails_fast(api: ApiServer, kube: KubeClient) -> None:
    api.stop()
    started = time.monotonic()
    with pytest.raises(KubeUnavailableError) as err:
        kube.list_workflows(None)
    assert time.monotonic() - started < 2.0
    assert "cannot connect" in str(err.value) and "\n" not in str(err.value)


def test_call_succeeds_once_the_api_server_is_back(api: ApiServer, kubeconfig: str) -> None:
    api.store.create("pods", _pod("p"))
    kube = _client(kubeconfig, retry=RetryPolicy(attempts=40, base_s=0.05, max_s=0.2))
    assert kube.list_pods(None).items  # a pooled keep-alive connection that the stop will cut
    api.stop()
    restarter = threading.Thread(target=api.restart, kwargs={"downtime": 0.5})
    restarter.start()
    started = time.monotonic()
    assert len(kube.list_pods(None).items) == 1
    assert time.monotonic() - started >= 0.4
    restarter.join()
    kube.close()


def test_hung_request_times_out_and_is_retried(api: ApiServer, kubeconfig: str) -> None:
    api.store.create("pods", _pod("p"))
    kube = _client(kubeconfig, request_timeout=(1.0, 0.5))
    hung = api.hang(verb="list", resource="pods", timeout=20)
    started = time.monotonic()
    assert len(kube.list_pods(None).items) == 1
    assert time.monotonic() - started >= 0.5
    assert hung.hits == 1 and api.count("list", "pods") == 2
    hung.release()
    kube.close()


# ------------------------------------------------------------------ watch
def _collect(
    kube: KubeClient,
    namespace: str | None,
    rv: str,
    stop: threading.Event,
    out: queue.Queue[Any],
    timeout_s: int = 20,
) -> None:
    try:
        for event in kube.watch_pods(namespace, rv, timeout_s=timeout_s, stop=stop):
            out.put(event)
        out.put("end")
    except Exception as exc:
        out.put(exc)


def _next_change(events: queue.Queue[Any]) -> WatchEvent:
    while True:
        event = events.get(timeout=10)
        if not isinstance(event, WatchEvent):
            raise AssertionError(f"watch ended: {event!r}")
        if event.type != "BOOKMARK":
            return event


def test_watch_yields_changes_and_bookmarks(api: ApiServer, kube: KubeClient) -> None:
    rv = kube.list_pods(None).resource_versions[None]
    stop = threading.Event()
    events: queue.Queue[Any] = queue.Queue()
    watcher = threading.Thread(target=_collect, args=(kube, None, rv, stop, events))
    watcher.start()
    try:
        assert api.wait_for_watches(1)
        api.store.create("pods", _pod("plain", labels={"app": "x"}))  # not an Argo pod: filtered
        api.store.create("pods", _pod("p1", "team-a", labels={WORKFLOW_LABEL: "wf-a"}))
        api.store.patch("pods", "team-a", "p1", {"metadata": {"annotations": {"x": "y"}}})
        added, modified = _next_change(events), _next_change(events)
        assert (added.type, added.namespace, added.name, added.labels) == (
            "ADDED",
            "team-a",
            "p1",
            {WORKFLOW_LABEL: "wf-a"},
        )
        assert modified.type == "MODIFIED" and modified.labels[WORKFLOW_LABEL] == "wf-a"
        assert int(modified.resource_version) > int(added.resource_version) > int(rv)
        while (bookmark := events.get(timeout=10)).type != "BOOKMARK":
            pass
        assert int(bookmark.resource_version) >= int(modified.resource_version)
        assert bookmark.name is None and bookmark.labels == {}
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()
    rest = []
    while not events.empty():
        rest.append(events.get())
    assert rest[-1] == "end"  # stop ends the iteration cleanly


def test_watch_resumes_from_a_resource_version(api: ApiServer, kube: KubeClient) -> None:
    api.store.create("pods", _pod("old"))
    rv = kube.list_pods(["kubeflow"]).resource_versions["kubeflow"]
    api.store.create("pods", _pod("new"))
    api.store.patch("pods", "kubeflow", "new", {"metadata": {"labels": {"step": "2"}}})
    seen = []
    for event in kube.watch_pods("kubeflow", rv, timeout_s=10, stop=threading.Event()):
        if event.type == "BOOKMARK":
            break
        seen.append((event.type, event.name))
    assert seen == [("ADDED", "new"), ("MODIFIED", "new")]


def test_watch_from_a_compacted_rv_raises_watch_expired(api: ApiServer, kube: KubeClient) -> None:
    api.store.create("pods", _pod("p"))
    rv = kube.list_pods(None).resource_versions[None]
    assert rv != "0"  # "0" would mean "any version" and never expire
    api.store.create("pods", _pod("q"))
    api.compact()
    with pytest.raises(WatchExpired) as err:
        list(kube.watch_pods(None, rv, timeout_s=10, stop=threading.Event()))
    assert err.value.status == 410
    # a 410 answered as an HTTP error (not an ERROR event) is the same to the caller
    api.fail_next(1, 410, verb="watch", resource="pods")
    with pytest.raises(WatchExpired):
        list(kube.watch_pods("kubeflow", rv, timeout_s=10, stop=threading.Event()))


def test_cut_watch_ends_without_an_exception(api: ApiServer, kube: KubeClient) -> None:
    rv = kube.list_pods(None).resource_versions[None]
    events: queue.Queue[Any] = queue.Queue()
    watcher = threading.Thread(target=_collect, args=(kube, None, rv, threading.Event(), events, 30))
    started = time.monotonic()
    watcher.start()
    assert api.wait_for_watches(1)
    assert api.cut_watches() == 1
    watcher.join(timeout=5)
    assert not watcher.is_alive() and time.monotonic() - started < 5
    remaining = []
    while not events.empty():
        remaining.append(events.get())
    assert remaining[-1] == "end"


def test_watch_ends_when_the_server_timeout_passes(api: ApiServer, kube: KubeClient) -> None:
    rv = kube.list_pods(None).resource_versions[None]
    started = time.monotonic()
    events = list(kube.watch_pods(None, rv, timeout_s=1, stop=threading.Event()))
    assert 0.9 <= time.monotonic() - started < 3
    assert events and all(e.type == "BOOKMARK" for e in events)


def test_stop_ends_an_idle_watch_promptly(tmp_path: Path) -> None:
    # no bookmarks and no changes: nothing arrives that could wake the reader up
    with ApiServer(bookmark_interval=600) as quiet:
        kube = _client(str(quiet.write_kubeconfig(tmp_path / "kc")))
        stop = threading.Event()
        ended = threading.Event()

        def consume() -> None:
            for _ in kube.watch_pods(None, "1", timeout_s=60, stop=stop):
                pass
            ended.set()

        watcher = threading.Thread(target=consume)
        watcher.start()
        assert quiet.wait_for_watches(1)
        stopped_at = time.monotonic()
        stop.set()
        assert ended.wait(timeout=5)
        assert time.monotonic() - stopped_at < 1.0
        watcher.join()
        # the client still works after the stopped stream gave its connection up
        assert kube.list_pods(None).items == []
        kube.close()


def test_watch_of_an_unreachable_server_honours_stop(api: ApiServer, kubeconfig: str) -> None:
    api.stop()
    kube = _client(kubeconfig)
    with pytest.raises(KubeUnavailableError, match="watch pods in all namespaces"):
        list(kube.watch_pods(None, "1", timeout_s=5, stop=threading.Event()))
    # still retrying (a budget of ~minutes) when stop comes: the watch just ends
    patient = _client(kubeconfig, retry=RetryPolicy(attempts=100, base_s=0.5, max_s=2.0))
    stop = threading.Event()
    stopper = threading.Timer(0.3, stop.set)
    started = time.monotonic()
    stopper.start()
    assert list(patient.watch_pods(None, "1", timeout_s=5, stop=stop)) == []
    assert time.monotonic() - started < 1.5
    stopper.join()
    kube.close()
    patient.close()
