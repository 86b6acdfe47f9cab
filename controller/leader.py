"""Leader election on a ``coordination.k8s.io/v1`` Lease: only the leader runs passes.

Why not ``kubernetes.leaderelection``
-------------------------------------
docs/design.md asks to use the ``kubernetes`` package's ``leaderelection``
(``LeaderElection`` + ``LeaseLock`` + ``electionconfig.Config``) unless it is
unfit. It was read (kubernetes 37.0.2) and tried against the sandbox API server;
it is unfit, for these reasons, each enough on its own:

1. **It cannot be stopped.** ``LeaderElection.run()`` blocks forever: ``acquire()``
   is ``while True`` with ``time.sleep(retry_period)``, and ``renew_loop()`` only
   returns when a renewal fails past the deadline or ``onstarted_leading`` raises.
   There is no stop flag; a follower can never be stopped, and a leader only by
   raising from its own callback. Its thread has to be leaked as a daemon.
2. **It never releases the Lease.** There is no release-on-cancel (client-go's
   ``ReleaseOnCancel``): on shutdown the other replica waits a full lease
   duration before it may take over.
3. **API errors other than ``ApiException`` kill it silently, without
   ``onstopped_leading``.** ``LeaseLock.get/create/update`` catch only
   ``ApiException``; with the API server unreachable the client raises
   ``urllib3.exceptions.MaxRetryError``, which escapes ``run()`` and ends the
   election thread. Tried here: the leader's thread died about 1 s after the
   sandbox API server stopped, ``onstopped_leading`` was never called, and the
   work started by ``onstarted_leading`` kept running -- a split brain as soon as
   another replica takes the expired lease.
4. **Nothing is bounded in time.** No request passes ``_request_timeout``, so a
   hung API call blocks the renew loop past ``renew_deadline`` (and past the
   lease's expiry) while the replica still believes it leads; and urllib3's
   default three retries would multiply any timeout anyway.
5. **Config rejects usable values by exiting the process.** ``Config`` calls
   ``sys.exit()`` (``SystemExit``) for ``retry_period < 1``, and a float
   ``lease_duration`` such as ``15.0`` (what our pydantic ``Settings`` holds) crashes in
   ``int("15.0")`` while building the Lease spec.
6. Smaller: ``LeaseLock()`` builds a ``CoordinationV1Api()`` on the *global* default
   configuration (usable only by overwriting ``lock.api_instance``), it times
   leases with the wall clock (``time.time()``), it exposes no "am I leader now"
   state, and it only learns of a takeover when its renew deadline runs out.

Wrapping it would mean replacing ``run``, ``acquire``, ``renew_loop`` and the
lock's error handling -- i.e. all of it -- so this module is a small elector of
its own that follows client-go's Lease protocol (the same fields and rules, so it
interoperates with client-go and with the library above):

* a candidate reads the Lease; if absent it creates it; if ``holderIdentity`` is
  another identity and the record has not changed for ``leaseDurationSeconds``
  *as measured on this process's monotonic clock since it first saw that record*,
  the lease is held; otherwise (expired, empty holder, or our own identity) it
  writes itself in with a ``resourceVersion`` precondition (409 = lost the race);
* the leader renews every ``retry_period_s``; it considers itself leader only until
  ``renew_deadline_s`` after the *start* of its last successful renewal
  (:attr:`LeaderElector.is_leader` turns false on time even while a request hangs),
  and another candidate can only take over ``lease_duration_s`` after observing
  that renewal; as ``renew_deadline_s < lease_duration_s``, two electors never both
  see ``is_leader`` true;
* every request has a timeout bounded by the renewal deadline, and the elector uses
  its own connection pool (a copy of the given ``ApiClient``'s configuration, with
  urllib3 retries off) so that the bound holds and lease renewals never wait behind
  the controller's own traffic;
* any error (HTTP status, connection refused, timeout, bad body) is logged and
  retried next period; the thread never dies of it;
* leadership is lost -- ``on_stopped`` is called -- when renewals fail until the
  deadline, or at once when the Lease is seen held by someone else;
* :meth:`LeaderElector.stop` wakes the thread at once and, if leading and
  ``release=True``, writes ``holderIdentity: ""`` and ``leaseDurationSeconds: 1``
  (resourceVersion precondition) so a follower takes over at its next poll.

Callbacks run on a separate callback thread, in order (started, stopped, started,
...), so a slow callback never delays renewals; an exception in one is logged.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import enum
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

_MIN_TIMEOUT_S = 0.05


class _Outcome(enum.Enum):
    OURS = "ours"  # the lease is (now) ours
    HELD = "held"  # held by another identity, not expired
    FAILED = "failed"  # error or lost a write race; try again later


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaderElector:
    """Campaigns for, holds and releases one Lease in a background thread.

    Args:
        api_client: the ``kubernetes`` client whose configuration (server, credentials,
            TLS, proxy) is used; the elector makes its own connection pool from it.
        namespace, name: the Lease.
        identity: this replica's holder identity (unique per process, e.g. pod name).
        lease_duration_s: how long followers wait after the last renewal they saw.
        renew_deadline_s: how long the leader keeps leading without a successful renewal.
        retry_period_s: time between attempts (followers add up to 20 % jitter).
        on_started: called (on the callback thread) when this replica becomes leader.
        on_stopped: called (on the callback thread) when it stops leading: lease lost,
            taken by another, or :meth:`stop` while leading.
        request_timeout_s: cap on each API request (default: half the renew deadline,
            between 1 and 5 s); the leader's requests are also capped by its deadline.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float = 15,
        renew_deadline_s: float = 10,
        retry_period_s: float = 2,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        request_timeout_s: float | None = None,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if not 0 < retry_period_s < renew_deadline_s < lease_duration_s:
            raise ValueError(
                "lease timing must satisfy 0 < retry_period_s < renew_deadline_s < lease_duration_s "
                f"(got {retry_period_s}, {renew_deadline_s}, {lease_duration_s})"
            )
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = float(lease_duration_s)
        self.renew_deadline_s = float(renew_deadline_s)
        self.retry_period_s = float(retry_period_s)
        self.request_timeout_s = (
            float(request_timeout_s)
            if request_timeout_s is not None
            else max(1.0, min(self.renew_deadline_s / 2, 5.0))
        )
        self._on_started = on_started
        self._on_stopped = on_stopped

        cfg = copy.deepcopy(api_client.configuration)
        cfg.retries = False  # one attempt per request, so the timeout really bounds it
        self._client = client.ApiClient(cfg)
        for header, value in api_client.default_headers.items():
            self._client.set_default_header(header, value)
        self._api = client.CoordinationV1Api(self._client)

        self._cond = threading.Condition()
        self._leading = False  # guarded by _cond
        self._valid_until = 0.0  # monotonic; guarded by _cond
        self._stop = threading.Event()
        self._release = True
        self._lease: Any = None  # the last V1Lease we read or wrote (elector thread only)
        self._observed_key: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._failing = False
        self._callbacks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._cb_thread: threading.Thread | None = None
        self._log_extra = {"lease": f"{namespace}/{name}", "identity": identity}

    # ------------------------------------------------------------ public API
    def start(self) -> LeaderElector:
        """Start campaigning in a daemon thread (once per elector)."""
        if self._thread is not None:
            raise RuntimeError("LeaderElector.start() called twice")
        self._cb_thread = threading.Thread(
            target=self._run_callbacks, name=f"leader-callbacks-{self.name}", daemon=True
        )
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.name}", daemon=True)
        self._cb_thread.start()
        self._thread.start()
        return self

    @property
    def is_leader(self) -> bool:
        """True while leading and within ``renew_deadline_s`` of the last successful renewal."""
        with self._cond:
            return self._leading and time.monotonic() < self._valid_until

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Block until this elector leads (True) or ``timeout`` seconds pass / it is stopped (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._leading or self._stop.is_set(), timeout)
        return self.is_leader

    def stop(self, release: bool = True, timeout_s: float | None = None) -> None:
        """Stop campaigning now; if leading, step down (``on_stopped``) and, with ``release``, free the Lease.

        Waits up to ``timeout_s`` (default: request timeout + 1 s) for the threads to end,
        including ``on_stopped``; safe to call more than once and from a callback.
        """
        self._release = release
        if self._thread is None:  # never started: nothing runs, just free the connection pool
            self._stop.set()
            self._client.close()
            return
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        wait = self.request_timeout_s + 1.0 if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        for thread in (self._thread, self._cb_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                if thread.is_alive():
                    log.warning("leader elector thread %s still running after stop", thread.name)

    # ------------------------------------------------------------ threads
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    start = time.monotonic()
                    outcome = self._try_acquire_or_renew(start + self.request_timeout_s)
                except Exception:  # never let the elector die; the next period retries
                    log.exception("leader election attempt failed unexpectedly")
                    outcome = _Outcome.FAILED
                if outcome is _Outcome.OURS:
                    self._lead()
                else:
                    self._stop.wait(self.retry_period_s * random.uniform(1.0, 1.2))
        finally:
            self._callbacks.put(None)
            with contextlib.suppress(Exception):
                self._client.close()

    def _lead(self) -> None:
        """Hold the lease until it is lost or stop() is called."""
        with self._cond:
            self._leading = True
            self._cond.notify_all()
        log.info("became leader", extra=self._log_extra)
        self._callbacks.put(self._on_started)
        reason = "stop() was called"
        while True:
            with self._cond:
                valid_until = self._valid_until
            if self._stop.wait(max(0.0, min(self.retry_period_s, valid_until - time.monotonic()))):
                break
            if time.monotonic() >= valid_until:
                reason = f"could not renew the lease within {self.renew_deadline_s:g}s"
                break
            try:
                attempt_deadline = min(valid_until, time.monotonic() + self.request_timeout_s)
                outcome = self._try_acquire_or_renew(attempt_deadline)
            except Exception:
                log.exception("lease renewal failed unexpectedly")
                outcome = _Outcome.FAILED
            if outcome is _Outcome.HELD:
                holder = self._lease.spec.holder_identity if self._lease is not None else "?"
                reason = f"the lease is now held by {holder}"
                break
        with self._cond:
            self._leading = False
            self._valid_until = 0.0
            self._cond.notify_all()
        level = logging.INFO if self._stop.is_set() else logging.WARNING
        log.log(level, "stopped leading: %s", reason, extra=self._log_extra)
        self._callbacks.put(self._on_stopped)
        if self._stop.is_set() and self._release:
            self._release_lease()

    def _run_callbacks(self) -> None:
        while True:
            callback = self._callbacks.get()
            if callback is None:
                return
            try:
                callback()
            except Exception:
                log.exception("leader election callback %s raised", getattr(callback, "__name__", callback))

    # ------------------------------------------------------------ the protocol
    def _timeout(self, deadline: float) -> float:
        return max(_MIN_TIMEOUT_S, deadline - time.monotonic())

    def _try_acquire_or_renew(self, deadline: float) -> _Outcome:
        """One attempt: read the Lease, then create/take/renew it if we may."""
        start = time.monotonic()
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=self._timeout(deadline)
            )
        except ApiException as exc:
            if exc.status != 404:
                return self._failed("reading the lease", exc)
            return self._create(start, deadline)
        except Exception as exc:
            return self._failed("reading the lease", exc)
        self._lease = lease
        # Write a copy, so that _lease keeps what the server said if the write fails.
        body = copy.copy(lease)
        body.spec = spec = copy.copy(lease.spec) if lease.spec is not None else client.V1LeaseSpec()
        key = _record_key(lease)
        if key != self._observed_key:
            self._observed_key = key
            self._observed_at = time.monotonic()
        holder = spec.holder_identity or ""
        duration = spec.lease_duration_seconds or self.lease_duration_s
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            self._recovered()
            log.debug("lease %s/%s held by %s", self.namespace, self.name, holder)
            return _Outcome.HELD
        now = _now_utc()
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1  # as client-go: any change of holder
        elif spec.acquire_time is None:
            spec.acquire_time = now
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = math.ceil(self.lease_duration_s)
        spec.renew_time = now
        try:
            written = self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self._timeout(deadline)
            )
        except ApiException as exc:
            if exc.status == 409:
                self._recovered()
                log.debug("lost a write race on lease %s/%s", self.namespace, self.name)
                return _Outcome.FAILED
            return self._failed("updating the lease", exc)
        except Exception as exc:
            return self._failed("updating the lease", exc)
        return self._ours(written, start)

    def _create(self, start: float, deadline: float) -> _Outcome:
        now = _now_utc()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=math.ceil(self.lease_duration_s),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            created = self._api.create_namespaced_lease(
                self.namespace, body, _request_timeout=self._timeout(deadline)
            )
        except ApiException as exc:
            if exc.status == 409:
                self._recovered()
                return _Outcome.FAILED  # someone else created it first
            return self._failed("creating the lease", exc)
        except Exception as exc:
            return self._failed("creating the lease", exc)
        return self._ours(created, start)

    def _ours(self, lease: Any, start: float) -> _Outcome:
        self._recovered()
        self._lease = lease
        self._observed_key = _record_key(lease)
        self._observed_at = time.monotonic()
        with self._cond:
            # Valid from the start of the attempt: any other candidate saw this record later.
            self._valid_until = start + self.renew_deadline_s
        return _Outcome.OURS

    def _release_lease(self) -> None:
        """Hand the lease back: empty holder, 1 s duration, on the resourceVersion we last wrote."""
        held = self._lease
        if held is None or held.spec is None or held.spec.holder_identity != self.identity:
            return
        lease = copy.copy(held)
        lease.spec = copy.copy(held.spec)
        now = _now_utc()
        lease.spec.holder_identity = ""
        lease.spec.lease_duration_seconds = 1
        lease.spec.acquire_time = now
        lease.spec.renew_time = now
        try:
            self._api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=min(self.request_timeout_s, 2.0)
            )
        except Exception as exc:
            log.warning(
                "could not release the lease (it will expire): %s",
                _describe(exc),
                extra=self._log_extra,
            )
            return
        log.info("released the lease", extra=self._log_extra)

    def _failed(self, what: str, exc: BaseException) -> _Outcome:
        # Log the first failure of a run of failures loudly, the rest at debug level.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(
            level,
            "leader election: error %s %s/%s: %s",
            what,
            self.namespace,
            self.name,
            _describe(exc),
            extra={**self._log_extra, "reason": type(exc).__name__},
        )
        return _Outcome.FAILED

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("leader election: API server reachable again", extra=self._log_extra)


def _record_key(lease: Any) -> tuple[Any, ...]:
    """What identifies one version of the election record (a change restarts the expiry clock)."""
    spec, rv = lease.spec, lease.metadata.resource_version
    if spec is None:
        return (None, None, None, rv)
    return (spec.holder_identity, spec.renew_time, spec.lease_duration_seconds, rv)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
