"""LeaderElector against the sandbox API server's Lease, through the real ``kubernetes`` client.

Each candidate has its own kubeconfig and ``ApiClient``, as separate replicas would.
Durations are small (lease 3 s, renew deadline 2 s, retry 0.2 s) to keep the suite fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from controller.leader import LeaderElector
from sandbox.apiserver import ApiServer

NS, NAME = "kubeflow", "kfp-metadata-reconciler"
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.2


class Candidate:
    """One replica: an ApiClient of its own, an elector, and what its callbacks saw."""

    def __init__(self, api: ApiServer, tmp_path: Path, identity: str) -> None:
        self.identity = identity
        self.api_client = config.new_client_from_config(
            config_file=str(api.write_kubeconfig(tmp_path / f"kubeconfig-{identity}"))
        )
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.history: list[str] = []
        self._lock = threading.Lock()
        self.elector = LeaderElector(
            self.api_client,
            namespace=NS,
            name=NAME,
            identity=identity,
            lease_duration_s=LEASE_S,
            renew_deadline_s=RENEW_S,
            retry_period_s=RETRY_S,
            on_started=self._on_started,
            on_stopped=self._on_stopped,
        )

    def _on_started(self) -> None:
        with self._lock:
            self.history.append("started")
        self.stopped.clear()
        self.started.set()

    def _on_stopped(self) -> None:
        with self._lock:
            self.history.append("stopped")
        self.started.clear()
        self.stopped.set()


class ExclusivitySampler:
    """Samples ``is_leader`` of every candidate in a loop; records any instant with two leaders."""

    def __init__(self, candidates: list[Candidate]) -> None:
        self.candidates = candidates
        self.samples = 0
        self.leader_samples = 0
        self.violations: list[list[str]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            leaders = [c.identity for c in self.candidates if c.elector.is_leader]
            self.samples += 1
            self.leader_samples += bool(leaders)
            if len(leaders) > 1:
                self.violations.append(leaders)
            self._done.wait(0.002)

    def __enter__(self) -> ExclusivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)


@pytest.fixture
def candidates(api: ApiServer, tmp_path: Path) -> Iterator[Callable[[str], Candidate]]:
    made: list[Candidate] = []

    def make(identity: str) -> Candidate:
        c = Candidate(api, tmp_path, identity)
        made.append(c)
        return c

    yield make
    for c in made:
        c.elector.stop(release=False, timeout_s=3)
        c.api_client.close()


@pytest.fixture
def coord(api: ApiServer, tmp_path: Path) -> Iterator[client.CoordinationV1Api]:
    c = config.new_client_from_config(config_file=str(api.write_kubeconfig(tmp_path / "kubeconfig-test")))
    try:
        yield client.CoordinationV1Api(c)
    finally:
        c.close()


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` (a cheap in-process check) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.01)
    return True


def leader_of(cands: list[Candidate], timeout: float = 5.0) -> Candidate:
    assert wait_for(lambda: any(c.elector.is_leader for c in cands), timeout), "nobody became leader"
    (leader,) = [c for c in cands if c.elector.is_leader]
    return leader


def thread_of(elector: LeaderElector) -> threading.Thread:
    thread = elector._thread
    assert thread is not None
    return thread


def test_one_leader_then_released_handover(
    candidates: Callable[[str], Candidate], coord: client.CoordinationV1Api
) -> None:
    a, b = candidates("replica-a"), candidates("replica-b")
    with ExclusivitySampler([a, b]) as sampler:
        a.elector.start()
        b.elector.start()
        leader = leader_of([a, b])
        follower = b if leader is a else a
        assert leader.started.wait(2) and leader.history == ["started"]
        assert leader.elector.wait_for_leadership(1)
        assert not follower.elector.wait_for_leadership(0.5)

        # Several renewals go by; the follower stays a follower.
        lease = coord.read_namespaced_lease(NAME, NS)
        assert lease.spec.holder_identity == leader.identity and lease.spec.lease_duration_seconds == 3
        first_renew = lease.spec.renew_time
        assert wait_for(lambda: coord.read_namespaced_lease(NAME, NS).spec.renew_time != first_renew, 3)
        assert not wait_for(lambda: follower.elector.is_leader, 1.5)
        assert leader.elector.is_leader and follower.history == []

        t0 = time.monotonic()
        leader.elector.stop(release=True)
        stop_took = time.monotonic() - t0
        assert stop_took < 1.0
        assert not thread_of(leader.elector).is_alive()
        assert leader.stopped.is_set() and leader.history == ["started", "stopped"]
        assert not leader.elector.is_leader

        assert follower.started.wait(LEASE_S), "the follower did not take over"
        elapsed = time.monotonic() - t0
        assert elapsed < LEASE_S / 2, f"took {elapsed:.2f}s: the lease was not released"
        assert follower.elector.is_leader
        lease = coord.read_namespaced_lease(NAME, NS)
        assert lease.spec.holder_identity == follower.identity
        assert lease.spec.lease_transitions == 1
    assert sampler.violations == []
    assert sampler.samples > 100 and sampler.leader_samples > 0


def test_api_server_down_then_back(
    api: ApiServer, candidates: Callable[[str], Candidate], coord: client.CoordinationV1Api
) -> None:
    a, b = candidates("replica-a"), candidates("replica-b")
    with ExclusivitySampler([a, b]) as sampler:
        a.elector.start()
        b.elector.start()
        leader = leader_of([a, b])
        assert leader.started.wait(2)

        api.stop()
        t0 = time.monotonic()
        assert leader.stopped.wait(RENEW_S + 2), "on_stopped was not called after the API server went away"
        elapsed = time.monotonic() - t0
        assert elapsed < RENEW_S + 1.0, f"on_stopped after {elapsed:.2f}s"
        assert not a.elector.is_leader and not b.elector.is_leader
        # The threads survive the outage: they keep trying.
        assert thread_of(a.elector).is_alive() and thread_of(b.elector).is_alive()

        api.start()
        new_leader = leader_of([a, b], timeout=LEASE_S + 3)
        assert new_leader.started.wait(2)
        assert coord.read_namespaced_lease(NAME, NS).spec.holder_identity == new_leader.identity
    assert sampler.violations == []


def test_hung_api_server_ends_leadership_on_time(
    api: ApiServer, candidates: Callable[[str], Candidate]
) -> None:
    a = candidates("replica-a")
    a.elector.start()
    assert a.started.wait(5)
    hang = api.hang(verb="get", resource="leases", count=None, timeout=20)
    try:
        t0 = time.monotonic()
        assert hang.wait_hung(2), "the leader's renewal never reached the server"
        # The request never answers; the leader must not wait for it past its deadline.
        assert a.stopped.wait(RENEW_S + 1.0), "on_stopped not called while the API server hangs"
        assert time.monotonic() - t0 < RENEW_S + 0.5
        assert not a.elector.is_leader
    finally:
        api.clear_faults()
    assert a.started.wait(LEASE_S + 2)  # its own lease: it takes it back as soon as it can read it
    t0 = time.monotonic()
    a.elector.stop()
    assert time.monotonic() - t0 < 1.0


def test_leader_steps_down_when_another_holds_the_lease(
    candidates: Callable[[str], Candidate], coord: client.CoordinationV1Api
) -> None:
    a = candidates("replica-a")
    a.elector.start()
    assert a.started.wait(5)
    # Someone else (say a replica with a skewed clock) writes itself into the lease.
    coord.patch_namespaced_lease(NAME, NS, {"spec": {"holderIdentity": "intruder"}})
    t0 = time.monotonic()
    assert a.stopped.wait(RENEW_S), "the leader did not notice it lost the lease"
    assert time.monotonic() - t0 < RENEW_S / 2  # at its next renewal, not at the deadline
    assert not a.elector.is_leader
    # The intruder never renews: once its record is older than the lease, a takes it back.
    assert a.started.wait(LEASE_S + 2)
    assert coord.read_namespaced_lease(NAME, NS).spec.holder_identity == "replica-a"
    assert a.history == ["started", "stopped", "started"]


def test_follower_stops_promptly_and_errors_do_not_kill_it(
    api: ApiServer, candidates: Callable[[str], Candidate], coord: client.CoordinationV1Api
) -> None:
    a, b = candidates("replica-a"), candidates("replica-b")
    a.elector.start()
    assert a.started.wait(5)
    api.fail_next(count=5, status=500, resource="leases")  # b's first attempts fail
    b.elector.start()
    assert not b.elector.wait_for_leadership(0.5)
    assert thread_of(b.elector).is_alive()

    t0 = time.monotonic()
    b.elector.stop()
    assert time.monotonic() - t0 < 1.0 and not thread_of(b.elector).is_alive()
    assert b.history == [] and not b.stopped.is_set()  # never led: no callbacks
    assert not b.elector.wait_for_leadership(0.1)
    assert a.elector.is_leader and coord.read_namespaced_lease(NAME, NS).spec.holder_identity == "replica-a"

    # Stopping without release leaves the lease to expire.
    a.elector.stop(release=False)
    assert a.stopped.is_set() and not thread_of(a.elector).is_alive()
    assert coord.read_namespaced_lease(NAME, NS).spec.holder_identity == "replica-a"


def test_bad_timings_are_rejected(api: ApiServer, tmp_path: Path) -> None:
    c = config.new_client_from_config(config_file=str(api.write_kubeconfig(tmp_path / "k")))
    try:
        for lease, renew, retry in [(3, 3, 1), (3, 2, 2), (10, 5, 0)]:
            with pytest.raises(ValueError, match="lease timing"):
                LeaderElector(
                    c,
                    namespace=NS,
                    name=NAME,
                    identity="x",
                    lease_duration_s=lease,
                    renew_deadline_s=renew,
                    retry_period_s=retry,
                    on_started=lambda: None,
                    on_stopped=lambda: None,
                )
        with pytest.raises(ValueError, match="identity"):
            LeaderElector(
                c, namespace=NS, name=NAME, identity="", on_started=lambda: None, on_stopped=lambda: None
            )
    finally:
        c.close()
