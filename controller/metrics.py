"""Prometheus metrics of the controller, on a registry of their own.

Every metric is named ``kfp_metadata_reconciler_<name>``. A :class:`Metrics`
owns its ``CollectorRegistry`` (nothing goes to prometheus_client's global
``REGISTRY``), so several controllers, tests and the CLI can each have one
without name clashes. :meth:`Metrics.render` gives the text exposition that
the health server's ``/metrics`` serves.

The reconcile pass reports through :meth:`Metrics.observe_pass`, which reads a
``controller.reconcile_pass.PassReport`` (duck-typed: only the attributes
listed there are used, so this module does not import the pass and its MLMD
dependencies).

Besides its own metrics, the registry carries ``kfp_metadata_reconciler_build_info``
(the running versions, as labels) and prometheus_client's standard ``process_*``
(CPU, memory, open files, start time) and ``python_info`` collectors.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reconcile.redact import redact

PREFIX = "kfp_metadata_reconciler"

TRIGGERS = ("resync", "watch", "manual")
RESULTS = ("success", "partial", "failed")

# From a tiny targeted pass (10 ms) to a full resync of a big cluster (2 min).
PASS_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of :meth:`Metrics.render`'s output."""


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def build_labels() -> dict[str, str]:
    """The labels of ``build_info``: this package's, Python's and ml-metadata's versions.

    Read from the installed distributions' metadata, so ml-metadata itself is not imported.
    """
    return {
        "version": _distribution_version("kfp-metadata-reconciler"),
        "python": platform.python_version(),
        "ml_metadata": _distribution_version("ml-metadata"),
    }


def pass_result(report: Any, error: BaseException | None) -> str:
    """``failed`` if the pass raised, ``partial`` if some pods had errors, else ``success``."""
    if error is not None:
        return "failed"
    if report is not None and getattr(report, "errors", None):
        return "partial"
    return "success"


class Metrics:
    """The controller's metrics; thread-safe (prometheus_client metrics are)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes_total = Counter(
            f"{PREFIX}_passes_total",
            "Reconcile passes run, by trigger and result.",
            ["trigger", "result"],
            registry=r,
        )
        self.pass_duration_seconds = Histogram(
            f"{PREFIX}_pass_duration_seconds",
            "Wall time of a reconcile pass.",
            ["trigger"],
            buckets=PASS_DURATION_BUCKETS,
            registry=r,
        )
        self.pods_seen_total = Counter(
            f"{PREFIX}_pods_seen_total",
            "Pods looked at by reconcile passes.",
            registry=r,
        )
        self.pods_unchanged_total = Counter(
            f"{PREFIX}_pods_unchanged_total",
            "Pods a full pass skipped: converged in an earlier pass, and nothing changed since.",
            registry=r,
        )
        self.pods_skipped_total = Counter(
            f"{PREFIX}_pods_skipped_total",
            "Pods skipped on purpose (not KFP steps, not done...).",
            ["reason"],
            registry=r,
        )
        self.actions_total = Counter(
            f"{PREFIX}_actions_total",
            "MLMD writes planned and applied, by kind (e.g. execution.create).",
            ["kind"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            f"{PREFIX}_reconcile_errors_total",
            "Pods that could not be reconciled, and other errors, by reason.",
            ["reason"],
            registry=r,
        )
        self.drift_found = Gauge(
            f"{PREFIX}_drift_found",
            "Actions planned by the last completed pass (0 = MLMD was in step).",
            registry=r,
        )
        self.last_success_timestamp_seconds = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds",
            "Unix time at which the last pass without a fatal error finished.",
            registry=r,
        )
        self.is_leader = Gauge(
            f"{PREFIX}_is_leader",
            "1 while this replica holds the leader Lease.",
            registry=r,
        )
        self.watch_restarts_total = Counter(
            f"{PREFIX}_watch_restarts_total",
            "Pod watch restarts, by reason (expired, error, timeout...).",
            ["reason"],
            registry=r,
        )
        self.pod_patches_total = Counter(
            f"{PREFIX}_pod_patches_total",
            "Pod label/annotation patches produced by passes.",
            registry=r,
        )
        self.mlmd_transactions_total = Counter(
            f"{PREFIX}_mlmd_transactions_total",
            "MLMD write transactions committed by passes.",
            registry=r,
        )
        self.pending_inputs = Gauge(
            f"{PREFIX}_pending_inputs",
            "Step inputs waiting for their producing artifact (last pass).",
            registry=r,
        )
        self.pending_outputs = Gauge(
            f"{PREFIX}_pending_outputs",
            "Step outputs not yet known (last pass).",
            registry=r,
        )
        # Set when the MLMD connection opens: which optional MLMD APIs the server has
        # (external_id, put_lineage_subgraph, filter_query; docs/mlmd-versions.md).
        self.mlmd_capability = Gauge(
            f"{PREFIX}_mlmd_capability",
            "1 if the MLMD server has this optional API, 0 if not (probed when the store opens).",
            ["capability"],
            registry=r,
        )
        # `<name>_info` 1 with the versions as labels: which build runs where, and when it changed.
        self.build = Info(
            f"{PREFIX}_build", "Versions of this build: the package, Python and ml-metadata.", registry=r
        )
        self.build.info(build_labels())
        # Standard process_* (CPU seconds, resident memory, open fds, start time) and python_info.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # Make the labelled series visible (at 0) before anything happens, so dashboards
        # and alerts on rate() see them from the first scrape.
        for trigger in TRIGGERS:
            self.pass_duration_seconds.labels(trigger=trigger)
            for result in RESULTS:
                self.passes_total.labels(trigger=trigger, result=result)

    # ------------------------------------------------------------ updates
    def observe_pass(
        self, trigger: str, duration_s: float, report: Any, error: BaseException | None = None
    ) -> None:
        """Record one finished pass.

        Args:
            trigger: what ran it: ``resync``, ``watch`` or ``manual``.
            duration_s: its wall time.
            report: its ``PassReport`` (may be partly filled, or None, when it failed).
            error: the exception that ended the pass, if any; result is then ``failed``.
        """
        result = pass_result(report, error)
        self.passes_total.labels(trigger=trigger, result=result).inc()
        self.pass_duration_seconds.labels(trigger=trigger).observe(max(0.0, duration_s))
        if report is not None:
            self._count_report(report)
        if error is not None:
            self.error(_error_reason(error))
            return
        self.last_success_timestamp_seconds.set(time.time())
        if report is not None:
            self.drift_found.set(sum(_counts(report.actions).values()))
            self.pending_inputs.set(int(report.pending_inputs))
            self.pending_outputs.set(int(report.pending_outputs))

    def _count_report(self, report: Any) -> None:
        self.pods_seen_total.inc(max(0, int(report.pods_seen)))
        self.pods_unchanged_total.inc(max(0, int(report.pods_unchanged)))
        for reason, n in _counts(report.pods_skipped).items():
            if n > 0:
                self.pods_skipped_total.labels(reason=_label(reason)).inc(n)
        for kind, n in _counts(report.actions).items():
            if n > 0:
                self.actions_total.labels(kind=_label(kind)).inc(n)
        for problem in report.errors:
            self.error(str(getattr(problem, "reason", "unknown")))
        if report.patch_count:
            self.pod_patches_total.inc(report.patch_count)
        if report.transactions > 0:
            self.mlmd_transactions_total.inc(int(report.transactions))

    def error(self, reason: str, n: int = 1) -> None:
        """Count ``n`` errors of ``reason`` in ``reconcile_errors_total``."""
        if n > 0:
            self.reconcile_errors_total.labels(reason=_label(reason)).inc(n)

    def watch_restarted(self, reason: str) -> None:
        """Count one restart of the pod watch."""
        self.watch_restarts_total.labels(reason=_label(reason)).inc()

    def set_mlmd_capabilities(self, flags: Mapping[str, bool]) -> None:
        """Set ``mlmd_capability{capability}`` to 1 or 0 for each probed capability."""
        for name, present in flags.items():
            self.mlmd_capability.labels(capability=name).set(1 if present else 0)

    def set_leader(self, leader: bool) -> None:
        """Set ``is_leader`` to 1 or 0."""
        self.is_leader.set(1 if leader else 0)

    # ------------------------------------------------------------ output
    def render(self) -> bytes:
        """The text exposition (format 0.0.4) of every metric; Content-Type is :data:`CONTENT_TYPE`."""
        return generate_latest(self.registry)


def _label(value: object) -> str:
    """A label value as exposed: credentials masked (labels are scraped and stored elsewhere)."""
    return redact(str(value))


def _counts(value: Any) -> Mapping[str, int]:
    return value if isinstance(value, Mapping) else {}


def _error_reason(error: BaseException) -> str:
    """A low-cardinality reason for an exception that ended a pass: ``pass_<ExceptionClass>``."""
    return f"pass_{type(error).__name__}"
