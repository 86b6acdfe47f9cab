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
    """Run until SIGTERM/SIGINT; returns the exit code.

    A configuration problem no retry can fix -- no store configured, an unusable
    kubeconfig, an MLMD database of another schema version or with a damaged schema, a
    refused MySQL login -- raises before anything starts (see `check_store_at_start`);
    an MLMD or API server that does not answer (or a TLS CA that does not fit, which a
    mounted Secret may still fix) is retried with backoff while the process runs.
    """
    from controller.health import HealthServer, Readiness
    from controller.kube import KubeClient, api_client_from
    from controller.leader import LeaderElector
    from controller.logs import setup_logging
    from controller.loop import Controller
    from controller.metrics import Metrics

    setup_logging(settings.log_json, settings.log_level)
    store_url = settings.store_url()
    api_client = api_client_from(settings.kubeconfig, settings.kube_context)
    check_store_at_start(settings)
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
            "mlmd": store_url,  # the log formatters mask its password
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


def check_store_at_start(settings: Settings, timeout_s: float = 10.0) -> None:
    """Open MLMD once before starting: a problem no retry can fix ends the program now.

    A database of another schema version or with a damaged schema, and a MySQL login that
    is refused, are raised: the process reads its settings and secrets (env) only when it
    starts, so retrying in it would repeat the same answer until someone restarts it
    anyway. Anything else is left to the passes, which retry with backoff and say why in
    each `pass failed` line and /readyz: an MLMD that does not answer yet (one that starts
    after the controller is normal), and a TLS CA file that does not fit or hold a
    certificate (a mounted Secret is updated in place, so that one can heal).
    """
    from store.connect import open_store
    from store.errors import (
        StoreConfigError,
        StoreLoginRefusedError,
        StoreSchemaDamagedError,
        StoreSchemaMismatchError,
        StoreUnavailableError,
    )

    try:
        open_store(
            settings.store_url(),
            ca_cert_path=settings.mlmd_ca_cert_path,
            max_receive_message_length=settings.mlmd_max_receive_message_length,
            timeout_s=timeout_s,
        )
    except (StoreSchemaMismatchError, StoreSchemaDamagedError, StoreLoginRefusedError):
        raise
    except (StoreUnavailableError, StoreConfigError) as exc:
        # INFO: every failed pass after this logs the reason at WARNING anyway.
        log.info("MLMD cannot be reached yet; the passes will retry", extra={"error": str(exc)})
