"""The controller: triggers, retries, leadership and the MLMD connection around `run_pass`.

Correctness comes from the periodic full pass alone; the pod watch only marks
workflows dirty so a debounced, targeted pass runs sooner. Never two passes
at once; only the leader (or every replica, with election off) runs them.
A pass is: pick a chunk source (the streamed cluster, or the dirty workflows),
hand it to `run_pass`, and after each chunk patch its pods and report its bad ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from controller.backoff import RetryPolicy
from controller.changed_stream import ChangedStream
from controller.converged import ConvergedSteps
from controller.health import Readiness
from controller.kube import KubeAccess, WatchExpired
from controller.metrics import Metrics
from controller.patching import apply_pod_patches
from controller.reconcile_pass import Chunk, ListedPod, run_pass
from controller.report import PassReport, PodProblem
from controller.settings import Settings
from controller.sources import ClusterStream, read_workflows
from reconcile import conventions as c
from reconcile.errors import Reason
from store.capabilities import Capabilities
from store.connect import open_store
from store.errors import StoreError
from store.metadata import MetadataStore, MlmdClient

log = logging.getLogger(__name__)

FAILURE_REASON = "MetadataReconcileFailed"
# After a failed pass: 0.5 s, 1 s, 2 s... never longer than a resync period (nor 512 s).
PASS_BACKOFF = RetryPolicy(base_s=0.5, max_s=512.0, jitter="equal")
# After the pod watch broke: 0.5 s, 1 s, 2 s... up to 30 s.
WATCH_BACKOFF = RetryPolicy(base_s=0.5, max_s=30.0, jitter="equal")


class Controller:
    """Runs passes on a schedule and on watch triggers, and applies their pod patches."""

    def __init__(
        self,
        settings: Settings,
        kube: KubeAccess,
        metrics: Metrics,
        readiness: Readiness,
        *,
        store_opener: Callable[[], MlmdClient] | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.readiness = readiness
        self.options = settings.reconcile_options()
        self._store = MetadataStore(store_opener or self._default_store, on_open=self._store_opened)
        self._pass_backoff = replace(PASS_BACKOFF, max_s=min(settings.resync_interval_s, PASS_BACKOFF.max_s))
        self._pass_lock = threading.Lock()
        self._dirty_lock = threading.Lock()
        self._dirty: dict[str, set[str]] = {}
        self._targeted_pending = False
        self._failures = 0
        self._resource_versions: dict[str | None, str] = {}
        self._rv_ready = threading.Event()
        self.active = threading.Event()  # set while this replica may run passes
        self.stopping = threading.Event()
        self._scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._watchers: list[threading.Thread] = []
        self.converged = ConvergedSteps(settings.converged_recheck_s)

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start the scheduler (and the watch); passes run once `activate()` is called."""
        self._scheduler.add_job(
            self._scheduled_resync,
            "interval",
            seconds=self.settings.resync_interval_s,
            jitter=self.settings.resync_jitter_s or None,
            id="resync",
            next_run_time=datetime.now(UTC),
        )
        self._scheduler.start()
        if self.settings.watch_enabled:
            for namespace in self.settings.namespaces or [None]:
                thread = threading.Thread(
                    target=self._watch_loop,
                    args=(namespace,),
                    name=f"watch-{namespace or 'all'}",
                    daemon=True,
                )
                thread.start()
                self._watchers.append(thread)

    def activate(self) -> None:
        """This replica leads (or election is off): run a full pass now and keep going."""
        self.active.set()
        self.metrics.set_leader(True)
        self.request_resync()

    def deactivate(self) -> None:
        """Leadership lost: stop starting passes; a running pass stops before its patches."""
        self.active.clear()
        self.metrics.set_leader(False)
        # Another replica leads meanwhile; what this one learned may be stale when it leads again.
        self.converged.forget()

    def stop(self) -> None:
        """Stop triggers, let a running pass finish its current transaction, and return."""
        self.stopping.set()
        self.active.clear()
        if self._scheduler.running:  # never started: nothing scheduled to stop
            self._scheduler.shutdown(wait=True)
        for thread in self._watchers:
            thread.join(timeout=self.settings.watch_timeout_s + 5)

    def request_resync(self, delay_s: float = 0.0) -> None:
        """Run a full pass soon (after `delay_s`), e.g. on leadership or a lost watch."""
        if self.stopping.is_set():
            return
        when = datetime.now(UTC) + timedelta(seconds=delay_s)
        self._scheduler.add_job(
            self._scheduled_resync, "date", run_date=when, id="resync-now", replace_existing=True
        )

    # --- passes ------------------------------------------------------------
    def _scheduled_resync(self) -> None:
        self.run_pass("resync")

    def _default_store(self) -> MlmdClient:
        s = self.settings
        return open_store(
            s.store_url(),
            ca_cert_path=s.mlmd_ca_cert_path,
            max_receive_message_length=s.mlmd_max_receive_message_length,
            call_timeout_s=60.0,
        )

    def _store_opened(self, capabilities: Capabilities) -> None:
        # One line at start (the first pass opens the store), and again on every reopen:
        # a restarted server may be another MLMD version.
        log.info(capabilities.summary(), extra={"mlmd_capabilities": capabilities.to_json()})
        self.metrics.set_mlmd_capabilities(capabilities.flags())

    def _drop_store(self) -> None:
        # Reopen next time: after an MLMD error an embedded MySQL handle can be
        # left with a transaction open, and types may have new ids after a restore.
        self._store.drop()
        self.converged.forget("the MLMD connection is reopened")

    def run_pass(self, trigger: str, scope: Mapping[str, set[str]] | None = None) -> PassReport | None:
        """One pass over everything (scope None) or over the named workflows; None if not active."""
        if not self.active.is_set() or self.stopping.is_set():
            return None
        with self._pass_lock:
            if not self.active.is_set():
                return None
            started = time.monotonic()
            try:
                report = self._pass(trigger, scope)
            except Exception as exc:
                self._failed(trigger, started, exc)
                return None
            duration = time.monotonic() - started
            self.metrics.observe_pass(trigger, duration, report)
            self.readiness.pass_succeeded(time.time())
            self._failures = 0
            log.info(
                "pass done",
                extra={
                    "trigger": trigger,
                    "duration_s": round(duration, 3),
                    "pods": report.pods_seen,
                    "unchanged": report.pods_unchanged,
                    "actions": dict(report.actions),
                    "patches": report.patch_count,
                    "errors": len(report.errors),
                },
            )
            return report

    def _pass(self, trigger: str, scope: Mapping[str, set[str]] | None) -> PassReport:
        """A full pass (scope None: every pod, streamed) or a targeted one: a source, then `run_pass`."""
        store = self._store
        store.open()
        mlmd_changed = self.converged.before_pass(store)
        if mlmd_changed or scope is None:
            # A restore may have taken types away or given them other ids; reading the
            # few types again costs a full pass next to nothing.
            store.forget_types()
        self.readiness.mlmd_reachable(True, "")
        if scope is None:
            # Pods whose steps an earlier pass found converged, and that did not change
            # since, are skipped; each chunk is patched before the next page is read.
            # (Sending a chunk's patches while the next one is reconciled was slower:
            # MLMD's calls hold Python's global lock, so the two only took turns.)
            # With something remembered, the lists are metadata only and just the changed
            # workflows are read whole (controller/changed_stream.py).
            namespaces, chunk_pods = self.settings.namespaces, self.settings.chunk_pods
            stream: ClusterStream | ChangedStream
            if self.converged.valid:
                stream = ChangedStream(self.kube, namespaces, self.options, chunk_pods, self.converged)
            else:
                stream = ClusterStream(self.kube, namespaces, self.options, chunk_pods)

            def after_chunk(chunk: Chunk, part: PassReport) -> None:
                self._after_chunk(chunk, part)
                self.converged.learn(chunk.pods, chunk, part, stream.read.workflows_seen)

            report = run_pass(
                stream.chunks(), store, self.options, skip=self.converged.skip, after_chunk=after_chunk
            )
            if isinstance(stream, ChangedStream) and not stream.fell_back:
                # Pods of unchanged workflows were skipped without being read whole.
                report.pods_seen += stream.unchanged
                report.pods_unchanged += stream.unchanged
                self.converged.note_workflows(stream.read.workflows_seen, stream.listed_workflows)
            else:
                self.converged.note_workflows(stream.read.workflows_seen)
            self._report_workflow_problems(stream.read.problems)
            self._resource_versions = stream.read.resource_versions
            self._rv_ready.set()
        else:
            found = read_workflows(self.kube, scope, self.options)
            report = run_pass(found.chunks(), store, self.options, after_chunk=self._after_chunk)
            self._report_workflow_problems(found.problems)
        # Also after a targeted pass: its writes must not read as someone else's next time.
        self.converged.after_pass(store)
        return report

    def _after_chunk(self, chunk: Chunk, part: PassReport) -> None:
        """A chunk is reconciled: patch its pods, and report its bad ones (a refused patch too)."""
        if any(e.reason == Reason.MLMD_WRITE for e in part.errors):
            self._drop_store()  # the next chunk reopens it
        self._patch_pods(part)
        self._report_bad_pods(part.errors, chunk.pods)

    def _report_workflow_problems(self, problems: list[tuple[str, str, str]]) -> None:
        for namespace, name, message in problems:
            log.warning(
                "workflow cannot be read", extra={"namespace": namespace, "workflow": name, "reason": message}
            )
            self.metrics.error("malformed_workflow")

    def _patch_pods(self, report: PassReport) -> None:
        applied = apply_pod_patches(self.kube, report, self.active.is_set)
        if applied < len(report.pod_patches) and not self.active.is_set():
            log.info("leadership lost: remaining pod patches left to the next leader")

    def _report_bad_pods(self, problems: list[PodProblem], pods: Sequence[ListedPod]) -> None:
        by_name = {
            ((p.get("metadata") or {}).get("namespace"), (p.get("metadata") or {}).get("name")): p
            for p in pods
        }
        for problem in problems:
            log.warning(
                "pod not reconciled",
                extra={
                    "namespace": problem.namespace,
                    "pod": problem.pod,
                    "reason": problem.reason,
                    "problem": problem.message,
                },
            )
            pod = by_name.get((problem.namespace, problem.pod))
            if pod is not None:
                self.kube.emit_pod_event(pod, FAILURE_REASON, f"{problem.reason}: {problem.message}")

    def _failed(self, trigger: str, started: float, exc: Exception) -> None:
        self._failures += 1
        duration = time.monotonic() - started
        self.metrics.observe_pass(trigger, duration, PassReport(), error=exc)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, StoreError):
            self._drop_store()
            self.readiness.mlmd_reachable(False, message)
        self.readiness.pass_failed(message)
        delay = self._pass_backoff.delay(self._failures)
        log.warning(
            "pass failed",
            extra={
                "trigger": trigger,
                "error": message,
                "failures": self._failures,
                "retry_in_s": round(delay, 2),
            },
        )
        self.request_resync(delay)

    # --- watch trigger -----------------------------------------------------
    def mark_dirty(self, namespace: str, workflow: str) -> None:
        """A pod of this workflow changed: run a targeted pass after the debounce."""
        with self._dirty_lock:
            self._dirty.setdefault(namespace, set()).add(workflow)
            if self._targeted_pending or self.stopping.is_set():
                return
            self._targeted_pending = True
        when = datetime.now(UTC) + timedelta(seconds=self.settings.debounce_s)
        self._scheduler.add_job(self._targeted, "date", run_date=when)

    def _targeted(self) -> None:
        with self._dirty_lock:
            scope, self._dirty = self._dirty, {}
            self._targeted_pending = False
        if scope:
            self.run_pass("watch", scope)

    def _watch_loop(self, namespace: str | None) -> None:
        failures = 0
        while not self.stopping.is_set():
            if not self.active.is_set() or not self._rv_ready.is_set():
                self.stopping.wait(0.2)
                continue
            rv = self._resource_versions.get(namespace) or self._resource_versions.get(None)
            if rv is None:
                self.stopping.wait(0.2)
                continue
            try:
                for event in self.kube.watch_pods(
                    namespace, rv, timeout_s=self.settings.watch_timeout_s, stop=self.stopping
                ):
                    failures = 0
                    if event.resource_version:
                        rv = event.resource_version
                        self._resource_versions[namespace] = rv
                    workflow = (event.labels or {}).get(c.ARGO_WORKFLOW_LABEL)
                    if event.type != "BOOKMARK" and workflow and self.active.is_set():
                        self.mark_dirty(event.namespace, workflow)
                self.metrics.watch_restarted("closed")
            except WatchExpired:
                # Events may have been missed: a full pass relists and yields a fresh RV.
                self.metrics.watch_restarted("expired")
                self._rv_ready.clear()
                self.request_resync()
            except Exception as exc:
                failures += 1
                self.metrics.watch_restarted("error")
                log.warning(
                    "pod watch failed", extra={"error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
                )
                self.stopping.wait(WATCH_BACKOFF.delay(failures))
