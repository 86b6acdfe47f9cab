"""`kfp-metadata-reconciler run`: wire settings, Kubernetes, MLMD, health, leadership and triggers."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from types import FrameType

from controller.settings import Settings

log = logging.getLogger("kfp_metadata_reconciler")


def run_controller(settings: Settings, *, ready_file: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from controller.health import HealthServer, Readiness
    from controller.kube import KubeClient, api_client_from
    from controller.leader import LeaderElector
    from controller.logs import setup_logging
    from controller.loop import Controller
    from controller.metrics import Metrics

    setup_logging(settings.log_json, settings.log_level)
    api_client = api_client_from(settings.kubeconfig)
    kube = KubeClient(api_client, event_interval_s=settings.event_interval_s)
    metrics = Metrics()
    readiness = Readiness()
    period = settings.resync_interval_s
    controller = Controller(settings, kube, metrics, readiness)

    def ready() -> tuple[bool, str]:
        # A standby replica runs no passes; it is ready to take over, and a
        # rolling update must not wait for it to lead.
        if settings.leader_election and not controller.active.is_set():
            return True, "standby: another replica holds the lease"
        return readiness.check(time.time(), period)

    health = HealthServer(settings.health_host, settings.health_port, metrics, ready)
    health.start()
    elector = None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    controller.start()
    if settings.leader_election:
        identity = settings.identity or f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(
            api_client,
            namespace=settings.lease_namespace,
            name=settings.lease_name,
            identity=identity,
            lease_duration_s=settings.lease_duration_s,
            renew_deadline_s=settings.renew_deadline_s,
            retry_period_s=settings.retry_period_s,
            on_started=controller.activate,
            on_stopped=controller.deactivate,
        )
        elector.start()
    else:
        controller.activate()
    log.info(
        "controller started",
        extra={
            "mlmd": settings.store_url(),
            "namespaces": settings.namespaces or "all",
            "health_port": health.port,
            "leader_election": settings.leader_election,
        },
    )
    if ready_file:
        # Tests and wrappers learn the bound health port from this file.
        with open(ready_file, "w", encoding="utf-8") as handle:
            handle.write(str(health.port))
    while not stop.wait(1.0):
        pass
    controller.stop()
    if elector is not None:
        elector.stop(release=True)
    health.stop()
    log.info("stopped")
    return 0
