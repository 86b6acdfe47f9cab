"""Metrics exposition, readiness state and the health HTTP server (real HTTP, real PassReport)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.health import HealthServer, Readiness
from controller.metrics import CONTENT_TYPE, Metrics
from controller.report import PassReport, PodPatch, PodProblem

P = "kfp_metadata_reconciler_"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def report() -> PassReport:
    return PassReport(
        pods_seen=7,
        pods_unchanged=2,
        pods_skipped=Counter({"not-kfp": 2, "not-finished": 1}),
        errors=[
            PodProblem("ns", "bad-1", "bad_json", "annotation is not JSON"),
            PodProblem("ns", "bad-2", "bad_json", "env is not JSON"),
            PodProblem("ns", "bad-3", "unknown_artifact", "kind?"),
        ],
        actions=Counter({"execution.create": 3, "artifact.create": 2, "event.create": 0}),
        pod_patches=[PodPatch("ns", "ok-1", {"metadata": {}}), PodPatch("ns", "ok-2", {"metadata": {}})],
        pending_inputs=4,
        pending_outputs=1,
        transactions=3,
    )


# ---------------------------------------------------------------- metrics
def test_observe_pass_exposes_report_counts() -> None:
    m = Metrics()
    m.observe_pass("resync", 0.42, report())
    got = samples(m)
    assert got[(P + "passes_total", (("result", "partial"), ("trigger", "resync")))] == 1
    assert got[(P + "passes_total", (("result", "success"), ("trigger", "resync")))] == 0
    assert got[(P + "pass_duration_seconds_count", (("trigger", "resync"),))] == 1
    assert got[(P + "pass_duration_seconds_sum", (("trigger", "resync"),))] == pytest.approx(0.42)
    assert got[(P + "pass_duration_seconds_bucket", (("le", "0.5"), ("trigger", "resync")))] == 1
    assert got[(P + "pass_duration_seconds_bucket", (("le", "0.25"), ("trigger", "resync")))] == 0
    assert got[(P + "pods_seen_total", ())] == 7
    assert got[(P + "pods_unchanged_total", ())] == 2
    assert got[(P + "pods_skipped_total", (("reason", "not-kfp"),))] == 2
    assert got[(P + "pods_skipped_total", (("reason", "not-finished"),))] == 1
    assert got[(P + "actions_total", (("kind", "execution.create"),))] == 3
    assert got[(P + "actions_total", (("kind", "artifact.create"),))] == 2
    assert (P + "actions_total", (("kind", "event.create"),)) not in got
    assert got[(P + "reconcile_errors_total", (("reason", "bad_json"),))] == 2
    assert got[(P + "reconcile_errors_total", (("reason", "unknown_artifact"),))] == 1
    assert got[(P + "drift_found", ())] == 5
    assert got[(P + "pod_patches_total", ())] == 2
    assert got[(P + "mlmd_transactions_total", ())] == 3
    assert got[(P + "pending_inputs", ())] == 4
    assert got[(P + "pending_outputs", ())] == 1
    assert got[(P + "last_success_timestamp_seconds", ())] > 0


def test_success_failure_and_other_updates() -> None:
    m = Metrics()
    m.observe_pass("watch", 0.02, PassReport(pods_seen=1))
    after_success = samples(m)
    assert after_success[(P + "passes_total", (("result", "success"), ("trigger", "watch")))] == 1
    assert after_success[(P + "drift_found", ())] == 0
    stamp = after_success[(P + "last_success_timestamp_seconds", ())]
    assert stamp > 0

    m.observe_pass("manual", 130.0, PassReport(pods_seen=2), error=ConnectionError("mlmd down"))
    m.watch_restarted("expired")
    m.watch_restarted("expired")
    m.set_leader(True)
    m.error("api_unavailable", n=3)
    got = samples(m)
    assert got[(P + "passes_total", (("result", "failed"), ("trigger", "manual")))] == 1
    assert got[(P + "pass_duration_seconds_bucket", (("le", "+Inf"), ("trigger", "manual")))] == 1
    assert got[(P + "pass_duration_seconds_bucket", (("le", "120.0"), ("trigger", "manual")))] == 0
    assert got[(P + "reconcile_errors_total", (("reason", "pass_ConnectionError"),))] == 1
    assert got[(P + "reconcile_errors_total", (("reason", "api_unavailable"),))] == 3
    assert got[(P + "last_success_timestamp_seconds", ())] == stamp  # a failed pass is no success
    assert got[(P + "pods_seen_total", ())] == 3
    assert got[(P + "watch_restarts_total", (("reason", "expired"),))] == 2
    assert got[(P + "is_leader", ())] == 1
    m.set_leader(False)
    assert samples(m)[(P + "is_leader", ())] == 0


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_pass("resync", 1.0, PassReport(pods_seen=5))
    assert samples(a)[(P + "pods_seen_total", ())] == 5
    assert samples(b)[(P + "pods_seen_total", ())] == 0


# ---------------------------------------------------------------- readiness
def test_readiness_rules() -> None:
    clock = FakeClock()
    r = Readiness(period_s=60, clock=clock)
    assert r.check() == (False, "no successful pass yet")
    r.pass_failed("UnavailableError: mlmd")
    ok, reason = r.check()
    assert not ok and "no successful pass yet" in reason and "UnavailableError" in reason
    r.pass_succeeded()
    assert r.check()[0]
    clock.now += 120  # exactly 2 periods: still ready
    assert r.check()[0]
    clock.now += 1
    ok, reason = r.check()
    assert not ok and "121s ago" in reason
    assert r.check(now=clock.now, period_s=61)[0]  # explicit arguments win
    r.pass_succeeded(at=clock.now - 10)
    assert r.check()[0]
    r.mlmd_reachable(False, "connection refused")
    assert r.check() == (False, "MLMD unreachable: connection refused")
    r.mlmd_reachable(True)
    assert r.check()[0]
    with pytest.raises(ValueError):
        Readiness(clock=clock).check()


# ---------------------------------------------------------------- HTTP
def get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


@pytest.fixture
def served() -> Iterator[Callable[..., HealthServer]]:
    servers: list[HealthServer] = []

    def make(metrics: Metrics, ready: Callable[[], tuple[bool, str]]) -> HealthServer:
        server = HealthServer("127.0.0.1", 0, metrics, ready).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_endpoints(served: Callable[..., HealthServer]) -> None:
    clock = FakeClock()
    readiness = Readiness(period_s=30, clock=clock)
    metrics = Metrics()
    server = served(metrics, readiness)
    assert server.port != 0
    base = server.url

    assert get(base + "/healthz")[0::2] == (200, b"ok\n")
    status, _, body = get(base + "/readyz")
    assert (status, body) == (503, b"no successful pass yet\n")

    readiness.pass_succeeded()
    status, _, body = get(base + "/readyz")
    assert status == 200 and body.startswith(b"ok")

    readiness.mlmd_reachable(False, "UNAVAILABLE: failed to connect")
    assert get(base + "/readyz")[0::2] == (503, b"MLMD unreachable: UNAVAILABLE: failed to connect\n")
    assert get(base + "/healthz")[0] == 200  # alive even though not ready
    readiness.mlmd_reachable(True)
    assert get(base + "/readyz")[0] == 200

    clock.now += 61  # last success older than 2 periods
    status, _, body = get(base + "/readyz")
    assert status == 503 and b"more than 2 x 30s" in body
    readiness.pass_succeeded()
    assert get(base + "/readyz?verbose")[0] == 200

    metrics.observe_pass("resync", 0.3, report())
    status, ctype, body = get(base + "/metrics")
    assert status == 200 and ctype == CONTENT_TYPE
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {P + "passes", P + "reconcile_errors", P + "pass_duration_seconds", P + "is_leader"} <= names

    assert get(base + "/nope")[0] == 404


def test_readyz_failure_is_503(served: Callable[..., HealthServer]) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("state unavailable")

    server = served(Metrics(), broken)
    status, _, body = get(server.url + "/readyz")
    assert status == 503 and b"RuntimeError: state unavailable" in body


def test_healthz_answers_while_another_request_is_in_flight(served: Callable[..., HealthServer]) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_ready() -> tuple[bool, str]:
        entered.set()
        release.wait(10)
        return True, "finally"

    server = served(Metrics(), slow_ready)
    result: list[tuple[int, str, bytes]] = []
    slow = threading.Thread(target=lambda: result.append(get(server.url + "/readyz", timeout=15)))
    slow.start()
    try:
        assert entered.wait(5), "/readyz never reached ready()"
        assert get(server.url + "/healthz", timeout=2)[0::2] == (200, b"ok\n")
        assert get(server.url + "/metrics", timeout=2)[0] == 200
        assert slow.is_alive()  # the slow request is still held
    finally:
        release.set()
        slow.join(10)
    assert result and result[0][0::2] == (200, b"finally\n")


def test_stop_closes_the_port() -> None:
    server = HealthServer("127.0.0.1", 0, Metrics(), lambda: (True, "ok")).start()
    url = server.url
    assert get(url + "/healthz")[0] == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        get(url + "/healthz", timeout=2)
