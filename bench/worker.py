"""One full pass in a process of its own, for a clean peak-RSS figure (used by `scale`).

    python -m bench.worker --kubeconfig K --mlmd URL

prints one JSON object: pods, wall_s, cpu_s, peak_rss_mb (VmHWM of this
process), baseline_rss_mb (before the pass, after imports), mlmd_reads,
mlmd_writes, patches.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from bench.common import CountingStore, cpu_s, peak_rss_mb
from controller.health import Readiness
from controller.kube import KubeClient, api_client_from
from controller.loop import Controller
from controller.metrics import Metrics
from controller.settings import Settings
from store.connect import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--mlmd", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    settings = Settings(kubeconfig=args.kubeconfig, mlmd_url=args.mlmd, leader_election=False, health_port=0)
    store = CountingStore(open_store(args.mlmd))
    kube = KubeClient(api_client_from(args.kubeconfig))
    controller = Controller(settings, kube, Metrics(), Readiness(), store_opener=lambda: store)
    controller.active.set()
    baseline = peak_rss_mb()
    wall0, cpu0 = time.perf_counter(), cpu_s()
    report = controller.run_pass("resync")
    wall, cpu = time.perf_counter() - wall0, cpu_s() - cpu0
    if report is None:
        raise SystemExit("the pass failed")
    print(
        json.dumps(
            {
                "pods": report.pods_seen,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "baseline_rss_mb": round(baseline, 1),
                "mlmd_reads": store.reads,
                "mlmd_writes": store.writes,
                "patches": report.patch_count,
                "errors": len(report.errors),
            }
        )
    )


if __name__ == "__main__":
    main()
